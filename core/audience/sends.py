"""``POST /v1/sends``: a send to users, a segment, a condition or a topic's subscribers, recorded and handed over.

The request never expands its audience: ``accept_send`` records the send (the ``sends`` table) and puts one small job
on the expansion queue (``ExpansionQueue``); the expansion worker (``core/audience/expansion.py``, run by
``producer/expansion.py``) pages the audience and enqueues the recipient deliveries. A send with ``at`` is recorded
with its schedule instead (``core/audience/schedules.py``); the cron hands it to the same queue when it is due.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Context, Decimal
from typing import Annotated, Any, Literal, NamedTuple, Protocol

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from core.audience.models import (
    SENT_TEXT_RULE,
    UNSENDABLE_OR_UNSTORABLE,
    AudienceRequest,
    Platform,
    user_id_bytes,
)
from core.audience.ports import SendStorePort
from core.audience.schedules import DueSend, NewScheduledSend, Schedule, schedule_times
from core.audience.segments import parse_where
from core.errors import (
    AWS_ERRORS,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    NotificationError,
    UpstreamError,
    aws_error,
)
from core.ledger import NotificationRecord
from core.observability import logger
from core.queue import MESSAGE_BYTES_LIMIT, DeliveryQueue, bounded_groups
from core.times import iso_time
from core.validation import NAME_PATTERN, PATTERN_RULES, DateTimeText, Reply, Strict, refuse_text

SendChannel = Literal["push", "email", "telegram", "browser"]
SendStatus = Literal["scheduled", "queued", "expanding", "expanded", "cancelled", "failed"]
MAX_USER_IDS = 10_000
# Small sends (at most SMALL_SEND user ids) handed over together by the cron share a job, this many at most.
GROUP_SIZE = 25
SMALL_SEND = 10
# An ``ExpansionBatchJob``'s JSON around its jobs' (``{"v":1,"kind":"expand_batch","jobs":[…]}``), with room to spare.
GROUP_ENVELOPE_BYTES = 64
MAX_TEXT_LENGTH = 4096
MAX_HTML_LENGTH = 100_000
# An email's html as each delivery message carries it (JSON-encoded, so quotes and controls are escaped): with the
# text, subject and the rest, well inside SQS's 256 KiB per message.
MAX_HTML_BYTES = 200 * 1024
# The push payloads of a send, JSON-encoded as each delivery message carries them (an APNS one twice, serving the
# sandbox too): well inside SQS's 256 KiB per message; each payload is also held to its platform's limit (APNs and FCM
# take 4 KB: core.channels.push.PLATFORM_PAYLOAD_BYTES).
MAX_PUSH_BYTES = 64 * 1024
# The users table's rule for an id (users_id_check; PostgreSQL text holds no NUL).
USER_ID_PATTERN = r"^[^\x00]{1,256}$"
PATTERN_RULES[USER_ID_PATTERN] = "must be a user id: 1 to 256 characters, none of them NUL"
# The years an ``at`` may name, as written (without its offset): a schedule fires from now on (``schedule_times``
# refuses one more than a year past), and converted by any zone's offset (under a day) it stays within the range of
# Python's datetime (years 1 to 9999), so neither the request nor the cron ever meets an OverflowError.
MIN_AT_YEAR = 2000
MAX_AT_YEAR = 9998
_NAME = NAME_PATTERN.strip("^$")
TOPIC_PATTERN = rf"^{_NAME}/{_NAME}$"


# --- the request ----------------------------------------------------------------------------------------------------


class SendTarget(AudienceRequest):
    """Whom a send reaches: exactly one of ``user_ids``, ``segment``, ``where`` or ``topic`` (its subscribers)."""

    user_ids: list[Annotated[str, Field(pattern=USER_ID_PATTERN), AfterValidator(user_id_bytes)]] | None = Field(
        default=None, min_length=1, max_length=MAX_USER_IDS
    )
    segment: str | None = Field(default=None, pattern=NAME_PATTERN)
    where: Any = None
    topic: str | None = Field(default=None, pattern=TOPIC_PATTERN, description="<channel>/<topic>: its subscribers")

    @field_validator("user_ids", mode="before")
    @classmethod
    def _check_user_ids(cls, user_ids: Any) -> Any:
        """Refuse a user id a delivery message could not carry (it is in each of the user's delivery keys)."""
        return refuse_text(user_ids, UNSENDABLE_OR_UNSTORABLE, SENT_TEXT_RULE, cls.__name__)

    @model_validator(mode="after")
    def _exactly_one(self) -> SendTarget:
        given = [name for name in ("user_ids", "segment", "where", "topic") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("must name exactly one audience: user_ids, segment, where or topic")
        return self


class SendContent(AudienceRequest):
    """What a send says: the text every channel uses, an email's subject and html, per-platform push payloads.

    All of it is sent, so it holds only what a delivery message can carry: refused here, not by a failed expansion.
    """

    refused_text = UNSENDABLE_OR_UNSTORABLE
    text_rule = SENT_TEXT_RULE

    text: str = Field(min_length=1, max_length=MAX_TEXT_LENGTH)
    subject: str | None = Field(default=None, min_length=1, max_length=998)
    html: str | None = Field(default=None, min_length=1, max_length=MAX_HTML_LENGTH)
    push: dict[Literal[Platform, "FCM"], dict[str, Any]] | None = Field(
        default=None, description="Payload objects per platform, replacing the ones built from text and subject."
    )

    @field_validator("html")
    @classmethod
    def _html_fits(cls, html: str | None) -> str | None:
        """Refuse an html a delivery message could not carry (``MAX_HTML_BYTES``): told now, not by a failed send."""
        if html is not None and len(json.dumps(html, ensure_ascii=False).encode("utf-8", "surrogatepass")) > (
            MAX_HTML_BYTES
        ):
            raise ValueError(f"must take at most {MAX_HTML_BYTES // 1024} KiB as JSON in UTF-8")
        return html

    @field_validator("push")
    @classmethod
    def _push_fits(cls, push: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
        """Refuse payloads a delivery message could not carry (``MAX_PUSH_BYTES``): told now, not by a failed send."""
        if push is None:
            return None
        size = len(json.dumps(push, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        if "APNS" in push and "APNS_SANDBOX" not in push:
            size += len(json.dumps(push["APNS"], ensure_ascii=False).encode("utf-8", "surrogatepass"))
        if size > MAX_PUSH_BYTES:
            raise ValueError(
                f"must take at most {MAX_PUSH_BYTES // 1024} KiB as JSON (an APNS payload counts twice: it serves the "
                "sandbox too, unless APNS_SANDBOX is given); APNs and FCM take 4 KB"
            )
        # Each payload is sent whole, as given: one over its platform's limit would fail every device's delivery.
        from core.channels.push import platform_limit

        for platform, payload in push.items():
            limit = platform_limit(platform)
            size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
            if limit is not None and size > limit:
                raise ValueError(
                    f"{platform} must take at most {limit} bytes as compact JSON (its platform takes no more)"
                )
        return push


class SendRequest(Strict):
    """The body of ``POST /v1/sends``."""

    to: SendTarget
    content: SendContent
    channels: list[SendChannel] = Field(default=["push"], min_length=1, max_length=4)
    at: DateTimeText | None = None
    local_time: StrictBool = False

    @field_validator("at")
    @classmethod
    def _check_at(cls, at: datetime | None) -> datetime | None:
        """Refuse an ``at`` outside the years a schedule can fire in (``MIN_AT_YEAR`` to ``MAX_AT_YEAR``)."""
        if at is not None and not MIN_AT_YEAR <= at.year <= MAX_AT_YEAR:
            raise ValueError(f"must be in the years {MIN_AT_YEAR} to {MAX_AT_YEAR}")
        return at

    @model_validator(mode="after")
    def _consistent(self) -> SendRequest:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must not repeat a channel")
        if self.local_time and self.at is None:
            raise ValueError("local_time needs at (a wall-clock time)")
        if "email" in self.channels and self.content.subject is None:
            raise ValueError("content.subject is required when channels include email")
        if "telegram" in self.channels and not self.content.text.strip():
            # As a publish's Telegram model: the channel sends no message without text, and each delivery failed.
            raise ValueError("content.text must hold more than spaces when channels include telegram")
        return self


class SendAccepted(Reply):
    """The body of ``POST /v1/sends``'s 202: the notification to follow, and the schedule of a send with ``at``."""

    notification_id: str
    status: Literal["queued", "scheduled"]
    schedule_id: str | None = None


# --- what the store keeps -------------------------------------------------------------------------------------------


class NewSend(NamedTuple):
    """A send to record for expansion now (``POST /v1/sends`` without ``at``)."""

    notification_id: str
    target: dict[str, Any]
    content: dict[str, Any]
    channels: list[str]
    caller: str | None = None


@dataclass(frozen=True)
class StoredSend:
    """A send as the ``sends`` table keeps it: ``expanded_through`` is the last user id enqueued (the keyset cursor),
    ``zone_cursors`` a local-time send's cursor per time zone, and ``recipients`` the deliveries
    accounted for so far (enqueued and skipped)."""

    send_id: str
    notification_id: str
    target: dict[str, Any]
    content: dict[str, Any]
    channels: list[str]
    status: SendStatus
    expanded_through: str | None
    recipients: int
    last_error: str | None = None
    caller: str | None = None
    zone_cursors: dict[str, str] = field(default_factory=dict)

    def cursor(self, zone: str | None) -> str | None:
        """Return where paging resumes: the cursor of ``zone`` (a local-time hand-off's), or for everyone
        ``expanded_through``."""
        return self.expanded_through if zone is None else self.zone_cursors.get(zone)


# A send's ledger record: ``source`` ``send``, under the topic it reaches the subscribers of, else ``audience/send``
# (the channel/topic of its messages too).
SOURCE = "send"
AUDIENCE_CHANNEL = "audience"
AUDIENCE_TOPIC = "send"


def record_place(target: dict[str, Any]) -> tuple[str, str]:
    """Return the channel and topic a send's record is kept under: its target topic's, else ``audience/send``."""
    topic = target.get("topic")
    if isinstance(topic, str) and "/" in topic:
        channel, name = topic.split("/", 1)
        return channel, name
    return AUDIENCE_CHANNEL, AUDIENCE_TOPIC


# The cursor key of a local-time ``user_ids`` send's sweep, and the mark in ``zones_done`` that it finished: no IANA
# zone is named so.
SWEEP_ZONE = "*"
# How long an expansion job can still come back: the expansion DLQ keeps one 14 days (infra/audience.yml), from when
# it was first queued, until an operator moves it back.
EXPANSION_JOB_MAX_AGE_SECONDS = 14 * 86400


class SendLedgerPort(Protocol):
    """The ledger as ``POST /v1/sends`` writes it: the accepted notification's record."""

    def create_notification(self, record: NotificationRecord) -> bool:
        """Write a record unless one exists under its id; return ``False`` when one does."""
        ...


class SendBusyError(NotificationError):
    """Another expansion run holds the send's lease (``sends.lease``): this job waits its turn."""


# --- the expansion queue ----------------------------------------------------------------------------------------------


class ExpansionJob(BaseModel):
    """A message of the expansion queue: which send to expand, and for a local-time hand-off its zones.

    ``caller`` is the API key id of the request (the notification record's caller); ``zones`` ``None`` is everyone.
    ``sweep``: a local-time send's last hand-off, which after its zones reaches whoever of the audience no hand-off
    did (``core.audience.expansion.expand_send``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    v: Literal[1] = 1
    kind: Literal["expand"] = "expand"
    send_id: str = Field(min_length=1)
    notification_id: str = Field(min_length=1)
    zones: list[str] | None = None
    sweep: bool = False
    caller: str | None = None
    lease: str | None = Field(default=None, description="The send's lease a run handing the send over passes on.")


class DisableEndpointJob(BaseModel):
    """A message of the expansion queue from the consumer: SNS answered ``EndpointDisabled`` for this endpoint, so
    its devices are disabled (the worker has the database, the consumer has not)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    v: Literal[1] = 1
    kind: Literal["disable_endpoint"] = "disable_endpoint"
    endpoint_arn: str = Field(min_length=1, max_length=1024)
    # When SNS answered so: a device registered again since (its endpoint enabled again) is left enabled.
    observed_at: AwareDatetime | None = None


class ExpansionBatchJob(BaseModel):
    """A message of the expansion queue from the cron: several small sends due at once (each to a few user ids), one
    job each, run one after the other by one invocation. Grouped, 10,000 reminders due in one minute are 400 jobs,
    not 10,000 messages and invocations; a send to a segment, a condition or a topic goes alone."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    v: Literal[1] = 1
    kind: Literal["expand_batch"] = "expand_batch"
    jobs: list[ExpansionJob] = Field(min_length=1, max_length=GROUP_SIZE)


class SubscribersJob(BaseModel):
    """A message of the expansion queue from the consumer: a publish's ``subscribers`` integration was delivered, so
    the users subscribed to its notification's channel/topic get ``content`` on ``channels`` (the worker reads the
    channel/topic and the caller from the notification's record)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    v: Literal[1] = 1
    kind: Literal["subscribers"] = "subscribers"
    notification_id: str = Field(min_length=1)
    content: dict[str, str]
    channels: list[SendChannel] = Field(min_length=1, max_length=4)


AnyJob = ExpansionJob | ExpansionBatchJob | DisableEndpointJob | SubscribersJob
Job = Annotated[AnyJob, Field(discriminator="kind")]
_JOB: TypeAdapter[AnyJob] = TypeAdapter(Job, config=ConfigDict(defer_build=True))


def parse_job(body: str) -> AnyJob:
    """Return the job of an SQS body; raise ``InvalidRequestError`` when it is not one."""
    try:
        return _JOB.validate_json(body)
    except ValidationError:
        raise InvalidRequestError("body", "is not an expansion job") from None


class ExpansionQueuePort(Protocol):
    """Where sends are handed to the expansion worker."""

    def submit(self, job: AnyJob, delay_seconds: int = 0) -> str:
        """Put a job on the queue (visible after ``delay_seconds``); return its message id. ``UpstreamError`` when
        the queue refused it."""
        ...

    def submit_all(self, jobs: Sequence[AnyJob]) -> list[str | None]:
        """Put jobs on the queue, ten a call; return for each the reason it was refused, or ``None``."""
        ...


class ExpansionQueue:
    """The expansion queue (SQS, the worker's batch size 1).

    Parameters
    ----------
    client:
        A boto3 SQS client.
    queue_url:
        The expansion queue's URL.
    """

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def submit(self, job: AnyJob, delay_seconds: int = 0) -> str:
        """Send one job, visible after ``delay_seconds`` (at most 900); return its SQS message id."""
        try:
            response = self._client.send_message(
                QueueUrl=self._url, MessageBody=job.model_dump_json(), DelaySeconds=delay_seconds
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "sending to the expansion queue") from exc
        return str(response["MessageId"])

    def submit_all(self, jobs: Sequence[AnyJob]) -> list[str | None]:
        """Send jobs as the delivery queue sends its messages (``SendMessageBatch``, ten a call, calls at once, refused
        entries tried once more); return for each the reason it was refused, or ``None``."""
        outcome = DeliveryQueue(self._client, self._url).send(
            [(str(index), job.model_dump_json()) for index, job in enumerate(jobs)]
        )
        return [
            f"the expansion queue refused the job ({reason})" if (reason := outcome.failed.get(str(index))) else None
            for index in range(len(jobs))
        ]


# --- POST /v1/sends -------------------------------------------------------------------------------------------------


def check_audience(request: SendRequest, store: SendStorePort) -> None:
    """Raise ``InvalidRequestError`` naming the field when the audience cannot be expanded: a ``where`` that is not a
    condition, a segment that does not exist."""
    if request.to.where is not None:
        parse_where(request.to.where, "to.where")
    if request.to.segment is not None:
        try:
            store.get_segment(request.to.segment)
        except NotFoundError:
            raise InvalidRequestError("to.segment", "names no segment (PUT /v1/segments/{name} first)") from None


def accept_send(
    request: SendRequest,
    store: SendStorePort,
    expansion: ExpansionQueuePort,
    now: datetime,
    notification_id: str,
    *,
    caller: str | None = None,
    ledger: SendLedgerPort | None = None,
) -> SendAccepted:
    """Record a send and hand it over: to the expansion queue now, or with its schedule when it has ``at``.

    ``ledger``: where a send handed over now gets its notification's record before its job is submitted.

    ``notification_id`` is fresh, or derived from an ``Idempotency-Key``: the same key and body again answers the
    same notification and submits its job again (the worker resumes where the send stands, nothing is sent twice);
    the same key with another body is a ``ConflictError``. Raises ``InvalidRequestError`` naming a field,
    ``UpstreamError`` when the store or the queue failed (nothing was lost: the send is recorded, a retry submits it).
    """
    check_audience(request, store)
    target = request.to.model_dump(exclude_none=True)
    content = request.content.model_dump(exclude_none=True)
    channels: list[str] = list(request.channels)
    if request.at is not None:
        fire_at, local_at = schedule_times(request.at, request.local_time, store.user_zones(), now)
        try:
            schedule = store.create_scheduled_send(
                NewScheduledSend(
                    notification_id=notification_id,
                    target=target,
                    content=content,
                    channels=channels,
                    fire_at=fire_at,
                    local_at=local_at,
                    caller=caller,
                )
            )
        except ConflictError:
            # The same Idempotency-Key again: the same body answers the schedule made the first time.
            schedule = _same_schedule(
                store.find_schedule(notification_id), target, content, channels, fire_at, local_at
            )
        logger.info("send scheduled", extra={"notification_id": notification_id, "schedule_id": schedule.schedule_id})
        return SendAccepted(notification_id=notification_id, status="scheduled", schedule_id=schedule.schedule_id)
    send, created = store.create_send(NewSend(notification_id, target, content, channels, caller))
    if not created and (
        _canonical(send.target, send.content, send.channels) != _canonical(target, content, channels)
        # The key made a scheduled send: this request, without ``at``, is another; its job would send it now.
        or store.find_schedule(notification_id) is not None
    ):
        raise ConflictError("Idempotency-Key was already used with a different request body")
    if ledger is not None:
        # The answer's Location (the notification's status) answers from the 202 on, not once a worker expanded it:
        # a job failing for now (the database down) and waiting in the expansion DLQ left it a 404. The worker keeps
        # this record (``expand_send``); a repeat of the key finds it written.
        channel, topic = record_place(target)
        ledger.create_notification(
            NotificationRecord(
                notification_id=notification_id,
                source=SOURCE,
                channel=channel,
                topic=topic,
                created_at=iso_time(now.timestamp()),
                caller=caller,
                delivery_count=0,
            )
        )
    expansion.submit(ExpansionJob(send_id=send.send_id, notification_id=notification_id, caller=caller))
    logger.info("send queued", extra={"notification_id": notification_id, "send_id": send.send_id, "new": created})
    return SendAccepted(notification_id=notification_id, status="queued")


def _same_schedule(
    schedule: Schedule | None,
    target: dict[str, Any],
    content: dict[str, Any],
    channels: list[str],
    fire_at: datetime,
    local_at: datetime | None,
) -> Schedule:
    """Return the schedule a request with an Idempotency-Key made before, when this one asks for the same send at the
    same time; raise ``ConflictError`` otherwise (another body, or an immediate send made under the key)."""
    same = schedule is not None and (
        _canonical(schedule.to, schedule.content, schedule.channels) == _canonical(target, content, channels)
        # A local-time send's fire_at moves with its zones, and is computed from the clock; its wall clock does not.
        # An instant's moves when the cron retries it (a backoff): the time as asked is kept beside it. A row made
        # before that was kept is compared with fire_at until the cron first tried it.
        and (
            schedule.local_at == local_at
            if local_at is not None
            else not schedule.local_time
            and (
                schedule.asked_at == fire_at
                if schedule.asked_at is not None
                else schedule.fire_at == fire_at or schedule.attempts > 0
            )
        )
    )
    if schedule is None or not same:
        raise ConflictError("Idempotency-Key was already used with a different request body")
    return schedule


def _canonical(target: dict[str, Any], content: dict[str, Any], channels: list[str]) -> str:
    """Return a request's parts as text two equal requests share, whether read from the request or from PostgreSQL:
    JSONB keeps a number's value, not its spelling (1e16 comes back 10000000000000000, -0.0 as 0.0), so numbers are
    written by value. (A NUL, which no stored text holds, marks them.)"""
    return json.dumps([_by_value(target), _by_value(content), channels], sort_keys=True, separators=(",", ":"))


def _by_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _by_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_by_value(item) for item in value]
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return value
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    # Normalized without rounding (the default context keeps 28 digits: two ids of 32 digits would compare equal).
    exact = Context(prec=max(28, len(number.as_tuple().digits)))
    return {"\x00n": "0" if number == 0 else str(number.normalize(exact))}


# --- the cron's hand-off ------------------------------------------------------------------------------------------


def _groups(small: Sequence[tuple[DueSend, ExpansionJob]]) -> Iterator[list[tuple[DueSend, ExpansionJob]]]:
    """Cut the small sends into groups of at most ``GROUP_SIZE`` whose job fits one SQS message: a send's first
    hand-off names every zone that has users and whose time has passed, up to all of tzdata's (~600 names, 10 KiB)."""
    return bounded_groups(
        small,
        lambda unit: len(unit[1].model_dump_json().encode()) + 1,  # and its comma
        GROUP_SIZE,
        MESSAGE_BYTES_LIMIT,
        GROUP_ENVELOPE_BYTES,
    )


class AudienceSendEnqueuer:
    """The cron's enqueuer of scheduled sends: every audience (``user_ids``, ``segment``, ``where``, a topic's
    subscribers) goes to the expansion queue, with the zones of a local-time hand-off, as ``POST /v1/sends`` without
    ``at`` does.

    A job submitted twice (a run that died before marking its claim) is harmless: the worker resumes the send at its
    cursor and the delivery keys are the same.
    """

    def __init__(self, expansion: ExpansionQueuePort) -> None:
        self._expansion = expansion

    def enqueue_all(self, sends: Sequence[DueSend]) -> dict[str, Exception]:
        """Hand the due sends over, small ones ``GROUP_SIZE`` to a job, ten jobs a call; return the error of each
        schedule id the queue refused."""
        small: list[tuple[DueSend, ExpansionJob]] = []
        units: list[tuple[list[DueSend], AnyJob]] = []
        for send in sends:
            # An empty zone set is a local-time send's last claim with no zone due: its job writes the record of a
            # send that reached no one, and marks the send expanded.
            job = ExpansionJob(
                send_id=send.send_id, notification_id=send.notification_id, zones=send.zones, sweep=send.sweep
            )
            ids = send.target.get("user_ids")
            if isinstance(ids, list) and len(ids) <= SMALL_SEND:
                small.append((send, job))
            else:
                units.append(([send], job))
        for group in _groups(small):
            batch = ExpansionBatchJob(jobs=[job for _send, job in group]) if len(group) > 1 else group[0][1]
            units.append(([send for send, _job in group], batch))
        reasons = self._expansion.submit_all([job for _sends, job in units])
        logger.info("scheduled sends handed to the expansion worker", extra={"sends": len(sends), "jobs": len(units)})
        return {
            send.schedule_id: UpstreamError(reason)
            for (handed, _job), reason in zip(units, reasons, strict=True)
            if reason
            for send in handed
        }

    def enqueue(self, send: DueSend) -> None:
        """Hand the due send over; ``UpstreamError`` when the queue refused it (the cron retries the claim)."""
        self._expansion.submit(
            ExpansionJob(send_id=send.send_id, notification_id=send.notification_id, zones=send.zones, sweep=send.sweep)
        )
        logger.info(
            "scheduled send handed to the expansion worker",
            extra={"schedule_id": send.schedule_id, "zones": len(send.zones) if send.zones is not None else None},
        )
