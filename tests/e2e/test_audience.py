"""The audience on the local stack, over HTTP only (issue 12): a user's device gets a send now, a publish to a topic
it subscribed to, and one scheduled seconds ahead, all ``delivered``; another scheduled send is cancelled and never
sent.

The local stack plays the ``cron`` function's ``rate(1 minute)`` every 5 s here (``LOCAL_RATE_SECONDS``, as the e2e
stack sets it), so a send due in 20 s goes out at the first run after that. The scheduled send is made first and
everything else happens while it waits.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from infra.local.config import ACCOUNT_ID
from tests.e2e.conftest import START_TIMEOUT, Reply, Stack

pytestmark = pytest.mark.e2e

# The SNS platform application infra/local/seed.py creates in moto (region of the local stage); no app is seeded
# in the audience, so the test puts its own on it.
SEEDED_APPLICATION = f"arn:aws:sns:us-east-1:{ACCOUNT_ID}:app/GCM/notify-local-demo"
# Due in 20 s, sent by the first cron run after that (runs are 5 s apart), then expanded and delivered.
SCHEDULED_TIMEOUT = 60.0
NOW_TIMEOUT = 30.0
# Not UTC on purpose: `at` with an offset is one instant, whatever the offset.
OFFSET = timezone(timedelta(hours=2))


def _delivered(deliveries: list[dict[str, Any]]) -> bool:
    return bool(deliveries) and all(item["status"] == "delivered" for item in deliveries)


def _send(stack: Stack, user_id: str, text: str, at: datetime | None = None) -> Reply:
    body: dict[str, Any] = {"to": {"user_ids": [user_id]}, "content": {"text": text}, "channels": ["push"]}
    if at is not None:
        body["at"] = at.isoformat()
    reply = stack.publisher("POST", "/v1/sends", body)
    assert reply.status == 202, reply.body
    scheduled = reply.body.get("schedule_id")
    location = f"/v1/schedules/{scheduled}" if at is not None else f"/v1/notifications/{reply.body['notification_id']}"
    assert reply.headers["location"] == location
    return reply


def _schedule(stack: Stack, schedule_id: str) -> dict[str, Any]:
    reply = stack.publisher("GET", f"/v1/schedules/{schedule_id}")
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.body
    return body


def _wait_sent(stack: Stack, schedule_id: str, timeout: float) -> dict[str, Any]:
    """Poll the schedule (once a second) until a cron run has handed it over."""
    deadline = time.monotonic() + timeout
    while True:
        schedule = _schedule(stack, schedule_id)
        if schedule["status"] == "sent":
            return schedule
        if schedule["status"] in {"failed", "cancelled"} or time.monotonic() > deadline:
            pytest.fail(f"schedule {schedule_id} not sent after {timeout} s: {schedule}")
        time.sleep(1.0)


def _pushed(stack: Stack, text: str) -> list[dict[str, Any]]:
    state = stack.call("GET", "/_local/api/state").body
    return [item for item in state["channels"]["push"] if text in str(item["text"])]


# The wait for the cron (every 5 s: LOCAL_RATE_SECONDS) is about 20 s; run alone, the test's time also holds the
# session stack's start.
@pytest.mark.timeout(START_TIMEOUT + SCHEDULED_TIMEOUT + 2 * NOW_TIMEOUT)
def test_device_gets_a_send_now_and_one_scheduled_ahead_and_a_cancelled_one_never(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:10]
    app, user_id = f"e2e-app-{tag}", f"e2e-user-{tag}"
    texts = {name: f"{name} {tag}" for name in ("now", "scheduled", "cancelled", "published")}

    created_app = stack.admin("PUT", f"/v1/apps/{app}", {"platform_application_arn": SEEDED_APPLICATION})
    assert created_app.status == 201, created_app.body
    try:
        user = stack.publisher("PUT", f"/v1/users/{user_id}", {"timezone": "Europe/Paris", "data": {"e2e": tag}})
        assert user.status == 201, user.body
        device = stack.publisher("POST", f"/v1/users/{user_id}/devices", {"app": app, "token": f"e2e-token-{tag}"})
        assert device.status == 201, device.body
        assert (device.body["app"], device.body["platform"], device.body["enabled"]) == (app, "GCM", True)
        delivery_key = f"push:{user_id}:{device.body['device_id']}"

        # 20 s ahead, made first so that the rest runs while it waits for the cron.
        at = (datetime.now(UTC) + timedelta(seconds=20)).replace(microsecond=0).astimezone(OFFSET)
        scheduled = _send(stack, user_id, texts["scheduled"], at)
        scheduled_at = time.monotonic()
        assert scheduled.body["status"] == "scheduled", scheduled.body
        schedule_id = scheduled.body["schedule_id"]
        schedule = _schedule(stack, schedule_id)
        assert schedule["status"] == "scheduled", schedule
        assert datetime.fromisoformat(schedule["fire_at"]) == at
        assert schedule["notification_id"] == scheduled.body["notification_id"]

        # Another, a few minutes ahead, cancelled: 204, shown cancelled, cancelling again is no error.
        doomed = _send(stack, user_id, texts["cancelled"], datetime.now(OFFSET) + timedelta(minutes=5))
        doomed_id = doomed.body["schedule_id"]
        cancelled = stack.publisher("DELETE", f"/v1/schedules/{doomed_id}")
        assert cancelled.status == 204, cancelled.body
        assert _schedule(stack, doomed_id)["status"] == "cancelled"
        again = stack.publisher("DELETE", f"/v1/schedules/{doomed_id}")
        assert again.status == 204, again.body
        listed = stack.publisher("GET", "/v1/schedules?status=cancelled")
        assert listed.status == 200, listed.body
        assert doomed_id in [item["schedule_id"] for item in listed.body["schedules"]], listed.body

        # Now: queued, then delivered to the device through its SNS endpoint.
        now = _send(stack, user_id, texts["now"])
        assert now.body["status"] == "queued", now.body
        assert "schedule_id" not in now.body
        status = stack.wait_for_status(now.body["notification_id"], _delivered, NOW_TIMEOUT)
        assert [item["delivery_key"] for item in status["deliveries"]] == [delivery_key]
        assert status["deliveries"][0]["provider_message_id"], status
        assert status["summary"].get("delivered") == 1, status
        assert _pushed(stack, texts["now"]), "the push is not among the SNS endpoint's messages"

        # A publish to a topic the user subscribed to reaches the device, under the publish's notification.
        followers = {"name": "followers", "type": "subscribers", "model": {"text": "Order $order shipped"}}
        channel, topic, topic_hash = stack.create_topic([followers])
        subscribed = stack.publisher("PUT", f"/v1/users/{user_id}/subscriptions/{channel}/{topic}")
        assert subscribed.status == 204, subscribed.body
        published = stack.publish(channel, topic, topic_hash, {"order": texts["published"]})
        assert published.status == 200, published.body
        status = stack.wait_for_status(
            published.headers["x-notification-id"], lambda rows: len(rows) == 2 and _delivered(rows), NOW_TIMEOUT
        )
        assert [item["delivery_key"] for item in status["deliveries"]] == ["followers", delivery_key]
        assert status["summary"] == {"delivered": 2}, status
        assert _pushed(stack, f"Order {texts['published']} shipped")

        # The scheduled one: handed over by a cron run once due, never before (`sent`), then delivered.
        sent = _wait_sent(stack, schedule_id, SCHEDULED_TIMEOUT - (time.monotonic() - scheduled_at))
        assert datetime.fromisoformat(sent["sent_at"]) >= at, sent
        status = stack.wait_for_status(scheduled.body["notification_id"], _delivered, NOW_TIMEOUT)
        assert [item["delivery_key"] for item in status["deliveries"]] == [delivery_key]
        assert datetime.fromisoformat(status["deliveries"][0]["updated_at"]) >= at
        assert _pushed(stack, texts["scheduled"]), "the scheduled push is not among the SNS endpoint's messages"
        refused = stack.publisher("DELETE", f"/v1/schedules/{schedule_id}")
        assert refused.status == 409, refused.body
        assert list(refused.body) == ["message"], refused.body

        # A cron run went by: the cancelled send stayed cancelled and reached nobody.
        assert _schedule(stack, doomed_id)["status"] == "cancelled"
        assert stack.publisher("GET", f"/v1/notifications/{doomed.body['notification_id']}").status == 404
        assert not _pushed(stack, texts["cancelled"])
    finally:
        stack.publisher("DELETE", f"/v1/users/{user_id}")
        stack.admin("DELETE", f"/v1/apps/{app}")


@pytest.mark.timeout(START_TIMEOUT + 2 * NOW_TIMEOUT)
def test_send_by_email_and_telegram_goes_through_the_demo_topic_on_the_default_stack(stack: Stack) -> None:
    # The local stage's sender topic is the seeded demo topic: without it, such a send failed saying none was set.
    tag = uuid.uuid4().hex[:10]
    user_id, text = f"e2e-mail-{tag}", f"mail {tag}"
    user = stack.publisher(
        "PUT", f"/v1/users/{user_id}", {"timezone": "UTC", "email": f"{tag}@example.com", "telegram_chat_id": "4243"}
    )
    assert user.status == 201, user.body
    try:
        body = {"to": {"user_ids": [user_id]}, "content": {"text": text, "subject": f"Hi {tag}"}}
        reply = stack.publisher("POST", "/v1/sends", {**body, "channels": ["email", "telegram"]})
        assert reply.status == 202, reply.body

        status = stack.wait_for_status(
            reply.body["notification_id"], lambda rows: len(rows) == 2 and _delivered(rows), NOW_TIMEOUT
        )

        assert [item["delivery_key"] for item in status["deliveries"]] == [f"email:{user_id}", f"telegram:{user_id}"]
        channels = stack.call("GET", "/_local/api/state").body["channels"]
        assert [item for item in channels["email"] if text in str(item["text"])], channels["email"]
        assert [item for item in channels["telegram"] if text in str(item["text"])], channels["telegram"]
    finally:
        stack.publisher("DELETE", f"/v1/users/{user_id}")
