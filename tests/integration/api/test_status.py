"""Integration tests of the status route (api/status.py), health and unknown routes of api/handler.py, on moto."""

from __future__ import annotations

from typing import Any

from api.handler import handler
from tests.fakes.lambda_context import FakeLambdaContext
from tests.integration.api.conftest import AdminApi
from tests.support.aws import AwsResources
from tests.support.events import api_event, publish_event, response_json, topic_body

STATUS = "/v1/notifications/{notification_id}"


def _publish(admin: AdminApi, context: FakeLambdaContext) -> dict[str, Any]:
    from producer.handler import handler as publish

    topic_hash = response_json(admin.put_topic(topic_body()))["topic_hash"]
    body = {"metadata": {"order_id": "A-1", "name": "Ada", "total": 12.5}}
    response: dict[str, Any] = publish(publish_event("orders", "shipped", body, topic_hash), context)
    assert response["statusCode"] == 200
    return response


def _status(notification_id: str, context: FakeLambdaContext) -> dict[str, Any]:
    result: dict[str, Any] = handler(api_event("GET", STATUS, {"notification_id": notification_id}), context)
    return result


def test_status_after_publish_lists_every_delivery_queued(admin: AdminApi, lambda_context: FakeLambdaContext) -> None:
    published = _publish(admin, lambda_context)
    notification_id = published["headers"]["X-Notification-Id"]

    response = _status(notification_id, lambda_context)

    body = response_json(response)
    assert response["statusCode"] == 200
    assert body["notification_id"] == notification_id
    assert (body["channel"], body["topic"]) == ("orders", "shipped")
    assert body["created_at"]
    assert [(d["integration"], d["type"], d["status"], d["attempts"], d["last_error"]) for d in body["deliveries"]] == [
        ("buyer-push", "push", "queued", 0, None),
        ("erp-webhook", "webhook", "queued", 0, None),
        ("ops-email", "email", "queued", 0, None),
        ("ops-telegram", "telegram", "queued", 0, None),
        ("team-slack", "slack", "queued", 0, None),
    ]
    assert all(delivery["updated_at"] for delivery in body["deliveries"])


def test_status_location_header_of_publish_is_the_status_route(
    admin: AdminApi, lambda_context: FakeLambdaContext
) -> None:
    published = _publish(admin, lambda_context)

    location = published["headers"]["Location"]
    notification_id = published["headers"]["X-Notification-Id"]
    assert location == f"/v1/notifications/{notification_id}"


def test_status_unknown_notification_returns_404(aws: AwsResources, lambda_context: FakeLambdaContext) -> None:
    response = _status("00000000-0000-0000-0000-000000000000", lambda_context)

    assert response["statusCode"] == 404
    assert response_json(response) == {"message": "notification '00000000-0000-0000-0000-000000000000' does not exist"}


def test_status_ledger_unavailable_returns_502(aws: AwsResources, lambda_context: FakeLambdaContext) -> None:
    aws.dynamodb.delete_table(TableName=aws.env["DELIVERIES_TABLE"])

    response = _status("00000000-0000-0000-0000-000000000000", lambda_context)

    assert response["statusCode"] == 502
    assert response_json(response)["message"].startswith("An error occurs while processing the request (Message: ")


def test_health_returns_200_ok(lambda_context: FakeLambdaContext) -> None:
    response = handler(api_event("GET", "/v1/health", api_key=None, api_key_id=None), lambda_context)

    assert response["statusCode"] == 200
    assert response_json(response) == {"status": "ok"}


def test_unknown_route_returns_404_json(lambda_context: FakeLambdaContext) -> None:
    response = handler(api_event("GET", "/v1/nothing-here"), lambda_context)

    assert response["statusCode"] == 404
    assert response["headers"]["Content-Type"] == "application/json"
    assert response_json(response) == {"message": "no route for GET /v1/nothing-here"}


def test_known_path_with_other_method_returns_404_json(lambda_context: FakeLambdaContext) -> None:
    response = handler(api_event("PATCH", "/v1/health"), lambda_context)

    assert response["statusCode"] == 404
    assert set(response_json(response)) == {"message"}
