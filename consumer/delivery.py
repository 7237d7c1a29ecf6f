"""One delivery attempt: parse, skip what is delivered already, take a send slot, send, record the outcome.

What SQS does with the received message follows from the outcome: it is deleted in every case but one. A retry, a
wait for a send slot and an early arrival are new copies of the message, delayed until their time; a delivery whose
retries are spent is put in the dead-letter queue by the consumer itself, with its last error. Only when a copy cannot
be sent does the received message stay, hidden until the retry is due (``DeliveryDeferredError``). Each receive counts
toward the queue's ``maxReceiveCount``: a message kept on its last receive is moved to the dead-letter queue by SQS
itself, so its row is written ``dead`` first, naming what failed. A copy SQS refuses for what it is (too large for the
queue) would be refused again: the delivery ends ``failed`` with that reason rather than being sent again on each
receive.

Each outcome is one ledger write: the status, the attempts over every run (``prior_attempts`` of the runs before a
redrive, plus this run's), when a ``retrying`` delivery's next attempt is due, and the attempt appended to the row's
history. A wait for a send slot or a 429 counts no attempt and adds nothing to the history. A ``retrying`` row is
written before the copy that retries it is sent, never after: the copy could end the run first. ``dead`` takes two
writes: the status before the dead letter is sent, the give-up in the history once it is in the dead-letter queue.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from pydantic import BaseModel, ValidationError

from consumer.credentials import CredentialSource, MissingCredentialsError
from consumer.retry import Decision, RetryPolicy, delay_until
from core.errors import (
    DeliveryDeferredError,
    EndpointDisabledError,
    MessageRefusedError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    UpstreamError,
    invalid_fields,
)
from core.ledger import AttemptRecord, DeliveryRow, LedgerEntry
from core.models import Content, DeliveryMessage, DeliveryMessageV1, DeliveryStatus, RecordedOutcome
from core.observability import logger
from core.pacing import Limit, Pacer, Reservation
from core.ports import LedgerPort
from core.queue import MAX_DELAY_SECONDS, MAX_ERROR_LENGTH, DeadLetterQueue, DeliveryQueue, VisibilityScheduler
from core.times import epoch_time, iso_time

if TYPE_CHECKING:
    # The channels load with the first batch (core.clients.get_channels), not with this module.
    from core.channels import Channel, DeliveryReceipt

MetricRecorder = Callable[[str, str], None]
# Ledger rows read for a batch, by (notification_id, delivery_key); ``None`` for a delivery with no row yet.
Entries = Mapping[tuple[str, str], LedgerEntry | None]

# A message that arrives this much before its time is sent on again rather than waited for.
EARLY_TOLERANCE_SECONDS = 1.0
# A row whose next attempt is further ahead than this also moves its notification's record's TTL past it.
RECORD_KEPT_AHEAD_SECONDS = 86400.0
# The longest a provider's rate-limited answer holds its destination's pace (its Retry-After, at most this).
MAX_PENALTY_SECONDS = 3600.0
# The longest provider message id kept (a row's and a record-only copy's: a browser delivery's tally of connections is
# one), within what COPY_RESERVE_BYTES leaves a record-only copy.
MAX_PROVIDER_ID_LENGTH = 200
# The furthest ahead a message may be due, but for a send slot's copy: no other copy this consumer writes is due later
# (a retry at most the longest retry window, 14 days, after it is written; a late record far sooner), and the ledger
# keeps a row that long by default. A message due later is malformed: waited for, it would be sent on every 15 minutes
# for ever. A slot's copy (``slot_reserved``) may be due as far as its destination's pace puts it: a rate of one a day
# puts the 31st send of a burst 31 days ahead.
MAX_DUE_AHEAD_SECONDS = 30 * 86400.0


def _refused_as_it_is(exc: UpstreamError) -> bool:
    """Whether SQS refused a copy for what it is (``MessageRefusedError``), not for now: sent again, it is refused
    again, so the delivery ends rather than its message being kept to be sent once more."""
    return isinstance(exc, MessageRefusedError)


def _run_opened(message: DeliveryMessage) -> float | None:
    """When the message's run began, to tell its row's writes from an earlier run's: a redrive's at the redrive
    (``window_start``); any other at its notification's creation. A delivery enqueued again by a retry of its publish,
    or by a later run of its audience send, carries a later ``window_start`` (its retry window opens then), but it is
    a copy of the same run: sent again after that run ended, it would go out twice."""
    return epoch_time((message.window_start if message.redriven else None) or message.created_at)


def _buried(entry: LedgerEntry, message: DeliveryMessage) -> bool:
    """Whether a ``dead`` row says its run's dead letter is in the dead-letter queue.

    The row is written ``dead`` before the letter is sent, and the give-up joins its history once the letter is there
    (``Deliverer._bury``): a row whose history ends with a ``dead`` attempt of this run (written since its retry window
    opened) has its letter; one without is waiting for it.
    """
    if not entry.history or entry.history[-1]["status"] != DeliveryStatus.DEAD.value:
        return False
    opened = _run_opened(message)
    written = epoch_time(entry.history[-1]["at"])
    return opened is not None and written is not None and opened <= written


def _ended_run(entry: LedgerEntry, message: DeliveryMessage) -> bool:
    """Whether the message is a copy of a run that the row says ended: ``dead``, or ``failed`` after an attempt.

    Only the consumer writes ``dead``; a ``failed`` row without an attempt is the producer's (a delivery it could not
    enqueue), not the end of a run. A redrive starts a newer run, which is never skipped: its message counts one more
    redrive than the row did when it was redriven, and its retry window opens at the redrive, after the row's last
    write (a dead letter redriven twice, its second copy after the first run ended, has the row's count but the later
    window).
    """
    if not (entry.status is DeliveryStatus.DEAD or (entry.status is DeliveryStatus.FAILED and entry.attempts > 0)):
        return False
    opened = _run_opened(message)
    written = epoch_time(entry.updated_at)
    return message.redriven <= entry.redriven and opened is not None and written is not None and opened <= written


# How long after its notification was published a delivery whose credentials SSM says are missing is retried: a topic
# change writes its credentials before the topic names them, but SSM's reads may not show a parameter at once.
MISSING_CREDENTIALS_GRACE_SECONDS = 300.0


class Outcome(StrEnum):
    """What became of one received message; the metric names, by channel type."""

    DELIVERED = "delivered"
    SKIPPED = "skipped"
    WAITING = "waiting"
    RETRIED = "retried"
    FAILED = "failed"
    DEAD = "dead"
    # A record-only copy wrote the outcome its message's send had, which the ledger had refused then.
    RECORDED = "recorded"


# The outcomes a row ends with: one the ledger refused is carried on by a record-only copy, never left unwritten.
_FINAL = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.DEAD})


class Attempt(NamedTuple):
    """One receive of a delivery message: its SQS ids, how often it has been received, and its body."""

    message_id: str
    receipt_handle: str
    receive_count: int
    body: str


def _ids(body: str) -> dict[str, str]:
    """Return whatever ids a malformed body still names, for its log line and its ledger row."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: brackets nested deeper than the parser goes
        return {}
    if not isinstance(data, dict):
        return {}
    integration = data.get("integration")
    ids = {"notification_id": data.get("notification_id"), "delivery_key": data.get("delivery_key")}
    if isinstance(integration, dict):
        ids["integration"] = integration.get("name")
        if data.get("v") == 1 and "delivery_key" not in data:
            # A version 1 body's row is keyed by its integration's name (DeliveryMessageV1.upgraded).
            ids["delivery_key"] = ids["integration"]
    return {key: value for key, value in ids.items() if isinstance(value, str)}


def delivery_of(body: str) -> tuple[str, str] | None:
    """Return the notification id and delivery key a body names (a version 1 body's key: its integration's name), or
    ``None`` when it names none."""
    ids = _ids(body)
    key = ids.get("delivery_key", ids.get("integration"))
    return (ids["notification_id"], key) if "notification_id" in ids and key is not None else None


def run_of(body: str) -> int:
    """Return the run a body belongs to (how often its delivery was redriven, ``redriven``): 0 when it says none."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return 0
    run = data.get("redriven") if isinstance(data, dict) else None
    return run if isinstance(run, int) and not isinstance(run, bool) else 0


def parse_message(body: str, receive_count: int = 1) -> DeliveryMessage:
    """Return the delivery message of an SQS body, version 2 or 1; raise ``PermanentDeliveryError`` naming fields.

    A version 1 body counted its attempts by SQS receives, so those before this one count as attempts made.
    """
    model: type[BaseModel] = DeliveryMessage
    try:
        if json.loads(body).get("v") == 1:
            model = DeliveryMessageV1
    except (ValueError, AttributeError, RecursionError):
        pass
    try:
        message = model.model_validate_json(body)
        if isinstance(message, DeliveryMessageV1):
            # Validated as version 2 too: its integration name becomes the delivery key, which the ledger bounds.
            message = message.upgraded(max(0, receive_count - 1))
    except ValidationError as exc:
        raise PermanentDeliveryError(f"malformed delivery message: {invalid_fields(exc, 'body')}") from None
    assert isinstance(message, DeliveryMessage)
    return message


def _row(message: DeliveryMessage) -> DeliveryRow:
    """Return what the delivery's row says besides its status: its integration, channel type and recipient."""
    recipient = message.recipient.model_dump(exclude_none=True) if message.recipient else None
    return DeliveryRow(integration=message.integration.name, type=message.integration.type.value, recipient=recipient)


def _refusal(what: str, exc: UpstreamError) -> str:
    """Return why SQS refused ``what`` for good (``_refused_as_it_is``), for a row's last error."""
    return f"SQS refuses {what} as too large or not sendable ({exc})"


def _ignore_metric(channel_type: str, outcome: str) -> None:
    """Record no metric."""


class Deliverer:
    """Delivers the messages of a batch, one received message at a time; safe to call from several threads at once.

    Parameters
    ----------
    channels:
        Channel instances by type (see ``core.channels.registry.CHANNELS``).
    ledger:
        The delivery ledger.
    credentials:
        Where integration credentials are read.
    queue:
        The delivery queue, for the delayed copies of retries and waits.
    dead_letters:
        The dead-letter queue, for deliveries whose retries are spent.
    scheduler:
        Sets the visibility timeout of a received message when its copy cannot be sent.
    pacer:
        Takes send slots of destinations from the shared pacing state.
    policy:
        The retry rules.
    count:
        Records a metric: ``count(channel_type, outcome)``.
    on_endpoint_disabled:
        Told the SNS endpoint of a push delivery that failed with ``EndpointDisabled`` (its device is to be disabled);
        ``None`` when the function has nowhere to report it.
    max_wait_seconds:
        The longest wait for a send slot done in this process; a later slot is waited for by a delayed copy.
    lead_seconds:
        How long before its slot such a copy is due, so that it is there in time.
    max_receive_count:
        The delivery queue's ``maxReceiveCount``: receives of one message after which SQS moves it to the dead-letter
        queue. A message kept on the queue on that receive has its row written ``dead`` first; ``None``: not known,
        nothing is written then.
    clock, sleep, rand:
        Unix time, sleeping, and random numbers in [0, 1) for jitter.
    """

    def __init__(
        self,
        channels: Mapping[str, Channel],
        ledger: LedgerPort,
        credentials: CredentialSource,
        queue: DeliveryQueue,
        dead_letters: DeadLetterQueue,
        scheduler: VisibilityScheduler,
        pacer: Pacer,
        policy: RetryPolicy,
        count: MetricRecorder = _ignore_metric,
        on_endpoint_disabled: Callable[[str, float], None] | None = None,
        max_wait_seconds: float = 5.0,
        lead_seconds: float = 2.0,
        max_receive_count: int | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._channels = channels
        self._ledger = ledger
        self._credentials = credentials
        self._queue = queue
        self._dead_letters = dead_letters
        self._scheduler = scheduler
        self._pacer = pacer
        self._policy = policy
        self._count = count
        self._on_endpoint_disabled = on_endpoint_disabled
        self._max_wait = max_wait_seconds
        self._lead = lead_seconds
        self._max_receives = max_receive_count
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        # When each user the batch delivers to was deleted (``None``: not), read with the batch's rows.
        self._deleted_users: dict[str, str | None] = {}

    def read_entries(self, attempts: Sequence[Attempt], starting: int | None = None) -> Entries:
        """Read the ledger rows of a batch's messages in one go, before any is processed: one ``BatchGetItem``
        instead of a ``GetItem`` per message, so the first sends start sooner and the batch costs fewer calls.

        ``attempts`` is the whole batch; only the first ``starting`` of them (as many as there are threads, all when
        ``None``) are read: a row read for a message that waits for a thread would be stale by the time it is sent.
        Left out, so that each reads its own row: malformed messages, messages not due yet, and a delivery that comes
        twice anywhere in the batch (its later copy must see what the first did). When the read fails, nothing is
        returned and every message reads its own row.
        """
        self._deleted_users = {}
        try:
            keys: list[tuple[str, str] | None] = []  # per message, in order: the row to read, if any
            counts: Counter[tuple[str, str]] = Counter()
            users: list[str] = []  # the users of the batch's audience deliveries
            now = self._clock()
            for attempt in attempts:
                try:
                    message = parse_message(attempt.body, attempt.receive_count)
                    due = self._due(message, now)
                except PermanentDeliveryError:  # malformed: processing buries it
                    keys.append(None)
                    continue
                key = (message.notification_id, message.delivery_key)
                counts[key] += 1
                early = due is not None and self._early(message, due, now)
                keys.append(None if early or message.outcome is not None else key)
                if message.recipient is not None:
                    users.append(message.recipient.user_id)
            once = [key for key in keys[:starting] if key is not None and counts[key] == 1]
            if users:
                # Read with the rows; unread (a failure), each delivery reads its own user's.
                deleted = self._ledger.users_deleted(users)
                self._deleted_users = {user: deleted.get(user) for user in users}
            return self._ledger.get_entries(once) if once else {}
        except UpstreamError as exc:
            logger.warning("ledger batch read failed: each message reads its own row", extra={"reason": str(exc)})
        except Exception:
            # A shortcut only: whatever breaks it (a body beyond what the parser takes, a bug), the batch goes on the
            # way it did without it, and processing reports what concerns one message.
            logger.exception("ledger batch read failed unexpectedly: each message reads its own row")
        return {}

    def _user_deleted(self, message: DeliveryMessage) -> str | None:
        """Return when the audience deleted the user an audience delivery is to, when it did after the delivery was
        expanded (a user created again since gets what is expanded for them after); else ``None``. Raise
        ``UpstreamError`` when the ledger cannot tell."""
        if message.recipient is None:
            return None
        user = message.recipient.user_id
        if user in self._deleted_users:
            deleted_at = self._deleted_users[user]
        else:
            deleted_at = self._ledger.users_deleted([user]).get(user)
        expanded = message.audience_read_at
        return deleted_at if deleted_at is not None and deleted_at >= expanded else None

    def _to_deleted_user(
        self,
        message: DeliveryMessage,
        attempt: Attempt,
        attempts_before: int,
        earlier: Sequence[AttemptRecord],
        log: dict[str, Any],
    ) -> Outcome | None:
        """Return the outcome of a delivery to a user deleted since it was expanded (``failed``, saying so), or of one
        whose user the ledger could not tell about (sent on, no attempt counted); ``None`` when it is to be sent."""
        try:
            deleted_at = self._user_deleted(message)
        except UpstreamError as exc:
            return self._send_on(
                message, attempt, self._policy.backoff(1, self._rand), f"ledger unreadable: {exc}", log
            )
        if deleted_at is None:
            return None
        gone = PermanentDeliveryError(f"the user was deleted ({deleted_at}) before this was sent")
        return self._fail(message, attempts_before, earlier, gone, log)

    def process(self, attempt: Attempt, latest_start: float | None = None, entries: Entries | None = None) -> Outcome:
        """Handle one received message; raise ``DeliveryDeferredError`` when it must stay on the queue.

        ``latest_start`` is the last moment a send may start in this invocation (Unix time); waits end before it.
        ``entries`` are ledger rows read for the batch (``read_entries``); a message whose key is not among them reads
        its own row.
        """
        try:
            message = parse_message(attempt.body, attempt.receive_count)
            due = self._due(message, self._clock())
        except PermanentDeliveryError as exc:
            return self._bury_malformed(attempt, exc.reason)
        log = {
            "notification_id": message.notification_id,
            "delivery_key": message.delivery_key,
            "channel_type": message.integration.type.value,
            "message_id": attempt.message_id,
            "attempt": message.attempt,
        }
        now = self._clock()
        if due is not None and self._early(message, due, now):
            return self._wait(message, attempt, due, log)
        if message.outcome is not None:
            return self._write_outcome(message, message.outcome, attempt, log)
        entry, unsent = self._row_of(message, attempt, entries, latest_start, log)
        if unsent is not None:
            return unsent
        if entry is not None and (done := self._done(message, attempt, entry, log)) is not None:
            return done
        # The row counts the attempts of every run; this run's retry budget counts only its own, so those of the runs
        # before a redrive are taken off. The row may be ahead of the message: an attempt recorded, its copy refused.
        recorded = entry.attempts - message.prior_attempts if entry is not None else 0
        attempts_before = max(message.attempt, recorded)
        earlier = entry.history if entry is not None else []
        if (unsent := self._to_deleted_user(message, attempt, attempts_before, earlier, log)) is not None:
            return unsent
        limits: list[Limit] = []
        try:
            channel = self._channel(message)
            ref = message.integration.credentials_ref
            secret = self._credentials.get(ref) if ref else None
            limits = channel.rate_limits(message.integration.target, secret, message.integration.rate_per_second)
            held = self._hold(message, attempt, limits, due, latest_start, log)
            if held is not None:
                return held
            receipt = channel.send(
                message.content,
                message.integration.target,
                secret,
                notification_id=message.notification_id,
                delivery_key=message.delivery_key,
            )
        except PermanentDeliveryError as exc:
            return self._refused(message, attempt, attempts_before, earlier, exc, log)
        except RetryableDeliveryError as exc:
            if exc.rate_limited and limits:
                self._penalize(channel.throttled(limits), exc, log)
            return self._retry(message, attempt, attempts_before, earlier, exc, log)
        except DeliveryDeferredError:
            raise
        except Exception as exc:
            # A bug: retried like a transient failure, so it ends in the dead-letter queue rather than lost.
            logger.exception("delivery attempt failed unexpectedly", extra=log)
            error = RetryableDeliveryError(f"internal error ({type(exc).__name__})")
            return self._retry(message, attempt, attempts_before, earlier, error, log)
        return self._deliver(message, attempts_before + 1, earlier, receipt, log)

    def _refused(
        self,
        message: DeliveryMessage,
        attempt: Attempt,
        attempts_before: int,
        earlier: Sequence[AttemptRecord],
        exc: PermanentDeliveryError,
        log: dict[str, Any],
    ) -> Outcome:
        """Fail a delivery that can never succeed as it is. One whose credentials SSM says are missing is retried for
        ``MISSING_CREDENTIALS_GRACE_SECONDS`` after they were read from its topic: a topic change writes its
        credentials before the topic names them, and a delivery made right after may meet SSM before every read shows
        them."""
        # When its integration (the credentials' name) was read from its topic: its run's start (an audience run's, a
        # publish finished by a retry's), unless the run is a redrive's, whose credentials are the publish's.
        read = epoch_time((message.window_start if message.redriven == 0 else None) or message.created_at)
        young = read is not None and self._clock() - read < MISSING_CREDENTIALS_GRACE_SECONDS
        if isinstance(exc, MissingCredentialsError) and young:
            error = RetryableDeliveryError(f"{exc.reason} (retried: SSM may not show new credentials at once)")
            return self._retry(message, attempt, attempts_before, earlier, error, log)
        return self._fail(message, attempts_before + 1, earlier, exc, log)

    def _row_of(
        self,
        message: DeliveryMessage,
        attempt: Attempt,
        entries: Entries | None,
        latest_start: float | None,
        log: dict[str, Any],
    ) -> tuple[LedgerEntry | None, Outcome | None]:
        """Return the delivery's row (the batch's read, or its own), or what was done instead of reading it: sent on
        when the ledger cannot be read, or when reading it is too late in this invocation."""
        key = (message.notification_id, message.delivery_key)
        if entries is not None and key in entries:
            return entries[key], None
        if self._past(latest_start):
            # The batch's reads took the time (the ledger timing out): its own read, as slow, would outlast the
            # function, which would hand the whole batch back and spend a receive of each.
            return None, self._send_on(message, attempt, 0.0, "too late in this invocation to read its row", log)
        try:
            return self._ledger.get_entry(*key), None
        except UpstreamError as exc:
            # Without the ledger it is unknown whether this was delivered: try again later, count no attempt.
            backoff = self._policy.backoff(1, self._rand)
            return None, self._send_on(message, attempt, backoff, f"ledger unreadable: {exc}", log)

    def _done(
        self, message: DeliveryMessage, attempt: Attempt, entry: LedgerEntry, log: dict[str, Any]
    ) -> Outcome | None:
        """Return the outcome of a message its row says is not to be sent (delivered, of an older run, of a run that
        ended), or ``None`` when it is to be tried."""
        if entry.status is DeliveryStatus.DELIVERED:
            # SQS delivers at least once: a message seen again after its success is not sent twice.
            logger.info("delivery skipped: already delivered", extra=log)
            return Outcome.SKIPPED
        if entry.redriven > message.redriven:
            # A copy of a run before a redrive (buried, its delete lost, say): the redrive's run is the delivery's now,
            # and this one, sent, would go out twice and write over the newer run's row.
            logger.info("delivery skipped: a redrive started a newer run", extra={**log, "redriven": entry.redriven})
            return Outcome.SKIPPED
        if _ended_run(entry, message):
            return self._ended(message, attempt, entry, log)
        return None

    def _ended(self, message: DeliveryMessage, attempt: Attempt, entry: LedgerEntry, log: dict[str, Any]) -> Outcome:
        """Handle a message of a run the row says ended: never sent again, and buried when its letter is not yet."""
        if entry.status is DeliveryStatus.DEAD and attempt.receive_count > 1 and not _buried(entry, message):
            # Kept because the dead-letter queue refused its letter (or its worker died before sending it): the bury
            # is tried again, never the destination.
            return self._rebury(message, attempt, entry, log)
        # A copy of a run that ended failed or dead (its delete was lost: a worker killed after the outcome, say) would
        # otherwise be tried again past its budget, and buried twice. A redrive starts a newer run.
        logger.info("delivery skipped: its run has ended", extra={**log, "status": entry.status.value})
        return Outcome.SKIPPED

    def _channel(self, message: DeliveryMessage) -> Channel:
        channel = self._channels.get(message.integration.type.value)
        if channel is None:
            raise PermanentDeliveryError(f"no channel delivers type {message.integration.type.value!r}")
        return channel

    def _due(self, message: DeliveryMessage, now: float) -> float | None:
        """Return when ``message`` may be sent (Unix time; ``None``: at once); raise ``PermanentDeliveryError`` when
        its ``not_before`` is none a copy has: one due more than ``MAX_DUE_AHEAD_SECONDS`` after ``now``, or a time
        out of range (the model refuses those; kept here so that no such time ever crashes a batch)."""
        try:
            due = epoch_time(message.not_before)
        except (ValueError, OverflowError):
            raise PermanentDeliveryError("malformed delivery message: not_before") from None
        if due is not None and due - now > MAX_DUE_AHEAD_SECONDS and not message.slot_reserved:
            days = MAX_DUE_AHEAD_SECONDS / 86400
            raise PermanentDeliveryError(f"malformed delivery message: not_before is more than {days:g} days ahead")
        return due

    def _early(self, message: DeliveryMessage, due: float, now: float) -> bool:
        """Whether a message arrived too long before its time to wait for it here."""
        if message.slot_reserved:
            return due - now > self._max_wait
        return due - now > EARLY_TOLERANCE_SECONDS

    def _slot(
        self, message: DeliveryMessage, limits: list[Limit], due: float | None, now: float, horizon: float, log: Any
    ) -> Reservation:
        """Return when this send may start: the slot the message holds (with the slots it left for its return), or a
        new one (its strictest limit's only, when that is after ``horizon``)."""
        try:
            # A copy late for its slot would crowd the next one's: beyond half the safety margin between two slots, it
            # takes a new slot instead.
            if message.slot_reserved and due is not None and now <= due + min(limit.margin for limit in limits) / 2:
                return Reservation(self._pacer.reserve_rest(limits, due, now) if message.slot_partial else due)
            return self._pacer.reserve_within(limits, now, horizon)
        except UpstreamError as exc:
            # Pacing protects the destination; its state being out of reach is no reason to hold a delivery back.
            logger.warning("pacing state unavailable: sending unpaced", extra={**log, "reason": str(exc)})
            self._count(message.integration.type.value, "pacing_unavailable")
            return Reservation(now)

    def _penalize(self, limits: list[Limit], exc: RetryableDeliveryError, log: dict[str, Any]) -> None:
        # The destination is held for at most MAX_PENALTY_SECONDS: a Retry-After of days holds the delivery that got
        # it (dead when past its window), not every later one behind slots nobody sends in, past their own windows.
        hold = min(MAX_PENALTY_SECONDS, exc.retry_after if exc.retry_after is not None else 1.0)
        try:
            self._pacer.penalize(limits, hold, self._clock())
        except UpstreamError as error:
            logger.warning("could not slow the destination's pace", extra={**log, "reason": str(error)})

    def _copy(self, message: DeliveryMessage, at: float, **changes: Any) -> None:
        """Send a copy of ``message`` due at ``at`` (Unix time); raise ``UpstreamError`` when SQS refuses."""
        copy = message.model_copy(update={"not_before": iso_time(at), **changes})
        delay = delay_until(at, self._clock(), MAX_DELAY_SECONDS)
        self._queue.send_later(copy.model_dump_json(exclude_none=True), delay)

    def _wait(self, message: DeliveryMessage, attempt: Attempt, due: float, log: dict[str, Any]) -> Outcome:
        """Send an early message on until its time; no attempt, no slot, no ledger write."""
        # Never earlier than the wait a copy may make here (as ``_wait_for_slot``): a lead over it came back early
        # again, for ever.
        lead = min(self._lead, self._max_wait) if message.slot_reserved else 0.0
        try:
            self._copy(message, due - lead, not_before=iso_time(due))
        except UpstreamError as exc:
            return self._keep(message, attempt, due - lead - self._clock(), exc, log)
        logger.debug("delivery not due yet: sent on", extra={**log, "due_in_seconds": round(due - self._clock())})
        return Outcome.WAITING

    def _wait_for_slot(
        self, message: DeliveryMessage, attempt: Attempt, slot: float, partial: bool, log: dict[str, Any]
    ) -> Outcome:
        """Hold a send slot that is too far off to wait for here: a copy comes back just before it (``partial``: to
        take the slots of the broader limits then).

        The row is written before the copy is sent: a copy taken at once could end its run first, and a ``retrying``
        written after it would overwrite its final status.
        """
        wait = slot - self._clock()
        self._record(
            message,
            DeliveryStatus.RETRYING,
            log,
            last_error=f"paced: next send slot in {math.ceil(wait)} s",
            next_attempt_at=slot,
        )
        try:
            # Due a little before its slot, so SQS's and the poller's latency do not make it late.
            self._copy(
                message,
                slot - min(self._lead, self._max_wait),
                not_before=iso_time(slot),
                slot_reserved=True,
                slot_partial=partial,
            )
        except UpstreamError as exc:
            if _refused_as_it_is(exc):
                return self._refuse(message, None, (), f"paced, and {_refusal('its copy', exc)}", log)
            return self._keep(message, attempt, wait - self._lead, exc, log)
        logger.info("delivery paced", extra={**log, "wait_seconds": round(wait, 3)})
        self._count(message.integration.type.value, Outcome.WAITING)
        return Outcome.WAITING

    def _hold(
        self,
        message: DeliveryMessage,
        attempt: Attempt,
        limits: list[Limit],
        due: float | None,
        latest_start: float | None,
        log: dict[str, Any],
    ) -> Outcome | None:
        """Wait here for this send's slot when it is near and return ``None``: the send starts. Otherwise return what
        was done instead: a copy holds a slot too far off, or takes up a send too late in this invocation to start."""
        if limits:
            # The clock is read again: the reads before may have taken a while, and a slot must never be past.
            now = self._clock()
            ends = now + (self._max_wait if latest_start is None else min(self._max_wait, latest_start - now))
            slot, partial = self._slot(message, limits, due, now, ends, log)
            if partial or slot > ends:
                return self._wait_for_slot(message, attempt, slot, partial, log)
            self._sleep(max(0.0, slot - self._clock()))
        if self._past(latest_start):
            # It waited for a thread, or the pacing call took the time (its table timing out, retried by botocore): a
            # send that outlasted the function would be cut off, and the whole batch come back.
            return self._send_on(message, attempt, 0.0, "too late in this invocation to start a send", log)
        return None

    def _past(self, latest_start: float | None) -> bool:
        """Tell whether the last moment to start a send (or a call as long) in this invocation has passed."""
        return latest_start is not None and self._clock() > latest_start

    def _send_on(
        self, message: DeliveryMessage, attempt: Attempt, seconds: float, why: str, log: dict[str, Any]
    ) -> Outcome:
        """Hand a message, unchanged, to a fresh copy due in ``seconds``: no attempt counted, and a new receive count,
        so neither a DynamoDB outage nor a turn too late in an invocation spends SQS's ``maxReceiveCount``. When SQS
        refuses the copy, the message itself is kept that long."""
        try:
            self._copy(message, self._clock() + seconds, slot_reserved=False, slot_partial=False)
        except UpstreamError as exc:
            return self._keep(message, attempt, max(1.0, seconds), exc, log)
        logger.warning("delivery sent on", extra={**log, "reason": why, "retry_in_seconds": round(seconds, 1)})
        self._count(message.integration.type.value, Outcome.WAITING)
        return Outcome.WAITING

    def _bury_malformed(self, attempt: Attempt, reason: str) -> Outcome:
        """Move a body this consumer cannot read to the dead-letter queue as it came, with the reason; its row, when
        the body still names one, says ``dead`` with that reason.

        Never dropped: a body written by a newer producer (a deploy updates functions one by one) goes back unchanged
        on a redrive once the consumer reads it. When the dead-letter queue fails, the message stays on the queue.
        """
        ids = _ids(attempt.body)
        log = {"message_id": attempt.message_id, "reason": reason, **ids}
        if "notification_id" in ids and "delivery_key" in ids:
            # Written first: when the dead-letter queue refuses, the body stays, and SQS moves it there itself after
            # maxReceiveCount receives; the row already says why. Ids a malformed body names may be ones the ledger
            # refuses (too long): logged, never raised.
            try:
                self._ledger.update(ids["notification_id"], ids["delivery_key"], DeliveryStatus.DEAD, last_error=reason)
            except Exception as exc:
                logger.error(
                    "recording a malformed delivery message failed", extra={**log, "error": type(exc).__name__}
                )
        try:
            self._dead_letters.bury(attempt.body, reason)
        except UpstreamError as exc:
            delay = max(1, math.ceil(self._policy.backoff(1, self._rand)))
            self._scheduler.postpone(attempt.receipt_handle, delay)
            logger.warning("malformed delivery message kept on the queue", extra={**log, "error": str(exc)})
            raise DeliveryDeferredError(ids.get("notification_id", attempt.message_id), delay) from None
        logger.error("malformed delivery message: in the dead-letter queue", extra=log)
        self._count("unknown", Outcome.DEAD)
        return Outcome.DEAD

    def _keep(
        self,
        message: DeliveryMessage,
        attempt: Attempt,
        seconds: float,
        exc: Exception,
        log: dict[str, Any],
        *,
        failure: str | None = None,
        attempts: int | None = None,
    ) -> NoReturn:
        """Leave the received message on the queue, hidden for ``seconds``: the fallback when SQS or DynamoDB fail.

        On its last receive (``max_receive_count``), SQS moves it to the dead-letter queue the next time it would hand
        it over, without a ``last_error``, and the consumer never sees it again: its row is written ``dead`` first,
        naming ``failure`` (what failed; ``exc`` when not given), ``attempts`` this run's when known. The give-up stays
        out of the history, which tells a row whose letter is in the dead-letter queue (``_buried``): should the
        message come back after all, it is buried then. A record-only copy writes no ``dead``: it carries an outcome
        of its own, which the dead-letter queue keeps and a redrive writes.
        """
        last = self._max_receives is not None and attempt.receive_count >= self._max_receives
        if last and message.outcome is None:
            reason = f"moved to the dead-letter queue after {attempt.receive_count} receives: {failure or exc}"
            self._record(
                message,
                DeliveryStatus.DEAD,
                log,
                attempts=attempts,
                attempted=False,
                last_error=reason,
            )
            logger.error("delivery kept on its last receive: SQS moves it to the dead-letter queue", extra=log)
            self._count(message.integration.type.value, Outcome.DEAD)
        delay = max(1, math.ceil(seconds))
        self._scheduler.postpone(attempt.receipt_handle, delay)
        logger.warning("delivery kept on the queue", extra={**log, "reason": str(exc), "retry_in_seconds": delay})
        raise DeliveryDeferredError(message.notification_id, delay)

    def _deliver(
        self,
        message: DeliveryMessage,
        attempts: int,
        earlier: Sequence[AttemptRecord],
        receipt: DeliveryReceipt,
        log: dict[str, Any],
    ) -> Outcome:
        # The message is out: bookkeeping now must never make SQS send it a second time. The id is the receiver's to
        # choose (a webhook's X-Request-Id, its repeats joined): cut before it is logged as before it is kept.
        provider_id = receipt.provider_message_id
        provider_id = provider_id[:MAX_PROVIDER_ID_LENGTH] if provider_id is not None else None
        self._record(
            message, DeliveryStatus.DELIVERED, log, attempts=attempts, earlier=earlier, provider_message_id=provider_id
        )
        logger.info("delivered", extra={**log, "provider_message_id": provider_id})
        self._count(message.integration.type.value, Outcome.DELIVERED)
        return Outcome.DELIVERED

    def _fail(
        self,
        message: DeliveryMessage,
        attempts: int,
        earlier: Sequence[AttemptRecord],
        exc: PermanentDeliveryError,
        log: dict[str, Any],
    ) -> Outcome:
        self._record(message, DeliveryStatus.FAILED, log, attempts=attempts, earlier=earlier, last_error=exc.reason)
        logger.warning("delivery failed permanently", extra={**log, "reason": exc.reason})
        if isinstance(exc, EndpointDisabledError) and self._on_endpoint_disabled is not None:
            # Bookkeeping after the outcome: a failure to report it is logged, never raised (the next send reports
            # it again).
            try:
                self._on_endpoint_disabled(exc.endpoint_arn, exc.observed_at)
            except Exception:
                logger.exception("reporting a disabled endpoint failed", extra=log)
        self._count(message.integration.type.value, Outcome.FAILED)
        return Outcome.FAILED

    def _retry(
        self,
        message: DeliveryMessage,
        attempt: Attempt,
        attempts_before: int,
        earlier: Sequence[AttemptRecord],
        exc: RetryableDeliveryError,
        log: dict[str, Any],
    ) -> Outcome:
        now = self._clock()
        window_start = epoch_time(message.window_start or message.created_at) or now
        decision = self._policy.decide(exc, attempts_before, window_start, now, self._rand, message.throttled)
        if decision.at is None:
            return self._bury(message, attempt, decision, earlier, log)
        # A 429 is no attempt (the pace was wrong, not the destination): it leaves the history alone. Written before the
        # copy is sent: a copy due at once (a 429 with Retry-After: 0) can end its run before a write after the send
        # would come, and that ``retrying`` would overwrite the final status for good.
        self._record(
            message,
            DeliveryStatus.RETRYING,
            log,
            attempts=decision.attempts,
            attempted=decision.attempts > attempts_before,
            earlier=earlier,
            last_error=decision.reason,
            next_attempt_at=decision.at,
        )
        try:
            throttled = message.throttled + 1 if exc.rate_limited else 0
            self._copy(
                message,
                decision.at,
                attempt=decision.attempts,
                slot_reserved=False,
                slot_partial=False,
                throttled=throttled,
            )
        except UpstreamError as error:
            if _refused_as_it_is(error):
                reason = f"{decision.reason}; not retried: {_refusal('its retry', error)}"
                return self._refuse(message, decision.attempts, earlier, reason, log)
            failure = f"{decision.reason} (its retry could not be queued: {error})"
            return self._keep(
                message, attempt, decision.at - now, error, log, failure=failure, attempts=decision.attempts
            )
        logger.warning(
            "delivery will be retried",
            extra={**log, "reason": decision.reason, "retry_in_seconds": round(decision.at - now, 1)},
        )
        self._count(message.integration.type.value, Outcome.RETRIED)
        return Outcome.RETRIED

    def _bury(
        self,
        message: DeliveryMessage,
        attempt: Attempt,
        decision: Decision,
        earlier: Sequence[AttemptRecord],
        log: dict[str, Any],
    ) -> Outcome:
        """Move a delivery whose retries are spent to the dead-letter queue, with its last error.

        The row says ``dead`` before the letter is sent, whatever becomes of it: a message kept because the dead-letter
        queue refused (or whose worker died before the letter went) finds its run ended when it comes back, and only
        the bury is tried again (``_rebury``), never the destination. The give-up joins the history once the letter is
        in the queue; that tells a bury done from one still to do (``_buried``).
        """
        self._record(
            message,
            DeliveryStatus.DEAD,
            log,
            attempts=decision.attempts,
            attempted=False,
            last_error=decision.reason,
            carry=False,
        )
        return self._send_to_dead_letters(message, attempt, decision.attempts, earlier, decision.reason, log)

    def _rebury(self, message: DeliveryMessage, attempt: Attempt, entry: LedgerEntry, log: dict[str, Any]) -> Outcome:
        """Bury again a message whose row says its run ended ``dead``, its letter not in the dead-letter queue yet."""
        attempts = max(message.attempt, entry.attempts - message.prior_attempts)
        reason = entry.last_error or "retries exhausted"
        logger.info("delivery dead: its dead letter is sent again", extra=log)
        return self._send_to_dead_letters(message, attempt, attempts, entry.history, reason, log)

    def _send_to_dead_letters(
        self,
        message: DeliveryMessage,
        attempt: Attempt,
        attempts: int,
        earlier: Sequence[AttemptRecord],
        reason: str,
        log: dict[str, Any],
    ) -> Outcome:
        """Send the dead letter of a delivery whose row says ``dead`` (this run's ``attempts`` made), then add the
        give-up to the row's history."""
        dead = message.model_copy(
            update={"attempt": attempts, "not_before": None, "slot_reserved": False, "slot_partial": False}
        )
        try:
            self._dead_letters.bury(dead.model_dump_json(exclude_none=True), reason)
        except UpstreamError as exc:
            if _refused_as_it_is(exc):
                # A letter the dead-letter queue cannot hold could never be redriven either.
                return self._refuse(
                    message, attempts, earlier, f"{reason}; not buried: {_refusal('its letter', exc)}", log
                )
            failure = f"{reason} (the dead-letter queue refused it: {exc})"
            return self._keep(message, attempt, self._policy.backoff(1, self._rand), exc, log, failure=failure)
        # Given up is an outcome the history shows, even after a 429 that counted no attempt.
        self._record(message, DeliveryStatus.DEAD, log, attempts=attempts, earlier=earlier, last_error=reason)
        logger.error("delivery retries exhausted: in the dead-letter queue", extra={**log, "reason": reason})
        self._count(message.integration.type.value, Outcome.DEAD)
        return Outcome.DEAD

    def _refuse(
        self,
        message: DeliveryMessage,
        attempts: int | None,
        earlier: Sequence[AttemptRecord],
        reason: str,
        log: dict[str, Any],
    ) -> Outcome:
        """End a delivery ``failed`` whose copy or letter SQS refuses for what it is (too large): sent again it would
        be refused again, and its message, kept, would have the delivery tried again on every receive."""
        self._record(message, DeliveryStatus.FAILED, log, attempts=attempts, earlier=earlier, last_error=reason)
        logger.error("delivery failed: SQS refuses its message", extra={**log, "reason": reason})
        self._count(message.integration.type.value, Outcome.FAILED)
        return Outcome.FAILED

    def _record(
        self,
        message: DeliveryMessage,
        status: DeliveryStatus,
        log: dict[str, Any],
        *,
        attempts: int | None = None,
        attempted: bool = True,
        earlier: Sequence[AttemptRecord] = (),
        last_error: str | None = None,
        provider_message_id: str | None = None,
        next_attempt_at: float | None = None,
        carry: bool = True,
    ) -> None:
        """Write the delivery's row; a failure is logged and counted, never raised (the outcome already happened).

        ``attempts`` counts this run's attempts (the row's count adds the runs before a redrive); given it, the outcome
        goes in the row's history unless ``attempted`` says that no attempt was made. ``earlier`` is the history as
        read before the attempt. ``next_attempt_at`` is a Unix time. A final outcome the ledger refuses goes on in a
        record-only copy, unless ``carry`` is false (a write that another follows).
        """
        total = None if attempts is None else message.prior_attempts + attempts
        at = iso_time(self._clock())
        # Bounded as COPY_RESERVE_BYTES counts them: a record-only copy carries both (a receiver's X-Request-Id, say).
        last_error = last_error[:MAX_ERROR_LENGTH] if last_error is not None else None
        provider_message_id = provider_message_id[:MAX_PROVIDER_ID_LENGTH] if provider_message_id is not None else None
        history = None
        if total is not None and attempted:
            history = AttemptRecord(at=at, attempt=total, status=status.value, error=last_error)
        try:
            self._ledger.update(
                message.notification_id,
                message.delivery_key,
                status,
                row=_row(message),
                attempts=total,
                last_error=last_error,
                provider_message_id=provider_message_id,
                next_attempt_at=iso_time(next_attempt_at) if next_attempt_at is not None else None,
                redriven=message.redriven,
                history=history,
                earlier=earlier,
                # Only while the row is this run's: a redrive's newer run is never written over by an older one.
                before_run=message.redriven + 1,
            )
        except Exception as exc:
            logger.error("ledger update failed", extra={**log, "status": status.value, "error": type(exc).__name__})
            self._count(message.integration.type.value, "ledger_write_failed")
            if status in _FINAL and attempts is not None and carry:
                outcome = RecordedOutcome(
                    status=status.value,
                    attempts=attempts,
                    at=at,
                    last_error=last_error,
                    provider_message_id=provider_message_id,
                )
                self._record_later(message, outcome, log)

        if next_attempt_at is not None and next_attempt_at - self._clock() > RECORD_KEPT_AHEAD_SECONDS:
            # A wait this long (a slow destination's pace) may outlast the record's TTL, set at publish.
            try:
                self._ledger.keep_record(message.notification_id, next_attempt_at)
            except Exception as exc:
                logger.warning("notification record not kept longer", extra={**log, "error": type(exc).__name__})

    def _record_later(self, message: DeliveryMessage, outcome: RecordedOutcome, log: dict[str, Any]) -> bool:
        """Send a record-only copy of ``message`` carrying ``outcome``, one backoff step later (longer each time
        writing it failed): the row gets its outcome once DynamoDB answers, and nothing is sent again. The copy carries
        no content (it sends nothing), so it is never larger than the message. Return whether it was sent; never
        raise: this runs after a send, which must not be repeated."""
        delay = self._policy.backoff(outcome.tries, self._rand)
        try:
            self._copy(
                message,
                self._clock() + delay,
                outcome=outcome,
                content=Content(),
                slot_reserved=False,
                slot_partial=False,
            )
        except Exception as exc:
            logger.error(
                "outcome not recorded: the ledger and the queue both failed",
                extra={**log, "status": outcome.status, "error": type(exc).__name__},
            )
            return False
        logger.warning(
            "outcome to be recorded later",
            extra={**log, "status": outcome.status, "tries": outcome.tries, "retry_in_seconds": round(delay, 1)},
        )
        return True

    def _write_outcome(
        self, message: DeliveryMessage, outcome: RecordedOutcome, attempt: Attempt, log: dict[str, Any]
    ) -> Outcome:
        """Write the outcome a record-only copy carries to its row; send nothing.

        Only while the row belongs to the copy's run (it counts no more redrives than the copy: a newer run's row is
        never overwritten), and once: a copy seen again finds its attempt in the history. A write that fails again
        goes on in a later copy, and when SQS refuses that copy, this one stays on the queue. Past the retry window
        from the outcome, the copy gives up, logged and counted.
        """
        status = DeliveryStatus(outcome.status)
        total = message.prior_attempts + outcome.attempts
        record = AttemptRecord(at=outcome.at, attempt=total, status=status.value, error=outcome.last_error)
        channel_type = message.integration.type.value
        try:
            entry = self._ledger.get_entry(message.notification_id, message.delivery_key)
            if entry is not None and entry.history and entry.history[-1] == record:
                written = False  # this copy came before, its write went through
            else:
                written = self._ledger.update(
                    message.notification_id,
                    message.delivery_key,
                    status,
                    row=_row(message),
                    attempts=total,
                    last_error=outcome.last_error,
                    provider_message_id=outcome.provider_message_id,
                    redriven=message.redriven,
                    history=record,
                    earlier=entry.history if entry is not None else (),
                    before_run=message.redriven + 1,
                )
        except Exception as exc:
            happened = epoch_time(outcome.at) or self._clock()
            if self._clock() - happened > self._policy.window_seconds:
                logger.error(
                    "outcome not recorded: the ledger refused it for a whole retry window",
                    extra={**log, "status": status.value, "tries": outcome.tries, "error": type(exc).__name__},
                )
                self._count(channel_type, "ledger_write_failed")
                return Outcome.SKIPPED
            logger.warning("recording an outcome late failed again", extra={**log, "error": type(exc).__name__})
            again = outcome.model_copy(update={"tries": outcome.tries + 1})
            if not self._record_later(message, again, log):
                return self._keep(message, attempt, self._policy.backoff(again.tries, self._rand), exc, log)
            self._count(channel_type, Outcome.WAITING)
            return Outcome.WAITING
        if written:
            logger.info("outcome recorded late", extra={**log, "status": status.value, "tries": outcome.tries})
            self._count(channel_type, Outcome.RECORDED)
            return Outcome.RECORDED
        logger.info("late outcome not written: the row has it, or is delivered or of a newer run", extra=log)
        return Outcome.SKIPPED
