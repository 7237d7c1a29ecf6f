"""The delivery ledger: one row per notification and integration, telling the status of every delivery."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from core.errors import NotFoundError, UpstreamError
from core.models import DeliveryStatus

_BATCH_WRITE_LIMIT = 25
_MAX_ERROR_LENGTH = 1000


def utc_now() -> str:
    """Return the current UTC time in ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class LedgerEntry:
    """One delivery's row of the ledger."""

    notification_id: str
    integration: str
    type: str
    channel: str
    topic: str
    created_at: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    provider_message_id: str | None
    updated_at: str


def _entry(item: dict[str, Any]) -> LedgerEntry:
    def text(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value and "S" in value else None

    return LedgerEntry(
        notification_id=item["notification_id"]["S"],
        integration=item["integration"]["S"],
        type=item["type"]["S"],
        channel=item["channel"]["S"],
        topic=item["topic"]["S"],
        created_at=item["created_at"]["S"],
        status=DeliveryStatus(item["status"]["S"]),
        attempts=int(item.get("attempts", {}).get("N", "0")),
        last_error=text("last_error"),
        provider_message_id=text("provider_message_id"),
        updated_at=item["updated_at"]["S"],
    )


class DeliveryLedger:
    """Reads and writes the DynamoDB ``deliveries`` table (key: notification_id, integration).

    Parameters
    ----------
    client:
        A boto3 DynamoDB client.
    table_name:
        The table's name.
    ttl_days:
        How long rows are kept; DynamoDB's TTL removes them after ``expires_at``.
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

    def record_queued(
        self, notification_id: str, channel: str, topic: str, created_at: str, integrations: Sequence[tuple[str, str]]
    ) -> None:
        """Write a ``queued`` row for each ``(integration name, type)`` of a new notification."""
        expires_at = str(int(self._epoch()) + self._ttl_seconds)
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "notification_id": {"S": notification_id},
                        "integration": {"S": name},
                        "type": {"S": kind},
                        "channel": {"S": channel},
                        "topic": {"S": topic},
                        "created_at": {"S": created_at},
                        "updated_at": {"S": created_at},
                        "status": {"S": DeliveryStatus.QUEUED.value},
                        "attempts": {"N": "0"},
                        "expires_at": {"N": expires_at},
                    }
                }
            }
            for name, kind in integrations
        ]
        for start in range(0, len(requests), _BATCH_WRITE_LIMIT):
            self._batch_write(requests[start : start + _BATCH_WRITE_LIMIT])

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        pending = {self._table: requests}
        for attempt in range(5):
            try:
                response = self._client.batch_write_item(RequestItems=pending)
            except ClientError as exc:
                raise UpstreamError(f"writing the ledger failed ({exc.response['Error']['Code']})") from exc
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(0.05 * 2**attempt)  # unprocessed items mean throttling: back off before the next try
        raise UpstreamError("writing the ledger failed (items left unprocessed)")

    def update(
        self,
        notification_id: str,
        integration: str,
        status: DeliveryStatus,
        *,
        attempts: int | None = None,
        last_error: str | None = None,
        provider_message_id: str | None = None,
    ) -> bool:
        """Set a row's status; return ``False`` when the row is already ``delivered`` and was left as it is.

        A delivered row is final: SQS delivers at least once, so a late retry must never undo a success.
        """
        names = {"#s": "status", "#u": "updated_at"}
        values: dict[str, Any] = {
            ":s": {"S": status.value},
            ":u": {"S": self._now()},
            ":delivered": {"S": DeliveryStatus.DELIVERED.value},
        }
        sets = ["#s = :s", "#u = :u"]
        removes: list[str] = []
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
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"notification_id": {"S": notification_id}, "integration": {"S": integration}},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(notification_id) AND #s <> :delivered",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise UpstreamError(f"updating the ledger failed ({exc.response['Error']['Code']})") from exc
        return True

    def get_entry(self, notification_id: str, integration: str) -> LedgerEntry | None:
        """Return one row, read consistently, or ``None`` when there is none."""
        try:
            response = self._client.get_item(
                TableName=self._table,
                Key={"notification_id": {"S": notification_id}, "integration": {"S": integration}},
                ConsistentRead=True,
            )
        except ClientError as exc:
            raise UpstreamError(f"reading the ledger failed ({exc.response['Error']['Code']})") from exc
        item = response.get("Item")
        return _entry(item) if item else None

    def entries(self, notification_id: str) -> list[LedgerEntry]:
        """Return every row of a notification; raise ``NotFoundError`` when it has none."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "notification_id = :n",
            "ExpressionAttributeValues": {":n": {"S": notification_id}},
            "ConsistentRead": True,
        }
        try:
            while True:
                response = self._client.query(**kwargs)
                items.extend(response.get("Items", []))
                if "LastEvaluatedKey" not in response:
                    break
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        except ClientError as exc:
            raise UpstreamError(f"reading the ledger failed ({exc.response['Error']['Code']})") from exc
        if not items:
            raise NotFoundError(f"notification {notification_id!r} does not exist")
        return [_entry(item) for item in items]
