"""Fault drill: the local receiver fails on purpose, consumer workers die mid-batch, and nothing is lost.

One topic of webhook integrations on the local receiver, each scripted by its URL's query (infra/local/peers.py):
``flaky`` answers a share of 500s, of 429s with ``Retry-After``, of answers later than the consumer's HTTP timeout and
of connection resets; ``outage`` answers 503 for a while from its first request; ``rejects`` answers 400 (a
permanent failure: ``failed``); in the short form, ``broken`` answers 503 forever (its retries are spent: ``dead``).
Notifications are published at a steady pace while consumer workers are SIGKILLed in the middle of a batch (the batch
is received again after the delivery queue's visibility timeout).

After the queues drain, every delivery of every accepted notification must be final, and its status backed by the
receiver's records (``why_lost``): ``delivered`` by a clean 2xx (not a late answer nor a reset), ``failed`` by the
permanent refusal its reason names, ``dead`` by a record of each attempt; lost counts those that are not. Duplicates
are the receiver's repeated acceptances of one (``X-Notification-Id``, ``X-Delivery-Key``); each must follow an
acceptance whose answer never reached the consumer (a slow answer or a reset), or one the consumer never logged
hearing with a worker killed just after it, or one the consumer's log shows handled by two invocations (the queue
handed it out twice); the consumer's log is its ``deliver.log``. Replaying the raw records as a receiver that drops
repeats by that pair leaves one acceptance per delivery, with the same body. A form misses a target when it made fewer
kills than planned, or when an integration's deliveries did not all end as ``EXPECTED``; ``main`` then exits 1.

Run: ``python -m bench.drill`` (the long form, 150 notifications over 60 s, a 150 s outage and 4 workers killed,
about 6 minutes; then the short form) or ``--quick`` (the short form only, which tests/e2e/test_drill.py runs in
``make test``: 30 notifications, a 6 s outage, one worker killed, about a minute and a half). Each form starts a local
stack of its own, with shortened retry params; plots in ``bench/plots/drill-<form>.png``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench import plots
from bench.local_stack import ADMIN_TOKEN, API_KEY, LocalStack, _call
from bench.receiver import arrival, delivery_of, following
from bench.results import Fragment, Table, Target
from bench.workers import Kill, kill_busy

FINAL = frozenset({"delivered", "failed", "dead"})
# Answers whose outcome the consumer cannot know: the receiver took the request in, the answer never came back.
UNKNOWN_OUTCOME = frozenset({"slow", "reset"})
# How long after the receiver's record of a 2xx the consumer's ``delivered`` log record of it may come: the answer's
# way back and the ledger write, under load. A worker killed that soon after an acceptance may have died before it
# heard the answer or wrote it down, so the batch's copy sends it again.
HEARD_SECONDS = 5.0
KILL_WINDOW_SECONDS = HEARD_SECONDS
# The receiver and the consumer's log stamp milliseconds on one clock; a log record may round to just before.
CLOCK_SLACK_SECONDS = 0.01
# The delivery queue's visibility timeout as deployed (serverless.yml), when a plan's params do not set it.
DEPLOYED_VISIBILITY_SECONDS = 180.0
# The 4xx answers the consumer tries again (core/channels/base.py's classify_status); any other 4xx is permanent.
RETRIED_4XX = frozenset({408, 425, 429})
# What the integrations of a drill must end as, each of its deliveries.
EXPECTED = {"flaky": "delivered", "outage": "delivered", "rejects": "failed", "broken": "dead"}
# The consumer's reason for a delivery it buried without an attempt of this run (the dead-letter queue took its copy).
BURIED = "moved to the dead-letter queue after"
# The consumer's (the ``deliver`` function's) log file in a local stack's ``logs`` directory.
CONSUMER_LOG = "deliver.log"
# The receiver draws each URL's faults from a generator seeded in its query, so that the first requests of a run meet
# the same faults every time: the short form's first 30 draws give 3 fails, 1 slow answer and 5 resets (a slow answer
# holds its whole batch for the consumer's 10 s timeout, so more of them would only make the short form longer).


@dataclass(frozen=True)
class DrillPlan:
    """One form of the drill."""

    label: str
    notifications: int
    publish_seconds: float
    flaky: str
    outage_seconds: float
    kills: int
    drain_seconds: float
    params: str
    dead_path: bool


# 12 attempts, backoffs of 1 to 2 s (the e2e stack's, tests/e2e/conftest.py). A retry's copy is delayed in whole
# seconds, rounded down, and one arriving less than a second early is sent at once, so its 11 retries take not their
# backoffs but about a poll each (the delivery queue's 1 s batching window): an outage must stay well under that, or a
# delivery that met it from its start may spend its attempts within it (a 15 s outage left 5 to 8 of 30 `dead`; 11
# polls of about 1 s are nearly twice the 6 s outage). One worker is killed mid-batch; its batch comes back when the
# delivery queue's visibility timeout ends, 35 s here (180 s deployed: more than the short form's whole run), still
# longer than an invocation may last (the consumer's 30 s timeout), so that no batch in flight comes back.
SHORT = DrillPlan(
    label="short",
    notifications=30,
    publish_seconds=3.0,
    flaky="fail=0.2&throttle=0.1&slow=0.05&reset=0.1&seed=23",
    outage_seconds=6.0,
    kills=1,
    drain_seconds=75.0,
    params="maxAttempts=12,retryBaseSeconds=1,retryCapSeconds=2,deliveryVisibilityTimeout=35",
    dead_path=True,
)
# Backoff capped at 20 s, so that a 150 s outage takes about 12 of the 25 attempts. No ``broken``: 25 attempts of each
# of its deliveries would keep this machine's three consumer workers busy for minutes (the short form shows ``dead``).
LONG = DrillPlan(
    label="long",
    notifications=150,
    publish_seconds=60.0,
    flaky="fail=0.2&throttle=0.1&slow=0.05&reset=0.05&seed=11",
    outage_seconds=150.0,
    kills=4,
    drain_seconds=900.0,
    params="maxAttempts=25,retryBaseSeconds=1,retryCapSeconds=20",
    dead_path=False,
)


@dataclass(frozen=True)
class QueueDepths:
    """Messages in the delivery queue (visible, in flight or delayed) and in its dead-letter queue."""

    delivery: int
    dead_letters: int


@dataclass(frozen=True)
class DrillTarget:
    """Where the stack under drill listens; how to kill one of its consumer workers, read its queues and read its
    consumer's log records (``None``: no kills, which misses a plan's kills; no queue reads; no log, so that no repeat
    after a clean acceptance can be explained)."""

    api: str
    receiver: str
    api_key: str
    admin_token: str
    kill: Callable[[], Kill | None] | None = None
    queues: Callable[[], QueueDepths] | None = None
    consumer_log: Callable[[], list[dict[str, Any]]] | None = None


@dataclass
class Delivery:
    """One delivery of an accepted notification: its ledger row, what the receiver got of it and what the consumer
    logged of it."""

    notification_id: str
    key: str
    status: str = "unknown"
    reason: str | None = None
    attempts: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    logged: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """The receiver's records of this delivery it took in (a 2xx, answered or not), oldest first."""
        return [record for record in self.records if record["status"] < 300]

    def heard(self) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """Pair each clean acceptance with the consumer's ``delivered`` log record that followed it, or ``None``.

        A consumer writes one ``delivered`` per answer it heard; matched oldest first, within ``HEARD_SECONDS``, so
        that two acceptances and one ``delivered`` leave the second unheard.
        """
        lines = sorted((logged_at(line), index) for index, line in enumerate(self.logged) if _is_delivered(line))
        used: set[int] = set()
        paired: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        for record in self.records:
            if not clean(record):
                continue
            at = arrival(record)
            match = next(
                (
                    index
                    for moment, index in lines
                    if index not in used and at - CLOCK_SLACK_SECONDS <= moment <= at + HEARD_SECONDS
                ),
                None,
            )
            if match is not None:
                used.add(match)
            paired.append((record, self.logged[match] if match is not None else None))
        return paired


def clean(record: dict[str, Any]) -> bool:
    """Tell whether the receiver answered a record 2xx, its answer neither late nor reset."""
    return bool(record["status"] < 300 and record.get("fault") is None)


def permanent(record: dict[str, Any]) -> bool:
    """Tell whether the receiver refused a record for good: a 4xx the consumer does not try again, answered."""
    return bool(400 <= record["status"] < 500 and record["status"] not in RETRIED_4XX and record.get("fault") is None)


def logged_at(line: dict[str, Any]) -> float:
    """Return when the consumer logged a record (Unix time; powertools stamps ``2024-05-01 12:00:00,123+0000``)."""
    stamp = str(line.get("timestamp", "")).replace(",", ".")
    try:
        return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f%z").timestamp()
    except ValueError:
        return 0.0


def _is_delivered(line: dict[str, Any]) -> bool:
    return line.get("message") == "delivered"


# What the consumer says of an attempt that may never have reached the receiver: no connection was made, or the send
# ran out of its time before its request was written (a starved machine).
UNREACHED_REASONS = ("connection failed", "timed out")


def _unreached(delivery: Delivery) -> int:
    """Count the attempts the consumer logged as retried for a failure that may have left the receiver no record."""
    return sum(
        1
        for line in delivery.logged
        if line.get("message") == "delivery will be retried"
        and any(reason in str(line.get("reason", "")) for reason in UNREACHED_REASONS)
    )


def why_lost(delivery: Delivery) -> str | None:
    """Return why a delivery's final status is not backed by what the receiver got, or ``None`` when it is.

    ``delivered`` needs a clean acceptance (an answer the consumer could hear); ``failed`` a permanent refusal at
    the receiver, named in its reason, and no clean acceptance; ``dead`` a receiver record for each of its attempts
    but those the consumer logged as retried for a connection that failed or a send that timed out (or the consumer's
    reason that the dead-letter queue took it), and no clean acceptance.
    """
    if delivery.status not in FINAL:
        return f"not final ({delivery.status})"
    cleanly = [record for record in delivery.records if clean(record)]
    if delivery.status == "delivered":
        return None if cleanly else "delivered, but the receiver answered no attempt of it with a clean 2xx"
    if not delivery.reason:
        return f"{delivery.status} without a reason"
    if cleanly:
        return f"{delivery.status}, but the receiver accepted it cleanly {len(cleanly)} time(s)"
    if delivery.status == "failed":
        refusals = {str(record["status"]) for record in delivery.records if permanent(record)}
        if not any(status in delivery.reason for status in refusals):
            return f"failed, but no permanent refusal at the receiver backs its reason ({sorted(refusals)})"
        return None
    if delivery.reason.startswith(BURIED):
        return None
    if delivery.attempts < 1 or len(delivery.records) + _unreached(delivery) < delivery.attempts:
        return f"dead after {delivery.attempts} attempts, of which the receiver got {len(delivery.records)}"
    return None


@dataclass(frozen=True)
class Dropped:
    """What a receiver that drops repeats by (X-Notification-Id, X-Delivery-Key) makes of the raw records."""

    kept: int
    dropped: int
    delivered_kept: int
    same_bodies: bool
    unnamed: int
    stray: int


@dataclass
class DrillReport:
    """What the drill counted, and the timeline behind its plot."""

    plan: DrillPlan
    integrations: list[str]
    published: int
    accepted: int
    deliveries: list[Delivery]
    records: list[dict[str, Any]]
    kills: list[Kill]
    started: float
    seconds: float
    gaps: int
    refused: Counter[int] = field(default_factory=Counter)
    queues: QueueDepths | None = None
    consumer_logged: bool = False

    def statuses(self) -> Counter[str]:
        """Count the deliveries by final status (``retrying``/``queued``/``unknown`` if not final)."""
        return Counter(delivery.status for delivery in self.deliveries)

    def lost(self) -> list[Delivery]:
        """Deliveries whose final status the receiver does not back (``why_lost``), or not final at all."""
        return [delivery for delivery in self.deliveries if why_lost(delivery) is not None]

    def repeats(self) -> list[tuple[Delivery, dict[str, Any], dict[str, Any], str]]:
        """Return each repeated acceptance: its delivery, the acceptance before it, itself, and its cause.

        The cause is what befell the acceptance before: ``slow``/``reset``, its answer never reached the consumer;
        ``killed``, the consumer never logged hearing it (no ``delivered``), a worker was killed within
        ``KILL_WINDOW_SECONDS`` after it and the delivery was handled again after the kill; ``queue``, the consumer
        heard it and logged ``delivered``, and another invocation handled the delivery again (logging ``delivered``
        for the repeat too when it was clean): the queue handed the message out twice; ``unexplained``, none of
        these (a consumer that sends twice, or goes on after a success, lands here).
        """
        found = []
        for delivery in self.deliveries:
            hearers = {id(record): line for record, line in delivery.heard()}
            accepted = delivery.accepted
            for before, after in pairwise(accepted):
                fault = before.get("fault")
                hearer = hearers.get(id(before))
                if fault in UNKNOWN_OUTCOME and _gave_up_between(delivery, arrival(before), arrival(after)):
                    cause = str(fault)
                elif hearer is None:
                    again = hearers.get(id(after))
                    cause = "killed" if self._killed_after(delivery, before, after, again) else "unexplained"
                elif _received_again(delivery, hearer, after, hearers.get(id(after))):
                    cause = "queue"
                else:
                    cause = "unexplained"
                found.append((delivery, before, after, cause))
        return found

    def _killed_after(
        self, delivery: Delivery, record: dict[str, Any], after: dict[str, Any], after_hearer: dict[str, Any] | None
    ) -> bool:
        """Tell whether a worker died soon after ``record`` was accepted, with the attempt, and the delivery was handled
        again after the kill. When the repeat was heard, the SQS message it was sent from must have had no outcome
        logged from ``record`` until its batch could come back (the visibility timeout after the kill): one logged
        meanwhile shows the sender lived on, and the kill was another's. (An earlier attempt's retry, logged after its
        copy was sent, is another message's.)"""
        at = arrival(record)
        back = _requeue_seconds(self.plan)
        message = after_hearer.get("message_id") if after_hearer is not None else None
        return any(
            0 <= kill.at - at <= KILL_WINDOW_SECONDS
            and any(logged_at(line) > kill.at for line in delivery.logged)
            and (
                message is None
                or not _gave_up_between(
                    delivery, at, min(arrival(after), kill.at + back), delivered_too=True, message_id=message
                )
            )
            for kill in self.kills
        )

    def duplicates(self) -> Counter[str]:
        """Count the repeated acceptances by cause (see ``repeats``)."""
        return Counter(cause for *_, cause in self.repeats())

    def dropped_by_headers(self) -> Dropped:
        """Replay the raw records as a receiver that drops repeats by (X-Notification-Id, X-Delivery-Key) would.

        Of the records it took in (2xx, answered or not), oldest first, the first of each pair is kept and the others
        dropped; each dropped one's raw body is compared with the kept one's. ``delivered_kept`` counts the kept pairs
        the ledger calls ``delivered``, ``unnamed`` the records without both headers, ``stray`` the kept pairs that
        are no delivery of the drill.
        """
        bodies: dict[tuple[str, str], str] = {}
        dropped = unnamed = 0
        same = True
        for record in sorted(self.records, key=lambda record: int(record["id"])):
            if record["status"] >= 300:
                continue
            pair = delivery_of(record)
            if pair is None:
                unnamed += 1
            elif pair in bodies:
                dropped += 1
                same = same and bodies[pair] == record["raw_body_base64"]
            else:
                bodies[pair] = record["raw_body_base64"]
        status = {(delivery.notification_id, delivery.key): delivery.status for delivery in self.deliveries}
        return Dropped(
            kept=len(bodies),
            dropped=dropped,
            delivered_kept=sum(status.get(pair) == "delivered" for pair in bodies),
            same_bodies=same,
            unnamed=unnamed,
            stray=sum(pair not in status for pair in bodies),
        )

    def unknown_only(self) -> list[Delivery]:
        """Deliveries the receiver accepted although the ledger says they failed or died.

        Each must have been accepted only by attempts whose outcome the consumer could not know.
        """
        return [delivery for delivery in self.deliveries if delivery.accepted and delivery.status in {"failed", "dead"}]

    def answers(self) -> Counter[str]:
        """Count the receiver's answers by kind: the status, or the fault for slow answers and resets."""
        return Counter(_answer_kind(record) for record in self.records)

    def misses(self) -> list[str]:
        """Name each integration whose deliveries did not all end as ``EXPECTED`` says, with their statuses."""
        missed = []
        for name in self.integrations:
            counts = Counter(delivery.status for delivery in self.deliveries if delivery.key == name)
            if set(counts) != {EXPECTED[name]}:
                missed.append(f"{name}: {dict(counts)}")
        return missed


# What the consumer logs when an attempt of a delivery ended without its success heard (its retry, its end), and when
# it heard it.
GAVE_UP = frozenset(
    {
        "delivery will be retried",
        "delivery failed permanently",
        "delivery retries exhausted: in the dead-letter queue",
        "delivery kept on its last receive: SQS moves it to the dead-letter queue",
    }
)


def _gave_up_between(
    delivery: Delivery, start: float, end: float, *, delivered_too: bool = False, message_id: str | None = None
) -> bool:
    """Tell whether the consumer logged an attempt of the delivery ending unheard (or, ``delivered_too``, heard)
    from ``start`` to ``end`` (of the SQS message ``message_id`` only, when given): a slow answer or a reset is the
    cause of a repeat only when the consumer gave up on it before the repeat, not when a second send went out."""
    messages = GAVE_UP | {"delivered"} if delivered_too else GAVE_UP
    return any(
        line.get("message") in messages
        and start - CLOCK_SLACK_SECONDS <= logged_at(line) <= end + CLOCK_SLACK_SECONDS
        and (message_id is None or line.get("message_id") == message_id)
        for line in delivery.logged
    )


def _requeue_seconds(plan: DrillPlan) -> float:
    """Return how long a killed worker's batch stays hidden on the delivery queue: its visibility timeout."""
    found = re.search(r"deliveryVisibilityTimeout=(\d+)", plan.params)
    return float(found[1]) if found else DEPLOYED_VISIBILITY_SECONDS


def _received_again(
    delivery: Delivery, hearer: dict[str, Any], after: dict[str, Any], after_hearer: dict[str, Any] | None
) -> bool:
    """Tell whether the consumer's log shows a second receive of a delivery it had already heard delivered.

    The repeat must come from another invocation than the one that heard the first answer, handling the same SQS
    message (two messages of one delivery, a copy sent after the outcome was known, are a consumer sending twice): a
    clean repeat must have been heard (and logged ``delivered``) too, a faulted one must be followed by that
    invocation's log record.
    """
    first, message = hearer.get("function_request_id"), hearer.get("message_id")
    if clean(after):
        return (
            after_hearer is not None
            and after_hearer.get("function_request_id") != first
            and after_hearer.get("message_id") == message
        )
    at = arrival(after)
    return any(
        line.get("function_request_id") != first
        and line.get("message_id") == message
        and logged_at(line) >= at - CLOCK_SLACK_SECONDS
        for line in delivery.logged
    )


def _answer_kind(record: dict[str, Any]) -> str:
    return str(record.get("fault")) if record.get("fault") in UNKNOWN_OUTCOME else str(record["status"])


def _request(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    return _call(method, url, body, headers, timeout=40)


def _integrations(target: DrillTarget, plan: DrillPlan, prefix: str) -> list[dict[str, Any]]:
    urls = {
        "flaky": f"{prefix}-flaky?{plan.flaky}",
        "outage": f"{prefix}-outage?down={plan.outage_seconds:g}",
        "rejects": f"{prefix}-rejects?status=400",
    }
    if plan.dead_path:
        urls["broken"] = f"{prefix}-broken?status=503"
    return [
        {"name": name, "type": "webhook", "target": {"url": f"{target.receiver}{url}"}, "model": {"n": "$n"}}
        for name, url in urls.items()
    ]


def _publish_all(target: DrillTarget, plan: DrillPlan, topic: str, topic_hash: str) -> list[tuple[int, str | None]]:
    """Publish at a steady pace over ``plan.publish_seconds``; return each publish's status and notification id."""
    headers = {"x-api-key": target.api_key, "x-topic-hash-x": topic_hash}
    gap = plan.publish_seconds / max(1, plan.notifications)
    origin = time.monotonic()

    def publish(n: int) -> tuple[int, str | None]:
        time.sleep(max(0.0, origin + n * gap - time.monotonic()))
        status, _, reply = _request(
            "POST", f"{target.api}/v1/notifications/drill/{topic}", {"metadata": {"n": n}}, headers
        )
        return status, reply.get("X-Notification-Id") if status == 200 else None

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(publish, range(plan.notifications)))


# How often the killer looks again for a busy worker (each look waits ``kill_busy``'s patience) before it gives up
# on a kill; the report then holds fewer kills than planned, a missed target.
KILL_TRIES = 3


def _killer(target: DrillTarget, plan: DrillPlan, kills: list[Kill], stop: threading.Event) -> threading.Thread:
    """Kill a busy consumer worker ``plan.kills`` times, spread over the publishing (while batches are in flight)."""

    def run() -> None:
        if target.kill is None:
            return
        spacing = plan.publish_seconds / (plan.kills + 1)
        for _ in range(plan.kills):
            if stop.wait(spacing):
                return
            for _ in range(KILL_TRIES):
                kill = target.kill()
                if kill is not None:
                    kills.append(kill)
                    break

    return threading.Thread(target=run, name="killer", daemon=True)


def _statuses(target: DrillTarget, notification_id: str) -> list[dict[str, Any]] | None:
    status, body, _ = _request(
        "GET", f"{target.api}/v1/notifications/{notification_id}", None, {"x-api-key": target.api_key}
    )
    if status != 200 or not body:
        return None
    deliveries: list[dict[str, Any]] = body["deliveries"]
    return deliveries


def _looks_done(records: list[dict[str, Any]], pairs: set[tuple[str, str]]) -> bool:
    """Tell whether the receiver saw each of these deliveries end: an acceptance, or a permanent refusal."""
    ended = {delivery_of(record) for record in records if record["status"] < 300 or record["status"] == 400}
    return pairs <= ended


def _create_topic(target: DrillTarget, topic: str, integrations: list[dict[str, Any]]) -> str:
    status, body, _ = _request(
        "PUT",
        f"{target.api}/v1/channels/drill/topics/{topic}",
        {"integrations": integrations},
        {"Authorization": f"Bearer {target.admin_token}"},
    )
    if status != 201:
        raise RuntimeError(f"creating the drill topic failed: {status} {body}")
    return str(body["topic_hash"])


def _read_statuses(
    target: DrillTarget, deliveries: dict[tuple[str, str], Delivery], deadline: float, say: Callable[[str], None]
) -> None:
    """Read every notification's status until each of its deliveries is final, or the deadline."""
    pending = {notification_id for notification_id, _ in deliveries}
    while pending:  # read once at least, whatever the deadline: the counts are of this read
        for notification_id in sorted(pending):
            rows = _statuses(target, notification_id) or []
            for row in rows:
                delivery = deliveries.get((notification_id, row["delivery_key"]))
                if delivery is not None:
                    delivery.status, delivery.reason = row["status"], row.get("last_error")
                    delivery.attempts = int(row.get("attempts") or 0)
            if rows and all(row["status"] in FINAL for row in rows):
                pending.discard(notification_id)
        if not pending or time.monotonic() >= deadline:
            return
        say(f"{len(pending)} notifications not final yet")
        time.sleep(2.0)


def _drain(target: DrillTarget, deadline: float, say: Callable[[str], None]) -> QueueDepths | None:
    """Wait until the delivery queue is empty: a killed worker's batch may be hidden there, its deliveries final."""
    if target.queues is None:
        return None
    say("waiting for the delivery queue to drain")
    while (depths := target.queues()).delivery and time.monotonic() < deadline:
        time.sleep(2.0)
    return depths


def run_drill(target: DrillTarget, plan: DrillPlan, say: Callable[[str], None] = lambda _: None) -> DrillReport:
    """Run the drill against a running stack; return its counts. ``say`` hears what it is doing."""
    run = uuid.uuid4().hex[:8]
    prefix = f"/webhook/drill-{run}"
    integrations = _integrations(target, plan, prefix)
    topic_hash = _create_topic(target, f"drill-{run}", integrations)
    names = [integration["name"] for integration in integrations]
    started = time.time()
    deadline = time.monotonic() + plan.publish_seconds + plan.drain_seconds
    report = DrillReport(plan, names, plan.notifications, 0, [], [], [], started, 0.0, 0)
    stop = threading.Event()
    with following(target.receiver, prefix) as log:
        killer = _killer(target, plan, report.kills, stop)
        killer.start()
        say(f"publishing {plan.notifications} notifications over {plan.publish_seconds:g} s")
        published = _publish_all(target, plan, f"drill-{run}", topic_hash)
        ids = [notification_id for _, notification_id in published if notification_id]
        report.accepted = len(ids)
        report.refused.update(status for status, notification_id in published if not notification_id)
        # ``broken`` never ends at the receiver: its end is the ledger's ``dead``.
        expected = {(notification_id, name) for notification_id in ids for name in names if name != "broken"}
        say(f"{len(ids)} accepted; waiting for the receiver to see every delivery end")
        while not _looks_done(log.records(), expected) and time.monotonic() < deadline - plan.drain_seconds / 3:
            time.sleep(1.0)
        killer.join()
        say("reading every notification's status until each delivery is final")
        deliveries = {(i, name): Delivery(i, name) for i in ids for name in names}
        _read_statuses(target, deliveries, deadline, say)
        report.queues = _drain(target, deadline, say)
        if report.queues is not None:
            # A killed worker's batch, hidden on the queue when every row first read final, may have changed a row
            # when it came back: the counts are of the rows after the drain.
            _read_statuses(target, deliveries, deadline, say)
        stop.set()
        time.sleep(1.0)  # the receiver log's last reads
    report.records = log.records()
    report.gaps = log.gaps
    report.seconds = time.time() - started
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in report.records:
        pair = delivery_of(record)
        if pair is not None:
            by_pair[pair].append(record)
    logged: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    if target.consumer_log is not None:
        report.consumer_logged = True
        for line in target.consumer_log():
            logged[(str(line.get("notification_id")), str(line.get("delivery_key")))].append(line)
    # A webhook integration has one recipient: its delivery key is its name.
    for pair, delivery in deliveries.items():
        delivery.records = by_pair.get(pair, [])
        delivery.logged = logged.get(pair, [])
    report.deliveries = list(deliveries.values())
    return report


def function_log(path: Path) -> Callable[[], list[dict[str, Any]]]:
    """Return a reader of a function's log file (``<state>/logs/<function>.log``): its JSON records that name a
    notification, oldest first."""

    def read() -> list[dict[str, Any]]:
        if not path.is_file():
            return []
        found = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("notification_id"):
                found.append(record)
        return found

    return read


def _not_final(statuses: Counter[str]) -> int:
    return sum(count for status, count in statuses.items() if status not in FINAL)


def _table_counts(reports: list[DrillReport]) -> Table:
    rows = []
    for report in reports:
        statuses = report.statuses()
        rows.append(
            [
                report.plan.label,
                str(report.accepted),
                f"{len(report.deliveries)} ({len(report.integrations)} per notification)",
                str(statuses["delivered"]),
                str(statuses["failed"]),
                str(statuses["dead"]),
                str(_not_final(statuses)),
                str(len(report.lost())),
                str(sum(report.duplicates().values())),
                f"{report.queues.delivery} / {report.queues.dead_letters}" if report.queues else "-",
            ]
        )
    return Table(
        "Counts after the queues drained (from `GET /v1/notifications/{id}` and the receiver's records)",
        [
            "form",
            "accepted",
            "deliveries",
            "delivered",
            "failed",
            "dead",
            "not final",
            "lost",
            "duplicates",
            "left in the queue / in the DLQ",
        ],
        rows,
    )


def _table_integrations(reports: list[DrillReport]) -> Table:
    rows = []
    for report in reports:
        for name in report.integrations:
            deliveries = [delivery for delivery in report.deliveries if delivery.key == name]
            counts = Counter(delivery.status for delivery in deliveries)
            reasons = Counter(_reason(delivery.reason) for delivery in deliveries if delivery.status != "delivered")
            reason = "; ".join(f"{text} ({count})" for text, count in reasons.most_common(2)) or "-"
            rows.append(
                [
                    report.plan.label,
                    name,
                    str(counts["delivered"]),
                    str(counts["failed"]),
                    str(counts["dead"]),
                    str(_not_final(counts)),
                    reason,
                ]
            )
    return Table(
        "By integration, with the reason the status route gives",
        ["form", "integration", "delivered", "failed", "dead", "not final", "reason"],
        rows,
    )


def _reason(text: str | None) -> str:
    return re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z?", "<time>", text or "no reason")[:80]


def _table_duplicates(reports: list[DrillReport]) -> Table:
    rows = []
    for report in reports:
        duplicates = report.duplicates()
        dropped = report.dropped_by_headers()
        rows.append(
            [
                report.plan.label,
                str(duplicates["slow"]),
                str(duplicates["reset"]),
                str(duplicates["killed"]),
                str(duplicates["queue"]),
                str(duplicates["unexplained"]),
                f"{dropped.kept} ({dropped.dropped} dropped)",
                str(dropped.delivered_kept),
                str(len(report.unknown_only())),
                "yes" if dropped.same_bodies else "no",
            ]
        )
    return Table(
        "Duplicates at the receiver (one (X-Notification-Id, X-Delivery-Key) accepted again), by what befell the "
        "acceptance before each",
        [
            "form",
            "after a slow answer",
            "after a reset",
            "after a worker kill",
            "received twice from the queue (two invocations logged it)",
            "unexplained",
            "kept after dropping by id + key (raw records)",
            "of which delivered",
            "accepted but failed/dead",
            "repeats carry the same body",
        ],
        rows,
    )


def _table_answers(reports: list[tuple[DrillReport, str]]) -> Table:
    rows = []
    for report, stack_output in reports:
        answers = report.answers()
        cut = re.findall(r"← (\d+) SQS record\(s\): 0 done, \d+ failed .*Runtime\.ExitError", stack_output)
        rows.append(
            [
                report.plan.label,
                str(answers["200"]),
                str(answers["500"]),
                str(answers["429"]),
                str(answers["503"]),
                str(answers["400"]),
                str(answers["slow"]),
                str(answers["reset"]),
                str(len(report.kills)),
                f"{len(cut)} ({sum(int(n) for n in cut)} messages)",
            ]
        )
    return Table(
        "What the receiver answered, and the consumer workers killed",
        ["form", "200", "500", "429", "503", "400", "slow (200 too late)", "reset", "workers killed", "batches cut"],
        rows,
    )


def summary(report: DrillReport) -> list[str]:
    """The drill's counts in a few lines."""
    statuses = report.statuses()
    duplicates = report.duplicates()
    dropped = report.dropped_by_headers()
    lost = [f"{d.notification_id}/{d.key}: {why_lost(d)}" for d in report.lost()]
    return [
        f"accepted {report.accepted}/{report.published} notifications, {len(report.deliveries)} deliveries: "
        f"delivered {statuses['delivered']}, failed {statuses['failed']}, dead {statuses['dead']}, "
        f"lost {len(lost)}{(' (' + '; '.join(lost[:5]) + ')') if lost else ''}",
        f"duplicates {sum(duplicates.values())} ({dict(duplicates) or 'none'}); dropping repeats by "
        f"(X-Notification-Id, X-Delivery-Key) keeps {dropped.kept} and drops {dropped.dropped}, "
        f"{dropped.delivered_kept} of those kept delivered, same bodies: {'yes' if dropped.same_bodies else 'no'}",
        f"receiver answers {dict(report.answers())}; workers killed {len(report.kills)}/{report.plan.kills}; "
        f"receiver records missed {report.gaps}; consumer log read: {'yes' if report.consumer_logged else 'no'}; "
        f"{report.seconds:.0f} s",
        f"messages left in the delivery queue / in its dead-letter queue: "
        f"{f'{report.queues.delivery} / {report.queues.dead_letters}' if report.queues else 'not read'}",
    ]


def plot(report: DrillReport) -> str | None:
    """Draw delivered over time above the receiver's answers per second, the outage's 503s apart from broken's."""
    origin = report.started
    delivered = [arrival(d.accepted[0]) - origin for d in report.deliveries if d.accepted and d.status == "delivered"]
    answers: dict[str, list[float]] = defaultdict(list)
    for record in report.records:
        kind = _answer_kind(record)
        if kind == "503":
            kind = "503 broken" if record["path"].endswith("-broken") else "503 outage"
        answers[kind].append(arrival(record) - origin)
    outage_start = min((arrival(r) for r in report.records if "-outage" in r["path"]), default=origin) - origin
    return plots.delivered_over_time(
        f"drill-{report.plan.label}.png",
        f"Fault drill, {report.plan.label} form: {report.accepted} notifications x {len(report.integrations)} webhooks",
        [plots.Curve("delivered (first acceptance)", delivered)],
        spans=[("outage (503)", outage_start, outage_start + report.plan.outage_seconds)],
        marks=[("consumer worker killed", kill.at - origin) for kill in report.kills],
        answers=dict(sorted(answers.items())),
    )


def _plan_note(report: DrillReport) -> str:
    plan = report.plan
    broken = ", `broken` 503 forever" if plan.dead_path else ""
    kills = f"; {len(report.kills)} consumer workers SIGKILLed in the middle of a batch" if plan.kills else ""
    return (
        f"{plan.label.capitalize()} form: stack params `{plan.params}`; `flaky` is `?{plan.flaky}`, `outage` "
        f"answers 503 for {plan.outage_seconds:g} s from its first request, `rejects` answers 400{broken}. "
        f"{plan.notifications} notifications published over {plan.publish_seconds:g} s{kills}; "
        f"{report.seconds:.0f} s until every delivery was final."
    )


def _repeat_notes(report: DrillReport, stack_output: str) -> list[str]:
    """Name each repeat that is neither after a slow answer nor a reset, with what the consumer's log says of it."""
    notes = []
    for delivery, before, after, cause in report.repeats():
        if cause in UNKNOWN_OUTCOME:
            continue
        pair = f"{delivery.notification_id}/{delivery.key}"
        logged = len(re.findall(rf"{re.escape(pair)}\s+delivered\b", stack_output))
        notes.append(
            f"{report.plan.label.capitalize()} form, {cause} repeat: `{pair}` accepted at {before['time']} and again "
            f"{arrival(after) - arrival(before):.2f} s later; the consumer logged `delivered` {logged} times for it."
        )
    return notes


def targets(report: DrillReport) -> list[Target]:
    """The drill's targets for one form: nothing lost, no repeat without a cause, every planned kill made, each
    integration's deliveries all as ``EXPECTED``, no receiver record missed, the queues empty."""
    label = f"drill ({report.plan.label})"
    duplicates = report.duplicates()
    dropped = report.dropped_by_headers()
    found = [
        Target(f"{label}: lost", str(len(report.lost())), "0", not report.lost()),
        Target(
            f"{label}: duplicates with no cause found",
            str(duplicates["unexplained"]),
            "0",
            not duplicates["unexplained"],
        ),
        Target(
            f"{label}: consumer workers killed mid-batch",
            str(len(report.kills)),
            str(report.plan.kills),
            len(report.kills) == report.plan.kills,
        ),
        Target(f"{label}: receiver records missed", str(report.gaps), "0", report.gaps == 0),
        Target(
            f"{label}: requests without X-Notification-Id and X-Delivery-Key, or of no delivery",
            str(dropped.unnamed + dropped.stray),
            "0",
            dropped.unnamed + dropped.stray == 0,
        ),
    ]
    for name in report.integrations:
        counts = Counter(delivery.status for delivery in report.deliveries if delivery.key == name)
        expected = EXPECTED[name]
        found.append(
            Target(
                f"{label}: `{name}` deliveries {expected}",
                f"{counts[expected]}/{sum(counts.values())}",
                f"all {report.accepted}",
                counts[expected] == sum(counts.values()) == report.accepted,
            )
        )
    if report.queues is not None:
        left = report.queues.delivery
        found.append(Target(f"{label}: messages left in the delivery queue", str(left), "0", left == 0))
    refused = sum(report.refused.values())
    found.append(
        Target(
            f"{label}: publishes refused",
            f"{refused} of {report.published}",
            "0",
            refused == 0 and report.accepted == report.published,
        )
    )
    # What a receiver dropping repeats by (X-Notification-Id, X-Delivery-Key) keeps: one acceptance per delivery the
    # ledger calls delivered, and one per failed or dead delivery accepted only by attempts of unknown outcome; each
    # repeat it drops the same body as the one it kept.
    unknown_only = report.unknown_only()
    ok_unknown = all(
        record.get("fault") in UNKNOWN_OUTCOME for delivery in unknown_only for record in delivery.accepted
    )
    kept_right = dropped.kept == dropped.delivered_kept + len(unknown_only) and ok_unknown
    found += [
        Target(
            f"{label}: repeats the receiver drops by X-Notification-Id and X-Delivery-Key with another body",
            "0" if dropped.same_bodies else "some",
            "0",
            dropped.same_bodies,
        ),
        Target(
            f"{label}: acceptances kept after dropping repeats, against deliveries delivered (+ unknown outcomes)",
            f"{dropped.kept} / {dropped.delivered_kept} + {len(unknown_only)}",
            "equal",
            kept_right,
        ),
    ]
    return found


def add_figures(piece: Fragment, reports: list[tuple[DrillReport, str]]) -> None:
    """Add the figures of the drill's forms (each with its stack's terminal output) to the report's fragment."""
    drilled = [report for report, _ in reports]
    piece.tables += [
        _table_counts(drilled),
        _table_integrations(drilled),
        _table_duplicates(drilled),
        _table_answers(reports),
    ]
    for report in drilled:
        piece.targets += targets(report)
        piece.notes.append(_plan_note(report))
    for report, output in reports:
        piece.notes += _repeat_notes(report, output)
    piece.notes.append(
        "A slow answer comes after the consumer's HTTP read timeout (10 s), and a reset drops the connection after "
        "the request was read: the receiver took both in, the consumer saw a failure and tried again, so a repeat "
        "follows. A worker killed after a send and before its ledger write leaves the same doubt. A receiver drops "
        "the repeat by the (X-Notification-Id, X-Delivery-Key) pair it already processed."
    )
    if any(report.kills for report in drilled):
        piece.notes.append(
            "A killed worker's batch stays on the queue until its visibility timeout ends (180 s, the deployed "
            "value, in the long form; 35 s in the short); the deliveries it had recorded as delivered are skipped "
            "when it comes back, the others are sent again."
        )
    for report in drilled:
        path = plot(report)
        if path:
            piece.plots.append(path)


def queue_reader(aws_port: int) -> Callable[[], QueueDepths]:
    """Read the depths of a local stack's delivery queue and dead-letter queue from its moto on ``aws_port``."""
    import boto3

    sqs = boto3.client(
        "sqs",
        endpoint_url=f"http://127.0.0.1:{aws_port}",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - moto takes any key
    )
    urls = sqs.list_queues(QueueNamePrefix="notify-local-deliveries")["QueueUrls"]
    delivery = next(url for url in urls if not url.endswith("-dlq"))
    dead = next(url for url in urls if url.endswith("-dlq"))
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]

    def depths() -> QueueDepths:
        queued = sqs.get_queue_attributes(QueueUrl=delivery, AttributeNames=names)["Attributes"]
        buried = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=names[:1])["Attributes"]
        return QueueDepths(sum(int(queued.get(name, 0)) for name in names), int(buried[names[0]]))

    return depths


def main() -> int:
    """Run the drill's forms, each on a stack of its own; print their counts and save them for the report.

    Return 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short form only (about a minute)")
    args = parser.parse_args()
    piece = Fragment("drill", "Fault drill", "python -m bench.drill" + (" --quick" if args.quick else ""), args.quick)
    reports = []
    for plan in [SHORT] if args.quick else [LONG, SHORT]:
        print(f"Fault drill, {plan.label} form (params {plan.params})")
        with LocalStack(plan.params) as stack:
            target = DrillTarget(
                stack.api,
                stack.receiver,
                API_KEY,
                ADMIN_TOKEN,
                kill=lambda: kill_busy(stack.pid),
                queues=queue_reader(stack.aws_port),
                consumer_log=function_log(stack.logs_dir / CONSUMER_LOG),
            )
            report = run_drill(target, plan, say=lambda line: print(f"  … {line}", flush=True))
            output = stack.output()
        for line in summary(report):
            print(f"  {line}")
        reports.append((report, output))
    add_figures(piece, reports)
    piece.save()
    missed = [aim for aim in piece.targets if aim.met is False]
    for aim in missed:
        print(f"  missed: {aim.figure}: {aim.measured} (target {aim.target})")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
