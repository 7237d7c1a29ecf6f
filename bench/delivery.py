"""Delivery benchmark: a batch of 10 webhook deliveries to a local sink that answers after 100 ms.

The sink runs in a process of its own. Measured in one run, each the median of several rounds after a warm-up:
- the consumer: the ``deliver`` handler on an SQS event of 10 webhook messages with AWS in other processes, as a
  Lambda function has it: DynamoDB in dynalite (bench/package.json, installed by ``make bench``), SQS in moto's server;
- the same handler in-process against moto (as the earlier runs measured it), and the CPU time moto itself spent
  answering its calls;
- sequential: the same webhook channel sending the 10 one after another (what a one-at-a-time consumer costs);
- Apprise: ``Apprise.notify`` to 10 ``json://`` URLs on the same sink (Apprise installed by ``make bench`` only).

Targets, on the consumer with AWS in other processes (the in-process one when dynalite is missing): within 1.25x the
floor (the sink's 100 ms), at least 5x faster than sequential and 3x faster than Apprise. ``--quick``: 3 rounds."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.environment import use_bench_environment
from bench.local_stack import free_ports
from bench.publish_harness import emulator_cpu
from bench.results import Fragment, Table, Target
from infra.deploy.motoserver import moto_server, stop_process

BATCH = 10
ROOT = Path(__file__).resolve().parent.parent
DYNALITE_CLI = ROOT / "bench" / "node_modules" / "dynalite" / "cli.js"
ROUNDS = 7
SINK_DELAY_SECONDS = 0.1

use_bench_environment(ALLOW_PRIVATE_TARGETS="true")


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle waits for the client's delayed ACK (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(SINK_DELAY_SECONDS)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""


def serve_sink() -> None:
    """Serve the sink on a free loopback port, print its URL, and stop when standard input closes (the parent's
    ``running_sink``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()
    server.server_close()


@contextlib.contextmanager
def running_sink() -> Iterator[str]:
    """Run the 100 ms sink on loopback in a process of its own and yield its base URL; stopped by its PID after.

    Its own process, as a receiver is: in this one, its threads would take the GIL from the sender being measured.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", "from bench.delivery import serve_sink; serve_sink()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError("the sink did not start")
        yield url
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            stop_process(process)


def median_seconds(run: Callable[[Any], None], prepare: Callable[[], Any], rounds: int = ROUNDS) -> float:
    """Return the median wall time of ``run(prepare())`` over ``rounds`` after one warm-up; ``prepare`` is untimed."""
    times = []
    for round_index in range(rounds + 1):
        prepared = prepare()
        started = time.perf_counter()
        run(prepared)
        if round_index:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def webhook_message(sink: str, index: int) -> dict[str, Any]:
    """Return a delivery message of a webhook integration posting to the sink."""
    from core.times import utc_now

    return {
        "v": 2,
        "notification_id": str(uuid.uuid4()),
        "delivery_key": f"hook-{index}",
        "channel": "bench",
        "topic": "delivery",
        "created_at": utc_now(),
        "integration": {"name": f"hook-{index}", "type": "webhook", "target": {"url": f"{sink}/hook/{index}"}},
        "content": {"data": {"order": index, "status": "shipped"}},
    }


@contextlib.contextmanager
def running_dynalite() -> Iterator[str | None]:
    """Yield the URL of a dynalite (bench/package.json, a DynamoDB of its own process, in memory) on a free loopback
    port, stopped by its PID after; ``None`` when it or node is missing (``make bench`` installs it)."""
    cli = DYNALITE_CLI
    node = shutil.which("node")
    if node is None or not cli.exists():
        yield None
        return
    [port] = free_ports(1)
    process = subprocess.Popen(
        [node, str(cli), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("dynalite did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


def _ledger_table_at(endpoint: str, table: str) -> None:
    """Create the ledger's table in the DynamoDB at ``endpoint`` (without its TTL: dynalite has no UpdateTimeToLive)."""
    import boto3

    from tests.support.aws import LEDGER_KEYS, create_table

    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint)
    create_table(dynamodb, table, LEDGER_KEYS, None)
    dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})


def _timed_batches(sink: str, rounds: int, aws: Any, around: Callable[[], Any]) -> float:
    """Return the median wall time of the deliver handler on SQS events of 10 webhook messages sent to the sink and
    received from ``aws``'s delivery queue (their ledger record written first, untimed); ``around()`` is a context
    entered about each handler call."""
    from consumer.handler import handler
    from core import clients
    from core.ledger import Delivery, NotificationRecord
    from tests.fakes.lambda_context import FakeLambdaContext
    from tests.integration.consumer.flow import sqs_event

    def prepare() -> dict[str, Any]:
        for index in range(BATCH):
            message = webhook_message(sink, index)
            clients.get_ledger().record_notification(
                NotificationRecord(
                    notification_id=message["notification_id"],
                    source="publish",
                    channel="bench",
                    topic="delivery",
                    created_at=message["created_at"],
                    caller=None,
                    delivery_count=1,
                    deliveries=(Delivery(key=f"hook-{index}", integration=f"hook-{index}", type="webhook"),),
                )
            )
            aws.sqs.send_message(QueueUrl=aws.delivery_queue_url, MessageBody=json.dumps(message))
        received: list[dict[str, Any]] = []
        while len(received) < BATCH:
            received += aws.sqs.receive_message(
                QueueUrl=aws.delivery_queue_url, MaxNumberOfMessages=BATCH - len(received), AttributeNames=["All"]
            ).get("Messages", [])
        return sqs_event(received)

    def deliver(event: dict[str, Any]) -> None:
        with contextlib.redirect_stdout(io.StringIO()), around():
            result = handler(event, FakeLambdaContext())
        assert result["batchItemFailures"] == [], result

    return median_seconds(deliver, prepare, rounds)


def consumer_seconds(sink: str, rounds: int = ROUNDS) -> tuple[float, float]:
    """Time the deliver handler in-process against moto; return the median wall time and the median CPU time moto
    spent in those rounds answering the handler's calls."""
    from moto import mock_aws

    from core import clients
    from infra.local.moto_dynamodb import serialize_writes
    from tests.support.aws import create_resources

    serialize_writes()
    with mock_aws():
        aws = create_resources()
        os.environ.update(aws.env)
        clients.reset()
        spent_in_rounds: list[float] = []

        @contextlib.contextmanager
        def counted() -> Iterator[None]:
            with emulator_cpu() as spent:
                yield
            spent_in_rounds.append(spent[0])

        seconds = _timed_batches(sink, rounds, aws, counted)
    clients.reset()
    # The warm-up round is not timed: its emulator time is left out too.
    return seconds, statistics.median(spent_in_rounds[1:])


def remote_consumer_seconds(sink: str, dynamodb: str, rounds: int = ROUNDS) -> float:
    """Time the deliver handler with AWS in other processes, as a Lambda function has it: DynamoDB (the ledger) in
    dynalite at ``dynamodb``, SQS and the rest in moto's server; return the median wall time."""
    from core import clients
    from tests.support.aws import create_resources

    with moto_server() as moto, contextlib.ExitStack() as restore:
        restore.callback(clients.reset)  # undone last: after the variables go, the clients that read them
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
            restore.callback(os.environ.pop, name, None)
        os.environ["AWS_ENDPOINT_URL"] = moto
        aws = create_resources()
        os.environ.update(aws.env)
        _ledger_table_at(dynamodb, aws.env["DELIVERIES_TABLE"])
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb
        clients.reset()
        return _timed_batches(sink, rounds, aws, contextlib.nullcontext)


def sequential_seconds(sink: str, rounds: int = ROUNDS) -> float:
    """Time the webhook channel sending the 10 messages one after another on the pooled session."""
    from core import clients
    from core.channels import ChannelResources
    from core.channels.webhook import WebhookChannel
    from core.models import Content

    clients.reset()
    resources = ChannelResources(http=clients.get_http_session(), aws_client=clients.get_client, telegram_api_base="")
    channel = WebhookChannel(resources)

    def send_all(_: None) -> None:
        for index in range(BATCH):
            message = webhook_message(sink, index)
            content = Content.model_validate(message["content"])
            target = message["integration"]["target"]
            channel.send(
                content,
                target,
                None,
                notification_id=message["notification_id"],
                delivery_key=message["integration"]["name"],
            )

    return median_seconds(send_all, lambda: None, rounds)


def apprise_seconds(sink: str, rounds: int = ROUNDS) -> tuple[str, float] | None:
    """Time Apprise notifying 10 ``json://`` URLs on the sink; ``None`` when Apprise is not installed."""
    try:
        import apprise
    except ImportError:
        return None
    notifier = apprise.Apprise()
    for index in range(BATCH):
        notifier.add(f"json://{sink.removeprefix('http://')}/hook/{index}")

    def notify(_: None) -> None:
        assert notifier.notify(body="order shipped", title="bench")

    return str(apprise.__version__), median_seconds(notify, lambda: None, rounds)


def main() -> None:
    """Run the measurements in one process, print the figures and save them for the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    args = parser.parse_args()
    rounds = 3 if args.quick else ROUNDS
    fragment = Fragment(
        "delivery",
        "Delivery: a batch of 10 webhooks to a 100 ms sink",
        "python -m bench.delivery" + (" --quick" if args.quick else ""),
        args.quick,
    )
    with running_sink() as sink:
        # In-process first: the suite's boto3 session (tests/support/aws.py) must be made after moto is loaded.
        in_process, emulator = consumer_seconds(sink, rounds)
        with running_dynalite() as dynalite:
            remote = remote_consumer_seconds(sink, dynalite, rounds) if dynalite is not None else None
        sequential = sequential_seconds(sink, rounds)
        apprise_result = apprise_seconds(sink, rounds)
    floor = SINK_DELAY_SECONDS
    own = in_process - emulator
    # The figure judged: the handler with AWS elsewhere, as in Lambda; without dynalite, the in-process one.
    consumer = remote if remote is not None else in_process
    remote_label = "consumer, AWS in other processes (dynalite, moto's server)"
    print(f"Delivery: a batch of {BATCH} webhooks to a sink answering after {floor * 1000:.0f} ms (its own process)")
    print(f"(median of {rounds} rounds after a warm-up)")
    rows = []
    if remote is None:
        print("  dynalite not installed (make bench installs it: npm ci --prefix bench)")
        fragment.notes.append(
            "dynalite was not installed (`npm ci --prefix bench`): the figures judged are the in-process ones."
        )
    else:
        print(f"  {remote_label:<58} {remote * 1000:8.1f} ms   {remote / floor:4.2f}x the floor")
        rows.append([remote_label, f"{remote * 1000:.1f} ms", f"{remote / floor:.2f}x", "-"])
    print(f"  {'consumer in-process against moto':<58} {in_process * 1000:8.1f} ms   {in_process / floor:4.2f}x")
    print(f"  {'  of which moto answering its calls (CPU, under the GIL)':<58} {emulator * 1000:8.1f} ms")
    print(f"  {'  the rest, an estimate without moto':<58} {own * 1000:8.1f} ms   {own / floor:4.2f}x")
    rows += [
        ["consumer in-process against moto", f"{in_process * 1000:.1f} ms", f"{in_process / floor:.2f}x", "-"],
        ["  of which moto's CPU answering its AWS calls", f"{emulator * 1000:.1f} ms", "-", "-"],
        ["  the consumer less moto's CPU (an estimate)", f"{own * 1000:.1f} ms", f"{own / floor:.2f}x", "-"],
    ]
    ratio = sequential / consumer
    rows.append(
        [
            "sequential (same channel, one by one)",
            f"{sequential * 1000:.1f} ms",
            f"{sequential / floor:.2f}x",
            f"{ratio:.1f}x",
        ]
    )
    print(
        f"  {'sequential (same channel, one by one)':<58} {sequential * 1000:8.1f} ms   consumer {ratio:4.1f}x faster"
    )
    judged = "AWS in other processes" if remote is not None else "in-process against moto"
    fragment.targets += [
        Target(
            f"delivery: 10 webhooks to a 100 ms sink, x the floor, {judged}",
            f"{consumer / floor:.2f}x",
            "<= 1.25x",
            consumer <= 1.25 * floor,
        ),
        Target(f"delivery: consumer ({judged}) faster than sequential", f"{ratio:.1f}x", ">= 5x", ratio >= 5),
        Target(
            "delivery: the consumer in-process less moto's CPU (an estimate), x the floor",
            f"{own / floor:.2f}x",
            "-",
            None,
        ),
    ]
    fragment.notes.append(
        "The sink runs in a process of its own, as a receiver does. The row judged runs the handler as a Lambda "
        "function has it, every AWS call over loopback HTTP to another process: DynamoDB (per batch, one ledger "
        "BatchGetItem before the sends and an UpdateItem after each) to dynalite, a DynamoDB emulator in Node, in "
        "memory; SQS (called only to set up the batch when every send succeeds) to moto's server. dynalite answers "
        "one UpdateItem in 1.2-1.5 ms alone, but the ten of a batch, sent as the answers come, one after another on "
        "the machine's other core, and the consumer's own CPU (about 2.6 ms a delivery: the ledger write's botocore, "
        "the webhook's send through requests), serialized by the GIL its threads share, delay the last sends' starts "
        "and writes."
    )
    fragment.notes.append(
        "In-process against moto, as the earlier runs measured it: moto answers each call in Python, holding the GIL "
        "the consumer's threads share (its UpdateItem evaluates the update expression in about 15 ms of CPU), and "
        "intercepts every HTTP request of the process, the webhooks' too. The row less moto's CPU takes its answers' "
        "time off the wall time: an estimate, not a measurement."
    )
    if apprise_result is None:
        print("  Apprise not installed: pip install -r bench/requirements.txt")
        fragment.notes.append("Apprise was not installed (`pip install -r bench/requirements.txt`).")
    else:
        version, seconds = apprise_result
        label = f"Apprise {version} (10 json:// URLs)"
        print(f"  {label:<58} {seconds * 1000:8.1f} ms   consumer {seconds / consumer:4.1f}x faster")
        rows.append([label, f"{seconds * 1000:.1f} ms", f"{seconds / floor:.2f}x", f"{seconds / consumer:.1f}x"])
        fragment.targets.append(
            Target(
                f"delivery: consumer ({judged}) faster than Apprise",
                f"{seconds / consumer:.1f}x",
                ">= 3x",
                seconds / consumer >= 3,
            )
        )
        if seconds / 3 < floor:
            fragment.notes.append(
                f"3x faster than Apprise is {seconds / 3 * 1000:.0f} ms, under the sink's {floor * 1000:.0f} ms: no "
                f"sender can meet that target on this sink. A consumer at 1.25x the floor would be "
                f"{seconds / (1.25 * floor):.1f}x faster than Apprise."
            )
    fragment.tables.append(
        Table(
            f"Median of {rounds} rounds after a warm-up; the sink in its own process",
            ["sender", "batch of 10", "x the 100 ms floor", "consumer faster by"],
            rows,
        )
    )
    fragment.save()


if __name__ == "__main__":
    main()
