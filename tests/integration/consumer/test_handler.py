"""Integration tests of the delivery handler (consumer/handler.py) on moto, with loopback HTTP receivers.

Lambda's event source mapping is played by ``flow.consume``: it deletes every record the handler did not report in
``batchItemFailures``. A retry is a delayed copy of the message on the delivery queue, so a failed send reports no
failure; ``flow.on_queue`` reads moto's own state to see the copies and when they are due.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import EndpointConnectionError
from moto.ses.models import ses_backends
from moto.sns.models import sns_backends

import consumer.handler
from consumer.delivery import MAX_PROVIDER_ID_LENGTH
from core import clients
from core.models import DeliveryStatus
from core.times import epoch_time
from tests.fakes.lambda_context import FakeLambdaContext
from tests.integration.consumer.flow import (
    Queued,
    consume,
    consume_once,
    dead_letters,
    delivery_message,
    enqueue,
    entry,
    failed_ids,
    on_queue,
    put_credentials,
    receive,
    statuses,
    version_1,
)
from tests.support.aws import ACCOUNT, ADMIN_TOKEN, REGION, AwsResources
from tests.support.aws import client as aws_client
from tests.support.events import admin_event, api_event, response_json
from tests.support.receivers import Answer, Receiver

BOT_TOKEN = "123456:telegram-secret-8c1d"
STATUS = "/v1/notifications/{notification_id}"
SIGNING_SECRET = "webhook-secret-2b7e-0123456789"


def _webhook(receiver: Receiver, path: str = "/hook", **kwargs: Any) -> dict[str, Any]:
    return delivery_message("webhook", {"text": "order 42 shipped"}, {"url": receiver.url + path}, **kwargs)


def _names(queued: list[Queued]) -> dict[str, Queued]:
    return {item.body["integration"]["name"]: item for item in queued}


def _kill(aws: AwsResources, message: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[DeliveryStatus]:
    """Consume ``message``, whose receiver fails, with two attempts allowed and sub-second backoffs until no copy is
    left; return its ledger status after each consume."""
    monkeypatch.setenv("MAX_ATTEMPTS", "2")
    monkeypatch.setenv("RETRY_BASE_SECONDS", "0.2")
    clients.reset()
    enqueue(aws, message)
    seen = []
    for _ in range(5):
        if not _consume_next(aws):
            break
        seen.append(entry(message).status)
    return seen


def _status_of(message: dict[str, Any]) -> dict[str, Any]:
    """Return the delivery of ``message`` as the status route shows it to its publisher (``enqueue``'s caller)."""
    from api.handler import handler as api_handler

    event = api_event("GET", STATUS, {"notification_id": message["notification_id"]})
    response = api_handler(event, FakeLambdaContext())
    assert response["statusCode"] == 200
    [delivery] = response_json(response)["deliveries"]
    assert isinstance(delivery, dict)
    return delivery


def _redrive() -> dict[str, Any]:
    from api.handler import handler as api_handler

    result: dict[str, Any] = response_json(
        api_handler(admin_event("POST", "/v1/dead-letters/redrive", token=ADMIN_TOKEN), FakeLambdaContext())
    )
    return result


def _ledger_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Return a list that records from now on each DynamoDB read (``GetItem``, ``BatchGetItem``) and its key count."""
    reads: list[tuple[str, int]] = []
    make_api_call = BaseClient._make_api_call

    def counting(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "BatchGetItem":
            reads.append((operation, sum(len(table["Keys"]) for table in params["RequestItems"].values())))
        elif operation == "GetItem":
            reads.append((operation, 1))
        return make_api_call(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting)
    return reads


def _consume_next(aws: AwsResources) -> bool:
    """Consume what is visible, waiting up to 2 s for a delayed copy; return whether anything was consumed."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        messages = receive(aws)
        if messages:
            consume(messages, aws)
            return True
        if not on_queue():
            return False
        time.sleep(0.05)
    return False


def test_handler_mixed_batch_reports_no_failures_and_queues_copies_of_the_retryable(
    consumer_aws: AwsResources, receiver: Receiver
) -> None:
    answers = {
        "ok": Answer(200),
        "down": Answer(503),
        "bad": Answer(400),
        "limited": Answer(429, headers={"Retry-After": "30"}),
        "slow": Answer(200, delay=1.5),
    }
    for name, answer in answers.items():
        receiver.route(f"/{name}", answer)
    ids = enqueue(consumer_aws, *(_webhook(receiver, f"/{name}", name=name) for name in answers), "not json at all")

    result = consume_once(consumer_aws)

    assert failed_ids(result) == set()
    copies = _names(on_queue())
    assert {name: item.body["attempt"] for name, item in copies.items()} == {"down": 1, "limited": 0, "slow": 1}
    assert not {item.message_id for item in copies.values()} & set(ids)


def test_handler_batch_records_are_sent_concurrently(consumer_aws: AwsResources, receiver: Receiver) -> None:
    receiver.default = Answer(200, delay=0.3)
    enqueue(consumer_aws, *(_webhook(receiver, f"/{index}", name=f"hook-{index}") for index in range(4)))

    consume_once(consumer_aws)

    assert receiver.max_in_flight > 1


def test_handler_batch_reads_its_ledger_rows_in_one_call(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = [_webhook(receiver, f"/{index}", name=f"hook-{index}") for index in range(4)]
    enqueue(consumer_aws, *messages)
    received = receive(consumer_aws)
    reads = _ledger_reads(monkeypatch)

    consume(received, consumer_aws)

    assert reads == [("BatchGetItem", 4)]
    assert [entry(message).status for message in messages] == [DeliveryStatus.DELIVERED] * 4
    assert len(receiver.requests) == 4


def test_handler_batch_read_covers_the_records_that_start_at_once_only(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DELIVERY_CONCURRENCY", "2")
    clients.reset()
    messages = [_webhook(receiver, f"/{index}", name=f"hook-{index}") for index in range(4)]
    enqueue(consumer_aws, *messages)
    received = receive(consumer_aws)
    reads = _ledger_reads(monkeypatch)

    consume(received, consumer_aws)

    # The two records that wait for a thread read their own rows when their turn comes.
    assert sorted(reads) == [("BatchGetItem", 2), ("GetItem", 1), ("GetItem", 1)]
    assert [entry(message).status for message in messages] == [DeliveryStatus.DELIVERED] * 4


def test_handler_delivered_message_records_delivered_with_provider_id(
    consumer_aws: AwsResources, receiver: Receiver
) -> None:
    ref = put_credentials(consumer_aws, "tg", {"bot_token": BOT_TOKEN})
    message = delivery_message("telegram", {"text": "hi"}, {"chat_id": "42"}, credentials_ref=ref)
    receiver.script(Answer(200, {"ok": True, "result": {"message_id": 777}}))
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    row = entry(message)
    assert (row.status, row.provider_message_id, row.attempts) == (DeliveryStatus.DELIVERED, "777", 1)
    assert on_queue() == []


def test_handler_503_deletes_the_message_and_queues_a_copy_after_the_backoff(
    consumer_aws: AwsResources, receiver: Receiver
) -> None:
    receiver.script(Answer(503, b""))
    message = _webhook(receiver)
    [original] = enqueue(consumer_aws, message)
    before = time.time()

    result = consume_once(consumer_aws)

    after = time.time()
    assert failed_ids(result) == set()
    [copy] = on_queue()
    # The first retry: 10 s * 2^0 with equal jitter, so between 5 and 10 seconds (SQS delays in whole seconds).
    assert copy.message_id != original
    assert (copy.body["notification_id"], copy.body["attempt"]) == (message["notification_id"], 1)
    assert before + 4 < copy.due_at <= after + 10
    row = entry(message)
    assert (row.status, row.attempts, row.last_error) == (DeliveryStatus.RETRYING, 1, "webhook: HTTP 503")


def test_handler_copy_refused_by_sqs_keeps_the_message_hidden_and_reports_it_failed(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.script(Answer(503, b""))
    message = _webhook(receiver)
    [original] = enqueue(consumer_aws, message)

    def refuse(**kwargs: Any) -> Any:
        raise EndpointConnectionError(endpoint_url=f"https://sqs.{REGION}.amazonaws.com")

    monkeypatch.setattr(clients.get_client("sqs"), "send_message", refuse)

    before = time.time()
    result = consume_once(consumer_aws)

    after = time.time()
    assert failed_ids(result) == {original}
    [kept] = on_queue()
    # Hidden until the retry is due: 10 s * 2^0 with equal jitter, rounded up to whole seconds.
    assert kept.message_id == original
    assert before + 4 < kept.due_at <= after + 10
    assert (entry(message).status, entry(message).attempts) == (DeliveryStatus.RETRYING, 1)


def test_handler_backoff_follows_retry_base_setting(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_BASE_SECONDS", "120")
    clients.reset()
    receiver.script(Answer(502, b""))
    enqueue(consumer_aws, _webhook(receiver))
    before = time.time()

    consume_once(consumer_aws)

    after = time.time()
    # The first retry: 120 s * 2^0 with equal jitter, so between 60 and 120 seconds.
    [copy] = on_queue()
    assert before + 59 < copy.due_at <= after + 120


def test_handler_429_queues_a_copy_due_after_retry_after_without_an_attempt(
    consumer_aws: AwsResources, receiver: Receiver
) -> None:
    receiver.script(Answer(429, headers={"Retry-After": "120"}))
    message = _webhook(receiver)
    enqueue(consumer_aws, message)
    sent = time.time()

    result = consume_once(consumer_aws)

    after = time.time()
    assert failed_ids(result) == set()
    [copy] = on_queue()
    # Retry-After plus up to 20 % jitter, never less.
    assert sent + 119 < copy.due_at <= after + 144
    assert copy.body["attempt"] == 0
    assert (epoch_time(copy.body["not_before"]) or 0) >= sent + 120
    assert (entry(message).status, entry(message).attempts) == (DeliveryStatus.RETRYING, 0)


def test_handler_telegram_429_waits_parameters_retry_after(consumer_aws: AwsResources, receiver: Receiver) -> None:
    ref = put_credentials(consumer_aws, "tg", {"bot_token": BOT_TOKEN})
    receiver.script(
        Answer(429, {"ok": False, "error_code": 429, "description": "Too Many", "parameters": {"retry_after": 300}})
    )
    enqueue(consumer_aws, delivery_message("telegram", {"text": "hi"}, {"chat_id": "42"}, credentials_ref=ref))
    before = time.time()

    consume_once(consumer_aws)

    after = time.time()
    [copy] = on_queue()
    assert before + 299 < copy.due_at <= after + 360
    assert copy.body["attempt"] == 0


def test_handler_telegram_429_of_one_group_holds_that_chat_only_not_the_bots_others(
    consumer_aws: AwsResources, receiver: Receiver
) -> None:
    """A busy group's flood wait held the bot's own limit too: every other chat of the bot waited its 600 s."""
    ref = put_credentials(consumer_aws, "tg", {"bot_token": BOT_TOKEN})
    flood = {"ok": False, "error_code": 429, "description": "Too Many Requests", "parameters": {"retry_after": 600}}
    receiver.script(Answer(429, flood), Answer(200, {"ok": True, "result": {"message_id": 7}}))
    group = delivery_message("telegram", {"text": "to the group"}, {"chat_id": "-100123"}, credentials_ref=ref)
    person = delivery_message(
        "telegram", {"text": "to a person"}, {"chat_id": "42"}, name="tg-person", credentials_ref=ref
    )
    enqueue(consumer_aws, group)
    consume_once(consumer_aws)
    enqueue(consumer_aws, person)

    consume_once(consumer_aws)

    assert entry(group).status is DeliveryStatus.RETRYING
    assert entry(person).status is DeliveryStatus.DELIVERED
    assert len(receiver.requests) == 2


def test_handler_permanent_failure_records_failed_and_deletes(consumer_aws: AwsResources, receiver: Receiver) -> None:
    receiver.script(Answer(404, b"no_service"))
    message = _webhook(receiver)
    enqueue(consumer_aws, message)

    result = consume_once(consumer_aws)

    assert failed_ids(result) == set()
    assert on_queue() == []
    assert (entry(message).status, entry(message).last_error) == (DeliveryStatus.FAILED, "webhook: HTTP 404 no_service")


def test_handler_redelivered_delivered_message_is_not_sent_again(
    consumer_aws: AwsResources, receiver: Receiver
) -> None:
    message = _webhook(receiver)
    enqueue(consumer_aws, message)
    received = receive(consumer_aws)
    consume(received)

    # SQS delivers at least once: the same message comes again after its success.
    result = consume(received, consumer_aws)

    assert failed_ids(result) == set()
    assert len(receiver.requests) == 1
    assert entry(message).status is DeliveryStatus.DELIVERED


def test_handler_spent_retries_mark_dead_and_put_the_message_in_the_dlq_with_its_last_error(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.default = Answer(500, b"")
    message = _webhook(receiver)

    seen = _kill(consumer_aws, message, monkeypatch)

    assert seen == [DeliveryStatus.RETRYING, DeliveryStatus.DEAD]
    assert on_queue() == []
    [dead] = dead_letters(consumer_aws)
    assert (json.loads(dead["Body"])["notification_id"], json.loads(dead["Body"])["attempt"]) == (
        message["notification_id"],
        2,
    )
    assert dead["MessageAttributes"]["last_error"]["StringValue"] == "2 attempts made: webhook: HTTP 500"
    assert len(receiver.requests) == 2


def test_handler_dead_message_is_listed_then_redriven_and_delivered(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.handler import handler as api_handler

    receiver.default = Answer(500, b"")
    message = _webhook(receiver)
    _kill(consumer_aws, message, monkeypatch)
    listed = response_json(api_handler(admin_event("GET", "/v1/dead-letters", token=ADMIN_TOKEN), FakeLambdaContext()))
    receiver.default = Answer(200)

    redriven = response_json(
        api_handler(admin_event("POST", "/v1/dead-letters/redrive", token=ADMIN_TOKEN), FakeLambdaContext())
    )
    consume_once(consumer_aws)

    [letter] = listed["messages"]
    assert (letter["notification_id"], letter["delivery_key"], letter["last_error"]) == (
        message["notification_id"],
        message["delivery_key"],
        "2 attempts made: webhook: HTTP 500",
    )
    assert redriven == {"redriven": 1, "more": False}
    assert entry(message).status is DeliveryStatus.DELIVERED
    assert dead_letters(consumer_aws) == []


def test_handler_buried_message_whose_delete_was_lost_is_skipped_when_it_comes_back(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    clients.reset()
    receiver.default = Answer(500, b"")
    message = _webhook(receiver)
    enqueue(consumer_aws, message)
    # The worker buries the delivery and dies before the event source mapping deletes the message.
    consume(receive(consumer_aws, visibility_timeout=1))
    time.sleep(1.2)

    again = receive(consumer_aws)
    consume(again, consumer_aws)

    assert len(again) == 1
    assert (entry(message).status, entry(message).attempts) == (DeliveryStatus.DEAD, 1)
    assert (len(receiver.requests), len(dead_letters(consumer_aws)), on_queue()) == (1, 1, [])


def test_handler_redriven_delivery_gets_its_attempts_afresh(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.handler import handler as api_handler

    receiver.default = Answer(500, b"")
    message = _webhook(receiver)
    _kill(consumer_aws, message, monkeypatch)
    api_handler(admin_event("POST", "/v1/dead-letters/redrive", token=ADMIN_TOKEN), FakeLambdaContext())

    consume_once(consumer_aws)

    # api/dead_letters.py: a redriven delivery starts a new run of attempts. With two attempts allowed, the first
    # failure after a redrive is a retry, not the end; the ledger still counts the two attempts before it.
    assert (entry(message).status, entry(message).attempts) == (DeliveryStatus.RETRYING, 3)
    assert [(item.body["attempt"], item.body["prior_attempts"]) for item in on_queue()] == [(1, 2)]


def test_handler_outage_shows_a_retrying_delivery_with_its_next_attempt_over_the_status_route(
    consumer_aws: AwsResources, receiver: Receiver
) -> None:
    receiver.outage(60)
    message = _webhook(receiver)
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)
    delivery = _status_of(message)

    [copy] = on_queue()
    next_attempt = epoch_time(delivery["next_attempt_at"]) or 0.0
    assert (delivery["status"], delivery["attempts"], delivery["redriven"]) == ("retrying", 1, 0)
    assert delivery["next_attempt_at"] == copy.body["not_before"]
    # The first retry: 10 s * 2^0 with equal jitter.
    assert time.time() + 4 < next_attempt <= time.time() + 10


def test_handler_redriven_delivery_delivered_shows_the_attempts_of_both_runs_and_one_redrive(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.default = Answer(500, b"")
    message = _webhook(receiver)
    _kill(consumer_aws, message, monkeypatch)
    dead = _status_of(message)
    receiver.default = Answer(503, b"")
    _redrive()
    queued = _status_of(message)

    consume_once(consumer_aws)
    retrying = _status_of(message)
    receiver.default = Answer(200)
    [copy] = on_queue()
    time.sleep(max(0.0, copy.due_in))
    assert _consume_next(consumer_aws)
    delivered = _status_of(message)

    assert [(view["status"], view["attempts"], view["redriven"]) for view in (dead, queued, retrying, delivered)] == [
        ("dead", 2, 0),
        ("queued", 2, 1),
        ("retrying", 3, 1),
        ("delivered", 4, 1),
    ]
    assert (queued["next_attempt_at"], retrying["next_attempt_at"] is not None, delivered["next_attempt_at"]) == (
        None,
        True,
        None,
    )


def test_handler_history_keeps_every_attempt_of_every_run_in_order(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.default = Answer(500, b"")
    message = _webhook(receiver)
    _kill(consumer_aws, message, monkeypatch)
    receiver.default = Answer(200)
    _redrive()

    consume_once(consumer_aws)

    history = entry(message).history
    assert [(record["attempt"], record["status"], record["error"]) for record in history] == [
        (1, "retrying", "webhook: HTTP 500"),
        (2, "dead", "2 attempts made: webhook: HTTP 500"),
        (3, "delivered", None),
    ]
    times = [record["at"] for record in history]
    assert times == sorted(times)
    assert all(epoch_time(moment) for moment in times)


def test_handler_malformed_message_goes_to_the_dlq_as_it_came_not_retried(consumer_aws: AwsResources) -> None:
    body = json.dumps({"v": 1, "notification_id": "n-1"})
    enqueue(consumer_aws, body)

    result = consume_once(consumer_aws)

    assert failed_ids(result) == set()
    assert on_queue() == []
    [dead] = dead_letters(consumer_aws)
    assert (dead["Body"], dead["MessageAttributes"]["last_error"]["StringValue"]) == (
        body,
        "malformed delivery message: channel, content, created_at, integration, topic",
    )


def test_handler_malformed_message_naming_its_row_marks_it_dead(consumer_aws: AwsResources, receiver: Receiver) -> None:
    message = {**_webhook(receiver), "v": 3}
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    row = entry(message)
    assert (row.status, row.last_error, len(receiver.requests)) == (
        DeliveryStatus.DEAD,
        "malformed delivery message: v",
        0,
    )
    assert len(dead_letters(consumer_aws)) == 1


def test_handler_version_1_body_is_delivered_under_its_integration_name(
    consumer_aws: AwsResources, receiver: Receiver
) -> None:
    message = version_1(_webhook(receiver, name="orders-hook"))
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    row = entry(message)
    assert (row.delivery_key, row.integration, row.status, row.attempts) == (
        "orders-hook",
        "orders-hook",
        DeliveryStatus.DELIVERED,
        1,
    )
    [request] = receiver.requests
    assert request.headers["X-Delivery-Key"] == "orders-hook"


def test_handler_private_target_refused_without_setting(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLOW_PRIVATE_TARGETS", "false")
    clients.reset()
    message = _webhook(receiver)
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    assert entry(message).status is DeliveryStatus.FAILED
    assert receiver.requests == []


def test_handler_signed_webhook_verifies_at_receiver(consumer_aws: AwsResources, receiver: Receiver) -> None:
    ref = put_credentials(consumer_aws, "hook", {"signing_secret": SIGNING_SECRET})
    message = _webhook(receiver, credentials_ref=ref)
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    # What a receiver does (README.md, "Verifying a webhook"): HMAC-SHA256 over the timestamp, the notification id and
    # the delivery key as received, one per line, then the raw body; compared safely.
    [request] = receiver.requests
    timestamp = request.headers["X-Notification-Timestamp"]
    signed = f"{timestamp}\n{request.headers['X-Notification-Id']}\n{request.headers['X-Delivery-Key']}\n"
    expected = hmac.new(SIGNING_SECRET.encode(), signed.encode() + request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Notification-Signature-V2"], f"v2={expected}")
    assert abs(time.time() - int(timestamp)) < 300
    # Together they name one delivery, so the receiver can drop a duplicate.
    assert (request.headers["X-Notification-Id"], request.headers["X-Delivery-Key"]) == (
        message["notification_id"],
        message["delivery_key"],
    )


def test_handler_missing_credentials_fail_permanently(
    consumer_aws: AwsResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("consumer.delivery.MISSING_CREDENTIALS_GRACE_SECONDS", 0)
    message = delivery_message("slack", {"text": "hi"}, credentials_ref="/notify/test/integrations/orders/shipped/gone")
    enqueue(consumer_aws, message)

    result = consume_once(consumer_aws)

    assert failed_ids(result) == set()
    assert (entry(message).status, entry(message).last_error) == (DeliveryStatus.FAILED, "credentials are missing")


def test_handler_missing_credentials_of_a_young_notification_are_retried(consumer_aws: AwsResources) -> None:
    # Published right after its topic changed, the delivery may meet SSM before its reads show the new parameter.
    message = delivery_message("slack", {"text": "hi"}, credentials_ref="/notify/test/integrations/orders/shipped/new")
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    assert entry(message).status == DeliveryStatus.RETRYING
    assert (entry(message).last_error or "").startswith("credentials are missing (retried")


@pytest.mark.parametrize(
    "answer",
    [Answer(delay=1.5), Answer(reset=True), Answer(500, {"ok": False, "description": "Internal"})],
    ids=["timeout", "reset", "5xx"],
)
def test_handler_telegram_failure_keeps_token_out_of_logs_ledger_and_copy(
    consumer_aws: AwsResources, receiver: Receiver, logs: Callable[[], str], answer: Answer
) -> None:
    ref = put_credentials(consumer_aws, "tg", {"bot_token": BOT_TOKEN})
    message = delivery_message("telegram", {"text": "hi"}, {"chat_id": "42"}, credentials_ref=ref)
    receiver.script(answer)
    enqueue(consumer_aws, message)

    result = consume_once(consumer_aws)

    assert failed_ids(result) == set()
    row = entry(message)
    assert row.status is DeliveryStatus.RETRYING
    assert "telegram-secret" not in (row.last_error or "")
    output = logs()
    assert "delivery will be retried" in output
    assert "telegram-secret" not in output
    [copy] = on_queue()
    assert "telegram-secret" not in json.dumps(copy.body)


def test_handler_delivered_log_keeps_a_receivers_request_id_as_short_as_the_ledger_does(
    consumer_aws: AwsResources, receiver: Receiver, logs: Callable[[], str]
) -> None:
    """The ledger kept 200 characters of a webhook's X-Request-Id, the log all of it: a receiver could make every
    delivery write a log record of megabytes (its header repeated, http.client joins them)."""
    receiver.script(Answer(200, headers={"X-Request-Id": "r" * 60_000}))
    message = delivery_message("webhook", {"text": "order 42"}, {"url": receiver.url + "/hook"})
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    [line] = [record for record in map(json.loads, logs().splitlines()) if record.get("message") == "delivered"]
    assert line["provider_message_id"] == "r" * MAX_PROVIDER_ID_LENGTH
    assert entry(message).provider_message_id == "r" * MAX_PROVIDER_ID_LENGTH


def test_handler_slack_failure_keeps_webhook_url_out_of_logs(
    consumer_aws: AwsResources, receiver: Receiver, logs: Callable[[], str]
) -> None:
    url = f"{receiver.url}/services/T0/B0/slack-secret-4f9a"
    ref = put_credentials(consumer_aws, "slack", {"webhook_url": url})
    receiver.script(Answer(reset=True))
    message = delivery_message("slack", {"text": "hi"}, credentials_ref=ref)
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    output = logs()
    assert "delivery will be retried" in output
    assert "slack-secret" not in output
    assert "slack-secret" not in (entry(message).last_error or "")


def _failing_updates(monkeypatch: pytest.MonkeyPatch, when: Callable[[], bool]) -> None:
    """Make the consumer's DynamoDB UpdateItem calls fail as an unreachable endpoint while ``when()`` holds."""
    dynamodb = clients.get_client("dynamodb")
    update_item = dynamodb.update_item

    def update(**kwargs: Any) -> Any:
        if when():
            raise EndpointConnectionError(endpoint_url=f"https://dynamodb.{REGION}.amazonaws.com")
        return update_item(**kwargs)

    monkeypatch.setattr(dynamodb, "update_item", update)


def test_handler_ledger_write_failing_after_the_send_sends_once_and_leaves_a_record_only_copy(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _webhook(receiver)
    enqueue(consumer_aws, message)
    _failing_updates(monkeypatch, lambda: bool(receiver.requests))

    result = consume_once(consumer_aws)

    [copy] = on_queue()
    assert failed_ids(result) == set()
    assert len(receiver.requests) == 1
    assert statuses([message]) == [None]  # the write failed: no row yet
    assert (copy.body["outcome"]["status"], copy.body["outcome"]["attempts"], copy.body["outcome"]["tries"]) == (
        "delivered",
        1,
        1,
    )


def test_handler_record_only_copy_writes_delivered_through_a_ledger_outage_and_sends_nothing(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DynamoDB refuses writes for the send and the first two copies: the third writes the row.
    monkeypatch.setenv("RETRY_BASE_SECONDS", "0.2")
    clients.reset()
    message = _webhook(receiver)
    enqueue(consumer_aws, message)
    outage = {"writes_refused": 0}

    def refused() -> bool:
        if receiver.requests and outage["writes_refused"] < 3:
            outage["writes_refused"] += 1
            return True
        return False

    _failing_updates(monkeypatch, refused)

    consumed = 0
    while _consume_next(consumer_aws) and consumed < 10:
        consumed += 1

    row = entry(message)
    assert (row.status, row.attempts, len(row.history)) == (DeliveryStatus.DELIVERED, 1, 1)
    assert len(receiver.requests) == 1
    assert (outage["writes_refused"], on_queue()) == (3, [])


def test_handler_crashing_on_a_message_leaves_it_to_max_receive_count_and_the_dlq(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash() -> None:
        raise RuntimeError("the container died")

    monkeypatch.setattr(consumer.handler, "build_deliverer", crash)
    message = _webhook(receiver)
    enqueue(consumer_aws, message)
    receives = 0

    for _ in range(10):
        # Received visible at once, as if each crashed invocation's visibility timeout had run out.
        messages = receive(consumer_aws, visibility_timeout=0)
        if not messages:
            break
        receives += 1
        with pytest.raises(RuntimeError):
            consume(messages, consumer_aws)

    # maxReceiveCount is 5 (tests/support/aws.py, as in infra/): the sixth receive finds it in the DLQ.
    assert receives == 5
    [dead] = dead_letters(consumer_aws)
    assert json.loads(dead["Body"])["notification_id"] == message["notification_id"]
    assert receiver.requests == []


def test_handler_email_is_sent_through_ses(consumer_aws: AwsResources) -> None:

    aws_client("ses").verify_email_identity(EmailAddress="noreply@example.com")
    message = delivery_message(
        "email",
        {"subject": "Shipped", "text": "Order 42", "html": "<p>Order &lt;42&gt;</p>"},
        {"to": ["ada@example.com"], "from": "noreply@example.com"},
    )
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    [sent] = ses_backends[ACCOUNT][REGION].sent_messages
    assert (sent.destinations["ToAddresses"], sent.subject, sent.body) == (
        ["ada@example.com"],
        "Shipped",
        "<p>Order &lt;42&gt;</p>",
    )
    assert entry(message).provider_message_id == sent.id


def _endpoint(enabled: bool) -> str:

    sns = aws_client("sns")
    app = sns.create_platform_application(Name="app", Platform="GCM", Attributes={"PlatformCredential": "key"})
    arn: str = sns.create_platform_endpoint(PlatformApplicationArn=app["PlatformApplicationArn"], Token="device-1")[
        "EndpointArn"
    ]
    sns.set_endpoint_attributes(EndpointArn=arn, Attributes={"Enabled": "true" if enabled else "false"})
    return arn


def test_handler_push_publishes_per_platform_payload(consumer_aws: AwsResources) -> None:
    arn = _endpoint(enabled=True)
    message = delivery_message("push", {"text": "Order 42 shipped"}, {"endpoint_arn": arn})
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    [published] = sns_backends[ACCOUNT][REGION].platform_endpoints[arn].messages.values()
    assert json.loads(json.loads(published)["GCM"]) == {
        "fcmV1Message": {"message": {"notification": {"body": "Order 42 shipped"}}}
    }
    assert entry(message).status is DeliveryStatus.DELIVERED


def test_handler_push_to_disabled_endpoint_fails_permanently(consumer_aws: AwsResources) -> None:
    message = delivery_message("push", {"text": "hi"}, {"endpoint_arn": _endpoint(enabled=False)})
    enqueue(consumer_aws, message)

    result = consume_once(consumer_aws)

    assert failed_ids(result) == set()
    assert (entry(message).status, entry(message).last_error) == (DeliveryStatus.FAILED, "push: EndpointDisabled")


def test_handler_push_to_an_endpoint_that_is_gone_fails_and_disables_its_device(consumer_aws: AwsResources) -> None:
    # An endpoint deleted (with its platform application, say) failed every send to its device, which stayed enabled.
    arn = _endpoint(enabled=True)
    aws_client("sns").delete_endpoint(EndpointArn=arn)
    message = delivery_message("push", {"text": "hi"}, {"endpoint_arn": arn})
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    assert entry(message).status is DeliveryStatus.FAILED
    assert str(entry(message).last_error).startswith("push: NotFound (the endpoint is deleted: its device was")
    jobs = [queued.body for queued in on_queue("notify-test-expansion")]
    assert [(job["kind"], job["endpoint_arn"]) for job in jobs] == [("disable_endpoint", arn)]


def test_latest_start_keeps_the_longest_send_and_a_margin_before_the_timeout(consumer_aws: AwsResources) -> None:
    """A send started at the latest start ends before the timeout, through AWS (SES, SNS) as through HTTP."""
    config = consumer.handler.settings()
    before = time.time()

    latest = consumer.handler.latest_start(FakeLambdaContext(timeout_seconds=30.0))

    assert latest is not None
    longest = max(config.http_connect_timeout + config.http_read_timeout, clients.AWS_SEND_SECONDS)
    assert before + 30.0 - longest - 2 - 1 <= latest <= time.time() + 30.0 - longest - 2


def test_channels_send_through_aws_clients_bounded_to_a_sends_budget(consumer_aws: AwsResources) -> None:
    """The default client's 3 tries of 2 + 5 s (and backoff) outlasted the consumer's 15 s reserve for one send."""
    email = clients.get_channels()["email"]
    ses = email._resources.aws_client("ses")
    config = ses.meta.config

    assert ses is clients.get_client("ses", sends=True)
    assert ses is not clients.get_client("ses")
    attempts = config.retries["total_max_attempts"]
    # At most 1 s of backoff between tries in botocore's standard mode, for its first retry.
    assert attempts * (config.connect_timeout + config.read_timeout) + (attempts - 1) <= clients.AWS_SEND_SECONDS
