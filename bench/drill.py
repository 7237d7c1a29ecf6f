"""Fault drill: the local receiver fails on purpose, consumer workers die mid-batch, and nothing is lost.

One topic of webhook integrations on the local receiver, each scripted by its URL's query (infra/local/peers.py):
``flaky`` answers a share of 500s, of 429s with ``Retry-After``, of answers later than the consumer's HTTP timeout and
of connection resets; ``outage`` answers 503 for a while from its first request; ``rejects`` answers 400 (a
permanent failure: ``failed``); in the short form, ``broken`` answers 503 forever (its retries are spent: ``dead``).
Notifications are published at a steady pace; the long form also SIGKILLs consumer workers in the middle of a batch
(the batch is received again after the queue's 180 s visibility timeout).

After the queues drain, every delivery of every accepted notification must be ``delivered``, or ``failed``/``dead``
with its reason, read from ``GET /v1/notifications/{id}``: lost counts those that are not, and the deliveries the
ledger calls ``delivered`` that the receiver never accepted. Duplicates are the receiver's repeated acceptances of
one (``X-Notification-Id``, ``X-Delivery-Key``); each must follow an acceptance whose answer never reached the
consumer (a slow answer or a reset, or a worker killed after the send), and dropping repeats by that pair leaves one
acceptance per delivery, with the same body.

Run: ``python -m bench.drill`` (the long form, 150 notifications over 60 s, a 150 s outage and 4 workers killed,
about 6 minutes; then the short form) or ``--quick`` (the short form only, which tests/e2e/test_drill.py runs in
``make test``: 30 notifications, a 6 s outage, no kills, about a minute). Each form starts a local stack of its own,
with shortened retry params; plots in ``bench/plots/drill-<form>.png``.
"""

from __future__ import annotations

import argparse
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench import plots
from bench.local_stack import ADMIN_TOKEN, API_KEY, LocalStack, _call
from bench.receiver import arrival, delivery_of, following
from bench.results import Fragment, Table, Target
from bench.workers import Kill, kill_busy

FINAL = frozenset({"delivered", "failed", "dead"})
# Answers whose outcome the consumer cannot know: the receiver took the request in, the answer never came back.
UNKNOWN_OUTCOME = frozenset({"slow", "reset"})
# How long after a plain acceptance a killed worker may still have been sending that batch (the consumer's timeout).
KILL_WINDOW_SECONDS = 30.0
# Two acceptances this close, the first a plain 200 the consumer heard, are one message received twice at once: SQS
# delivers at least once, and moto's ReceiveMessage can hand one message to two pollers (no lock); no retry is that
# quick after a success, since there is none.
QUEUE_TWICE_SECONDS = 3.0
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


# The e2e stack's params (tests/e2e/conftest.py): 12 attempts, backoffs of 0.5 to 2 s. A retry's copy is delayed
# in whole seconds, rounded down, and one arriving less than a second early is sent at once, so its 11 retries take
# not their backoffs but about a poll each (the delivery queue's 1 s batching window): an outage must stay well under
# that, or a delivery that met it from its start may spend its attempts within it (a 15 s outage left 5 to 8 of 30
# `dead`; 11 polls of about 1 s are nearly twice the 6 s outage).
SHORT = DrillPlan(
    label="short",
    notifications=30,
    publish_seconds=3.0,
    flaky="fail=0.2&throttle=0.1&slow=0.05&reset=0.1&seed=23",
    outage_seconds=6.0,
    kills=0,
    drain_seconds=70.0,
    params="maxAttempts=12,retryBaseSeconds=1,retryCapSeconds=2",
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
    """Where the stack under drill listens; how to kill one of its consumer workers and read its queues (``None``:
    no kills, no queue reads)."""

    api: str
    receiver: str
    api_key: str
    admin_token: str
    kill: Callable[[], Kill | None] | None = None
    queues: Callable[[], QueueDepths] | None = None


@dataclass
class Delivery:
    """One delivery of an accepted notification: its ledger status and reason, and what the receiver got of it."""

    notification_id: str
    key: str
    status: str = "unknown"
    reason: str | None = None
    accepted: list[dict[str, Any]] = field(default_factory=list)


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

    def statuses(self) -> Counter[str]:
        """Count the deliveries by final status (``retrying``/``queued``/``unknown`` if not final)."""
        return Counter(delivery.status for delivery in self.deliveries)

    def lost(self) -> list[Delivery]:
        """Deliveries not final, final without a reason, or ``delivered`` without the receiver having accepted them."""
        return [
            delivery
            for delivery in self.deliveries
            if delivery.status not in FINAL
            or (delivery.status in {"failed", "dead"} and not delivery.reason)
            or (delivery.status == "delivered" and not delivery.accepted)
        ]

    def repeats(self) -> list[tuple[Delivery, dict[str, Any], dict[str, Any], str]]:
        """Return each repeated acceptance: its delivery, the acceptance before it, itself, and its cause.

        The cause is what befell the acceptance before: ``slow``/``reset``, its answer never reached the consumer;
        ``killed``, a worker was killed within ``KILL_WINDOW_SECONDS`` after it, before the ledger could say so;
        ``queue``, the repeat came within ``QUEUE_TWICE_SECONDS`` (the queue handed the message out twice);
        ``unexplained``, none of these.
        """
        found = []
        for delivery in self.deliveries:
            for before, after in zip(delivery.accepted, delivery.accepted[1:], strict=False):
                fault = before.get("fault")
                if fault in UNKNOWN_OUTCOME:
                    cause = str(fault)
                elif any(0 <= kill.at - arrival(before) <= KILL_WINDOW_SECONDS for kill in self.kills):
                    cause = "killed"
                elif arrival(after) - arrival(before) <= QUEUE_TWICE_SECONDS:
                    cause = "queue"
                else:
                    cause = "unexplained"
                found.append((delivery, before, after, cause))
        return found

    def duplicates(self) -> Counter[str]:
        """Count the repeated acceptances by cause (see ``repeats``)."""
        return Counter(cause for *_, cause in self.repeats())

    def dropped_by_headers(self) -> tuple[int, int, bool]:
        """Drop repeats as a receiver would, by (notification id, delivery key).

        Return the acceptances kept, the deliveries the ledger calls ``delivered`` among them, and whether every
        dropped repeat carried the same body as the one kept.
        """
        kept = [delivery for delivery in self.deliveries if delivery.accepted]
        same_bodies = all(len({record["raw_body_base64"] for record in delivery.accepted}) == 1 for delivery in kept)
        return len(kept), sum(delivery.status == "delivered" for delivery in kept), same_bodies

    def unknown_only(self) -> list[Delivery]:
        """Deliveries the receiver accepted although the ledger says they failed or died.

        Each must have been accepted only by attempts whose outcome the consumer could not know.
        """
        return [delivery for delivery in self.deliveries if delivery.accepted and delivery.status in {"failed", "dead"}]

    def answers(self) -> Counter[str]:
        """Count the receiver's answers by kind: the status, or the fault for slow answers and resets."""
        return Counter(_answer_kind(record) for record in self.records)


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


def _killer(target: DrillTarget, plan: DrillPlan, kills: list[Kill], stop: threading.Event) -> threading.Thread:
    """Kill a busy consumer worker ``plan.kills`` times, spread over the publishing (while batches are in flight)."""

    def run() -> None:
        if target.kill is None:
            return
        spacing = plan.publish_seconds / (plan.kills + 1)
        for _ in range(plan.kills):
            if stop.wait(spacing):
                return
            kill = target.kill()
            if kill is not None:
                kills.append(kill)

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
    while pending and time.monotonic() < deadline:
        for notification_id in sorted(pending):
            rows = _statuses(target, notification_id) or []
            for row in rows:
                delivery = deliveries.get((notification_id, row["delivery_key"]))
                if delivery is not None:
                    delivery.status, delivery.reason = row["status"], row.get("last_error")
            if rows and all(row["status"] in FINAL for row in rows):
                pending.discard(notification_id)
        if pending:
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
        stop.set()
        time.sleep(1.0)  # the receiver log's last reads
    report.records = log.records()
    report.gaps = log.gaps
    report.seconds = time.time() - started
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in report.records:
        pair = delivery_of(record)
        if pair is not None and record["status"] < 300:
            by_pair[pair].append(record)
    # A webhook integration has one recipient: its delivery key is its name.
    for pair, delivery in deliveries.items():
        delivery.accepted = by_pair.get(pair, [])
    report.deliveries = list(deliveries.values())
    return report


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
        kept, delivered_kept, same = report.dropped_by_headers()
        rows.append(
            [
                report.plan.label,
                str(duplicates["slow"]),
                str(duplicates["reset"]),
                str(duplicates["killed"]),
                str(duplicates["queue"]),
                str(duplicates["unexplained"]),
                str(kept),
                str(delivered_kept),
                str(len(report.unknown_only())),
                "yes" if same else "no",
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
            "received twice from the queue",
            "unexplained",
            "kept after dropping by id + key",
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
    kept, delivered_kept, same = report.dropped_by_headers()
    return [
        f"accepted {report.accepted}/{report.published} notifications, {len(report.deliveries)} deliveries: "
        f"delivered {statuses['delivered']}, failed {statuses['failed']}, dead {statuses['dead']}, "
        f"lost {len(report.lost())}",
        f"duplicates {sum(duplicates.values())} ({dict(duplicates) or 'none'}); dropping repeats by "
        f"(X-Notification-Id, X-Delivery-Key) keeps {kept}, {delivered_kept} of them delivered, "
        f"same bodies: {'yes' if same else 'no'}",
        f"receiver answers {dict(report.answers())}; workers killed {len(report.kills)}; "
        f"receiver records missed {report.gaps}; {report.seconds:.0f} s",
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
        duplicates = report.duplicates()
        piece.targets += [
            Target(f"drill ({report.plan.label}): lost", str(len(report.lost())), "0", not report.lost()),
            Target(
                f"drill ({report.plan.label}): duplicates with no cause found",
                str(duplicates["unexplained"]),
                "0",
                duplicates["unexplained"] == 0,
            ),
        ]
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
            "A killed worker's batch stays on the queue until its visibility timeout (180 s) ends; the deliveries it "
            "had recorded as delivered are skipped when it comes back, the others are sent again."
        )
    for report in drilled:
        path = plot(report)
        if path:
            piece.plots.append(path)


def queue_reader(stack: LocalStack) -> Callable[[], QueueDepths]:
    """Read the depths of the stack's delivery queue and dead-letter queue from its moto."""
    import boto3

    sqs = boto3.client(
        "sqs",
        endpoint_url=f"http://127.0.0.1:{stack.aws_port}",
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


def main() -> None:
    """Run the drill's forms, each on a stack of its own; print their counts and save them for the report."""
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
                queues=queue_reader(stack),
            )
            report = run_drill(target, plan, say=lambda line: print(f"  … {line}", flush=True))
            output = stack.output()
        for line in summary(report):
            print(f"  {line}")
        reports.append((report, output))
    add_figures(piece, reports)
    piece.save()


if __name__ == "__main__":
    main()
