"""The delivery ledger: one record per notification and one row per delivery, telling the status of each.

Table key: ``notification_id`` + ``delivery_key``. The notification's own record sits under ``NOTIFICATION_KEY``
(``#``, which sorts before every delivery key); the producer writes it, once per publish. Delivery rows are written
by the consumer as outcomes happen, so a delivery without a row has not been attempted yet: it is ``queued`` (or,
on a record kept past the ledger's days for another of its deliveries, its row has expired: ``expired``).

Only when a publish could not enqueue every delivery does the producer write more: the SQS message ids of those it
did enqueue, on the record (``enqueued``), and a ``failed`` row with no attempt for each of the others. A retry of
that publish reads them to enqueue only the rest, and deletes those rows first.

A delivery row also keeps its story: ``attempts`` over every run (a redrive starts a new run, ``redriven`` counts
them), ``next_attempt_at`` while it is ``retrying``, and ``history``, the most recent attempts with their outcome,
appended by the same write that records each outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import Enum
from typing import Any, NamedTuple, TypedDict

from core import pages
from core.errors import AWS_ERRORS, NotFoundError, UpstreamError, aws_error, error_code
from core.models import DELIVERY_KEY_BYTES, DeliveryStatus
from core.times import epoch_time, utc_now

NOTIFICATION_KEY = "#"
# ``update``'s ``unchanged_since`` for a row the caller found absent: written only while there is still none.
ROW_ABSENT = ""
PAGE_SIZE = 100
# How long a status's counts read the deliveries' statuses when the caller gives no time: a Query page holds 1 MB of
# whole rows (the projection is applied after), a few thousand deliveries, and a send to a million users has hundreds.
SUMMARY_SECONDS = 4.0
# The attempts a row's history keeps: the most recent ones. A delivery redriven again and again would otherwise grow
# its row towards DynamoDB's 400 KB item limit, and then no outcome could be written to it any more.
HISTORY_LIMIT = 50
# BatchGetItem takes at most 100 keys a call; keys it leaves unprocessed are asked for again, this many calls in all.
_BATCH_GET_KEYS = 100
_BATCH_GET_TRIES = 4
_MAX_ERROR_LENGTH = 1000
# How long a redrive call's claim on a delivery's next run holds (its send to SQS, retries and all, takes far less).
REDRIVE_CLAIM_SECONDS = 120


def _update_condition(
    before_run: int | None, unchanged_since: str | None, names: dict[str, str], values: dict[str, Any]
) -> str:
    """Return the condition of a row's update: never over ``delivered``; with ``before_run`` only while the row counts
    fewer redrives; with ``unchanged_since`` only while the row is as the caller read it (its names and values added
    to the update's)."""
    condition = "(attribute_not_exists(#s) OR #s <> :delivered)"
    if before_run is not None:
        names["#d"] = "redriven"
        values[":run"] = {"N": str(before_run)}
        condition += " AND (attribute_not_exists(#d) OR #d < :run)"
    if unchanged_since == ROW_ABSENT:
        condition += " AND attribute_not_exists(#s)"
    elif unchanged_since is not None:
        values[":was"] = {"S": unchanged_since}
        condition += " AND #u = :was"
    return condition


class Delivery(NamedTuple):
    """One expected delivery of a notification: its key, integration name and channel type."""

    key: str
    integration: str
    type: str


class NotificationRecord(NamedTuple):
    """What the ledger keeps of a notification: where it came from and which deliveries it expects.

    ``request_digest`` is the digest of the request an idempotent publish was made with; ``enqueued`` maps delivery
    key to SQS message id, kept only after a publish that could not enqueue every delivery (``None`` otherwise), and
    ``unsent`` the keys of those it could not (until a retry takes them up); ``error`` why its expansion to an audience
    failed (a send's, or a publish's subscribers), when it did.
    """

    notification_id: str
    source: str
    channel: str
    topic: str
    created_at: str
    caller: str | None
    delivery_count: int
    deliveries: tuple[Delivery, ...] = ()
    request_digest: str | None = None
    enqueued: dict[str, str] | None = None
    error: str | None = None
    unsent: frozenset[str] = frozenset()


# A delivery without a row that its publish's record says was not enqueued: its failed row's write failed too.
NOT_ENQUEUED = "not enqueued: the publish could not send it to the delivery queue"


class AttemptRecord(TypedDict):
    """One attempt of a delivery, as its row's ``history`` keeps it.

    ``at`` is when its outcome was recorded (ISO 8601 UTC); ``attempt`` the row's ``attempts`` with it counted (over
    every run, as the status route shows them); ``status`` the row's status it led to (``delivered``, ``retrying``,
    ``failed``, ``dead`` or ``skipped``); ``error`` its error, or ``None``.
    """

    at: str
    attempt: int
    status: str
    error: str | None


class LedgerEntry(NamedTuple):
    """One delivery's row of the ledger.

    ``attempts`` counts the attempts of every run, those before a redrive too; ``redriven`` how often the delivery was
    redriven; ``next_attempt_at`` (ISO 8601 UTC) when the next attempt is due, only while ``retrying``; ``history`` the
    most recent attempts, oldest first (at most ``HISTORY_LIMIT``; pacing waits and 429s are no attempts).
    """

    notification_id: str
    delivery_key: str
    integration: str
    type: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    provider_message_id: str | None
    updated_at: str
    recipient: dict[str, str] | None = None
    next_attempt_at: str | None = None
    redriven: int = 0
    history: Sequence[AttemptRecord] = ()


class RedriveClaim(Enum):
    """What claiming a delivery's redrive found (``DeliveryLedger.claim_redrive``)."""

    CLAIMED = "claimed"  # this letter's to send back
    NO_ROW = "no row"  # no row to claim on: nothing to guard the send with
    REDRIVEN = "redriven"  # the row counts that run already: the letter is an older copy
    HELD = "held"  # another call is sending a letter of that run back


class DeliveryRow(NamedTuple):
    """What a delivery row says besides its status: who it is for, written with every outcome."""

    integration: str
    type: str
    recipient: dict[str, str] | None = None


class LedgerPage(NamedTuple):
    """A notification's record, a page of its delivery rows in key order, and the cursor of the next page."""

    record: NotificationRecord
    entries: list[LedgerEntry]
    next_cursor: str | None
    counts: dict[str, int]
    # False when the counts are of the first deliveries only (a notification of very many: its time ran out).
    complete: bool = True


def _text(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value and "S" in value else None


def _history(item: dict[str, Any]) -> list[AttemptRecord]:
    records: list[AttemptRecord] = []
    for element in item.get("history", {}).get("L", []):
        value = element.get("M", {})
        records.append(
            AttemptRecord(
                at=_text(value, "at") or "",
                attempt=int(value.get("attempt", {}).get("N", "0")),
                status=_text(value, "status") or "",
                error=_text(value, "error"),
            )
        )
    return records


def _history_item(record: AttemptRecord) -> dict[str, Any]:
    error = record["error"]
    return {
        "M": {
            "at": {"S": record["at"]},
            "attempt": {"N": str(record["attempt"])},
            "status": {"S": record["status"]},
            "error": {"S": error[:_MAX_ERROR_LENGTH]} if error is not None else {"NULL": True},
        }
    }


def _history_clause(record: AttemptRecord, earlier: Sequence[AttemptRecord], values: dict[str, Any]) -> str:
    """Return the ``SET`` clause that adds ``record`` to the history (``#h``), putting its values in ``values``."""
    if len(earlier) >= HISTORY_LIMIT:
        kept = [*earlier[len(earlier) - HISTORY_LIMIT + 1 :], record]
        values[":h"] = {"L": [_history_item(entry) for entry in kept]}
        return "#h = :h"
    # Appended by the write of the outcome itself: no read first, and never an outcome without its attempt.
    values[":h"] = {"L": [_history_item(record)]}
    values[":empty"] = {"L": []}
    return "#h = list_append(if_not_exists(#h, :empty), :h)"


# The longest key values DynamoDB takes, in bytes of UTF-8: a partition key and a sort key.
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024


def _storable_key(notification_id: str, delivery_key: str) -> bool:
    """Tell whether a table key can hold these ids: not empty, UTF-8 (no lone surrogate), within DynamoDB's sizes."""
    try:
        partition, sort = notification_id.encode(), delivery_key.encode()
    except UnicodeEncodeError:
        return False
    return 0 < len(partition) <= MAX_PARTITION_KEY_BYTES and 0 < len(sort) <= MAX_SORT_KEY_BYTES


def _entry(item: dict[str, Any]) -> LedgerEntry:
    recipient = item.get("recipient", {}).get("M")
    return LedgerEntry(
        notification_id=item["notification_id"]["S"],
        delivery_key=item["delivery_key"]["S"],
        integration=_text(item, "integration") or item["delivery_key"]["S"],
        type=_text(item, "type") or "",
        status=DeliveryStatus(item["status"]["S"]),
        attempts=int(item.get("attempts", {}).get("N", "0")),
        last_error=_text(item, "last_error"),
        provider_message_id=_text(item, "provider_message_id"),
        updated_at=_text(item, "updated_at") or "",
        recipient={key: value["S"] for key, value in recipient.items()} if recipient else None,
        next_attempt_at=_text(item, "next_attempt_at"),
        redriven=int(item.get("redriven", {}).get("N", "0")),
        history=_history(item),
    )


def _record(item: dict[str, Any]) -> NotificationRecord:
    deliveries = tuple(
        Delivery(key=entry["M"]["k"]["S"], integration=entry["M"]["i"]["S"], type=entry["M"]["t"]["S"])
        for entry in item.get("deliveries", {}).get("L", [])
    )
    enqueued = item.get("enqueued", {}).get("M")
    return NotificationRecord(
        notification_id=item["notification_id"]["S"],
        source=_text(item, "source") or "publish",
        channel=_text(item, "channel") or "",
        topic=_text(item, "topic") or "",
        created_at=_text(item, "created_at") or "",
        caller=_text(item, "caller"),
        delivery_count=int(item.get("delivery_count", {}).get("N", str(len(deliveries)))),
        deliveries=deliveries,
        request_digest=_text(item, "request_digest"),
        enqueued={key: value["S"] for key, value in enqueued.items()} if enqueued is not None else None,
        error=_text(item, "error"),
        unsent=frozenset(item.get("unsent", {}).get("SS", [])),
    )


def encode_cursor(delivery_key: str) -> str:
    """Return the opaque cursor of the page that starts after ``delivery_key``."""
    return pages.encode_cursor({"k": delivery_key})


# A deleted user's item: under a partition no notification id takes (they are UUIDs), and a key no record or row
# takes either, so that no read of a notification ever finds it.
_DELETED_USER = "deleted-user#"
_DELETED_USER_KEY = "#deleted"


def _deleted_user_key(user_id: str) -> tuple[str, str]:
    return f"{_DELETED_USER}{user_id}", _DELETED_USER_KEY


def decode_cursor(cursor: str) -> str:
    """Return the delivery key a cursor continues after; raise naming ``cursor`` when it is not one of ours: a key
    DynamoDB could not compare (over ``DELIVERY_KEY_BYTES`` of UTF-8, or text UTF-8 cannot hold) would be a 502."""
    return pages.cursor_text(cursor, "k", _resumable_key)


def _resumable_key(key: str) -> bool:
    if key in ("", NOTIFICATION_KEY):
        return False
    try:
        return len(key.encode("utf-8")) <= DELIVERY_KEY_BYTES
    except UnicodeEncodeError:  # a lone surrogate
        return False


class DeliveryLedger:
    """Reads and writes the DynamoDB ledger table.

    Parameters
    ----------
    client:
        A boto3 DynamoDB client.
    table_name:
        The table's name.
    ttl_days:
        How long records and rows are kept; DynamoDB's TTL removes them after ``expires_at``.
    """

    def __init__(
        self,
        client: Any,
        table_name: str,
        ttl_days: int = 30,
        now: Callable[[], str] = utc_now,
        epoch: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._table = table_name
        self._ttl_seconds = ttl_days * 86400
        self._now = now
        self._epoch = epoch

    def _key(self, notification_id: str, delivery_key: str) -> dict[str, Any]:
        return {"notification_id": {"S": notification_id}, "delivery_key": {"S": delivery_key}}

    def _expires_at(self, after: float | None = None) -> dict[str, str]:
        """The TTL of an item written now: the ledger's days from now, or from ``after`` (Unix time) when later."""
        return {"N": str(int(max(self._epoch(), after or 0.0)) + self._ttl_seconds)}

    def keep_record(self, notification_id: str, until: float) -> None:
        """Keep a notification's record at least the ledger's days past ``until`` (Unix time): a redriven delivery, or
        one paced far ahead, outlives the record's TTL set at publish, and the status route needs the record. No
        record, or one kept longer already, is left as it is."""
        expires = self._expires_at(until)
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(notification_id, NOTIFICATION_KEY),
                UpdateExpression="SET expires_at = :x",
                ConditionExpression="attribute_exists(notification_id) AND "
                "(attribute_not_exists(expires_at) OR expires_at < :x)",
                ExpressionAttributeValues={":x": expires},
            )
        except AWS_ERRORS as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return
            raise aws_error(exc, "writing the ledger") from exc

    def record_notification(self, record: NotificationRecord) -> None:
        """Write or replace a notification's record: one ``PutItem`` per publish, whatever the number of deliveries."""
        try:
            self._client.put_item(TableName=self._table, Item=self._record_item(record))
        except AWS_ERRORS as exc:
            raise aws_error(exc, "writing the ledger") from exc

    def count_deliveries(self, notification_id: str, delivery_count: int, error: str | None = None) -> None:
        """Write on an existing notification's record how many deliveries it has, and the error that ended its
        expansion, if any.

        An ``UpdateItem`` of those alone, as the expansion worker writes them after each page: a whole record put would
        move back the TTL a consumer raised for a delivery paced far ahead (``keep_record``), and undo the SQS ids the
        producer wrote meanwhile (``set_enqueued``). A record that is gone is not made again.
        """
        expression, values = "SET delivery_count = :c", {":c": {"N": str(delivery_count)}}
        if error:
            expression += ", #e = :e"
            values[":e"] = {"S": error[:_MAX_ERROR_LENGTH]}
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(notification_id, NOTIFICATION_KEY),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(notification_id)",
                ExpressionAttributeValues=values,
                **({"ExpressionAttributeNames": {"#e": "error"}} if error else {}),
            )
        except AWS_ERRORS as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return
            raise aws_error(exc, "writing the ledger") from exc

    def set_enqueued(
        self, notification_id: str, enqueued: Mapping[str, str], unsent: Sequence[str] | None = None
    ) -> None:
        """Write on an existing notification's record the SQS message id of each delivery enqueued, by delivery key,
        and the keys of those that could not be (``unsent``: the status says them ``failed`` while they have no row);
        ``None`` leaves those as they are (``record_enqueued``: the ids of an answer, which says nothing of them).

        An ``UpdateItem`` of those attributes alone: the expansion worker may be writing the same record's count of
        deliveries meanwhile (a ``subscribers`` integration), and a whole record put here would undo it, or it this.
        """
        values: dict[str, Any] = {":e": {"M": {key: {"S": value} for key, value in enqueued.items()}}}
        if unsent:
            expression, values[":u"] = "SET enqueued = :e, unsent = :u", {"SS": sorted(set(unsent))}
        else:
            expression = "SET enqueued = :e" if unsent is None else "SET enqueued = :e REMOVE unsent"
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(notification_id, NOTIFICATION_KEY),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(notification_id)",
                ExpressionAttributeValues=values,
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "writing the ledger") from exc

    def create_notification(self, record: NotificationRecord) -> bool:
        """Write a notification's record unless one exists under its id; return ``False`` when one does."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=self._record_item(record),
                ConditionExpression="attribute_not_exists(notification_id)",
            )
        except AWS_ERRORS as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise aws_error(exc, "writing the ledger") from exc
        return True

    def clear_unsent(self, notification_id: str, keys: Sequence[str]) -> None:
        """Delete the ``failed`` rows that ``record_failed`` wrote for ``keys``, so the deliveries are ``queued`` again,
        and first take the keys out of the record's ``unsent``: a row deleted while its key was still there read
        ``failed`` as the retry enqueued it (and for good, when the retry's ``set_enqueued`` then failed).

        Such a row is the only ``failed`` one without an attempt (the consumer counts the attempt that failed); each
        delete is conditional on that, so a row the consumer wrote is never removed.
        """
        wanted = set(keys)
        if wanted:
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=self._key(notification_id, NOTIFICATION_KEY),
                    UpdateExpression="DELETE unsent :k",
                    ConditionExpression="attribute_exists(notification_id)",
                    ExpressionAttributeValues={":k": {"SS": sorted(wanted)}},
                )
            except AWS_ERRORS as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise aws_error(exc, "writing the ledger") from exc
        unsent = [
            item["delivery_key"]["S"]
            for item in self._query(
                notification_id,
                ProjectionExpression="delivery_key, #s, attempts",
                ExpressionAttributeNames={"#s": "status"},
            )
            if item["delivery_key"]["S"] in wanted
            and item.get("status", {}).get("S") == DeliveryStatus.FAILED.value
            and item.get("attempts", {}).get("N") == "0"
        ]
        for key in unsent:
            try:
                self._client.delete_item(
                    TableName=self._table,
                    Key=self._key(notification_id, key),
                    ConditionExpression="#s = :failed AND attempts = :none",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":failed": {"S": DeliveryStatus.FAILED.value}, ":none": {"N": "0"}},
                )
            except AWS_ERRORS as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise aws_error(exc, "writing the ledger") from exc

    def _record_item(self, record: NotificationRecord) -> dict[str, Any]:
        item: dict[str, Any] = {
            **self._key(record.notification_id, NOTIFICATION_KEY),
            "source": {"S": record.source},
            "channel": {"S": record.channel},
            "topic": {"S": record.topic},
            "created_at": {"S": record.created_at},
            "delivery_count": {"N": str(record.delivery_count)},
            "expires_at": self._expires_at(),
        }
        if record.caller:
            item["caller"] = {"S": record.caller}
        if record.deliveries:
            item["deliveries"] = {
                "L": [
                    {"M": {"k": {"S": entry.key}, "i": {"S": entry.integration}, "t": {"S": entry.type}}}
                    for entry in record.deliveries
                ]
            }
        if record.request_digest:
            item["request_digest"] = {"S": record.request_digest}
        if record.enqueued is not None:
            item["enqueued"] = {"M": {key: {"S": value} for key, value in record.enqueued.items()}}
        if record.error:
            item["error"] = {"S": record.error[:_MAX_ERROR_LENGTH]}
        return item

    def record_failed(self, notification_id: str, rows: Sequence[tuple[str, DeliveryRow, str]]) -> None:
        """Write ``failed`` rows for deliveries that never left (``(delivery key, row, reason)``), one conditional
        ``PutItem`` each: a row that exists was written by the consumer, so the message was enqueued after all (SQS
        took it after its batch's answer was given up on), and what the consumer wrote stands.

        Every row is tried; the first error is raised after the others.
        """
        now = self._now()
        first: Exception | None = None
        for key, row, reason in rows:
            item = {
                **self._key(notification_id, key),
                **self._row_attributes(row),
                "status": {"S": DeliveryStatus.FAILED.value},
                "attempts": {"N": "0"},
                "last_error": {"S": reason[:_MAX_ERROR_LENGTH]},
                "updated_at": {"S": now},
                "expires_at": self._expires_at(),
            }
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#s)",
                    ExpressionAttributeNames={"#s": "status"},
                )
            except AWS_ERRORS as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    first = first or exc
        if first is not None:
            raise aws_error(first, "writing the ledger") from first

    def _row_attributes(self, row: DeliveryRow) -> dict[str, Any]:
        attributes: dict[str, Any] = {"integration": {"S": row.integration}, "type": {"S": row.type}}
        if row.recipient:
            attributes["recipient"] = {"M": {key: {"S": value} for key, value in row.recipient.items()}}
        return attributes

    def claim_redrive(self, notification_id: str, delivery_key: str, run: int, claimant: str) -> RedriveClaim:
        """Claim the sending back of a delivery's dead letter as its run ``run`` (the count of redrives it carries
        then) for ``claimant`` (the letter's SQS message id), before it is sent.

        Two redrive calls at once, each holding a letter of the same run (a consumer killed between a bury and its
        write buries it twice), both read a row not yet redriven and both sent it back: two runs of one delivery. A
        claim lasts ``REDRIVE_CLAIM_SECONDS`` (a claimant that died before its send frees it so), and the same letter
        claims again (its send failed, and it is redriven again).
        """
        now = self._epoch()
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(notification_id, delivery_key),
                UpdateExpression="SET redrive_run = :r, redrive_claimant = :c, redrive_until = :until",
                ConditionExpression="attribute_exists(delivery_key)"
                " AND (attribute_not_exists(redriven) OR redriven < :r)"
                " AND (attribute_not_exists(redrive_run) OR redrive_run < :r OR redrive_claimant = :c"
                " OR redrive_until < :now)",
                ExpressionAttributeValues={
                    ":r": {"N": str(run)},
                    ":c": {"S": claimant},
                    ":until": {"N": str(int(now) + REDRIVE_CLAIM_SECONDS)},
                    ":now": {"N": str(int(now))},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except AWS_ERRORS as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise aws_error(exc, "writing the ledger") from exc
            item = (getattr(exc, "response", None) or {}).get("Item")
            if not item:
                return RedriveClaim.NO_ROW
            if int(item.get("redriven", {}).get("N", "0")) >= run:
                return RedriveClaim.REDRIVEN
            return RedriveClaim.HELD
        return RedriveClaim.CLAIMED

    def update(
        self,
        notification_id: str,
        delivery_key: str,
        status: DeliveryStatus,
        *,
        row: DeliveryRow | None = None,
        attempts: int | None = None,
        last_error: str | None = None,
        provider_message_id: str | None = None,
        next_attempt_at: str | None = None,
        redriven: int | None = None,
        history: AttemptRecord | None = None,
        earlier: Sequence[AttemptRecord] = (),
        before_run: int | None = None,
        unchanged_since: str | None = None,
    ) -> bool:
        """Write a delivery row's status (creating the row); return ``False`` when it is ``delivered`` already.

        A delivered row is final: SQS delivers at least once, so a late retry must never undo a success. Fields left
        ``None`` keep their value, except ``next_attempt_at``: it is written only with ``retrying`` and removed by any
        other write, so a final row never names a next attempt. ``redriven`` is set, never added to, so a message seen
        twice writes the same count. ``history`` is appended to the row's list in this same write; ``earlier`` is that
        list as the caller last read it: when it holds ``HISTORY_LIMIT`` attempts already, the list is written anew
        with the most recent of them, so it stops growing. ``before_run`` (a redrive's count): write only while the row
        counts fewer redrives, so a redrive that marks its row after sending its message never overwrites what that
        message's run already wrote; ``False`` then too. ``unchanged_since`` (the row's ``updated_at`` as the caller
        read it, ``ROW_ABSENT`` for none): write only while the row is still that one, else ``False``: a write decided
        on what the caller read never lands over what another writer wrote since.
        """
        names = {"#s": "status", "#u": "updated_at"}
        values: dict[str, Any] = {
            ":s": {"S": status.value},
            ":u": {"S": self._now()},
            ":delivered": {"S": DeliveryStatus.DELIVERED.value},
            # A row waiting for a slot far ahead outlives its wait by the ledger's days.
            ":x": self._expires_at(epoch_time(next_attempt_at) if next_attempt_at is not None else None),
        }
        sets = ["#s = :s", "#u = :u", "expires_at = :x"]
        removes: list[str] = []
        if row is not None:
            for index, (name, value) in enumerate(self._row_attributes(row).items()):
                names[f"#r{index}"] = name
                values[f":r{index}"] = value
                sets.append(f"#r{index} = :r{index}")
        if attempts is not None:
            sets.append("attempts = :a")
            values[":a"] = {"N": str(attempts)}
        if last_error is not None:
            sets.append("last_error = :e")
            values[":e"] = {"S": last_error[:_MAX_ERROR_LENGTH]}
        elif status in (DeliveryStatus.DELIVERED, DeliveryStatus.QUEUED):
            removes.append("last_error")
        if provider_message_id is not None:
            sets.append("provider_message_id = :p")
            values[":p"] = {"S": provider_message_id}
        if next_attempt_at is not None and status is DeliveryStatus.RETRYING:
            sets.append("next_attempt_at = :t")
            values[":t"] = {"S": next_attempt_at}
        else:
            removes.append("next_attempt_at")
        if redriven is not None:
            sets.append("redriven = :d")
            values[":d"] = {"N": str(redriven)}
        if history is not None:
            names["#h"] = "history"
            sets.append(_history_clause(history, earlier, values))
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        condition = _update_condition(before_run, unchanged_since, names, values)
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(notification_id, delivery_key),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except AWS_ERRORS as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise aws_error(exc, "updating the ledger") from exc
        return True

    def _item(self, notification_id: str, delivery_key: str) -> dict[str, Any] | None:
        """Return one item, read consistently, or ``None`` when there is none: also for ids no key can hold (a dead
        letter's body names any), which DynamoDB refuses to look up (a ValidationException, a 502 each time)."""
        if not _storable_key(notification_id, delivery_key):
            return None
        try:
            response = self._client.get_item(
                TableName=self._table, Key=self._key(notification_id, delivery_key), ConsistentRead=True
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "reading the ledger") from exc
        item: dict[str, Any] | None = response.get("Item")
        return item

    def mark_user_deleted(self, user_id: str, at: str) -> None:
        """Record that the audience's user ``user_id`` was deleted at ``at`` (ISO 8601 UTC): deliveries to them
        expanded before then are not sent (``users_deleted``). Kept the ledger's days, as long as any delivery is."""
        item = {**self._key(*_deleted_user_key(user_id)), "deleted_at": {"S": at}, "expires_at": self._expires_at()}
        try:
            self._client.put_item(TableName=self._table, Item=item)
        except AWS_ERRORS as exc:
            raise aws_error(exc, "recording the user's deletion") from exc

    def _batch_get(self, keys: Sequence[tuple[str, str]]) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        """Return the items of ``keys`` (unique) that exist, read consistently, one ``BatchGetItem`` per 100 keys, and
        the keys still unprocessed after ``_BATCH_GET_TRIES`` calls (throttling: asked for again, backing off). Raise
        ``UpstreamError`` when a call fails."""
        items: list[dict[str, Any]] = []
        left: list[tuple[str, str]] = []
        for start in range(0, len(keys), _BATCH_GET_KEYS):
            chunk = [self._key(*key) for key in keys[start : start + _BATCH_GET_KEYS]]
            pending: dict[str, Any] = {self._table: {"Keys": chunk, "ConsistentRead": True}}
            for attempt in range(_BATCH_GET_TRIES):
                if attempt:
                    time.sleep(0.05 * 2 ** (attempt - 1))  # unprocessed keys mean throttling: back off first
                try:
                    response = self._client.batch_get_item(RequestItems=pending)
                except AWS_ERRORS as exc:
                    raise aws_error(exc, "reading the ledger") from exc
                items.extend(response.get("Responses", {}).get(self._table, []))
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            left += [
                (key["notification_id"]["S"], key["delivery_key"]["S"])
                for key in pending.get(self._table, {}).get("Keys", [])
            ]
        return items, left

    def users_deleted(self, user_ids: Sequence[str]) -> dict[str, str]:
        """Return when each of ``user_ids`` that was deleted was (the latest deletion), read consistently in batches;
        raise ``UpstreamError`` when the ledger cannot tell for every one of them."""
        items, left = self._batch_get([_deleted_user_key(user) for user in dict.fromkeys(user_ids)])
        if left:
            raise UpstreamError("reading the ledger failed (unprocessed keys)")
        return {item["notification_id"]["S"].removeprefix(_DELETED_USER): item["deleted_at"]["S"] for item in items}

    def get_entry(self, notification_id: str, delivery_key: str) -> LedgerEntry | None:
        """Return one delivery row, read consistently, or ``None`` when there is none yet."""
        item = self._item(notification_id, delivery_key)
        return _entry(item) if item and "status" in item else None

    def get_entries(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], LedgerEntry | None]:
        """Return the delivery rows of ``(notification_id, delivery_key)`` pairs, read consistently: one
        ``BatchGetItem`` per 100 keys instead of a ``GetItem`` each. A key with no row yet maps to ``None``.

        Keys left unprocessed (throttling) are asked for again, backing off; those still left after
        ``_BATCH_GET_TRIES`` calls are left out of the answer, so that their callers read them another way. Raise
        ``UpstreamError`` when a call fails.
        """
        unique = list(dict.fromkeys(keys))
        found: dict[tuple[str, str], LedgerEntry | None] = dict.fromkeys(unique)
        items, left = self._batch_get(unique)
        for item in items:
            if "status" in item:
                found[(item["notification_id"]["S"], item["delivery_key"]["S"])] = _entry(item)
        for key in left:
            found.pop(key, None)
        return found

    def _query(self, notification_id: str, **options: Any) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "notification_id = :n",
            "ExpressionAttributeValues": {":n": {"S": notification_id}},
            "ConsistentRead": True,
            **options,
        }
        # The paginator calls Query lazily, one page per iteration: a failure surfaces while iterating.
        try:
            for response in self._client.get_paginator("query").paginate(**kwargs):
                yield from response.get("Items", [])
        except AWS_ERRORS as exc:
            raise aws_error(exc, "reading the ledger") from exc

    def orphaned(self, notification_id: str) -> bool:
        """Tell whether the notification's partition holds delivery rows but no record: an earlier notification of this
        id (an idempotency key's) whose record DynamoDB's TTL deleted before its rows (each kept 30 days after its own
        last change, and TTL deletes in no set order). A new notification written there would find its deliveries
        ``delivered`` by that one's rows, and never be sent.

        One strongly consistent ``Query`` of one key: the record's key (``#``) sorts before every delivery key."""
        request = {
            "TableName": self._table,
            "KeyConditionExpression": "notification_id = :n",
            "ExpressionAttributeValues": {":n": {"S": notification_id}},
            "ProjectionExpression": "delivery_key",
            "ConsistentRead": True,
            "Limit": 1,
        }
        items = self._query_page(request).get("Items", [])
        return bool(items) and items[0]["delivery_key"]["S"] != NOTIFICATION_KEY

    def get_record(self, notification_id: str) -> NotificationRecord:
        """Return a notification's record; raise ``NotFoundError`` when there is none."""
        item = self._item(notification_id, NOTIFICATION_KEY)
        if not item:
            raise NotFoundError(f"notification {notification_id!r} does not exist")
        return _record(item)

    def page(
        self,
        notification_id: str,
        cursor: str | None = None,
        size: int = PAGE_SIZE,
        summary_seconds: float = SUMMARY_SECONDS,
        record: NotificationRecord | None = None,
    ) -> LedgerPage:
        """Return the record, the deliveries after ``cursor`` (at most ``size``), the count per status, next cursor.

        Deliveries the record expects and that have no row yet are ``queued`` (``expired`` once the record is older
        than the ledger's days: ``_missing``). The counts read only the key and status
        of each row, a page after another for at most ``summary_seconds`` (at least one page): past that, they count
        the deliveries read (the first, in key order) and ``complete`` is false, so that the status of a send to a
        million users answers in time rather than reading its whole partition on every call. Whole rows are read a
        page at a time, after the cursor. ``record``: the notification's record, when the caller read it already.
        """
        record = record or self.get_record(notification_id)
        missing = self._missing(record)
        unsent = record.unsent
        after = decode_cursor(cursor) if cursor else NOTIFICATION_KEY
        statuses, complete = self._statuses(notification_id, time.monotonic() + summary_seconds)
        expected = {delivery.key: delivery for delivery in record.deliveries}
        rows = self._rows_after(notification_id, after, size + 1)
        # With more rows than a page, the page ends before the last row read; a delivery the record expects and that
        # has no row yet falls in it by its key.
        last = list(rows)[-1] if len(rows) > size else None
        keys = sorted(set(rows) | {key for key in expected if key > after and (last is None or key <= last)})
        page_keys = keys[:size]
        entries = [
            rows.get(key)
            or self._without_row(record, expected[key], DeliveryStatus.FAILED if key in unsent else missing)
            for key in page_keys
        ]
        # A row read a moment after the light read may have moved on (retrying → dead): the summary says what the
        # deliveries of this page say, so one answer never contradicts itself.
        statuses.update({key: str(rows[key].status) for key in page_keys if key in rows})
        counts: dict[str, int] = {}
        for status in statuses.values():
            counts[status] = counts.get(status, 0) + 1
        unsent_without_row = len(unsent - statuses.keys()) if complete else 0
        if unsent_without_row:
            counts[DeliveryStatus.FAILED.value] = counts.get(DeliveryStatus.FAILED.value, 0) + unsent_without_row
        without_row = max(0, record.delivery_count - len(statuses) - unsent_without_row) if complete else 0
        if without_row:
            counts[missing.value] = counts.get(missing.value, 0) + without_row
        return LedgerPage(
            record=record,
            entries=entries,
            next_cursor=encode_cursor(page_keys[-1]) if len(keys) > size else None,
            counts=counts,
            complete=complete,
        )

    def _statuses(self, notification_id: str, until: float) -> tuple[dict[str, str], bool]:
        """Return the status of each row by delivery key, from the Query pages read until ``until`` (monotonic time;
        at least one), and whether they were all of them."""
        statuses: dict[str, str] = {}
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "notification_id = :n",
            "ExpressionAttributeValues": {":n": {"S": notification_id}},
            "ProjectionExpression": "delivery_key, #s",
            "ExpressionAttributeNames": {"#s": "status"},
            "ConsistentRead": True,
        }
        while True:
            response = self._query_page(request)
            for item in response.get("Items", []):
                if item["delivery_key"]["S"] != NOTIFICATION_KEY and "status" in item:
                    statuses[item["delivery_key"]["S"]] = item["status"]["S"]
            if "LastEvaluatedKey" not in response:
                return statuses, True
            if time.monotonic() >= until:
                return statuses, False
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _rows_after(self, notification_id: str, after: str, count: int) -> dict[str, LedgerEntry]:
        """Return up to ``count`` whole rows whose delivery key sorts after ``after``, in key order."""
        rows: dict[str, LedgerEntry] = {}
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "notification_id = :n AND delivery_key > :after",
            "ExpressionAttributeValues": {":n": {"S": notification_id}, ":after": {"S": after}},
            "ConsistentRead": True,
        }
        while len(rows) < count:
            response = self._query_page({**request, "Limit": count - len(rows)})
            for item in response.get("Items", []):
                if "status" in item:
                    rows[item["delivery_key"]["S"]] = _entry(item)
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return rows

    def _query_page(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            response: dict[str, Any] = self._client.query(**request)
        except AWS_ERRORS as exc:
            raise aws_error(exc, "reading the ledger") from exc
        return response

    def _missing(self, record: NotificationRecord) -> DeliveryStatus:
        """What a delivery the record expects and that has no row is: ``queued`` (not attempted yet), or ``expired``
        once the record is older than the ledger's days. Every row is written after the record and kept that long
        after its last change, so before then a missing row was never written; after, a delivery never attempted
        cannot be waiting still (SQS keeps a message 14 days at most), and its row is gone while the record was kept
        longer for another delivery (``keep_record``)."""
        created = epoch_time(record.created_at)
        if created is not None and self._epoch() >= created + self._ttl_seconds:
            return DeliveryStatus.EXPIRED
        return DeliveryStatus.QUEUED

    def _without_row(self, record: NotificationRecord, delivery: Delivery, status: DeliveryStatus) -> LedgerEntry:
        days = self._ttl_seconds // 86400
        gone = f"its row is gone: the ledger keeps a delivery's row {days} days after its last change"
        errors = {DeliveryStatus.EXPIRED: gone, DeliveryStatus.FAILED: NOT_ENQUEUED}
        return LedgerEntry(
            notification_id=record.notification_id,
            delivery_key=delivery.key,
            integration=delivery.integration,
            type=delivery.type,
            status=status,
            attempts=0,
            last_error=errors.get(status),
            provider_message_id=None,
            updated_at=record.created_at,
        )
