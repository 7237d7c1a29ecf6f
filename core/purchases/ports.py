"""Ports of the purchases domain: Stripe and the Purchase topic, as the logic sees them; adapters and fakes implement
them. The stores' ports live next to their stores, with the records they take (``PaymentStorePort`` and ``Payment``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from core.purchases.models import Credit, PurchaseEvent


@dataclass(frozen=True)
class PaymentIntentView:
    """What the payment worker reads of a Stripe PaymentIntent."""

    id: str
    status: str
    amount: int
    currency: str
    customer_id: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)
    created: int = 0
    # What its charge has refunded (its ``latest_charge``, expanded): a PaymentIntent still says ``succeeded`` after a
    # full refund.
    amount_refunded: int = 0
    # When its charge was made (``latest_charge.created``, expanded; ``None`` when it was not): when the customer paid.
    # ``created`` may be much earlier (a Payment Element makes the intent when the checkout page loads).
    charge_created: int | None = None
    # What its capture took (``amount_received``, or its charge's ``amount_captured``): less than ``amount``, which
    # stays what was authorised, after a partial capture. ``None`` when Stripe's answer does not say.
    amount_received: int | None = None


@dataclass(frozen=True)
class CheckoutSessionView:
    """What the payment worker reads of a Stripe Checkout Session (its discounts expanded to promotion codes)."""

    id: str
    payment_intent: str | None
    customer_id: str | None
    promo_codes: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)


class StripeGateway(Protocol):
    """The Stripe calls the service makes. Failures come out as ``core.purchases.errors`` types only:
    ``StripeUnavailableError`` (5xx, 429, network: retry) or ``PermanentPurchaseError`` (a refusal: don't)."""

    def credit_balance(
        self, customer_id: str, credit: Credit, description: str, metadata: Mapping[str, str], idempotency_key: str
    ) -> str:
        """Credit ``customer_id``'s balance by ``credit`` (a negative balance transaction); return its id.

        A 5xx Stripe replays for ``idempotency_key`` (its first request finished, failed) is
        ``StripeReplayedFailureError``.
        """
        ...

    def find_credit(self, customer_id: str, purchase_id: str, since: datetime) -> str | None:
        """Return the id of ``customer_id``'s balance transaction whose ``metadata.purchase_id`` is ``purchase_id``,
        looking newest first back to ``since``; ``None`` when there is none."""
        ...

    def payment_intent(self, intent_id: str) -> PaymentIntentView:
        """Retrieve a PaymentIntent."""
        ...

    def checkout_session(self, session_id: str) -> CheckoutSessionView:
        """Retrieve a Checkout Session with the promotion codes of its discounts."""
        ...

    def checkout_session_for_intent(self, intent_id: str) -> CheckoutSessionView | None:
        """Return the Checkout Session that created a PaymentIntent, with the promotion codes of its discounts;
        ``None`` when none did (the intent was not made by Checkout)."""
        ...


@runtime_checkable
class PurchasePublisherPort(Protocol):
    """Where Purchase events go, as the payment worker sees it."""

    def publish(self, event: PurchaseEvent) -> str:
        """Publish one Purchase event; return the SNS message id. Raise ``UpstreamError`` when it was not taken."""
        ...
