"""Fakes of what the consumer delivers through: a channel, the ledger, SSM parameters, and AWS sending clients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from consumer.channels import Channel, ChannelResources, DeliveryReceipt
from core.errors import UpstreamError
from core.ledger import LedgerEntry
from core.models import Content, DeliveryStatus


class FakeChannel(Channel):
    """A channel that records what it was asked to send and answers with ``result`` (a receipt or an error)."""

    type: ClassVar[str] = "webhook"

    def __init__(self, result: DeliveryReceipt | Exception | None = None) -> None:
        super().__init__(ChannelResources(http=None, aws_client=lambda _: None, telegram_api_base=""))  # type: ignore[arg-type]
        self.result = result or DeliveryReceipt("provider-1")
        self.sent: list[tuple[Content, Mapping[str, Any], Mapping[str, Any] | None, str]] = []

    def send(
        self,
        content: Content,
        target: Mapping[str, Any],
        credentials: Mapping[str, Any] | None,
        *,
        notification_id: str,
    ) -> DeliveryReceipt:
        """Record the call, then answer."""
        self.sent.append((content, target, credentials, notification_id))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


class FakeLedger:
    """Holds ledger rows in memory, with the real ledger's rule that a delivered row is final."""

    def __init__(self, fail_updates: bool = False) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.fail_updates = fail_updates

    def set_status(self, notification_id: str, integration: str, status: DeliveryStatus) -> None:
        """Put a row in ``status``."""
        self.rows[(notification_id, integration)] = {"status": status}

    def get_entry(self, notification_id: str, integration: str) -> LedgerEntry | None:
        """Return a row, or ``None``."""
        row = self.rows.get((notification_id, integration))
        if row is None:
            return None
        return LedgerEntry(
            notification_id=notification_id,
            integration=integration,
            type="webhook",
            channel="orders",
            topic="shipped",
            created_at="2026-11-21T20:00:00.000Z",
            status=row["status"],
            attempts=row.get("attempts", 0),
            last_error=row.get("last_error"),
            provider_message_id=row.get("provider_message_id"),
            updated_at="2026-11-21T20:00:00.000Z",
        )

    def update(self, notification_id: str, integration: str, status: DeliveryStatus, **fields: Any) -> bool:
        """Change a row unless it is delivered; raise ``UpstreamError`` when told to fail."""
        if self.fail_updates:
            raise UpstreamError("updating the ledger failed (fake)")
        row = self.rows.setdefault((notification_id, integration), {"status": DeliveryStatus.QUEUED})
        if row["status"] is DeliveryStatus.DELIVERED:
            return False
        row.update({"status": status, **{key: value for key, value in fields.items() if value is not None}})
        return True


class FakeParameterProvider:
    """Stands in for powertools' SSMProvider: returns stored values, or raises a given error."""

    def __init__(self, values: dict[str, Any] | None = None, error: Exception | None = None) -> None:
        self.values = values or {}
        self.error = error
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get(self, name: str, **options: Any) -> Any:
        """Return the value of ``name``."""
        self.calls.append((name, options))
        if self.error is not None:
            raise self.error
        return self.values[name]


class FakeSqsVisibility:
    """Records ``change_message_visibility`` calls; raises a ``ClientError`` when given a code."""

    def __init__(self, error_code: str | None = None) -> None:
        self.error_code = error_code
        self.changes: list[tuple[str, int]] = []

    def change_message_visibility(self, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int) -> None:
        """Record the change."""
        if self.error_code:
            raise ClientError({"Error": {"Code": self.error_code, "Message": "fake"}}, "ChangeMessageVisibility")
        self.changes.append((ReceiptHandle, VisibilityTimeout))


class FakeSendingClient:
    """An SES or SNS client: records ``send_email`` / ``publish`` calls, or raises a ``ClientError`` with a code."""

    def __init__(self, error_code: str | None = None, status: int = 400) -> None:
        self.error_code = error_code
        self.status = status
        self.calls: list[dict[str, Any]] = []

    def _answer(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.error_code:
            error = {
                "Error": {"Code": self.error_code, "Message": "fake"},
                "ResponseMetadata": {"HTTPStatusCode": self.status},
            }
            raise ClientError(error, operation)
        return {"MessageId": f"provider-{len(self.calls)}"}

    def send_email(self, **kwargs: Any) -> dict[str, Any]:
        """Record an email."""
        return self._answer("SendEmail", kwargs)

    def publish(self, **kwargs: Any) -> dict[str, Any]:
        """Record a publish."""
        return self._answer("Publish", kwargs)
