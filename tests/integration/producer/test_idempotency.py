"""Integration tests of idempotent publishing (producer/idempotency.py through the publish route) on moto."""

from __future__ import annotations

import json

from tests.integration.producer.conftest import METADATA, Service
from tests.support.events import response_header, response_json

SAMPLE_SIZE = 5


def test_idempotency_same_key_and_body_replays_the_first_response(service: Service, topic_hash: str) -> None:
    first = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    second = service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    assert (first["statusCode"], second["statusCode"]) == (200, 200)
    assert response_header(second, "X-Notification-Id") == response_header(first, "X-Notification-Id")
    assert response_json(second) == response_json(first)


def test_idempotency_replay_enqueues_nothing_twice(service: Service, topic_hash: str) -> None:
    service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    service.publish({"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")

    notifications = {json.loads(message["Body"])["notification_id"] for message in service.queued()}
    assert len(notifications) == 1


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
