"""Burst and outage drills through the whole local stack: nothing lost under a rate limit or an endpoint outage.

Starts ``python -m infra.local`` (as ``make run`` does) with the deployed params, and warms its workers with a few
notifications first. Burst: a topic with one webhook
integration whose ``rate_per_second`` is the receiver's limit, on a local receiver URL that accepts that many requests
per second and answers 429 (``Retry-After: 1``) beyond; 100 notifications are published at once, then it waits until
every one is final. It prints delivered, dead, the receiver's 429 answers against all its requests, and the time from
the first publish to the last delivery beside the floor N / rate. Outage (``--outage``): a receiver that answers 503
for a few minutes, notifications published during it, all of which must end ``delivered`` after it.

Run: ``python -m bench.burst`` (5/s and 1/s, about three minutes), ``--quick`` (5/s only), ``--outage`` (adds the
outage drill: 150 s of 503). Plots delivered over time beside the floor (``bench/plots/burst.png``).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bench import plots
from bench.local_stack import ADMIN_TOKEN, API_KEY, LocalStack, _call
from bench.receiver import ID_HEADER
from bench.results import Fragment, Table, Target

NOTIFICATIONS = 100
FINAL = {"delivered", "failed", "dead"}


@dataclass(frozen=True)
class DrillResult:
    """What one drill measured."""

    label: str
    published: int
    delivered: int
    dead: int
    failed: int
    requests: int
    answered_429: int
    seconds: float
    span: float
    floor: float | None
    rate: float | None = None
    accepted_at: tuple[float, ...] = ()
    received: int = 0
    repeated: int = 0


def _topic(stack: LocalStack, name: str, url: str, rate: float | None) -> str:
    integration: dict[str, Any] = {"name": "hook", "type": "webhook", "target": {"url": url}, "model": "n $n"}
    if rate is not None:
        integration["rate_per_second"] = rate
    status, body, _ = _call(
        "PUT",
        f"{stack.api}/v1/channels/bench/topics/{name}",
        {"integrations": [integration]},
        {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    if status != 201:
        raise RuntimeError(f"creating the topic failed: {status} {body}")
    topic_hash: str = body["topic_hash"]
    return topic_hash


def _publish_all(stack: LocalStack, name: str, topic_hash: str, count: int) -> list[str]:
    headers = {"x-api-key": API_KEY, "x-topic-hash-x": topic_hash}

    def publish(n: int) -> str:
        status, body, reply = _call(
            "POST", f"{stack.api}/v1/notifications/bench/{name}", {"metadata": {"n": n}}, headers
        )
        if status != 200:
            raise RuntimeError(f"publish failed: {status} {body}")
        return str(reply["X-Notification-Id"])

    with ThreadPoolExecutor(max_workers=10) as pool:
        return list(pool.map(publish, range(count)))


def _wait_final(stack: LocalStack, ids: list[str], path: str, timeout: float) -> dict[str, str]:
    """Wait until the receiver accepted one request per notification, then read every status until all are final.

    Reading the statuses of all notifications in a loop would load the stack (and this 2-core machine) enough to
    disturb what it measures, so the receiver's records are watched first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(record["status"] < 300 for record in _records(stack, path)) >= len(ids):
            break
        time.sleep(1.0)
    headers = {"x-api-key": API_KEY}
    statuses: dict[str, str] = {}
    while len(statuses) < len(ids) and time.monotonic() < deadline:
        for notification_id in ids:
            if notification_id in statuses:
                continue
            _, body, _ = _call("GET", f"{stack.api}/v1/notifications/{notification_id}", headers=headers)
            status = body["deliveries"][0]["status"] if body and body.get("deliveries") else "queued"
            if status in FINAL:
                statuses[notification_id] = status
        time.sleep(1.0)
    return statuses


def _records(stack: LocalStack, path: str) -> list[dict[str, Any]]:
    _, body, _ = _call("GET", f"http://127.0.0.1:{stack.receiver_port}/_records")
    return [record for record in body["records"] if record["path"] == path]


def _acceptances(records: list[dict[str, Any]], ids: list[str]) -> Counter[str]:
    """Count the receiver's clean 2xx answers (no scripted fault) per notification id of ``ids``."""
    wanted = set(ids)
    counts: Counter[str] = Counter()
    for record in records:
        headers = {str(name).lower(): value for name, value in (record.get("headers") or {}).items()}
        notification_id = headers.get(ID_HEADER.lower())
        if record["status"] < 300 and record.get("fault") is None and notification_id in wanted:
            counts[notification_id] += 1
    return counts


def _drill(
    stack: LocalStack, label: str, name: str, query: str, rate: float | None, count: int, timeout: float
) -> DrillResult:
    path = f"/webhook/{name}"
    topic_hash = _topic(stack, name, f"http://127.0.0.1:{stack.receiver_port}{path}?{query}", rate)
    started = time.time()
    ids = _publish_all(stack, name, topic_hash, count)
    statuses = _wait_final(stack, ids, path, timeout)
    records = _records(stack, path)
    # The receiver stamps each request it gets; the drill lasts until the last one it accepted.
    accepted = [datetime.fromisoformat(record["time"]).timestamp() for record in records if record["status"] < 300]
    seconds = (max(accepted) if accepted else time.time()) - started
    span = max(accepted) - min(accepted) if accepted else 0.0
    values = list(statuses.values())
    acceptances = _acceptances(records, ids)
    return DrillResult(
        label=label,
        published=count,
        delivered=values.count("delivered"),
        dead=values.count("dead"),
        failed=values.count("failed"),
        requests=len(records),
        answered_429=sum(1 for record in records if record["status"] == 429),
        seconds=seconds,
        span=span,
        floor=count / rate if rate else None,
        rate=rate,
        accepted_at=tuple(sorted(moment - started for moment in accepted)),
        # A notification counts as received only by the receiver's own records, whatever the ledger says.
        received=sum(
            1 for notification_id, status in statuses.items() if status == "delivered" and acceptances[notification_id]
        ),
        repeated=sum(count - 1 for count in acceptances.values() if count > 1),
    )


def _warm_up(stack: LocalStack) -> None:
    """Publish a few notifications and wait for them, so the drills do not measure the workers' cold starts."""
    _drill(stack, "warm-up", "warm-up", "", None, 5, 60)


def _print(result: DrillResult) -> None:
    share = result.answered_429 / result.requests * 100 if result.requests else 0.0
    lost = result.published - result.delivered - result.dead - result.failed
    print(f"  {result.label}")
    print(
        f"    delivered {result.delivered}/{result.published}   dead {result.dead}   failed {result.failed}   "
        f"not final {lost}   delivered and accepted at the receiver {result.received}   repeated {result.repeated}"
    )
    print(
        f"    receiver: {result.requests} requests, {result.answered_429} answered 429 ({share:.1f} %; target <= 5 %)"
    )
    if result.floor:
        print(
            f"    first publish to last delivery: {result.seconds:.1f} s   floor N/rate {result.floor:.1f} s   "
            f"ratio {result.seconds / result.floor:.2f} (target <= 1.3)"
        )
        print(
            f"    first to last delivery:         {result.span:.1f} s   "
            f"ratio {result.span / result.floor:.2f} (slots are spaced 10 % wider than the rate)"
        )
    else:
        print(f"    first publish to last delivery: {result.seconds:.1f} s")


def _row(result: DrillResult) -> list[str]:
    share = result.answered_429 / result.requests * 100 if result.requests else 0.0
    not_final = result.published - result.delivered - result.dead - result.failed
    ratio = f"{result.seconds / result.floor:.2f}" if result.floor else "-"
    return [
        result.label,
        str(result.published),
        str(result.delivered),
        str(result.dead),
        str(result.failed),
        str(not_final),
        f"{result.requests} ({result.answered_429} = {share:.1f} %)",
        f"{result.seconds:.1f} s",
        f"{result.floor:.1f} s" if result.floor else "-",
        ratio,
    ]


def _targets(result: DrillResult) -> list[Target]:
    targets = [
        Target(
            f"burst ({result.label}): delivered (ledger) and accepted (receiver, per notification id)",
            f"{result.received}/{result.published} ({result.delivered} delivered in the ledger)",
            "all",
            result.received == result.delivered == result.published,
        ),
        # The receiver accepting a notification twice is a duplicate its users would see: counted, never passed over.
        Target(
            f"burst ({result.label}): notifications accepted more than once by the receiver",
            str(result.repeated),
            "0",
            result.repeated == 0,
        ),
    ]
    if result.floor:
        ratio = result.seconds / result.floor
        # No request at the receiver is no share at all: not a met 0 %.
        share = result.answered_429 / result.requests * 100 if result.requests else None
        targets += [
            Target(
                f"burst ({result.label}): 429 answers",
                f"{share:.1f} %" if share is not None else "- (no request reached the receiver)",
                "<= 5 %",
                share is not None and share <= 5,
            ),
            Target(f"burst ({result.label}): time / floor N/rate", f"{ratio:.2f}", "<= 1.3", ratio <= 1.3),
        ]
    return targets


def main() -> None:
    """Run the drills, print their figures and save them for the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 5/s burst only")
    parser.add_argument("--outage", action="store_true", help="add the 150 s outage drill")
    args = parser.parse_args()
    fragment = Fragment(
        "burst",
        "Bursts against a rate-limited receiver",
        "python -m bench.burst" + (" --quick" if args.quick else "") + (" --outage" if args.outage else ""),
        args.quick,
    )
    print(f"Burst drills through the local stack ({NOTIFICATIONS} notifications published at once)")
    rates = [5.0] if args.quick else [5.0, 1.0]
    results = []
    with LocalStack("") as stack:
        _warm_up(stack)
        for rate in rates:
            name = f"burst-{int(rate)}"
            result = _drill(
                stack,
                f"receiver allows {rate:g}/s",
                name,
                f"rate={rate:g}",
                rate,
                NOTIFICATIONS,
                NOTIFICATIONS / rate * 3,
            )
            _print(result)
            results.append(result)
        if args.outage:
            result = _drill(stack, "receiver down for 150 s (503), 5 notifications", "outage", "down=150", None, 5, 900)
            _print(result)
            results.append(result)
    fragment.tables.append(
        Table(
            f"{NOTIFICATIONS} notifications published at once to a webhook whose `rate_per_second` is the receiver's "
            "limit (the receiver answers 429 with `Retry-After: 1` beyond it); deployed params",
            [
                "drill",
                "published",
                "delivered",
                "dead",
                "failed",
                "not final",
                "receiver requests (429)",
                "first publish to last delivery",
                "floor N/rate",
                "ratio",
            ],
            [_row(result) for result in results],
        )
    )
    for result in results:
        fragment.targets += _targets(result)
    paced = [result for result in results if result.rate]
    path = plots.delivered_over_time(
        "burst.png",
        f"Bursts of {NOTIFICATIONS} notifications against a rate-limited receiver",
        [plots.Curve(result.label, result.accepted_at) for result in paced],
        floors=[(f"{result.rate:g}/s (the receiver's limit)", result.rate or 0.0) for result in paced],
    )
    if path:
        fragment.plots.append(path)
    fragment.save()


if __name__ == "__main__":
    main()
