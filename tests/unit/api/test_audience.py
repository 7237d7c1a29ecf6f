"""Unit tests of the audience routes (api/audience.py) with API Gateway REST events, the in-memory repository and
an in-memory SNS; the handler runs under moto and a real PostgreSQL in tests/integration/api/test_audience.py."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from api import audience
from api.openapi import build_document, routers
from core.audience.endpoints import PushEndpoints
from core.audience.models import AppRequest, UserRequest
from core.errors import UpstreamError
from core.http import Response, Router
from core.settings import SettingsError
from tests.fakes.audience import FakeAudienceRepository, FakeExpansionQueue, FakeSendStore
from tests.fakes.sns_endpoints import FakeSnsEndpoints
from tests.support.events import admin_event, api_event, response_json

ROOT = Path(__file__).resolve().parents[3]
APPLICATION = "arn:aws:sns:eu-west-1:123456789012:app/GCM/android"
USER = "/v1/users/{user_id}"
DEVICES = "/v1/users/{user_id}/devices"
DEVICE = "/v1/users/{user_id}/devices/{device_id}"
SUBSCRIPTION = "/v1/users/{user_id}/subscriptions/{channel}/{topic}"
SUBSCRIPTIONS = "/v1/users/{user_id}/subscriptions"
SEGMENT = "/v1/segments/{name}"
COUNT = "/v1/segments/count"
APP = "/v1/apps/{app}"


@pytest.fixture
def repository() -> FakeAudienceRepository:
    return FakeAudienceRepository()


@pytest.fixture
def sns() -> FakeSnsEndpoints:
    return FakeSnsEndpoints((APPLICATION,))


class DeletedUsers:
    """The ledger as the audience function writes it: a user's deletion, a send's record."""

    def __init__(self) -> None:
        self.marked: list[tuple[str, str]] = []
        self.records: dict[str, Any] = {}

    def mark_user_deleted(self, user_id: str, at: str) -> None:
        self.marked.append((user_id, at))

    def create_notification(self, record: Any) -> bool:
        if record.notification_id in self.records:
            return False
        self.records[record.notification_id] = record
        return True


@pytest.fixture
def deleted_users() -> DeletedUsers:
    return DeletedUsers()


@pytest.fixture(autouse=True)
def _environment(
    monkeypatch: pytest.MonkeyPatch,
    repository: FakeAudienceRepository,
    sns: FakeSnsEndpoints,
    deleted_users: DeletedUsers,
) -> None:
    for name, value in {
        "STAGE": "prod",
        "AWS_REGION": "eu-west-1",
        "DATABASE_SECRET_PARAMETER": "/notify/prod/database",
        "EXPANSION_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/notify-prod-expansion",
        "DELIVERIES_TABLE": "notify-prod-ledger",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(audience, "get_audience_repository", lambda settings: repository)
    monkeypatch.setattr(audience, "get_push_endpoints", lambda region: PushEndpoints(sns))
    monkeypatch.setattr(audience, "get_ledger", lambda settings: deleted_users)


def _call(method: str, resource: str, params: dict[str, str] | None = None, body: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = audience.app.resolve(api_event(method, resource, params, body))
    return result


def _admin(method: str, resource: str, params: dict[str, str] | None = None, body: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = audience.app.resolve(admin_event(method, resource, params, body, "admin-token"))
    return result


def _message(response: dict[str, Any]) -> str:
    message: str = response_json(response)["message"]
    return message


@pytest.fixture
def ada(repository: FakeAudienceRepository) -> str:
    repository.put_app("android", AppRequest(platform_application_arn=APPLICATION))
    repository.put_user("ada", UserRequest(timezone="Europe/Paris", data={"plan": "pro"}))
    return "ada"


def _register(user_id: str, token: str = "token-1", app: str = "android") -> dict[str, Any]:  # noqa: S107
    return _call("POST", DEVICES, {"user_id": user_id}, {"app": app, "token": token})


# Users


def test_audience_put_user_new_answers_201_with_the_user(repository: FakeAudienceRepository) -> None:
    response = _call("PUT", USER, {"user_id": "ada"}, {"timezone": "Europe/Paris", "email": "ada@example.com"})

    body = response_json(response)
    assert response["statusCode"] == 201
    assert (body["user_id"], body["timezone"], body["email"], body["devices"]) == (
        "ada",
        "Europe/Paris",
        "ada@example.com",
        [],
    )
    assert "ada" in repository.users


def test_audience_put_user_again_answers_200_with_its_devices(ada: str) -> None:
    _register(ada)

    response = _call("PUT", USER, {"user_id": ada}, {"timezone": "Asia/Kathmandu"})

    assert response["statusCode"] == 200
    assert response_json(response)["timezone"] == "Asia/Kathmandu"
    assert len(response_json(response)["devices"]) == 1


def test_audience_put_user_unknown_time_zone_answers_422_naming_timezone() -> None:
    response = _call("PUT", USER, {"user_id": "ada"}, {"timezone": "Mars/Olympus"})

    assert response["statusCode"] == 422
    assert _message(response).startswith("timezone:")


def test_audience_put_user_id_too_long_answers_422_naming_user_id() -> None:
    response = _call("PUT", USER, {"user_id": "u" * 257}, {"timezone": "UTC"})

    assert response["statusCode"] == 422
    assert _message(response).startswith("user_id:")


def test_audience_put_user_id_over_the_delivery_key_bytes_answers_422_naming_user_id(
    repository: FakeAudienceRepository,
) -> None:
    # 255 characters (within 256) of 4 bytes each: 1020 bytes, past what a delivery key can hold with it.
    response = _call("PUT", USER, {"user_id": "\U0001f600" * 255}, {"timezone": "UTC"})

    assert response["statusCode"] == 422
    assert _message(response).startswith("user_id: ")
    assert repository.users == {}


def test_audience_put_user_id_of_256_bmp_characters_accepted(repository: FakeAudienceRepository) -> None:
    response = _call("PUT", USER, {"user_id": "\u732b" * 256}, {"timezone": "UTC"})

    assert response["statusCode"] == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timezone": "UTC", "data": {"plan": "pro\ud800"}}, "data.plan"),
        ({"timezone": "UTC", "email": "ada\uffff@example.com"}, "email"),
    ],
)
def test_audience_put_user_text_it_cannot_keep_answers_422_naming_the_field(
    repository: FakeAudienceRepository, body: dict[str, Any], field: str
) -> None:
    response = _call("PUT", USER, {"user_id": "ada"}, body)

    assert response["statusCode"] == 422
    assert _message(response).startswith(f"{field}: ")
    assert repository.users == {}


@pytest.mark.parametrize("user_id", ["ada\ud800", "ada\uffff"])
def test_audience_put_user_id_a_message_cannot_carry_answers_422_naming_user_id(
    repository: FakeAudienceRepository, user_id: str
) -> None:
    response = _call("PUT", USER, {"user_id": user_id}, {"timezone": "UTC"})

    assert response["statusCode"] == 422
    assert _message(response).startswith("user_id: ")
    assert repository.users == {}


def test_audience_get_user_shows_devices_and_subscriptions_without_token(ada: str) -> None:
    _register(ada)
    _call("PUT", SUBSCRIPTION, {"user_id": ada, "channel": "news", "topic": "daily"})

    body = response_json(_call("GET", USER, {"user_id": ada}))

    assert [device["app"] for device in body["devices"]] == ["android"]
    assert "token" not in body["devices"][0]
    assert "endpoint_arn" not in body["devices"][0]
    assert [(item["channel"], item["topic"]) for item in body["subscriptions"]] == [("news", "daily")]


def test_audience_get_user_unknown_answers_404() -> None:
    response = _call("GET", USER, {"user_id": "nobody"})

    assert response["statusCode"] == 404


def test_audience_delete_user_deletes_its_endpoints(ada: str, sns: FakeSnsEndpoints) -> None:
    _register(ada, "token-1")
    _register(ada, "token-2")

    response = _call("DELETE", USER, {"user_id": ada})

    assert response["statusCode"] == 204
    assert sns.endpoints == {}


def test_audience_delete_user_records_the_deletion_for_the_consumer(ada: str, deleted_users: DeletedUsers) -> None:
    response = _call("DELETE", USER, {"user_id": ada})

    assert response["statusCode"] == 204
    assert [user for user, _ in deleted_users.marked] == [ada]


def test_audience_delete_user_unknown_answers_404_and_still_records_the_deletion(deleted_users: DeletedUsers) -> None:
    # A retry of a deletion whose record failed (502): the user is gone, and the record is written now.
    response = _call("DELETE", USER, {"user_id": "nobody"})

    assert response["statusCode"] == 404
    assert [user for user, _ in deleted_users.marked] == ["nobody"]


def test_audience_delete_user_endpoint_not_deleted_still_answers_204(
    ada: str, sns: FakeSnsEndpoints, repository: FakeAudienceRepository
) -> None:
    _register(ada)
    sns.failing = "InternalError"

    response = _call("DELETE", USER, {"user_id": ada})

    assert response["statusCode"] == 204
    assert "ada" not in repository.users


def test_audience_database_down_answers_502(
    monkeypatch: pytest.MonkeyPatch, repository: FakeAudienceRepository
) -> None:
    def down(user_id: str) -> None:
        raise UpstreamError("reading user failed (OperationalError)")

    monkeypatch.setattr(repository, "get_user", down)

    response = _call("GET", USER, {"user_id": "ada"})

    assert response["statusCode"] == 502


# Devices


def test_audience_post_device_new_answers_201_with_the_device(ada: str, sns: FakeSnsEndpoints) -> None:
    response = _register(ada)

    body = response_json(response)
    assert response["statusCode"] == 201
    assert {key: body[key] for key in ("app", "platform", "enabled")} == {
        "app": "android",
        "platform": "GCM",
        "enabled": True,
    }
    assert "token" not in body
    [endpoint] = sns.endpoints.values()
    assert (endpoint["Token"], endpoint["CustomUserData"]) == ("token-1", "ada")


def test_audience_post_device_same_token_answers_200_the_same_device(ada: str, sns: FakeSnsEndpoints) -> None:
    first = response_json(_register(ada))

    again = _register(ada)

    assert again["statusCode"] == 200
    assert response_json(again)["device_id"] == first["device_id"]
    assert len(sns.endpoints) == 1


def test_audience_post_device_of_another_user_moves_it(
    ada: str, repository: FakeAudienceRepository, sns: FakeSnsEndpoints
) -> None:
    repository.put_user("bob", UserRequest(timezone="UTC"))
    first = response_json(_register(ada))

    moved = _register("bob")

    assert response_json(moved)["device_id"] == first["device_id"]
    assert repository.devices[first["device_id"]].user_id == "bob"
    assert [endpoint["CustomUserData"] for endpoint in sns.endpoints.values()] == ["bob"]


def test_audience_post_device_disabled_endpoint_is_enabled_again(
    ada: str, repository: FakeAudienceRepository, sns: FakeSnsEndpoints
) -> None:
    device = response_json(_register(ada))
    arn = repository.devices[device["device_id"]].endpoint_arn
    sns.endpoints[arn]["Enabled"] = "false"
    repository.disable_device(arn)

    again = response_json(_register(ada))

    assert again["enabled"] is True
    assert sns.endpoints[arn]["Enabled"] == "true"


def test_audience_post_device_unknown_app_answers_422_naming_app(ada: str, sns: FakeSnsEndpoints) -> None:
    response = _register(ada, app="ios")

    assert response["statusCode"] == 422
    assert _message(response).startswith("app:")
    assert sns.calls == []


def test_audience_post_device_unknown_user_answers_404_leaving_no_endpoint(ada: str, sns: FakeSnsEndpoints) -> None:
    response = _register("nobody")

    assert response["statusCode"] == 404
    assert sns.endpoints == {}


def test_audience_post_device_token_refused_by_sns_answers_422_naming_token(ada: str) -> None:
    response = _register(ada, token="bad-token")

    assert response["statusCode"] == 422
    assert _message(response).startswith("token:")


def test_audience_post_device_platform_application_gone_answers_422_naming_app(ada: str, sns: FakeSnsEndpoints) -> None:
    sns.applications.clear()

    response = _register(ada)

    assert response["statusCode"] == 422
    assert _message(response).startswith("app:")


def test_audience_post_device_sns_failing_answers_502(ada: str, sns: FakeSnsEndpoints) -> None:
    sns.failing = "InternalError"

    response = _register(ada)

    assert response["statusCode"] == 502


def test_audience_list_devices_shows_the_users_devices(ada: str) -> None:
    _register(ada, "token-1")
    _register(ada, "token-2")

    body = response_json(_call("GET", DEVICES, {"user_id": ada}))

    assert len(body["devices"]) == 2


def test_audience_delete_device_deletes_its_endpoint(ada: str, sns: FakeSnsEndpoints) -> None:
    device = response_json(_register(ada))

    response = _call("DELETE", DEVICE, {"user_id": ada, "device_id": device["device_id"]})

    assert response["statusCode"] == 204
    assert sns.endpoints == {}


def test_audience_delete_device_of_another_user_answers_404(ada: str, repository: FakeAudienceRepository) -> None:
    repository.put_user("bob", UserRequest(timezone="UTC"))
    device = response_json(_register(ada))

    response = _call("DELETE", DEVICE, {"user_id": "bob", "device_id": device["device_id"]})

    assert response["statusCode"] == 404


def test_audience_delete_device_id_not_a_uuid_answers_422_naming_device_id(ada: str) -> None:
    response = _call("DELETE", DEVICE, {"user_id": ada, "device_id": "42"})

    assert response["statusCode"] == 422
    assert _message(response).startswith("device_id:")


# Subscriptions


def test_audience_put_subscription_answers_204_and_lists_it(ada: str) -> None:
    response = _call("PUT", SUBSCRIPTION, {"user_id": ada, "channel": "news", "topic": "daily"})

    listed = response_json(_call("GET", SUBSCRIPTIONS, {"user_id": ada}))
    assert response["statusCode"] == 204
    assert [(item["channel"], item["topic"]) for item in listed["subscriptions"]] == [("news", "daily")]


def test_audience_delete_subscription_not_subscribed_answers_404(ada: str) -> None:
    response = _call("DELETE", SUBSCRIPTION, {"user_id": ada, "channel": "news", "topic": "daily"})

    assert response["statusCode"] == 404


def test_audience_put_subscription_bad_topic_name_answers_422_naming_topic(ada: str) -> None:
    response = _call("PUT", SUBSCRIPTION, {"user_id": ada, "channel": "news", "topic": "-daily"})

    assert response["statusCode"] == 422
    assert _message(response).startswith("topic:")


# Segments


def test_audience_put_segment_new_then_replaced_answers_201_then_200() -> None:
    where = {"field": "plan", "eq": "pro"}

    first = _call("PUT", SEGMENT, {"name": "pros"}, {"where": where})
    second = _call("PUT", SEGMENT, {"name": "pros"}, {"where": {"not": where}})

    assert (first["statusCode"], second["statusCode"]) == (201, 200)
    assert response_json(_call("GET", SEGMENT, {"name": "pros"}))["where"] == {"not": where}


def test_audience_put_segment_bad_operator_answers_422_naming_the_place(repository: FakeAudienceRepository) -> None:
    body = {"where": {"and": [{"field": "plan", "eq": "pro"}, {"field": "age", "like": 3}]}}

    response = _call("PUT", SEGMENT, {"name": "pros"}, body)

    assert response["statusCode"] == 422
    assert _message(response).startswith("where.and[1].like:")
    assert repository.segments == {}


def test_audience_put_segment_empty_definition_answers_422_naming_where() -> None:
    response = _call("PUT", SEGMENT, {"name": "pros"}, {"where": {}})

    assert response["statusCode"] == 422
    assert _message(response).startswith("where:")


def test_audience_put_segment_named_count_answers_422_naming_name() -> None:
    response = _call("PUT", SEGMENT, {"name": "count"}, {"where": {"field": "plan", "eq": "pro"}})

    assert response["statusCode"] == 422
    assert _message(response).startswith("name:")


def test_audience_delete_segment_then_get_answers_404() -> None:
    _call("PUT", SEGMENT, {"name": "pros"}, {"where": {"field": "plan", "eq": "pro"}})

    deleted = _call("DELETE", SEGMENT, {"name": "pros"})

    assert deleted["statusCode"] == 204
    assert _call("GET", SEGMENT, {"name": "pros"})["statusCode"] == 404


def test_audience_count_answers_the_repository_count(ada: str, repository: FakeAudienceRepository) -> None:
    repository.put_user("bob", UserRequest(timezone="UTC"))

    response = _call("POST", COUNT, body={"where": {"field": "timezone", "exists": True}})

    assert response["statusCode"] == 200
    assert response_json(response) == {"count": 2}


def test_audience_count_missing_where_answers_422_naming_where() -> None:
    response = _call("POST", COUNT, body={})

    assert response["statusCode"] == 422
    assert _message(response).startswith("where:")


# Apps


def test_audience_put_app_new_then_replaced_answers_201_then_200() -> None:
    body = {"platform_application_arn": APPLICATION}

    first = _admin("PUT", APP, {"app": "android"}, body)
    second = _admin("PUT", APP, {"app": "android"}, body)

    assert (first["statusCode"], second["statusCode"]) == (201, 200)
    assert response_json(first)["platform"] == "GCM"


def test_audience_put_app_arn_not_a_platform_application_answers_422_naming_it() -> None:
    response = _admin("PUT", APP, {"app": "android"}, {"platform_application_arn": "arn:aws:sns:eu-west-1:1:topic"})

    assert response["statusCode"] == 422
    assert _message(response).startswith("platform_application_arn:")


def test_audience_get_app_unknown_answers_404() -> None:
    assert _admin("GET", APP, {"app": "android"})["statusCode"] == 404


def test_audience_list_apps_shows_every_app(ada: str) -> None:
    body = response_json(_admin("GET", "/v1/apps"))

    assert [item["name"] for item in body["apps"]] == ["android"]


def test_audience_delete_app_deletes_its_devices_endpoints(ada: str, sns: FakeSnsEndpoints) -> None:
    _register(ada)

    response = _admin("DELETE", APP, {"app": "android"})

    assert response["statusCode"] == 204
    assert sns.endpoints == {}


# The function


def test_audience_settings_without_a_database_fail_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_SECRET_PARAMETER")

    with pytest.raises(SettingsError, match="DATABASE_URL or DATABASE_SECRET_PARAMETER"):
        audience.settings()


def test_audience_import_loads_no_psycopg2() -> None:
    code = "import sys, api.audience; print('psycopg2' in sys.modules)"

    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "False"


def test_audience_routes_are_in_the_openapi_document() -> None:
    document = build_document(routers())

    assert {"/v1/users/{user_id}", "/v1/apps/{app}", "/v1/segments/count"} <= set(document["paths"])
    assert document["paths"]["/v1/apps/{app}"]["put"]["security"] == [{"admin": []}]


# --- POST /v1/sends (send_response; registered with its http event) -------------------------------------------------


@pytest.fixture
def send_router(monkeypatch: pytest.MonkeyPatch) -> tuple[Router, FakeSendStore, FakeExpansionQueue]:
    """A router serving ``send_response`` as the audience function will, on a fake store and expansion queue."""
    store, queue = FakeSendStore(), FakeExpansionQueue()
    monkeypatch.setattr(audience, "get_audience_repository", lambda settings: store)
    monkeypatch.setattr(audience, "get_expansion_queue", lambda settings: queue)
    router = Router()

    @router.post(audience.SENDS_PATH, audience.SENDS_DOC)
    def post_send() -> Response:
        return audience.send_response(router.current_event)

    return router, store, queue


def _send(router: Router, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = router.resolve(api_event("POST", "/v1/sends", None, body, headers))
    return result


def test_post_send_queued_202_with_location(send_router: tuple[Router, FakeSendStore, FakeExpansionQueue]) -> None:
    router, _store, queue = send_router

    response = _send(router, {"to": {"user_ids": ["u1"]}, "content": {"text": "Hi"}})

    body = response_json(response)
    assert (response["statusCode"], body["status"]) == (202, "queued")
    assert response["headers"]["Location"] == f"/v1/notifications/{body['notification_id']}"
    assert [job.notification_id for job in queue.jobs] == [body["notification_id"]]  # type: ignore[union-attr]


def test_post_send_idempotency_key_same_notification(
    send_router: tuple[Router, FakeSendStore, FakeExpansionQueue],
) -> None:
    router, store, _queue = send_router
    body = {"to": {"user_ids": ["u1"]}, "content": {"text": "Hi"}}

    first = response_json(_send(router, body, {"Idempotency-Key": "k-1"}))
    again = response_json(_send(router, body, {"Idempotency-Key": "k-1"}))

    assert first["notification_id"] == again["notification_id"]
    assert len(store.sends) == 1


def test_post_send_idempotency_key_other_body_409(
    send_router: tuple[Router, FakeSendStore, FakeExpansionQueue],
) -> None:
    router, _store, _queue = send_router
    _send(router, {"to": {"user_ids": ["u1"]}, "content": {"text": "Hi"}}, {"Idempotency-Key": "k-1"})

    response = _send(router, {"to": {"user_ids": ["u2"]}, "content": {"text": "Hi"}}, {"Idempotency-Key": "k-1"})

    assert response["statusCode"] == 409


def test_post_send_scheduled_202_with_schedule_id(
    send_router: tuple[Router, FakeSendStore, FakeExpansionQueue],
) -> None:
    router, _store, queue = send_router

    response = _send(router, {"to": {"user_ids": ["u1"]}, "content": {"text": "Hi"}, "at": "2099-01-01T09:00:00+01:00"})

    body = response_json(response)
    assert (response["statusCode"], body["status"], queue.jobs) == (202, "scheduled", [])
    assert body["schedule_id"]


@pytest.mark.parametrize("local_time", [False, True])
def test_post_send_scheduled_again_with_its_idempotency_key_answers_the_same_schedule(
    send_router: tuple[Router, FakeSendStore, FakeExpansionQueue], local_time: bool
) -> None:
    router, _store, _queue = send_router
    at = "2099-01-01T09:00:00" if local_time else "2099-01-01T09:00:00+01:00"
    body = {"to": {"user_ids": ["u1"]}, "content": {"text": "Hi"}, "at": at, "local_time": local_time}

    first = _send(router, body, {"Idempotency-Key": "k-1"})
    again = _send(router, body, {"Idempotency-Key": "k-1"})

    assert (first["statusCode"], again["statusCode"]) == (202, 202)
    assert response_json(again) == response_json(first)


def test_post_send_scheduled_again_after_the_cron_tried_it_answers_the_same_schedule(
    send_router: tuple[Router, FakeSendStore, FakeExpansionQueue],
) -> None:
    router, store, _queue = send_router
    body = {"to": {"user_ids": ["u1"]}, "content": {"text": "Hi"}, "at": "2099-01-01T09:00:00+01:00"}
    first = response_json(_send(router, body, {"Idempotency-Key": "k-1"}))
    # The cron's hand-off failed once: the schedule's fire_at moved on by the retry's backoff.
    row = store.schedules[first["schedule_id"]]
    store.schedules[row.schedule_id] = row.model_copy(
        update={"attempts": 1, "fire_at": row.fire_at + timedelta(minutes=2)}
    )

    again = _send(router, body, {"Idempotency-Key": "k-1"})

    assert (again["statusCode"], response_json(again)) == (202, first)


@pytest.mark.parametrize(
    "change",
    [{"at": "2099-01-01T10:00:00+01:00"}, {"content": {"text": "Hello"}}],
    ids=["other-at", "other-content"],
)
def test_post_send_scheduled_idempotency_key_with_another_body_409(
    send_router: tuple[Router, FakeSendStore, FakeExpansionQueue], change: dict[str, Any]
) -> None:
    router, _store, _queue = send_router
    body = {"to": {"user_ids": ["u1"]}, "content": {"text": "Hi"}, "at": "2099-01-01T09:00:00+01:00"}
    _send(router, body, {"Idempotency-Key": "k-1"})

    response = _send(router, {**body, **change}, {"Idempotency-Key": "k-1"})

    assert response["statusCode"] == 409
    assert response_json(response) == {"message": "Idempotency-Key was already used with a different request body"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": {"text": "Hi"}}, "to"),
        ({"to": {}, "content": {"text": "Hi"}}, "to"),
        ({"to": {"user_ids": ["u1"]}}, "content"),
        ({"to": {"user_ids": ["u1"]}, "content": {}}, "content.text"),
        ({"to": {"user_ids": ["u1"]}, "content": {"text": "Hi"}, "channels": ["fax"]}, "channels"),
        ({"to": {"user_ids": ["u1"]}, "content": {"text": "Hi"}, "channels": ["email"]}, "content.subject"),
        ({"to": {"user_ids": ["u1"]}, "content": {"text": "Hi"}, "at": "tomorrow"}, "at"),
        ({"to": {"user_ids": ["u1"]}, "content": {"text": "Hi"}, "at": "2099-01-01T09:00:00"}, "at"),
        ({"to": {"user_ids": ["u1"]}, "content": {"text": "Hi"}, "local_time": True}, "local_time"),
        (
            {"to": {"user_ids": ["u1"]}, "content": {"text": "Hi"}, "at": "2099-01-01T09:00:00", "local_time": "true"},
            "local_time",
        ),
        ({"to": {"segment": "missing"}, "content": {"text": "Hi"}}, "to.segment"),
        ({"to": {"where": {"field": "plan", "like": "x"}}, "content": {"text": "Hi"}}, "to.where"),
        ({"to": {"topic": "news"}, "content": {"text": "Hi"}}, "to.topic"),
    ],
)
def test_post_send_invalid_body_422_naming_the_field(
    send_router: tuple[Router, FakeSendStore, FakeExpansionQueue], body: dict[str, Any], field: str
) -> None:
    router, store, queue = send_router

    response = _send(router, body)

    assert response["statusCode"] == 422, response["body"]
    assert field in _message(response)
    assert (store.sends, queue.jobs) == ({}, [])


@pytest.mark.parametrize(
    "when",
    [
        {"at": "0001-01-01T00:00:00", "local_time": True},
        {"at": "0001-01-01T00:00:00+14:00"},
        {"at": "9999-12-31T23:59:59-12:00"},
        {"at": "2001-01-01T00:00:00+00:00"},
    ],
    ids=["year-1-local", "year-1-east", "year-9999-west", "years-past"],
)
def test_post_send_at_out_of_range_422_naming_at(
    send_router: tuple[Router, FakeSendStore, FakeExpansionQueue], when: dict[str, Any]
) -> None:
    router, store, queue = send_router
    store.put_user("u1", UserRequest(timezone="Asia/Tokyo"))

    response = _send(router, {"to": {"user_ids": ["u1"]}, "content": {"text": "Hi"}, **when})

    assert response["statusCode"] == 422, response["body"]
    assert _message(response).startswith("at: ")
    assert (store.sends, queue.jobs) == ({}, [])


def test_post_send_user_id_over_the_delivery_key_bytes_422_naming_it(
    send_router: tuple[Router, FakeSendStore, FakeExpansionQueue],
) -> None:
    router, store, queue = send_router

    response = _send(router, {"to": {"user_ids": ["a", "\U0001f600" * 255]}, "content": {"text": "Hi"}})

    assert response["statusCode"] == 422, response["body"]
    assert _message(response).startswith("to.user_ids[1]: ")
    assert (store.sends, queue.jobs) == ({}, [])


def test_post_send_not_json_400(send_router: tuple[Router, FakeSendStore, FakeExpansionQueue]) -> None:
    router, _store, _queue = send_router

    assert _send(router, "{not json")["statusCode"] == 400


def test_post_send_expansion_queue_down_502(
    send_router: tuple[Router, FakeSendStore, FakeExpansionQueue],
) -> None:
    router, _store, queue = send_router
    queue.fail = True

    assert _send(router, {"to": {"user_ids": ["u1"]}, "content": {"text": "Hi"}})["statusCode"] == 502


@pytest.mark.parametrize("when", [{}, {"at": "2099-01-01T09:00:00+01:00"}])
def test_post_send_content_a_message_cannot_carry_422_naming_the_field(
    send_router: tuple[Router, FakeSendStore, FakeExpansionQueue], when: dict[str, str]
) -> None:
    router, store, queue = send_router
    content = {"text": "Hi", "push": {"GCM": {"data": {"k": "\uffff"}}}}

    response = _send(router, {"to": {"user_ids": ["u1"]}, "content": content, **when})

    assert response["statusCode"] == 422
    assert _message(response).startswith("content.push.GCM.data.k: must hold only characters a message can carry")
    assert (store.sends, getattr(store, "schedules", {}), queue.jobs) == ({}, {}, [])
