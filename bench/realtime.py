"""Browser notifications through the local stack: publish-to-browser latency, and one publish to 1,000 connections.

Starts ``python -m infra.local`` on free ports (``bench.local_stack.LocalStack``), creates a topic with one ``browser``
integration (target ``{}``: everyone hearing the topic), gets tokens from ``POST /v1/realtime/tokens`` and connects
WebSocket clients to the URL the route answers.

- latency: one client; 100 publishes one after another, each timed from the POST until its frame arrives (median,
  p99), with the deployed params (the delivery queue's 1 s batching window) and with the window at 0;
- fan-out: 1,000 clients on one topic; one publish, timed until the last client has its frame, and the Management
  API calls it took (the local Management API's counts, ``/_stats``).

``--quick``: 20 publishes, 200 clients, the window at 0 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.local_stack import ADMIN_TOKEN, API_KEY, LocalStack, _call
from bench.results import Fragment, Table

PUBLISHES = 100
CONNECTIONS = 1000


def _topic(stack: LocalStack, topic: str) -> str:
    integration = {"name": "browser", "type": "browser", "target": {}, "model": "$n"}
    status, body, _ = _call(
        "PUT",
        f"{stack.api}/v1/channels/bench/topics/{topic}",
        {"integrations": [integration]},
        {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    if status != 201:
        raise RuntimeError(f"creating the topic failed: {status} {body}")
    return str(body["topic_hash"])


def _token(stack: LocalStack, user: str, topic: str) -> dict[str, Any]:
    status, body, _ = _call(
        "POST",
        f"{stack.api}/v1/realtime/tokens",
        {"user_id": user, "topics": [f"bench/{topic}"]},
        {"x-api-key": API_KEY},
    )
    if status != 201:
        raise RuntimeError(f"the token route answered {status} {body}")
    result: dict[str, Any] = body
    return result


def _publish(stack: LocalStack, topic: str, topic_hash: str, n: int) -> None:
    headers = {"x-api-key": API_KEY, "x-topic-hash-x": topic_hash}
    status, body, _ = _call("POST", f"{stack.api}/v1/notifications/bench/{topic}", {"metadata": {"n": str(n)}}, headers)
    if status != 200:
        raise RuntimeError(f"publish failed: {status} {body}")


def _management_stats(stack: LocalStack) -> dict[str, int]:
    found = re.search(r"Management API (http://127\.0\.0\.1:\d+)/", stack.output())
    if not found:
        raise RuntimeError("the stack's banner names no Management API")
    status, body, _ = _call("GET", f"{found.group(1)}/_stats")
    if status != 200:
        raise RuntimeError(f"/_stats answered {status}")
    calls: dict[str, int] = body["calls"]
    return calls


def _posts(calls: dict[str, int]) -> int:
    return sum(count for key, count in calls.items() if key.startswith("post "))


async def _latencies(stack: LocalStack, publishes: int) -> list[float]:
    topic_hash = _topic(stack, "latency")
    token = _token(stack, "bench-latency", "latency")
    loop = asyncio.get_running_loop()
    async with connect(f"{token['url']}?token={token['token']}") as socket:
        latencies = []
        for n in range(publishes):
            started = time.monotonic()
            await loop.run_in_executor(None, _publish, stack, "latency", topic_hash, n)
            while True:
                frame = json.loads(await asyncio.wait_for(socket.recv(), 60))
                if frame.get("text") == str(n):
                    break
            latencies.append(time.monotonic() - started)
    return latencies


async def _fan_out(stack: LocalStack, connections: int) -> tuple[float, float, dict[str, int]]:
    topic_hash = _topic(stack, "fanout")
    with ThreadPoolExecutor(max_workers=8) as pool:
        tokens = list(pool.map(lambda index: _token(stack, f"bench-{index}", "fanout"), range(connections)))
    gate = asyncio.Semaphore(50)

    async def open_one(token: dict[str, Any]) -> ClientConnection:
        async with gate:
            return await connect(f"{token['url']}?token={token['token']}")

    started = time.monotonic()
    sockets: Sequence[ClientConnection] = await asyncio.gather(*(open_one(token) for token in tokens))
    connected = time.monotonic() - started
    before = _management_stats(stack)
    started = time.monotonic()
    await asyncio.get_running_loop().run_in_executor(None, _publish, stack, "fanout", topic_hash, 0)
    await asyncio.gather(*(asyncio.wait_for(socket.recv(), 120) for socket in sockets))
    took = time.monotonic() - started
    # A post is counted once its frame is sent: read the counts when the last one is in (or after 2 s).
    deadline = time.monotonic() + 2.0
    after = _management_stats(stack)
    while _posts(after) - _posts(before) < connections and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        after = _management_stats(stack)
    await asyncio.gather(*(socket.close() for socket in sockets))
    calls = {key: after.get(key, 0) - before.get(key, 0) for key in after if after.get(key, 0) != before.get(key, 0)}
    return connected, took, calls


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its figures and save them for the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 publishes, 200 clients, the window at 0 only")
    args = parser.parse_args(argv)
    publishes = 20 if args.quick else PUBLISHES
    clients = 200 if args.quick else CONNECTIONS
    fragment = Fragment(
        "realtime",
        "Realtime: publish to browser, and one publish to many connections",
        "python -m bench.realtime" + (" --quick" if args.quick else ""),
        args.quick,
    )
    configs = [("batching window 0", "consumerBatchWindow=0")]
    if not args.quick:
        configs.insert(0, ("deployed params (batching window 1 s)", ""))
    print(f"Realtime benchmark (python -m infra.local; {publishes} publishes one by one; {clients} connections)")
    latency_rows: list[list[str]] = []
    fan_out_row: list[str] = []
    for index, (label, params) in enumerate(configs):
        with LocalStack(params) as stack:
            ms = [value * 1000 for value in asyncio.run(_latencies(stack, publishes))]
            colds = stack.cold_starts()
            cold = f"publish {colds.get('publish', 0)}, deliver {colds.get('deliver', 0)}"
            print(f"  {label}")
            median, p99 = statistics.median(ms), _percentile(ms, 0.99)
            print(f"    publish to browser:   median {median:6.0f} ms   p99 {p99:6.0f} ms   max {max(ms):6.0f} ms")
            print(f"    cold starts during the publishes: {cold}")
            latency_rows.append([label, f"{median:.0f} ms", f"{p99:.0f} ms", f"{max(ms):.0f} ms", cold])
            if index == len(configs) - 1:
                connected, took, calls = asyncio.run(_fan_out(stack, clients))
                shown = ", ".join(f"{key}: {count}" for key, count in sorted(calls.items())) or "none"
                print(f"    {clients} connections of one topic: connected in {connected:.1f} s")
                print(f"    one publish to all of them: {took * 1000:.0f} ms; Management API calls: {shown}")
                fan_out_row = [label, str(clients), f"{connected:.1f} s", f"{took * 1000:.0f} ms", shown]
    fragment.tables += [
        Table(
            f"Publish to browser: {publishes} publishes one after another, each timed from the POST to its frame",
            ["stack", "median", "p99", "max", "cold starts"],
            latency_rows,
        ),
        Table(
            "One publish to every connection of one topic",
            ["stack", "connections", "all connected in", "publish to the last frame", "Management API calls"],
            [fan_out_row],
        ),
    ]
    fragment.notes.append(
        "Through `python -m infra.local` on this machine: the publish route, the producer, the delivery queue, the "
        "consumer and the local WebSocket API with its Management API, all answering on loopback. The delivery "
        "queue's batching window (1 s as deployed) is most of the first row's latency. The p99 and the max are cold "
        "starts, counted from the functions' logs (`cold_start`): the first publish starts the publish and deliver "
        "workers, and a second deliver worker starts (about 0.6 to 1 s here) when a poller takes the next message "
        "while the warm worker is still finishing the last invocation (its ledger write). Lambda does the same when "
        "concurrency grows. In a run by hand, the one pause (663 ms) ended as the deliver log's second cold start "
        "began. The median is the steady figure."
    )
    fragment.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
