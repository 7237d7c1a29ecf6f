"""Unit tests of core/purchases/credit.py: once per purchase, refusals recorded, Stripe outages raised."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.errors import UpstreamError
from core.observability import metrics
from core.purchases.credit import CreditOutcome, credit_idempotency_key, credit_purchase
from core.purchases.errors import PermanentPurchaseError, StripeUnavailableError
from core.purchases.models import Credit, CreditRecord, PromotionRequest, PurchaseEvent
from tests.fakes.purchases import FakePromotionStore, FakePurchaseStore, FakeStripeGateway

NOW = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
PURCHASED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_metrics() -> Iterator[None]:
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def _event(**changes: object) -> PurchaseEvent:
    fields: dict[str, object] = {
        "purchase_id": "pi_1",
        "customer_id": "cus_1",
        "amount": 2500,
        "currency": "eur",
        "promo_code": "welcome10",
        "purchased_at": PURCHASED_AT,
    }
    fields.update(changes)
    return PurchaseEvent.model_validate(fields)


def _promotions(**changes: object) -> FakePromotionStore:
    fields: dict[str, object] = {"credit": {"amount": 1000, "currency": "eur"}, "description": "Welcome credit"}
    fields.update(changes)
    store = FakePromotionStore()
    store.put("WELCOME10", PromotionRequest.model_validate(fields), NOW - timedelta(days=1))
    return store


def test_credit_purchase_usable_code_credits_negative_amount_with_key_description_and_metadata() -> None:
    stripe = FakeStripeGateway()

    result = credit_purchase(_event(), _promotions(), FakePurchaseStore(), stripe, NOW)

    assert result.outcome is CreditOutcome.CREDITED
    (call,) = stripe.calls
    assert call.customer_id == "cus_1"
    assert call.credit == Credit(amount=1000, currency="eur")
    assert call.description == "Welcome credit"
    assert call.metadata == {"purchase_id": "pi_1", "promo_code": "WELCOME10"}
    assert call.idempotency_key == credit_idempotency_key("pi_1", "WELCOME10")


def test_credit_purchase_credited_records_transaction_amount_and_currency() -> None:
    purchases = FakePurchaseStore()

    result = credit_purchase(_event(), _promotions(), purchases, FakeStripeGateway(), NOW)

    record = purchases.get("pi_1")
    assert record.credit == CreditRecord(
        balance_transaction=result.balance_transaction or "", amount=1000, currency="eur"
    )
    assert (record.customer_id, record.promo_code, record.credit_error) == ("cus_1", "WELCOME10", None)


def test_credit_purchase_no_description_says_promo_code() -> None:
    stripe = FakeStripeGateway()

    credit_purchase(_event(), _promotions(description=None), FakePurchaseStore(), stripe, NOW)

    assert stripe.calls[0].description == "Promo code WELCOME10"


def test_credit_idempotency_key_deterministic_short_and_per_code() -> None:
    key = credit_idempotency_key("pi_1", "WELCOME10")

    assert key == "credit:" + hashlib.sha256(b"pi_1|WELCOME10").hexdigest()
    assert key == credit_idempotency_key("pi_1", "WELCOME10")
    assert key != credit_idempotency_key("pi_1", "OTHER")
    assert len(credit_idempotency_key("p" * 128, "C" * 64)) <= 255


def test_credit_purchase_no_promo_code_calls_nothing() -> None:
    stripe, purchases = FakeStripeGateway(), FakePurchaseStore()

    result = credit_purchase(_event(promo_code=None), _promotions(), purchases, stripe, NOW)

    assert result.outcome is CreditOutcome.NO_PROMO_CODE
    assert (stripe.calls, purchases.records) == ([], {})


def test_credit_purchase_same_event_twice_credits_once() -> None:
    stripe, purchases, promotions = FakeStripeGateway(), FakePurchaseStore(), _promotions()
    first = credit_purchase(_event(), promotions, purchases, stripe, NOW)

    second = credit_purchase(_event(), promotions, purchases, stripe, NOW)

    assert second.outcome is CreditOutcome.ALREADY_CREDITED
    assert second.balance_transaction == first.balance_transaction
    assert len(stripe.calls) == 1


@pytest.mark.parametrize(
    ("promotions", "event", "reason"),
    [
        (FakePromotionStore(), _event(), "unknown_code"),
        (_promotions(active=False), _event(), "inactive_code"),
        (_promotions(expires_at=PURCHASED_AT), _event(), "expired_code"),
        (_promotions(), _event(currency="usd"), "currency_mismatch"),
    ],
)
def test_credit_purchase_unusable_code_records_reason_without_calling_stripe(
    promotions: FakePromotionStore, event: PurchaseEvent, reason: str
) -> None:
    stripe, purchases = FakeStripeGateway(), FakePurchaseStore()

    result = credit_purchase(event, promotions, purchases, stripe, NOW)

    assert (result.outcome, result.reason) == (CreditOutcome.REFUSED, reason)
    assert purchases.get("pi_1").credit_error == reason
    assert stripe.calls == []


def test_credit_purchase_code_expiring_after_purchase_credits_when_handled_later() -> None:
    promotions = _promotions(expires_at=PURCHASED_AT + timedelta(minutes=1))

    result = credit_purchase(_event(), promotions, FakePurchaseStore(), FakeStripeGateway(), NOW)

    assert result.outcome is CreditOutcome.CREDITED


def test_credit_purchase_naive_purchase_time_taken_as_utc() -> None:
    # A Purchase event may come from any publisher; its time without an offset is compared as UTC.
    promotions = _promotions(expires_at=datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=2))))

    result = credit_purchase(
        _event(purchased_at=datetime(2026, 3, 1, 11, 30)), promotions, FakePurchaseStore(), FakeStripeGateway(), NOW
    )

    assert (result.outcome, result.reason) == (CreditOutcome.REFUSED, "expired_code")


@pytest.mark.parametrize("reason", ["unknown_customer", "stripe_refused"])
def test_credit_purchase_stripe_refusal_recorded_not_raised(reason: str) -> None:
    purchases = FakePurchaseStore()
    stripe = FakeStripeGateway(PermanentPurchaseError(reason, "Stripe refused (400)"))

    result = credit_purchase(_event(), _promotions(), purchases, stripe, NOW)

    assert (result.outcome, result.reason) == (CreditOutcome.REFUSED, reason)
    record = purchases.get("pi_1")
    assert (record.credit, record.credit_error) == (None, reason)


def test_credit_purchase_stripe_unavailable_raises_and_records_nothing() -> None:
    purchases = FakePurchaseStore()
    stripe = FakeStripeGateway(StripeUnavailableError("Stripe failed (500)"))

    with pytest.raises(StripeUnavailableError):
        credit_purchase(_event(), _promotions(), purchases, stripe, NOW)

    assert purchases.records == {}


def test_credit_purchase_retry_after_outage_uses_same_key() -> None:
    stripe, purchases, promotions = (
        FakeStripeGateway(StripeUnavailableError("down")),
        FakePurchaseStore(),
        _promotions(),
    )
    with pytest.raises(StripeUnavailableError):
        credit_purchase(_event(), promotions, purchases, stripe, NOW)
    stripe.error = None

    credit_purchase(_event(), promotions, purchases, stripe, NOW)

    assert stripe.calls[0].idempotency_key == stripe.calls[1].idempotency_key


def test_credit_purchase_earlier_refusal_then_code_created_credits_and_clears_error() -> None:
    purchases, stripe = FakePurchaseStore(), FakeStripeGateway()
    credit_purchase(_event(), FakePromotionStore(), purchases, stripe, NOW)

    result = credit_purchase(_event(), _promotions(), purchases, stripe, NOW)

    assert result.outcome is CreditOutcome.CREDITED
    assert purchases.get("pi_1").credit_error is None


def test_credit_purchase_store_unreadable_raises_before_stripe() -> None:
    purchases, stripe = FakePurchaseStore(), FakeStripeGateway()
    purchases.fail_reads = True

    with pytest.raises(UpstreamError):
        credit_purchase(_event(), _promotions(), purchases, stripe, NOW)

    assert stripe.calls == []


def test_credit_purchase_refusal_unrecordable_raises_for_retry() -> None:
    purchases = FakePurchaseStore()
    purchases.fail_writes = True

    with pytest.raises(UpstreamError):
        credit_purchase(_event(), FakePromotionStore(), purchases, FakeStripeGateway(), NOW)


@pytest.mark.parametrize("failure", ["fail_writes", "crash_writes"])
def test_credit_purchase_record_failure_after_credit_never_raises_logs_and_counts(
    failure: str, logs: Callable[[], str]
) -> None:
    purchases = FakePurchaseStore()
    setattr(purchases, failure, True)

    result = credit_purchase(_event(), _promotions(), purchases, FakeStripeGateway(), NOW)

    assert result.outcome is CreditOutcome.CREDITED
    assert purchases.records == {}
    assert "recording the credit failed" in logs()
    assert metrics.metric_set["CreditRecordFailed"]["Value"] == [1.0]
