"""The purchases store: per purchase, the Stripe balance credit (or why none) and the purchase notification.

Table key: ``purchase_id``. The credit subscriber and the notification subscriber write the same item at the same
time, each with an ``UpdateItem`` of its own attributes, so neither overwrites the other:

- credit: ``credit_terms`` (a map: ``amount``, ``currency``, ``description``, ``idempotency_key``,
  ``first_attempt_at``), written once before the first Stripe call, then ``balance_transaction``, ``credit_amount``,
  ``credit_currency``, or ``credit_error`` (a reason word);
- notification: ``notification_id``, or ``notification_error`` (the error's text, safe to show);
- both: ``customer_id``, ``promo_code`` (from the same event), ``updated_at``.

A recorded credit is final: a later credit or credit error never replaces it. Saved credit terms are final: the first
writer wins, and every retry sends them. A recorded notification id is final too.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from core.attributes import from_item, to_attribute
from core.errors import AWS_ERRORS, NotFoundError, UpstreamError, aws_error, error_code
from core.purchases.models import CreditRecord, CreditTerms, PurchaseEvent, PurchaseRecord

_MAX_ERROR_LENGTH = 1000


class PurchaseStorePort(Protocol):
    """The purchases table as the subscribers and ``GET /v1/purchases/{purchase_id}`` use it."""

    def get(self, purchase_id: str) -> PurchaseRecord:
        """Return what was done with a purchase; raise ``NotFoundError`` when nothing was."""
        ...

    def record_credit(self, event: PurchaseEvent, credit: CreditRecord, now: datetime) -> bool:
        """Record a purchase's credit unless one is recorded; return ``False`` when one is."""
        ...

    def record_credit_error(self, event: PurchaseEvent, reason: str, now: datetime) -> bool:
        """Record why a purchase earns no credit unless a credit is recorded; return ``False`` when one is."""
        ...

    def save_credit_terms(self, event: PurchaseEvent, terms: CreditTerms, now: datetime) -> CreditTerms:
        """Save the terms of a purchase's credit unless some are saved; return the saved ones (first writer wins)."""
        ...

    def record_notification(self, event: PurchaseEvent, notification_id: str, now: datetime) -> bool:
        """Record a purchase's notification unless another is recorded; return ``False`` when one is."""
        ...

    def record_notification_error(self, event: PurchaseEvent, error: str, now: datetime) -> bool:
        """Record why a purchase got no notification unless one is recorded; return ``False`` when one is."""
        ...


def _plain(value: Any) -> Any:
    """A deserialized map with DynamoDB's numbers (``Decimal``) as ints."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, Decimal):
        return int(value)
    return value


def _from_item(item: dict[str, Any]) -> PurchaseRecord:
    values = from_item(item)
    credit = None
    if "balance_transaction" in values:
        credit = CreditRecord(
            balance_transaction=values["balance_transaction"],
            amount=int(values["credit_amount"]),
            currency=values["credit_currency"],
        )
    terms = values.get("credit_terms")
    return PurchaseRecord(
        purchase_id=values["purchase_id"],
        credit_terms=CreditTerms.model_validate(_plain(terms)) if terms else None,
        customer_id=values.get("customer_id"),
        promo_code=values.get("promo_code"),
        credit=credit,
        credit_error=values.get("credit_error"),
        notification_id=values.get("notification_id"),
        notification_error=values.get("notification_error"),
        updated_at=values.get("updated_at"),
    )


class PurchaseStore:
    """Records what the subscribers did with each purchase in the DynamoDB ``purchases`` table (key: ``purchase_id``).

    Parameters
    ----------
    client:
        A boto3 DynamoDB client.
    table_name:
        The table's name.
    """

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def get(self, purchase_id: str) -> PurchaseRecord:
        """Return what was done with a purchase, read consistently; raise ``NotFoundError`` when nothing was."""
        try:
            response = self._client.get_item(
                TableName=self._table, Key={"purchase_id": {"S": purchase_id}}, ConsistentRead=True
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "reading purchase") from exc
        if "Item" not in response:
            raise NotFoundError(f"purchase {purchase_id!r} does not exist")
        return _from_item(response["Item"])

    def record_credit(self, event: PurchaseEvent, credit: CreditRecord, now: datetime) -> bool:
        """Record the balance credit Stripe made for a purchase; return ``False`` when a credit is recorded already.

        Clears a ``credit_error`` an earlier delivery of the event recorded (a code created since, for example).
        """
        return self._update(
            event,
            now,
            {
                "balance_transaction": credit.balance_transaction,
                "credit_amount": credit.amount,
                "credit_currency": credit.currency,
            },
            remove="credit_error",
            guard="balance_transaction",
            condition="attribute_not_exists(#balance_transaction)",
            action="recording credit",
        )

    def record_credit_error(self, event: PurchaseEvent, reason: str, now: datetime) -> bool:
        """Record why a purchase earns no credit (``PermanentPurchaseError.reason``); a recorded credit stays, and
        ``False`` is returned."""
        return self._update(
            event,
            now,
            {"credit_error": reason[:_MAX_ERROR_LENGTH]},
            remove=None,
            guard="balance_transaction",
            condition="attribute_not_exists(#balance_transaction)",
            action="recording credit error",
        )

    def save_credit_terms(self, event: PurchaseEvent, terms: CreditTerms, now: datetime) -> CreditTerms:
        """Save what the purchase's credit asks Stripe for, unless terms are saved already; return the saved terms.

        First writer wins (a conditional write): a concurrent delivery that lost gets the winner's terms, read
        consistently, and sends exactly what the winner sends.
        """
        saved = self._update(
            event,
            now,
            {"credit_terms": terms.model_dump(mode="json")},
            remove=None,
            guard="credit_terms",
            condition="attribute_not_exists(#credit_terms)",
            action="saving credit terms",
        )
        if saved:
            return terms
        winner = self.get(event.purchase_id).credit_terms
        if winner is None:  # only if the item lost its terms between the two calls, which nothing does
            raise UpstreamError("saving credit terms failed (terms vanished)")
        return winner

    def record_notification(self, event: PurchaseEvent, notification_id: str, now: datetime) -> bool:
        """Record the purchase notification's id; return ``False`` when another id is recorded already.

        Clears a ``notification_error`` an earlier delivery of the event recorded.
        """
        return self._update(
            event,
            now,
            {"notification_id": notification_id},
            remove="notification_error",
            guard="notification_id",
            condition="attribute_not_exists(#notification_id) OR #notification_id = :notification_id",
            action="recording notification",
        )

    def record_notification_error(self, event: PurchaseEvent, error: str, now: datetime) -> bool:
        """Record why a purchase got no notification; a recorded notification stays, and ``False`` is returned."""
        return self._update(
            event,
            now,
            {"notification_error": error[:_MAX_ERROR_LENGTH]},
            remove=None,
            guard="notification_id",
            condition="attribute_not_exists(#notification_id)",
            action="recording notification error",
        )

    def _update(
        self,
        event: PurchaseEvent,
        now: datetime,
        attributes: dict[str, Any],
        *,
        remove: str | None,
        guard: str,
        condition: str,
        action: str,
    ) -> bool:
        values = {"customer_id": event.customer_id, "updated_at": now.isoformat(), **attributes}
        if event.promo_code is not None:
            values["promo_code"] = event.promo_code
        # Names go through placeholders: DynamoDB reserves many words, and the condition names attributes too.
        names = {f"#{name}": name for name in values}
        expression = "SET " + ", ".join(f"#{name} = :{name}" for name in values)
        if remove:
            names[f"#{remove}"] = remove
            expression += f" REMOVE #{remove}"
        names[f"#{guard}"] = guard
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"purchase_id": {"S": event.purchase_id}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={f":{name}": to_attribute(value) for name, value in values.items()},
            )
        except AWS_ERRORS as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise aws_error(exc, action) from exc
        return True
