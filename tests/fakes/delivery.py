"""Fakes of what the consumer delivers through: a channel, the ledger, SSM parameters, and AWS sending clients."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from core.channels import Channel, ChannelResources, DeliveryReceipt, RateLimit
from core.errors import UpstreamError
from core.ledger import LedgerEntry
from core.models import Content, DeliveryStatus


class FakeChannel(Channel):
    """A channel that records what it was asked to send and answers with ``result`` (a receipt or an error).

    Its destination has the limits it is given (none by default).
    """

    type: ClassVar[str] = "webhook"

    def __init__(
        self, result: DeliveryReceipt | Exception | None = None, limits: list[RateLimit] | None = None
    ) -> None:
        super().__init__(ChannelResources(http=None, aws_client=lambda _: None, telegram_api_base=""))  # type: ignore[arg-type]
        self.result = result or DeliveryReceipt("provider-1")
        self.limits = limits or []
        self.sent: list[tuple[Content, Mapping[str, Any], Mapping[str, Any] | None, str]] = []
        self.delivery_keys: list[str] = []

    @classmethod
    def render(cls, model: Any, values: Mapping[str, Any]) -> Content:
        """Return the model as text, unrendered."""
        return Content(text=str(model))

    def rate_limits(
        self, target: Mapping[str, Any], credentials: Mapping[str, Any] | None, rate_per_second: float | None
    ) -> list[RateLimit]:
        """Return the limits this fake was given."""
        return self.limits

    def send(
        self,
        content: Content,
        target: Mapping[str, Any],
        credentials: Mapping[str, Any] | None,
        *,
        notification_id: str,
        delivery_key: str,
    ) -> DeliveryReceipt:
        """Record the call, then answer."""
        self.sent.append((content, target, credentials, notification_id))
        self.delivery_keys.append(delivery_key)
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
    """An SES or SNS client: records ``send_email`` / ``publish`` calls, or raises a ``ClientError`` with a code.

    ``get_send_quota`` answers ``max_send_rate``, or raises a ``ClientError`` with ``quota_error``; ``meta`` names the
    client's region as boto3's does.
    """

    def __init__(
        self,
        error_code: str | None = None,
        status: int = 400,
        max_send_rate: float = 14.0,
        quota_error: str | None = None,
        region: str = "us-east-1",
    ) -> None:
        self.error_code = error_code
        self.status = status
        self.max_send_rate = max_send_rate
        self.quota_error = quota_error
        self.meta = SimpleNamespace(region_name=region)
        self.calls: list[dict[str, Any]] = []
        self.quota_calls = 0

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

    def get_send_quota(self) -> dict[str, Any]:
        """Answer the account's sending quota."""
        self.quota_calls += 1
        if self.quota_error:
            raise ClientError({"Error": {"Code": self.quota_error, "Message": "fake"}}, "GetSendQuota")
        return {"Max24HourSend": 50000.0, "MaxSendRate": self.max_send_rate, "SentLast24Hours": 0.0}
