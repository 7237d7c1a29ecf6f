"""Integration tests of idempotent publishing (producer/idempotency.py through the publish route) on moto."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from core import clients
from core.models import DeliveryStatus
from tests.fakes.lambda_context import FakeLambdaContext
from tests.fakes.sqs_failures import SqsEntryFailures
from tests.integration.producer.conftest import METADATA, Service
from tests.support.aws import NAMES
from tests.support.events import publish_event, response_header, response_json, topic_body

SAMPLE_SIZE = 5
NAMES_OF_SAMPLE = ["buyer-push", "erp-webhook", "ops-email", "ops-telegram", "team-slack"]


def _message(response: dict[str, Any]) -> str:
    message: str = response_json(response)["message"]
    return message


def test_idempotency_same_key_and_body_replays_the_first_response(service: Service, topic_hash: str) -> None:
    first = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    second = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    assert (first["statusCode"], second["statusCode"]) == (200, 200)
    assert response_header(second, "X-Notification-Id") == response_header(first, "X-Notification-Id")
    assert response_json(second) == response_json(first)


def test_idempotency_replay_enqueues_nothing_twice(service: Service, topic_hash: str) -> None:
    first = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")
    enqueued = response_json(first)  # integration name -> SQS message id

    service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    # The notification id of a keyed publish is the same whatever runs it: the messages tell a second enqueue.
    queued = service.queued()
    assert sorted(message["MessageId"] for message in queued) == sorted(enqueued.values())
    notification_id = response_header(first, "X-Notification-Id")
    assert {json.loads(message["Body"])["notification_id"] for message in queued} == {notification_id}


def test_idempotency_replay_sees_body_with_other_key_order_and_spacing_as_same(
    service: Service, topic_hash: str
) -> None:
    first = service.publish({"metadata": {"order_id": "A-1", "name": "Ada", "total": 12.5}}, topic_hash, "k")

    second = service.publish('{ "metadata" : {"total": 12.5, "name": "Ada", "order_id": "A-1"} }', topic_hash, "k")

    assert response_header(second, "X-Notification-Id") == response_header(first, "X-Notification-Id")


def test_idempotency_same_key_other_body_returns_409(service: Service, topic_hash: str) -> None:
    service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    response = service.publish({"metadata": {**METADATA, "total": 99}}, topic_hash, idempotency_key="order-A-1")

    assert response["statusCode"] == 409
    assert response_json(response) == {"message": "Idempotency-Key was already used with a different request body"}
    assert len(service.queued()) == SAMPLE_SIZE


def test_idempotency_same_key_other_api_key_is_a_new_notification(service: Service, topic_hash: str) -> None:
    first = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1", api_key_id="key-one")

    second = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1", api_key_id="key-two")

    assert second["statusCode"] == 200
    assert response_header(second, "X-Notification-Id") != response_header(first, "X-Notification-Id")
    assert len(service.queued()) == 2 * SAMPLE_SIZE


def test_idempotency_same_key_other_topic_is_a_new_notification(service: Service, topic_hash: str) -> None:
    other_hash = service.create_topic(topic="cancelled")
    first = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    second = service.publish({"metadata": METADATA}, other_hash, idempotency_key="order-A-1", topic="cancelled")

    assert second["statusCode"] == 200
    assert response_header(second, "X-Notification-Id") != response_header(first, "X-Notification-Id")


def test_idempotency_no_key_publishes_twice(service: Service, topic_hash: str) -> None:
    first = service.publish({"metadata": METADATA}, topic_hash)

    second = service.publish({"metadata": METADATA}, topic_hash)

    assert response_header(second, "X-Notification-Id") != response_header(first, "X-Notification-Id")
    assert len(service.queued()) == 2 * SAMPLE_SIZE


def test_idempotency_refused_request_leaves_no_record_in_progress(service: Service, topic_hash: str) -> None:
    refused = service.publish({"metadata": {}}, topic_hash, idempotency_key="order-A-1")

    accepted = service.publish({"metadata": {}}, topic_hash, idempotency_key="order-A-1")

    assert (refused["statusCode"], accepted["statusCode"]) == (422, 422)
    assert service.queued() == []


def test_idempotency_key_after_refused_request_publishes_the_corrected_one(service: Service, topic_hash: str) -> None:
    service.publish({"metadata": {}}, topic_hash, idempotency_key="order-A-1")

    response = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    assert response["statusCode"] == 200
    assert len(service.queued()) == SAMPLE_SIZE


def test_idempotency_wrong_hash_with_known_key_returns_403_not_the_replay(service: Service, topic_hash: str) -> None:
    service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    response = service.publish({"metadata": METADATA}, "wrong-hash", idempotency_key="order-A-1")

    assert response["statusCode"] == 403


def _deleted_topic(service: Service) -> None:
    """Delete the topic; the publisher's cached copy lapses (TOPIC_CACHE_TTL_SECONDS later, or another container)."""
    assert service.admin("DELETE")["statusCode"] == 204
    clients.reset()


def test_idempotency_replay_after_the_topic_was_deleted_answers_the_first_response(
    service: Service, topic_hash: str
) -> None:
    # A publisher that lost its 200 and retries was told the topic did not exist: it took the notification for
    # unsent, though its deliveries were on the queue.
    first = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")
    _deleted_topic(service)

    again = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    assert (again["statusCode"], response_json(again)) == (200, response_json(first))
    assert response_header(again, "X-Notification-Id") == response_header(first, "X-Notification-Id")
    assert len(service.queued()) == SAMPLE_SIZE


@pytest.mark.parametrize(
    ("body", "key"),
    [({"metadata": {**METADATA, "order_id": "B-2"}}, "order-A-1"), ({"metadata": METADATA}, "order-A-2")],
    ids=["other-body", "unknown-key"],
)
def test_idempotency_after_the_topic_was_deleted_other_body_or_key_is_404(
    service: Service, topic_hash: str, body: dict[str, Any], key: str
) -> None:
    service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")
    _deleted_topic(service)

    response = service.publish(body, topic_hash, idempotency_key=key)

    assert response["statusCode"] == 404
    assert "does not exist" in _message(response)
    # Nothing was left in progress under the key: the topic made again, the same request publishes.
    if key == "order-A-2":
        new_hash = response_json(service.admin("PUT", body=topic_body()))["topic_hash"]
        assert service.publish(body, new_hash, idempotency_key=key)["statusCode"] == 200


# --- a retry after a 502 finishes the same notification -------------------------------------------------------------


class Crash(BaseException):
    """What the runtime does to an invocation that times out: nothing after it runs, no ``except Exception`` sees it."""


def _notification_records(service: Service) -> list[str]:
    items = service.aws.dynamodb.scan(TableName=NAMES["DELIVERIES_TABLE"])["Items"]
    return [item["notification_id"]["S"] for item in items if item["delivery_key"]["S"] == "#"]


def _fail_first_attempt(service: Service, topic_hash: str, times: int = 2) -> dict[str, Any]:
    SqsEntryFailures(clients.get_client("sqs", single_try=True)).fail("team-slack", times=times)
    response = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")
    assert response["statusCode"] == 502
    return response


def test_idempotency_retry_after_502_keeps_the_notification_id(service: Service, topic_hash: str) -> None:
    failed = _fail_first_attempt(service, topic_hash)

    retried = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    assert retried["statusCode"] == 200
    assert response_header(retried, "X-Notification-Id") == response_header(failed, "X-Notification-Id")
    assert _notification_records(service) == [response_header(failed, "X-Notification-Id")]


def test_idempotency_retry_after_502_enqueues_only_what_was_not_enqueued(service: Service, topic_hash: str) -> None:
    failed = _fail_first_attempt(service, topic_hash)

    service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    messages = [json.loads(message["Body"]) for message in service.queued()]
    assert sorted(body["integration"]["name"] for body in messages) == NAMES_OF_SAMPLE
    assert {body["notification_id"] for body in messages} == {response_header(failed, "X-Notification-Id")}
    assert len({body["created_at"] for body in messages}) == 1


def test_idempotency_retry_after_502_returns_every_message_id(service: Service, topic_hash: str) -> None:
    _fail_first_attempt(service, topic_hash)

    retried = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    body = response_json(retried)
    assert sorted(body) == NAMES_OF_SAMPLE
    assert set(body.values()) == {message["MessageId"] for message in service.queued()}


def test_idempotency_retry_after_502_leaves_no_delivery_failed(service: Service, topic_hash: str) -> None:
    failed = _fail_first_attempt(service, topic_hash)

    service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    page = service.ledger().page(str(response_header(failed, "X-Notification-Id")))
    assert {entry.integration: entry.status for entry in page.entries} == dict.fromkeys(
        NAMES_OF_SAMPLE, DeliveryStatus.QUEUED
    )
    assert page.counts == {"queued": SAMPLE_SIZE}


def test_idempotency_replay_after_a_finished_retry_returns_the_full_response(service: Service, topic_hash: str) -> None:
    _fail_first_attempt(service, topic_hash)
    retried = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    replayed = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    assert replayed["statusCode"] == 200
    assert response_json(replayed) == response_json(retried)
    assert response_header(replayed, "X-Notification-Id") == response_header(retried, "X-Notification-Id")
    assert len(service.queued()) == SAMPLE_SIZE


def test_idempotency_retry_failing_again_keeps_what_each_attempt_enqueued(service: Service, topic_hash: str) -> None:
    failures = SqsEntryFailures(clients.get_client("sqs", single_try=True))
    failures.fail("team-slack", times=2)
    failures.fail("ops-email", times=4)
    first = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    second = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")
    third = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    notification_id = response_header(first, "X-Notification-Id")
    assert [response["statusCode"] for response in (first, second, third)] == [502, 502, 200]
    assert {response_header(response, "X-Notification-Id") for response in (second, third)} == {notification_id}
    assert "ops-email" in _message(second)
    assert "team-slack" not in _message(second)
    assert set(response_json(third).values()) == {message["MessageId"] for message in service.queued()}
    assert failures.attempts == dict.fromkeys(NAMES_OF_SAMPLE, 1) | {"team-slack": 3, "ops-email": 5}


def test_idempotency_retry_after_502_with_another_body_returns_409(service: Service, topic_hash: str) -> None:
    _fail_first_attempt(service, topic_hash)

    response = service.publish({"metadata": {**METADATA, "total": 99}}, topic_hash, idempotency_key="order-A-1")

    assert response["statusCode"] == 409
    assert response_json(response) == {"message": "Idempotency-Key was already used with a different request body"}
    assert len(service.queued()) == SAMPLE_SIZE - 1


def test_idempotency_retry_after_a_crash_before_the_enqueue_sends_everything_once(
    service: Service, topic_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import producer.handler
    from producer.handler import handler

    # The sends get the whole 1 s of this invocation: with the margin, none would start, and nothing would crash.
    monkeypatch.setattr(producer.handler, "SEND_MARGIN_SECONDS", 0.0)
    sqs = clients.get_client("sqs", single_try=True)

    def crash(**_: Any) -> None:
        raise Crash

    sqs.meta.events.register("before-call.sqs.SendMessageBatch", crash, unique_id="crash")
    event = publish_event("orders", "shipped", {"metadata": METADATA}, topic_hash, "order-A-1", api_key_id="k1a2b3c4d5")
    with pytest.raises(Crash):
        handler(event, FakeLambdaContext(timeout_seconds=1.0))
    sqs.meta.events.unregister("before-call.sqs.SendMessageBatch", unique_id="crash")
    crashed = _notification_records(service)
    time.sleep(2.0)  # the invocation's deadline passes: its in-progress idempotency record lapses

    retried = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    assert retried["statusCode"] == 200
    assert [response_header(retried, "X-Notification-Id")] == crashed == _notification_records(service)
    queued = service.queued()
    assert sorted(json.loads(message["Body"])["integration"]["name"] for message in queued) == NAMES_OF_SAMPLE
    assert set(response_json(retried).values()) == {message["MessageId"] for message in queued}


def test_idempotency_no_key_after_502_publishes_a_new_notification(service: Service, topic_hash: str) -> None:
    SqsEntryFailures(clients.get_client("sqs", single_try=True)).fail("team-slack", times=2)
    failed = service.publish({"metadata": METADATA}, topic_hash)

    again = service.publish({"metadata": METADATA}, topic_hash)

    assert (failed["statusCode"], again["statusCode"]) == (502, 200)
    assert response_header(again, "X-Notification-Id") != response_header(failed, "X-Notification-Id")
    assert len(service.queued()) == 2 * SAMPLE_SIZE - 1


def _age(service: Service, notification_id: str) -> None:
    """What a day does: DynamoDB's TTL removes the idempotency record; the ledger keeps the notification 30 days."""
    idempotency = service.aws.dynamodb.scan(TableName=NAMES["IDEMPOTENCY_TABLE"])["Items"]
    for item in idempotency:
        service.aws.dynamodb.delete_item(TableName=NAMES["IDEMPOTENCY_TABLE"], Key={"id": item["id"]})
    service.aws.dynamodb.update_item(
        TableName=NAMES["DELIVERIES_TABLE"],
        Key={"notification_id": {"S": notification_id}, "delivery_key": {"S": "#"}},
        UpdateExpression="SET created_at = :t",
        ExpressionAttributeValues={":t": {"S": "2020-01-01T00:00:00.000Z"}},
    )


def test_idempotency_key_reused_after_the_window_is_a_new_notification(service: Service, topic_hash: str) -> None:
    first = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")
    notification_id = str(response_header(first, "X-Notification-Id"))
    _age(service, notification_id)

    second = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    assert second["statusCode"] == 200
    assert response_header(second, "X-Notification-Id") != notification_id
    assert len(service.queued()) == 2 * SAMPLE_SIZE


def test_idempotency_retry_after_its_integration_was_removed_marks_it_failed(service: Service, topic_hash: str) -> None:
    failed = _fail_first_attempt(service, topic_hash)
    body = topic_body()
    body["integrations"] = [item for item in body["integrations"] if item["name"] != "team-slack"]
    assert service.admin("PUT", body=body)["statusCode"] == 200
    clients.reset()  # a fresh container: no cached topic

    retried = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    entry = service.ledger().get_entry(str(response_header(failed, "X-Notification-Id")), "team-slack")
    assert retried["statusCode"] == 200
    assert sorted(response_json(retried)) == [name for name in NAMES_OF_SAMPLE if name != "team-slack"]
    assert entry is not None
    assert (entry.status, entry.last_error) == (
        DeliveryStatus.FAILED,
        "not enqueued: the integration was removed from the topic",
    )
    assert _notification_records(service) == [response_header(failed, "X-Notification-Id")]


def test_idempotency_store_failing_after_the_publish_answers_200_and_enqueues_once(
    service: Service, topic_hash: str
) -> None:
    from botocore.exceptions import ClientError

    dynamodb = clients.get_client("dynamodb")

    def throttle(params: dict[str, Any], **_: Any) -> None:
        if params.get("TableName") == NAMES["IDEMPOTENCY_TABLE"]:
            error = {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"}
            raise ClientError({"Error": error}, "UpdateItem")

    # The in-progress record is written (PutItem); saving the result (UpdateItem) fails after the publish ran.
    dynamodb.meta.events.register("before-parameter-build.dynamodb.UpdateItem", throttle, unique_id="throttle")
    try:
        response = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")
    finally:
        dynamodb.meta.events.unregister("before-parameter-build.dynamodb.UpdateItem", unique_id="throttle")

    assert response["statusCode"] == 200
    queued = service.queued()
    assert sorted(json.loads(message["Body"])["integration"]["name"] for message in queued) == NAMES_OF_SAMPLE
    assert set(response_json(response).values()) == {message["MessageId"] for message in queued}


def _publish_with_its_result_unsaved(
    service: Service, topic_hash: str, monkeypatch: pytest.MonkeyPatch, lapsed: bool = True
) -> Any:
    """Publish under a 2 s invocation (60 s when not ``lapsed``) whose idempotency store saves the in-progress record
    but not the result; wait until that record lapses with the invocation (unless not ``lapsed``). Return the answer.
    (1 s, under a loaded CI run, left the sends no time after the ledger's reads: a 502.)"""
    from botocore.exceptions import ClientError

    import producer.handler
    from producer.handler import handler

    # The sends get the whole 2 s of this invocation: with the margin, none would start.
    monkeypatch.setattr(producer.handler, "SEND_MARGIN_SECONDS", 0.0)
    refused: list[str] = []

    def throttle(params: dict[str, Any], **_: Any) -> None:
        if params.get("TableName") == NAMES["IDEMPOTENCY_TABLE"]:
            refused.append(params["TableName"])
            error = {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"}
            raise ClientError({"Error": error}, "UpdateItem")

    dynamodb = clients.get_client("dynamodb")
    dynamodb.meta.events.register("before-parameter-build.dynamodb.UpdateItem", throttle, unique_id="throttle")
    event = publish_event("orders", "shipped", {"metadata": METADATA}, topic_hash, "order-A-1", api_key_id="k1a2b3c4d5")
    try:
        response: dict[str, Any] = handler(event, FakeLambdaContext(timeout_seconds=2.0 if lapsed else 60.0))
    finally:
        dynamodb.meta.events.unregister("before-parameter-build.dynamodb.UpdateItem", unique_id="throttle")
    # The store must have used this test's client: a store kept from an earlier test would save the result.
    assert refused, "the idempotency store did not use the hooked DynamoDB client"
    assert response["statusCode"] == 200
    if lapsed:
        time.sleep(2.0)  # the invocation's deadline passes: its in-progress idempotency record lapses
    return response


def test_idempotency_retry_after_the_result_was_not_saved_replays_the_first_response(
    service: Service, topic_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _publish_with_its_result_unsaved(service, topic_hash, monkeypatch)

    retried = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    assert retried["statusCode"] == 200
    assert response_header(retried, "X-Notification-Id") == response_header(first, "X-Notification-Id")
    assert response_json(retried) == response_json(first)


def test_idempotency_retry_after_the_result_was_not_saved_enqueues_nothing_twice(
    service: Service, topic_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _publish_with_its_result_unsaved(service, topic_hash, monkeypatch)

    service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    queued = service.queued()
    assert sorted(json.loads(message["Body"])["integration"]["name"] for message in queued) == NAMES_OF_SAMPLE
    assert {message["MessageId"] for message in queued} == set(response_json(first).values())


def test_idempotency_retry_after_a_502_of_a_key_reused_after_its_window_finishes_that_notification(
    service: Service, topic_hash: str
) -> None:
    first = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")
    _age(service, str(response_header(first, "X-Notification-Id")))
    service.queued()
    SqsEntryFailures(clients.get_client("sqs", single_try=True)).fail("team-slack", times=2)
    failed = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    retried = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    queued = [json.loads(message["Body"]) for message in service.queued()]
    assert (failed["statusCode"], retried["statusCode"]) == (502, 200)
    assert response_header(retried, "X-Notification-Id") == response_header(failed, "X-Notification-Id")
    assert {body["notification_id"] for body in queued} == {response_header(failed, "X-Notification-Id")}
    assert len(queued) == SAMPLE_SIZE


def test_idempotency_key_reused_after_its_record_expired_before_its_rows_is_a_new_notification(
    service: Service, topic_hash: str
) -> None:
    """DynamoDB's TTL deleted the record (30 days after it was made) before a row (30 days after its last change): the
    key's reuse wrote a new record under the old id, the consumer found that row delivered, and sent nothing."""
    first = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="monthly-report")
    old = str(response_header(first, "X-Notification-Id"))
    service.queued()
    clients.get_ledger().update(old, "erp-webhook", DeliveryStatus.DELIVERED, attempts=1)
    for item in service.aws.dynamodb.scan(TableName=NAMES["IDEMPOTENCY_TABLE"])["Items"]:
        service.aws.dynamodb.delete_item(TableName=NAMES["IDEMPOTENCY_TABLE"], Key={"id": item["id"]})
    service.aws.dynamodb.delete_item(
        TableName=NAMES["DELIVERIES_TABLE"], Key={"notification_id": {"S": old}, "delivery_key": {"S": "#"}}
    )

    second = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="monthly-report")
    retried = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="monthly-report")

    new = str(response_header(second, "X-Notification-Id"))
    assert second["statusCode"] == retried["statusCode"] == 200
    assert new != old
    assert response_header(retried, "X-Notification-Id") == new
    assert {json.loads(message["Body"])["notification_id"] for message in service.queued()} == {new}
    assert clients.get_ledger().get_entry(new, "erp-webhook") is None  # nothing of the old one's rows


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_idempotency_key_empty_or_over_255_characters_is_refused_and_nothing_is_enqueued(
    service: Service, topic_hash: str, key: str
) -> None:
    # An empty key was taken for none: a client whose key came out empty had every retry published again.
    response = service.publish({"metadata": METADATA}, topic_hash, idempotency_key=key)

    assert response["statusCode"] == 422
    assert _message(response) == "Idempotency-Key: must be 1 to 255 characters"
    assert service.queued() == []


def test_idempotency_key_of_255_characters_replays(service: Service, topic_hash: str) -> None:
    first = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="k" * 255)

    second = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="k" * 255)

    assert (first["statusCode"], second["statusCode"]) == (200, 200)
    assert response_header(second, "X-Notification-Id") == response_header(first, "X-Notification-Id")


def test_idempotency_replay_after_the_topic_was_deleted_when_the_first_answer_was_not_saved(
    service: Service, topic_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The idempotency store could not save the first answer; the ids went on the notification's record. The client
    # lost the 200 and retries after the topic was deleted: every delivery is on the queue, and it was told 404.
    first = _publish_with_its_result_unsaved(service, topic_hash, monkeypatch)
    _deleted_topic(service)

    again = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    assert (again["statusCode"], response_json(again)) == (200, response_json(first))
    assert response_header(again, "X-Notification-Id") == response_header(first, "X-Notification-Id")
    assert len(service.queued()) == SAMPLE_SIZE


def test_idempotency_retry_while_the_first_is_in_progress_after_the_topic_was_deleted_is_409(
    service: Service, topic_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the topic there the answer is "still in progress; retry later"; it was a 404 once the topic was deleted,
    # and the client gave up on a notification whose first attempt goes on.
    _publish_with_its_result_unsaved(service, topic_hash, monkeypatch, lapsed=False)
    _deleted_topic(service)

    response = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    assert response["statusCode"] == 409
    assert "in progress" in _message(response)


def _publish_with_the_store_throttled(service: Service, topic_hash: str) -> dict[str, Any]:
    """Publish the sample with key ``order-A-1`` while DynamoDB throttles every write to the idempotency table."""
    from botocore.exceptions import ClientError

    def throttle(params: dict[str, Any], **_: Any) -> None:
        if params.get("TableName") == NAMES["IDEMPOTENCY_TABLE"]:
            error = {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"}
            raise ClientError({"Error": error}, "PutItem")

    dynamodb = clients.get_client("dynamodb")
    dynamodb.meta.events.register("before-parameter-build.dynamodb.PutItem", throttle, unique_id="throttle")
    try:
        return service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")
    finally:
        dynamodb.meta.events.unregister("before-parameter-build.dynamodb.PutItem", unique_id="throttle")


@pytest.mark.parametrize("deleted", [False, True], ids=["topic-there", "topic-deleted"])
def test_idempotency_store_failing_on_a_repeat_is_502_whether_or_not_the_topic_was_deleted(
    service: Service, topic_hash: str, deleted: bool
) -> None:
    # Once the topic was deleted it was a 404: the caller took the notification for unsent, its deliveries queued.
    assert service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")["statusCode"] == 200
    if deleted:
        _deleted_topic(service)

    again = _publish_with_the_store_throttled(service, topic_hash)

    assert again["statusCode"] == 502, response_json(again)


def test_idempotency_repeat_after_the_topic_was_deleted_past_the_keys_window_is_404(
    service: Service, topic_hash: str
) -> None:
    # A publish finished by a retry keeps every message id on its record (30 days). Past the key's 24 h, with the
    # topic there the same key and body make a new notification; deleted, it answered the old one's ids.
    _fail_first_attempt(service, topic_hash)
    retried = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")
    assert retried["statusCode"] == 200
    _age(service, str(response_header(retried, "X-Notification-Id")))
    _deleted_topic(service)

    again = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    assert again["statusCode"] == 404, response_json(again)


@pytest.mark.parametrize("deleted", [False, True], ids=["topic-there", "topic-deleted"])
def test_idempotency_repeat_of_a_key_used_again_past_its_window_answers_its_second_notification(
    service: Service, topic_hash: str, monkeypatch: pytest.MonkeyPatch, deleted: bool
) -> None:
    # The key made N0, and a day later N1 (the next of its chain), whose answer the store did not save (the ids are on
    # N1's record). With the topic deleted, the repeat read N0 only, past the window: a 404 for a queued notification.
    first = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")
    _age(service, str(response_header(first, "X-Notification-Id")))
    service.queued()
    second = _publish_with_its_result_unsaved(service, topic_hash, monkeypatch)
    assert response_header(second, "X-Notification-Id") != response_header(first, "X-Notification-Id")
    service.queued()
    if deleted:
        _deleted_topic(service)

    again = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    assert (again["statusCode"], response_json(again)) == (200, response_json(second))
    assert response_header(again, "X-Notification-Id") == response_header(second, "X-Notification-Id")
    assert service.queued() == []
