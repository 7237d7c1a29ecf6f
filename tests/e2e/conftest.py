"""The local stack as a subprocess on free ports, with its own state directory; stopped when the session ends.

``running_stack`` starts one on given ports and state directory (a restart is a second one on the same), for tests
that need a stack of their own; ``launch``/``wait_ready``/``stop`` are its steps, for tests that watch a start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.local.iam import ROLE_REFUSAL

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 150.0
# Backoffs of 1 s doubling up to 2 s and twelve attempts keep the retry, outage and dead-letter cases to seconds,
# through the same params a deploy would set.
PARAMS = "maxAttempts=12,retryBaseSeconds=1,retryCapSeconds=2"
API_KEY = "e2e-publisher-key"
ADMIN_TOKEN = "e2e-admin-token"
READY = "Ready in"


def _free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        sockets.append(probe)
    ports = [probe.getsockname()[1] for probe in sockets]
    for probe in sockets:
        probe.close()
    return ports


@dataclass
class Reply:
    """An HTTP answer."""

    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Stack:
    """Where the running local stack listens, and how to talk to it."""

    api: str
    receiver: str
    api_key: str
    admin_token: str
    output: Path
    stripe: str = ""

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
        """Send a request to the API."""
        return http(method, self.api + path, body, headers)

    def admin(self, method: str, path: str, body: Any = None) -> Reply:
        """Send a request with the admin token."""
        return self.call(method, path, body, {"Authorization": f"Bearer {self.admin_token}"})

    def publisher(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
        """Send a request with the publisher's API key."""
        return self.call(method, path, body, {"x-api-key": self.api_key, **(headers or {})})

    def create_topic(self, integrations: list[dict[str, Any]]) -> tuple[str, str, str]:
        """Create a fresh topic; return channel, topic and its hash."""
        channel, topic = "e2e", f"t-{uuid.uuid4().hex[:12]}"
        reply = self.admin("PUT", f"/v1/channels/{channel}/topics/{topic}", {"integrations": integrations})
        assert reply.status == 201, reply.body
        return channel, topic, reply.body["topic_hash"]

    def publish(self, channel: str, topic: str, topic_hash: str, metadata: dict[str, Any]) -> Reply:
        """Publish a notification."""
        headers = {"x-topic-hash-x": topic_hash}
        return self.publisher("POST", f"/v1/notifications/{channel}/{topic}", {"metadata": metadata}, headers)

    def records(self) -> list[dict[str, Any]]:
        """Return what the local receiver got."""
        records: list[dict[str, Any]] = http("GET", self.receiver + "/_records").body["records"]
        return records

    def wait_for_status(
        self, notification_id: str, done: Callable[[list[dict[str, Any]]], bool], timeout: float
    ) -> Any:
        """Poll the status route until ``done(deliveries)``; return the last status body."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.publisher("GET", f"/v1/notifications/{notification_id}")
            if reply.status == 200 and done(reply.body["deliveries"]):
                return reply.body
            if time.monotonic() > deadline:
                pytest.fail(f"status of {notification_id} after {timeout} s: {reply.status} {reply.body}")
            time.sleep(0.25)


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
    """Send a JSON request and return the answer, error statuses included."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=40) as response:
            raw, status, got = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(), exc.code, dict(exc.headers)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return Reply(status, parsed, {key.lower(): value for key, value in got.items()})


@dataclass(frozen=True)
class Ports:
    """The five ports of one local stack."""

    api: int
    receiver: int
    aws: int
    postgres: int
    stripe: int

    @classmethod
    def free(cls) -> Ports:
        """Five ports free on the loopback now."""
        return cls(*_free_ports(5))


def new_state_dir() -> Path:
    """A fresh state directory the embedded PostgreSQL (maybe run as another user) can enter."""
    state = Path(tempfile.mkdtemp(prefix="notify-e2e-"))
    state.chmod(0o755)
    return state


def stack_env(state: Path, ports: Ports, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of ``python -m infra.local`` on ``ports`` and ``state``, the shell's AWS settings left out."""
    env = {
        **os.environ,
        "PORT": str(ports.api),
        "LOCAL_RECEIVER_PORT": str(ports.receiver),
        "LOCAL_AWS_PORT": str(ports.aws),
        "LOCAL_POSTGRES_PORT": str(ports.postgres),
        "LOCAL_STRIPE_PORT": str(ports.stripe),
        "LOCAL_STATE_DIR": str(state),
        "LOCAL_PARAMS": PARAMS,
        # The cron every 5 s, not every minute: a send scheduled seconds ahead is handed over seconds after it.
        "LOCAL_RATE_SECONDS": "5",
        "LOCAL_API_KEY": API_KEY,
        "LOCAL_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "DATABASE_URL", "STAGE", "POWERTOOLS_SERVICE_NAME", "LOCAL_RESET"):
        env.pop(name, None)
    return {**env, **(extra or {})}


def launch(env: Mapping[str, str], output: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m infra.local`` with ``env``, its terminal going to ``output``."""
    with output.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "infra.local"], cwd=ROOT, env=dict(env), stdout=sink, stderr=subprocess.STDOUT
        )


def wait_ready(
    process: subprocess.Popen[bytes], output: Path, api: str | None = None, timeout: float = START_TIMEOUT
) -> None:
    """Wait until the stack printed ``Ready in`` and, given its ``api``, its health answers 200.

    Fails the test when the stack exits first or takes longer than ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while READY not in output.read_text(errors="replace") or (api is not None and not _healthy(api)):
        if process.poll() is not None:
            pytest.fail(f"the local stack exited with {process.returncode}:\n{output.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            pytest.fail(f"the local stack was not ready in {timeout} s:\n{output.read_text(errors='replace')}")
        time.sleep(0.2)


def _healthy(api: str) -> bool:
    try:
        return http("GET", f"{api}/v1/health").status == 200
    except OSError:  # refused, reset: not serving yet
        return False


def stop(process: subprocess.Popen[bytes]) -> int:
    """Stop the stack as Ctrl-C would (SIGTERM), killing it after 30 s; return its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def stack_at(ports: Ports, output: Path) -> Stack:
    """The ``Stack`` handle of a stack listening on ``ports``."""
    return Stack(
        f"http://127.0.0.1:{ports.api}",
        f"http://127.0.0.1:{ports.receiver}",
        API_KEY,
        ADMIN_TOKEN,
        output,
        f"http://127.0.0.1:{ports.stripe}",
    )


@contextmanager
def running_stack(
    state: Path, ports: Ports, extra: Mapping[str, str] | None = None, output: Path | None = None
) -> Iterator[Stack]:
    """Start a local stack on ``ports`` with ``state`` as its state directory, wait until ready, stop it on exit.

    ``extra`` adds or overrides variables (``LOCAL_SEED``, ``LOCAL_RESET``); ``output`` is where its terminal goes
    (``state/stack.out`` by default), shown on stderr when the block ends.
    """
    output = output or state / "stack.out"
    process = launch(stack_env(state, ports, extra), output)
    running = stack_at(ports, output)
    try:
        wait_ready(process, output, running.api)
        yield running
    finally:
        stop(process)
        sys.stderr.write(output.read_text(errors="replace")[-20000:])  # shown by pytest when a test failed
    refused = role_refusals(state / "logs")
    if refused:
        pytest.fail("functions made AWS calls their roles do not allow (infra/iam.yml):\n" + "\n".join(refused))


def role_refusals(logs: Path) -> list[str]:
    """Return each AWS call a function's role refused, as ``function: message``, from the stack's function logs."""
    refused = []
    for log in sorted(logs.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if ROLE_REFUSAL in line:
                try:
                    message = json.loads(line).get("message", line)
                except ValueError:
                    message = line
                refused.append(f"{log.stem}: {message}")
    return sorted(set(refused))


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """Start ``python -m infra.local`` and wait until it is ready; stop it, whatever happened, at the end."""
    state = new_state_dir()
    try:
        with running_stack(state, Ports.free()) as running:
            yield running
    finally:
        shutil.rmtree(state, ignore_errors=True)
