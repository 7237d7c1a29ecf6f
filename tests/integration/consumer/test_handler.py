"""Integration tests of the delivery handler (consumer/handler.py) on moto, with loopback HTTP receivers."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from moto.ses.models import ses_backends
from moto.sns.models import sns_backends

from core import clients
from core.models import DeliveryStatus
from tests.fakes.lambda_context import FakeLambdaContext
from tests.integration.consumer.flow import (
    consume,
    consume_once,
    delivery_message,
    enqueue,
    entry,
    failed_ids,
    put_credentials,
    receive,
    visible_in,
)
from tests.support.aws import ACCOUNT, ADMIN_TOKEN, REGION, AwsResources
from tests.support.events import admin_event, response_json
from tests.support.receivers import Answer, Receiver

BOT_TOKEN = "123456:telegram-secret-8c1d"
SIGNING_SECRET = "webhook-secret-2b7e-0123456789"


def _webhook(receiver: Receiver, path: str = "/hook", **kwargs: object) -> dict[str, object]:
    return delivery_message("webhook", {"text": "order 42 shipped"}, {"url": receiver.url + path}, **kwargs)  # type: ignore[arg-type]


def _by_body(messages: list[dict[str, object]]) -> dict[str, str]:
    return {json.loads(str(message["Body"]))["integration"]["name"]: str(message["MessageId"]) for message in messages}


def test_handler_mixed_batch_returns_exactly_the_retryable_ids(consumer_aws: AwsResources, receiver: Receiver) -> None:
    answers = {
        "ok": Answer(200),
        "down": Answer(503),
        "bad": Answer(400),
        "limited": Answer(429, headers={"Retry-After": "30"}),
        "slow": Answer(200, delay=1.5),
    }
    for name, answer in answers.items():
        receiver.route(f"/{name}", answer)
    enqueue(consumer_aws, *(_webhook(receiver, f"/{name}", name=name) for name in answers), "not json at all")
    messages = receive(consumer_aws)
    ids = _by_body([message for message in messages if message["Body"].startswith("{")])

    result = consume(messages)

    assert failed_ids(result) == {ids["down"], ids["limited"], ids["slow"]}


def test_handler_batch_records_are_sent_concurrently(consumer_aws: AwsResources, receiver: Receiver) -> None:
    receiver.default = Answer(200, delay=0.3)
    enqueue(consumer_aws, *(_webhook(receiver, f"/{index}", name=f"hook-{index}") for index in range(4)))

    consume_once(consumer_aws)

    assert receiver.max_in_flight > 1


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


def test_handler_429_sets_visibility_to_retry_after(consumer_aws: AwsResources, receiver: Receiver) -> None:
    receiver.script(Answer(429, headers={"Retry-After": "120"}))
    message = _webhook(receiver)
    enqueue(consumer_aws, message)
    [received] = receive(consumer_aws)

    consume([received])

    assert 115 < visible_in(consumer_aws, received["MessageId"]) <= 120


def test_handler_telegram_429_waits_parameters_retry_after(consumer_aws: AwsResources, receiver: Receiver) -> None:
    ref = put_credentials(consumer_aws, "tg", {"bot_token": BOT_TOKEN})
    receiver.script(
        Answer(429, {"ok": False, "error_code": 429, "description": "Too Many", "parameters": {"retry_after": 300}})
    )
    enqueue(consumer_aws, delivery_message("telegram", {"text": "hi"}, {"chat_id": "42"}, credentials_ref=ref))
    [received] = receive(consumer_aws)

    consume([received])

    assert 295 < visible_in(consumer_aws, received["MessageId"]) <= 300


def test_handler_5xx_backs_off_through_visibility(consumer_aws: AwsResources, receiver: Receiver) -> None:
    receiver.script(Answer(502, b""))
    message = _webhook(receiver)
    enqueue(consumer_aws, message)
    [received] = receive(consumer_aws)

    consume([received])

    # First receive: 10 s * 2^0 with equal jitter, so between 5 and 10 seconds.
    assert 3 < visible_in(consumer_aws, received["MessageId"]) <= 10
    assert (entry(message).status, entry(message).last_error) == (DeliveryStatus.RETRYING, "webhook: HTTP 502")


def test_handler_backoff_follows_retry_base_setting(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_BASE_SECONDS", "120")
    clients.reset()
    receiver.script(Answer(502, b""))
    message = _webhook(receiver)
    enqueue(consumer_aws, message)
    [received] = receive(consumer_aws)

    consume([received])

    # First receive: 120 s * 2^0 with equal jitter, so between 60 and 120 seconds.
    assert 55 < visible_in(consumer_aws, received["MessageId"]) <= 120


def test_handler_permanent_failure_records_failed_and_deletes(consumer_aws: AwsResources, receiver: Receiver) -> None:
    receiver.script(Answer(404, b"no_service"))
    message = _webhook(receiver)
    enqueue(consumer_aws, message)

    result = consume_once(consumer_aws)

    assert failed_ids(result) == set()
    assert (entry(message).status, entry(message).last_error) == (DeliveryStatus.FAILED, "webhook: HTTP 404 no_service")


def test_handler_redelivered_delivered_message_is_not_sent_again(
    consumer_aws: AwsResources, receiver: Receiver
) -> None:
    message = _webhook(receiver)
    enqueue(consumer_aws, message)
    received = receive(consumer_aws)
    consume(received)

    result = consume(received)

    assert failed_ids(result) == set()
    assert len(receiver.requests) == 1


def test_handler_last_attempt_marks_dead_and_message_reaches_dlq(
    consumer_aws: AwsResources, receiver: Receiver
) -> None:
    receiver.default = Answer(500)
    message = _webhook(receiver)
    enqueue(consumer_aws, message)
    statuses = []
    for _ in range(5):
        [received] = receive(consumer_aws)
        consume([received])
        statuses.append(entry(message).status)
        consumer_aws.sqs.change_message_visibility(
            QueueUrl=consumer_aws.delivery_queue_url, ReceiptHandle=received["ReceiptHandle"], VisibilityTimeout=0
        )

    left = receive(consumer_aws)

    assert statuses == [DeliveryStatus.RETRYING] * 4 + [DeliveryStatus.DEAD]
    assert left == []
    dead = consumer_aws.sqs.receive_message(QueueUrl=consumer_aws.dead_letter_queue_url).get("Messages", [])
    assert [json.loads(item["Body"])["notification_id"] for item in dead] == [message["notification_id"]]


def test_handler_dead_message_is_listed_then_redriven(consumer_aws: AwsResources, receiver: Receiver) -> None:
    from api.handler import handler as api_handler

    receiver.default = Answer(500, b"")
    message = _webhook(receiver)
    enqueue(consumer_aws, message)
    for _ in range(5):
        [received] = receive(consumer_aws)
        consume([received])
        consumer_aws.sqs.change_message_visibility(
            QueueUrl=consumer_aws.delivery_queue_url, ReceiptHandle=received["ReceiptHandle"], VisibilityTimeout=0
        )
    receive(consumer_aws)
    listed = response_json(api_handler(admin_event("GET", "/v1/dead-letters", token=ADMIN_TOKEN), FakeLambdaContext()))
    receiver.default = Answer(200)

    api_handler(admin_event("POST", "/v1/dead-letters/redrive", token=ADMIN_TOKEN), FakeLambdaContext())
    consume_once(consumer_aws)

    [letter] = listed["messages"]
    assert (letter["notification_id"], letter["last_error"], letter["receive_count"]) == (
        message["notification_id"],
        "webhook: HTTP 500",
        5,
    )
    assert entry(message).status is DeliveryStatus.DELIVERED


def test_handler_malformed_message_is_processed_not_retried(consumer_aws: AwsResources) -> None:
    enqueue(consumer_aws, json.dumps({"v": 1, "notification_id": "n-1"}))

    result = consume_once(consumer_aws)

    assert failed_ids(result) == set()


def test_handler_private_target_refused_without_setting(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core import clients

    monkeypatch.setenv("ALLOW_PRIVATE_TARGETS", "false")
    clients.reset()
    message = _webhook(receiver)
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    assert entry(message).status is DeliveryStatus.FAILED
    assert receiver.requests == []


def test_handler_signed_webhook_verifies_at_receiver(consumer_aws: AwsResources, receiver: Receiver) -> None:
    ref = put_credentials(consumer_aws, "hook", {"signing_secret": SIGNING_SECRET})
    enqueue(consumer_aws, _webhook(receiver, credentials_ref=ref))

    consume_once(consumer_aws)

    # What a receiver does (README.md, "Delivery"): HMAC-SHA256 over "<timestamp>.<raw body>", compared safely.
    [request] = receiver.requests
    timestamp = request.headers["X-Notification-Timestamp"]
    expected = hmac.new(SIGNING_SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Notification-Signature"], f"v1={expected}")
    assert abs(time.time() - int(timestamp)) < 300


def test_handler_missing_credentials_fail_permanently(consumer_aws: AwsResources, receiver: Receiver) -> None:
    message = delivery_message("slack", {"text": "hi"}, credentials_ref="/notify/test/integrations/orders/shipped/gone")
    enqueue(consumer_aws, message)

    result = consume_once(consumer_aws)

    assert failed_ids(result) == set()
    assert (entry(message).status, entry(message).last_error) == (DeliveryStatus.FAILED, "credentials are missing")


@pytest.mark.parametrize(
    "answer",
    [Answer(delay=1.5), Answer(reset=True), Answer(500, {"ok": False, "description": "Internal"})],
    ids=["timeout", "reset", "5xx"],
)
def test_handler_telegram_failure_keeps_token_out_of_logs_and_ledger(
    consumer_aws: AwsResources, receiver: Receiver, capsys: pytest.CaptureFixture[str], answer: Answer
) -> None:
    ref = put_credentials(consumer_aws, "tg", {"bot_token": BOT_TOKEN})
    message = delivery_message("telegram", {"text": "hi"}, {"chat_id": "42"}, credentials_ref=ref)
    receiver.script(answer)
    enqueue(consumer_aws, message)

    result = consume_once(consumer_aws)

    assert len(failed_ids(result)) == 1
    row = entry(message)
    assert row.status is DeliveryStatus.RETRYING
    assert BOT_TOKEN not in (row.last_error or "")
    assert "telegram-secret" not in capsys.readouterr().out


def test_handler_slack_failure_keeps_webhook_url_out_of_logs(
    consumer_aws: AwsResources, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{receiver.url}/services/T0/B0/slack-secret-4f9a"
    ref = put_credentials(consumer_aws, "slack", {"webhook_url": url})
    receiver.script(Answer(reset=True))
    message = delivery_message("slack", {"text": "hi"}, credentials_ref=ref)
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    assert "slack-secret" not in capsys.readouterr().out
    assert "slack-secret" not in (entry(message).last_error or "")


def test_handler_email_is_sent_through_ses(consumer_aws: AwsResources) -> None:
    import boto3

    boto3.client("ses", region_name=REGION).verify_email_identity(EmailAddress="noreply@example.com")
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
    import boto3

    sns = boto3.client("sns", region_name=REGION)
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
    assert json.loads(json.loads(published)["GCM"]) == {"notification": {"body": "Order 42 shipped"}}
    assert entry(message).status is DeliveryStatus.DELIVERED


def test_handler_push_to_disabled_endpoint_fails_permanently(consumer_aws: AwsResources) -> None:
    message = delivery_message("push", {"text": "hi"}, {"endpoint_arn": _endpoint(enabled=False)})
    enqueue(consumer_aws, message)

    result = consume_once(consumer_aws)

    assert failed_ids(result) == set()
    assert (entry(message).status, entry(message).last_error) == (DeliveryStatus.FAILED, "push: EndpointDisabled")
