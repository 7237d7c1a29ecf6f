"""The expansion worker's logic: a recorded send becomes recipient deliveries on the delivery queue, page by page.

A job (``core/audience/sends.py``'s ``ExpansionJob``) names a send. The worker pages its audience by keyset (user ids
in order: ``users_page`` for a segment or a ``where``, ``users_by_ids`` for ids, ``subscribers_page`` for a topic's
subscribers; a local-time hand-off keeps only the users of its zones), and for each page builds one delivery per
recipient and channel (DESIGN.md's message v2 with ``recipient``):

- ``push``: one per enabled device, to its SNS endpoint, key ``push:<user id>:<device id>``; the per-platform payloads
  are built once per send (``core.channels.push.platform_payloads``) and the same object serves every recipient;
- ``email``: where the user has an address, key ``email:<user id>``;
- ``telegram``: where the user has a chat id, key ``telegram:<user id>``;
- ``browser``: every user (their open connections, if any), key ``browser:<user id>``.

(A user id stored before ids were bounded in bytes stands in its keys as its SHA-256, so that they fit the ledger.)

A recipient without an address on a requested channel (no device, no email, no chat) gets no message: a ``skipped``
row (key ``<channel>:<user id>``) that the status summary counts. Email and Telegram need a sender: the integrations
of the stage's audience sender topic (``AUDIENCE_SENDER_TOPIC``, e.g. ``audience/default``: an ``email`` integration
whose target's ``from`` is the verified sender, a ``telegram`` one whose credentials hold the bot token); a send that
asks for one of them without it, or while that topic does not exist, fails (``failed``, with the reason) before
anything is enqueued.

Resuming: after each page is enqueued (``SendMessageBatch``, ten at a time, batches concurrently), the send's cursor
(``expanded_through``, the last user id of the page; for a local-time send's zone hand-off, its zone set's own cursor in
``zone_cursors``, ``infra/migrations/0003_send_zone_cursors.sql``) and its deliveries count move together, then the
ledger's notification record (source ``send``) is written with that count. A worker that dies resumes after the last
page it recorded; the page it was on is enqueued again under the same deterministic delivery keys, and the consumer does
not send a delivery already ``delivered``. A worker running out of time hands the rest to a new job.

Once per user: a zone hand-off records the users of each page with its cursor (``send_recipients``,
``infra/migrations/0004_send_recipients.sql``) and leaves out of its pages the users already recorded, so a user whose
time zone changed from a zone handed over to one handed over later (or between the zones of one job) is enqueued and
counted once. An instant send pages everyone with one cursor, which reaches each user once.

The sweep: a user is reached at their zone's time or not at all (a send at 09:00 never arrives at 23:00), but every
id a ``user_ids`` send names gets a row, as an instant send's do. Its last hand-off (``ExpansionJob.sweep``, the claim
after which no clock shows its time) pages, after its zones, the named ids with a cursor of its own (``SWEEP``) and
writes a ``skipped`` row for each that no hand-off recorded: ``NO_USER`` for an id no user has, ``TOO_LATE`` for a user
who moved into a zone already handed over, or was made there after its time.

One run at a time per send (``sends.lease``, ``infra/migrations/0002_send_lease_and_caller.sql``): a job delivered
twice, or a local-time send's next zone arriving while the last is being expanded, waits on the queue for the run
that holds it.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, NamedTuple, Protocol

from core.audience.models import MAX_USER_ID_BYTES, User, UserPage
from core.audience.ports import ExpansionStorePort
from core.audience.segments import compile_where, parse_where
from core.audience.sends import (
    SOURCE,
    SWEEP_ZONE,
    ExpansionBatchJob,
    ExpansionJob,
    ExpansionQueuePort,
    NewSend,
    SendBusyError,
    StoredSend,
    SubscribersJob,
    record_place,
)
from core.channels.push import platform_payloads
from core.errors import InvalidRequestError, NotFoundError, NotificationError, UpstreamError
from core.ledger import DeliveryRow, NotificationRecord
from core.models import (
    Content,
    DeliveryMessage,
    DeliveryStatus,
    Integration,
    IntegrationType,
    MessageIntegration,
    Recipient,
)
from core.observability import logger, metrics
from core.queue import DELIVERY_MESSAGE_BYTES_LIMIT, DeliveryQueue, SendOutcome
from core.realtime.refs import USER_ID_PATTERN as BROWSER_USER_ID_PATTERN
from core.times import epoch_time, utc_now

DEFAULT_PAGE_SIZE = 500
# The messages of a page built and held at once, in characters of their bodies (``_enqueue_page``).
ENQUEUE_CHUNK_BYTES = 8 * 1024 * 1024
# How long a run's hold on a send lasts past its last page (a page takes about a second), and how long a job that
# found the send held waits on the queue before it looks again.
DEFAULT_LEASE_SECONDS = 120.0
BUSY_DELAY_SECONDS = 30
# The cursor key of a local-time send's sweep (``zone_cursors``), and its mark in ``zones_done`` once it finished.
SWEEP = SWEEP_ZONE
NO_DEVICE = "no enabled device"
NO_EMAIL = "no email address"
NO_CHAT = "no Telegram chat id"
NO_BROWSER_ID = "user id cannot address browser connections"
NO_USER = "no such user (deleted since the send was accepted, or never created)"
TOO_LATE = "in no zone of the send when its clock showed the send's time (the user moved there, or was made, after)"


class ExpansionError(NotificationError):
    """A send cannot be expanded as recorded (its segment is gone, a channel has no sender): it is ``failed``."""


class ExpansionLedgerPort(Protocol):
    """The ledger as the worker writes it: the notification's record and the rows of skipped recipients."""

    def create_notification(self, record: NotificationRecord) -> bool:
        """Write a record unless one exists under its id; return ``False`` when one does."""
        ...

    def count_deliveries(self, notification_id: str, delivery_count: int, error: str | None = None) -> None:
        """Write an existing record's count of deliveries (and the error that ended its expansion), nothing else."""
        ...

    def get_record(self, notification_id: str) -> NotificationRecord:
        """Return a record; ``NotFoundError`` when none."""
        ...

    def keep_record(self, notification_id: str, until: float) -> None:
        """Keep a record at least the ledger's days past ``until`` (Unix time); never shorten it."""
        ...

    def update(
        self,
        notification_id: str,
        delivery_key: str,
        status: DeliveryStatus,
        *,
        row: DeliveryRow | None = None,
        attempts: int | None = None,
        last_error: str | None = None,
    ) -> bool:
        """Write a delivery row's status."""
        ...


class Senders(NamedTuple):
    """The integrations email and Telegram deliveries of sends go out through (the audience sender topic's)."""

    email: Integration | None = None
    telegram: Integration | None = None

    @classmethod
    def of(cls, integrations: Sequence[Integration]) -> Senders:
        """Return the first email and the first Telegram integration of a topic."""
        by_type: dict[IntegrationType, Integration] = {}
        for integration in integrations:
            by_type.setdefault(integration.type, integration)
        return cls(email=by_type.get(IntegrationType.EMAIL), telegram=by_type.get(IntegrationType.TELEGRAM))


@dataclass
class ExpansionReport:
    """What a run did: pages read, deliveries enqueued and skipped, and whether the send is done."""

    pages: int = 0
    enqueued: int = 0
    skipped: int = 0
    # The deliveries of the page being enqueued that are already on the queue or written (its chunks so far).
    in_page: int = 0
    done: bool = False
    handed_over: bool = False
    status: str = ""
    errors: list[str] = field(default_factory=list)


class _ZonedCondition(NamedTuple):
    """A compiled condition narrowed to the users of some zones (a local-time hand-off)."""

    sql: str
    params: tuple[Any, ...]


class _Planned(NamedTuple):
    """One recipient delivery of a page: its key, its ledger row, and its message body (``None``: skipped)."""

    key: str
    row: DeliveryRow
    body: str | None
    reason: str | None = None


class _Builder:
    """Builds the messages of one send; every channel's content is made once and shared by every recipient."""

    def __init__(
        self,
        send: StoredSend,
        channel: str,
        topic: str,
        created_at: str,
        window_start: str,
        senders: Senders | None,
    ) -> None:
        self._send = send
        self._channel = channel
        self._topic = topic
        self._created_at = created_at
        self._window_start = window_start
        # When the page being built was read (``expanded_at``; the run's start until a page sets it).
        self.read_at = window_start
        self._senders = senders or Senders()
        content = send.content
        text: str = content["text"]
        self._contents = {
            "push": Content(text=text, data=platform_payloads(text, content.get("subject"), content.get("push"))),
            "email": Content(text=text, subject=content.get("subject"), html=content.get("html")),
            "telegram": Content(text=text),
            "browser": Content(text=text),
        }
        if "email" in send.channels and self._senders.email is None:
            raise ExpansionError("email needs an email integration on the audience sender topic")
        if "telegram" in send.channels and self._senders.telegram is None:
            raise ExpansionError("telegram needs a telegram integration on the audience sender topic")

    def _message(
        self, key: str, kind: str, target: dict[str, Any], recipient: Recipient, sender: Integration | None = None
    ) -> str:
        message = DeliveryMessage(
            notification_id=self._send.notification_id,
            delivery_key=key,
            channel=self._channel,
            topic=self._topic,
            created_at=self._created_at,
            window_start=self._window_start,
            expanded_at=self.read_at,
            integration=MessageIntegration(
                name=sender.name if sender else kind,
                type=IntegrationType(kind),
                target=target,
                credentials_ref=sender.credentials_ref if sender else None,
                rate_per_second=sender.rate_per_second if sender else None,
            ),
            recipient=recipient,
            content=self._contents[kind],
        )
        body = message.model_dump_json(exclude_none=True)
        if len(body.encode()) > DELIVERY_MESSAGE_BYTES_LIMIT:
            raise ExpansionError(f"the {kind} message exceeds {DELIVERY_MESSAGE_BYTES_LIMIT // 1024} KiB")
        return body

    def plan(self, users: Sequence[User], devices: dict[str, list[Any]]) -> Iterator[_Planned]:
        """Yield the deliveries of a page of users, in user order, skipped ones included, each built when asked for."""
        for user in users:
            uid = user.user_id
            for kind in self._send.channels:
                if kind == "push":
                    found = devices.get(uid, [])
                    if not found:
                        yield (_skip(_key(kind, uid), kind, uid, NO_DEVICE))
                    for device in found:
                        key = _key(kind, uid, device.device_id)
                        recipient = Recipient(user_id=uid, device_id=device.device_id)
                        body = self._message(key, kind, {"endpoint_arn": device.endpoint_arn}, recipient)
                        yield (_Planned(key, _row(kind, recipient), body))
                elif kind == "email":
                    key = _key(kind, uid)
                    if not user.email:
                        yield (_skip(key, kind, uid, NO_EMAIL))
                        continue
                    sender = self._senders.email
                    assert sender is not None
                    recipient = Recipient(user_id=uid, address=user.email)
                    target = {"to": [user.email], "from": sender.target.get("from")}
                    body = self._message(key, kind, target, recipient, sender)
                    yield (_Planned(key, _row(kind, recipient), body))
                elif kind == "telegram":
                    key = _key(kind, uid)
                    if not user.telegram_chat_id:
                        yield (_skip(key, kind, uid, NO_CHAT))
                        continue
                    recipient = Recipient(user_id=uid, address=user.telegram_chat_id)
                    target = {"chat_id": user.telegram_chat_id}
                    body = self._message(key, kind, target, recipient, self._senders.telegram)
                    yield (_Planned(key, _row(kind, recipient), body))
                else:
                    key = _key(kind, uid)
                    if not re.fullmatch(BROWSER_USER_ID_PATTERN, uid):
                        yield (_skip(key, kind, uid, NO_BROWSER_ID))
                        continue
                    recipient = Recipient(user_id=uid)
                    body = self._message(key, kind, {"user_id": uid}, recipient)
                    yield (_Planned(key, _row(kind, recipient), body))

    def skipped(self, recipients: Sequence[str] | Sequence[User], reason: str) -> Iterator[_Planned]:
        """Yield a skipped delivery per requested channel of each recipient (a user, or an id the audience lacks)."""
        for recipient in recipients:
            uid = recipient if isinstance(recipient, str) else recipient.user_id
            for kind in self._send.channels:
                yield _skip(_key(kind, uid), kind, uid, reason)


def _key(kind: str, user_id: str, device_id: str | None = None) -> str:
    """Return a recipient delivery's key: ``<channel>:<user id>``, with ``:<device id>`` for push.

    A user id longer than ``MAX_USER_ID_BYTES`` (stored before that limit) stands in its key as ``sha256=`` and the hex
    digest of its UTF-8: the key is the ledger's sort key, which DynamoDB refuses past 1024 bytes, and one recipient's
    key it refused would fail every page of the send again. The row's ``recipient`` keeps the whole id.
    """
    encoded = user_id.encode("utf-8", "surrogatepass")
    part = user_id if len(encoded) <= MAX_USER_ID_BYTES else f"sha256={hashlib.sha256(encoded).hexdigest()}"
    return f"{kind}:{part}" if device_id is None else f"{kind}:{part}:{device_id}"


def _row(kind: str, recipient: Recipient) -> DeliveryRow:
    return DeliveryRow(integration=kind, type=kind, recipient=recipient.model_dump(exclude_none=True))


def _skip(key: str, kind: str, user_id: str, reason: str) -> _Planned:
    return _Planned(key, DeliveryRow(integration=kind, type=kind, recipient={"user_id": user_id}), None, reason)


_Page = tuple[list[User], str | None, list[str]]


def _id_pages(
    ids: list[str],
    store: ExpansionStorePort,
    wanted: set[str] | None,
    after: str | None,
    page_size: int,
    zone_of: dict[str, str | None] | None,
) -> Iterator[tuple[list[User], str | None, list[str]]]:
    """Yield the pages of a list of user ids after ``after``, its users of ``wanted`` zones only when set, with the
    page's ids no user has (an instant send's: a zone's list holds only users it found in that zone).

    ``zone_of`` (user id → time zone, ``None`` for no such user) is filled by the first call and read by the next, so
    a hand-off paging its zones one by one reads the list once, then only each zone's own users.
    """
    if wanted is not None and zone_of is not None:
        if not zone_of:
            zone_of.update(dict.fromkeys(ids))
            for start in range(0, len(ids), page_size):
                zone_of.update({u.user_id: u.timezone for u in store.users_by_ids(ids[start : start + page_size])})
        ids = [uid for uid in ids if zone_of.get(uid) in wanted]
    pending = [uid for uid in ids if after is None or uid > after]
    for start in range(0, len(pending), page_size):
        chunk = pending[start : start + page_size]
        users = store.users_by_ids(chunk)
        if wanted is not None:
            yield [user for user in users if user.timezone in wanted], chunk[-1], []
            continue
        found = {user.user_id for user in users}
        yield users, chunk[-1], [uid for uid in chunk if uid not in found]


def _pages(
    send: StoredSend,
    store: ExpansionStorePort,
    zones: list[str] | None,
    after: str | None,
    page_size: int,
    zone_of: dict[str, str | None] | None = None,
) -> Iterator[tuple[list[User], str | None, list[str]]]:
    """Yield each page of the audience after ``after``: its users (of ``zones`` only, when set), its cursor, and the
    ids of a ``user_ids`` send's page that no user has."""
    target = send.target
    wanted = set(zones) if zones is not None else None
    if "user_ids" in target:
        yield from _id_pages(sorted({str(uid) for uid in target["user_ids"]}), store, wanted, after, page_size, zone_of)
        return
    if "topic" in target:
        channel, name = str(target["topic"]).split("/", 1)

        def page_of(cursor: str | None) -> UserPage:
            return store.subscribers_page(channel, name, cursor, page_size, zones)

    else:
        if "segment" in target:
            try:
                where = store.get_segment(str(target["segment"])).definition.get("where")
            except NotFoundError:
                raise ExpansionError(f"segment {target['segment']!r} no longer exists") from None
        else:
            where = target.get("where")
        try:
            compiled = compile_where(parse_where(where, "to"))
        except InvalidRequestError as exc:
            raise ExpansionError(f"the audience condition is not valid: {exc}") from None
        condition: Any = compiled
        if zones is not None:
            condition = _ZonedCondition(f"({compiled.sql}) AND u.timezone = ANY(%s)", (*compiled.params, list(zones)))

        def page_of(cursor: str | None) -> UserPage:
            return store.users_page(condition, cursor, page_size)

    cursor = after
    while True:
        page = page_of(cursor)
        if page.users:
            cursor = page.users[-1].user_id
            yield [user for user in page.users if wanted is None or user.timezone in wanted], cursor, []
        if page.next_after is None:
            return


def expand_send(
    job: ExpansionJob,
    store: ExpansionStorePort,
    ledger: ExpansionLedgerPort,
    queue: DeliveryQueue,
    expansion: ExpansionQueuePort,
    *,
    senders: Callable[[], Senders] | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    time_left: Callable[[], float] | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    now: Callable[[], str] = utc_now,
) -> ExpansionReport:
    """Expand one job's send onto the delivery queue, resuming at its cursor; return what was done.

    One run at a time per send: the run takes the send's lease, holds it on with each page, passes it to the job it
    hands the send over to, and frees it when the send is done. A job that finds the lease held by another run goes
    back on the queue with a delay of ``BUSY_DELAY_SECONDS`` (``status`` ``busy``).

    Every message keeps the record's ``created_at`` and carries this run's start as its ``window_start``: a
    local-time send hands its zones off under one record for up to a day, and each zone's deliveries get the whole
    retry window from their own hand-off.

    ``senders`` returns the audience sender topic's integrations, called only when a channel needs one; it raises
    ``ExpansionError`` when that topic cannot serve (it does not exist). Raises ``UpstreamError`` when the store, the
    ledger or the queue failed before a page was recorded (the job is retried from the cursor). A send that can never
    be expanded (``ExpansionError``) is marked ``failed``.
    """
    report = ExpansionReport()
    send = store.get_send(job.send_id)
    if send.status in ("cancelled", "failed") or (send.status == "expanded" and job.zones is None):
        report.status, report.done = send.status, True
        logger.info("expansion job for a send that is done", extra={"send_id": send.send_id, "status": send.status})
        return report
    lease = job.lease or str(uuid.uuid4())
    try:
        send = store.start_expansion(send.send_id, lease, lease_seconds, job.zones or ())
    except SendBusyError:
        expansion.submit(job, delay_seconds=BUSY_DELAY_SECONDS)
        report.status, report.handed_over = "busy", True
        logger.info("send is being expanded by another run: job put back", extra={"send_id": send.send_id})
        return report
    if send.status in ("cancelled", "failed"):
        report.status, report.done = send.status, True
        return report
    channel, topic = record_place(send.target)
    started = now()
    record = NotificationRecord(
        notification_id=send.notification_id,
        source=SOURCE,
        channel=channel,
        topic=topic,
        created_at=started,
        caller=job.caller or send.caller,
        delivery_count=send.recipients,
    )
    if not ledger.create_notification(record):
        # An earlier run's record, the one written when the send was accepted, or the record of the publish whose
        # subscribers these are: its own deliveries (its integrations) stay listed and counted beside the recipients.
        # Kept as long as the rows this run writes: a job back from the expansion DLQ days later found the record
        # written at accept, which expired that many days before them (the status route then a 404).
        record = ledger.get_record(send.notification_id)
        ledger.keep_record(send.notification_id, epoch_time(started) or time.time())
    own = len(record.deliveries)
    total = send.recipients
    try:
        needs_sender = "email" in send.channels or "telegram" in send.channels
        sender = senders() if senders and needs_sender else None
        builder = _Builder(send, channel, topic, record.created_at, started, sender)
        # A zone hand-off pages its zones one by one, each resuming its own cursor: after its last run's last page,
        # so a job delivered twice, retried after it finished, or planned again with one more zone, enqueues and
        # counts no one again; another zone's cursor is not its users'.
        zone_of: dict[str, str | None] = {}
        for zone in _hand_off_parts(job, send):
            scope = [zone] if zone is not None and zone != SWEEP else None
            for page, cursor, absent in _timed(
                _pages(send, store, scope, send.cursor(zone), page_size, zone_of), builder, now
            ):
                planned, handed = _plan_page(send, store, builder, zone, page, absent)
                total += _enqueue_page(send, planned, ledger, queue, report)
                if not store.advance_send(send.send_id, cursor, total, lease, lease_seconds, zone, handed):
                    # This run outlived its lease and another took the send over, maybe for other zones: this job
                    # comes back, and goes on from its zones' cursors once that run is done.
                    expansion.submit(job, delay_seconds=BUSY_DELAY_SECONDS)
                    report.status, report.handed_over = "lease lost", True
                    logger.warning("expansion lease lost: the job is put back", extra={"send_id": send.send_id})
                    return report
                report.pages += 1
                _write_count(ledger, record.notification_id, own + total)
                if time_left is not None and time_left() <= 0:
                    expansion.submit(job.model_copy(update={"lease": lease}))
                    report.handed_over = True
                    report.status = "expanding"
                    logger.info("expansion handed over to a new job", extra={"send_id": send.send_id, "cursor": cursor})
                    return report
            if zone is not None:
                # Its pages are done: the sweep no longer leaves its users to it. The sweep's own mark tells the purge
                # of the send's recorded recipients that no part of the send reads them any more.
                store.finish_zone(send.send_id, zone, lease)
    except ExpansionError as exc:
        return _failed(send, store, ledger, own + total + report.in_page, report, str(exc))
    # The count once more, failing the job when it fails: a page's write that failed is written by the next page, and
    # the last page has none (the status would say fewer deliveries than were enqueued). Retried, the job pages
    # nothing more and writes it again.
    ledger.count_deliveries(record.notification_id, own + total)
    return _expanded(send, store, report)


def _failed(
    send: StoredSend,
    store: ExpansionStorePort,
    ledger: ExpansionLedgerPort,
    count: int,
    report: ExpansionReport,
    error: str,
) -> ExpansionReport:
    """End a send that cannot be expanded: its notification's count and why, then the send marked failed."""
    # The notification's status tells why: the send's own row is not one the API shows. The deliveries of a page
    # enqueued before its failing message (a chunk at a time) are on their way, and counted. Written before the
    # send is marked failed, failing the job when it fails: once failed, no job of the send writes it again.
    ledger.count_deliveries(send.notification_id, count, error)
    store.finish_send(send.send_id, "failed", error)
    report.status, report.done = "failed", True
    report.errors.append(error)
    # Counted for the alarm; a warning, not an error: the send's own content or audience (a segment deleted, no
    # sender topic), not a fault of this code. Its notification id named, as a batch's sends log no other.
    metrics.add_metric(name="SendsFailed", unit="Count", value=1)
    logger.warning(
        "send cannot be expanded",
        extra={"send_id": send.send_id, "notification_id": send.notification_id, "error": error},
    )
    return report


def _timed(pages: Iterator[_Page], builder: _Builder, now: Callable[[], str]) -> Iterator[_Page]:
    """Yield ``pages``, ``builder.read_at`` set to the time before each is read: a user deleted after it is not sent
    to (the consumer drops a delivery whose user was deleted after its audience was read), one deleted and created
    again before it is. The run's start stood for every page, and a user created again during a long run lost what
    was expanded for them after."""
    while True:
        builder.read_at = now()
        try:
            page = next(pages)
        except StopIteration:
            return
        yield page


def _plan_page(
    send: StoredSend,
    store: ExpansionStorePort,
    builder: _Builder,
    zone: str | None,
    page: list[User],
    absent: list[str],
) -> tuple[Iterable[_Planned], list[str]]:
    """Return the deliveries of a page of ``zone`` (``None``: everyone) and the ids it hands over (recorded for a
    local-time send, whose pages leave out whoever an earlier page recorded)."""
    if zone is None:
        devices = store.devices_of([user.user_id for user in page]) if page else {}
        return chain(builder.plan(page, devices), builder.skipped(absent, NO_USER)), []
    users = _not_handed_over(send, store, page)
    if zone != SWEEP:
        handed = [user.user_id for user in users]
        devices = store.devices_of(handed) if users else {}
        return chain(builder.plan(users, devices), builder.skipped(absent, NO_USER)), handed
    # The sweep: the named ids no zone handed over get their rows, never a late message. A user in a zone a hand-off
    # named whose run has not finished (it failed for now and comes back from the queue, or its worker died) is left
    # to that run: skipped here as too late, it was then left out by that run too, and never reached.
    pending = store.zones_pending(send.send_id) if users else set()
    late = [user for user in users if user.timezone not in pending]
    done = store.handed_over(send.send_id, absent) if absent else set()
    unknown = [uid for uid in absent if uid not in done]
    return chain(builder.skipped(late, TOO_LATE), builder.skipped(unknown, NO_USER)), [
        *(user.user_id for user in late),
        *unknown,
    ]


def _hand_off_parts(job: ExpansionJob, send: StoredSend) -> list[str | None]:
    """Return what a job pages, in order, each with a cursor of its own: everyone (``None``, an instant send), or
    each of a local-time hand-off's zones, then for the last hand-off of a ``user_ids`` send the sweep (``SWEEP``)."""
    if job.zones is None:
        return [None]
    return [*sorted(set(job.zones)), *([SWEEP] if job.sweep and "user_ids" in send.target else [])]


def _not_handed_over(send: StoredSend, store: ExpansionStorePort, users: list[User]) -> list[User]:
    """Return the users of a zone's page that no page of the send handed over yet.

    A zone's cursor keeps its own users from being paged twice, not a user whose time zone changed after an earlier
    zone handed them over: paged again by the later zone, they were enqueued and counted twice (the status said one
    delivery was queued forever). The run holds the send's lease from this read until ``advance_send`` records the
    page, so no other run records a user in between.
    """
    if not users:
        return users
    done = store.handed_over(send.send_id, [user.user_id for user in users])
    return [user for user in users if user.user_id not in done] if done else users


def _expanded(send: StoredSend, store: ExpansionStorePort, report: ExpansionReport) -> ExpansionReport:
    """Mark a send's expansion done (of the zones of its job, for a hand-off), count and log it; return ``report``."""
    store.finish_send(send.send_id, "expanded")
    report.status, report.done = "expanded", True
    metrics.add_metric(name="SendRecipientsEnqueued", unit="Count", value=report.enqueued)
    metrics.add_metric(name="SendRecipientsSkipped", unit="Count", value=report.skipped)
    logger.info(
        "send expanded",
        extra={"send_id": send.send_id, "pages": report.pages, "enqueued": report.enqueued, "skipped": report.skipped},
    )
    return report


def expand_batch(
    batch: ExpansionBatchJob,
    store: ExpansionStorePort,
    ledger: ExpansionLedgerPort,
    queue: DeliveryQueue,
    expansion: ExpansionQueuePort,
    *,
    time_left: Callable[[], float] | None = None,
    **options: Any,
) -> list[ExpansionReport]:
    """Expand the small sends of a batch one after the other; return their reports.

    A send that failed for now (``UpstreamError``) goes back on the queue as a job of its own; when the time runs out,
    the sends not yet started go back together. A send that can never be expanded (it no longer exists) is logged and
    left: the others go on. Raises ``UpstreamError`` only when the queue refused a job put back (the batch comes back,
    and the sends it finished are done: their jobs end at once).
    """
    reports: list[ExpansionReport] = []
    for index, job in enumerate(batch.jobs):
        if time_left is not None and time_left() <= 0:
            rest = batch.jobs[index:]
            expansion.submit(rest[0] if len(rest) == 1 else ExpansionBatchJob(jobs=rest))
            logger.info("expansion batch handed over", extra={"sends": len(rest)})
            break
        try:
            reports.append(expand_send(job, store, ledger, queue, expansion, time_left=time_left, **options))
        except UpstreamError as exc:
            logger.warning(
                "a send of a batch failed for now: put back alone",
                extra={"send_id": job.send_id, "notification_id": job.notification_id},
            )
            expansion.submit(job)
            reports.append(ExpansionReport(status="retry", errors=[str(exc)]))
        except NotificationError as exc:
            metrics.add_metric(name="SendsFailed", unit="Count", value=1)
            logger.error(
                "a send of a batch cannot be expanded",
                extra={"send_id": job.send_id, "notification_id": job.notification_id, "error": str(exc)},
            )
            reports.append(ExpansionReport(status="dropped", done=True, errors=[str(exc)]))
    return reports


def expand_subscribers(
    job: SubscribersJob,
    store: ExpansionStorePort,
    ledger: ExpansionLedgerPort,
    queue: DeliveryQueue,
    expansion: ExpansionQueuePort,
    **options: Any,
) -> ExpansionReport:
    """Expand a publish's subscribers: record the send to its channel/topic (once per notification: a job delivered
    again finds it and resumes it) and expand it like any other, under the publish's notification.

    ``options`` are ``expand_send``'s. A notification that has no record (nothing to add the recipients to) is logged
    and its job dropped (``status`` ``dropped``). Raises ``UpstreamError`` when a store failed (the job comes back).
    """
    try:
        record = ledger.get_record(job.notification_id)
    except NotFoundError:
        logger.error(
            "subscribers job of a notification that has no record dropped",
            extra={"notification_id": job.notification_id},
        )
        return ExpansionReport(status="dropped", done=True, errors=["the notification has no record"])
    target = {"topic": f"{record.channel}/{record.topic}"}
    new = NewSend(job.notification_id, target, dict(job.content), list(job.channels), record.caller)
    send, created = store.create_send(new)
    logger.info("subscribers of a publish recorded as a send", extra={"send_id": send.send_id, "new": created})
    return expand_send(
        ExpansionJob(send_id=send.send_id, notification_id=job.notification_id, caller=record.caller),
        store,
        ledger,
        queue,
        expansion,
        **options,
    )


def _enqueue_page(
    send: StoredSend,
    planned: Iterable[_Planned],
    ledger: ExpansionLedgerPort,
    queue: DeliveryQueue,
    report: ExpansionReport,
) -> int:
    """Enqueue a page's messages and write its skipped rows; return how many deliveries the page accounts for.

    The messages are built and sent ``ENQUEUE_CHUNK_BYTES`` at a time: a page of 500 users with their devices, each
    message up to 248 KiB, would take more memory than the function has. A page that fails part way is planned and
    enqueued again whole, under the same keys, as a page whose queue refused some messages is: the consumer sends a
    delivery key once.
    """
    chunk: list[_Planned] = []
    size = count = report.in_page = 0
    for item in planned:
        chunk.append(item)
        count += 1
        size += len(item.body) if item.body is not None else 0
        if size >= ENQUEUE_CHUNK_BYTES:
            _enqueue_chunk(send, chunk, ledger, queue, report)
            chunk, size = [], 0
    _enqueue_chunk(send, chunk, ledger, queue, report)
    report.in_page = 0
    return count


def _enqueue_chunk(
    send: StoredSend, chunk: list[_Planned], ledger: ExpansionLedgerPort, queue: DeliveryQueue, report: ExpansionReport
) -> None:
    messages = [(item.key, item.body) for item in chunk if item.body is not None]
    outcome = queue.send(messages) if messages else SendOutcome()
    if outcome.failed:
        # Nothing of this page is recorded: the job is retried from the cursor before it, under the same keys.
        raise UpstreamError(f"the delivery queue refused {len(outcome.failed)} messages of a send")
    for item in chunk:
        if item.body is None:
            ledger.update(
                send.notification_id, item.key, DeliveryStatus.SKIPPED, row=item.row, attempts=0, last_error=item.reason
            )
    report.enqueued += len(messages)
    report.skipped += len(chunk) - len(messages)
    report.in_page += len(chunk)


def _write_count(ledger: ExpansionLedgerPort, notification_id: str, total: int) -> None:
    """Write the record's count of deliveries so far; a failure is logged (the next page writes it again, and the
    last count is written once more at the end, failing the job)."""
    try:
        ledger.count_deliveries(notification_id, total)
    except UpstreamError:
        logger.error("ledger write of a send's record failed", extra={"notification_id": notification_id})
