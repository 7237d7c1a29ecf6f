"""Fakes of what the consumer delivers through: a channel, the ledger, the delivery queue and its dead-letter queue,
SQS visibility, an unreachable pacing table, SSM parameters, and AWS sending clients."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, ClassVar, NoReturn

from botocore.exceptions import ClientError, EndpointConnectionError

from core.channels import Channel, ChannelResources, DeliveryReceipt, Limit
from core.errors import UpstreamError
from core.ledger import HISTORY_LIMIT, ROW_ABSENT, AttemptRecord, DeliveryRow, LedgerEntry
from core.models import Content, DeliveryStatus
from core.pacing import Slot

_UPDATED_AT = "2023-11-14T22:13:20.000Z"


class FakeChannel(Channel):
    """A channel that records what it was asked to send and answers with ``result`` (a receipt or an error).

    Its destination has the limits it is given (none by default); given a ``clock``, it records when each send
    started in ``sent_at``.
    """

    type: ClassVar[str] = "webhook"

    def __init__(
        self,
        result: DeliveryReceipt | Exception | None = None,
        limits: list[Limit] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(ChannelResources(http=None, aws_client=lambda _: None, telegram_api_base=""))  # type: ignore[arg-type]
        self.result = result or DeliveryReceipt("provider-1")
        self.limits = limits or []
        self.sent: list[tuple[Content, Mapping[str, Any], Mapping[str, Any] | None, str]] = []
        self.delivery_keys: list[str] = []
        self.sent_at: list[float] = []
        self._clock = clock

    @classmethod
    def render(cls, model: Any, values: Mapping[str, Any]) -> Content:
        """Return the model as text, unrendered."""
        return Content(text=str(model))

    def rate_limits(
        self, target: Mapping[str, Any], credentials: Mapping[str, Any] | None, rate_per_second: float | None
    ) -> list[Limit]:
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
        if self._clock is not None:
            self.sent_at.append(self._clock())
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


class FakeLedger:
    """Holds delivery rows in memory with the real ledger's rules: a delivered row is final, absent fields are kept,
    ``next_attempt_at`` only while ``retrying``, ``history`` appended (at most ``HISTORY_LIMIT`` kept).

    Every call is recorded (``reads``, ``batch_reads``, ``updates``), also those told to fail. ``fail_reads`` makes
    ``get_entry`` and ``get_entries`` raise ``UpstreamError``; ``fail_updates`` makes ``update`` raise
    ``UpstreamError``, and ``unreachable_updates`` an unwrapped botocore ``EndpointConnectionError``, as a store that
    forgot to translate it would.
    """

    def __init__(self, fail_reads: bool = False, fail_updates: bool = False, unreachable_updates: bool = False) -> None:
        self.rows: dict[tuple[str, str], LedgerEntry] = {}
        self.reads: list[tuple[str, str]] = []
        self.batch_reads: list[list[tuple[str, str]]] = []
        self.updates: list[tuple[str, str, DeliveryStatus]] = []
        self.fail_reads = fail_reads
        self.fail_updates = fail_updates
        self.unreachable_updates = unreachable_updates
        self.kept: list[tuple[str, float]] = []
        self.deleted_users: dict[str, str] = {}

    def put(
        self,
        notification_id: str,
        delivery_key: str,
        status: DeliveryStatus,
        attempts: int = 0,
        last_error: str | None = None,
        redriven: int = 0,
        history: Sequence[AttemptRecord] = (),
    ) -> None:
        """Put a row in ``status``, as an earlier receive (or a redrive) left it; not recorded as an update."""
        self.rows[(notification_id, delivery_key)] = LedgerEntry(
            notification_id=notification_id,
            delivery_key=delivery_key,
            integration=delivery_key,
            type="",
            status=status,
            attempts=attempts,
            last_error=last_error,
            provider_message_id=None,
            updated_at=_UPDATED_AT,
            redriven=redriven,
            history=list(history),
        )

    def get_entry(self, notification_id: str, delivery_key: str) -> LedgerEntry | None:
        """Return a row, or ``None`` when there is none yet."""
        self.reads.append((notification_id, delivery_key))
        if self.fail_reads:
            raise UpstreamError("reading the ledger failed (fake)")
        return self.rows.get((notification_id, delivery_key))

    def get_entries(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], LedgerEntry | None]:
        """Return the rows of the keys (``None`` for none yet), recorded as one batch read."""
        self.batch_reads.append(list(keys))
        if self.fail_reads:
            raise UpstreamError("reading the ledger failed (fake)")
        return {key: self.rows.get(key) for key in keys}

    def keep_record(self, notification_id: str, until: float) -> None:
        """Record that a notification's record was kept past ``until``."""
        self.kept.append((notification_id, until))

    def users_deleted(self, user_ids: Sequence[str]) -> dict[str, str]:
        """Return when the users of ``deleted_users`` among ``user_ids`` were deleted."""
        if self.fail_reads:
            raise UpstreamError("reading the ledger failed (the fake was told to fail)")
        return {user: self.deleted_users[user] for user in user_ids if user in self.deleted_users}

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
        """Write a row's status and the fields given; return ``False`` when it is ``delivered`` already, counts
        ``before_run`` redrives or more, or changed since ``unchanged_since``."""
        self.updates.append((notification_id, delivery_key, status))
        if self.fail_updates:
            raise UpstreamError("updating the ledger failed (fake)")
        if self.unreachable_updates:
            raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/")
        key = (notification_id, delivery_key)
        old = self.rows.get(key)
        if old is not None and old.status is DeliveryStatus.DELIVERED:
            return False
        if old is not None and before_run is not None and old.redriven >= before_run:
            return False
        if unchanged_since is not None and (old.updated_at if old is not None else ROW_ABSENT) != unchanged_since:
            return False
        if last_error is None and status not in (DeliveryStatus.DELIVERED, DeliveryStatus.QUEUED) and old:
            last_error = old.last_error
        self.rows[key] = LedgerEntry(
            notification_id=notification_id,
            delivery_key=delivery_key,
            integration=row.integration if row else old.integration if old else delivery_key,
            type=row.type if row else old.type if old else "",
            status=status,
            attempts=attempts if attempts is not None else old.attempts if old else 0,
            last_error=last_error,
            provider_message_id=provider_message_id or (old.provider_message_id if old else None),
            updated_at=_UPDATED_AT,
            recipient=(row.recipient if row else None) or (old.recipient if old else None),
            next_attempt_at=next_attempt_at if status is DeliveryStatus.RETRYING else None,
            redriven=redriven if redriven is not None else old.redriven if old else 0,
            history=self._history(old, history, earlier),
        )
        return True

    @staticmethod
    def _history(
        old: LedgerEntry | None, record: AttemptRecord | None, earlier: Sequence[AttemptRecord]
    ) -> list[AttemptRecord]:
        kept = list(old.history) if old else []
        if record is None:
            return kept
        if len(earlier) >= HISTORY_LIMIT:
            return [*earlier[len(earlier) - HISTORY_LIMIT + 1 :], record]
        return [*kept, record]


class FakeDeliveryQueue:
    """Records the delayed copies sent with ``send_later`` as ``(body, delay_seconds)``; ``fail`` makes SQS refuse."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, int]] = []
        self.fail = fail

    def send_later(self, body: str, delay_seconds: int) -> str:
        """Record the copy and return its message id, or raise ``UpstreamError``."""
        if self.fail:
            raise UpstreamError("sending to the delivery queue failed (fake)")
        self.sent.append((body, delay_seconds))
        return f"copy-{len(self.sent)}"


class FakeDeadLetterQueue:
    """Records the messages buried as ``(body, last_error)``; ``fail`` makes SQS refuse."""

    def __init__(self, fail: bool = False) -> None:
        self.buried: list[tuple[str, str]] = []
        self.fail = fail

    def bury(self, body: str, last_error: str) -> None:
        """Record the dead letter, or raise ``UpstreamError``."""
        if self.fail:
            raise UpstreamError("sending to the dead-letter queue failed (fake)")
        self.buried.append((body, last_error))


class UnreachablePaceStore:
    """A ``PaceStore`` whose table cannot be reached: each call is counted in ``calls`` and raises ``UpstreamError``."""

    def __init__(self) -> None:
        self.calls = 0

    def _fail(self) -> NoReturn:
        self.calls += 1
        raise UpstreamError("pacing a destination failed (fake)")

    def take(self, key: str, step: float, now: float, busy: bool) -> Slot:
        """Fail."""
        self._fail()

    def advance(self, key: str, to: float, now: float) -> None:
        """Fail."""
        self._fail()

    def hold(self, key: str, until: float, now: float) -> Slot:
        """Fail."""
        self._fail()


class FakeSsmParameters:
    """An SSM client's ``get_parameter``: stored values (an object is stored as its JSON, text as it is), or a given
    error raised."""

    def __init__(self, values: dict[str, Any] | None = None, error: Exception | None = None) -> None:
        self.values = values or {}
        self.error = error
        self.calls: list[dict[str, Any]] = []

    def get_parameter(self, **request: Any) -> dict[str, Any]:
        """Return the parameter named ``Name``; raise ``ParameterNotFound`` when none is stored."""
        self.calls.append(request)
        if self.error is not None:
            raise self.error
        if request["Name"] not in self.values:
            raise ClientError({"Error": {"Code": "ParameterNotFound", "Message": "fake"}}, "GetParameter")
        value = self.values[request["Name"]]
        return {"Parameter": {"Name": request["Name"], "Value": value if isinstance(value, str) else json.dumps(value)}}


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


class FakeClock:
    """Unix time that stands still until advanced; ``sleep`` advances it and records each sleep in ``slept``."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        """Return the current time."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        """Record the sleep and let its time pass."""
        self.slept.append(seconds)
        self.now += seconds


class MetricCounter:
    """Records ``count(channel_type, outcome)`` calls in ``calls``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, channel_type: str, outcome: str) -> None:
        """Record one metric."""
        self.calls.append((channel_type, outcome))

    def of(self, outcome: str) -> int:
        """Return how often ``outcome`` was counted."""
        return sum(1 for _, name in self.calls if name == outcome)


class AnsweringSession:
    """An outbound session that answers every POST with ``status``, ``body`` and ``content_type``, its body read."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        self._status = status
        self._body = body
        self._content_type = content_type

    def post(self, url: str, **kwargs: object) -> Any:
        import requests

        response = requests.Response()
        response.status_code = self._status
        response._content = self._body
        response.headers["Content-Type"] = self._content_type
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        return response


def answering_resources(status: int, body: bytes, content_type: str) -> ChannelResources:
    """Channel resources whose HTTP answers every POST so (``AnsweringSession``), with no AWS client."""
    return ChannelResources(
        http=AnsweringSession(status, body, content_type),  # type: ignore[arg-type]
        aws_client=lambda _: None,
        telegram_api_base="",
    )
