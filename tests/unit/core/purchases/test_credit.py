"""Unit tests of core/purchases/credit.py: once per purchase, refusals recorded, Stripe outages raised."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.errors import UpstreamError
from core.observability import metrics
from core.purchases.credit import (
    KEY_REUSE_WINDOW,
    MAX_REPLAYED_FAILURES,
    CreditOutcome,
    credit_idempotency_key,
    credit_purchase,
    renewed_idempotency_key,
    replayed_failure_key,
)
from core.purchases.errors import (
    PermanentPurchaseError,
    StripeIdempotencyError,
    StripeReplayedFailureError,
    StripeUnavailableError,
)
from core.purchases.models import Credit, CreditRecord, CreditTerms, PromotionRequest, PurchaseEvent
from tests.fakes.purchases import BalanceCredit, FakePromotionStore, FakePurchaseStore, FakeStripeGateway

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


KEY = credit_idempotency_key("pi_1", "WELCOME10")
TERMS = CreditTerms(
    amount=1000, currency="eur", description="Welcome credit", idempotency_key=KEY, first_attempt_at=NOW
)


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


def test_credit_purchase_invalid_code_records_invalid_code_without_calling_stripe() -> None:
    stripe, purchases = FakeStripeGateway(), FakePurchaseStore()

    result = credit_purchase(_event(promo_code="SUMMER SALE"), _promotions(), purchases, stripe, NOW)

    assert (result.outcome, result.reason) == (CreditOutcome.REFUSED, "invalid_code")
    record = purchases.get("pi_1")
    assert (record.credit_error, record.promo_code, record.credit_terms) == ("invalid_code", None, None)
    assert stripe.calls == []


def test_credit_purchase_empty_code_is_no_promo_code() -> None:
    stripe, purchases = FakeStripeGateway(), FakePurchaseStore()

    result = credit_purchase(_event(promo_code=""), _promotions(), purchases, stripe, NOW)

    assert result.outcome is CreditOutcome.NO_PROMO_CODE
    assert (stripe.calls, purchases.records) == ([], {})


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


def test_credit_purchase_stripe_unavailable_raises_and_records_only_the_terms() -> None:
    purchases = FakePurchaseStore()
    stripe = FakeStripeGateway(StripeUnavailableError("Stripe failed (500)"))

    with pytest.raises(StripeUnavailableError):
        credit_purchase(_event(), _promotions(), purchases, stripe, NOW)

    record = purchases.get("pi_1")
    assert (record.credit, record.credit_error) == (None, None)
    assert record.credit_terms == TERMS


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
    assert purchases.records["pi_1"].credit is None
    assert "recording the credit failed" in logs()
    assert metrics.metric_set["CreditRecordFailed"]["Value"] == [1.0]


# Retries: the saved terms, the look for an earlier credit, the renewed key.


def _first_attempt_failed(
    purchases: FakePurchaseStore, promotions: FakePromotionStore, *, credited: bool
) -> FakeStripeGateway:
    """Run a first attempt that raises: Stripe unreachable before crediting, or its answer lost after (``credited``)."""
    stripe = FakeStripeGateway()
    if credited:
        stripe.lose_answers = 1
    else:
        stripe.error = StripeUnavailableError("Stripe could not be reached")
    with pytest.raises(StripeUnavailableError):
        credit_purchase(_event(), promotions, purchases, stripe, NOW)
    stripe.error = None
    return stripe


def _changed(promotions: FakePromotionStore, change: str) -> None:
    if change == "deleted":
        promotions.delete("WELCOME10")
        return
    changes: dict[str, dict[str, object]] = {
        "amount": {"credit": {"amount": 2000, "currency": "eur"}},
        "description": {"description": "Spring credit"},
        "deactivated": {"active": False},
    }
    fields: dict[str, object] = {"credit": {"amount": 1000, "currency": "eur"}, "description": "Welcome credit"}
    fields.update(changes[change])
    promotions.put("WELCOME10", PromotionRequest.model_validate(fields), NOW)


PROMOTION_CHANGES = ["amount", "description", "deactivated", "deleted"]


@pytest.mark.parametrize("change", PROMOTION_CHANGES)
def test_credit_purchase_answer_lost_then_promotion_changed_records_the_credit_stripe_made(change: str) -> None:
    purchases, promotions = FakePurchaseStore(), _promotions()
    stripe = _first_attempt_failed(purchases, promotions, credited=True)
    _changed(promotions, change)

    result = credit_purchase(_event(), promotions, purchases, stripe, NOW + timedelta(minutes=5))

    (made,) = stripe.ledger
    assert (result.outcome, result.balance_transaction) == (CreditOutcome.CREDITED, made.id)
    record = purchases.get("pi_1")
    assert record.credit == CreditRecord(balance_transaction=made.id, amount=1000, currency="eur")
    assert record.credit_error is None


def test_credit_purchase_retry_finds_the_earlier_credit_without_asking_stripe_again() -> None:
    purchases, promotions = FakePurchaseStore(), _promotions()
    stripe = _first_attempt_failed(purchases, promotions, credited=True)

    credit_purchase(_event(), promotions, purchases, stripe, NOW + timedelta(minutes=5))

    assert len(stripe.calls) == 1
    assert stripe.lookups == [("cus_1", "pi_1", NOW)]


@pytest.mark.parametrize("change", PROMOTION_CHANGES)
def test_credit_purchase_retry_after_promotion_changed_sends_the_saved_terms(change: str) -> None:
    purchases, promotions = FakePurchaseStore(), _promotions()
    stripe = _first_attempt_failed(purchases, promotions, credited=False)
    _changed(promotions, change)

    result = credit_purchase(_event(), promotions, purchases, stripe, NOW + timedelta(minutes=5))

    assert result.outcome is CreditOutcome.CREDITED
    first, retry = stripe.calls
    assert retry == first
    assert (retry.credit, retry.description, retry.idempotency_key) == (
        Credit(amount=1000, currency="eur"),
        "Welcome credit",
        KEY,
    )


def test_credit_purchase_first_attempt_checks_the_promotion_not_stripe() -> None:
    stripe = FakeStripeGateway()

    credit_purchase(_event(), _promotions(), FakePurchaseStore(), stripe, NOW)

    assert stripe.lookups == []


def test_credit_purchase_terms_saved_before_stripe_is_called() -> None:
    purchases = FakePurchaseStore()
    purchases.fail_terms = True
    stripe = FakeStripeGateway()

    with pytest.raises(UpstreamError):
        credit_purchase(_event(), _promotions(), purchases, stripe, NOW)

    assert stripe.calls == []


def test_credit_purchase_concurrent_delivery_saved_first_its_terms_are_sent_after_a_look() -> None:
    purchases, stripe = FakePurchaseStore(), FakeStripeGateway()
    winner = TERMS.model_copy(update={"amount": 700, "first_attempt_at": NOW - timedelta(seconds=1)})
    purchases.concurrent_terms = winner

    result = credit_purchase(_event(), _promotions(), purchases, stripe, NOW)

    assert result.outcome is CreditOutcome.CREDITED
    assert stripe.lookups == [("cus_1", "pi_1", winner.first_attempt_at)]
    assert [call.credit.amount for call in stripe.calls] == [700]
    assert purchases.get("pi_1").credit_terms == winner


def test_credit_purchase_retry_within_the_window_sends_the_saved_key() -> None:
    purchases, promotions = FakePurchaseStore(), _promotions()
    stripe = _first_attempt_failed(purchases, promotions, credited=False)

    credit_purchase(_event(), promotions, purchases, stripe, NOW + KEY_REUSE_WINDOW - timedelta(seconds=1))

    assert [call.idempotency_key for call in stripe.calls] == [KEY, KEY]


def test_credit_purchase_retry_after_the_window_none_found_sends_a_renewed_key() -> None:
    purchases, promotions = FakePurchaseStore(), _promotions()
    stripe = _first_attempt_failed(purchases, promotions, credited=False)

    result = credit_purchase(_event(), promotions, purchases, stripe, NOW + timedelta(hours=25))

    assert result.outcome is CreditOutcome.CREDITED
    assert [call.idempotency_key for call in stripe.calls] == [KEY, f"{KEY}:renewed-1"]
    assert len(stripe.ledger) == 1


def test_credit_purchase_retry_after_the_window_credit_found_sends_nothing() -> None:
    purchases, promotions = FakePurchaseStore(), _promotions()
    stripe = _first_attempt_failed(purchases, promotions, credited=True)

    result = credit_purchase(_event(), promotions, purchases, stripe, NOW + timedelta(days=3))

    assert (result.outcome, len(stripe.calls), len(stripe.ledger)) == (CreditOutcome.CREDITED, 1, 1)


def test_renewed_idempotency_key_same_within_a_window_new_in_the_next() -> None:
    assert renewed_idempotency_key(KEY, KEY_REUSE_WINDOW - timedelta(seconds=1)) == KEY
    assert renewed_idempotency_key(KEY, KEY_REUSE_WINDOW) == f"{KEY}:renewed-1"
    assert renewed_idempotency_key(KEY, 2 * KEY_REUSE_WINDOW - timedelta(seconds=1)) == f"{KEY}:renewed-1"
    assert renewed_idempotency_key(KEY, 2 * KEY_REUSE_WINDOW) == f"{KEY}:renewed-2"
    assert len(renewed_idempotency_key(KEY, timedelta(days=3650))) <= 255


def test_credit_purchase_idempotency_error_raised_logged_never_recorded_as_refused(logs: Callable[[], str]) -> None:
    purchases = FakePurchaseStore()
    stripe = FakeStripeGateway(StripeIdempotencyError("Stripe refused an idempotency key reused (400)"))

    with pytest.raises(StripeUnavailableError):
        credit_purchase(_event(), _promotions(), purchases, stripe, NOW)

    assert purchases.get("pi_1").credit_error is None
    assert "idempotency key reused with other parameters" in logs()
    assert metrics.metric_set["CreditIdempotencyErrors"]["Value"] == [1.0]


def test_credit_purchase_retry_stripe_refusal_still_recorded() -> None:
    purchases, promotions = FakePurchaseStore(), _promotions()
    stripe = _first_attempt_failed(purchases, promotions, credited=False)
    stripe.error = PermanentPurchaseError("unknown_customer", "Stripe does not know the object (404)")

    result = credit_purchase(_event(), promotions, purchases, stripe, NOW + timedelta(minutes=5))

    assert (result.outcome, purchases.get("pi_1").credit_error) == (CreditOutcome.REFUSED, "unknown_customer")


# Stripe's saved 500s: a request that began executing keeps its 500 under its key, replayed for 24 hours.


class ReplayingStripeGateway(FakeStripeGateway):
    """``FakeStripeGateway`` whose next ``fail_inside`` requests under a key not seen before begin at Stripe and fail
    with a 500 (crediting first when ``credit_then_fail``), which Stripe then replays for the key as
    ``StripeReplayedFailureError``; ``unseen_lookups`` ``find_credit`` calls miss every credit (a request still
    running when Stripe was asked)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_inside = 0
        self.credit_then_fail = False
        self.unseen_lookups = 0
        self.failed_keys: set[str] = set()

    def credit_balance(
        self, customer_id: str, credit: Credit, description: str, metadata: Mapping[str, str], idempotency_key: str
    ) -> str:
        """Replay a saved failure, or fail inside Stripe, or credit as ``FakeStripeGateway`` does."""
        if idempotency_key in self.failed_keys:
            self.calls.append(BalanceCredit(customer_id, credit, description, dict(metadata), idempotency_key))
            raise StripeReplayedFailureError("Stripe replayed the key's saved failure (500)")
        if self.fail_inside > 0 and idempotency_key not in self.transactions:
            self.fail_inside -= 1
            self.failed_keys.add(idempotency_key)
            if self.credit_then_fail:
                super().credit_balance(customer_id, credit, description, metadata, idempotency_key)
            else:
                self.calls.append(BalanceCredit(customer_id, credit, description, dict(metadata), idempotency_key))
            raise StripeUnavailableError("Stripe failed (500)")
        return super().credit_balance(customer_id, credit, description, metadata, idempotency_key)

    def find_credit(self, customer_id: str, purchase_id: str, since: datetime) -> str | None:
        """Miss every credit for ``unseen_lookups`` calls, then find as ``FakeStripeGateway`` does."""
        found = super().find_credit(customer_id, purchase_id, since)
        if self.unseen_lookups > 0:
            self.unseen_lookups -= 1
            return None
        return found


def _failed_inside_stripe(
    purchases: FakePurchaseStore, promotions: FakePromotionStore, *, failures: int = 1, credited: bool = False
) -> ReplayingStripeGateway:
    """Run a first attempt whose request Stripe began and failed with a 500 (after crediting, when ``credited``); the
    next ``failures - 1`` requests under new keys fail so too."""
    stripe = ReplayingStripeGateway()
    stripe.fail_inside, stripe.credit_then_fail = failures, credited
    with pytest.raises(StripeUnavailableError):
        credit_purchase(_event(), promotions, purchases, stripe, NOW)
    return stripe


def test_credit_purchase_retry_after_a_replayed_500_none_found_credits_at_once_under_the_next_key() -> None:
    purchases, promotions = FakePurchaseStore(), _promotions()
    stripe = _failed_inside_stripe(purchases, promotions)

    result = credit_purchase(_event(), promotions, purchases, stripe, NOW + timedelta(minutes=1))

    (made,) = stripe.ledger
    assert (result.outcome, result.balance_transaction) == (CreditOutcome.CREDITED, made.id)
    assert [call.idempotency_key for call in stripe.calls] == [KEY, KEY, f"{KEY}:failed-1"]
    assert len(stripe.lookups) == 2
    assert purchases.get("pi_1").credit == CreditRecord(balance_transaction=made.id, amount=1000, currency="eur")
    assert metrics.metric_set["CreditReplayedFailures"]["Value"] == [1.0]


def test_credit_purchase_replayed_500_of_a_request_that_credited_after_the_first_look_records_that_credit() -> None:
    purchases, promotions = FakePurchaseStore(), _promotions()
    stripe = _failed_inside_stripe(purchases, promotions, credited=True)
    # The first look ran while that request was still crediting; the replay tells it is finished.
    stripe.unseen_lookups = 1

    result = credit_purchase(_event(), promotions, purchases, stripe, NOW + timedelta(minutes=1))

    (made,) = stripe.ledger
    assert (result.outcome, result.balance_transaction) == (CreditOutcome.CREDITED, made.id)
    assert [call.idempotency_key for call in stripe.calls] == [KEY, KEY]


def test_credit_purchase_replayed_500s_of_two_attempts_third_attempt_credits_under_the_key_after_both() -> None:
    purchases, promotions = FakePurchaseStore(), _promotions()
    stripe = _failed_inside_stripe(purchases, promotions, failures=2)
    with pytest.raises(StripeUnavailableError):
        credit_purchase(_event(), promotions, purchases, stripe, NOW + timedelta(minutes=1))

    result = credit_purchase(_event(), promotions, purchases, stripe, NOW + timedelta(minutes=2))

    assert result.outcome is CreditOutcome.CREDITED
    assert [call.idempotency_key for call in stripe.calls] == [
        KEY,
        KEY,
        f"{KEY}:failed-1",
        KEY,
        f"{KEY}:failed-1",
        f"{KEY}:failed-2",
    ]
    assert len(stripe.ledger) == 1


def test_credit_purchase_500_not_replayed_is_raised_without_another_request() -> None:
    # Stripe may still be crediting under that key, or may have: only a replay tells the request is finished.
    purchases, promotions = FakePurchaseStore(), _promotions()

    stripe = _failed_inside_stripe(purchases, promotions, credited=True)

    assert [call.idempotency_key for call in stripe.calls] == [KEY]
    assert stripe.lookups == []


def test_credit_purchase_replayed_500_after_the_window_follows_the_renewed_key() -> None:
    purchases, promotions = FakePurchaseStore(), _promotions()
    stripe = _failed_inside_stripe(purchases, promotions)
    stripe.failed_keys.add(f"{KEY}:renewed-1")

    result = credit_purchase(_event(), promotions, purchases, stripe, NOW + timedelta(hours=25))

    assert result.outcome is CreditOutcome.CREDITED
    assert [call.idempotency_key for call in stripe.calls][1:] == [f"{KEY}:renewed-1", f"{KEY}:renewed-1:failed-1"]


def test_credit_purchase_replayed_failures_past_the_bound_raise_unavailable_without_crediting() -> None:
    purchases, promotions = FakePurchaseStore(), _promotions()
    stripe = _failed_inside_stripe(purchases, promotions)
    stripe.failed_keys |= {replayed_failure_key(KEY, failures) for failures in range(MAX_REPLAYED_FAILURES + 1)}

    with pytest.raises(StripeUnavailableError, match="replayed"):
        credit_purchase(_event(), promotions, purchases, stripe, NOW + timedelta(minutes=1))

    assert stripe.ledger == []
    assert len(stripe.calls) == 1 + MAX_REPLAYED_FAILURES + 1
    assert purchases.get("pi_1").credit_error is None


def test_replayed_failure_key_the_attempt_key_then_one_per_failure() -> None:
    assert replayed_failure_key(KEY, 0) == KEY
    assert replayed_failure_key(KEY, 1) == f"{KEY}:failed-1"
    assert replayed_failure_key(f"{KEY}:renewed-1", 2) == f"{KEY}:renewed-1:failed-2"
    assert len(replayed_failure_key(renewed_idempotency_key(KEY, timedelta(days=3650)), MAX_REPLAYED_FAILURES)) <= 255
