"""The Stripe balance credit a purchase's promo code earns: at most once per purchase, whatever SNS redelivers.

Once per purchase, by two locks: the purchases record (a credit recorded is never made again), and Stripe's
idempotency key, derived from the purchase id and the code, which covers the window between Stripe crediting and the
record being written (a crash, a concurrent duplicate delivery): Stripe answers the same key with the same balance
transaction for 24 hours, longer than Lambda's async retries (6 hours at most) keep an event.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from core.errors import NotFoundError
from core.observability import logger, metrics
from core.purchases.errors import PermanentPurchaseError
from core.purchases.models import CreditRecord, Promotion, PurchaseEvent, PurchaseRecord
from core.purchases.ports import StripeGateway
from core.purchases.promotions import PromotionStorePort
from core.purchases.purchases import PurchaseStorePort


class CreditOutcome(StrEnum):
    """What ``credit_purchase`` did with a purchase."""

    NO_PROMO_CODE = "no_promo_code"
    ALREADY_CREDITED = "already_credited"
    CREDITED = "credited"
    REFUSED = "refused"


@dataclass(frozen=True)
class CreditResult:
    """The outcome, the balance transaction when there is a credit, the reason when it was refused."""

    outcome: CreditOutcome
    balance_transaction: str | None = None
    reason: str | None = None


def credit_idempotency_key(purchase_id: str, code: str) -> str:
    """Return the Stripe idempotency key of a purchase's credit: the same for every delivery and retry of the event.

    A digest, so the key stays short (71 characters, Stripe takes 255) whatever the ids, and says nothing of them.
    """
    return "credit:" + hashlib.sha256(f"{purchase_id}|{code}".encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def usable_promotion(promotion: Promotion, event: PurchaseEvent) -> None:
    """Raise ``PermanentPurchaseError`` unless the promotion credits this purchase (active, not expired when the
    purchase was made, in the purchase's currency)."""
    if not promotion.active:
        raise PermanentPurchaseError("inactive_code", f"promo code {promotion.code} is not active")
    expires_at = promotion.expires_at
    # The purchase's own time decides, not the time the event is handled: a retry after the expiry still credits.
    if expires_at is not None and _aware(event.purchased_at) >= _aware(expires_at):
        raise PermanentPurchaseError("expired_code", f"promo code {promotion.code} had expired at the purchase")
    if promotion.credit.currency != event.currency:
        raise PermanentPurchaseError(
            "currency_mismatch",
            f"promo code {promotion.code} credits {promotion.credit.currency}, the purchase is in {event.currency}",
        )


def _earlier(purchases: PurchaseStorePort, purchase_id: str) -> PurchaseRecord | None:
    try:
        return purchases.get(purchase_id)
    except NotFoundError:
        return None


def credit_purchase(
    event: PurchaseEvent,
    promotions: PromotionStorePort,
    purchases: PurchaseStorePort,
    stripe: StripeGateway,
    now: datetime,
) -> CreditResult:
    """Credit the customer's Stripe balance with the promotion of the purchase's promo code, once; record it.

    A purchase without a code gets nothing; one credited already, nothing more. An unknown, inactive or expired code,
    a currency other than the promotion's, an unknown customer or a request Stripe refuses is recorded as
    ``credit_error`` (its reason) and returned as ``REFUSED``: retrying cannot help. ``StripeUnavailableError`` and
    ``UpstreamError`` (AWS) propagate, so the event is retried. Once Stripe has credited, nothing raises.
    """
    code = event.promo_code
    if code is None:
        return CreditResult(CreditOutcome.NO_PROMO_CODE)
    earlier = _earlier(purchases, event.purchase_id)
    if earlier is not None and earlier.credit is not None:
        logger.info("purchase credited already", extra={"purchase_id": event.purchase_id})
        return CreditResult(CreditOutcome.ALREADY_CREDITED, earlier.credit.balance_transaction)
    try:
        try:
            promotion = promotions.get(code)
        except NotFoundError:
            raise PermanentPurchaseError("unknown_code", f"promo code {code} does not exist") from None
        usable_promotion(promotion, event)
        transaction = stripe.credit_balance(
            event.customer_id,
            promotion.credit,
            promotion.description or f"Promo code {code}",
            {"purchase_id": event.purchase_id, "promo_code": code},
            credit_idempotency_key(event.purchase_id, code),
        )
    except PermanentPurchaseError as exc:
        # Recorded before answering; a store failure here raises, and the retry decides again (nothing was credited).
        purchases.record_credit_error(event, exc.reason, now)
        logger.warning(
            "purchase earns no credit",
            extra={"purchase_id": event.purchase_id, "promo_code": code, "reason": exc.reason, "detail": str(exc)},
        )
        metrics.add_metric(name="CreditsRefused", unit="Count", value=1)
        return CreditResult(CreditOutcome.REFUSED, reason=exc.reason)
    credit = CreditRecord(
        balance_transaction=transaction, amount=promotion.credit.amount, currency=promotion.credit.currency
    )
    metrics.add_metric(name="PurchasesCredited", unit="Count", value=1)
    _record(purchases, event, credit, now)
    return CreditResult(CreditOutcome.CREDITED, transaction)


def _record(purchases: PurchaseStorePort, event: PurchaseEvent, credit: CreditRecord, now: datetime) -> None:
    """Record a credit Stripe made; never raise: the customer is credited, and a retry would find the same key."""
    try:
        recorded = purchases.record_credit(event, credit, now)
    except Exception:
        logger.exception(
            "recording the credit failed",
            extra={"purchase_id": event.purchase_id, "balance_transaction": credit.balance_transaction},
        )
        metrics.add_metric(name="CreditRecordFailed", unit="Count", value=1)
        return
    logger.info(
        "purchase credited" if recorded else "purchase credited by a concurrent delivery",
        extra={
            "purchase_id": event.purchase_id,
            "balance_transaction": credit.balance_transaction,
            "amount": credit.amount,
            "currency": credit.currency,
        },
    )
