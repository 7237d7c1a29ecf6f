"""Browser notifications: a JSON frame posted to open WebSocket connections through API Gateway's Management API.

Target ``{"user_id": "…"}`` reaches every open connection of that user; ``{}`` every connection that hears the
channel/topic the notification was published on (its token named it). The frame is
``{"notification_id", "delivery_key", "channel", "topic", "text", "data"?, "created_at"}``; a page shows it as text,
never as HTML.

Each delivery posts the frame to every connection (``post_to_connection``, concurrently, through one client per
Management API endpoint), in a new random order each time. A connection API Gateway reports gone (410) is no failure,
and no delivery posts to it again (its ``$disconnect`` removes the rest of it and frees its seat); one whose token
expired without a refresh is closed and removed. A delivery that reaches no open connection is ``delivered`` to 0
connections, and says so in its provider message id (``0 connections``).

A delivery that reached a connection is ``delivered``, a user's and a topic's alike: its provider message id names the
connections it did not reach and why (``2 connections, 1 failed (LimitExceededException)``), and a warning logs them.
Only one that reached none while some failed for now (the account's Management API throttled, an outage, a user's only
pages stalled, its only connections still opening) is retried. A retry posts to every connection again (nothing tells
which have the frame; a page drops a copy by the notification id), so retrying for the connections a delivery missed
would send everyone the frame again, and again for as long as one of them fails: a page that stopped reading (a frozen
tab, a hostile page; API Gateway answers ``LimitExceededException`` once its buffer is full) would hold the delivery of
everyone hearing the topic until its retries were spent, and end it dead. For a user, one page reached has it; for a
topic, the few it missed miss this notification, named. The two targets follow one rule.

A send ends within its budget (``BrowserChannel._budget``, 13 s by default) however many connections there are and
however slowly they answer. A post is waited for ``post_seconds`` at most (9 s: the Management API client's tries and
timeouts, ``post_*``): past that it is ``unanswered`` and leaves its turn to the next post, its thread going on until
the client gives up, so a page that stopped reading costs the others one post's time, not the budget. The posts not
answered when the budget ends, or not made by then, failed for now (``deadline``): a topic heard by more connections
than one send reaches (about 1,000 posts a second; some 6,000 connections against the local stack, whose query of them
takes as long again) is delivered to those it reached, a different random part each time. Reaching the rest would take
a retry that resumes where the send stopped (a cursor the retry carries), not one that starts again.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol

from botocore.exceptions import ClientError
from pydantic import Field

from core.channels.base import (
    RETRYABLE_AWS_CODES,
    Channel,
    ChannelResources,
    DeliveryReceipt,
    IntegrationBase,
    Limit,
    destination_key,
    json_shape,
    limit_at,
    parse_settings,
)
from core.errors import (
    AWS_ERRORS,
    ContentTooLongError,
    NotFoundError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    UpstreamError,
)
from core.models import Content, IntegrationType
from core.observability import logger
from core.realtime.connections import Connection
from core.realtime.ports import ConnectionStorePort
from core.realtime.refs import USER_ID_PATTERN, topic_ref
from core.templates import as_text, render
from core.validation import Strict

if TYPE_CHECKING:
    from core.ledger import NotificationRecord

# A connection that API Gateway calls gone this soon after it opened may be one whose $connect is still finishing: it
# is skipped, not removed.
OPENING_SECONDS = 10
# The outcome of a post the send's budget left unanswered (or unmade): failed for now.
DEADLINE_OUTCOME = "retry:deadline"
# The outcome of a post not answered within ``BrowserChannel.post_seconds``: a page that stopped reading, say.
UNANSWERED_OUTCOME = "retry:unanswered"


class BrowserTarget(Strict):
    """Whom a browser notification reaches: one user's connections, or (empty) everyone hearing the topic."""

    user_id: str | None = Field(default=None, pattern=USER_ID_PATTERN)


class BrowserModel(Strict):
    """A frame's text template and an optional JSON template for its ``data``."""

    text: str
    data: Any = None


class BrowserIntegration(IntegrationBase):
    """Frames pushed to open browser connections of a user, or of everyone hearing the topic."""

    type: Literal[IntegrationType.BROWSER]
    target: BrowserTarget = Field(default_factory=BrowserTarget)
    model: Annotated[
        str | BrowserModel,
        json_shape((str, dict), 'a template string or an object {"text": "<template>", "data": <JSON>}'),
    ]


class RecordReader(Protocol):
    """The ledger as the browser channel reads it: a notification's channel/topic and creation time."""

    def get_record(self, notification_id: str) -> NotificationRecord:
        """Return a notification's record; raise ``NotFoundError`` when there is none."""
        ...


@dataclass(frozen=True)
class BrowserResources(ChannelResources):
    """The channels' resources with what browser deliveries need: the open connections, the Management API client
    of the WebSocket API (a cached getter: one client per endpoint), and the ledger's notification records."""

    connections: ConnectionStorePort
    management: Callable[[], Any]
    records: RecordReader


def browser_frame(
    notification_id: str, delivery_key: str, channel: str, topic: str, created_at: str, content: Content
) -> bytes:
    """Return a notification's frame: ``{"notification_id", "delivery_key", "channel", "topic", "text", "data"?,
    "created_at"}``. A page drops a frame it has by the first two: a topic's two browser integrations reaching one
    page send two frames of one notification, each shown."""
    frame: dict[str, Any] = {
        "notification_id": notification_id,
        "delivery_key": delivery_key,
        "channel": channel,
        "topic": topic,
        "text": content.text or "",
    }
    if content.data is not None:
        frame["data"] = content.data
    frame["created_at"] = created_at
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "backslashreplace")


@dataclass
class _Tally:
    sent: int = 0
    gone: int = 0
    expired: int = 0
    opening: int = 0
    retryable: dict[str, int] | None = None
    permanent: dict[str, int] | None = None

    def note(self) -> str:
        parts = [f"{self.sent} connection{'' if self.sent == 1 else 's'}"]
        parts += [f"{count} {what}" for what, count in (("gone", self.gone), ("expired", self.expired)) if count]
        if self.retryable:
            parts.append(", ".join(f"{count} failed ({code})" for code, count in sorted(self.retryable.items())))
        if self.permanent:
            parts.append(", ".join(f"{count} refused ({code})" for code, count in sorted(self.permanent.items())))
        return ", ".join(parts)


class _Lanes:
    """Runs the tasks of one send in turn on threads (lanes), ``width`` lanes at a time, until a deadline.

    A lane whose task has run ``patience`` seconds is stalled: another lane takes its turn, and it ends with its task
    (its thread goes on until then, unwaited for). At most ``spare`` stalled lanes at once: beyond them, the next lane
    waits for one to end. A task not started by the deadline is not run. Lanes take their tasks themselves; the thread
    that runs the send only wakes when a lane ends or may have stalled.
    """

    def __init__(
        self,
        tasks: deque[tuple[int | None, Callable[[], None]]],
        width: int,
        spare: int,
        patience: float,
        monotonic: Callable[[], float],
    ) -> None:
        self._tasks = tasks  # each task with the index of the post it makes, if it is one
        self._width = width
        self._spare = spare
        self._patience = patience
        self._monotonic = monotonic
        self._changed = threading.Condition(threading.Lock())
        self._alive: set[int] = set()
        self._stalled: set[int] = set()
        self._under_way: dict[int, tuple[int | None, float]] = {}  # by lane: its task's post index, when it started
        self._names = itertools.count()

    def run(self, ends_by: float) -> set[int]:
        """Run the tasks until each has ended or stalled, or until ``ends_by`` (monotonic); return the indexes of the
        posts under way for ``patience`` seconds or more by then."""
        pool = ThreadPoolExecutor(max_workers=self._width + self._spare, thread_name_prefix="browser")
        try:
            with self._changed:
                while (at := self._monotonic()) < ends_by:
                    self._stalled |= {
                        lane for lane, (_, started) in self._under_way.items() if at - started >= self._patience
                    }
                    self._start(pool, ends_by)
                    if not self._tasks and self._alive <= self._stalled:
                        break
                    # A lane may stall when its task has run ``patience``; one about to take a task, ``patience`` from
                    # now at the earliest.
                    stalling = [
                        started + self._patience
                        for lane, (_, started) in self._under_way.items()
                        if lane not in self._stalled
                    ]
                    if len(stalling) < len(self._alive - self._stalled):
                        stalling.append(at + self._patience)
                    self._changed.wait(timeout=min([ends_by, *stalling]) - at)
                return {
                    index
                    for index, started in self._under_way.values()
                    if index is not None and at - started >= self._patience
                }
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _start(self, pool: ThreadPoolExecutor, ends_by: float) -> None:
        """Start as many lanes as the tasks left can keep busy, ``width`` unstalled ones at most."""
        active = len(self._alive - self._stalled)
        idle = active - len(self._under_way.keys() - self._stalled)
        while len(self._tasks) > idle and active < self._width and len(self._alive) < self._width + self._spare:
            lane = next(self._names)
            self._alive.add(lane)
            pool.submit(self._lane, lane, ends_by)
            active += 1
            idle += 1

    def _lane(self, lane: int, ends_by: float) -> None:
        """Take the tasks in turn until none is left, ``ends_by`` has passed (the rest are not run) or a task of this
        lane stalled."""
        with self._changed:
            try:
                while self._tasks and lane not in self._stalled:
                    if self._monotonic() >= ends_by:
                        self._tasks.clear()
                        break
                    index, task = self._tasks.popleft()
                    self._under_way[lane] = (index, self._monotonic())
                    self._changed.release()
                    try:
                        task()
                    finally:
                        self._changed.acquire()
                        del self._under_way[lane]
            finally:
                self._alive.discard(lane)
                self._stalled.discard(lane)
                self._changed.notify()


class BrowserChannel(Channel):
    """Posts a frame to each open connection of the target; any 2xx of a post is that connection's success.

    API Gateway's limits: a message is at most 128 KiB; the Management API answers 429 (``LimitExceededException``)
    past the account's rate, and to a connection whose buffer is full. Posts go out ``max_concurrent_posts`` at a time;
    one is waited for ``post_seconds`` at most: the time the Management API client (core/clients.py) takes to give up
    on a post when it has the ``post_*`` settings below. At most ``max_stalled_posts`` posts past that are left
    running in their threads at once (a page that stopped reading keeps its post's thread until the client gives up:
    without a bound, many such pages would hold a thread each, and a Lambda environment runs 1,024 at most).
    """

    type: ClassVar[str] = IntegrationType.BROWSER.value
    integration_model = BrowserIntegration
    max_frame_bytes: ClassVar[int] = 128 * 1024
    max_concurrent_posts: ClassVar[int] = 32
    max_stalled_posts: ClassVar[int] = 32
    # The Management API client's timeouts and tries (core/clients.py builds it from these). A connect is given 2 s:
    # a thousand posts at once to the local stack's gateway, on a busy machine, took over 1 s.
    post_connect_seconds: ClassVar[float] = 2.0
    post_read_seconds: ClassVar[float] = 2.0
    post_tries: ClassVar[int] = 2
    # Both tries, and botocore's wait before the second (at most 1 s, standard mode): about half a send's budget.
    post_seconds: ClassVar[float] = post_tries * (post_connect_seconds + post_read_seconds) + 1.0

    def __init__(
        self,
        resources: ChannelResources,
        clock: Callable[[], float] = time.time,
        send_seconds: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        order: Callable[[list[Connection]], None] = random.shuffle,
    ) -> None:
        super().__init__(resources)
        self._clock = clock
        self._send_seconds = send_seconds
        self._monotonic = monotonic
        self._order = order

    def _budget(self) -> float:
        """Seconds a send may take: by default what any URL-based send may (the HTTP connect plus read timeouts), the
        budget the consumer keeps before its timeout for the send it starts last (consumer/handler.py latest_start)."""
        if self._send_seconds is not None:
            return self._send_seconds
        from core.outbound import send_seconds  # loaded by the consumer already; not by a function only rendering

        return send_seconds(getattr(self._resources.http, "timeout", None))

    @classmethod
    def render(cls, model: Any, values: Mapping[str, Any]) -> Content:
        """Render a string model into the frame's text, an object model into its text and data; one whose frame would be
        over ``max_frame_bytes`` is refused (accepted, it failed every delivery)."""
        if isinstance(model, str):
            content = Content(text=render(model, values))
        else:
            rendered = render(model, values)
            text = rendered.get("text") if isinstance(rendered, dict) else None
            data = rendered.get("data") if isinstance(rendered, dict) else None
            # A whole "$var" is the value itself: a list or object goes into the text as text templates write it.
            content = Content(text=as_text(text), data=data)
        # The frame's ids and names are at most a name's 64 characters each here; its time is ISO 8601.
        name = "x" * 64
        frame = browser_frame(name, name, name, name, "2026-01-01T00:00:00.000Z", content)
        if len(frame) > cls.max_frame_bytes:
            raise ContentTooLongError(
                f"the browser frame takes {len(frame)} bytes with this metadata; a frame is at most "
                f"{cls.max_frame_bytes // 1024} KiB"
            )
        return content

    def rate_limits(
        self, target: Mapping[str, Any], credentials: Mapping[str, Any] | None, rate_per_second: float | None
    ) -> list[Limit]:
        """Return the integration's own rate on a user's connections; a topic target is paced by nothing."""
        user_id = parse_settings(BrowserTarget, target, "target").user_id
        if user_id is None:
            return []
        return limit_at(destination_key("browser", user_id), None, rate_per_second)

    def _realtime(self) -> BrowserResources:
        if not isinstance(self._resources, BrowserResources):
            raise PermanentDeliveryError(
                "browser: this consumer has no connections table (CONNECTIONS_TABLE, REALTIME_MANAGEMENT_URL)"
            )
        return self._resources

    def send(
        self,
        content: Content,
        target: Mapping[str, Any],
        credentials: Mapping[str, Any] | None,
        *,
        notification_id: str,
        delivery_key: str,
    ) -> DeliveryReceipt:
        """Post the frame to every open connection of the target; return how many it reached, and whom it missed.

        The send ends within its budget (``_budget``), however many connections there are: the posts not answered by
        then count as failed for now (``deadline``), those not started are not made, and those under way finish in
        their threads, unwaited for, as does the housekeeping (closing expired connections, removing gone ones).
        Without the bound, a topic heard by thousands would outlast the Lambda timeout: killed before any ledger write,
        the batch would be posted again at every receive and dead-lettered by SQS with its rows still ``queued``.
        """
        ends_by = self._monotonic() + self._budget()
        user_id = parse_settings(BrowserTarget, target, "target").user_id
        realtime = self._realtime()
        try:
            record = realtime.records.get_record(notification_id)
            frame = browser_frame(
                notification_id, delivery_key, record.channel, record.topic, record.created_at, content
            )
            if len(frame) > self.max_frame_bytes:
                raise PermanentDeliveryError(f"browser: frame exceeds {self.max_frame_bytes // 1024} KiB")
            found = (
                realtime.connections.of_user(user_id)
                if user_id is not None
                else realtime.connections.of_topic(topic_ref(record.channel, record.topic))
            )
        except NotFoundError:
            raise PermanentDeliveryError("browser: the notification's record is gone") from None
        except UpstreamError as exc:
            raise RetryableDeliveryError(f"browser: {exc}") from None
        now = self._clock()
        tally = _Tally()
        live = [connection for connection in found if connection.token_expires_at > now]
        expired = [connection for connection in found if connection.token_expires_at <= now]
        tally.expired = len(expired)
        # Those the budget leaves out are then a different part of a large topic each time, not the same listeners.
        self._order(live)
        outcomes = self._post_all(realtime, live, expired, frame, ends_by, now)
        for connection, outcome in zip(live, outcomes, strict=True):
            self._count(tally, connection, outcome, now)
        return self._result(tally, len(live))

    def _post_all(
        self,
        realtime: BrowserResources,
        live: list[Connection],
        expired: list[Connection],
        frame: bytes,
        ends_by: float,
        now: float,
    ) -> list[str]:
        """Close every expired connection and post to every live one, ``max_concurrent_posts`` at a time, until
        ``ends_by`` (monotonic); return each live one's outcome: ``retry:unanswered`` for a post not answered within
        ``post_seconds``, ``retry:deadline`` for one not answered (or not made) by ``ends_by``.

        The housekeeping (closing an expired connection, removing a gone one) runs on the same threads: what is not
        done by ``ends_by`` is not waited for, and goes on in its thread (a later delivery meets what is left).
        """
        outcomes: dict[int, str] = {}
        tasks: deque[tuple[int | None, Callable[[], None]]] = deque(
            (None, partial(self._close, realtime, connection)) for connection in expired
        )
        tasks.extend(
            (index, partial(self._post_by, realtime, connection, frame, now, outcomes, index))
            for index, connection in enumerate(live)
        )
        if not tasks:
            return []
        lanes = _Lanes(tasks, self.max_concurrent_posts, self.max_stalled_posts, self.post_seconds, self._monotonic)
        stalled = lanes.run(ends_by)
        answered = dict(outcomes)  # what a post answers from now on is not counted
        return [
            answered.get(index, UNANSWERED_OUTCOME if index in stalled else DEADLINE_OUTCOME)
            for index in range(len(live))
        ]

    def _post_by(
        self,
        realtime: BrowserResources,
        connection: Connection,
        frame: bytes,
        now: float,
        outcomes: dict[int, str],
        index: int,
    ) -> None:
        """Post to one connection and put its outcome in ``outcomes``; then remove it if API Gateway calls it gone
        (not one still opening)."""
        outcome = outcomes[index] = self._post(realtime, connection, frame)
        if outcome == "gone" and now - connection.connected_at >= OPENING_SECONDS:
            self._forget(realtime, connection)

    def _post(self, realtime: BrowserResources, connection: Connection, frame: bytes) -> str:
        """Post to one connection; return ``sent``, ``gone``, ``retry:<code>`` or ``refused:<code>``."""
        try:
            realtime.management().post_to_connection(ConnectionId=connection.connection_id, Data=frame)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code == "GoneException" or status == 410:
                return "gone"
            if code in RETRYABLE_AWS_CODES or code == "LimitExceededException" or status == 429 or status >= 500:
                return f"retry:{code}"
            return f"refused:{code}"
        except AWS_ERRORS as exc:  # transport errors, and an answer botocore cannot read
            return f"retry:{type(exc).__name__}"
        return "sent"

    def _count(self, tally: _Tally, connection: Connection, outcome: str, now: float) -> None:
        if outcome == "sent":
            tally.sent += 1
        elif outcome == "gone":
            if now - connection.connected_at < OPENING_SECONDS:
                tally.opening += 1
            else:
                tally.gone += 1
        else:
            kind, _, code = outcome.partition(":")
            bucket = tally.retryable if kind == "retry" else tally.permanent
            if bucket is None:
                bucket = {}
                if kind == "retry":
                    tally.retryable = bucket
                else:
                    tally.permanent = bucket
            bucket[code] = bucket.get(code, 0) + 1

    def _result(self, tally: _Tally, attempted: int) -> DeliveryReceipt:
        if tally.sent == 0 and tally.opening:
            # Its only connections were still opening (a reconnect): a little later they take the frame.
            raise RetryableDeliveryError(f"browser: {tally.opening} of {attempted} connections still opening")
        # Retried only when it reached nobody: a retry posts to every connection again (see the module's docstring).
        if tally.sent == 0 and tally.retryable:
            failed = sum(tally.retryable.values())
            codes = ", ".join(sorted(tally.retryable))
            raise RetryableDeliveryError(
                f"browser: {failed} of {attempted} connections failed for now ({codes})",
                rate_limited="LimitExceededException" in tally.retryable,
            )
        if tally.permanent and tally.sent == 0:
            codes = ", ".join(sorted(tally.permanent))
            raise PermanentDeliveryError(f"browser: every post was refused ({codes})")
        if tally.retryable or tally.permanent:
            logger.warning(
                "browser delivery missed connections",
                extra={"reached": tally.sent, "failed": tally.retryable or {}, "refused": tally.permanent or {}},
            )
        return DeliveryReceipt(tally.note())

    def _forget(self, realtime: BrowserResources, connection: Connection) -> None:
        """Stop posting to a gone connection; a failure is logged, never raised (the others were posted to).

        Its own item stays for its ``$disconnect``, which frees its seat: removed here, before a ``$disconnect`` that
        came late, the seat was held until its token expired, and a user whose pages went so was refused (409) with
        none open. The item expires with the connection's session if no ``$disconnect`` comes.
        """
        try:
            realtime.connections.unroute(connection)
        except UpstreamError as exc:
            logger.warning("gone connection not removed", extra={"reason": str(exc)})

    def _close(self, realtime: BrowserResources, connection: Connection) -> None:
        """Close and remove a connection whose token expired without a refresh; failures are logged only."""
        try:
            realtime.management().delete_connection(ConnectionId=connection.connection_id)
        except AWS_ERRORS as exc:
            if not (isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "GoneException"):
                logger.warning("expired connection not closed", extra={"error": type(exc).__name__})
        self._forget(realtime, connection)
