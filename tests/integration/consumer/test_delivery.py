"""Integration tests of pacing and retries over time (consumer/delivery.py, consumer/retry.py): the consumer driven by
pollers on moto against a loopback receiver that limits its rate or goes down, with the clocks shortened by settings;
and the end of a run meeting a redrive.
"""

from __future__ import annotations

import gc
import itertools
import json
import time
from collections import Counter
from typing import Any

import pytest

from api.dead_letters import redrive
from core import clients
from core.clients import get_client, get_ledger
from core.ledger import DeliveryRow
from core.models import DeliveryStatus
from core.queue import DeadLetterQueue
from core.times import iso_time
from tests.integration.consumer.flow import (
    consume_once,
    delivery_message,
    enqueue,
    entry,
    is_final,
    on_queue,
    poll,
    put_credentials,
    statuses,
)
from tests.support.aws import ACCOUNT, REGION, AwsResources
from tests.support.aws import client as aws_client
from tests.support.receiver_process import running_receiver_process
from tests.support.receivers import Answer, Receiver

# 100 sends to a receiver allowing 1 per second, its clock shortened tenfold: 10 per second, at least 10 s; the pacing
# waits are shortened in proportion.
BURST = 100
RATE = 10.0
# The retry budget of SQS's maxReceiveCount (5 receives: 4 backoffs of 0.2 s * 1, 2, 4, 8) was 3 s; this outage is
# longer.
OUTAGE_SECONDS = 8.0
OUTAGE_DELIVERIES = 5


def _settled(messages: list[dict[str, Any]]) -> bool:
    """Whether nothing is left on the delivery queue and every delivery has a final status."""
    return not on_queue() and all(is_final(status) for status in statuses(messages))


def test_delivery_burst_to_a_rate_limited_webhook_is_paced_to_its_rate(
    consumer_aws: AwsResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACING_MAX_WAIT_SECONDS", "1")
    monkeypatch.setenv("PACING_LEAD_SECONDS", "0.5")
    clients.reset()
    # The queue's visibility timeout shortened like the clocks (180 s, six times the fake function timeout, to 45 s): on
    # a loaded machine a few received messages were seen left hidden after every delivery was done (cause not found),
    # and they must come back within the test to be seen as delivered and dropped.
    consumer_aws.sqs.set_queue_attributes(
        QueueUrl=consumer_aws.delivery_queue_url, Attributes={"VisibilityTimeout": "45"}
    )
    with running_receiver_process() as receiver:
        url = f"{receiver.url}/webhook/burst?rate={RATE:g}"
        messages = [
            delivery_message("webhook", {"text": f"order {index}"}, {"url": url}, name="burst", rate_per_second=RATE)
            for index in range(BURST)
        ]
        enqueue(consumer_aws, *messages)

        # The whole suite runs in this process: a full collection over the heap of the tests before pauses every thread
        # for longer than the pace's safety margin, which a Lambda container's small heap never does. Frozen objects are
        # not scanned again.
        gc.freeze()
        try:
            run = poll(consumer_aws, lambda: _settled(messages), timeout=90)
        finally:
            gc.unfreeze()
        requests = [record for record in receiver.records() if record["path"] == "/webhook/burst"]

    assert run.errors == []
    assert run.finished, (Counter(statuses(messages)), [(item.due_in, item.receive_count) for item in on_queue()])
    assert statuses(messages) == [DeliveryStatus.DELIVERED] * BURST
    # Pacing keeps to the receiver's rate: 429s at most 5 % of requests. moto's DynamoDB is made to write atomically
    # (infra/local/moto_dynamodb.py), as DynamoDB does: without it two consumers took one slot, and a loaded CI run saw
    # 12 429s in 112 requests. The receiver runs in a process of its own, so it stamps each request as it comes, not
    # when this process's threads let it. Unpaced, the same burst is answered 429 several times for each one accepted.
    throttled = sum(1 for record in requests if record["status"] == 429)
    assert throttled <= 0.05 * len(requests), (throttled, len(requests))
    accepted = [record for record in requests if 200 <= record["status"] < 300]
    # Each delivery is sent once, but for a message two pollers received at the same moment: moto's in-process
    # ReceiveMessage checks and marks a message visible without a lock, as SQS delivers at least once (seen once in
    # about a dozen runs).
    assert BURST <= len(accepted) <= BURST + 2
    keys = {(record["headers"]["X-Notification-Id"], record["headers"]["X-Delivery-Key"]) for record in accepted}
    assert keys == {(message["notification_id"], message["delivery_key"]) for message in messages}


def test_delivery_outage_longer_than_the_old_retry_budget_is_delivered_after_it(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_BASE_SECONDS", "0.2")
    monkeypatch.setenv("RETRY_CAP_SECONDS", "2")
    clients.reset()
    receiver.outage(OUTAGE_SECONDS)
    messages = [
        delivery_message("webhook", {"text": f"order {index}"}, {"url": f"{receiver.url}/outage"}, name="outage")
        for index in range(OUTAGE_DELIVERIES)
    ]
    enqueue(consumer_aws, *messages)

    run = poll(consumer_aws, lambda: _settled(messages), timeout=OUTAGE_SECONDS + 15)

    assert run.errors == []
    assert run.finished
    assert statuses(messages) == [DeliveryStatus.DELIVERED] * OUTAGE_DELIVERIES
    assert all(entry(message).attempts > 1 for message in messages)
    assert len(receiver.accepted) == OUTAGE_DELIVERIES
    # Backed off, not hammered: a retry at most about once a second once the backoff reaches its cap.
    unavailable = sum(1 for request in receiver.requests if request.status == 503)
    assert unavailable <= OUTAGE_DELIVERIES * (OUTAGE_SECONDS + 8)


def test_delivery_slow_read_before_the_slot_still_keeps_the_destination_rate(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.limit("/paced", 1)
    first, slow, last = (
        delivery_message("webhook", {"text": "hi"}, {"url": f"{receiver.url}/paced"}, name="paced", rate_per_second=1)
        for _ in range(3)
    )
    dynamodb = clients.get_client("dynamodb")
    get_item = dynamodb.get_item

    def get_item_slowly_for_slow(**kwargs: Any) -> Any:
        # A slow ledger (or secrets) read between the message's arrival and its send: DynamoDB's tail latency, a
        # throttled SSM call retried by boto3.
        if kwargs["Key"].get("notification_id", {}).get("S") == slow["notification_id"]:
            time.sleep(0.7)
        return get_item(**kwargs)

    monkeypatch.setattr(dynamodb, "get_item", get_item_slowly_for_slow)
    enqueue(consumer_aws, first)
    consume_once(consumer_aws)
    # The slow one arrives while the first one's interval still runs, and is read slowly past its end.
    time.sleep(max(0.0, receiver.requests[0].at + 0.8 - time.monotonic()))
    enqueue(consumer_aws, slow)
    consume_once(consumer_aws)
    enqueue(consumer_aws, last)
    consume_once(consumer_aws)

    # One request per second at most: each send waits for a slot that is still ahead when it is sent.
    assert [request.status for request in receiver.requests] == [200, 200, 200]


def test_delivery_redrive_between_the_bury_and_the_dead_write_keeps_the_redriven_runs_row(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The letter was redriven the moment it reached the dead-letter queue: the give-up written after the bury set the
    # row back to dead with the older run's count, while the redriven run was on the delivery queue and the dead-letter
    # queue was empty.
    receiver.default = Answer(503, b"")
    created_at = iso_time(time.time() - 25 * 3600)  # its retry window over: buried on its first failure
    message = delivery_message("webhook", {"text": "hi"}, {"url": receiver.url + "/hook"}, created_at=created_at)
    enqueue(consumer_aws, message)
    bury = DeadLetterQueue.bury

    def bury_then_redrive(queue: DeadLetterQueue, body: str, last_error: str) -> None:
        bury(queue, body, last_error)
        redrive(
            consumer_aws.sqs, consumer_aws.dead_letter_queue_url, consumer_aws.delivery_queue_url, get_ledger(), 100
        )

    monkeypatch.setattr(DeadLetterQueue, "bury", bury_then_redrive)

    consume_once(consumer_aws)

    row = entry(message)
    assert (row.status, row.attempts, row.redriven, row.last_error) == (DeliveryStatus.QUEUED, 1, 1, None)
    assert [item.body["redriven"] for item in on_queue()] == [1]


def test_delivery_paced_beyond_the_ledgers_ttl_keeps_its_row_and_record_past_its_slot(
    consumer_aws: AwsResources, receiver: Receiver
) -> None:
    # Rows and records lived 30 days from their last write: a delivery paced 31 days ahead (one a month) lost both
    # while its copy still waited on the queue, and the status route answered 404.
    rate = 1 / (31 * 86400)
    first, second = (
        delivery_message(
            "webhook", {"text": "hi"}, {"url": f"{receiver.url}/monthly"}, name="monthly", rate_per_second=rate
        )
        for _ in range(2)
    )
    for message in (first, second):
        enqueue(consumer_aws, message)
        consume_once(consumer_aws)
    table = consumer_aws.env["DELIVERIES_TABLE"]

    def expires(delivery_key: str) -> float:
        key = {"notification_id": {"S": second["notification_id"]}, "delivery_key": {"S": delivery_key}}
        return int(consumer_aws.dynamodb.get_item(TableName=table, Key=key)["Item"]["expires_at"]["N"])

    row = entry(second)
    assert row.status is DeliveryStatus.RETRYING
    assert row.next_attempt_at is not None
    slot = time.time() + 31 * 86400 - 60
    assert expires(second["delivery_key"]) > slot + 29 * 86400
    assert expires("#") > slot + 29 * 86400


BOT_TOKEN = "123456:telegram-secret-8c1d"


def test_delivery_burst_to_one_telegram_chat_does_not_hold_the_bots_other_chats(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chat's far slot booked the bot's one pace point as far: another chat, with the bot's 30/s free, waited
    about 10 s ("paced: next send slot in 10 s")."""
    # Slots more than a second away are held by delayed copies, due back a second early (5 s and 2 s in production).
    monkeypatch.setenv("PACING_MAX_WAIT_SECONDS", "1")
    clients.reset()
    receiver.default = Answer(200, {"ok": True, "result": {"message_id": 1}})
    ref = put_credentials(consumer_aws, "tg", {"bot_token": BOT_TOKEN})
    burst = [
        delivery_message("telegram", {"text": f"a{i}"}, {"chat_id": "111"}, name=f"a{i}", credentials_ref=ref)
        for i in range(10)
    ]
    enqueue(consumer_aws, *burst)
    consume_once(consumer_aws)  # chat 111: one sent, nine paced at its 1/s
    assert len(receiver.requests) == 1

    # Another chat of the same bot: the bot has sent one message; its 30/s leaves room at once.
    other = delivery_message("telegram", {"text": "b"}, {"chat_id": "222"}, name="b", credentials_ref=ref)
    enqueue(consumer_aws, other)
    consume_once(consumer_aws)

    row = entry(other)
    assert row.status is DeliveryStatus.DELIVERED, row.last_error
    # The burst's copies, back at their chat slots, take the bot's then, and keep the chat's pace.
    run = poll(consumer_aws, lambda: all(entry(message).status is DeliveryStatus.DELIVERED for message in burst), 60)
    assert run.finished
    assert run.errors == []
    sends = sorted(request.at for request in receiver.requests if request.json()["chat_id"] == "111")
    assert len(sends) == len(burst)
    # 1.1 s apart; a copy sent when it came back, a second before its slot, would be about 0.1 s from the one before.
    assert min(later - earlier for earlier, later in itertools.pairwise(sends)) >= 0.6


def test_delivery_slow_email_integration_does_not_hold_the_accounts_other_email(consumer_aws: AwsResources) -> None:
    """An integration paced at one email in 10 s booked the account's SES rate 22 s ahead with its third email:
    every other email of the account waited as long."""
    ses = aws_client("ses")
    ses.verify_email_identity(EmailAddress="noreply@example.com")
    # An integration an admin slowed to one email every 10 s (rate_per_second, README "Pacing"): a burst of 3.
    slow = [
        delivery_message(
            "email",
            {"subject": "digest", "text": f"digest {i}"},
            {"to": ["ops@example.com"], "from": "noreply@example.com"},
            name=f"slow-{i}",
            rate_per_second=0.1,
        )
        for i in range(3)
    ]
    enqueue(consumer_aws, *slow)
    consume_once(consumer_aws)  # one sent, two paced 11 s and 22 s ahead by the integration's own rate

    # Any other email of the account: SES (moto: MaxSendRate 1/s) has sent one email; its next slot is ~1.1 s away,
    # which the consumer waits for in-process (PACING_MAX_WAIT_SECONDS 5).
    other = delivery_message(
        "email",
        {"subject": "receipt", "text": "your order"},
        {"to": ["ada@example.com"], "from": "noreply@example.com"},
    )
    enqueue(consumer_aws, other)
    consume_once(consumer_aws)

    row = entry(other)
    assert row.status is DeliveryStatus.DELIVERED, row.last_error


def test_delivery_redriven_to_a_user_deleted_after_its_expansion_is_not_sent(aws: AwsResources) -> None:
    """A redrive moves ``window_start`` to its own time, which the deletion check compared with: an email that died
    before its user was erased went to the erased address once redriven. The check keeps the expansion's time."""
    from moto.ses.models import ses_backends

    from core.ledger import Delivery, NotificationRecord
    from tests.integration.consumer.flow import consume, receive

    get_client("ses", REGION).verify_email_identity(EmailAddress="noreply@example.com")
    notification_id, key, expanded = "0b6a1c9e-3c1e-4c43-9d7e-2f1a3b4c5d6e", "email:ada", time.time() - 7200
    message = {
        "v": 2,
        "notification_id": notification_id,
        "delivery_key": key,
        "channel": "audience",
        "topic": "send",
        "created_at": iso_time(expanded),
        "window_start": iso_time(expanded),
        "integration": {
            "name": "mail",
            "type": "email",
            "target": {"to": ["ada@example.com"], "from": "noreply@example.com"},
        },
        "recipient": {"user_id": "ada", "address": "ada@example.com"},
        "content": {"text": "Your order", "subject": "Hi"},
        "attempt": 5,
    }
    ledger = get_ledger()
    record = NotificationRecord(
        notification_id, "send", "audience", "send", iso_time(expanded), "k1", 1, (Delivery(key, "mail", "email"),)
    )
    ledger.record_notification(record)
    recipient = {"user_id": "ada", "address": "ada@example.com"}
    ledger.update(notification_id, key, DeliveryStatus.DEAD, row=DeliveryRow("mail", "email", recipient), attempts=5)
    DeadLetterQueue(aws.sqs, aws.dead_letter_queue_url).bury(json.dumps(message), "email: Throttling")
    ledger.mark_user_deleted("ada", iso_time(expanded + 3600))  # DELETE /v1/users/ada, an hour after the expansion

    assert redrive(aws.sqs, aws.dead_letter_queue_url, aws.delivery_queue_url, ledger, 10)["redriven"] == 1
    consume(receive(aws), aws)

    row = entry(message)
    assert ses_backends[ACCOUNT][REGION].sent_messages == []
    assert row.status is DeliveryStatus.FAILED
    assert str(row.last_error).startswith("the user was deleted (")
