"""Load on the local stack: publishers in parallel for a fixed time, a topic of three webhooks on the local receiver.

Starts ``python -m infra.local`` with the deployed params (as ``make run`` does) on free ports, creates a topic of three
webhook integrations on the local receiver and warms the workers. Then ``--publishers`` threads publish as fast as
the stack answers, each on its own keep-alive connection, for ``--seconds`` (at most ``MAX_PUBLISHES`` in all), and
the benchmark waits until the receiver got every delivery (at most ``DRAIN_SECONDS``). Loopback only.

Prints and saves: publishes accepted per second, publish latency p50/p99 (the API's answer), publish-to-delivered
p50/p99 at the receiver (it stamps each request's arrival; matched by ``X-Notification-Id`` and ``X-Delivery-Key``),
and errors; plots the latency distributions and throughput over time (``bench/plots/load.png``).

Run: ``python -m bench.load`` (6 publishers, 60 s), ``--quick`` (15 s).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench import plots
from bench.local_stack import ADMIN_TOKEN, API_KEY, LocalStack, _call
from bench.receiver import ReceiverLog, arrival, delivery_of, following
from bench.results import Fragment, Table, Target, milliseconds, percentile

PUBLISHERS = 6
SECONDS = {False: 60.0, True: 15.0}
MAX_PUBLISHES = 20_000
INTEGRATIONS = ("hook-a", "hook-b", "hook-c")
DRAIN_SECONDS = 180.0
WARM_UP = 6


@dataclass(frozen=True)
class Publish:
    """One publish: when it started (Unix time), how long the API took, its status and notification id."""

    started: float
    seconds: float
    status: int
    notification_id: str | None


@dataclass
class LoadRun:
    """What the publishers did and what the receiver got."""

    publishers: int
    seconds: float
    publishes: list[Publish] = field(default_factory=list)
    exceptions: Counter[str] = field(default_factory=Counter)
    records: list[dict[str, Any]] = field(default_factory=list)
    gaps: int = 0
    drained_after: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Publisher(threading.Thread):
    """Publishes one notification after another on one keep-alive connection until the deadline or the bound."""

    def __init__(self, stack: LocalStack, path: str, topic_hash: str, run: LoadRun, tickets: Any, deadline: float):
        super().__init__(daemon=True)
        self._port = stack.api_port
        self._path = path
        self._headers = {"x-api-key": API_KEY, "x-topic-hash-x": topic_hash, "Content-Type": "application/json"}
        self._run = run
        self._tickets = tickets
        self._deadline = deadline

    def run(self) -> None:
        """Publish until the time is up or ``MAX_PUBLISHES`` were sent by all publishers together."""
        connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
        for ticket in self._tickets:
            if ticket >= MAX_PUBLISHES or time.monotonic() >= self._deadline:
                break
            body = json.dumps({"metadata": {"n": ticket}}).encode()
            started, clock = time.time(), time.perf_counter()
            try:
                connection.request("POST", self._path, body, self._headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                with self._run.lock:
                    self._run.exceptions[type(exc).__name__] += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
                continue
            took = time.perf_counter() - clock
            self._run.publishes.append(Publish(started, took, response.status, response.getheader("X-Notification-Id")))
        connection.close()


def _topic(stack: LocalStack, name: str) -> str:
    integrations = [
        {
            "name": key,
            "type": "webhook",
            "target": {"url": f"{stack.receiver}/webhook/{name}-{key}"},
            "model": {"n": "$n"},
        }
        for key in INTEGRATIONS
    ]
    status, body, _ = _call(
        "PUT",
        f"{stack.api}/v1/channels/bench/topics/{name}",
        {"integrations": integrations},
        {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    if status != 201:
        raise RuntimeError(f"creating the topic failed: {status} {body}")
    topic_hash: str = body["topic_hash"]
    return topic_hash


def _delivered(records: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """Return the first arrival of each delivery the receiver accepted."""
    first: dict[tuple[str, str], float] = {}
    for record in records:
        pair = delivery_of(record)
        if pair is not None and record["status"] < 300:
            first.setdefault(pair, arrival(record))
    return first


def _complete(first: dict[tuple[str, str], float]) -> list[float]:
    """Return when each notification had all its deliveries received (Unix time)."""
    last: dict[str, list[float]] = {}
    for (notification_id, _), at in first.items():
        last.setdefault(notification_id, []).append(at)
    return [max(times) for times in last.values() if len(times) == len(INTEGRATIONS)]


def _wait_delivered(log: ReceiverLog, expected: int, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if len(_delivered(log.records())) >= expected:
            break
        time.sleep(0.5)
    return time.monotonic() - started


def run_load(stack: LocalStack, publishers: int, seconds: float) -> LoadRun:
    """Warm the stack up, then load it; return what happened."""
    run = LoadRun(publishers, seconds)
    warm_hash = _topic(stack, "load-warm-up")
    for n in range(WARM_UP):
        _call("POST", f"{stack.api}/v1/notifications/bench/load-warm-up", {"metadata": {"n": n}}, _headers(warm_hash))
    topic_hash = _topic(stack, "load")
    with following(stack.receiver, "/webhook/load-hook") as log:
        tickets = itertools.count()
        deadline = time.monotonic() + seconds
        threads = [
            Publisher(stack, "/v1/notifications/bench/load", topic_hash, run, tickets, deadline)
            for _ in range(publishers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        accepted = sum(publish.status == 200 for publish in run.publishes)
        run.drained_after = _wait_delivered(log, accepted * len(INTEGRATIONS), DRAIN_SECONDS)
    run.records = log.records()
    run.gaps = log.gaps
    return run


def _headers(topic_hash: str) -> dict[str, str]:
    return {"x-api-key": API_KEY, "x-topic-hash-x": topic_hash}


def report(run: LoadRun, fragment: Fragment) -> None:
    """Print the figures and add them to the report's fragment."""
    accepted = [publish for publish in run.publishes if publish.status == 200]
    refused = Counter(publish.status for publish in run.publishes if publish.status != 200)
    first = _delivered(run.records)
    started_by_id = {publish.notification_id: publish.started for publish in accepted}
    to_delivered = [at - started_by_id[pair[0]] for pair, at in first.items() if pair[0] in started_by_id]
    expected = len(accepted) * len(INTEGRATIONS)
    missing = expected - len(to_delivered)
    receiver_errors = sum(1 for record in run.records if record["status"] >= 300)
    publish_seconds = [publish.seconds for publish in accepted]
    span = (max(p.started + p.seconds for p in accepted) - min(p.started for p in accepted)) if accepted else 0.0
    rate = len(accepted) / span if span else 0.0
    arrivals = sorted(first.values())
    received_rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
    errors = sum(refused.values()) + sum(run.exceptions.values()) + missing + receiver_errors
    p50, p99 = percentile(to_delivered, 0.5), percentile(to_delivered, 0.99)

    print(f"Load on the local stack: {run.publishers} publishers for {run.seconds:.0f} s, a topic of 3 webhooks")
    print(f"  publishes accepted:      {len(accepted)} in {span:.1f} s = {rate:.1f}/s")
    print(f"  deliveries received:     {received_rate:.1f}/s (needed: {rate * len(INTEGRATIONS):.1f}/s)")
    print(
        f"  publish latency:         p50 {milliseconds(percentile(publish_seconds, 0.5))}"
        f"   p99 {milliseconds(percentile(publish_seconds, 0.99))}"
    )
    print(
        f"  publish to delivered:    p50 {milliseconds(p50)}   p99 {milliseconds(p99)}   ({len(to_delivered)} received)"
    )
    print(
        f"  errors:                  {errors} (refused {dict(refused) or 0}, client {dict(run.exceptions) or 0}, "
        f"not received {missing}, receiver non-2xx {receiver_errors}); receiver records missed: {run.gaps}"
    )
    print(f"  the receiver had every delivery {run.drained_after:.1f} s after the publishers stopped")

    fragment.tables.append(
        Table(
            f"{run.publishers} publishers for {run.seconds:.0f} s, one keep-alive connection each; a topic of "
            "3 webhook integrations on the local receiver; deployed params",
            [
                "publishes accepted",
                "accepted/s",
                "deliveries/s at the receiver",
                "publish p50",
                "publish p99",
                "publish→delivered p50",
                "publish→delivered p99",
                "deliveries",
                "errors",
            ],
            [
                [
                    str(len(accepted)),
                    f"{rate:.1f}",
                    f"{received_rate:.1f}",
                    milliseconds(percentile(publish_seconds, 0.5)),
                    milliseconds(percentile(publish_seconds, 0.99)),
                    milliseconds(p50),
                    milliseconds(p99),
                    str(len(to_delivered)),
                    str(errors),
                ]
            ],
        )
    )
    fragment.tables.append(
        Table(
            "Errors",
            ["publishes refused (non-200)", "client errors", "deliveries not received", "receiver non-2xx"],
            [[str(sum(refused.values())), str(sum(run.exceptions.values())), str(missing), str(receiver_errors)]],
        )
    )
    fragment.targets.append(
        Target("load: errors (publishes refused, deliveries missing)", str(errors), "0", errors == 0)
    )
    fragment.notes.append(
        f"Deliveries reached the receiver at {received_rate:.1f}/s while {rate * len(INTEGRATIONS):.1f}/s were "
        f"published; the receiver had every delivery {run.drained_after:.1f} s after the publishers stopped. "
        "Publishers, the stack (API gateway, three workers per function, moto, PostgreSQL) and the receiver share "
        "this machine's CPUs, so the figures are the local stack's, not Lambda's."
    )
    if accepted:
        origin = min(publish.started for publish in accepted)
        plot = plots.latency_distribution(
            "load.png",
            f"Load: {run.publishers} publishers, {len(accepted)} publishes, 3 webhooks each",
            {"publish (API answer)": publish_seconds, "publish to delivered (receiver)": to_delivered},
            {
                "publishes accepted": [p.started + p.seconds - origin for p in accepted],
                "notifications with all 3 deliveries received": [at - origin for at in _complete(first)],
            },
        )
        if plot:
            fragment.plots.append(plot)


def main() -> None:
    """Run the load, print its figures and save them for the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 s instead of 60 s")
    parser.add_argument("--publishers", type=int, default=PUBLISHERS)
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else SECONDS[args.quick]
    fragment = Fragment(
        "load", "Load on the local stack", "python -m bench.load" + (" --quick" if args.quick else ""), args.quick
    )
    with LocalStack("") as stack:
        run = run_load(stack, max(1, args.publishers), min(seconds, 600.0))
    report(run, fragment)
    fragment.save()


if __name__ == "__main__":
    main()
