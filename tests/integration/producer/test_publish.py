"""Integration tests of the publish route's limit on a delivery message's size, on moto: a message the route accepts
leaves room for every copy the consumer makes of it on a queue of 256 KiB."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from core import clients
from core.models import DeliveryStatus
from core.queue import DELIVERY_MESSAGE_BYTES_LIMIT, MESSAGE_BYTES_LIMIT
from tests.integration.consumer.flow import consume, entry, receive
from tests.integration.producer.conftest import Service
from tests.support.aws import AwsResources
from tests.support.events import response_json
from tests.support.receivers import Answer, Receiver, running_receiver


@pytest.fixture
def receiver(aws: AwsResources, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 that answers 503, and a delivery queue limited to 256 KiB a message."""
    monkeypatch.setenv("ALLOW_PRIVATE_TARGETS", "true")
    monkeypatch.setenv("HTTP_READ_TIMEOUT", "0.5")
    aws.sqs.set_queue_attributes(
        QueueUrl=aws.delivery_queue_url, Attributes={"MaximumMessageSize": str(MESSAGE_BYTES_LIMIT)}
    )
    clients.reset()
    with running_receiver(Answer(503, b"")) as running:
        yield running


def _hook_topic(service: Service, receiver: Receiver) -> str:
    topic = {
        "integrations": [{"name": "hook", "type": "webhook", "target": {"url": receiver.url + "/h"}, "model": "$x"}]
    }
    return service.create_topic(topic)


def _text_for_size(service: Service, topic_hash: str, size: int) -> str:
    """Return the ``x`` variable that makes the topic's delivery message ``size`` bytes long (one probe publish)."""
    assert service.publish({"metadata": {"x": ""}}, topic_hash)["statusCode"] == 200
    [probe] = service.queued()
    return "a" * (size - len(probe["Body"].encode()))


def test_publish_message_near_256_kib_returns_413_naming_the_limit_and_enqueues_nothing(
    service: Service, receiver: Receiver
) -> None:
    topic_hash = _hook_topic(service, receiver)
    text = _text_for_size(service, topic_hash, MESSAGE_BYTES_LIMIT - 20)

    response = service.publish({"metadata": {"x": text}}, topic_hash)

    assert response["statusCode"] == 413
    assert response_json(response) == {
        "message": "the rendered message of integration 'hook' exceeds 248 KiB (SQS's 256 KiB less 8 KiB kept for "
        "its retries)"
    }
    assert service.queued() == []


def test_publish_subscribers_text_longer_than_a_send_takes_returns_413_naming_the_integration(
    service: Service,
) -> None:
    # Accepted, the notification's expansion would fail the whole send: each push carries the text five times.
    model = {"text": "Order $order shipped"}
    topic_hash = service.create_topic({"integrations": [{"name": "followers", "type": "subscribers", "model": model}]})

    response = service.publish({"metadata": {"order": "x" * 5000}}, topic_hash)

    assert response["statusCode"] == 413
    assert response_json(response)["message"].startswith("integration 'followers': model.text renders to 5014 ")
    assert service.queued() == []


def test_publish_largest_message_is_retried_on_a_queue_of_256_kib(service: Service, receiver: Receiver) -> None:
    topic_hash = _hook_topic(service, receiver)
    text = _text_for_size(service, topic_hash, DELIVERY_MESSAGE_BYTES_LIMIT)
    assert service.publish({"metadata": {"x": text}}, topic_hash)["statusCode"] == 200
    messages = receive(service.aws)

    result = consume(messages, service.aws)

    assert [len(message["Body"].encode()) for message in messages] == [DELIVERY_MESSAGE_BYTES_LIMIT]
    assert result["batchItemFailures"] == []
    assert entry(json.loads(messages[0]["Body"])).status is DeliveryStatus.RETRYING
