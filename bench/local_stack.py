"""Local-stack benchmark: time from start to ready, and publish-to-delivered latency through the whole local stack.

Starts ``python -m infra.local`` (as ``make run`` does, dependencies already installed) on free ports in a temporary
state directory, twice: with the deployed params (the delivery queue's 1 s batching window) and with the batching
window at 0. Each time it creates a topic with one webhook integration on the local receiver, publishes 20
notifications one after another and polls the status route until each says ``delivered``. Prints the medians.
``--quick``: 10 publishes, the deployed params only.

``LocalStack`` is how every benchmark here starts a stack of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.results import Fragment, Table

ROOT = Path(__file__).resolve().parent.parent
PUBLISHES = 20
START_TIMEOUT = 180.0
API_KEY = "bench-publisher-key"
ADMIN_TOKEN = "bench-admin-token"


def free_ports(count: int) -> list[int]:
    """Return ``count`` loopback ports free at this moment."""
    probes = [socket.socket() for _ in range(count)]
    for probe in probes:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in probes]
    for probe in probes:
        probe.close()
    return ports


def _call(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, Any, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), exc.headers


class LocalStack:
    """The local stack as a subprocess on free ports; ``with`` starts it and stops it by its PID."""

    def __init__(self, params: str) -> None:
        self.api_port, self.receiver_port, self.aws_port, postgres_port, stripe_port = free_ports(5)
        self._state = Path(tempfile.mkdtemp(prefix="notify-bench-"))
        self._state.chmod(0o755)  # the embedded PostgreSQL may run as another user, who must enter it
        self._output = self._state / "stack.out"
        self._env = {
            **os.environ,
            "PORT": str(self.api_port),
            "LOCAL_RECEIVER_PORT": str(self.receiver_port),
            "LOCAL_AWS_PORT": str(self.aws_port),
            "LOCAL_POSTGRES_PORT": str(postgres_port),
            "LOCAL_STRIPE_PORT": str(stripe_port),
            "LOCAL_STATE_DIR": str(self._state),
            "LOCAL_PARAMS": params,
            "LOCAL_API_KEY": API_KEY,
            "LOCAL_ADMIN_TOKEN": ADMIN_TOKEN,
        }
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "DATABASE_URL", "STAGE"):
            self._env.pop(name, None)
        self._process: subprocess.Popen[bytes] | None = None
        self.ready_seconds = 0.0
        self.reported_ready = ""

    def __enter__(self) -> LocalStack:
        started = time.monotonic()
        with self._output.open("wb") as sink:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "infra.local"], cwd=ROOT, env=self._env, stdout=sink, stderr=subprocess.STDOUT
            )
        while "Ready in" not in (text := self._output.read_text(errors="replace")):
            if self._process.poll() is not None or time.monotonic() - started > START_TIMEOUT:
                self.__exit__()
                raise RuntimeError(f"the local stack did not start:\n{text[-4000:]}")
            time.sleep(0.05)
        self.ready_seconds = time.monotonic() - started
        self.reported_ready = next(line for line in text.splitlines() if "Ready in" in line).strip()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._state, ignore_errors=True)

    @property
    def api(self) -> str:
        """The API's base URL."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def receiver(self) -> str:
        """The local receiver's base URL."""
        return f"http://127.0.0.1:{self.receiver_port}"

    @property
    def pid(self) -> int:
        """The stack process's PID."""
        assert self._process is not None, "the stack is not started"
        return self._process.pid

    @property
    def logs_dir(self) -> Path:
        """Where the stack's functions write their logs (``<function>.log``)."""
        return self._state / "logs"

    def output(self) -> str:
        """What the stack printed so far."""
        return self._output.read_text(errors="replace")

    def cold_starts(self) -> dict[str, int]:
        """Count each function's cold starts so far: the invocations its log marks ``cold_start`` (powertools sets it
        on every record of a worker's first invocation; the stack starts a worker per concurrent invocation)."""
        counts: dict[str, int] = {}
        for path in sorted((self._state / "logs").glob("*.log")):
            invocations = set()
            for line in path.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("cold_start") is True:
                    invocations.add(record.get("function_request_id"))
            if invocations:
                counts[path.stem] = len(invocations)
        return counts


def publish_to_delivered(stack: LocalStack, publishes: int = PUBLISHES) -> list[float]:
    """Publish notifications one after another; return each one's seconds until ``delivered``."""
    integration = {
        "name": "hook",
        "type": "webhook",
        "target": {"url": f"http://127.0.0.1:{stack.receiver_port}/webhook/bench"},
        "model": "n $n",
    }
    status, body, _ = _call(
        "PUT",
        f"{stack.api}/v1/channels/bench/topics/latency",
        {"integrations": [integration]},
        {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    if status != 201:
        raise RuntimeError(f"creating the topic failed: {status} {body}")
    headers = {"x-api-key": API_KEY, "x-topic-hash-x": body["topic_hash"]}
    latencies = []
    for n in range(publishes):
        started = time.monotonic()
        status, body, reply_headers = _call(
            "POST", f"{stack.api}/v1/notifications/bench/latency", {"metadata": {"n": n}}, headers
        )
        if status != 200:
            raise RuntimeError(f"publish failed: {status} {body}")
        notification_id = reply_headers["X-Notification-Id"]
        while True:
            _, state, _ = _call("GET", f"{stack.api}/v1/notifications/{notification_id}", headers=headers)
            if state and state["deliveries"][0]["status"] == "delivered":
                break
            if time.monotonic() - started > 60:
                raise RuntimeError(f"{notification_id} not delivered after 60 s: {state}")
            time.sleep(0.005)
        latencies.append(time.monotonic() - started)
    return latencies


def main() -> None:
    """Run the benchmark, print its figures and save them for the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 publishes, the deployed params only")
    args = parser.parse_args()
    publishes = 10 if args.quick else PUBLISHES
    configs = [("deployed params (batching window 1 s)", "")]
    if not args.quick:
        configs.append(("batching window 0", "consumerBatchWindow=0"))
    fragment = Fragment(
        "local_stack",
        "Local stack: start and publish-to-delivered, one at a time",
        "python -m bench.local_stack" + (" --quick" if args.quick else ""),
        args.quick,
    )
    rows = []
    print(f"Local stack benchmark (python -m infra.local; {publishes} publishes one by one, each until delivered)")
    for label, params in configs:
        with LocalStack(params) as stack:
            latencies = publish_to_delivered(stack, publishes)
        ms = sorted(value * 1000 for value in latencies)
        print(f"  {label}")
        print(f"    start to ready:        {stack.ready_seconds:6.1f} s   (the stack says: {stack.reported_ready})")
        print(
            f"    publish to delivered:  median {statistics.median(ms):6.0f} ms   min {ms[0]:6.0f} ms"
            f"   max {ms[-1]:6.0f} ms"
        )
        rows.append(
            [
                label,
                f"{stack.ready_seconds:.1f} s",
                f"{statistics.median(ms):.0f} ms",
                f"{ms[0]:.0f} ms",
                f"{ms[-1]:.0f} ms",
            ]
        )
    fragment.tables.append(
        Table(
            f"{publishes} publishes one after another, each polled until `delivered`",
            ["params", "start to ready", "publish to delivered, median", "min", "max"],
            rows,
        )
    )
    fragment.notes.append(
        "The deployed params gather a batch for up to 1 s (`consumerBatchWindow`), which sets the median when "
        "notifications come one at a time; under load the batches fill before the window ends (see Load)."
    )
    fragment.save()


if __name__ == "__main__":
    main()
