"""Scheduled sends: the cron's dispatcher (``dispatch_due``) and the logic of ``GET``/``DELETE /v1/schedules…``.

A send with ``at`` is recorded by ``POST /v1/sends`` with one row in ``scheduled_sends`` (``infra/migrations/``); the
EventBridge ``rate(1 minute)`` cron (``cron/handler.py``) claims the rows that are due, hands each to an enqueuer (the
expansion queue) and records the outcome.

Claims: one statement claims a batch with ``FOR UPDATE SKIP LOCKED`` (two overlapping runs never claim the same row)
and stamps it ``claimed`` at the run's instant. A row is due when it is ``scheduled`` and its ``fire_at`` has come,
or ``claimed`` longer ago than the claim timeout: the run that claimed it died (the timeout is longer than the
function's, so a live run never loses its claims). The rows enqueued are marked together; one whose enqueue failed
with an ``UpstreamError`` goes back to ``scheduled`` with a later ``fire_at`` (exponential backoff, capped) and its
error, and after ``RetryPolicy.max_attempts`` claims it is ``failed``; a row is never deleted. Any other domain error
(the topic does not exist, a template needs a variable the content lacks) cannot be helped by retrying: ``failed``
at once, with the error. Marks are guarded by the claim (its instant): a late mark of a run whose claim was taken
over changes nothing.

Local time (``local_at``, a wall clock without an offset): each zone reaches ``local_at`` at its own instant
(``core.audience.timezones.local_to_utc``: a time in a DST gap is moved forward by the gap, an ambiguous one is the
first). ``zones_done_until`` is the instant up to which zones were handed over. A claim at ``now`` hands over, in one
call of the enqueuer, every zone that has users whose instant is after ``zones_done_until`` and not after ``now``
(``DueSend.zones``; a zone whose time was already past when the send was made is in the first hand-off: it is sent
at once); then ``zones_done_until`` becomes ``now`` and ``fire_at`` the next instant at which any IANA zone's clock
shows ``local_at`` (``clock_instants``: some 40 distinct instants for some 600 zones, over about 26 hours), or the row
is ``sent`` once every zone's has come. The zones that have users are read at each claim (``SELECT DISTINCT timezone
FROM users``), so a zone that gets its first user after the send was made, even after the last zone that had users,
is handed over at the first claim after its instant, and a send made before any user exists reaches the users made
before their zone's instant. A claim at which no zone that has users is due only moves ``fire_at`` on, handing over
nothing. The last claim (no clock left to show ``local_at``) is the sweep (``DueSend.sweep``): it also hands over
whoever of the audience no zone did, such as a user who moved to a zone whose instant was already behind the
watermark. A zone the clock does not know (a name a later tzdata dropped) is taken as UTC's. An instant send hands
over everyone once (``zones`` is ``None``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import Any, Literal, NamedTuple, Protocol, get_args
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field

from core import pages
from core.audience.ports import ScheduleStorePort
from core.audience.timezones import local_to_utc
from core.errors import InvalidRequestError, NotFoundError, NotificationError, UpstreamError
from core.observability import logger, metrics
from core.validation import Reply, WallClockTime

ScheduleStatus = Literal["scheduled", "claimed", "sent", "cancelled", "failed"]
SCHEDULE_STATUSES: tuple[str, ...] = get_args(ScheduleStatus)
MAX_LIST_PAGE = 100
MAX_ERROR_LENGTH = 1000
# How far in the past an ``at`` may be: a time already past is sent at once (a client's clock, a retry), but one
# further back is a mistake, not a schedule.
MAX_AT_PAST = timedelta(days=366)


# --- what the store keeps and returns ----------------------------------------------------------------------------


class NewScheduledSend(NamedTuple):
    """A send to record with its schedule (``POST /v1/sends`` with ``at``).

    ``fire_at`` is the instant of an instant send, or the first instant of a local-time one (``local_at`` set: see
    ``schedule_times``).
    """

    notification_id: str
    target: dict[str, Any]
    content: dict[str, Any]
    channels: list[str]
    fire_at: datetime
    local_at: datetime | None = None
    caller: str | None = None


class Schedule(Reply):
    """A scheduled send as ``GET /v1/schedules/{id}`` shows it."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    schedule_id: str
    send_id: str
    notification_id: str
    status: ScheduleStatus
    fire_at: datetime
    local_time: bool
    local_at: WallClockTime | None = None
    zones_done_until: datetime | None = None
    attempts: int
    last_error: str | None = None
    claimed_at: datetime | None = None
    sent_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    to: dict[str, Any]
    channels: list[str]
    content: dict[str, Any]
    # An instant send's ``at`` as asked (``fire_at`` moves when a hand-off is retried): what a repeat under its
    # Idempotency-Key is compared with. Not shown; ``None`` for a local-time send, and for one made before it was kept.
    asked_at: datetime | None = Field(default=None, exclude=True)
    # The API key that asked for the send (``core.http.caller_id``): only it sees and cancels the schedule, as only it
    # reads the status of the notification. Not shown.
    caller: str | None = Field(default=None, exclude=True)


class ScheduleList(Reply):
    """A page of ``GET /v1/schedules``: newest first; ``next`` is the cursor of the next page, absent on the last."""

    schedules: list[Schedule]
    next: str | None = None


class ClaimedSend(NamedTuple):
    """A row the cron claimed, with its send. ``claimed_at`` is the claim (marks are guarded by it).

    ``user_zones`` is every time zone that has users, read in the claim's transaction for a local-time row (empty
    for an instant one).
    """

    schedule_id: str
    send_id: str
    notification_id: str
    target: dict[str, Any]
    content: dict[str, Any]
    channels: list[str]
    fire_at: datetime
    local_at: datetime | None
    zones_done_until: datetime | None
    attempts: int
    claimed_at: datetime
    user_zones: tuple[str, ...] = ()

    @property
    def local_time(self) -> bool:
        """Whether the send is at a wall-clock time in each recipient's zone."""
        return self.local_at is not None


class DueSend(NamedTuple):
    """What an enqueuer hands to the fan-out: the send and, for a local-time one, the zones due now.

    ``zones`` is ``None`` for everyone (an instant send), else the recipients' zones of this hand-off; ``sweep`` marks
    a local-time send's last hand-off (``ExpansionJob.sweep``).
    """

    schedule_id: str
    send_id: str
    notification_id: str
    target: dict[str, Any]
    content: dict[str, Any]
    channels: list[str]
    zones: list[str] | None = None
    sweep: bool = False


class Handoff(NamedTuple):
    """A claim enqueued: mark it ``sent``, or, when ``next_fire_at`` is set, re-arm it for the next zone; its send's
    ``zones`` (a local-time hand-off's) are marked handed over."""

    claim: ClaimedSend
    until: datetime
    next_fire_at: datetime | None = None
    zones: tuple[str, ...] = ()


class SendEnqueuer(Protocol):
    """Hands due sends over (to the expansion worker); an ``UpstreamError`` for a send means it may succeed later,
    another domain error that it never will."""

    def enqueue_all(self, sends: Sequence[DueSend]) -> dict[str, Exception]:
        """Hand the sends over (each for ``send.zones`` only, when set); return the error of each schedule id that
        was not, the others were."""
        ...


# --- the local-time rule ------------------------------------------------------------------------------------------


def zone_instants(local_at: datetime, zones: Iterable[str]) -> dict[str, datetime]:
    """Return the instant each zone's clock shows ``local_at``; a zone that is no IANA name the clock knows (users
    keep the name they were saved with, and a later tzdata may drop it) is taken as UTC, so its users are reached.

    Raises
    ------
    InvalidRequestError
        ``at``: ``local_at`` in some zone is past the range of a datetime (near year 1 or 9999). Not left out like
        an unknown zone: its users would never be reached, so the send is refused or fails, with that reason.
    """
    instants: dict[str, datetime] = {}
    for zone in zones:
        try:
            instants[zone] = local_to_utc(local_at, zone)
        except OverflowError:
            raise InvalidRequestError("at", f"is out of range in the time zone {zone}") from None
        except (ValueError, KeyError):
            logger.warning("unknown time zone taken as UTC in a local-time send", extra={"zone": zone})
            instants[zone] = local_at.replace(tzinfo=UTC)
    return instants


@cache
def _every_zone() -> tuple[str, ...]:
    # available_timezones() reads the zone files on every call; the names the machine knows do not change while it runs.
    return tuple(sorted(available_timezones()))


@lru_cache(maxsize=256)
def clock_instants(local_at: datetime) -> tuple[datetime, ...]:
    """Return, earliest first, each distinct instant at which some IANA zone's clock shows ``local_at``.

    A local-time send stays scheduled until the last of them (UTC-12's, about 26 hours after UTC+14's), firing at
    each: any zone may get its first user before its instant comes. Zones sharing an offset share an instant, so it is
    some 40 claims, not one per zone.
    """
    instants: set[datetime] = set()
    for zone in _every_zone():
        try:
            instants.add(local_to_utc(local_at, zone))
        except (OverflowError, ValueError, KeyError):
            # A wall clock past a datetime's range there (a row stored before ``at`` was bounded): no instant to wait
            # for. A zone that has users fails the claim instead (``zone_instants``), never skipped silently.
            continue
    return tuple(sorted(instants))


def first_fire_at(local_at: datetime, zones: Iterable[str], now: datetime) -> datetime:
    """Return the first ``fire_at`` of a local-time send: the first instant any clock (of ``zones`` or any IANA
    zone) shows ``local_at``, ``now`` when that is past. The zones that have users are looked at again then."""
    current = now.astimezone(UTC)
    instants = [*zone_instants(local_at, zones).values(), *clock_instants(local_at)]
    return max(min(instants, default=current), current)


def schedule_times(
    at: datetime, local_time: bool, zones: Iterable[str], now: datetime
) -> tuple[datetime, datetime | None]:
    """Return ``(fire_at, local_at)`` of a send's ``at``: an instant when it has an offset, else a wall-clock time in
    each recipient's zone (``local_time`` must say so).

    Raises
    ------
    InvalidRequestError
        ``at`` without an offset and ``local_time`` not set, or with an offset and ``local_time`` set; more than
        ``MAX_AT_PAST`` before ``now`` (a wall-clock time: before ``now``'s UTC clock); out of a datetime's range.
    """
    earliest = now.astimezone(UTC) - MAX_AT_PAST
    if local_time:
        if at.tzinfo is not None:
            raise InvalidRequestError("at", "must be a wall-clock time without an offset when local_time is true")
        if at < earliest.replace(tzinfo=None):
            raise InvalidRequestError("at", "must not be more than a year in the past")
        return first_fire_at(at, zones, now), at
    if at.tzinfo is None:
        raise InvalidRequestError("at", "must have an offset (or set local_time to true for each recipient's zone)")
    if at < earliest:
        raise InvalidRequestError("at", "must not be more than a year in the past")
    try:
        return at.astimezone(UTC), None
    except OverflowError:
        raise InvalidRequestError("at", "is out of range") from None


def plan_handoff(claim: ClaimedSend, now: datetime) -> tuple[list[str] | None, datetime | None]:
    """Return the zones a claim hands over at ``now`` (``None``: everyone) and the next instant to look again, if any.

    The next instant is the next at which any zone's clock shows the send's time, not only a zone that has users now:
    a zone that gets its first user later is then due at its own instant, and the send is ``sent`` (``None``) only
    once every clock has shown it.
    """
    if claim.local_at is None:
        return None, None
    instants = zone_instants(claim.local_at, claim.user_zones)
    done = claim.zones_done_until
    due = sorted(zone for zone, instant in instants.items() if instant <= now and (done is None or instant > done))
    later = [instant for instant in (*instants.values(), *clock_instants(claim.local_at)) if instant > now]
    return due, min(later) if later else None


# --- the dispatcher -----------------------------------------------------------------------------------------------


class RetryPolicy(NamedTuple):
    """When a failed enqueue is tried again: ``base * 2**(attempts-1)`` later, capped; ``failed`` past the limit."""

    base: timedelta = timedelta(minutes=1)
    cap: timedelta = timedelta(hours=1)
    max_attempts: int = 24

    def retry_at(self, attempts: int, now: datetime) -> datetime:
        """Return when a row claimed ``attempts`` times is tried again."""
        delay = min(self.cap, self.base * 2 ** max(0, min(attempts - 1, 30)))
        return now + delay


@dataclass
class DispatchReport:
    """What a cron run did: rows claimed, handed over (``sent`` or re-armed for their next zone), retried, failed."""

    claimed: int = 0
    sent: int = 0
    rearmed: int = 0
    retried: int = 0
    failed: int = 0
    batches: int = 0
    out_of_time: bool = False
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Return the report as the handler answers it."""
        return {
            "claimed": self.claimed,
            "sent": self.sent,
            "rearmed": self.rearmed,
            "retried": self.retried,
            "failed": self.failed,
            "batches": self.batches,
            "out_of_time": self.out_of_time,
        }


def _due_send(claim: ClaimedSend, zones: list[str] | None, last: bool) -> DueSend:
    return DueSend(
        schedule_id=claim.schedule_id,
        send_id=claim.send_id,
        notification_id=claim.notification_id,
        target=claim.target,
        content=claim.content,
        channels=claim.channels,
        zones=zones,
        sweep=last and claim.local_at is not None,
    )


def _error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]


def _retried(exc: Exception, claim: ClaimedSend, retry: RetryPolicy) -> bool:
    # An outage (or a bug) may pass: retried up to the limit; another domain error never will.
    permanent = isinstance(exc, NotificationError) and not isinstance(exc, UpstreamError)
    return not permanent and claim.attempts < retry.max_attempts


def dispatch_due(
    repository: ScheduleStorePort,
    enqueuer: SendEnqueuer,
    now: datetime,
    batch_size: int,
    claim_timeout: timedelta,
    *,
    time_left: Callable[[], float] | None = None,
    retry: RetryPolicy | None = None,
) -> DispatchReport:
    """Claim the due rows batch by batch at ``now``, enqueue each, mark the outcome; return what was done.

    Stops when a batch comes back short (nothing more is due at ``now``) or when ``time_left()`` (seconds, the
    function's remaining time less a margin) is spent. A claim store failure (``UpstreamError``) propagates: nothing
    was enqueued. Once enqueued, the bookkeeping never raises: a mark that fails is logged and counted, the run stops,
    and the claims come back after the claim timeout (the fan-out's notification id makes the repeat harmless).
    """
    if now.tzinfo is None:
        raise ValueError("now must be an instant, with an offset")
    retry = retry or RetryPolicy()
    report = DispatchReport()
    while True:
        if time_left is not None and time_left() <= 0:
            report.out_of_time = True
            break
        claims = repository.claim_due(now, batch_size, claim_timeout)
        report.batches += 1
        report.claimed += len(claims)
        if claims and not _dispatch_batch(repository, enqueuer, claims, now, retry, report):
            break
        if len(claims) < batch_size:
            break
    metrics.add_metric(name="SchedulesClaimed", unit="Count", value=report.claimed)
    metrics.add_metric(name="SchedulesSent", unit="Count", value=report.sent)
    if report.retried or report.failed:
        metrics.add_metric(name="SchedulesRetried", unit="Count", value=report.retried)
        metrics.add_metric(name="SchedulesFailed", unit="Count", value=report.failed)
    return report


def _dispatch_batch(
    repository: ScheduleStorePort,
    enqueuer: SendEnqueuer,
    claims: list[ClaimedSend],
    now: datetime,
    retry: RetryPolicy,
    report: DispatchReport,
) -> bool:
    """Enqueue one claimed batch and mark it; return ``False`` when the bookkeeping failed (the run stops)."""
    handoffs: list[Handoff] = []
    failures: list[tuple[ClaimedSend, str, bool]] = []
    plans: list[tuple[ClaimedSend, list[str] | None, datetime | None]] = []
    for claim in claims:
        # Planned one by one: a row that cannot be planned (a wall clock out of range in a zone) ends on its own,
        # never holding back the rest of the batch claimed with it.
        try:
            plans.append((claim, *plan_handoff(claim, now)))
        except Exception as exc:
            if not isinstance(exc, NotificationError):
                logger.exception("planning a scheduled send raised", extra={"schedule_id": claim.schedule_id})
            failures.append((claim, _error_text(exc), _retried(exc, claim, retry)))
    # A local-time claim with no zone that has users due now (no user there yet, or a zone lost its users) hands
    # nothing over: it only moves to its next instant. Its last claim hands over an empty job even so: its expansion
    # writes the notification's record (0 deliveries when no zone ever had users) and marks the send expanded.
    due = [
        _due_send(claim, zones, after is None)
        for claim, zones, after in plans
        if zones is None or zones or after is None
    ]
    try:
        errors = enqueuer.enqueue_all(due)
    except Exception as exc:
        if not isinstance(exc, NotificationError):
            # A bug, not the sends' fault: retried like an outage, so no row is lost to it.
            logger.exception("enqueueing scheduled sends raised", extra={"claims": len(due)})
        errors = {send.schedule_id: exc for send in due}
    for claim, zones, next_fire_at in plans:
        refused = errors.get(claim.schedule_id)
        if refused is None:
            handoffs.append(Handoff(claim=claim, until=now, next_fire_at=next_fire_at, zones=tuple(zones or ())))
            continue
        failures.append((claim, _error_text(refused), _retried(refused, claim, retry)))
    try:
        if handoffs:
            repository.mark_sent(handoffs)
        for claim, error, again in failures:
            if again:
                repository.mark_failed_attempt(claim, error, retry.retry_at(claim.attempts, now))
            else:
                repository.mark_failed(claim, error)
            logger.warning(
                "scheduled send not enqueued",
                extra={"schedule_id": claim.schedule_id, "error": error, "retried": again, "attempts": claim.attempts},
            )
    except NotificationError as exc:
        logger.error("marking scheduled sends failed", extra={"error": _error_text(exc), "claims": len(claims)})
        metrics.add_metric(name="ScheduleMarkFailed", unit="Count", value=1)
        report.errors.append(_error_text(exc))
        return False
    report.sent += sum(1 for handoff in handoffs if handoff.next_fire_at is None)
    report.rearmed += sum(1 for handoff in handoffs if handoff.next_fire_at is not None)
    report.retried += sum(1 for _claim, _error, again in failures if again)
    report.failed += sum(1 for _claim, _error, again in failures if not again)
    return True


# --- GET / DELETE /v1/schedules… ----------------------------------------------------------------------------------


class _Cursor(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    created_at: datetime
    schedule_id: uuid.UUID


def encode_cursor(schedule: Schedule) -> str:
    """Return the opaque cursor of the page after ``schedule``."""
    return pages.encode_cursor([schedule.created_at.isoformat(), str(schedule.schedule_id)])


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Return the keyset of a cursor; raise ``InvalidRequestError`` (field ``cursor``) when it is not one of ours."""
    try:
        created_at, schedule_id = pages.cursor_value(cursor)
        parsed = _Cursor(created_at=created_at, schedule_id=schedule_id)
    except (ValueError, TypeError):
        raise InvalidRequestError("cursor", "is not a cursor this API returned") from None
    if parsed.created_at.tzinfo is None:
        raise InvalidRequestError("cursor", "is not a cursor this API returned")
    try:
        # Ours are UTC; an offset PostgreSQL cannot store (beyond 15:59) would fail the query, not name the cursor.
        created_at = parsed.created_at.astimezone(UTC)
    except OverflowError:
        raise InvalidRequestError("cursor", "is not a cursor this API returned") from None
    return created_at, str(parsed.schedule_id)


def list_schedules(
    repository: ScheduleStorePort,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    caller: str | None = None,
) -> ScheduleList:
    """``GET /v1/schedules?status=&cursor=``: a page of schedules, newest first; ``caller``'s only, when given.

    Raises ``InvalidRequestError`` naming ``status``, ``cursor`` or ``limit`` when one is not valid.
    """
    if status is not None and status not in SCHEDULE_STATUSES:
        raise InvalidRequestError("status", f"must be one of {', '.join(SCHEDULE_STATUSES)}")
    if not 1 <= limit <= MAX_LIST_PAGE:
        raise InvalidRequestError("limit", f"must be between 1 and {MAX_LIST_PAGE}")
    after = decode_cursor(cursor) if cursor else None
    page = repository.list_schedules(status, after, limit + 1, caller)  # type: ignore[arg-type]
    more = len(page) > limit
    # A schedule carries its audience and content (up to a request's 256 KiB): fifty of them exceeded Lambda's 6 MB
    # response, so a page also ends at core.pages.PAGE_CHARS of JSON, at least one schedule.
    kept = pages.fitting(page[:limit], lambda schedule: len(json.dumps(schedule.model_dump(mode="json"))))
    more = more or len(kept) < len(page[:limit])
    return ScheduleList(schedules=kept, next=encode_cursor(kept[-1]) if more else None)


def get_schedule(repository: ScheduleStorePort, schedule_id: str, caller: str | None = None) -> Schedule:
    """``GET /v1/schedules/{id}``; ``NotFoundError`` when there is none, or (``caller`` given) when another API key
    asked for its send: as for the status of a notification, another key's schedule is not told apart from none, and
    one made before sends recorded their caller is any key's."""
    schedule = repository.get_schedule(schedule_id)
    if caller is not None and schedule.caller is not None and schedule.caller != caller:
        raise NotFoundError("the schedule does not exist")
    return schedule


def cancel_schedule(repository: ScheduleStorePort, schedule_id: str, caller: str | None = None) -> Schedule:
    """``DELETE /v1/schedules/{id}`` (204): a cancelled schedule is never sent, the rest of a local-time one neither.

    Cancelling again is no error. Raises ``NotFoundError`` when there is none (or, ``caller`` given, it is another
    API key's), ``ConflictError`` (409) when it was sent, is being sent (claimed by a run), or failed.
    """
    get_schedule(repository, schedule_id, caller)
    schedule = repository.cancel_schedule(schedule_id)
    logger.info("schedule cancelled", extra={"schedule_id": schedule.schedule_id})
    return schedule
