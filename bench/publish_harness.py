"""Warm publishes at one topic size, in-process against moto: the harness bench/intake.py runs on this tree and on the
seed's (the repository as its first commits left it), so that both producers meet the same harness.

Run as a script from the root of the tree to measure (its ``core``, ``api``, ``producer`` and ``tests`` packages are
imported, so it uses only what both trees have); prints one JSON object: the size, each publish's milliseconds and the
CPU milliseconds moto spent answering that publish's calls (in-process, under the GIL the handler's threads share).
``--round-trip-ms``: each AWS call first waits that long, the GIL released, as a call to a remote AWS waits for the
network; calls made at once wait together.
Imports nothing of ``bench``: the seed's tree has its own.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any


def drain(sqs: Any, queue_url: str) -> None:
    """Delete every message of a queue (PurgeQueue is allowed once a minute)."""
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages"):
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)


def webhook_integrations(size: int) -> list[dict[str, Any]]:
    """Return a topic's ``size`` webhook integrations, each rendering the metadata field ``m``."""
    return [
        {"name": f"hook-{i}", "type": "webhook", "target": {"url": f"https://hooks.example/{i}"}, "model": "$m"}
        for i in range(size)
    ]


@contextlib.contextmanager
def emulator_cpu(round_trip_seconds: float = 0.0) -> Iterator[list[float]]:
    """Yield a list whose one number grows by the CPU seconds moto spends answering the calls made meanwhile, in any
    thread; each call first sleeps ``round_trip_seconds`` (not counted)."""
    from moto.core.botocore_stubber import BotocoreStubber

    spent = [0.0]
    lock = threading.Lock()
    process_request = BotocoreStubber.process_request

    def timed(self: BotocoreStubber, request: Any) -> Any:
        if round_trip_seconds:
            time.sleep(round_trip_seconds)
        started = time.thread_time()
        try:
            return process_request(self, request)
        finally:
            with lock:
                spent[0] += time.thread_time() - started

    BotocoreStubber.process_request = timed  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        BotocoreStubber.process_request = process_request  # type: ignore[method-assign]


def publish_latencies(size: int, publishes: int, round_trip_ms: float = 0.0) -> tuple[list[float], list[float]]:
    """Create a topic of ``size`` webhook integrations through the admin API and time ``publishes`` warm publishes to
    it (one uncounted publish first: the topic read and the clients), the delivery queue emptied between them; return
    each publish's milliseconds and the CPU milliseconds moto spent in it."""
    from moto import mock_aws

    sys.path.insert(0, os.getcwd())
    from api import handler as api_handler
    from core import clients
    from producer import handler as publish_handler
    from tests.fakes.lambda_context import FakeLambdaContext
    from tests.support.aws import create_resources
    from tests.support.events import api_event, response_json

    with mock_aws():
        resources = create_resources()
        os.environ.update(resources.env)
        clients.reset()
        context = FakeLambdaContext(function_name="notify-bench-publish")
        integrations = webhook_integrations(size)
        with contextlib.redirect_stdout(io.StringIO()):
            created = api_handler.handler(
                api_event(
                    "PUT",
                    "/v1/channels/{channel}/topics/{topic}",
                    {"channel": "bench", "topic": "t"},
                    {"integrations": integrations},
                ),
                context,
            )
        if created["statusCode"] not in (200, 201):
            raise RuntimeError(f"topic not created: {created['statusCode']}")
        topic_hash = response_json(created)["topic_hash"]

        def publish() -> None:
            event = api_event(
                "POST",
                "/v1/notifications/{channel}/{topic}",
                {"channel": "bench", "topic": "t"},
                {"metadata": {"m": "hello"}},
                {"x-topic-hash-x": topic_hash},
            )
            with contextlib.redirect_stdout(io.StringIO()):
                response = publish_handler.handler(event, context)
            if response["statusCode"] != 200:
                raise RuntimeError(f"publish failed: {response['statusCode']}")

        publish()
        latencies = []
        emulator = []
        for _ in range(publishes):
            # moto's SQS scans every queued message on each send, which real SQS does not: keep the queue empty.
            drain(resources.sqs, resources.delivery_queue_url)
            with emulator_cpu(round_trip_ms / 1000) as spent:
                started = time.perf_counter()
                publish()
                latencies.append((time.perf_counter() - started) * 1000)
            emulator.append(spent[0] * 1000)
    return latencies, emulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=50)
    parser.add_argument("--publishes", type=int, default=40)
    parser.add_argument("--round-trip-ms", type=float, default=0.0)
    args = parser.parse_args()
    latencies, emulator = publish_latencies(args.size, args.publishes, args.round_trip_ms)
    print(json.dumps({"size": args.size, "latencies_ms": latencies, "emulator_cpu_ms": emulator}))


if __name__ == "__main__":
    main()
