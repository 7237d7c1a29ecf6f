"""core/purchases/stripe.py: the real stripe SDK against the local Stripe server, errors translated."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import pytest

import core.purchases.stripe
from core.purchases.errors import (
    PermanentPurchaseError,
    StripeIdempotencyError,
    StripeReplayedFailureError,
    StripeUnavailableError,
)
from core.purchases.models import Credit
from core.purchases.stripe import StripeApiGateway
from infra.local.stripe import API_KEY


@pytest.fixture
def gateway(stripe_server: Any) -> StripeApiGateway:
    return StripeApiGateway(lambda: API_KEY, api_base=stripe_server.url, timeout_seconds=5)


def _credit(gateway: StripeApiGateway, customer_id: str, key: str = "credit:k1", amount: int = 1000) -> str:
    return gateway.credit_balance(
        customer_id, Credit(amount=amount, currency="eur"), "Welcome", {"purchase_id": "pi_1"}, key
    )


def test_stripe_gateway_credit_same_key_same_transaction_other_params_retried(
    stripe_server: Any, gateway: StripeApiGateway
) -> None:
    customer = stripe_server.client().v1.customers.create({"email": "ada@example.com"})

    first = _credit(gateway, customer.id)
    second = _credit(gateway, customer.id)
    with pytest.raises(StripeIdempotencyError):
        _credit(gateway, customer.id, amount=2000)

    assert first == second
    assert stripe_server.client().v1.customers.retrieve(customer.id).balance == -1000


def _credits(stripe_server: Any, customer_id: str, *purchase_ids: str) -> list[str]:
    return [
        stripe_server.client()
        .v1.customers.balance_transactions.create(
            customer_id, {"amount": -100, "currency": "eur", "metadata": {"purchase_id": purchase_id}}
        )
        .id
        for purchase_id in purchase_ids
    ]


def test_stripe_gateway_find_credit_pages_newest_first_to_the_purchase(
    stripe_server: Any, gateway: StripeApiGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.purchases.stripe, "LIST_PAGE_SIZE", 2)
    customer = stripe_server.client().v1.customers.create({"email": "ada@example.com"}).id
    wanted, *_ = _credits(stripe_server, customer, "pi_wanted", "pi_2", "pi_3", "pi_4", "pi_5")
    since = datetime.now(UTC) - timedelta(minutes=1)

    assert gateway.find_credit(customer, "pi_wanted", since) == wanted
    assert gateway.find_credit(customer, "pi_other", since) is None


def test_stripe_gateway_find_credit_stops_at_transactions_older_than_the_first_attempt(
    stripe_server: Any, gateway: StripeApiGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.purchases.stripe, "LIST_PAGE_SIZE", 1)
    customer = stripe_server.client().v1.customers.create({"email": "ada@example.com"}).id
    _credits(stripe_server, customer, "pi_wanted", "pi_2")

    assert gateway.find_credit(customer, "pi_wanted", datetime.now(UTC) + timedelta(hours=1)) is None


def test_stripe_gateway_find_credit_beyond_the_page_bound_is_unavailable(
    stripe_server: Any, gateway: StripeApiGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.purchases.stripe, "LIST_PAGE_SIZE", 1)
    monkeypatch.setattr(core.purchases.stripe, "MAX_LIST_PAGES", 2)
    customer = stripe_server.client().v1.customers.create({"email": "ada@example.com"}).id
    _credits(stripe_server, customer, "pi_wanted", "pi_2", "pi_3")

    with pytest.raises(StripeUnavailableError, match="more than 2 balance transactions"):
        gateway.find_credit(customer, "pi_wanted", datetime.now(UTC) - timedelta(minutes=1))


def test_stripe_gateway_find_credit_unknown_customer_is_permanent(gateway: StripeApiGateway) -> None:
    with pytest.raises(PermanentPurchaseError) as refused:
        gateway.find_credit("cus_Unknown0000", "pi_1", datetime.now(UTC))

    assert refused.value.reason == "unknown_customer"


@pytest.mark.parametrize("status", [500, 429])
def test_stripe_gateway_outage_is_unavailable(stripe_server: Any, gateway: StripeApiGateway, status: int) -> None:
    stripe_server.fail("/v1/customers", status=status, count=1)

    with pytest.raises(StripeUnavailableError):
        _credit(gateway, "cus_Any0000")


def test_stripe_gateway_credit_500_replayed_for_its_key_is_a_replayed_failure(
    stripe_server: Any, gateway: StripeApiGateway
) -> None:
    customer = stripe_server.client().v1.customers.create({"email": "ada@example.com"})
    stripe_server.fail("/v1/customers", status=500, count=1, method="POST", during=True)
    with pytest.raises(StripeUnavailableError) as first:
        _credit(gateway, customer.id)

    with pytest.raises(StripeReplayedFailureError):
        _credit(gateway, customer.id)

    assert not isinstance(first.value, StripeReplayedFailureError)
    assert _credit(gateway, customer.id, key="credit:k1:failed-1").startswith("cbtxn_")


def test_stripe_gateway_credit_500_before_idempotency_is_no_replayed_failure(
    stripe_server: Any, gateway: StripeApiGateway
) -> None:
    customer = stripe_server.client().v1.customers.create({"email": "ada@example.com"})
    stripe_server.fail("/v1/customers", status=500, count=1, method="POST")
    with pytest.raises(StripeUnavailableError) as first:
        _credit(gateway, customer.id)

    assert not isinstance(first.value, StripeReplayedFailureError)
    assert _credit(gateway, customer.id).startswith("cbtxn_")


def test_stripe_gateway_unknown_customer_is_permanent(gateway: StripeApiGateway) -> None:
    with pytest.raises(PermanentPurchaseError) as refused:
        _credit(gateway, "cus_Unknown0000")

    assert refused.value.reason == "unknown_customer"


def test_stripe_gateway_server_unreachable_is_unavailable() -> None:
    gateway = StripeApiGateway(lambda: API_KEY, api_base="http://127.0.0.1:9", timeout_seconds=1)

    with pytest.raises(StripeUnavailableError, match="could not be reached"):
        _credit(gateway, "cus_Any0000")


def test_stripe_gateway_payment_intent_read(stripe_server: Any, gateway: StripeApiGateway) -> None:
    client = stripe_server.client()
    customer = client.v1.customers.create({"email": "ada@example.com"})
    intent = client.v1.payment_intents.create(
        {"amount": 2500, "currency": "eur", "customer": customer.id, "metadata": {"promo_code": "WELCOME10"}}
    )

    view = gateway.payment_intent(intent.id)

    assert (view.id, view.amount, view.currency, view.customer_id) == (intent.id, 2500, "eur", customer.id)
    assert view.metadata == {"promo_code": "WELCOME10"}


def test_stripe_gateway_paid_payment_intent_read_with_when_its_charge_was_made(
    stripe_server: Any, gateway: StripeApiGateway
) -> None:
    client = stripe_server.client()
    customer = client.v1.customers.create({"email": "ada@example.com"})
    intent = client.v1.payment_intents.create(
        {"amount": 2500, "currency": "eur", "customer": customer.id, "payment_method": "pm_card_visa"}
    )
    paid = client.v1.payment_intents.confirm(intent.id, {"expand": ["latest_charge"]})

    view = gateway.payment_intent(intent.id)

    assert (view.created, view.charge_created) == (intent.created, paid.latest_charge.created)


def test_stripe_gateway_unknown_payment_intent_is_permanent(stripe_server: Any, gateway: StripeApiGateway) -> None:
    with pytest.raises(PermanentPurchaseError) as refused:
        gateway.payment_intent("pi_Unknown0000")

    assert refused.value.reason == "unknown_payment_intent"


def test_stripe_gateway_session_for_intent_without_checkout_endpoint_is_none(
    stripe_server: Any, gateway: StripeApiGateway
) -> None:
    # localstripe has no Checkout: GET /v1/checkout/sessions answers 404 "Unrecognized request URL".
    intent = stripe_server.client().v1.payment_intents.create({"amount": 2500, "currency": "eur"})

    assert gateway.checkout_session_for_intent(intent.id) is None


@pytest.mark.parametrize("status", [500, 429])
def test_stripe_gateway_session_for_intent_outage_is_unavailable(
    stripe_server: Any, gateway: StripeApiGateway, status: int
) -> None:
    stripe_server.fail("/v1/checkout/sessions", status=status, count=1)

    with pytest.raises(StripeUnavailableError):
        gateway.checkout_session_for_intent("pi_Any0000")


class _SessionList(BaseHTTPRequestHandler):
    """Answers ``GET /v1/checkout/sessions`` as Stripe does, with ``answer``; keeps the queries it was sent."""

    url: ClassVar[str] = ""
    answer: ClassVar[dict[str, Any]] = {}
    queries: ClassVar[list[list[tuple[str, str]]]] = []

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        type(self).queries.append(parse_qsl(url.query) if url.path == "/v1/checkout/sessions" else [])
        body = json.dumps(self.answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def session_list() -> Iterator[type[_SessionList]]:
    """A loopback server answering the Checkout Session list, which localstripe lacks."""
    handler: type[_SessionList] = type("SessionList", (_SessionList,), {"answer": {}, "queries": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval: shutdown waits for the loop's next turn.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _listed(*sessions: dict[str, Any]) -> dict[str, Any]:
    return {"object": "list", "url": "/v1/checkout/sessions", "has_more": False, "data": list(sessions)}


def test_stripe_gateway_session_for_intent_asks_by_intent_with_codes_expanded(
    session_list: type[_SessionList],
) -> None:
    session_list.answer = _listed(
        {
            "id": "cs_1",
            "object": "checkout.session",
            "payment_intent": "pi_1",
            "customer": "cus_1",
            "metadata": {},
            "discounts": [{"promotion_code": {"id": "promo_1", "object": "promotion_code", "code": "WELCOME10"}}],
        }
    )
    gateway = StripeApiGateway(lambda: API_KEY, api_base=session_list.url, timeout_seconds=5)

    view = gateway.checkout_session_for_intent("pi_1")

    assert view is not None
    assert (view.id, view.payment_intent, view.customer_id, view.promo_codes) == (
        "cs_1",
        "pi_1",
        "cus_1",
        ("WELCOME10",),
    )
    assert session_list.queries == [[("payment_intent", "pi_1"), ("expand[0]", "data.discounts.promotion_code")]]


def test_stripe_gateway_session_for_intent_empty_list_is_none(session_list: type[_SessionList]) -> None:
    session_list.answer = _listed()
    gateway = StripeApiGateway(lambda: API_KEY, api_base=session_list.url, timeout_seconds=5)

    assert gateway.checkout_session_for_intent("pi_1") is None
