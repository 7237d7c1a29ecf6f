"""Browser notifications through the local stack, in a real headless Chromium: the demo page connects with the
repository's client, a publish arrives on the page, and a message holding markup shows as text, never as HTML. The
client alone, in the same browser on a page with a clock set wrong: it schedules its token refresh by the token's life,
not by that clock."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e.conftest import ROOT, Stack, http
from tests.e2e.test_local_page import HOSTILE, Page, chromium, page

pytestmark = pytest.mark.e2e

__all__ = ["chromium", "page"]  # the fixtures, used by name


CLIENT = ROOT / "clients" / "browser" / "notify-realtime.js"
# The client on fakes: a socket that opens at once and records what it sends, timers that record what they are set
# for (the refresh and the keepalive are never left to fire), and a page clock OFFSET ms off the service's; the
# service issues tokens that live 900 s. An open connection sets two timers: its refresh, then its keepalive.
_HARNESS = """
(() => {
  const offset = OFFSET;
  const answer = (token) => ({
    token: token,
    expires_at: new Date(Date.now() + 900000).toISOString(),
    expires_in: 900,
    url: "ws://realtime.invalid/",
  });
  window.sockets = [];
  window.timers = [];
  function FakeSocket(url) {
    this.url = url;
    this.readyState = 1;
    this.sent = [];
    window.sockets.push(this);
    setTimeout(() => this.onopen && this.onopen(), 0);
  }
  FakeSocket.prototype.send = function (data) { this.sent.push(data); };
  FakeSocket.prototype.close = function () { this.readyState = 3; };
  window.answer = answer;
  window.shown = [];
  window.realtime = NotifyRealtime.connect({
    token: () => Promise.resolve(answer("first")),
    onNotification: (frame) => window.shown.push(frame.text),
    WebSocket: FakeSocket,
    now: () => Date.now() + offset,
    timers: { set: (run, ms) => window.timers.push({ run: run, ms: ms }), clear: () => {} },
  });
  return true;
})()
"""


def _client_with_clock_off(page: Page, offset_ms: int) -> None:
    page.open("about:blank")
    page.evaluate(CLIENT.read_text())
    page.evaluate(_HARNESS.replace("OFFSET", str(offset_ms)))


@pytest.mark.parametrize("offset_ms", [-600_000, 0, 1_200_000], ids=["10-min-slow", "right", "20-min-fast"])
def test_realtime_client_refreshes_a_minute_before_the_token_expires_whatever_the_page_clock(
    page: Page, offset_ms: int
) -> None:
    # By its own clock, a page 10 minutes slow refreshed 10 minutes after its token had expired (the frames between
    # lost), and one 20 minutes fast took every token for expired and never connected.
    _client_with_clock_off(page, offset_ms)

    page.wait_for("window.sockets.length === 1 && window.timers.length === 2", timeout=10)
    assert page.evaluate("window.sockets[0].url") == "ws://realtime.invalid/?token=first"
    refresh_in = page.evaluate("window.timers[0].ms")
    assert 839_000 <= refresh_in <= 840_000

    # The refresh, and the service's answer over the connection: the next one is counted from that answer.
    page.evaluate("window.timers[0].run()")
    assert page.evaluate("window.sockets[0].sent") == [json.dumps({"action": "refresh"}, separators=(",", ":"))]
    page.evaluate(
        "window.sockets[0].onmessage({data: JSON.stringify(Object.assign({type: 'token'}, window.answer('second')))})"
    )
    assert 839_000 <= page.evaluate("window.timers[window.timers.length - 1].ms") <= 840_000


def _refresh_in_after(page: Page, frame: str) -> int:
    """Connect the client on a right clock, give it a token ``frame`` (a JavaScript object expression) over its
    connection, and return in how many ms it then schedules its refresh."""
    _client_with_clock_off(page, 0)
    page.wait_for("window.sockets.length === 1 && window.timers.length === 2", timeout=10)
    page.evaluate(f"window.sockets[0].onmessage({{data: JSON.stringify({frame})}})")
    refresh_in: int = page.evaluate("window.timers[window.timers.length - 1].ms")
    return refresh_in


def test_realtime_client_answer_kept_a_while_by_its_backend_counts_from_expires_at(page: Page) -> None:
    # A backend that caches tokens hands over an answer with 3 of its 15 minutes left: counted from expires_in, the
    # refresh came 11 minutes after the token expired.
    frame = "{type: 'token', token: 'kept', expires_in: 900, expires_at: new Date(Date.now() + 180000).toISOString()}"

    assert 119_000 <= _refresh_in_after(page, frame) <= 120_000


def test_realtime_client_answer_without_expires_in_counts_from_expires_at(page: Page) -> None:
    # A backend that hands the page only the older fields: expires_at, read on the page's clock.
    frame = "{type: 'token', token: 'third', expires_at: new Date(Date.now() + 300000).toISOString()}"

    assert 239_000 <= _refresh_in_after(page, frame) <= 240_000


def test_realtime_client_pings_every_five_minutes_so_its_connection_never_closes_idle(page: Page) -> None:
    # API Gateway closes a connection idle for 10 minutes; the client sent nothing until its refresh at 14, so a quiet
    # page reconnected every 10 minutes, and a notification sent meanwhile found no connection.
    _client_with_clock_off(page, 0)
    page.wait_for("window.sockets.length === 1 && window.timers.length === 2", timeout=10)
    assert page.evaluate("window.timers[1].ms") == 300_000

    page.evaluate("window.timers[1].run()")

    assert page.evaluate("window.sockets[0].sent") == [json.dumps({"action": "ping"}, separators=(",", ":"))]
    assert page.evaluate("window.timers.length") == 3
    assert page.evaluate("window.timers[2].ms") == 300_000


def test_realtime_client_shows_each_integrations_frame_of_a_notification_once(page: Page) -> None:
    # A topic's two browser integrations reaching one page send two frames of one notification: the client dropped
    # the second by its notification id, though the ledger said both delivered.
    _client_with_clock_off(page, 0)
    page.wait_for("window.sockets.length === 1", timeout=10)
    frames = [
        {"notification_id": "n-1", "delivery_key": "everyone", "text": "New order 42"},
        {"notification_id": "n-1", "delivery_key": "ops-alice", "text": "Ops: order 42 needs packing"},
        {"notification_id": "n-1", "delivery_key": "everyone", "text": "New order 42"},  # a retried delivery
    ]
    for frame in frames:
        page.evaluate(f"window.sockets[0].onmessage({{data: {json.dumps(json.dumps(frame))}}})")

    assert page.evaluate("window.shown") == ["New order 42", "Ops: order 42 needs packing"]


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


def test_realtime_connection_pings_and_refreshes_its_token_on_the_local_stack(stack: Stack) -> None:
    # Through the stack's gateway and the websocket function's own role: a refresh writes the connection's item with
    # a condition (PutItem), which that role was not allowed, and every refresh answered an error frame.
    import asyncio

    import websockets

    reply = stack.publisher("POST", "/v1/realtime/tokens", {"user_id": "e2e", "topics": [], "ttl_seconds": 60})
    assert reply.status == 201, reply.body

    async def talk() -> tuple[str | None, dict[str, Any]]:
        async with websockets.connect(f"{reply.body['url']}?token={reply.body['token']}") as socket:
            await socket.send(json.dumps({"action": "ping"}))
            try:
                after_ping = str(await asyncio.wait_for(socket.recv(), 1))
            except TimeoutError:
                after_ping = None
            await socket.send(json.dumps({"action": "refresh"}))
            frame: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), 10))
            return after_ping, frame

    after_ping, frame = asyncio.run(talk())

    assert after_ping is None
    assert (frame["type"], frame["expires_in"]) == ("token", 60)
