"""Integration tests of the dead-letter routes (api/handler.py → api/dead_letters.py) on moto."""

from __future__ import annotations

import json
from typing import Any

from core.clients import get_ledger
from core.models import DeliveryStatus
from tests.integration.api.conftest import AdminApi
from tests.support.aws import AwsResources, receive_all
from tests.support.events import response_json

LIST = "/v1/dead-letters"
REDRIVE = "/v1/dead-letters/redrive"


def _dead(aws: AwsResources, notification_id: str, integration: str = "erp-webhook") -> dict[str, Any]:
    """Put a delivery message in the DLQ as the consumer leaves it: ledger row ``dead`` with its last error."""
    message = {
        "v": 1,
        "notification_id": notification_id,
        "channel": "orders",
        "topic": "shipped",
        "created_at": "2026-11-21T20:00:00.000Z",
        "integration": {"name": integration, "type": "webhook", "target": {"url": "https://example.com/hook"}},
        "content": {"text": "hi"},
    }
    ledger = get_ledger()
    ledger.record_queued(notification_id, "orders", "shipped", "2026-11-21T20:00:00.000Z", [(integration, "webhook")])
    ledger.update(notification_id, integration, DeliveryStatus.DEAD, attempts=5, last_error="webhook: HTTP 503")
    aws.sqs.send_message(QueueUrl=aws.dead_letter_queue_url, MessageBody=json.dumps(message))
    return message


def test_list_dead_letters_shows_id_integration_error_and_count(admin: AdminApi, aws: AwsResources) -> None:
    _dead(aws, "n-1")

    response = admin.call("GET", LIST)

    assert response["statusCode"] == 200
    [listed] = response_json(response)["messages"]
    assert {key: listed[key] for key in ("notification_id", "integration", "type", "last_error", "receive_count")} == {
        "notification_id": "n-1",
        "integration": "erp-webhook",
        "type": "webhook",
        "last_error": "webhook: HTTP 503",
        "receive_count": 0,
    }


def test_list_dead_letters_leaves_messages_visible(admin: AdminApi, aws: AwsResources) -> None:
    _dead(aws, "n-1")
    _dead(aws, "n-2")

    admin.call("GET", LIST)

    assert len(receive_all(aws.sqs, aws.dead_letter_queue_url)) == 2


def test_list_dead_letters_empty_queue_lists_nothing(admin: AdminApi) -> None:
    response = admin.call("GET", LIST)

    assert response_json(response) == {"messages": []}


def test_redrive_moves_messages_to_delivery_queue(admin: AdminApi, aws: AwsResources) -> None:
    sent = [_dead(aws, f"n-{index}") for index in range(3)]

    response = admin.call("POST", REDRIVE)

    assert response_json(response) == {"redriven": 3}
    moved = receive_all(aws.sqs, aws.delivery_queue_url)
    assert sorted(json.loads(message["Body"])["notification_id"] for message in moved) == [
        message["notification_id"] for message in sent
    ]
    assert receive_all(aws.sqs, aws.dead_letter_queue_url) == []


def test_redrive_sets_ledger_rows_queued(admin: AdminApi, aws: AwsResources) -> None:
    _dead(aws, "n-1")

    admin.call("POST", REDRIVE)

    entry = get_ledger().get_entry("n-1", "erp-webhook")
    assert entry is not None
    assert (entry.status, entry.last_error) == (DeliveryStatus.QUEUED, None)


def test_redrive_max_messages_limits_the_move(admin: AdminApi, aws: AwsResources) -> None:
    for index in range(3):
        _dead(aws, f"n-{index}")

    response = admin.call("POST", REDRIVE, body={"max_messages": 2})

    assert response_json(response) == {"redriven": 2}
    assert len(receive_all(aws.sqs, aws.delivery_queue_url)) == 2


def test_redrive_invalid_max_messages_is_422(admin: AdminApi, aws: AwsResources) -> None:
    response = admin.call("POST", REDRIVE, body={"max_messages": 0})

    assert response["statusCode"] == 422


def test_redrive_unknown_field_is_422(admin: AdminApi, aws: AwsResources) -> None:
    response = admin.call("POST", REDRIVE, body={"queue": "other"})

    assert response["statusCode"] == 422
