"""The payments table: payments taken in from Stripe webhooks, recorded once per Stripe event, published once.

Table key: ``payment_id``. A payment is recorded under the payment id its PaymentIntent had when the intent was first
recorded (its ``metadata.payment_id``, else the intent's id), and under that id for good, whatever the intent's
metadata says later: a shop's backend commonly tags an intent with its order number after the payment, and a payment
recorded again under the new id would publish a second Purchase event, a second promo credit and a second
notification. Two kinds of item:

- the intent's tie (key ``intent#<PaymentIntent id>``, never a payment id: those hold no ``#``): ``tied_payment_id``,
  set once (``if_not_exists``), so concurrent workers of one intent agree on one payment id. An intent recorded before
  ties existed has none; one recorded under its own id then is found by that id and tied to it. (One recorded under a
  ``metadata.payment_id`` that changed since cannot be found without an index on the intent: it is tied to the new
  id.)
- the payment, one per payment id:

  - ``events``: a string set of the Stripe event ids recorded for it. A write is conditional on its event id not being
    in the set, so a replayed event (Stripe retries, SQS delivers twice) changes nothing; two different events of one
    payment (``payment_intent.succeeded`` and ``checkout.session.completed``) make one item. The set is bounded
    (``MAX_EVENTS``): a payment has a handful of events, and an item has a size limit.
  - the first event's facts are kept (``if_not_exists``); a later event only adds what was missing: a customer, a
    promo code. Two PaymentIntents given one ``metadata.payment_id`` make one payment: the first one's.
  - ``status``: ``succeeded``, or ``no_customer`` while no event named a customer (no Purchase event can be published
    for it: the event needs ``customer_id``).
  - publication: ``publish_claim`` (the attempt that publishes: its Stripe event id and a token of its own) with
    ``publish_claimed_until``, then ``purchase_published`` once SNS took the Purchase event. The claim makes workers
    that handle the payment's events at once, or one event twice, publish one Purchase event; an attempt whose
    publish failed releases its claim, and a claim older than its lease may be taken over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from botocore.exceptions import ClientError

from core.errors import AWS_ERRORS, NotFoundError, aws_error, error_code
from core.purchases.models import PaymentRecord
from core.times import iso_time

STATUS_SUCCEEDED = "succeeded"
STATUS_NO_CUSTOMER = "no_customer"
# The key of a PaymentIntent's tie to its payment id is this prefix and the intent's id; ``#`` is in no payment id
# (``ID_PATTERN``), so a tie is never read as a payment, nor a payment as a tie.
INTENT_TIE_PREFIX = "intent#"
# Stripe event ids kept per payment; a payment sees two or three events of the types handled.
MAX_EVENTS = 20
# How long a worker's claim to publish a payment's Purchase event holds against the workers of its other events; the
# claimant itself may always publish again (its message is retried after the queue's visibility timeout).
DEFAULT_CLAIM_SECONDS = 300


@dataclass(frozen=True)
class Payment:
    """A succeeded payment, as a Stripe event and the PaymentIntent retrieved for it tell it."""

    payment_id: str
    payment_intent: str
    amount: int
    currency: str
    customer_id: str | None = None
    promo_code: str | None = None


@dataclass(frozen=True)
class PaymentWrite:
    """The payment as stored after a ``record``; ``recorded`` is ``False`` when its event id was recorded before."""

    record: PaymentRecord
    recorded: bool


@runtime_checkable
class PaymentStorePort(Protocol):
    """The payments table as the payment worker and the admin route use it."""

    def record(self, payment: Payment, event_id: str) -> PaymentWrite:
        """Record a payment for a Stripe event under the payment id its PaymentIntent was first recorded with
        (``payment.payment_id`` for an intent not seen before); an event id recorded before changes nothing."""
        ...

    def claim_publication(self, payment_id: str, claimant: str) -> bool:
        """Claim the publication of a payment's Purchase event for ``claimant`` (one attempt's: its Stripe event id
        and a token of its own); ``False`` when it was published already or another claimant's claim holds."""
        ...

    def release_publication(self, payment_id: str, claimant: str) -> None:
        """Drop ``claimant``'s claim (its publish failed), so that a retry need not wait for the lease to end."""
        ...

    def mark_published(self, payment_id: str, message_id: str) -> None:
        """Record that the payment's Purchase event was published (SNS message id)."""
        ...

    def get(self, payment_id: str) -> PaymentRecord:
        """Return a payment; raise ``NotFoundError`` when there is none."""
        ...


def _record(item: dict[str, Any]) -> PaymentRecord:
    return PaymentRecord(
        payment_id=item["payment_id"]["S"],
        payment_intent=item["payment_intent"]["S"],
        customer_id=item.get("customer_id", {}).get("S"),
        amount=int(item["amount"]["N"]),
        currency=item["currency"]["S"],
        promo_code=item.get("promo_code", {}).get("S"),
        status=item["status"]["S"],
        events=sorted(item.get("events", {}).get("SS", [])),
        purchase_published=item.get("purchase_published", {}).get("BOOL", False),
        created_at=item["created_at"]["S"],
        updated_at=item["updated_at"]["S"],
    )


def _conditional_failure(exc: Exception) -> bool:
    return isinstance(exc, ClientError) and error_code(exc) == "ConditionalCheckFailedException"


class PaymentStore:
    """Reads and writes the payments table (key ``payment_id``: payments and intents' ties, module docstring);
    implements ``PaymentStorePort``.

    Parameters
    ----------
    client:
        A boto3 DynamoDB client.
    table_name:
        The table's name.
    claim_seconds:
        How long a claim to publish holds against other claimants.
    clock:
        Unix time, injectable for tests.
    """

    def __init__(
        self,
        client: Any,
        table_name: str,
        claim_seconds: int = DEFAULT_CLAIM_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._table = table_name
        self._claim_seconds = claim_seconds
        self._clock = clock

    def record(self, payment: Payment, event_id: str) -> PaymentWrite:
        """Record a payment for a Stripe event under the payment id its intent is tied to, in one conditional write
        after the tie's read (and, for an intent not seen before, its write); read it back when the event was seen."""
        tied = self._tied_payment_id(payment)
        if tied != payment.payment_id:
            payment = replace(payment, payment_id=tied)
        sets = [
            "payment_intent = if_not_exists(payment_intent, :intent)",
            "amount = if_not_exists(amount, :amount)",
            "currency = if_not_exists(currency, :currency)",
            "created_at = if_not_exists(created_at, :now)",
            "updated_at = :now",
        ]
        values: dict[str, Any] = {
            ":intent": {"S": payment.payment_intent},
            ":amount": {"N": str(payment.amount)},
            ":currency": {"S": payment.currency},
            ":now": {"S": iso_time(self._clock())},
            ":event": {"SS": [event_id]},
            ":event_id": {"S": event_id},
            ":max": {"N": str(MAX_EVENTS)},
        }
        if payment.customer_id:
            sets += ["customer_id = if_not_exists(customer_id, :customer)", "#status = :succeeded"]
            values |= {":customer": {"S": payment.customer_id}, ":succeeded": {"S": STATUS_SUCCEEDED}}
        else:
            sets.append("#status = if_not_exists(#status, :no_customer)")
            values[":no_customer"] = {"S": STATUS_NO_CUSTOMER}
        if payment.promo_code:
            sets.append("promo_code = if_not_exists(promo_code, :promo)")
            values[":promo"] = {"S": payment.promo_code}
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key={"payment_id": {"S": payment.payment_id}},
                UpdateExpression=f"SET {', '.join(sets)} ADD #events :event",
                ConditionExpression=(
                    "attribute_not_exists(#events) OR (NOT contains(#events, :event_id) AND size(#events) < :max)"
                ),
                ExpressionAttributeNames={"#events": "events", "#status": "status"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except AWS_ERRORS as exc:
            if _conditional_failure(exc):
                return PaymentWrite(self.get(payment.payment_id), recorded=False)
            raise aws_error(exc, "recording the payment") from exc
        return PaymentWrite(_record(answer["Attributes"]), recorded=True)

    def _tied_payment_id(self, payment: Payment) -> str:
        """Return the payment id ``payment``'s PaymentIntent is tied to, tying it to ``payment.payment_id`` (or to the
        intent's own id, when the intent was recorded under it before ties existed) when it is tied to none."""
        key = {"payment_id": {"S": INTENT_TIE_PREFIX + payment.payment_intent}}
        try:
            found = self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        except AWS_ERRORS as exc:
            raise aws_error(exc, "reading the payment of the PaymentIntent") from exc
        if found:
            return str(found["tied_payment_id"]["S"])
        proposed = payment.payment_id
        if proposed != payment.payment_intent and self._recorded_under_its_own_id(payment.payment_intent):
            proposed = payment.payment_intent
        try:
            # ``if_not_exists``: a concurrent worker of the same intent may have tied it first; both then use its id.
            answer = self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression=(
                    "SET tied_payment_id = if_not_exists(tied_payment_id, :payment), "
                    "payment_intent = :intent, created_at = if_not_exists(created_at, :now)"
                ),
                ExpressionAttributeValues={
                    ":payment": {"S": proposed},
                    ":intent": {"S": payment.payment_intent},
                    ":now": {"S": iso_time(self._clock())},
                },
                ReturnValues="ALL_NEW",
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "tying the PaymentIntent to its payment") from exc
        return str(answer["Attributes"]["tied_payment_id"]["S"])

    def _recorded_under_its_own_id(self, intent_id: str) -> bool:
        """Whether the intent was recorded under its own id before ties existed (its payment item, no tie)."""
        try:
            item = self._client.get_item(
                TableName=self._table, Key={"payment_id": {"S": intent_id}}, ConsistentRead=True
            ).get("Item")
        except AWS_ERRORS as exc:
            raise aws_error(exc, "reading the payment") from exc
        return bool(item) and item.get("payment_intent", {}).get("S") == intent_id

    def claim_publication(self, payment_id: str, claimant: str) -> bool:
        """Claim the publication of a payment's Purchase event, unless published or claimed by another claimant."""
        now = self._clock()
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"payment_id": {"S": payment_id}},
                UpdateExpression="SET publish_claim = :me, publish_claimed_until = :until",
                ConditionExpression=(
                    "attribute_exists(payment_id)"
                    " AND (attribute_not_exists(purchase_published) OR purchase_published = :false)"
                    " AND (attribute_not_exists(publish_claim) OR publish_claim = :me OR publish_claimed_until < :now)"
                ),
                ExpressionAttributeValues={
                    ":me": {"S": claimant},
                    ":until": {"N": str(int(now) + self._claim_seconds)},
                    ":now": {"N": str(int(now))},
                    ":false": {"BOOL": False},
                },
            )
        except AWS_ERRORS as exc:
            if _conditional_failure(exc):
                return False
            raise aws_error(exc, "claiming the purchase publication") from exc
        return True

    def release_publication(self, payment_id: str, claimant: str) -> None:
        """Drop ``claimant``'s claim; a claim another attempt holds by now is left as it is."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"payment_id": {"S": payment_id}},
                UpdateExpression="REMOVE publish_claim, publish_claimed_until",
                ConditionExpression="publish_claim = :me",
                ExpressionAttributeValues={":me": {"S": claimant}},
            )
        except AWS_ERRORS as exc:
            if _conditional_failure(exc):
                return
            raise aws_error(exc, "releasing the purchase publication") from exc

    def mark_published(self, payment_id: str, message_id: str) -> None:
        """Record that the payment's Purchase event was published, and drop the claim."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"payment_id": {"S": payment_id}},
                UpdateExpression=(
                    "SET purchase_published = :true, purchase_message_id = :message, published_at = :now "
                    "REMOVE publish_claim, publish_claimed_until"
                ),
                ConditionExpression="attribute_exists(payment_id)",
                ExpressionAttributeValues={
                    ":true": {"BOOL": True},
                    ":message": {"S": message_id},
                    ":now": {"S": iso_time(self._clock())},
                },
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "marking the purchase published") from exc

    def get(self, payment_id: str) -> PaymentRecord:
        """Return a payment, read consistently; raise ``NotFoundError`` when there is none."""
        if payment_id.startswith(INTENT_TIE_PREFIX):
            raise NotFoundError(f"payment {payment_id!r} not found")
        try:
            answer = self._client.get_item(
                TableName=self._table, Key={"payment_id": {"S": payment_id}}, ConsistentRead=True
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "reading the payment") from exc
        item = answer.get("Item")
        if not item:
            raise NotFoundError(f"payment {payment_id!r} not found")
        return _record(item)
