"""Integration tests of the SNS subscription route (producer/handler.py, producer/sns.py) on moto.

Deliveries are the samples of ``tests/events/`` signed at runtime by a test CA's certificate; the verifier and the
confirmation's GET go through a fetcher that serves it (SNS's hosts cannot be reached from here).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from core.models import Integration, Topic
from core.sns import SnsVerifier
from core.topics import TopicRegistry, hash_topic_secret, new_topic_hash
from core.validation import TEXT_RULE
from tests.fakes.lambda_context import FakeLambdaContext
from tests.integration.producer.conftest import Service
from tests.support.aws import NAMES, AwsResources
from tests.support.events import response_header, response_json, topic_body
from tests.support.sns import CERT_URL, FakeSnsFetcher, fetcher, sample, sns_event

NOTIFICATION = "sns_notification.json"
CONFIRMATION = "sns_subscription_confirmation.json"
SAMPLE_SIZE = 5


def _create_topic(aws: AwsResources, body: dict[str, Any], topic: str = "shipped") -> str:
    """Store a topic straight in its table (what the admin API stores: credentials as a reference); return its hash."""
    integrations = [
        Integration(
            name=item["name"],
            type=item["type"],
            model=item["model"],
            target=item.get("target", {}),
            credentials_ref=f"{NAMES['PARAMETER_PREFIX']}/{item['name']}" if "credentials" in item else None,
        )
        for item in body["integrations"]
    ]
    topic_hash = new_topic_hash()
    now = "2026-11-21T20:00:00.000Z"
    registry = TopicRegistry(aws.dynamodb, NAMES["TOPICS_TABLE"])
    registry.create(
        Topic(
            channel="orders",
            topic=topic,
            integrations=integrations,
            hash_sha256=hash_topic_secret(topic_hash),
            created_at=now,
            updated_at=now,
        )
    )
    return topic_hash


@pytest.fixture
def topic_hash(aws: AwsResources) -> str:
    """The hash of the sample topic orders/shipped (one integration of each type)."""
    return _create_topic(aws, topic_body())


@pytest.fixture
def fetch(monkeypatch: pytest.MonkeyPatch) -> FakeSnsFetcher:
    """The fetcher the publish function's verifier and confirmations use."""
    import producer.sns

    fake = fetcher()
    monkeypatch.setattr(producer.sns, "get_sns_fetcher", lambda: fake)
    monkeypatch.setattr(producer.sns, "get_sns_verifier", lambda: SnsVerifier(fake))
    return fake


def _call(event: dict[str, Any], context: FakeLambdaContext) -> dict[str, Any]:
    from producer.handler import handler

    result: dict[str, Any] = handler(event, context)
    return result


@pytest.mark.usefixtures("fetch")
def test_sns_notification_queues_the_deliveries_with_the_publish_response(
    service: Service, topic_hash: str, lambda_context: FakeLambdaContext
) -> None:
    response = _call(sns_event(NOTIFICATION, topic_hash), lambda_context)

    assert response["statusCode"] == 200, response["body"]
    notification_id = response_header(response, "X-Notification-Id")
    assert response_header(response, "Location") == f"/v1/notifications/{notification_id}"
    queued = service.queued()
    assert sorted(response_json(response)) == sorted(json.loads(m["Body"])["delivery_key"] for m in queued)
    assert len(queued) == SAMPLE_SIZE
    bodies = {json.loads(m["Body"])["delivery_key"]: json.loads(m["Body"]) for m in queued}
    assert bodies["team-slack"]["content"]["text"] == "Order *A-1* shipped to Ada"
    assert bodies["erp-webhook"]["content"]["data"] == {"event": "order.shipped", "order": "A-1", "total": 12.5}


@pytest.mark.usefixtures("fetch")
def test_sns_notification_same_message_id_twice_fans_out_once(
    service: Service, topic_hash: str, lambda_context: FakeLambdaContext
) -> None:
    first = _call(sns_event(NOTIFICATION, topic_hash), lambda_context)

    second = _call(sns_event(NOTIFICATION, topic_hash), lambda_context)

    assert (first["statusCode"], second["statusCode"]) == (200, 200)
    assert response_json(second) == response_json(first)
    assert response_header(second, "X-Notification-Id") == response_header(first, "X-Notification-Id")
    assert len(service.queued()) == SAMPLE_SIZE


@pytest.mark.usefixtures("fetch")
def test_sns_notification_other_message_id_is_another_notification(
    service: Service, topic_hash: str, lambda_context: FakeLambdaContext
) -> None:
    first = _call(sns_event(NOTIFICATION, topic_hash), lambda_context)

    second = _call(sns_event(NOTIFICATION, topic_hash, changes={"MessageId": "another-id"}), lambda_context)

    assert response_header(second, "X-Notification-Id") != response_header(first, "X-Notification-Id")
    assert len(service.queued()) == 2 * SAMPLE_SIZE


@pytest.mark.usefixtures("fetch")
def test_sns_notification_text_message_is_data(service: Service, lambda_context: FakeLambdaContext) -> None:
    body = {
        "integrations": [
            {
                "name": "team-slack",
                "type": "slack",
                "model": "SNS says: $data",
                "credentials": {"webhook_url": "https://hooks.slack.example/services/T0/B0/x"},
            }
        ]
    }
    topic_hash = _create_topic(service.aws, body, topic="alarms")
    event = sns_event(NOTIFICATION, topic_hash, changes={"Message": "CPU at 95%"})
    event["pathParameters"]["topic"] = "alarms"

    response = _call(event, lambda_context)

    assert response["statusCode"] == 200, response["body"]
    (message,) = service.queued()
    assert json.loads(message["Body"])["content"]["text"] == "SNS says: CPU at 95%"


def test_sns_subscription_confirmation_gets_the_subscribe_url(
    service: Service, topic_hash: str, fetch: FakeSnsFetcher, lambda_context: FakeLambdaContext
) -> None:
    response = _call(sns_event(CONFIRMATION, topic_hash), lambda_context)

    assert (response["statusCode"], response_json(response)) == (200, {})
    assert fetch.asked == [CERT_URL, sample(CONFIRMATION)["SubscribeURL"]]
    assert service.queued() == []


def test_sns_subscription_confirmation_to_another_host_is_refused(
    service: Service, topic_hash: str, fetch: FakeSnsFetcher, lambda_context: FakeLambdaContext
) -> None:
    url = "https://127.0.0.1:8443/?Action=ConfirmSubscription&Token=abc"

    response = _call(sns_event(CONFIRMATION, topic_hash, changes={"SubscribeURL": url}), lambda_context)

    assert response["statusCode"] == 400
    assert response_json(response) == {"message": "SubscribeURL must be on an SNS host (sns.<region>.amazonaws.com)"}
    assert fetch.asked == [CERT_URL]


@pytest.mark.usefixtures("fetch")
def test_sns_unsubscribe_confirmation_is_acknowledged(
    service: Service, topic_hash: str, lambda_context: FakeLambdaContext
) -> None:
    event = sns_event(CONFIRMATION, topic_hash, changes={"Type": "UnsubscribeConfirmation"})

    response = _call(event, lambda_context)

    assert (response["statusCode"], response_json(response)) == (200, {})
    assert service.queued() == []


def _tampered(topic_hash: str) -> dict[str, Any]:
    event = sns_event(NOTIFICATION, topic_hash)
    event["body"] = event["body"].replace("A-1", "A-2")
    return event


def _foreign_certificate(topic_hash: str) -> dict[str, Any]:
    url = "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-1.pem"
    return sns_event(NOTIFICATION, topic_hash, changes={"SigningCertURL": url})


def _body(text: str) -> Callable[[str], dict[str, Any]]:
    def build(topic_hash: str) -> dict[str, Any]:
        event = sns_event(NOTIFICATION, topic_hash)
        event["body"] = text
        return event

    return build


def _lone_surrogate(topic_hash: str) -> dict[str, Any]:
    event = sns_event(NOTIFICATION, topic_hash)
    event["body"] = json.dumps({**json.loads(event["body"]), "Subject": "Order \ud800"})  # written "\ud800"
    return event


@pytest.mark.usefixtures("fetch")
@pytest.mark.parametrize(
    ("build", "status", "message"),
    [
        pytest.param(_tampered, 400, "Signature does not match the message", id="tampered"),
        pytest.param(_foreign_certificate, 400, "SigningCertURL must be on an SNS host", id="foreign-cert"),
        pytest.param(_body('{"Type": "Notification"}'), 400, "MessageId: is required", id="missing-fields"),
        pytest.param(_lone_surrogate, 400, "Subject holds a lone surrogate", id="lone-surrogate"),
        pytest.param(lambda h: sns_event(NOTIFICATION, None), 403, "hash query parameter is required", id="no-hash"),
    ],
)
def test_sns_bad_delivery_is_refused_naming_what_is_wrong(
    service: Service,
    topic_hash: str,
    lambda_context: FakeLambdaContext,
    build: Callable[[str], dict[str, Any]],
    status: int,
    message: str,
) -> None:
    response = _call(build(topic_hash), lambda_context)

    assert response["statusCode"] == status
    assert message in response_json(response)["message"]
    assert service.queued() == []


@pytest.mark.usefixtures("fetch")
def test_sns_message_field_no_message_can_carry_returns_422_naming_it(
    service: Service, topic_hash: str, lambda_context: FakeLambdaContext
) -> None:
    message = '{"order_id": "A-1", "name": "\\ud800", "total": 12.5}'

    response = _call(sns_event(NOTIFICATION, topic_hash, changes={"Message": message}), lambda_context)

    assert response["statusCode"] == 422
    assert response_json(response) == {"message": f"metadata.name: {TEXT_RULE}"}
    assert service.queued() == []


@pytest.mark.usefixtures("fetch")
def test_sns_delivery_logs_neither_the_message_nor_the_token(
    service: Service, topic_hash: str, lambda_context: FakeLambdaContext, logs: Callable[[], str]
) -> None:
    _call(sns_event(CONFIRMATION, topic_hash), lambda_context)
    _call(sns_event(NOTIFICATION, topic_hash, changes={"Message": "secret-message-text"}), lambda_context)

    output = logs()
    assert "sns subscription confirmed" in output
    assert sample(CONFIRMATION)["Token"] not in output
    assert "secret-message-text" not in output
