"""The service run by ``make run``, driven over HTTP only: publish, deliver, retry, dead letters, and the refusals."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

RETRY_TIMEOUT = 45.0


def _webhook(stack: Stack, name: str, query: str = "") -> dict[str, Any]:
    return {
        "name": "hook",
        "type": "webhook",
        "target": {"url": f"{stack.receiver}/webhook/{name}{query}"},
        "model": "Hi $who",
    }


def _wait_all(stack: Stack, ids: list[str], status: str, timeout: float) -> None:
    for notification_id in ids:
        stack.wait_for_status(notification_id, _all(status), max(1.0, timeout))


def _all(status: str) -> Any:
    return lambda deliveries: bool(deliveries) and all(item["status"] == status for item in deliveries)


def _received(stack: Stack, path: str, timeout: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [record for record in stack.records() if record["path"] == path]
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"nothing arrived at {path}")


def test_local_stack_publish_delivers_to_receiver_and_status_says_delivered(stack: Stack) -> None:
    channel, topic, topic_hash = stack.create_topic([_webhook(stack, f"ok-{id(stack)}")])

    published = stack.publish(channel, topic, topic_hash, {"who": "Ada"})

    assert published.status == 200, published.body
    notification_id = published.headers["x-notification-id"]
    assert published.headers["location"] == f"/v1/notifications/{notification_id}"
    records = _received(stack, f"/webhook/ok-{id(stack)}")
    assert "Hi Ada" in json.dumps(records[0]["body"])
    assert records[0]["headers"]["X-Notification-Id"] == notification_id
    status = stack.wait_for_status(notification_id, _all("delivered"), 15)
    assert status["deliveries"][0]["attempts"] == 1


def test_local_stack_receiver_failing_once_ends_delivered_after_a_retry(stack: Stack) -> None:
    channel, topic, topic_hash = stack.create_topic([_webhook(stack, "flaky", "?status=500,200")])

    published = stack.publish(channel, topic, topic_hash, {"who": "Grace"})

    status = stack.wait_for_status(published.headers["x-notification-id"], _all("delivered"), RETRY_TIMEOUT)
    assert status["deliveries"][0]["attempts"] == 2
    assert [record["status"] for record in stack.records() if record["target"] == "flaky"][:2] == [500, 200]


def test_local_stack_receiver_failing_forever_ends_dead_in_dead_letters(stack: Stack) -> None:
    channel, topic, topic_hash = stack.create_topic([_webhook(stack, f"down-{id(stack)}", "?status=500")])

    published = stack.publish(channel, topic, topic_hash, {"who": "Linus"})

    notification_id = published.headers["x-notification-id"]
    stack.wait_for_status(notification_id, _all("dead"), RETRY_TIMEOUT)
    deadline = time.monotonic() + 15
    while True:
        letters = stack.admin("GET", "/v1/dead-letters")
        assert letters.status == 200, letters.body
        if notification_id in str(letters.body):
            break
        assert time.monotonic() < deadline, f"{notification_id} not in {letters.body}"
        time.sleep(0.5)


def test_local_stack_unknown_topic_is_404(stack: Stack) -> None:
    reply = stack.publish("e2e", "no-such-topic", "whatever", {"who": "nobody"})

    assert reply.status == 404
    assert "message" in reply.body


def test_local_stack_wrong_api_key_is_refused(stack: Stack) -> None:
    channel, topic, topic_hash = stack.create_topic([_webhook(stack, "never")])

    wrong = stack.call(
        "POST",
        f"/v1/notifications/{channel}/{topic}",
        {"metadata": {}},
        {"x-api-key": "wrong", "x-topic-hash-x": topic_hash},
    )
    missing = stack.call(
        "POST", f"/v1/notifications/{channel}/{topic}", {"metadata": {}}, {"x-topic-hash-x": topic_hash}
    )

    assert (wrong.status, wrong.body) == (403, {"message": "Forbidden"})
    assert (missing.status, missing.body) == (403, {"message": "Forbidden"})


def test_local_stack_wrong_topic_hash_is_403(stack: Stack) -> None:
    channel, topic, _ = stack.create_topic([_webhook(stack, "never")])

    reply = stack.publish(channel, topic, "not-the-hash", {"who": "Eve"})

    assert reply.status == 403
    assert "message" in reply.body


def test_local_stack_admin_routes_refuse_the_publisher_key(stack: Stack) -> None:
    as_key = stack.publisher("GET", "/v1/channels/e2e/topics")
    as_bearer = stack.call("GET", "/v1/channels/e2e/topics", headers={"Authorization": f"Bearer {stack.api_key}"})
    as_admin = stack.admin("GET", "/v1/channels/e2e/topics")

    assert (as_key.status, as_key.body) == (401, {"message": "Unauthorized"})
    assert as_bearer.status == 403
    assert as_admin.status == 200


def test_local_stack_health_needs_no_key(stack: Stack) -> None:
    reply = stack.call("GET", "/v1/health")

    assert (reply.status, reply.body) == (200, {"status": "ok"})


def test_local_stack_unknown_route_is_missing_authentication_token(stack: Stack) -> None:
    reply = stack.call("GET", "/v1/nothing-here")

    assert (reply.status, reply.body) == (403, {"message": "Missing Authentication Token"})


def test_local_stack_demo_topic_delivers_on_every_channel(stack: Stack) -> None:
    rotated = stack.admin("POST", "/v1/channels/demo/topics/welcome/rotate-hash")
    assert rotated.status == 200, rotated.body

    published = stack.publish("demo", "welcome", rotated.body["topic_hash"], {"name": "Ada"})

    assert published.status == 200, published.body
    assert set(published.body) == {"email", "slack", "telegram", "webhook", "push"}
    stack.wait_for_status(published.headers["x-notification-id"], _all("delivered"), 15)
    state = stack.call("GET", "/_local/api/state").body
    for channel in ("email", "slack", "telegram", "webhook", "push"):
        assert any("Ada" in str(item["text"]) or "Ada" in str(item["title"]) for item in state["channels"][channel]), (
            channel
        )


def test_local_stack_burst_to_rate_limited_receiver_ends_all_delivered(stack: Stack) -> None:
    name = f"burst-{id(stack)}"
    hook = {**_webhook(stack, name, "?rate=2"), "rate_per_second": 2}
    channel, topic, topic_hash = stack.create_topic([hook])

    replies = [stack.publish(channel, topic, topic_hash, {"who": f"n{n}"}) for n in range(12)]

    assert {reply.status for reply in replies} == {200}
    _wait_all(stack, [reply.headers["x-notification-id"] for reply in replies], "delivered", 60)
    records = [record for record in stack.records() if record["target"] == f"{name}"]
    accepted = [record for record in records if record["status"] == 200]
    assert len(accepted) == 12
    # Paced: a 429 only for a request held up on its way (a loaded machine's jitter), never one per retry as unpaced.
    assert sum(record["status"] == 429 for record in records) <= len(accepted) // 4


def test_local_stack_outage_longer_than_old_budget_ends_delivered(stack: Stack) -> None:
    # The old budget was four backoffs of at most 1, 2, 4 and 8 s; the receiver is down for longer than all of them.
    name = f"outage-{id(stack)}"
    channel, topic, topic_hash = stack.create_topic([_webhook(stack, name, "?down=16")])

    replies = [stack.publish(channel, topic, topic_hash, {"who": f"n{n}"}) for n in range(3)]

    _wait_all(stack, [reply.headers["x-notification-id"] for reply in replies], "delivered", 90)
    records = [record for record in stack.records() if record["target"] == name]
    assert {record["status"] for record in records} == {503, 200}
    assert sum(record["status"] == 200 for record in records) == 3
