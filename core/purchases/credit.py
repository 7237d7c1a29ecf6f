"""The Stripe balance credit a purchase's promo code earns: at most once per purchase, whatever SNS redelivers.

What protects against what:

- A credit recorded on the purchase (``balance_transaction``) is final: a later delivery does nothing.
- The credit's terms (amount, currency, description, idempotency key, first attempt time) are saved on the purchase
  with a conditional write before the first Stripe call; the first writer wins. Every retry sends those terms, never
  ones rebuilt from the promotion, and skips the promotion's checks: a promotion changed, deactivated or deleted after
  Stripe credited (its answer lost) can neither make a retry send other parameters under the same key (Stripe's
  ``IdempotencyError``) nor record a refusal for a credit Stripe holds.
- Stripe's idempotency key (``credit_idempotency_key``) covers concurrent deliveries and a retry after a lost answer:
  Stripe answers the same key with the same result for 24 hours.
- Stripe replays that same result for 24 hours even when it is a 500 (the request may or may not have credited), and
  forgets the key after 24 hours. So a retry (terms saved earlier) first lists the customer's balance transactions for
  one whose ``metadata.purchase_id`` is this purchase, and records it as the credit when found. Only when none is
  found is the request sent: with the saved key while the first attempt is younger than ``KEY_REUSE_WINDOW`` (23
  hours, inside Stripe's 24), else with a new key derived from it (``renewed_idempotency_key``), safe because the list
  showed no credit, and the same for every retry of the same window, so concurrent retries still share one key.
- A 500 that Stripe replays for the key (``StripeReplayedFailureError``: ``Idempotent-Replayed: true``) says the key's
  first request is finished, not in flight (one in flight gets a 409), and that the key will only ever answer that
  500. So the list is looked at again (that request may have credited after the first look), and when it still shows
  none the request is sent at once under the next key (``replayed_failure_key``: the key and the number of replayed
  failures before it, the same for every retry, so concurrent retries share it again). Every key but the last one
  sent answers from Stripe's saved results without running: an attempt runs one request at Stripe at most, and a
  retry once Stripe is back credits, instead of meeting the replayed 500 until the 23 hours are over. A 500 Stripe
  did not replay is raised, as before: that request may still credit, or may have.
- ``IdempotencyError`` is retried (``StripeIdempotencyError``) and logged on its own, never recorded as a refusal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from core.errors import NotFoundError
from core.observability import logger, metrics
from core.purchases.errors import (
    PermanentPurchaseError,
    StripeIdempotencyError,
    StripeReplayedFailureError,
    StripeUnavailableError,
)
from core.purchases.models import Credit, CreditRecord, CreditTerms, Promotion, PurchaseEvent, PurchaseRecord
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


# How long a saved key is sent again: under Stripe's 24 hours, so a key is never sent after Stripe forgot it.
KEY_REUSE_WINDOW = timedelta(hours=23)


def renewed_idempotency_key(saved_key: str, age: timedelta) -> str:
    """Return the key of a retry ``age`` after the first attempt: the saved key within ``KEY_REUSE_WINDOW``, else the
    saved key with the number of the window the retry falls in (the same for every retry of that window)."""
    window = int(age / KEY_REUSE_WINDOW)
    return saved_key if window < 1 else f"{saved_key}:renewed-{window}"


# Replayed failures an attempt follows to a fresh key: each is a request Stripe ran and failed without crediting, one
# more per attempt that reached Stripe at most. Past this many, the attempt fails (the next window's key starts over).
MAX_REPLAYED_FAILURES = 10


def replayed_failure_key(key: str, failures: int) -> str:
    """Return the key sent after ``failures`` replayed failures of the attempt's key (saved or renewed): the key itself
    for none, else the key with that number (the same for every retry, so concurrent retries share it)."""
    return key if failures < 1 else f"{key}:failed-{failures}"


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

    A purchase without a code gets nothing; one credited already, nothing more. A first attempt checks the promotion
    and saves the credit's terms; a retry sends the saved terms (module docstring). A code that is no code
    (``promo_code_invalid``), an unknown, inactive or expired code, a currency other than the promotion's, an unknown
    customer or a request Stripe refuses is recorded as ``credit_error`` (its reason) and returned as ``REFUSED``:
    retrying cannot help. ``StripeUnavailableError`` (with ``StripeIdempotencyError``) and ``UpstreamError`` (AWS)
    propagate, so the event is retried. Once Stripe has credited, nothing raises.
    """
    code = event.promo_code
    if code is None and not event.promo_code_invalid:
        return CreditResult(CreditOutcome.NO_PROMO_CODE)
    earlier = _earlier(purchases, event.purchase_id)
    if earlier is not None and earlier.credit is not None:
        logger.info("purchase credited already", extra={"purchase_id": event.purchase_id})
        return CreditResult(CreditOutcome.ALREADY_CREDITED, earlier.credit.balance_transaction)
    try:
        code = _valid_code(event)
        terms = earlier.credit_terms if earlier is not None else None
        retry = terms is not None
        if terms is None:
            ours = _terms(event, code, promotions, now)
            terms = purchases.save_credit_terms(event, ours, now)
            # Another delivery saved its terms first: it may have called Stripe already.
            retry = terms != ours
        transaction = _credit(event, code, terms, stripe, now, retry=retry)
    except PermanentPurchaseError as exc:
        # Recorded before answering; a store failure here raises, and the retry decides again (nothing was credited).
        purchases.record_credit_error(event, exc.reason, now)
        logger.warning(
            "purchase earns no credit",
            extra={"purchase_id": event.purchase_id, "promo_code": code, "reason": exc.reason, "detail": str(exc)},
        )
        metrics.add_metric(name="CreditsRefused", unit="Count", value=1)
        return CreditResult(CreditOutcome.REFUSED, reason=exc.reason)
    credit = CreditRecord(balance_transaction=transaction, amount=terms.amount, currency=terms.currency)
    metrics.add_metric(name="PurchasesCredited", unit="Count", value=1)
    _record(purchases, event, credit, now)
    return CreditResult(CreditOutcome.CREDITED, transaction)


def _valid_code(event: PurchaseEvent) -> str:
    """The purchase's promo code; ``PermanentPurchaseError`` when the one it was published with is no code."""
    if event.promo_code is None:
        raise PermanentPurchaseError("invalid_code", "the purchase's promo code is not a valid code")
    return event.promo_code


def _terms(event: PurchaseEvent, code: str, promotions: PromotionStorePort, now: datetime) -> CreditTerms:
    """The terms of a first attempt, from the promotion; ``PermanentPurchaseError`` when it credits nothing."""
    try:
        promotion = promotions.get(code)
    except NotFoundError:
        raise PermanentPurchaseError("unknown_code", f"promo code {code} does not exist") from None
    usable_promotion(promotion, event)
    return CreditTerms(
        amount=promotion.credit.amount,
        currency=promotion.credit.currency,
        description=promotion.description or f"Promo code {code}",
        idempotency_key=credit_idempotency_key(event.purchase_id, code),
        first_attempt_at=now,
    )


def _credit(
    event: PurchaseEvent, code: str, terms: CreditTerms, stripe: StripeGateway, now: datetime, *, retry: bool
) -> str:
    """Credit the saved terms; on a retry, first look for the credit an earlier attempt made; after a replayed
    failure, look again, then send under the next key (module docstring)."""
    key = terms.idempotency_key
    first_attempt = _aware(terms.first_attempt_at)
    if retry:
        found = _found_credit(event, stripe, first_attempt)
        if found is not None:
            return found
        key = renewed_idempotency_key(key, _aware(now) - first_attempt)
        if key != terms.idempotency_key:
            logger.info("credit retried under a renewed idempotency key", extra={"purchase_id": event.purchase_id})
    for failures in range(MAX_REPLAYED_FAILURES + 1):
        try:
            return _send(event, code, terms, stripe, replayed_failure_key(key, failures))
        except StripeReplayedFailureError:
            # That key's request is finished: the credit it may have made shows now, or never will.
            found = _found_credit(event, stripe, first_attempt)
            if found is not None:
                return found
            logger.warning(
                "Stripe replayed a failed credit request: sent again at once under a new idempotency key",
                extra={"purchase_id": event.purchase_id, "replayed_failures": failures + 1},
            )
            metrics.add_metric(name="CreditReplayedFailures", unit="Count", value=1)
    raise StripeUnavailableError(
        f"Stripe replayed {MAX_REPLAYED_FAILURES + 1} failed credit requests of the purchase: retried later"
    )


def _found_credit(event: PurchaseEvent, stripe: StripeGateway, first_attempt: datetime) -> str | None:
    """The credit an earlier request made for the purchase, found among the customer's balance transactions."""
    found = stripe.find_credit(event.customer_id, event.purchase_id, first_attempt)
    if found is not None:
        logger.info(
            "credit of an earlier attempt found at Stripe",
            extra={"purchase_id": event.purchase_id, "balance_transaction": found},
        )
        metrics.add_metric(name="CreditsFoundAtStripe", unit="Count", value=1)
    return found


def _send(event: PurchaseEvent, code: str, terms: CreditTerms, stripe: StripeGateway, key: str) -> str:
    """Ask Stripe for the credit of the saved terms under ``key``."""
    try:
        return stripe.credit_balance(
            event.customer_id,
            Credit(amount=terms.amount, currency=terms.currency),
            terms.description,
            {"purchase_id": event.purchase_id, "promo_code": code},
            key,
        )
    except StripeIdempotencyError as exc:
        logger.error(
            "Stripe refused the credit's idempotency key reused with other parameters: retried",
            extra={"purchase_id": event.purchase_id, "detail": str(exc)},
        )
        metrics.add_metric(name="CreditIdempotencyErrors", unit="Count", value=1)
        raise


def _record(purchases: PurchaseStorePort, event: PurchaseEvent, credit: CreditRecord, now: datetime) -> None:
    """Record a credit Stripe made; never raise: the customer is credited, and a retry finds that credit (the saved
    key's replay, or the customer's balance transactions)."""
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
