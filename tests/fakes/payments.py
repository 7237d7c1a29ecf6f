"""In-memory fakes of the payment worker's ports: the payments table, the Purchase publisher, the webhook queue and
the Stripe calls the worker makes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from core.errors import NotFoundError, UpstreamError
from core.purchases.errors import PermanentPurchaseError
from core.purchases.events import purchase_attributes
from core.purchases.models import Credit, PaymentRecord, PurchaseEvent
from core.purchases.payments import (
    MAX_EVENTS,
    STATUS_NO_CUSTOMER,
    STATUS_SUCCEEDED,
    Payment,
    PaymentWrite,
)
from core.purchases.ports import CheckoutSessionView, PaymentIntentView
from core.purchases.webhooks import VerifiedEvent


class FakePaymentStore:
    """Holds payments with the real store's rules: a PaymentIntent recorded under its first payment id for good, an
    event id recorded once, the first facts kept, one claimant.

    ``fail_mark`` makes ``mark_published`` raise ``UpstreamError``.
    """

    def __init__(self) -> None:
        self.records: dict[str, PaymentRecord] = {}
        self.ties: dict[str, str] = {}
        self.claims: dict[str, str] = {}
        self.fail_mark = False
        self.writes = 0

    def record(self, payment: Payment, event_id: str) -> PaymentWrite:
        """Record a payment for an event unless the event was recorded (or the set is full)."""
        now = datetime.now(UTC)
        payment = replace(payment, payment_id=self.ties.setdefault(payment.payment_intent, payment.payment_id))
        earlier = self.records.get(payment.payment_id)
        if earlier is not None and (event_id in earlier.events or len(earlier.events) >= MAX_EVENTS):
            return PaymentWrite(earlier, recorded=False)
        self.writes += 1
        if earlier is None:
            earlier = PaymentRecord(
                payment_id=payment.payment_id,
                payment_intent=payment.payment_intent,
                amount=payment.amount,
                currency=payment.currency,
                status=STATUS_NO_CUSTOMER,
                events=[],
                created_at=now,
                updated_at=now,
            )
        customer = earlier.customer_id or payment.customer_id
        record = earlier.model_copy(
            update={
                "customer_id": customer,
                "promo_code": earlier.promo_code or payment.promo_code,
                "status": STATUS_SUCCEEDED if customer else STATUS_NO_CUSTOMER,
                "events": sorted({*earlier.events, event_id}),
                "updated_at": now,
            }
        )
        self.records[payment.payment_id] = record
        return PaymentWrite(record, recorded=True)

    def claim_publication(self, payment_id: str, claimant: str) -> bool:
        """Claim unless published or claimed by another claimant."""
        record = self.records[payment_id]
        if record.purchase_published or self.claims.get(payment_id, claimant) != claimant:
            return False
        self.claims[payment_id] = claimant
        return True

    def release_publication(self, payment_id: str, claimant: str) -> None:
        """Drop ``claimant``'s claim, if it holds it."""
        if self.claims.get(payment_id) == claimant:
            del self.claims[payment_id]

    def mark_published(self, payment_id: str, message_id: str) -> None:
        """Mark published, or raise ``UpstreamError`` when ``fail_mark``."""
        if self.fail_mark:
            raise UpstreamError("marking the purchase published failed (ServiceUnavailable)")
        self.records[payment_id] = self.records[payment_id].model_copy(update={"purchase_published": True})
        self.claims.pop(payment_id, None)

    def get(self, payment_id: str) -> PaymentRecord:
        """Return a payment or raise ``NotFoundError``."""
        try:
            return self.records[payment_id]
        except KeyError:
            raise NotFoundError(f"payment {payment_id!r} not found") from None


class FakePurchasePublisher:
    """Keeps the Purchase events published, with their SNS attributes; ``error`` is raised by ``publish`` when set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.events: list[PurchaseEvent] = []
        self.attributes: list[dict[str, dict[str, str]]] = []

    def publish(self, event: PurchaseEvent) -> str:
        """Keep the event; return its message id."""
        if self.error is not None:
            raise self.error
        self.events.append(event)
        self.attributes.append(purchase_attributes(event))
        return f"sns-{len(self.events)}"


class FakeWebhookQueue:
    """Keeps the Stripe events enqueued; ``error`` is raised by ``send`` when set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.sent: list[tuple[str, VerifiedEvent]] = []

    def send(self, payload: str, event: VerifiedEvent) -> str:
        """Keep the payload and event; return a message id."""
        if self.error is not None:
            raise self.error
        self.sent.append((payload, event))
        return f"msg-{len(self.sent)}"


class FakePaymentGateway:
    """Answers the worker's Stripe calls from PaymentIntents and Checkout Sessions held in memory.

    ``error`` is raised by every call when set, ``lookup_error`` by ``checkout_session_for_intent`` only; an unknown
    id raises ``unknown``, as the adapter does for Stripe's ``resource_missing``. ``calls`` lists the ids asked for,
    a lookup by intent as ``session_for:<intent id>``.
    """

    def __init__(
        self,
        intents: Mapping[str, PaymentIntentView] | None = None,
        sessions: Mapping[str, CheckoutSessionView] | None = None,
        error: Exception | None = None,
    ) -> None:
        self.intents = dict(intents or {})
        self.sessions = dict(sessions or {})
        self.error = error
        self.lookup_error: Exception | None = None
        self.calls: list[str] = []

    def credit_balance(
        self, customer_id: str, credit: Credit, description: str, metadata: Mapping[str, str], idempotency_key: str
    ) -> str:
        """Not used by the payment worker: a fake of the port only."""
        raise NotImplementedError

    def find_credit(self, customer_id: str, purchase_id: str, since: datetime) -> str | None:
        """Not used by the payment worker: a fake of the port only."""
        raise NotImplementedError

    def payment_intent(self, intent_id: str) -> PaymentIntentView:
        """Return a held PaymentIntent."""
        self.calls.append(intent_id)
        if self.error is not None:
            raise self.error
        if intent_id not in self.intents:
            raise PermanentPurchaseError("unknown_payment_intent", "Stripe does not know the object (404)")
        return self.intents[intent_id]

    def checkout_session(self, session_id: str) -> CheckoutSessionView:
        """Return a held Checkout Session."""
        self.calls.append(session_id)
        if self.error is not None:
            raise self.error
        if session_id not in self.sessions:
            raise PermanentPurchaseError("unknown_checkout_session", "Stripe does not know the object (404)")
        return self.sessions[session_id]

    def checkout_session_for_intent(self, intent_id: str) -> CheckoutSessionView | None:
        """Return the held Checkout Session of a PaymentIntent, or ``None`` when none holds it."""
        self.calls.append(f"session_for:{intent_id}")
        error = self.lookup_error or self.error
        if error is not None:
            raise error
        return next((session for session in self.sessions.values() if session.payment_intent == intent_id), None)
