"""Browser notifications through the local stack, in a real headless Chromium: the demo page connects with the
repository's client, a publish arrives on the page, and a message holding markup shows as text, never as HTML."""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import quote

import pytest

from tests.e2e.conftest import Stack, http
from tests.e2e.test_local_page import HOSTILE, Page, chromium, page

pytestmark = pytest.mark.e2e

__all__ = ["chromium", "page"]  # the fixtures, used by name


def _demo(stack: Stack, user: str, topic: str) -> str:
    return f"{stack.api}/_realtime/?user_id={quote(user)}&topics={quote(topic, safe='/')}"


def _texts(page: Page) -> list[str]:
    texts: list[str] = page.evaluate("[...document.querySelectorAll('#notifications .text')].map((n) => n.textContent)")
    return texts


def test_realtime_demo_page_connects_and_shows_a_published_notification(stack: Stack, page: Page) -> None:
    channel, topic, topic_hash = stack.create_topic(
        [{"name": "browser", "type": "browser", "target": {}, "model": "Order $order shipped"}]
    )
    page.open(_demo(stack, f"e2e-{uuid.uuid4().hex[:8]}", f"{channel}/{topic}"))
    page.wait_for("document.body.dataset.realtime === 'open'", timeout=30)

    reply = stack.publish(channel, topic, topic_hash, {"order": "42"})

    assert reply.status == 200, reply.body
    page.wait_for("[...document.querySelectorAll('#notifications .text')].length > 0", timeout=30)
    assert _texts(page) == ["Order 42 shipped"]
    notification_id = reply.headers["x-notification-id"]
    assert page.evaluate("document.querySelector('#notifications li').dataset.notificationId") == notification_id
    status = stack.wait_for_status(notification_id, lambda rows: rows[0]["status"] == "delivered", 30)
    assert status["deliveries"][0]["type"] == "browser"


def test_realtime_demo_page_shows_markup_in_a_message_as_text(stack: Stack, page: Page) -> None:
    channel, topic, topic_hash = stack.create_topic(
        [{"name": "browser", "type": "browser", "target": {}, "model": "$text"}]
    )
    page.open(_demo(stack, "e2e-hostile", f"{channel}/{topic}"))
    page.wait_for("document.body.dataset.realtime === 'open'", timeout=30)

    assert stack.publish(channel, topic, topic_hash, {"text": HOSTILE}).status == 200

    page.wait_for("[...document.querySelectorAll('#notifications .text')].length > 0", timeout=30)
    time.sleep(0.5)  # an injected <img onerror> would have fired by now
    assert _texts(page) == [HOSTILE]
    assert page.evaluate("document.querySelectorAll('#notifications script, #notifications img').length") == 0
    assert page.evaluate("window.__pwned === undefined")


def test_realtime_demo_page_of_another_user_hears_nothing_of_a_user_target(stack: Stack, page: Page) -> None:
    channel, topic, topic_hash = stack.create_topic(
        [{"name": "to-ada", "type": "browser", "target": {"user_id": "e2e-ada"}, "model": "for Ada only"}]
    )
    page.open(_demo(stack, "e2e-bob", f"{channel}/{topic}"))
    page.wait_for("document.body.dataset.realtime === 'open'", timeout=30)

    reply = stack.publish(channel, topic, topic_hash, {})
    stack.wait_for_status(reply.headers["x-notification-id"], lambda rows: rows[0]["status"] == "delivered", 30)
    time.sleep(1.0)

    assert _texts(page) == []


def test_realtime_token_route_refuses_a_ttl_over_the_stage_maximum(stack: Stack) -> None:
    reply = stack.publisher("POST", "/v1/realtime/tokens", {"user_id": "e2e", "ttl_seconds": 999999})

    assert reply.status == 422
    assert reply.body["message"].startswith("ttl_seconds: must be 3600 or less")


def test_realtime_demo_token_names_the_local_websocket_url(stack: Stack) -> None:
    reply = http("GET", f"{stack.api}/_realtime/token?user_id=e2e&topics=")

    assert reply.status == 201, reply.body
    assert reply.body["url"].startswith("ws://127.0.0.1:")
    assert json.dumps(reply.body).count(reply.body["token"]) == 1
