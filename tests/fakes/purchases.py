"""In-memory fakes of the purchases domain's ports: promotions, the purchases record, and Stripe."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from core.errors import NotFoundError, UpstreamError
from core.purchases.errors import StripeIdempotencyError, StripeUnavailableError
from core.purchases.models import (
    Credit,
    CreditRecord,
    CreditTerms,
    Promotion,
    PromotionRequest,
    PurchaseEvent,
    PurchaseRecord,
)
from core.purchases.ports import CheckoutSessionView, PaymentIntentView


class FakePromotionStore:
    """Holds promotions by upper-case code."""

    def __init__(self, *promotions: Promotion) -> None:
        self.promotions = {promotion.code: promotion for promotion in promotions}

    def put(self, code: str, request: PromotionRequest, now: datetime) -> tuple[Promotion, bool]:
        """Create or replace a promotion, keeping the creation time."""
        earlier = self.promotions.get(code.upper())
        promotion = Promotion(
            code=code.upper(),
            credit=request.credit,
            description=request.description,
            active=request.active,
            expires_at=request.expires_at,
            created_at=earlier.created_at if earlier else now,
            updated_at=now,
        )
        self.promotions[promotion.code] = promotion
        return promotion, earlier is None

    def get(self, code: str) -> Promotion:
        """Return a promotion or raise ``NotFoundError``."""
        try:
            return self.promotions[code.upper()]
        except KeyError:
            raise NotFoundError(f"promotion {code.upper()!r} does not exist") from None

    def delete(self, code: str) -> None:
        """Delete a promotion or raise ``NotFoundError``."""
        if self.promotions.pop(code.upper(), None) is None:
            raise NotFoundError(f"promotion {code.upper()!r} does not exist")

    def page(self, after: str | None, limit: int) -> tuple[list[Promotion], bool]:
        """Return up to ``limit`` promotions by code, after ``after``, and whether more follow."""
        codes = [code for code in sorted(self.promotions) if after is None or code > after]
        return [self.promotions[code] for code in codes[:limit]], len(codes) > limit


class FakePurchaseStore:
    """Holds purchase records with the real store's rules: a recorded credit, saved credit terms or notification id is
    final.

    ``fail_reads`` makes ``get`` raise ``UpstreamError``; ``fail_writes`` makes every ``record_*`` raise it, and
    ``crash_writes`` raise a ``RuntimeError``, as a bug would; ``fail_terms`` makes ``save_credit_terms`` raise it.
    ``concurrent_terms`` are saved by "another delivery" just before this one's ``save_credit_terms`` (a race lost).
    """

    def __init__(self) -> None:
        self.records: dict[str, PurchaseRecord] = {}
        self.fail_reads = False
        self.fail_writes = False
        self.crash_writes = False
        self.fail_terms = False
        self.concurrent_terms: CreditTerms | None = None

    def get(self, purchase_id: str) -> PurchaseRecord:
        """Return a record or raise ``NotFoundError``."""
        if self.fail_reads:
            raise UpstreamError("reading purchase failed (ServiceUnavailable)")
        try:
            return self.records[purchase_id]
        except KeyError:
            raise NotFoundError(f"purchase {purchase_id!r} does not exist") from None

    def _write(self, event: PurchaseEvent, now: datetime, **changes: object) -> None:
        if self.crash_writes:
            raise RuntimeError("bug")
        if self.fail_writes:
            raise UpstreamError("recording purchase failed (ServiceUnavailable)")
        record = self.records.get(event.purchase_id) or PurchaseRecord(purchase_id=event.purchase_id)
        update = {"customer_id": event.customer_id, "updated_at": now, **changes}
        if event.promo_code is not None:
            update["promo_code"] = event.promo_code
        self.records[event.purchase_id] = record.model_copy(update=update)

    def record_credit(self, event: PurchaseEvent, credit: CreditRecord, now: datetime) -> bool:
        """Record a credit unless one is recorded."""
        earlier = self.records.get(event.purchase_id)
        if earlier is not None and earlier.credit is not None:
            return False
        self._write(event, now, credit=credit, credit_error=None)
        return True

    def record_credit_error(self, event: PurchaseEvent, reason: str, now: datetime) -> bool:
        """Record a credit error unless a credit is recorded."""
        earlier = self.records.get(event.purchase_id)
        if earlier is not None and earlier.credit is not None:
            return False
        self._write(event, now, credit_error=reason)
        return True

    def save_credit_terms(self, event: PurchaseEvent, terms: CreditTerms, now: datetime) -> CreditTerms:
        """Save credit terms unless some are saved; return the saved ones."""
        if self.fail_terms:
            raise UpstreamError("saving credit terms failed (ServiceUnavailable)")
        if self.concurrent_terms is not None:
            self._save_terms(event, self.concurrent_terms, now)
            self.concurrent_terms = None
        return self._save_terms(event, terms, now)

    def _save_terms(self, event: PurchaseEvent, terms: CreditTerms, now: datetime) -> CreditTerms:
        earlier = self.records.get(event.purchase_id)
        if earlier is not None and earlier.credit_terms is not None:
            return earlier.credit_terms
        record = earlier or PurchaseRecord(purchase_id=event.purchase_id)
        self.records[event.purchase_id] = record.model_copy(
            update={"customer_id": event.customer_id, "promo_code": event.promo_code, "credit_terms": terms}
        )
        return terms

    def record_notification(self, event: PurchaseEvent, notification_id: str, now: datetime) -> bool:
        """Record a notification id unless another is recorded."""
        earlier = self.records.get(event.purchase_id)
        if earlier is not None and earlier.notification_id not in (None, notification_id):
            return False
        self._write(event, now, notification_id=notification_id, notification_error=None)
        return True

    def record_notification_error(self, event: PurchaseEvent, error: str, now: datetime) -> bool:
        """Record a notification error unless a notification is recorded."""
        earlier = self.records.get(event.purchase_id)
        if earlier is not None and earlier.notification_id is not None:
            return False
        self._write(event, now, notification_error=error)
        return True


@dataclass(frozen=True)
class BalanceCredit:
    """One ``credit_balance`` call as the fake received it."""

    customer_id: str
    credit: Credit
    description: str
    metadata: dict[str, str]
    idempotency_key: str


@dataclass(frozen=True)
class BalanceTransaction:
    """A credit the fake made: its id, the customer and the call that made it."""

    id: str
    call: BalanceCredit


class FakeStripeGateway:
    """Credits balances in memory, answering the same idempotency key with the same transaction, and the same key with
    other parameters with ``StripeIdempotencyError``, as Stripe does.

    ``error`` is raised by every call when set (a ``StripeUnavailableError`` or ``PermanentPurchaseError``);
    ``lose_answers`` credits made whose answer is then lost (``StripeUnavailableError``, as a timeout or a 500 after
    execution). ``ledger`` lists the credits made, ``lookups`` the ``find_credit`` calls.
    """

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.lose_answers = 0
        self.calls: list[BalanceCredit] = []
        self.lookups: list[tuple[str, str, datetime]] = []
        self.transactions: dict[str, BalanceTransaction] = {}
        self.ledger: list[BalanceTransaction] = []

    def credit_balance(
        self, customer_id: str, credit: Credit, description: str, metadata: Mapping[str, str], idempotency_key: str
    ) -> str:
        """Record the call; return the transaction of its idempotency key."""
        call = BalanceCredit(customer_id, credit, description, dict(metadata), idempotency_key)
        self.calls.append(call)
        if self.error is not None:
            raise self.error
        earlier = self.transactions.get(idempotency_key)
        if earlier is not None and earlier.call != call:
            raise StripeIdempotencyError("Stripe refused an idempotency key reused with other parameters (400)")
        if earlier is None:
            earlier = self.transactions[idempotency_key] = BalanceTransaction(f"cbtxn_{len(self.ledger) + 1}", call)
            self.ledger.append(earlier)
        if self.lose_answers > 0:
            self.lose_answers -= 1
            raise StripeUnavailableError("Stripe failed (500)")
        return earlier.id

    def find_credit(self, customer_id: str, purchase_id: str, since: datetime) -> str | None:
        """Return the newest credit of the customer for the purchase, or ``None``."""
        self.lookups.append((customer_id, purchase_id, since))
        if self.error is not None:
            raise self.error
        for transaction in reversed(self.ledger):
            if transaction.call.customer_id == customer_id and transaction.call.metadata.get("purchase_id") == (
                purchase_id
            ):
                return transaction.id
        return None

    def payment_intent(self, intent_id: str) -> PaymentIntentView:
        """Not used by the credit: a fake of the port only."""
        raise NotImplementedError

    def checkout_session(self, session_id: str) -> CheckoutSessionView:
        """Not used by the credit: a fake of the port only."""
        raise NotImplementedError

    def checkout_session_for_intent(self, intent_id: str) -> CheckoutSessionView | None:
        """Not used by the credit: a fake of the port only."""
        raise NotImplementedError
