"""The functions' logs in the terminal of ``make run``: one readable line per record, never raw JSON or a traceback."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

# The follower polls every 0.2 s; a loaded machine gets some slack.
LINE_TIMEOUT = 15.0


def _offset(stack: Stack) -> int:
    return len(stack.output.read_text(errors="replace"))


def _wait_for_line(stack: Stack, since: int, pattern: str) -> str:
    """Return the first line of the terminal output after ``since`` that matches ``pattern``."""
    deadline = time.monotonic() + LINE_TIMEOUT
    while True:
        text = stack.output.read_text(errors="replace")[since:]
        for line in text.splitlines():
            if re.search(pattern, line):
                return line
        if time.monotonic() > deadline:
            pytest.fail(f"no line matching {pattern!r} in the terminal output:\n{text[-5000:]}")
        time.sleep(0.2)


def _publish_delivered(stack: Stack) -> str:
    name = f"logs-{uuid.uuid4().hex[:8]}"
    hook = {"name": "hook", "type": "webhook", "target": {"url": f"{stack.receiver}/webhook/{name}"}, "model": "Hi"}
    channel, topic, topic_hash = stack.create_topic([hook])
    published = stack.publish(channel, topic, topic_hash, {})
    assert published.status == 200, published.body
    notification_id: str = published.headers["x-notification-id"]
    stack.wait_for_status(
        notification_id, lambda deliveries: bool(deliveries) and deliveries[0]["status"] == "delivered", 20
    )
    return notification_id


def test_local_logs_publish_shows_a_producer_line_with_the_notification_id(stack: Stack) -> None:
    since = _offset(stack)

    notification_id = _publish_delivered(stack)

    line = _wait_for_line(stack, since, rf"\bINFO\s+publish\s+{notification_id}\s+notification published\b")
    assert re.match(r"\d\d:\d\d:\d\d  ", line)


def test_local_logs_delivery_shows_a_consumer_line_with_the_notification_id(stack: Stack) -> None:
    since = _offset(stack)

    notification_id = _publish_delivered(stack)

    line = _wait_for_line(stack, since, rf"\bINFO\s+deliver\s+{notification_id}/hook\s+delivered\b")
    assert "channel_type=webhook" in line


def test_local_logs_terminal_has_no_raw_json_from_functions(stack: Stack) -> None:
    since = _offset(stack)
    notification_id = _publish_delivered(stack)
    _wait_for_line(stack, since, rf"deliver\s+{notification_id}/hook\s+delivered\b")

    text = stack.output.read_text(errors="replace")

    assert '"level":' not in text
    assert '{"_aws":' not in text  # metrics are shown at DEBUG only, and then as a readable line
    assert re.search(r'  -  \{"', text) is None  # no JSON object shown as a raw line
    assert "\x1b[" not in text  # the output is a file, not a terminal: no colour


def test_local_logs_refused_admin_token_is_one_warning_line(stack: Stack) -> None:
    since = _offset(stack)

    # A token of its own, so that no cached answer of the authorizer stands in for an invocation.
    token = f"Bearer not-the-admin-token-{uuid.uuid4().hex}"

    reply = stack.call("GET", "/v1/channels/e2e/topics", headers={"Authorization": token})

    assert reply.status == 403
    _wait_for_line(stack, since, r"\bWARNING\s+adminAuthorizer\s+\S+\s+admin token refused")
    assert "Traceback" not in stack.output.read_text(errors="replace")[since:]
