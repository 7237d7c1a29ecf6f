"""The local page, as a person sees it: rendered by a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack

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
)


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
    """Debian's chromium, installed when missing; the test is skipped, saying why, only where it cannot be."""
    browser = _find_browser()
    if browser is None:
        reason = _install_chromium()
        browser = _find_browser()
        if browser is None:
            pytest.skip(f"no headless Chromium: {reason or 'chromium installed but not found on PATH'}")
    return browser


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
    row = re.search(rf'<tr data-notification="{notification_id}">(.*?)</tr>', dom, re.S)
    assert row is not None, dom[:2000]
    assert 'class="status delivered"' in row.group(1)
    refreshes = re.search(r'data-refreshes="(\d+)"', dom)
    assert refreshes is not None
    assert int(refreshes.group(1)) >= 1, "the page's script did not refresh it"
