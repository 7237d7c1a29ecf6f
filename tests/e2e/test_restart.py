"""A stack of its own, started, stopped and started again on the same state directory.

Its first start is watched: until it is ready the gateway refuses connections or answers 503 (``/v1/health`` says
``{"status": "starting"}``), and once health answers 200 the demo topic exists. Then a restart keeps topics, their
hashes (the demo's printed one too), notification statuses and dead letters; ``LOCAL_RESET=1`` starts empty.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    READY,
    Ports,
    Reply,
    Stack,
    launch,
    new_state_dir,
    running_stack,
    stack_at,
    stack_env,
    stop,
    wait_ready,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# Two attempts a second apart: a failing delivery is dead within seconds.
PARAMS = {"LOCAL_PARAMS": "maxAttempts=2,retryBaseSeconds=1,retryCapSeconds=1"}
DEMO_TOPIC = "/v1/channels/demo/topics/welcome"
DEMO_HASH = re.compile(r"x-topic-hash-x: ([A-Za-z0-9_-]+)")
PROBE_EVERY = 0.05


@dataclass
class Probe:
    """One answer to a request sent while the stack started: ``status`` is None for a refused connection."""

    status: int | None
    body: Any
    ready_printed: bool


@dataclass
class StartWatch:
    """Polls health every 50 ms while the stack starts; publishes once, and reads the demo topic at the first 200."""

    stack: Stack
    output: Path
    health: list[Probe] = field(default_factory=list)
    publish: list[Probe] = field(default_factory=list)
    demo_at_first_ok: Reply | None = None
    failures: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def _ask(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Probe:
        try:
            reply = self.stack.call(method, path, body, headers)
            status, answer = reply.status, reply.body
        except urllib.error.URLError as exc:
            if not isinstance(exc.reason, ConnectionRefusedError):
                self.failures.append(f"{method} {path}: {exc.reason!r}")
            status, answer = None, None
        # Read after the answer came: an answer given before the banner was printed is one of a starting stack.
        return Probe(status, answer, READY in self.output.read_text(errors="replace"))

    def run(self) -> None:
        """Probe until ``done`` is set."""
        while not self.done.is_set():
            probe = self._ask("GET", "/v1/health")
            self.health.append(probe)
            if probe.status == 503 and not self.publish:
                self.publish.append(
                    self._ask("POST", "/v1/notifications/demo/welcome", {"metadata": {"name": "Ada"}}, self._key())
                )
            if probe.status == 200 and self.demo_at_first_ok is None:
                self.demo_at_first_ok = self.stack.admin("GET", DEMO_TOPIC)
            time.sleep(PROBE_EVERY)

    def _key(self) -> dict[str, str]:
        return {"x-api-key": self.stack.api_key, "x-topic-hash-x": "not-known-yet"}


@dataclass
class FirstRun:
    """The first start of the module's stack: where it lives, its process and what its start looked like."""

    state: Path
    ports: Ports
    process: subprocess.Popen[bytes]
    stack: Stack
    watch: StartWatch


@pytest.fixture(scope="module")
def first_run() -> Iterator[FirstRun]:
    """Start a stack on a fresh state directory, watching its start; stop it and remove the directory at the end."""
    state, ports = new_state_dir(), Ports.free()
    output = state / "first.out"
    process = launch(stack_env(state, ports, PARAMS), output)
    watch = StartWatch(stack_at(ports, output), output)
    watcher = threading.Thread(target=watch.run, name="start-watch", daemon=True)
    watcher.start()
    try:
        wait_ready(process, output, watch.stack.api)
        time.sleep(1.0)  # some answers of the ready stack too
        watch.done.set()
        watcher.join(45)
        yield FirstRun(state, ports, process, watch.stack, watch)
    finally:
        watch.done.set()
        stop(process)
        sys.stderr.write(output.read_text(errors="replace")[-20000:])
        shutil.rmtree(state, ignore_errors=True)


def _demo_hash(output: Path) -> str:
    found = DEMO_HASH.search(output.read_text(errors="replace"))
    assert found, f"no demo topic hash printed in {output.name}"
    return found.group(1)


def _all(status: str) -> Any:
    return lambda deliveries: bool(deliveries) and all(item["status"] == status for item in deliveries)


def _dead_letter(stack: Stack, notification_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """Return the dead letter of ``notification_id`` once listed, without the listing's own receive count."""
    deadline = time.monotonic() + timeout
    while True:
        reply = stack.admin("GET", "/v1/dead-letters")
        assert reply.status == 200, reply.body
        found = [item for item in reply.body["messages"] if item["notification_id"] == notification_id]
        if found:
            return {key: value for key, value in found[0].items() if key != "receive_count"}
        assert time.monotonic() < deadline, f"{notification_id} not in {reply.body}"
        time.sleep(0.5)


def _settled(stack: Stack, notification_id: str, timeout: float = 20.0) -> Any:
    """Return a notification's status once two reads half a second apart agree."""
    deadline = time.monotonic() + timeout
    last = stack.publisher("GET", f"/v1/notifications/{notification_id}").body
    while True:
        time.sleep(0.5)
        now = stack.publisher("GET", f"/v1/notifications/{notification_id}").body
        if now == last:
            return now
        assert time.monotonic() < deadline, f"{notification_id} kept changing: {now}"
        last = now


def test_start_health_before_ready_is_refused_or_503_starting(first_run: FirstRun) -> None:
    early = [probe for probe in first_run.watch.health if not probe.ready_printed]

    assert first_run.watch.failures == []
    assert early, "no health probe answered before the stack was ready"
    assert [probe for probe in early if probe.status is not None and probe.status != 503] == []
    assert {str(probe.body) for probe in early if probe.status == 503} == {str({"status": "starting"})}
    assert any(probe.status == 503 for probe in early), "the gateway never answered while starting"


def test_start_publish_before_ready_is_503_with_a_message_or_served(first_run: FirstRun) -> None:
    [probe] = first_run.watch.publish

    assert not probe.ready_printed
    # 503 until the gateway serves routes; from then on (the demo topic being seeded) the API answers itself.
    assert probe.status in {503, 403, 404}, probe
    assert isinstance(probe.body, dict)
    assert list(probe.body) == ["message"]
    assert isinstance(probe.body["message"], str)
    if probe.status == 503:
        assert "starting" in probe.body["message"]


def test_start_health_turns_200_ok_once_and_stays(first_run: FirstRun) -> None:
    statuses = [probe.status for probe in first_run.watch.health]
    first_ok = statuses.index(200) if 200 in statuses else len(statuses)

    assert first_ok < len(statuses), "health never answered 200"
    assert {str(probe.body) for probe in first_run.watch.health[first_ok:]} == {str({"status": "ok"})}
    assert set(statuses[first_ok:]) == {200}


def test_start_demo_topic_exists_when_health_first_answers_200(first_run: FirstRun) -> None:
    demo = first_run.watch.demo_at_first_ok

    assert demo is not None
    assert demo.status == 200, demo.body


def test_restart_keeps_topics_statuses_dead_letters_and_the_demo_hash(first_run: FirstRun) -> None:
    first = first_run.stack
    name = uuid.uuid4().hex[:8]
    hook = {
        "name": "hook",
        "type": "webhook",
        "target": {"url": f"{first.receiver}/webhook/kept-{name}"},
        "model": "Hi $who",
    }
    down = {**hook, "name": "down", "target": {"url": f"{first.receiver}/webhook/down-{name}?status=500"}}
    channel, topic, topic_hash = first.create_topic([hook])
    _, dead_topic, dead_hash = first.create_topic([down])
    delivered_id = first.publish(channel, topic, topic_hash, {"who": "Ada"}).headers["x-notification-id"]
    dead_id = first.publish(channel, dead_topic, dead_hash, {"who": "Linus"}).headers["x-notification-id"]
    status_before = first.wait_for_status(delivered_id, _all("delivered"), 30)
    first.wait_for_status(dead_id, _all("dead"), 30)
    letter_before = _dead_letter(first, dead_id)
    # The row says dead before its letter is sent, and its history gets the give-up once the letter is in the queue:
    # read before that second write, the status differed after the restart.
    dead_before = _settled(first, dead_id)
    topic_before = first.admin("GET", f"/v1/channels/{channel}/topics/{topic}")
    demo_hash = _demo_hash(first.output)

    assert stop(first_run.process) == 0

    with running_stack(first_run.state, first_run.ports, PARAMS, first_run.state / "second.out") as second:
        topic_after = second.admin("GET", f"/v1/channels/{channel}/topics/{topic}")
        assert (topic_after.status, topic_after.body) == (200, topic_before.body)
        assert second.publisher("GET", f"/v1/notifications/{delivered_id}").body == status_before
        assert second.publisher("GET", f"/v1/notifications/{dead_id}").body == dead_before
        assert _dead_letter(second, dead_id) == letter_before
        assert _demo_hash(second.output) == demo_hash
        again = second.publish(channel, topic, topic_hash, {"who": "Grace"})
        assert again.status == 200, again.body
        second.wait_for_status(again.headers["x-notification-id"], _all("delivered"), 30)
        # Every integration of the demo, push to the endpoint ARN the topic kept included, still delivers.
        demo = second.publish("demo", "welcome", demo_hash, {"name": "Ada"})
        assert demo.status == 200, demo.body
        second.wait_for_status(demo.headers["x-notification-id"], _all("delivered"), 30)


def test_restart_with_local_reset_starts_empty(first_run: FirstRun) -> None:
    demo_hash = _demo_hash(first_run.stack.output)
    stop(first_run.process)  # when this test runs alone

    extra = {**PARAMS, "LOCAL_RESET": "1"}
    with running_stack(first_run.state, first_run.ports, extra, first_run.state / "reset.out") as fresh:
        assert fresh.admin("GET", "/v1/channels/e2e/topics").body["topics"] == []
        assert fresh.admin("GET", "/v1/dead-letters").body == {"messages": [], "more": False}
        assert _demo_hash(fresh.output) != demo_hash
