"""Unit tests of the expansion worker's logic (core/audience/expansion.py) on in-memory fakes: recipient deliveries per
channel, skipped recipients, pages and the resume cursor, per-platform push payloads."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest

from core.audience.expansion import (
    BUSY_DELAY_SECONDS,
    NO_DEVICE,
    NO_EMAIL,
    Senders,
    expand_batch,
    expand_send,
    expand_subscribers,
)
from core.audience.models import AppRequest, UserRequest
from core.audience.sends import ExpansionBatchJob, ExpansionJob, NewSend, StoredSend, SubscribersJob
from core.errors import UpstreamError
from core.ledger import NotificationRecord
from core.models import DeliveryMessage, DeliveryStatus, Integration, IntegrationType
from core.queue import DeliveryQueue
from core.times import epoch_time, iso_time
from tests.fakes.audience import FakeExpansionQueue, FakeSendLedger, FakeSendStore, endpoint
from tests.fakes.sqs import FakeSqsClient

GCM_APP = "arn:aws:sns:us-east-1:123456789012:app/GCM/android"
APNS_APP = "arn:aws:sns:us-east-1:123456789012:app/APNS/ios"
SENDERS = Senders(
    email=Integration(
        name="mail",
        type=IntegrationType.EMAIL,
        model={},
        target={"to": ["x@example.com"], "from": "no-reply@example.com"},
    ),
    telegram=Integration(
        name="bot", type=IntegrationType.TELEGRAM, model="$text", target={"chat_id": "1"}, credentials_ref="/p/bot"
    ),
)


class World:
    """A fake store with users and devices, a fake ledger, a delivery queue on a fake SQS client."""

    def __init__(self) -> None:
        self.store = FakeSendStore()
        self.ledger = FakeSendLedger()
        self.sqs = FakeSqsClient(key=lambda body: json.loads(body)["delivery_key"])
        self.queue = DeliveryQueue(self.sqs, "https://queue")
        self.expansion = FakeExpansionQueue()
        self.store.put_app("android", AppRequest(platform_application_arn=GCM_APP))
        self.store.put_app("ios", AppRequest(platform_application_arn=APNS_APP))

    def user(self, user_id: str, devices: int = 0, **fields: Any) -> None:
        self.store.put_user(user_id, UserRequest(timezone=fields.pop("timezone", "UTC"), **fields))
        for index in range(devices):
            app = "android" if index % 2 == 0 else "ios"
            arn = f"arn:aws:sns:us-east-1:123456789012:endpoint/{app}/{user_id}-{index}"
            self.store.register_device(user_id, app, f"token-{user_id}-{index}", endpoint(arn))

    def send(self, target: dict[str, Any], channels: list[str], **content: Any) -> StoredSend:
        stored, _ = self.store.create_send(NewSend("n-1", target, {"text": "Hi", **content}, channels))
        return stored

    def run(self, send: StoredSend, **options: Any) -> Any:
        job = ExpansionJob(send_id=send.send_id, notification_id=send.notification_id, caller="k1")
        options.setdefault("senders", lambda: SENDERS)
        return expand_send(job, self.store, self.ledger, self.queue, self.expansion, **options)

    def messages(self) -> list[DeliveryMessage]:
        return [DeliveryMessage.model_validate_json(body) for body in self.sqs.sent.values()]


@pytest.fixture
def world() -> World:
    return World()


def test_expand_send_push_one_delivery_per_enabled_device(world: World) -> None:
    world.user("u1", devices=2)
    world.user("u2", devices=1)
    world.store.disable_device("arn:aws:sns:us-east-1:123456789012:endpoint/ios/u1-1")

    report = world.run(world.send({"user_ids": ["u1", "u2"]}, ["push"]))

    keys = sorted(message.delivery_key for message in world.messages())
    assert [key.rsplit(":", 1)[0] for key in keys] == ["push:u1", "push:u2"]
    assert (report.enqueued, report.skipped, report.status) == (2, 0, "expanded")


def test_expand_send_push_message_targets_the_device_endpoint_with_its_recipient(world: World) -> None:
    world.user("u1", devices=1)
    [device] = world.store.list_devices("u1")

    world.run(world.send({"user_ids": ["u1"]}, ["push"]))

    [message] = world.messages()
    assert message.delivery_key == f"push:u1:{device.device_id}"
    assert message.integration.target == {"endpoint_arn": device.endpoint_arn}
    assert message.recipient is not None
    assert (message.recipient.user_id, message.recipient.device_id) == ("u1", device.device_id)


def test_expand_send_recipient_without_address_skipped_and_counted(world: World) -> None:
    world.user("u1", devices=1, email="ada@example.com")
    world.user("u2")

    report = world.run(world.send({"user_ids": ["u1", "u2"]}, ["push", "email"], subject="S"))

    assert (report.enqueued, report.skipped) == (2, 2)
    assert world.ledger.rows[("n-1", "push:u2")][0] is DeliveryStatus.SKIPPED
    assert world.ledger.rows[("n-1", "push:u2")][2] == NO_DEVICE
    assert world.ledger.rows[("n-1", "email:u2")][2] == NO_EMAIL
    assert world.ledger.records["n-1"].delivery_count == 4


def test_expand_send_email_and_telegram_through_the_sender_integrations(world: World) -> None:
    world.user("u1", email="ada@example.com", telegram_chat_id="42")

    world.run(world.send({"user_ids": ["u1"]}, ["email", "telegram"], subject="S"))

    by_key = {message.delivery_key: message for message in world.messages()}
    email, telegram = by_key["email:u1"], by_key["telegram:u1"]
    assert email.integration.target == {"to": ["ada@example.com"], "from": "no-reply@example.com"}
    assert (email.content.subject, email.content.text) == ("S", "Hi")
    assert telegram.integration.target == {"chat_id": "42"}
    assert telegram.integration.credentials_ref == "/p/bot"


def test_expand_send_email_without_sender_fails_the_send_enqueuing_nothing(world: World) -> None:
    world.user("u1", email="ada@example.com")
    send = world.send({"user_ids": ["u1"]}, ["email"], subject="S")

    report = world.run(send, senders=Senders)

    assert (report.status, world.sqs.sent) == ("failed", {})
    assert "email" in (world.store.get_send(send.send_id).last_error or "")
    assert world.ledger.records["n-1"].error == world.store.get_send(send.send_id).last_error


def test_expand_send_push_payloads_identical_for_every_recipient_and_encoded_once(world: World) -> None:
    world.user("u1", devices=1)
    world.user("u2", devices=1)

    world.run(world.send({"user_ids": ["u1", "u2"]}, ["push"], subject="Title"))

    from core.channels.push import push_payload

    first, second = (json.loads(push_payload(message.content)) for message in world.messages())
    assert first == second
    assert json.loads(first["GCM"]) == {"fcmV1Message": {"message": {"notification": {"title": "Title", "body": "Hi"}}}}
    assert json.loads(first["APNS"]) == {"aps": {"alert": {"title": "Title", "body": "Hi"}}}
    assert json.loads(first["APNS_SANDBOX"]) == json.loads(first["APNS"])
    assert first["default"] == "Hi"


def test_expand_send_push_overrides_replace_a_platform_payload(world: World) -> None:
    world.user("u1", devices=1)

    world.run(world.send({"user_ids": ["u1"]}, ["push"], push={"APNS": {"aps": {"badge": 3}}}))

    from core.channels.push import push_payload

    [message] = world.messages()
    payload = json.loads(push_payload(message.content))
    assert json.loads(payload["APNS"]) == {"aps": {"badge": 3}}
    assert "fcmV1Message" in json.loads(payload["GCM"])


def test_expand_send_pages_move_the_cursor_and_the_count(world: World) -> None:
    for index in range(5):
        world.user(f"u{index}", devices=1)

    report = world.run(world.send({"where": {"field": "timezone", "eq": "UTC"}}, ["push"]), page_size=2)

    assert report.pages == 3
    assert [(cursor, count) for _send, cursor, count in world.store.advances] == [("u1", 2), ("u3", 4), ("u4", 5)]


def test_expand_send_resumes_after_the_cursor_without_duplicates(world: World) -> None:
    for index in range(4):
        world.user(f"u{index}", devices=1)
    send = world.send({"user_ids": [f"u{index}" for index in range(4)]}, ["push"])
    world.store.start_expansion(send.send_id, "died", 120)
    world.store.advance_send(send.send_id, "u1", 2, "died", 120)
    world.store.expire_leases()

    report = world.run(world.store.get_send(send.send_id), page_size=10)

    assert sorted(message.recipient.user_id for message in world.messages() if message.recipient) == ["u2", "u3"]
    assert (report.enqueued, world.ledger.records["n-1"].delivery_count) == (2, 4)


def test_expand_send_out_of_time_hands_the_rest_to_a_new_job(world: World) -> None:
    for index in range(4):
        world.user(f"u{index}", devices=1)
    send = world.send({"user_ids": [f"u{index}" for index in range(4)]}, ["push"])

    report = world.run(send, page_size=2, time_left=lambda: 0.0)

    assert (report.handed_over, report.pages, len(world.expansion.jobs)) == (True, 1, 1)
    assert world.store.get_send(send.send_id).expanded_through == "u1"


def test_expand_send_handed_over_job_carries_the_lease_and_finishes_the_send(world: World) -> None:
    for index in range(4):
        world.user(f"u{index}", devices=1)
    send = world.send({"user_ids": [f"u{index}" for index in range(4)]}, ["push"])
    world.run(send, page_size=2, time_left=lambda: 0.0)
    [handed] = world.expansion.jobs
    held, _until = world.store.leases[send.send_id]

    report = expand_send(handed, world.store, world.ledger, world.queue, world.expansion, page_size=2)  # type: ignore[arg-type]

    assert getattr(handed, "lease", None) == held
    assert (report.status, report.enqueued) == ("expanded", 2)
    assert world.store.leases == {}
    assert sorted(message.recipient.user_id for message in world.messages() if message.recipient) == [
        "u0",
        "u1",
        "u2",
        "u3",
    ]


def test_expand_send_held_by_another_run_goes_back_on_the_queue_with_a_delay(world: World) -> None:
    world.user("u1", devices=1)
    send = world.send({"user_ids": ["u1"]}, ["push"])
    world.store.start_expansion(send.send_id, "other-run", 120)

    report = world.run(send, page_size=10)

    assert (report.status, report.handed_over, report.enqueued) == ("busy", True, 0)
    assert world.expansion.delays == [BUSY_DELAY_SECONDS]
    assert world.messages() == []


def test_expand_send_queue_refusal_raises_without_moving_the_cursor(world: World) -> None:
    world.user("u1", devices=1)
    send = world.send({"user_ids": ["u1"]}, ["push"])
    world.sqs.error_code = "InternalError"

    with pytest.raises(UpstreamError):
        world.run(send)

    assert world.store.get_send(send.send_id).expanded_through is None


def test_expand_send_expanded_send_again_does_nothing(world: World) -> None:
    world.user("u1", devices=1)
    send = world.send({"user_ids": ["u1"]}, ["push"])
    world.run(send)

    report = world.run(send)

    assert (report.status, len(world.sqs.sent)) == ("expanded", 1)


def test_expand_send_cancelled_send_enqueues_nothing_and_creates_no_record(world: World) -> None:
    # A send cancelled after its job was queued: expanded anyway, its audience would get what was called off.
    world.user("u1", devices=1)
    send = world.send({"user_ids": ["u1"]}, ["push"])
    world.store.sends[send.send_id] = replace(send, status="cancelled")

    report = world.run(send)

    assert (report.status, report.done, world.sqs.sent, world.ledger.records) == ("cancelled", True, {}, {})


def test_expand_send_zones_keep_only_their_users(world: World) -> None:
    world.user("paris", devices=1, timezone="Europe/Paris")
    world.user("tokyo", devices=1, timezone="Asia/Tokyo")
    send = world.send({"user_ids": ["paris", "tokyo"]}, ["push"])
    job = ExpansionJob(send_id=send.send_id, notification_id="n-1", zones=["Asia/Tokyo"])

    expand_send(job, world.store, world.ledger, world.queue, world.expansion)

    assert [message.recipient.user_id for message in world.messages() if message.recipient] == ["tokyo"]


def test_expand_send_later_zone_window_opens_at_its_hand_off_not_at_the_record(world: World) -> None:
    world.user("honolulu", devices=1, timezone="Pacific/Honolulu")
    send = world.send({"user_ids": ["honolulu"]}, ["push"])
    # The record the first zone's hand-off wrote a day before: the later zone's run finds it and keeps its time.
    first_hand_off = iso_time(time.time() - 24 * 3600)
    world.ledger.create_notification(NotificationRecord("n-1", "send", "audience", "send", first_hand_off, "k1", 0))
    job = ExpansionJob(send_id=send.send_id, notification_id="n-1", zones=["Pacific/Honolulu"])
    before = time.time()

    expand_send(job, world.store, world.ledger, world.queue, world.expansion)

    [message] = world.messages()
    assert message.created_at == first_hand_off
    opened = epoch_time(message.window_start)
    assert opened is not None
    assert opened >= before - 0.001


def test_expand_send_run_clock_dates_a_new_record_and_every_window(world: World) -> None:
    world.user("u1", devices=1)
    world.user("u2", devices=1)
    ticks = (f"2026-03-29T{hour:02d}:00:00.000Z" for hour in range(7, 24))

    world.run(world.send({"user_ids": ["u1", "u2"]}, ["push"]), page_size=1, now=lambda: next(ticks))

    assert world.ledger.records["n-1"].created_at == "2026-03-29T07:00:00.000Z"
    assert {(m.created_at, m.window_start) for m in world.messages()} == {("2026-03-29T07:00:00.000Z",) * 2}
    # Each page's audience as read then: a user deleted and created again before it gets what it expanded.
    assert sorted(str(m.expanded_at) for m in world.messages()) == [
        "2026-03-29T08:00:00.000Z",
        "2026-03-29T09:00:00.000Z",
    ]


def test_expand_send_topic_subscribers_recorded_under_the_topic(world: World) -> None:
    world.user("u1", devices=1)
    world.user("u2", devices=1)
    world.store.put_subscription("u1", "news", "daily")

    world.run(world.send({"topic": "news/daily"}, ["push"]))

    [message] = world.messages()
    assert (message.channel, message.topic, message.recipient and message.recipient.user_id) == ("news", "daily", "u1")
    assert world.ledger.records["n-1"].source == "send"


def test_expand_send_deleted_segment_fails_the_send(world: World) -> None:
    send = world.send({"segment": "gone"}, ["push"])

    assert world.run(send).status == "failed"
    assert world.ledger.records["n-1"].error == "segment 'gone' no longer exists"


def test_expand_send_browser_delivery_per_user(world: World) -> None:
    world.user("u1")

    world.run(world.send({"user_ids": ["u1"]}, ["browser"]))

    [message] = world.messages()
    assert (message.delivery_key, message.integration.target) == ("browser:u1", {"user_id": "u1"})


def _batch(world: World, count: int) -> ExpansionBatchJob:
    jobs = []
    for index in range(count):
        world.user(f"b{index}", devices=1)
        send, _ = world.store.create_send(NewSend(f"n-b{index}", {"user_ids": [f"b{index}"]}, {"text": "x"}, ["push"]))
        jobs.append(ExpansionJob(send_id=send.send_id, notification_id=send.notification_id))
    return ExpansionBatchJob(jobs=jobs)


def test_expand_batch_expands_every_send_of_the_batch(world: World) -> None:
    reports = expand_batch(_batch(world, 3), world.store, world.ledger, world.queue, world.expansion)

    assert [report.status for report in reports] == ["expanded"] * 3
    assert sorted(message.notification_id for message in world.messages()) == ["n-b0", "n-b1", "n-b2"]


def test_expand_batch_send_held_elsewhere_waits_alone_and_the_rest_goes_on(world: World) -> None:
    batch = _batch(world, 3)
    world.store.start_expansion(batch.jobs[1].send_id, "other-run", 120)

    reports = expand_batch(batch, world.store, world.ledger, world.queue, world.expansion)

    assert [report.status for report in reports] == ["expanded", "busy", "expanded"]
    assert world.expansion.jobs == [batch.jobs[1]]


def test_expand_batch_out_of_time_hands_the_sends_not_started_back_together(world: World) -> None:
    batch = _batch(world, 4)
    left = iter([1.0, 1.0, 0.0])

    reports = expand_batch(
        batch, world.store, world.ledger, world.queue, world.expansion, time_left=lambda: next(left, 0.0)
    )

    assert len(reports) == 1
    assert world.expansion.jobs == [ExpansionBatchJob(jobs=batch.jobs[1:])]


def test_expand_batch_send_that_no_longer_exists_is_left_and_the_others_expanded(world: World) -> None:
    batch = _batch(world, 2)
    gone = ExpansionJob(send_id="00000000-0000-4000-8000-000000000000", notification_id="n-gone")

    reports = expand_batch(
        ExpansionBatchJob(jobs=[gone, *batch.jobs]), world.store, world.ledger, world.queue, world.expansion
    )

    assert [report.status for report in reports] == ["dropped", "expanded", "expanded"]


def test_expand_subscribers_notification_without_record_dropped(world: World) -> None:
    job = SubscribersJob(notification_id="n-gone", content={"text": "Hi"}, channels=["push"])

    report = expand_subscribers(job, world.store, world.ledger, world.queue, world.expansion)

    assert (report.status, report.done, world.messages()) == ("dropped", True, [])


def test_expand_send_user_id_at_the_byte_limit_every_delivery_key_fits_a_dynamodb_sort_key(world: World) -> None:
    from core.audience.models import MAX_USER_ID_BYTES

    user_id = "\U0001f600" * (MAX_USER_ID_BYTES // 4)
    world.user(user_id, devices=1, email="ada@example.com", telegram_chat_id="42")
    world.user("u2")

    world.run(world.send({"user_ids": [user_id, "u2"]}, ["push", "email", "telegram", "browser"]))

    keys = [message.delivery_key for message in world.messages()] + [key for _id, key in world.ledger.rows]
    assert {key.split(":", 1)[0] for key in keys} == {"push", "email", "telegram", "browser"}
    assert max(len(key.encode()) for key in keys) <= 1024


ZONES = ["Asia/Tokyo", "Europe/Paris", "America/New_York"]


def _zone_world(world: World) -> StoredSend:
    for index in range(6):
        world.user(f"u{index}", devices=1, timezone=ZONES[index % 3])
    return world.send({"user_ids": [f"u{index}" for index in range(6)]}, ["push"])


def test_expand_send_zone_handoff_of_user_ids_reads_the_list_once_and_records_only_its_zones_pages(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    send = _zone_world(world)
    reads: list[list[str]] = []
    users_by_ids = world.store.users_by_ids

    def counted(ids: Any) -> Any:
        reads.append(list(ids))
        return users_by_ids(ids)

    monkeypatch.setattr(world.store, "users_by_ids", counted)
    job = ExpansionJob(send_id=send.send_id, notification_id="n-1", zones=ZONES)

    expand_send(job, world.store, world.ledger, world.queue, world.expansion, page_size=2)

    # The list once (3 reads of 2), then each zone's own 2 users (3 reads): not the whole list once per zone.
    assert len(reads) == 6
    assert len(world.store.advances) == 3
    assert len(world.messages()) == 6


def test_expand_send_zone_handoff_of_a_topic_asks_the_store_for_its_zones_only(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(6):
        world.user(f"u{index}", timezone=ZONES[index % 3])
        world.store.put_subscription(f"u{index}", "orders", "shipped")
    send = world.send({"topic": "orders/shipped"}, ["browser"])
    asked: list[Any] = []
    page = world.store.subscribers_page

    def counted(*args: Any) -> Any:
        asked.append(args[4:])
        return page(*args)

    monkeypatch.setattr(world.store, "subscribers_page", counted)
    job = ExpansionJob(send_id=send.send_id, notification_id="n-1", zones=ZONES)

    expand_send(job, world.store, world.ledger, world.queue, world.expansion, page_size=2)

    # Each page's query names one zone, which the store filters on: never the whole topic once per zone.
    assert {args[0][0] for args in asked} == set(ZONES)
    assert all(len(args[0]) == 1 for args in asked)
    assert sorted(message.delivery_key for message in world.messages()) == [f"browser:u{index}" for index in range(6)]


def test_expand_send_user_moved_to_a_zone_handed_over_later_enqueued_and_counted_once(world: World) -> None:
    send = _zone_world(world)
    tokyo = ExpansionJob(send_id=send.send_id, notification_id="n-1", zones=["Asia/Tokyo"])
    expand_send(tokyo, world.store, world.ledger, world.queue, world.expansion)
    world.user("u0", timezone="America/New_York")  # handed over with Tokyo; New York's clock comes 13 hours later
    new_york = ExpansionJob(send_id=send.send_id, notification_id="n-1", zones=["America/New_York"])

    report = expand_send(new_york, world.store, world.ledger, world.queue, world.expansion)

    assert report.enqueued == 2
    assert sorted(message.delivery_key.rsplit(":", 1)[0] for message in world.messages()) == [
        "push:u0",
        "push:u2",
        "push:u3",
        "push:u5",
    ]
    assert world.store.get_send(send.send_id).recipients == world.ledger.records["n-1"].delivery_count == 4
