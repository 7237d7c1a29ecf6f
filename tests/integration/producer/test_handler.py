"""Integration tests of the publish route (producer/handler.py → publish.py → core fan-out) on moto."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError

from api.topics import rotate_hash
from core import clients
from core.models import DeliveryStatus
from core.queue import NO_ANSWER
from core.topics import TopicRegistry, hash_topic_secret
from core.validation import NAME_RULE, TEXT_RULE
from tests.fakes.lambda_context import FakeLambdaContext
from tests.fakes.sqs_failures import SqsEntryFailures
from tests.fakes.sqs_stall import SqsStall
from tests.integration.producer.conftest import METADATA, Service
from tests.support.aws import NAMES
from tests.support.events import TOPIC_SECRETS, publish_event, response_header, response_json, topic_body

NAMES_OF_SAMPLE = ["buyer-push", "erp-webhook", "ops-email", "ops-telegram", "team-slack"]
PREFIX = "/notify/test/integrations/orders/shipped"
URL = "https://erp.example.com/h"
UPSTREAM_PREFIX = "An error occurs while processing the request (Message: "


def _message(response: dict[str, Any]) -> str:
    body = response_json(response)
    assert set(body) == {"message"}
    assert "Traceback" not in response["body"]
    message: str = body["message"]
    return message


def _count_calls(client: Any, operation: str, table: str | None = None) -> list[dict[str, Any]]:
    """Record the parameters of every ``operation`` call a boto3 client makes (optionally on one table only)."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        if table is None or params.get("TableName") == table:
            calls.append(params)

    client.meta.events.register(f"provide-client-params.{client.meta.service_model.service_name}.{operation}", record)
    return calls


def _webhooks(count: int) -> dict[str, Any]:
    return {
        "integrations": [
            {
                "name": f"hook-{index:02d}",
                "type": "webhook",
                "target": {"url": "https://erp.example.com/h"},
                "model": "$v",
            }
            for index in range(count)
        ]
    }


# --- success ----------------------------------------------------------------------------------------------------


def test_publish_valid_request_returns_200_with_a_message_id_per_integration(service: Service, topic_hash: str) -> None:
    response = service.publish({"metadata": METADATA}, topic_hash)

    body = response_json(response)
    queued = {message["MessageId"] for message in service.queued()}
    assert response["statusCode"] == 200
    assert sorted(body) == NAMES_OF_SAMPLE
    assert set(body.values()) == queued


def test_publish_valid_request_sets_notification_headers(service: Service, topic_hash: str) -> None:
    response = service.publish({"metadata": METADATA}, topic_hash)

    notification_id = response_header(response, "X-Notification-Id")
    assert notification_id
    assert response_header(response, "Location") == f"/v1/notifications/{notification_id}"


def test_publish_messages_carry_rendered_content_and_references(service: Service, topic_hash: str) -> None:
    response = service.publish({"metadata": {**METADATA, "name": "<Ada & Co>"}}, topic_hash)

    bodies = {json.loads(m["Body"])["integration"]["name"]: json.loads(m["Body"]) for m in service.queued()}
    notification_id = response_header(response, "X-Notification-Id")
    assert {body["notification_id"] for body in bodies.values()} == {notification_id}
    assert bodies["team-slack"]["content"] == {"text": "Order *A-1* shipped to &lt;Ada &amp; Co&gt;"}
    assert bodies["ops-email"]["content"] == {
        "subject": "Order A-1 shipped",
        "text": "Hi <Ada & Co>, order A-1 is on its way.",
        "html": "<p>Hi &lt;Ada &amp; Co&gt;</p>",
    }
    assert bodies["erp-webhook"]["content"] == {"data": {"event": "order.shipped", "order": "A-1", "total": 12.5}}
    # Under its integration's path, by a name no parameter had before (a topic deleted and made again never shares it).
    assert bodies["team-slack"]["integration"]["credentials_ref"].startswith(
        "/notify/test/integrations/orders/shipped/team-slack/"
    )
    assert "credentials_ref" not in bodies["ops-email"]["integration"]


def test_publish_lowercase_headers_are_accepted(
    service: Service, topic_hash: str, lambda_context: FakeLambdaContext
) -> None:
    from producer.handler import handler

    event = publish_event("orders", "shipped", {"metadata": METADATA}, None)
    event["headers"]["x-topic-hash-x"] = topic_hash
    event["multiValueHeaders"]["x-topic-hash-x"] = [topic_hash]

    assert handler(event, lambda_context)["statusCode"] == 200


def test_publish_25_integrations_sends_3_batches(service: Service) -> None:
    topic_hash = service.create_topic(_webhooks(25))
    batches = _count_calls(clients.get_client("sqs", single_try=True), "SendMessageBatch")

    response = service.publish({"metadata": {"v": 1}}, topic_hash)

    assert response["statusCode"] == 200
    assert [len(call["Entries"]) for call in batches] == [10, 10, 5]
    assert len(response_json(response)) == 25
    assert len(service.queued()) == 25


# --- secrets ----------------------------------------------------------------------------------------------------


def test_publish_no_secret_in_queue_bodies(service: Service, topic_hash: str) -> None:
    service.publish({"metadata": METADATA}, topic_hash)

    bodies = " ".join(message["Body"] for message in service.queued())
    assert bodies
    assert not any(secret in bodies for secret in (*TOPIC_SECRETS, topic_hash))


def test_publish_no_secret_in_response(service: Service, topic_hash: str) -> None:
    response = service.publish({"metadata": METADATA}, topic_hash)

    text = json.dumps(response)
    assert not any(secret in text for secret in (*TOPIC_SECRETS, topic_hash))


def test_publish_no_secret_in_logs(service: Service, topic_hash: str, logs: Callable[[], str]) -> None:
    logs()
    service.publish({"metadata": METADATA}, topic_hash)
    service.publish({"metadata": METADATA}, "wrong-hash-9d3c")

    output = logs()
    assert "notification published" in output
    assert not any(secret in output for secret in (*TOPIC_SECRETS, topic_hash, "wrong-hash-9d3c"))


# --- error statuses -------------------------------------------------------------------------------------------------


def test_publish_malformed_json_returns_400(service: Service, topic_hash: str) -> None:
    response = service.publish('{"metadata": {"order_id": ', topic_hash)

    assert response["statusCode"] == 400
    assert _message(response).startswith("request body is not valid JSON")


def test_publish_missing_topic_hash_returns_403(service: Service, topic_hash: str) -> None:
    response = service.publish({"metadata": METADATA}, None)

    assert response["statusCode"] == 403
    assert "x-topic-hash-x" in _message(response)


@pytest.mark.parametrize("given", ["", "wrong-hash", "x" * 43])
def test_publish_wrong_topic_hash_returns_403(service: Service, topic_hash: str, given: str) -> None:
    response = service.publish({"metadata": METADATA}, given)

    assert response["statusCode"] == 403
    assert "x-topic-hash-x" in _message(response)
    assert service.queued() == []


def test_publish_hash_of_another_topic_returns_403(service: Service, topic_hash: str) -> None:
    other_hash = service.create_topic(topic="cancelled")

    response = service.publish({"metadata": METADATA}, other_hash)

    assert response["statusCode"] == 403


@pytest.mark.parametrize(("channel", "topic"), [("orders", "unknown"), ("unknown", "shipped")])
def test_publish_unknown_channel_or_topic_returns_404(
    service: Service, topic_hash: str, channel: str, topic: str
) -> None:
    response = service.publish({"metadata": METADATA}, topic_hash, channel=channel, topic=topic)

    assert response["statusCode"] == 404
    assert f"'{topic}' of channel '{channel}'" in _message(response)


@pytest.mark.parametrize(("field", "names"), [("topic", {"topic": "t" * 1025}), ("channel", {"channel": "c" * 2049})])
def test_publish_channel_or_topic_over_dynamodb_key_limit_returns_404_naming_it_without_a_read(
    service: Service, topic_hash: str, field: str, names: dict[str, str]
) -> None:
    # moto takes such keys; DynamoDB refuses them (ValidationException), which would be a 502.
    reads = _count_calls(clients.get_client("dynamodb"), "GetItem", NAMES["TOPICS_TABLE"])

    response = service.publish({"metadata": METADATA}, topic_hash, **names)

    assert response["statusCode"] == 404
    assert _message(response) == f"{field}: is not a valid name, so no such {field} exists ({NAME_RULE})"
    assert reads == []


@pytest.mark.parametrize("idempotency_key", [None, "digits-1"])
def test_publish_number_over_the_digit_limit_returns_400(
    service: Service, topic_hash: str, idempotency_key: str | None
) -> None:
    body = '{"metadata": {"order_id": "A-1", "name": "Ada", "total": 12.5, "x": ' + "1" * 5000 + "}}"

    response = service.publish(body, topic_hash, idempotency_key=idempotency_key)

    assert response["statusCode"] == 400
    limit = sys.get_int_max_str_digits()
    assert (
        _message(response)
        == f"request body holds a number of more than {limit} digits; a number may have at most {limit}"
    )
    assert service.queued() == []


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e999"])
@pytest.mark.parametrize("idempotency_key", [None, "numbers-1"])
def test_publish_number_json_has_not_returns_400_and_enqueues_nothing(
    service: Service, topic_hash: str, number: str, idempotency_key: str | None
) -> None:
    # Accepted before, each reached the receivers as null (and NaN and null made one idempotency digest).
    body = '{"metadata": {"order_id": "A-1", "name": "Ada", "total": ' + number + "}}"

    response = service.publish(body, topic_hash, idempotency_key=idempotency_key)

    assert response["statusCode"] == 400
    assert _message(response).startswith("request body is not valid JSON: ")
    assert number in _message(response)
    assert service.queued() == []


@pytest.mark.parametrize("text", ["\\ud800", "Ada \\udfff", "\\uffff", "\\ufffe"])
@pytest.mark.parametrize("idempotency_key", [None, "text-1"])
def test_publish_text_no_message_can_carry_returns_422_naming_the_field(
    service: Service, topic_hash: str, text: str, idempotency_key: str | None
) -> None:
    body = '{"metadata": {"order_id": "A-1", "total": 12.5, "name": "' + text + '"}}'

    response = service.publish(body, topic_hash, idempotency_key=idempotency_key)

    assert response["statusCode"] == 422
    assert _message(response) == f"metadata.name: {TEXT_RULE}"
    assert service.queued() == []


def test_publish_escaped_control_characters_and_surrogate_pairs_are_delivered(
    service: Service, topic_hash: str
) -> None:
    body = '{"metadata": {"order_id": "A-1", "total": 12.5, "name": "Ada\\u0001\\t\\ud83d\\ude00"}}'

    response = service.publish(body, topic_hash)

    assert response["statusCode"] == 200
    texts = [json.loads(message["Body"])["content"].get("text", "") for message in service.queued()]
    assert any("Ada\x01\t\U0001f600" in text for text in texts)


def test_publish_body_over_256_kib_returns_413(service: Service, topic_hash: str) -> None:
    response = service.publish({"metadata": {**METADATA, "pad": "x" * (256 * 1024)}}, topic_hash)

    assert response["statusCode"] == 413
    assert "256 KiB" in _message(response)
    assert service.queued() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"metadata": ["not", "an", "object"]}, "metadata", id="metadata-not-object"),
        pytest.param({"metadata": METADATA, "priority": "high"}, "priority", id="unknown-field"),
    ],
)
def test_publish_invalid_body_returns_422_naming_the_field(
    service: Service, topic_hash: str, body: Any, field: str
) -> None:
    response = service.publish(body, topic_hash)

    assert response["statusCode"] == 422
    assert _message(response).startswith(f"{field}: ")


def test_publish_missing_variables_returns_422_naming_all_sorted(service: Service, topic_hash: str) -> None:
    response = service.publish({"metadata": {"name": "Ada"}}, topic_hash)

    assert response["statusCode"] == 422
    assert _message(response) == "metadata: missing template variables: order_id, total"
    assert service.queued() == []


def test_publish_topics_table_unavailable_returns_502(service: Service, topic_hash: str) -> None:
    service.aws.dynamodb.delete_table(TableName=NAMES["TOPICS_TABLE"])

    response = service.publish({"metadata": METADATA}, topic_hash)

    assert response["statusCode"] == 502
    assert _message(response).startswith(UPSTREAM_PREFIX)
    assert _message(response).endswith(")")


def test_publish_queue_unavailable_returns_502_and_marks_every_delivery_failed(
    service: Service, topic_hash: str
) -> None:
    service.aws.sqs.delete_queue(QueueUrl=service.aws.delivery_queue_url)

    response = service.publish({"metadata": METADATA}, topic_hash)

    notification_id = response_header(response, "X-Notification-Id")
    assert response["statusCode"] == 502
    assert _message(response).startswith(UPSTREAM_PREFIX)
    assert notification_id
    entries = service.ledger().page(notification_id).entries
    assert {entry.integration: entry.status for entry in entries} == dict.fromkeys(
        NAMES_OF_SAMPLE, DeliveryStatus.FAILED
    )
    assert all(entry.last_error and entry.last_error.startswith("not enqueued: ") for entry in entries)


# --- SendMessageBatch partial failure (moto reports the chosen entries Failed) ----------------------------------------


def test_publish_entry_failed_once_is_retried_and_returns_200(service: Service, topic_hash: str) -> None:
    failures = SqsEntryFailures(clients.get_client("sqs", single_try=True))
    failures.fail("team-slack", times=1)
    failures.fail("ops-email", times=1)

    response = service.publish({"metadata": METADATA}, topic_hash)

    body = response_json(response)
    assert response["statusCode"] == 200
    assert failures.attempts["team-slack"] == 2
    assert sorted(body) == NAMES_OF_SAMPLE
    assert set(body.values()) == {message["MessageId"] for message in service.queued()}


def test_publish_entry_failed_once_leaves_every_row_queued(service: Service, topic_hash: str) -> None:
    SqsEntryFailures(clients.get_client("sqs", single_try=True)).fail("team-slack", times=1)

    response = service.publish({"metadata": METADATA}, topic_hash)

    entries = service.ledger().page(str(response_header(response, "X-Notification-Id"))).entries
    assert {entry.status for entry in entries} == {DeliveryStatus.QUEUED}


def test_publish_entry_still_failing_returns_502_with_notification_id(service: Service, topic_hash: str) -> None:
    failures = SqsEntryFailures(clients.get_client("sqs", single_try=True))
    failures.fail("team-slack", times=2)

    response = service.publish({"metadata": METADATA}, topic_hash)

    notification_id = response_header(response, "X-Notification-Id")
    message = _message(response)
    assert response["statusCode"] == 502
    assert failures.attempts["team-slack"] == 2
    assert notification_id
    assert response_header(response, "Location") == f"/v1/notifications/{notification_id}"
    assert message.startswith(UPSTREAM_PREFIX)
    assert "team-slack" in message


def test_publish_entry_still_failing_ledger_tells_which_and_why(service: Service, topic_hash: str) -> None:
    failures = SqsEntryFailures(clients.get_client("sqs", single_try=True))
    failures.fail("team-slack", times=2)
    failures.fail("erp-webhook", times=2)

    response = service.publish({"metadata": METADATA}, topic_hash)

    entries = service.ledger().page(str(response_header(response, "X-Notification-Id"))).entries
    assert {entry.integration: (entry.status, entry.last_error) for entry in entries} == {
        "buyer-push": (DeliveryStatus.QUEUED, None),
        "erp-webhook": (DeliveryStatus.FAILED, "not enqueued: InvalidParameterValue"),
        "ops-email": (DeliveryStatus.QUEUED, None),
        "ops-telegram": (DeliveryStatus.QUEUED, None),
        "team-slack": (DeliveryStatus.FAILED, "not enqueued: InvalidParameterValue"),
    }


def test_publish_entry_still_failing_whose_failed_row_write_fails_too_is_failed_not_queued(
    service: Service, topic_hash: str
) -> None:
    failures = SqsEntryFailures(clients.get_client("sqs", single_try=True))
    failures.fail("team-slack", times=2)

    def refuse_failed_rows(params: dict[str, Any], **_: Any) -> None:
        # The failed row's write (a PutItem only where no row is) goes to a table that is not there: refused for real.
        if params.get("ConditionExpression") == "attribute_not_exists(#s)":
            params["TableName"] = "notify-test-no-such-table"

    clients.get_client("dynamodb").meta.events.register("before-parameter-build.dynamodb.PutItem", refuse_failed_rows)

    response = service.publish({"metadata": METADATA}, topic_hash)

    # The record says what was enqueued; with no row, the delivery the queue never had was "queued" for ever.
    page = service.ledger().page(str(response_header(response, "X-Notification-Id")))
    assert response["statusCode"] == 502
    assert {entry.integration: (entry.status, entry.last_error) for entry in page.entries}["team-slack"] == (
        DeliveryStatus.FAILED,
        "not enqueued: the publish could not send it to the delivery queue",
    )
    assert page.counts == {"queued": 4, "failed": 1}


def test_publish_retried_after_a_502_whose_failed_row_write_failed_is_queued_again(
    service: Service, topic_hash: str
) -> None:
    failures = SqsEntryFailures(clients.get_client("sqs", single_try=True))
    failures.fail("team-slack", times=2)
    ledger_client = clients.get_client("dynamodb")

    def refuse_failed_rows(params: dict[str, Any], **_: Any) -> None:
        if params.get("ConditionExpression") == "attribute_not_exists(#s)":
            params["TableName"] = "notify-test-no-such-table"

    ledger_client.meta.events.register("before-parameter-build.dynamodb.PutItem", refuse_failed_rows)
    first = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-9")
    ledger_client.meta.events.unregister("before-parameter-build.dynamodb.PutItem", refuse_failed_rows)

    retry = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-9")

    page = service.ledger().page(str(response_header(retry, "X-Notification-Id")))
    assert (first["statusCode"], retry["statusCode"]) == (502, 200)
    assert page.counts == {"queued": 5}


def test_publish_retried_after_a_502_whose_enqueued_write_fails_still_reads_queued(
    service: Service, topic_hash: str
) -> None:
    """The retry enqueues team-slack and deletes its failed row, then its write of the enqueued ids fails: a delivery
    missing from the record's ids was read as not enqueued (failed) while it waited on the queue."""
    failures = SqsEntryFailures(clients.get_client("sqs", single_try=True))
    failures.fail("team-slack", times=2)
    first = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-s1")
    ledger_client = clients.get_client("dynamodb")

    def refuse_enqueued(params: dict[str, Any], **_: Any) -> None:
        if str(params.get("UpdateExpression", "")).startswith("SET enqueued = :e"):
            params["TableName"] = "notify-test-no-such-table"

    ledger_client.meta.events.register("before-parameter-build.dynamodb.UpdateItem", refuse_enqueued)
    retry = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-s1")
    ledger_client.meta.events.unregister("before-parameter-build.dynamodb.UpdateItem", refuse_enqueued)

    queued = [json.loads(message["Body"])["integration"]["name"] for message in service.queued()]
    page = service.ledger().page(str(response_header(retry, "X-Notification-Id")))
    assert (first["statusCode"], retry["statusCode"]) == (502, 200)
    assert "team-slack" in queued
    assert page.counts == {"queued": 5}


def test_publish_entry_still_failing_reports_no_unsent_message(service: Service, topic_hash: str) -> None:
    SqsEntryFailures(clients.get_client("sqs", single_try=True)).fail("team-slack", times=2)

    response = service.publish({"metadata": METADATA}, topic_hash)

    queued = {json.loads(message["Body"])["integration"]["name"] for message in service.queued()}
    assert queued == set(NAMES_OF_SAMPLE) - {"team-slack"}
    assert "team-slack" not in queued
    assert not any(name in response["body"] for name in queued)


# --- SQS that stops answering: the sends get the invocation's time less the margin, no more ----------------------


def _publish_with_seconds_left(
    service: Service, topic_hash: str, seconds: float, idempotency_key: str | None = None
) -> dict[str, Any]:
    from producer.handler import SEND_MARGIN_SECONDS, handler

    event = publish_event("orders", "shipped", {"metadata": METADATA}, topic_hash, idempotency_key)
    context = FakeLambdaContext(timeout_seconds=SEND_MARGIN_SECONDS + seconds)
    result: dict[str, Any] = handler(event, context)
    return result


@pytest.fixture
def stalled_sqs() -> Iterator[SqsStall]:
    stall = SqsStall(clients.get_client("sqs", single_try=True))
    yield stall
    stall.finish()


def test_publish_sqs_unanswering_returns_502_naming_every_delivery_before_the_timeout(
    service: Service, topic_hash: str, stalled_sqs: SqsStall
) -> None:
    # The stall holds each call 30 s; the function's context has 2.5 s left, of which the sends get 0.5 s.
    response = _publish_with_seconds_left(service, topic_hash, 0.5)

    assert response["statusCode"] == 502
    assert all(name in _message(response) for name in NAMES_OF_SAMPLE)
    assert response_header(response, "X-Notification-Id")


def test_publish_sqs_unanswering_rows_say_failed_and_why(
    service: Service, topic_hash: str, stalled_sqs: SqsStall
) -> None:
    response = _publish_with_seconds_left(service, topic_hash, 0.5)

    entries = service.ledger().page(str(response_header(response, "X-Notification-Id"))).entries
    assert {entry.integration: (entry.status, entry.last_error) for entry in entries} == dict.fromkeys(
        NAMES_OF_SAMPLE, (DeliveryStatus.FAILED, f"not enqueued: {NO_ANSWER}")
    )


def test_publish_sqs_answering_late_enqueues_what_the_ledger_says_failed_and_a_keyed_retry_finishes_it(
    service: Service, topic_hash: str, stalled_sqs: SqsStall
) -> None:
    # The late answer is why the reason says the message may still arrive: the consumer then delivers it and its row
    # write wins over "failed" (tests/integration/core/test_ledger.py). A retry under the key enqueues all again,
    # under the same notification id and keys, which the consumer and receivers drop as duplicates.
    first = _publish_with_seconds_left(service, topic_hash, 0.5, idempotency_key="order-1")
    stalled_sqs.finish()
    late = service.queued()
    retry = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-1")

    notification_id = response_header(first, "X-Notification-Id")
    assert (first["statusCode"], retry["statusCode"]) == (502, 200)
    assert sorted(json.loads(message["Body"])["integration"]["name"] for message in late) == NAMES_OF_SAMPLE
    assert response_header(retry, "X-Notification-Id") == notification_id
    assert sorted(response_json(retry)) == NAMES_OF_SAMPLE
    assert {entry.status for entry in service.ledger().page(str(notification_id)).entries} == {DeliveryStatus.QUEUED}


def test_publish_batch_send_is_tried_once_a_pass_by_botocore_and_twice_in_all(
    service: Service, topic_hash: str
) -> None:
    # No botocore retries under the queue's own second try: a call a bounded publish left behind never sends again.
    attempts: list[str] = []

    def connection_lost(**_: Any) -> None:
        attempts.append("SendMessageBatch")
        raise ConnectionClosedError(endpoint_url="https://sqs.us-east-1.amazonaws.com/")

    clients.get_client("sqs", single_try=True).meta.events.register("before-send.sqs.SendMessageBatch", connection_lost)

    response = service.publish({"metadata": METADATA}, topic_hash)

    assert (response["statusCode"], attempts) == (502, ["SendMessageBatch"] * 2)
    entries = service.ledger().page(str(response_header(response, "X-Notification-Id"))).entries
    assert {entry.last_error for entry in entries} == {"not enqueued: ConnectionClosedError"}


# --- topic cache, replace and rotation ------------------------------------------------------------------------------


def test_publish_warm_second_call_does_no_get_item_on_topics(service: Service, topic_hash: str) -> None:
    reads = _count_calls(clients.get_client("dynamodb"), "GetItem", NAMES["TOPICS_TABLE"])

    first = service.publish({"metadata": METADATA}, topic_hash)
    second = service.publish({"metadata": METADATA}, topic_hash)

    assert (first["statusCode"], second["statusCode"]) == (200, 200)
    assert len(reads) == 1


def test_publish_cache_off_reads_topic_every_call(
    service: Service, topic_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOPIC_CACHE_TTL_SECONDS", "0")
    clients.reset()
    reads = _count_calls(clients.get_client("dynamodb"), "GetItem", NAMES["TOPICS_TABLE"])

    service.publish({"metadata": METADATA}, topic_hash)
    service.publish({"metadata": METADATA}, topic_hash)

    assert len(reads) == 2


def test_publish_after_replace_old_hash_still_works(service: Service, topic_hash: str) -> None:
    body = topic_body()
    body["integrations"] = body["integrations"][:1]
    assert service.admin("PUT", body=body)["statusCode"] == 200

    response = service.publish({"metadata": METADATA}, topic_hash)

    assert response["statusCode"] == 200
    assert list(response_json(response)) == ["ops-email"]


def test_publish_after_rotate_old_hash_returns_403(
    service: Service, topic_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOPIC_CACHE_TTL_SECONDS", "0")
    clients.reset()
    assert service.publish({"metadata": METADATA}, topic_hash)["statusCode"] == 200

    service.admin("POST", "/rotate-hash")

    assert service.publish({"metadata": METADATA}, topic_hash)["statusCode"] == 403


def test_publish_after_rotate_new_hash_works(service: Service, topic_hash: str) -> None:
    new_hash = response_json(service.admin("POST", "/rotate-hash"))["topic_hash"]
    clients.reset()  # a fresh container: no cached topic

    response = service.publish({"metadata": METADATA}, new_hash)

    assert response["statusCode"] == 200


def _other_container_registry() -> TopicRegistry:
    """The management API's registry, in a container of its own: what it writes leaves this one's cache as it was."""
    return TopicRegistry(clients.get_client("dynamodb"), NAMES["TOPICS_TABLE"])


def test_publish_warm_after_rotate_in_another_container_takes_the_new_hash_at_once(
    service: Service, topic_hash: str
) -> None:
    # The warm publisher's cached topic refused the new hash (403) and took the old one for up to 30 s.
    assert service.publish({"metadata": METADATA}, topic_hash)["statusCode"] == 200
    new_hash = rotate_hash("orders", "shipped", _other_container_registry())

    response = service.publish({"metadata": METADATA}, new_hash)

    assert response["statusCode"] == 200


def test_publish_warm_after_a_topic_made_again_refuses_the_old_topics_hash(service: Service, topic_hash: str) -> None:
    # The deleted topic's hash fanned out to the deleted topic's integrations, the new topic's hash got 403.
    assert service.publish({"metadata": METADATA}, topic_hash)["statusCode"] == 200
    registry = _other_container_registry()
    stored = registry.read_stored("orders", "shipped")
    registry.delete("orders", "shipped")
    new_hash = "a-new-topics-hash"
    registry.create(stored.topic.model_copy(update={"hash_sha256": hash_topic_secret(new_hash)}))

    assert service.publish({"metadata": METADATA}, new_hash)["statusCode"] == 200
    assert service.publish({"metadata": METADATA}, topic_hash)["statusCode"] == 403


# --- deeply nested bodies ---------------------------------------------------------------------------------------------


def _metadata(depth: int) -> dict[str, Any]:
    """Return the sample metadata nested ``depth`` levels deep, its own object being the first level."""
    value: Any = "x"
    for level in range(depth - 1):
        value = {f"l{level}": value}
    return {**METADATA, "deep": value}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"metadata": {"a": ' + "[" * 10_000 + "]" * 10_000 + "}}", id="arrays"),
        pytest.param('{"metadata": ' + '{"a": ' * 10_000 + "1" + "}" * 10_001, id="objects"),
        pytest.param("[" * 10_000 + "]" * 10_000, id="top-level-arrays"),
    ],
)
@pytest.mark.parametrize("idempotency_key", [None, "deep-1"])
def test_publish_body_nested_10000_deep_returns_400(
    service: Service, topic_hash: str, body: str, idempotency_key: str | None
) -> None:
    response = service.publish(body, topic_hash, idempotency_key=idempotency_key)

    assert response["statusCode"] == 400
    assert _message(response) == "the body is nested too deeply"
    assert service.queued() == []


@pytest.mark.parametrize("idempotency_key", [None, "deep-1"])
def test_publish_metadata_33_deep_returns_422_naming_metadata_and_the_limit(
    service: Service, topic_hash: str, idempotency_key: str | None
) -> None:
    response = service.publish({"metadata": _metadata(33)}, topic_hash, idempotency_key=idempotency_key)

    assert response["statusCode"] == 422
    assert _message(response) == "metadata: must not be nested deeper than 32 levels"
    assert service.queued() == []


@pytest.mark.parametrize("idempotency_key", [None, "deep-1"])
def test_publish_metadata_32_deep_is_accepted(service: Service, topic_hash: str, idempotency_key: str | None) -> None:
    response = service.publish({"metadata": _metadata(32)}, topic_hash, idempotency_key=idempotency_key)

    assert response["statusCode"] == 200
    assert len(service.queued()) == len(NAMES_OF_SAMPLE)


def test_publish_metadata_300_deep_with_idempotency_key_returns_400(service: Service, topic_hash: str) -> None:
    response = service.publish({"metadata": _metadata(300)}, topic_hash, idempotency_key="deep-1")

    assert response["statusCode"] == 400
    assert _message(response) == "the body is nested too deeply"
    assert service.queued() == []


@pytest.mark.parametrize("payload", ["5", 5, [1, 2], True, None], ids=["text", "number", "array", "boolean", "null"])
def test_publish_push_payload_of_metadata_that_is_no_object_is_refused_and_nothing_queued(
    service: Service, payload: Any
) -> None:
    # A metadata value standing for a platform's whole payload: only a string was checked, so 5, [1, 2], true and
    # null were accepted (200), then published to SNS as "5"..., which no device shows.
    endpoint = "arn:aws:sns:us-east-1:123456789012:endpoint/APNS/notify/0a1b2c3d"
    push = {"name": "buyer-push", "type": "push", "target": {"endpoint_arn": endpoint}, "model": {"APNS": "$payload"}}
    topic_hash = service.create_topic({"integrations": [push]})

    response = service.publish({"metadata": {"payload": payload}}, topic_hash)

    assert response["statusCode"] == 422, response["body"]
    assert "APNS payload is not a JSON object" in response_json(response)["message"]
    assert service.queued() == []
