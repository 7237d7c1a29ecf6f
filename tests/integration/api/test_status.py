"""Integration tests of the status route (api/status.py), health and unknown routes of api/handler.py, on moto."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from api.handler import handler
from core.clients import get_client, get_ledger
from core.ledger import DeliveryRow, NotificationRecord
from core.models import DeliveryStatus
from tests.fakes.lambda_context import FakeLambdaContext
from tests.fakes.sqs_failures import SqsEntryFailures
from tests.integration.api.conftest import AdminApi
from tests.support.aws import AwsResources
from tests.support.events import api_event, publish_event, response_json, topic_body

STATUS = "/v1/notifications/{notification_id}"
METADATA = {"order_id": "A-1", "name": "Ada", "total": 12.5}
BIG = "0b0e4b8e-5a1c-4a57-9d1e-5f0e0c3a1b01"
SMALL = "0b0e4b8e-5a1c-4a57-9d1e-5f0e0c3a1b02"


def _publish(admin: AdminApi, context: FakeLambdaContext) -> dict[str, Any]:
    from producer.handler import handler as publish

    topic_hash = response_json(admin.put_topic(topic_body()))["topic_hash"]
    response: dict[str, Any] = publish(publish_event("orders", "shipped", {"metadata": METADATA}, topic_hash), context)
    assert response["statusCode"] == 200
    return response


def _status(
    notification_id: str, context: FakeLambdaContext, cursor: str | None = None, api_key_id: str = "k1a2b3c4d5"
) -> dict[str, Any]:
    event = api_event("GET", STATUS, {"notification_id": notification_id}, api_key_id=api_key_id)
    if cursor is not None:
        event["queryStringParameters"] = {"cursor": cursor}
    result: dict[str, Any] = handler(event, context)
    return result


def _audience(notification_id: str, count: int, attempted: int) -> None:
    """Record a notification of ``count`` deliveries of which the first ``attempted`` have a row."""
    ledger = get_ledger()
    ledger.record_notification(
        NotificationRecord(
            notification_id=notification_id,
            source="send",
            channel="",
            topic="",
            created_at="2026-11-22T10:00:00.000Z",
            caller="k1a2b3c4d5",
            delivery_count=count,
        )
    )
    for index in range(attempted):
        row = DeliveryRow(integration="push", type="push", recipient={"user_id": f"u{index:03d}"})
        status = DeliveryStatus.DELIVERED if index % 2 == 0 else DeliveryStatus.RETRYING
        ledger.update(notification_id, f"push:u{index:03d}", status, row=row, attempts=1)


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
    assert body["summary"] == {"queued": 5}
    assert "next" not in body


def test_status_after_an_outcome_shows_it_in_deliveries_and_summary(
    admin: AdminApi, lambda_context: FakeLambdaContext
) -> None:
    notification_id = _publish(admin, lambda_context)["headers"]["X-Notification-Id"]
    row = DeliveryRow(integration="erp-webhook", type="webhook")
    get_ledger().update(notification_id, "erp-webhook", DeliveryStatus.RETRYING, row=row, attempts=2, last_error="x")

    body = response_json(_status(notification_id, lambda_context))

    assert body["summary"] == {"queued": 4, "retrying": 1}
    webhook = next(d for d in body["deliveries"] if d["integration"] == "erp-webhook")
    assert (webhook["status"], webhook["attempts"], webhook["last_error"]) == ("retrying", 2, "x")


def test_status_retrying_delivery_shows_its_next_attempt_and_redrives(
    admin: AdminApi, lambda_context: FakeLambdaContext
) -> None:
    notification_id = _publish(admin, lambda_context)["headers"]["X-Notification-Id"]
    row = DeliveryRow(integration="erp-webhook", type="webhook")
    get_ledger().update(
        notification_id,
        "erp-webhook",
        DeliveryStatus.RETRYING,
        row=row,
        attempts=9,
        redriven=1,
        last_error="webhook: HTTP 503",
        next_attempt_at="2026-11-22T10:00:07.500Z",
    )

    body = response_json(_status(notification_id, lambda_context))

    webhook = next(d for d in body["deliveries"] if d["integration"] == "erp-webhook")
    assert (webhook["attempts"], webhook["redriven"], webhook["next_attempt_at"]) == (
        9,
        1,
        "2026-11-22T10:00:07.500Z",
    )
    assert "history" not in webhook


def test_status_deliveries_not_retrying_show_no_next_attempt_and_no_redrive(
    admin: AdminApi, lambda_context: FakeLambdaContext
) -> None:
    notification_id = _publish(admin, lambda_context)["headers"]["X-Notification-Id"]
    row = DeliveryRow(integration="erp-webhook", type="webhook")
    get_ledger().update(notification_id, "erp-webhook", DeliveryStatus.DELIVERED, row=row, attempts=1)

    body = response_json(_status(notification_id, lambda_context))

    assert {(d["status"], d["next_attempt_at"], d["redriven"]) for d in body["deliveries"]} == {
        ("queued", None, 0),
        ("delivered", None, 0),
    }


def test_status_other_api_key_returns_404(admin: AdminApi, lambda_context: FakeLambdaContext) -> None:
    notification_id = _publish(admin, lambda_context)["headers"]["X-Notification-Id"]

    response = _status(notification_id, lambda_context, api_key_id="someone-else")

    assert response["statusCode"] == 404
    assert response_json(response) == {"message": f"notification {notification_id!r} does not exist"}


def test_status_other_api_key_reads_no_delivery_before_its_404(
    aws: AwsResources, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The counts were read before the caller was checked: another key made the route read the deliveries for
    # seconds, and the time its 404 took told that the id exists.
    from core.ledger import DeliveryLedger

    _audience(BIG, count=300, attempted=250)
    queries: list[dict[str, Any]] = []

    def query_page(self: DeliveryLedger, request: dict[str, Any]) -> dict[str, Any]:
        queries.append(request)
        return {}

    monkeypatch.setattr(DeliveryLedger, "_query_page", query_page)

    response = _status(BIG, lambda_context, api_key_id="someone-else")

    assert response["statusCode"] == 404
    assert queries == []


def test_status_large_audience_pages_by_cursor(aws: AwsResources, lambda_context: FakeLambdaContext) -> None:
    _audience(BIG, count=300, attempted=250)

    pages, cursor = [], None
    while True:
        body = response_json(_status(BIG, lambda_context, cursor))
        pages.append(body)
        cursor = body.get("next")
        if cursor is None:
            break

    keys = [delivery["delivery_key"] for page in pages for delivery in page["deliveries"]]
    assert [len(page["deliveries"]) for page in pages] == [100, 100, 50]
    assert keys == sorted(keys) == [f"push:u{index:03d}" for index in range(250)]
    assert pages[0]["summary"] == {"delivered": 125, "retrying": 125, "queued": 50}
    assert pages[0]["deliveries"][0]["recipient"] == {"user_id": "u000"}


def test_status_foreign_cursor_returns_422_naming_cursor(aws: AwsResources, lambda_context: FakeLambdaContext) -> None:
    _audience(SMALL, count=1, attempted=1)

    response = _status(SMALL, lambda_context, cursor="not-a-cursor")

    assert response["statusCode"] == 422
    assert response_json(response)["message"].startswith("cursor: ")


def test_status_of_a_send_whose_expansion_failed_tells_why(
    aws: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    get_ledger().record_notification(
        NotificationRecord(
            notification_id=SMALL,
            source="send",
            channel="",
            topic="",
            created_at="2026-11-22T10:00:00.000Z",
            caller="k1a2b3c4d5",
            delivery_count=0,
            error="segment 'vip' no longer exists",
        )
    )

    body = response_json(_status(SMALL, lambda_context))

    assert (body["summary"], body["error"]) == ({}, "segment 'vip' no longer exists")


def test_status_deeply_nested_cursor_returns_422_naming_cursor(
    aws: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    _audience(SMALL, count=1, attempted=1)
    cursor = base64.urlsafe_b64encode(b"[" * 1500).decode().rstrip("=")

    response = _status(SMALL, lambda_context, cursor=cursor)

    assert response["statusCode"] == 422
    assert response_json(response)["message"].startswith("cursor: ")


def test_status_bad_cursor_of_another_callers_notification_returns_404(
    aws: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    _audience(SMALL, count=1, attempted=1)

    response = _status(SMALL, lambda_context, cursor="not-a-cursor", api_key_id="someone-else")

    assert response["statusCode"] == 404
    assert response_json(response) == {"message": f"notification {SMALL!r} does not exist"}


@pytest.mark.parametrize("notification_id", ["n" * 2100, "not-a-uuid", "00000000-0000-0000-0000-00000000000G"])
def test_status_id_not_a_uuid_returns_404_without_echoing_it(
    aws: AwsResources, lambda_context: FakeLambdaContext, notification_id: str
) -> None:
    response = _status(notification_id, lambda_context)

    assert response["statusCode"] == 404
    assert response_json(response) == {"message": "no notification has this id (notification ids are UUIDs)"}


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


@pytest.mark.usefixtures("aws")
def test_health_returns_200_ok(lambda_context: FakeLambdaContext) -> None:
    response = handler(api_event("GET", "/v1/health", api_key=None, api_key_id=None), lambda_context)

    assert response["statusCode"] == 200
    assert response_json(response) == {"status": "ok"}


@pytest.mark.usefixtures("aws")
def test_unknown_route_returns_404_json(lambda_context: FakeLambdaContext) -> None:
    response = handler(api_event("GET", "/v1/nothing-here"), lambda_context)

    assert response["statusCode"] == 404
    assert response["headers"]["Content-Type"] == "application/json"
    assert response_json(response) == {"message": "no route for GET /v1/nothing-here"}


@pytest.mark.usefixtures("aws")
def test_known_path_with_other_method_returns_404_json(lambda_context: FakeLambdaContext) -> None:
    response = handler(api_event("PATCH", "/v1/health"), lambda_context)

    assert response["statusCode"] == 404
    assert set(response_json(response)) == {"message"}


def test_status_after_502_and_its_retry_shows_every_delivery_queued(
    admin: AdminApi, lambda_context: FakeLambdaContext
) -> None:
    from producer.handler import handler as publish

    topic_hash = response_json(admin.put_topic(topic_body()))["topic_hash"]
    event = publish_event("orders", "shipped", {"metadata": METADATA}, topic_hash, idempotency_key="order-A-1")
    SqsEntryFailures(get_client("sqs", single_try=True)).fail("team-slack", times=2)
    failed = publish(event, lambda_context)
    notification_id = failed["headers"]["X-Notification-Id"]
    before = response_json(_status(notification_id, lambda_context))

    retried = publish(event, lambda_context)

    after = response_json(_status(notification_id, lambda_context))
    assert (failed["statusCode"], retried["statusCode"]) == (502, 200)
    assert before["summary"] == {"failed": 1, "queued": 4}
    assert after["summary"] == {"queued": 5}
    assert {(d["integration"], d["status"], d["last_error"]) for d in after["deliveries"]} == {
        (name, "queued", None) for name in ("buyer-push", "erp-webhook", "ops-email", "ops-telegram", "team-slack")
    }


def test_status_of_more_deliveries_than_its_summary_reads_says_the_summary_is_partial(
    aws: AwsResources, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A send to a million users read its whole partition on every status call, past the route's timeout (a 5xx):
    # the counts now stop when the invocation's time runs low, and say so. moto's pages are 1 MB: cut at 40 here.
    from core.ledger import DeliveryLedger

    _audience("00000000-0000-4000-8000-000000000001", count=300, attempted=120)
    light = DeliveryLedger._query_page

    def small_pages(self: DeliveryLedger, request: dict[str, Any]) -> dict[str, Any]:
        return light(self, {"Limit": 40, **request} if "ProjectionExpression" in request else request)

    monkeypatch.setattr(DeliveryLedger, "_query_page", small_pages)
    monkeypatch.setattr("api.status.SUMMARY_MARGIN_SECONDS", 1e9)  # no time left for more than one page

    body = response_json(_status("00000000-0000-4000-8000-000000000001", lambda_context))

    assert body["summary_partial"] is True
    assert sum(body["summary"].values()) == 100  # the 39 rows of a page, and this page's 100 over them
    assert len(body["deliveries"]) == 100
    assert "next" in body


def test_status_of_a_notification_its_summary_reads_whole_says_nothing_of_it(
    aws: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    _audience("00000000-0000-4000-8000-000000000002", count=300, attempted=120)

    body = response_json(_status("00000000-0000-4000-8000-000000000002", lambda_context))

    assert "summary_partial" not in body
    assert body["summary"] == {"delivered": 60, "retrying": 60, "queued": 180}
