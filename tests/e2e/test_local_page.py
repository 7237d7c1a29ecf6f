"""The local page, as a person sees it: rendered and clicked in a real headless Chromium at 1280x900.

Screenshots go to ``$NOTIFY_E2E_ARTIFACTS`` when set, else to a new ``notify-e2e-page-*`` directory under the system's
temporary directory (the stack's own state directory is removed when the session ends); the path is printed.
Chromium is driven over ``--remote-debugging-pipe`` (the DevTools protocol on two pipes), so no package is needed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.conftest import Stack, http

pytestmark = pytest.mark.e2e

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,900",
)
WIDTH, HEIGHT = 1280, 900
# Values that would run script if any part of the page inserted them unescaped.
HOSTILE = '<script>window.__pwned = "script"</script><img src=x onerror="window.__pwned = \'img\'">'


def _find_browser() -> str | None:
    return next((path for path in map(shutil.which, _BROWSERS) if path), None)


def _install_chromium() -> str:
    """Install Debian's chromium package; return why it cannot be done, or an empty string when it was."""
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine to install chromium"
    if os.geteuid() != 0:
        return "installing chromium needs root (apt-get install chromium)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        except subprocess.TimeoutExpired:
            return f"{' '.join(command)} took longer than 15 minutes"
        if done.returncode != 0:
            return f"{' '.join(command)} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
    return ""


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed when missing; where it cannot be, the test is skipped saying why, except in CI
    (``CI`` set, as GitHub Actions sets it), where a skip would pass the browser's tests without running them."""
    browser = _find_browser()
    if browser is None:
        reason = _install_chromium()
        browser = _find_browser()
        if browser is None:
            why = f"no headless Chromium: {reason or 'chromium installed but not found on PATH'}"
            if os.environ.get("CI"):
                pytest.fail(f"{why}; CI must run the browser tests")
            pytest.skip(why)
    return browser


@pytest.fixture(scope="session")
def artifacts(pytestconfig: pytest.Config) -> Path:
    """The directory the screenshots go to, printed once."""
    chosen = os.environ.get("NOTIFY_E2E_ARTIFACTS")
    directory = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="notify-e2e-page-"))
    directory.mkdir(parents=True, exist_ok=True)
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        sys.stderr.write(f"\nlocal page screenshots (1280x900): {directory}\n")
    return directory


def _dump_dom(browser: str, url: str) -> str:
    profile = Path(tempfile.mkdtemp(prefix="notify-e2e-chromium-"))
    try:
        done = subprocess.run(
            [browser, *_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


# Runs a program with two inherited descriptors moved to 3 and 4, where --remote-debugging-pipe expects them.
_ON_FDS_3_AND_4 = """
import fcntl, os, sys
given = [int(sys.argv[1]), int(sys.argv[2])]
moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in given]
for target, fd in zip((3, 4), moved):
    os.dup2(fd, target)
for fd in {*given, *moved} - {3, 4}:
    os.close(fd)
os.execv(sys.argv[3], sys.argv[3:])
"""


class Page:
    """One tab of a headless Chromium, driven over the DevTools protocol on ``--remote-debugging-pipe``.

    Chromium reads commands from its fd 3 and writes answers and events to its fd 4, each a JSON text ending in NUL.
    """

    def __init__(self, browser: str, profile: Path) -> None:
        to_browser, self._commands = os.pipe()
        self._answers, from_browser = os.pipe()
        self._log = (profile / "chromium.log").open("wb")
        flags = [*_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"]
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ON_FDS_3_AND_4, str(to_browser), str(from_browser), browser, *flags],
            pass_fds=(to_browser, from_browser),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._ids = iter(range(1, 1_000_000))
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, name="chromium-pipe", daemon=True).start()
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        metrics = {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}
        self.call("Emulation.setDeviceMetricsOverride", metrics)

    def _read(self) -> None:
        pending = b""
        while chunk := os.read(self._answers, 1 << 16):
            pending += chunk
            *messages, pending = pending.split(b"\0")
            with self._changed:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                self._changed.notify_all()

    def _call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        number = next(self._ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        with self._changed:
            if not self._changed.wait_for(lambda: number in self._replies, timeout=60):
                raise AssertionError(f"Chromium did not answer {method} in 60 s")
            reply = self._replies.pop(number)
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one command to the tab; return its result."""
        return self._call(method, params, self._session)

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        with self._changed:
            seen = len(self.events)
        self.call("Page.navigate", {"url": url})
        with self._changed:
            loaded = self._changed.wait_for(
                lambda: any(event["method"] == "Page.loadEventFired" for event in self.events[seen:]), timeout=30
            )
        assert loaded, f"{url} did not load in 30 s"

    def evaluate(self, expression: str) -> Any:
        """Return the value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20) -> Any:
        """Poll a JavaScript expression until it is truthy; return its value (an element comes back as ``True``)."""
        deadline = time.monotonic() + timeout
        problem = ""
        while True:
            try:
                value = self.evaluate(
                    f"(() => {{ const value = ({expression}); return value instanceof Node || value; }})()"
                )
            except AssertionError as exc:  # a navigation replaced the document under it: ask the next one
                value, problem = None, f" ({exc})"
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"still false after {timeout} s: {expression}{problem}")
            time.sleep(0.2)

    def click(self, selector: str) -> None:
        """Click the middle of the element, as a mouse does."""
        found = json.dumps(selector)
        self.wait_for(
            f"(() => {{ const node = document.querySelector({found});"
            " if (node) node.scrollIntoView({block: 'center'}); return !!node; })()"
        )
        # Input is hit-tested against what was last drawn: let a scroll reach the screen before clicking.
        self.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({found}).getBoundingClientRect();"
            " return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()"
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            event = {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1}
            self.call("Input.dispatchMouseEvent", event)

    def screenshot(self, path: Path) -> Path:
        """Save what the 1280x900 window shows."""
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Close Chromium."""
        with contextlib.suppress(AssertionError, OSError):
            self._call("Browser.close")
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        self._log.close()


@pytest.fixture
def page(chromium: str) -> Iterator[Page]:
    """A fresh Chromium tab at 1280x900."""
    profile = Path(tempfile.mkdtemp(prefix="notify-e2e-chromium-"))
    tab = Page(chromium, profile)
    try:
        yield tab
    finally:
        tab.close()
        shutil.rmtree(profile, ignore_errors=True)


def _aws(stack: Stack, service: str) -> Any:
    found = re.search(r"AWS_ENDPOINT_URL=(\S+)", stack.output.read_text(errors="replace"))
    assert found, "the stack's banner names no AWS_ENDPOINT_URL"
    return boto3.session.Session().client(
        service,
        endpoint_url=found.group(1),
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def _wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout} s")
        time.sleep(0.25)
    return value


def _page_state(stack: Stack) -> dict[str, Any]:
    reply = http("GET", f"{stack.api}/_local/api/state")
    assert reply.status == 200, reply.body
    state: dict[str, Any] = reply.body
    return state


def _section(dom: str, css_class: str, attribute: str, value: str) -> str:
    found = re.search(rf'<(\w+) class="{css_class}[^"]*" {attribute}="{re.escape(value)}">(.*?)</\1>', dom, re.S)
    assert found is not None, dom[:3000]
    return found.group(2)


def test_local_page_shows_delivered_message_and_ledger_status(stack: Stack, chromium: str) -> None:
    slack = {
        "name": "chat",
        "type": "slack",
        "credentials": {"webhook_url": f"{stack.receiver}/slack/page"},
        "model": "Page check for $who",
    }
    channel, topic, topic_hash = stack.create_topic([slack])
    published = stack.publish(channel, topic, topic_hash, {"who": "Chromium"})
    notification_id = published.headers["x-notification-id"]
    stack.wait_for_status(notification_id, lambda rows: rows[0]["status"] == "delivered", 15)

    dom = _dump_dom(chromium, f"{stack.api}/_local/")

    slack_section = re.search(r'<article class="channel" data-channel="slack">(.*?)</article>', dom, re.S)
    assert slack_section is not None, dom[:2000]
    assert "Page check for Chromium" in slack_section.group(1)
    row = re.search(rf'<tr class="delivery[^"]*" data-notification="{notification_id}">(.*?)</tr>', dom, re.S)
    assert row is not None, dom[:2000]
    assert 'class="status delivered"' in row.group(1)
    refreshes = re.search(r'data-refreshes="(\d+)"', dom)
    assert refreshes is not None
    assert int(refreshes.group(1)) >= 1, "the page's script did not refresh it"


def test_local_page_email_and_push_are_timed_when_sent_readable_and_escaped(
    stack: Stack, page: Page, artifacts: Path
) -> None:
    sns = _aws(stack, "sns")
    application = sns.create_platform_application(
        Name=f"e2e-page-{uuid.uuid4().hex[:8]}", Platform="GCM", Attributes={"PlatformCredential": "e2e"}
    )["PlatformApplicationArn"]
    endpoint = sns.create_platform_endpoint(PlatformApplicationArn=application, Token="e2e-device")["EndpointArn"]
    _aws(stack, "ses").verify_email_identity(EmailAddress="page@example.com")
    integrations = [
        {
            "name": "mail",
            "type": "email",
            "target": {"to": ["ada@example.com"], "from": "page@example.com"},
            "model": {
                "subject": "Order $order",
                "text": "Text part for $who",
                "html": "<p>HTML part for <b>$who</b></p>",
            },
        },
        {"name": "phone", "type": "push", "target": {"endpoint_arn": endpoint}, "model": "Push for $who"},
        {
            "name": "chat",
            "type": "slack",
            "credentials": {"webhook_url": f"{stack.receiver}/slack/hostile"},
            "model": "$who",
        },
        {
            "name": "hook",
            "type": "webhook",
            "target": {"url": f"{stack.receiver}/webhook/hostile"},
            "model": {"who": "$who"},
        },
    ]
    channel, topic, topic_hash = stack.create_topic(integrations)
    published = stack.publish(channel, topic, topic_hash, {"who": HOSTILE, "order": "A-1"})
    notification_id = published.headers["x-notification-id"]
    status = stack.wait_for_status(notification_id, lambda rows: all(row["status"] == "delivered" for row in rows), 30)

    state = _page_state(stack)
    mine = {
        item["channel"]: item
        for items in state["channels"].values()
        for item in items
        if item.get("notification_id") == notification_id
    }
    assert {"email", "push", "webhook"} <= set(mine), sorted(mine)
    created = status["created_at"]
    for channel_name in ("email", "push"):
        item = mine[channel_name]
        assert item["time_source"] == "sent", item
        assert created <= item["time"] <= state["generated_at"], (created, item["time"])
    assert mine["email"]["text"] == f"Text part for {HOSTILE}"
    assert "HTML part for" in mine["email"]["html"]
    assert mine["push"]["payload"]["platform"] == "GCM"
    assert mine["push"]["payload"]["message"] == {
        "fcmV1Message": {"message": {"notification": {"body": f"Push for {HOSTILE}"}}}
    }

    page.open(f"{stack.api}/_local/")
    page.wait_for("Number(document.body.dataset.refreshes) >= 1")
    page.screenshot(artifacts / "overview.png")
    page.open(f"{stack.api}/_local/?notification={notification_id}")
    page.wait_for("Number(document.body.dataset.refreshes) >= 2")
    page.screenshot(artifacts / "notification-with-email-and-push.png")

    assert page.evaluate("window.__pwned === undefined") is True, "a delivered value ran as script on the page"
    assert page.evaluate("document.querySelectorAll('main img[src=\"x\"], main script').length") == 0
    email = page.evaluate(
        "(() => { const m = document.querySelector('#detail .message iframe.email-html');"
        " return m && {sandbox: m.getAttribute('sandbox'), srcdoc: m.getAttribute('srcdoc')}; })()"
    )
    assert email is not None, "the opened notification shows no email HTML part"
    assert email["sandbox"] == ""
    assert "<p>HTML part for <b>" in email["srcdoc"]
    texts = page.evaluate("Array.from(document.querySelectorAll('#detail pre'), (node) => node.textContent)")
    assert f"Text part for {HOSTILE}" in texts
    push = next(text for text in texts if "Push for" in text)
    expected = {"fcmV1Message": {"message": {"notification": {"body": f"Push for {HOSTILE}"}}}}
    assert json.loads(push) == expected, "push payload not decoded once"
    assert "\\\\" not in push


def test_local_page_redrive_endpoint_refuses_a_request_without_the_page_token(stack: Stack) -> None:
    reply = http("POST", f"{stack.api}/_local/api/dead-letters/redrive?token=guessed")

    assert reply.status == 403, reply.body


@pytest.mark.timeout(420)
def test_local_page_dead_letter_shows_attempts_and_redrive_from_the_page_delivers_it(
    stack: Stack, page: Page, artifacts: Path
) -> None:
    # Down for 40 s from the first request: the 12 attempts (backoff 1 s doubling to 2 s) are spent in about 25 s,
    # and the redriven delivery gets through once the outage is over.
    target = f"{stack.receiver}/webhook/dead-{uuid.uuid4().hex[:8]}?down=40"
    hook = {"name": "hook", "type": "webhook", "target": {"url": target}, "model": {"order": "$order"}}
    channel, topic, topic_hash = stack.create_topic([hook])
    published = stack.publish(channel, topic, topic_hash, {"order": "D-1"})
    notification_id = published.headers["x-notification-id"]
    stack.wait_for_status(notification_id, lambda rows: rows[0]["status"] == "dead", 90)

    page.open(f"{stack.api}/_local/?notification={notification_id}")
    rows = page.wait_for(
        "(() => { const rows = document.querySelectorAll('#detail table.attempts tbody tr');"
        " return rows.length >= 12 && rows.length; })()"
    )
    page.screenshot(artifacts / "notification-dead-with-attempts.png")
    assert rows == 12
    assert "HTTP 503" in page.evaluate("document.querySelector('#detail table.attempts').textContent")

    page.open(f"{stack.api}/_local/?view=dead-letters")
    shown = page.wait_for(
        f"document.querySelector('table.dead tr[data-notification=\"{notification_id}\"]')"
        " || document.querySelector('.dead-letters .error')?.textContent"
    )
    assert shown is True, f"the dead-letter view says: {shown}"
    row = page.evaluate(f"document.querySelector('table.dead tr[data-notification=\"{notification_id}\"]').textContent")
    assert "hook" in row
    assert "12" in row
    page.screenshot(artifacts / "dead-letters.png")

    page.click("button[data-action='redrive']")
    flash = page.wait_for(
        "(() => { const f = document.getElementById('flash'); return !f.hidden && "
        "!f.textContent.startsWith('Redriving') && f.textContent; })()",
        # The session's stack shares its dead-letter queue with the fault drill's dead letters: all are redriven, each
        # a ledger write and two queue calls, while the consumer retries those already moved (a CI run took over 60 s).
        150,
    )
    assert re.match(r"Redriven: [1-9]", flash), flash
    page.wait_for(f"!document.querySelector('table.dead tr[data-notification=\"{notification_id}\"]')", 30)
    page.screenshot(artifacts / "dead-letters-redriven.png")

    stack.wait_for_status(notification_id, lambda rows: rows[0]["status"] == "delivered", 90)
    page.open(f"{stack.api}/_local/?notification={notification_id}")
    page.wait_for("document.querySelector('#detail .delivery-detail .status.delivered')")
    page.screenshot(artifacts / "notification-redriven-delivered.png")
    heading = page.evaluate("document.querySelector('#detail .delivery-detail h3').textContent")
    assert "redriven 1 time(s)" in heading, heading
    assert page.evaluate("document.querySelectorAll('#detail table.attempts tr.redrive').length") == 1
    lines = page.evaluate("document.querySelectorAll('#detail table.logs tbody tr').length")
    assert lines >= 1, "the opened notification shows no log line"


def test_local_page_keeps_an_open_notification_across_refreshes(stack: Stack, page: Page) -> None:
    slack = {
        "name": "chat",
        "type": "slack",
        "credentials": {"webhook_url": f"{stack.receiver}/slack/keep"},
        "model": "k",
    }
    channel, topic, topic_hash = stack.create_topic([slack])
    notification_id = stack.publish(channel, topic, topic_hash, {}).headers["x-notification-id"]
    stack.wait_for_status(notification_id, lambda rows: rows[0]["status"] == "delivered", 15)
    page.open(f"{stack.api}/_local/")

    page.click(f'tr[data-notification="{notification_id}"] a.notification-link')
    page.wait_for(f"document.querySelector('#detail[data-notification=\"{notification_id}\"]')")
    refreshes = page.evaluate("Number(document.body.dataset.refreshes)")
    page.wait_for(f"Number(document.body.dataset.refreshes) >= {refreshes + 2}", 15)

    assert page.evaluate(f"!!document.querySelector('#detail[data-notification=\"{notification_id}\"]')") is True
