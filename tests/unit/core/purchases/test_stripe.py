"""Unit tests of core/purchases/stripe.py: the one translation of stripe SDK errors, and the secret key's source."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import stripe
from botocore.exceptions import ClientError

from core.errors import UpstreamError
from core.purchases.errors import (
    PermanentPurchaseError,
    StripeIdempotencyError,
    StripeReplayedFailureError,
    StripeUnavailableError,
)
from core.purchases.ports import PaymentIntentView
from core.purchases.stripe import (
    StripeApiGateway,
    StripeKeySource,
    checkout_session_view,
    payment_intent_view,
    translate,
)

SECRET = "sk_test_never_shown_4242"


def _error(kind: type[stripe.StripeError], status: int | None, code: str | None = None) -> stripe.StripeError:
    body = {"error": {"message": f"refused {SECRET}", "code": code}}
    options: dict[str, Any] = {
        "http_status": status,
        "json_body": body,
        "code": code,
        "headers": {"request-id": "req_1"},
    }
    if issubclass(kind, stripe.StripeErrorWithParamCode):
        options["param"] = "customer"
    return kind(f"refused {SECRET}", **options)


@pytest.mark.parametrize(
    "error",
    [
        stripe.APIConnectionError("connection reset"),
        _error(stripe.RateLimitError, 429, "rate_limit"),
        _error(stripe.APIError, 500),
        _error(stripe.APIError, 503),
        _error(stripe.AuthenticationError, 401),
        _error(stripe.PermissionError, 403),
        _error(stripe.InvalidRequestError, 409, "idempotency_key_in_use"),
        _error(stripe.APIError, None),
    ],
)
def test_translate_outage_or_configuration_is_unavailable(error: stripe.StripeError) -> None:
    with pytest.raises(StripeUnavailableError) as raised:
        translate(error, "unknown_customer")

    assert isinstance(raised.value, UpstreamError)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (_error(stripe.InvalidRequestError, 404, "resource_missing"), "unknown_customer"),
        (_error(stripe.InvalidRequestError, 400, "parameter_invalid_integer"), "stripe_refused"),
        (_error(stripe.CardError, 402, "card_declined"), "stripe_refused"),
    ],
)
def test_translate_refusal_is_permanent_with_reason(error: stripe.StripeError, reason: str) -> None:
    with pytest.raises(PermanentPurchaseError) as raised:
        translate(error, "unknown_customer")

    assert raised.value.reason == reason


def test_translate_idempotency_error_is_retried_never_refused() -> None:
    with pytest.raises(StripeIdempotencyError) as raised:
        translate(_error(stripe.IdempotencyError, 400), "unknown_customer")

    assert isinstance(raised.value, StripeUnavailableError)
    assert not isinstance(raised.value, PermanentPurchaseError)
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize("name", ["Idempotent-Replayed", "idempotent-replayed"])
def test_translate_5xx_stripe_replayed_for_the_key_is_a_replayed_failure(name: str) -> None:
    error = _error(stripe.APIError, 500)
    error.headers = {"request-id": "req_1", name: "true"}

    with pytest.raises(StripeReplayedFailureError) as raised:
        translate(error, "unknown_customer")

    assert isinstance(raised.value, StripeUnavailableError)
    assert SECRET not in str(raised.value)


def test_translate_5xx_not_replayed_is_no_replayed_failure() -> None:
    with pytest.raises(StripeUnavailableError) as raised:
        translate(_error(stripe.APIError, 500), "unknown_customer")

    assert not isinstance(raised.value, StripeReplayedFailureError)


def test_translate_text_has_status_code_request_id_never_the_message() -> None:
    with pytest.raises(PermanentPurchaseError) as raised:
        translate(_error(stripe.InvalidRequestError, 400, "parameter_invalid_integer"), "unknown_customer")

    assert "400, parameter_invalid_integer, req_1" in str(raised.value)
    assert SECRET not in str(raised.value)


class Provider:
    """``core.secrets.SecureParameters`` as the key source calls it."""

    def __init__(self, value: Any = SECRET, error: Exception | None = None) -> None:
        self.value = value
        self.error = error
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get(self, name: str, **options: Any) -> Any:
        self.calls.append((name, options))
        if self.error is not None:
            raise self.error
        return self.value


def test_stripe_key_source_reads_decrypted_with_max_age() -> None:
    provider = Provider()

    key = StripeKeySource(provider, "/notify/test/stripe/secret-key", 300)()

    assert key == SECRET
    assert provider.calls == [("/notify/test/stripe/secret-key", {"decrypt": True, "max_age": 300})]


def test_stripe_key_source_ssm_failure_is_unavailable_naming_code() -> None:
    failure = ClientError({"Error": {"Code": "ParameterNotFound", "Message": "x"}}, "GetParameter")
    source = StripeKeySource(Provider(error=failure), "/notify/test/stripe/secret-key", 300)

    with pytest.raises(StripeUnavailableError, match=r"\(ParameterNotFound\)"):
        source()


def test_stripe_key_source_empty_value_is_unavailable() -> None:
    with pytest.raises(StripeUnavailableError, match="empty"):
        StripeKeySource(Provider(""), "/p", 300)()
    with pytest.raises(StripeUnavailableError, match="empty"):
        StripeKeySource(Provider(" \n"), "/p", 300)()


def test_stripe_key_source_drops_the_newline_a_key_written_from_a_file_ends_in() -> None:
    assert StripeKeySource(Provider(f"{SECRET}\n"), "/p", 300)() == SECRET


def test_stripe_key_source_whitespace_inside_the_key_is_unavailable_without_the_key() -> None:
    with pytest.raises(StripeUnavailableError, match="whitespace inside the key") as raised:
        StripeKeySource(Provider(f"{SECRET[:5]} {SECRET[5:]}"), "/p", 300)()

    assert SECRET[5:] not in str(raised.value)


def test_stripe_gateway_repr_shows_no_key() -> None:
    gateway = StripeApiGateway(lambda: SECRET, api_base="http://127.0.0.1:1")

    assert SECRET not in repr(gateway)
    assert SECRET not in repr(StripeKeySource(Provider(), "/p", 300))


def test_purchases_modules_import_without_stripe() -> None:
    code = (
        "import sys\n"
        "import core.purchases.stripe, core.purchases.credit, core.purchases.notify, core.clients\n"
        "import subscribers.credit, subscribers.purchase_notify\n"
        "sys.exit('stripe' in sys.modules)\n"
    )

    completed = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)

    assert completed.returncode == 0, completed.stderr


def test_checkout_session_view_takes_codes_of_expanded_promotion_codes() -> None:
    session = {
        "id": "cs_1",
        "payment_intent": "pi_1",
        "customer": {"id": "cus_1", "object": "customer"},
        "metadata": {"order": 7},
        "discounts": [
            {"coupon": "co_1", "promotion_code": {"id": "promo_1", "code": "WELCOME10"}},
            {"coupon": "co_2", "promotion_code": "promo_2"},
            {"coupon": "co_3", "promotion_code": None},
        ],
    }

    view = checkout_session_view(session)

    assert (view.id, view.payment_intent, view.customer_id) == ("cs_1", "pi_1", "cus_1")
    assert view.promo_codes == ("WELCOME10",)
    assert view.metadata == {"order": "7"}


def test_checkout_session_view_no_discounts_no_codes() -> None:
    view = checkout_session_view({"id": "cs_1", "payment_intent": None, "customer": None, "discounts": None})

    assert (view.payment_intent, view.customer_id, view.promo_codes, view.metadata) == (None, None, (), {})


@pytest.mark.parametrize(
    ("fields", "received"),
    [
        ({"amount_received": 400}, 400),
        ({"latest_charge": {"id": "ch_1", "amount_captured": 400}}, 400),
        ({"amount_received": 0, "latest_charge": {"id": "ch_1", "amount_captured": 0}}, None),
        ({"amount_received": True}, None),
        ({"latest_charge": "ch_1"}, None),
        ({}, None),
    ],
)
def test_payment_intent_view_amount_received_from_the_intent_or_its_charge(
    fields: dict[str, Any], received: int | None
) -> None:
    intent = {"id": "pi_1", "status": "succeeded", "amount": 1000, "currency": "eur", **fields}

    assert payment_intent_view(intent).amount_received == received


def test_payment_intent_view_reads_fields_and_customer_id() -> None:
    intent = {
        "id": "pi_1",
        "status": "succeeded",
        "amount": 2500,
        "currency": "eur",
        "customer": "cus_1",
        "metadata": {"payment_id": "order-7", "promo_code": "WELCOME10"},
        "created": 1700000000,
    }

    assert payment_intent_view(intent) == PaymentIntentView(
        id="pi_1",
        status="succeeded",
        amount=2500,
        currency="eur",
        customer_id="cus_1",
        metadata={"payment_id": "order-7", "promo_code": "WELCOME10"},
        created=1700000000,
    )


def test_payment_intent_view_reads_when_its_expanded_charge_was_made() -> None:
    intent = {
        "id": "pi_1",
        "status": "succeeded",
        "created": 1700000000,
        "latest_charge": {"id": "ch_1", "created": 1700000300, "amount_refunded": 0},
    }

    view = payment_intent_view(intent)

    assert (view.created, view.charge_created) == (1700000000, 1700000300)


def test_payment_intent_view_charge_not_expanded_has_no_charge_time() -> None:
    view = payment_intent_view({"id": "pi_1", "status": "succeeded", "created": 1700000000, "latest_charge": "ch_1"})

    assert view.charge_created is None
