"""Integration tests of the audience function (api/audience.py): its handler called with API Gateway events, SNS
platform applications and endpoints in moto, the audience in a real PostgreSQL (tests/support/postgres.py)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest

from api import audience
from core import clients
from core.audience import devices
from core.audience.connection import Database
from core.audience.models import MAX_DEVICES_PER_USER, MAX_SUBSCRIPTIONS_PER_USER
from core.audience.repository import AudienceRepository
from core.errors import UpstreamError
from tests.fakes.lambda_context import FakeLambdaContext
from tests.support.aws import client as aws_client
from tests.support.aws import create_resources
from tests.support.events import admin_event, api_event, response_header, response_json

REGION = "us-east-1"
ADMIN_TOKEN = "admin-token"
USER = "/v1/users/{user_id}"
DEVICES = "/v1/users/{user_id}/devices"
DEVICE = "/v1/users/{user_id}/devices/{device_id}"
SUBSCRIPTION = "/v1/users/{user_id}/subscriptions/{channel}/{topic}"
SUBSCRIPTIONS = "/v1/users/{user_id}/subscriptions"
SEGMENT = "/v1/segments/{name}"
APP = "/v1/apps/{app}"


class Api:
    """The audience function, called as API Gateway calls it."""

    def __init__(self, context: FakeLambdaContext, sns: Any, application_arn: str) -> None:
        self.context = context
        self.sns = sns
        self.application_arn = application_arn

    def call(self, method: str, resource: str, params: dict[str, str] | None = None, body: Any = None) -> Any:
        """Invoke the handler with an API key event; return its proxy result."""
        return audience.handler(api_event(method, resource, params, body), self.context)

    def admin(self, method: str, resource: str, params: dict[str, str] | None = None, body: Any = None) -> Any:
        """Invoke the handler with an event the admin authorizer allowed."""
        return audience.handler(admin_event(method, resource, params, body, ADMIN_TOKEN), self.context)

    def user(self, user_id: str, timezone: str = "Europe/Paris", **data: Any) -> Any:
        """``PUT /v1/users/{user_id}``."""
        return self.call("PUT", USER, {"user_id": user_id}, {"timezone": timezone, "data": data})

    def register(self, user_id: str, token: str = "token-1", app: str = "android") -> Any:  # noqa: S107
        """``POST /v1/users/{user_id}/devices``."""
        return self.call("POST", DEVICES, {"user_id": user_id}, {"app": app, "token": token})

    def unregister(self, user_id: str, device_id: str) -> Any:
        """``DELETE /v1/users/{user_id}/devices/{device_id}``."""
        return self.call("DELETE", DEVICE, {"user_id": user_id, "device_id": device_id})

    def endpoints(self) -> dict[str, dict[str, str]]:
        """The app's SNS endpoints and their attributes."""
        listed = self.sns.list_endpoints_by_platform_application(PlatformApplicationArn=self.application_arn)
        return {item["EndpointArn"]: item["Attributes"] for item in listed["Endpoints"]}


@pytest.fixture
def api(
    monkeypatch: pytest.MonkeyPatch, postgres_url: str, database: Database, lambda_context: FakeLambdaContext
) -> Iterator[Api]:
    """The audience function on moto's SNS and the session's PostgreSQL (emptied), with one app, ``android``."""
    from moto import mock_aws

    monkeypatch.setenv("DATABASE_URL", postgres_url)
    with mock_aws():
        # The service's tables and queues: a user's deletion is recorded in the ledger.
        for name, value in create_resources().env.items():
            monkeypatch.setenv(name, value)
        clients.reset()
        sns = aws_client("sns")
        application = sns.create_platform_application(
            Name="android", Platform="GCM", Attributes={"PlatformCredential": "key"}
        )["PlatformApplicationArn"]
        api = Api(lambda_context, sns, application)
        created = api.admin("PUT", APP, {"app": "android"}, {"platform_application_arn": application})
        assert created["statusCode"] == 201
        yield api
        # The container's connection, as a warm Lambda keeps it, is closed with the test.
        clients.get_database().close()


def test_audience_user_created_replaced_and_read_with_its_devices(api: Api) -> None:
    created = api.user("ada", plan="pro")
    api.register("ada")

    replaced = api.user("ada", "Asia/Kathmandu", plan="free")
    read = response_json(api.call("GET", USER, {"user_id": "ada"}))

    assert (created["statusCode"], replaced["statusCode"]) == (201, 200)
    assert (read["timezone"], read["data"]) == ("Asia/Kathmandu", {"plan": "free"})
    assert [device["platform"] for device in read["devices"]] == ["GCM"]


def test_audience_user_deleted_with_its_endpoints(api: Api) -> None:
    api.user("ada")
    api.register("ada", "token-1")
    api.register("ada", "token-2")

    deleted = api.call("DELETE", USER, {"user_id": "ada"})

    assert deleted["statusCode"] == 204
    assert api.endpoints() == {}
    assert api.call("GET", USER, {"user_id": "ada"})["statusCode"] == 404


def test_audience_user_unknown_time_zone_answers_422_naming_timezone(api: Api) -> None:
    response = api.user("ada", "Europe/Atlantis")

    assert response["statusCode"] == 422
    assert response_json(response)["message"].startswith("timezone:")


@pytest.mark.parametrize(
    ("user_id", "body", "field"),
    [
        ("ada\ud800", {"timezone": "UTC"}, "user_id"),
        ("ada\uffff", {"timezone": "UTC"}, "user_id"),
        ("ada", {"timezone": "UTC", "email": "ada\ud800@example.com"}, "email"),
        ("ada", {"timezone": "UTC", "data": {"plan": "pro\ud800"}}, "data.plan"),
        ("ada", {"timezone": "UTC", "data": {"pro\ud800": True}}, 'data["pro'),
        # NUL: PostgreSQL's text and jsonb cannot hold it; its error (22P05) named no field.
        ("ada", {"timezone": "UTC", "data": {"plan": "pro\x00"}}, "data.plan"),
        ("ada", {"timezone": "UTC", "data": {"pro\x00": True}}, 'data["pro'),
        ("ada", {"timezone": "UTC", "email": "ada\x00@example.com"}, "email"),
    ],
)
def test_audience_user_text_it_cannot_keep_answers_422_naming_the_field(
    api: Api, user_id: str, body: dict[str, Any], field: str
) -> None:
    response = api.call("PUT", USER, {"user_id": user_id}, body)

    assert response["statusCode"] == 422, response["body"]
    assert response_json(response)["message"].startswith(field)


def test_audience_user_noncharacters_in_data_stored_and_read_back(api: Api) -> None:
    data = {"k\ufffe": "v\uffff"}

    stored = api.call("PUT", USER, {"user_id": "ada"}, {"timezone": "UTC", "data": data})

    assert stored["statusCode"] == 201
    assert response_json(api.call("GET", USER, {"user_id": "ada"}))["data"] == data


def test_audience_device_registered_twice_is_the_same_device(api: Api) -> None:
    api.user("ada")
    first = api.register("ada")

    again = api.register("ada")

    assert (first["statusCode"], again["statusCode"]) == (201, 200)
    assert response_json(again)["device_id"] == response_json(first)["device_id"]
    assert len(api.endpoints()) == 1


def test_audience_device_of_another_user_is_moved_to_the_new_one(api: Api) -> None:
    api.user("ada")
    api.user("bob")
    first = response_json(api.register("ada"))
    [ada_endpoint] = api.endpoints()

    moved = response_json(api.register("bob"))

    assert moved["device_id"] == first["device_id"]
    assert response_json(api.call("GET", DEVICES, {"user_id": "ada"}))["devices"] == []
    assert [item["device_id"] for item in response_json(api.call("GET", DEVICES, {"user_id": "bob"}))["devices"]] == [
        first["device_id"]
    ]
    # A new endpoint, ada's deleted: what was queued for ada never reaches bob.
    assert [arn for arn in api.endpoints() if arn != ada_endpoint] == list(api.endpoints())
    assert len(api.endpoints()) == 1


def test_audience_device_disabled_endpoint_enabled_again_by_registration(api: Api) -> None:
    api.user("ada")
    api.register("ada")
    [arn] = api.endpoints()
    api.sns.set_endpoint_attributes(EndpointArn=arn, Attributes={"Enabled": "false"})

    again = response_json(api.register("ada"))

    assert again["enabled"] is True
    assert api.endpoints()[arn]["Enabled"].lower() == "true"


def test_audience_device_unregistered_deletes_its_endpoint(api: Api) -> None:
    api.user("ada")
    device = response_json(api.register("ada"))

    response = api.unregister("ada", device["device_id"])

    assert response["statusCode"] == 204
    assert api.endpoints() == {}


def test_audience_device_unknown_app_answers_422_naming_app(api: Api) -> None:
    api.user("ada")

    response = api.register("ada", app="ios")

    assert response["statusCode"] == 422
    assert response_json(response)["message"].startswith("app:")


def test_audience_device_token_not_utf8_answers_422_naming_token(api: Api) -> None:
    api.user("ada")

    response = api.register("ada", token="token-\ud800")

    assert response["statusCode"] == 422
    assert response_json(response)["message"].startswith("token: ")
    assert api.endpoints() == {}


def test_audience_subscriptions_put_listed_and_deleted(api: Api) -> None:
    api.user("ada")
    params = {"user_id": "ada", "channel": "news", "topic": "daily"}

    put = api.call("PUT", SUBSCRIPTION, params)
    listed = response_json(api.call("GET", SUBSCRIPTIONS, {"user_id": "ada"}))
    deleted = api.call("DELETE", SUBSCRIPTION, params)

    assert (put["statusCode"], deleted["statusCode"]) == (204, 204)
    assert [(item["channel"], item["topic"]) for item in listed["subscriptions"]] == [("news", "daily")]
    assert response_json(api.call("GET", SUBSCRIPTIONS, {"user_id": "ada"}))["subscriptions"] == []


def test_audience_subscription_beyond_the_bound_answers_409_saying_it(api: Api, postgres_url: str) -> None:
    api.user("ada")
    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO subscriptions (user_id, channel, topic) SELECT 'ada', 'news', 't' || n"
            " FROM generate_series(1, %s) AS n",
            (MAX_SUBSCRIPTIONS_PER_USER,),
        )
    connection.close()

    refused = api.call("PUT", SUBSCRIPTION, {"user_id": "ada", "channel": "news", "topic": "one-more"})
    again = api.call("PUT", SUBSCRIPTION, {"user_id": "ada", "channel": "news", "topic": "t1"})

    assert refused["statusCode"] == 409
    assert response_json(refused)["message"].startswith(
        f"a user has at most {MAX_SUBSCRIPTIONS_PER_USER} subscriptions"
    )
    assert again["statusCode"] == 204
    listed = response_json(api.call("GET", SUBSCRIPTIONS, {"user_id": "ada"}))["subscriptions"]
    assert len(listed) == MAX_SUBSCRIPTIONS_PER_USER


def test_audience_device_beyond_the_bound_removes_the_least_recently_seen_with_its_endpoint(api: Api) -> None:
    api.user("ada")
    devices = [response_json(api.register("ada", token=f"token-{index}")) for index in range(MAX_DEVICES_PER_USER)]
    endpoints = api.endpoints()
    assert len(endpoints) == MAX_DEVICES_PER_USER

    newest = api.register("ada", token="token-new")

    assert newest["statusCode"] == 201
    listed = response_json(api.call("GET", DEVICES, {"user_id": "ada"}))["devices"]
    assert len(listed) == MAX_DEVICES_PER_USER
    assert devices[0]["device_id"] not in {device["device_id"] for device in listed}
    tokens = {attributes["Token"] for attributes in api.endpoints().values()}
    assert len(tokens) == MAX_DEVICES_PER_USER
    assert "token-0" not in tokens
    assert "token-new" in tokens


def test_audience_segment_bad_operator_answers_422_naming_the_place(api: Api) -> None:
    body = {"where": {"or": [{"field": "plan", "eq": "pro"}, {"field": "plan", "matches": "p.*"}]}}

    response = api.call("PUT", SEGMENT, {"name": "pros"}, body)

    assert response["statusCode"] == 422
    assert response_json(response)["message"].startswith("where.or[1].matches:")


def test_audience_segment_stored_and_counted(api: Api) -> None:
    api.user("ada", plan="pro")
    api.user("bob", plan="free")
    api.user("eve", "Asia/Tokyo", plan="pro")
    where = {"and": [{"field": "plan", "eq": "pro"}, {"field": "timezone", "eq": "Europe/Paris"}]}

    stored = api.call("PUT", SEGMENT, {"name": "paris-pros"}, {"where": where})
    counted = api.call("POST", "/v1/segments/count", body={"where": where})

    assert stored["statusCode"] == 201
    assert response_json(api.call("GET", SEGMENT, {"name": "paris-pros"}))["where"] == where
    assert response_json(counted) == {"count": 1}


def test_audience_apps_listed_and_deleted_with_their_endpoints(api: Api) -> None:
    api.user("ada")
    api.register("ada")

    listed = response_json(api.admin("GET", "/v1/apps"))
    deleted = api.admin("DELETE", APP, {"app": "android"})

    assert [item["name"] for item in listed["apps"]] == ["android"]
    assert deleted["statusCode"] == 204
    assert api.endpoints() == {}
    assert api.admin("GET", APP, {"app": "android"})["statusCode"] == 404


def test_audience_app_with_a_platform_application_sns_has_not_answers_422_naming_it(api: Api) -> None:
    # Saved, it refused every device's registration later, with a message about the app.
    missing = api.application_arn.rsplit("/", 1)[0] + "/no-such-app"
    disabled = api.sns.create_platform_application(
        Name="disabled", Platform="GCM", Attributes={"PlatformCredential": "key"}
    )["PlatformApplicationArn"]
    api.sns.set_platform_application_attributes(PlatformApplicationArn=disabled, Attributes={"Enabled": "false"})

    unknown = api.admin("PUT", APP, {"app": "ios"}, {"platform_application_arn": missing})
    switched_off = api.admin("PUT", APP, {"app": "ios"}, {"platform_application_arn": disabled})

    assert unknown["statusCode"] == 422
    assert response_json(unknown)["message"].startswith(
        "platform_application_arn: SNS has no platform application of this ARN in this account and region"
    )
    assert (switched_off["statusCode"], response_json(switched_off)) == (
        422,
        {"message": "platform_application_arn: its SNS platform application is disabled: renew its credentials in SNS"},
    )
    assert api.admin("GET", APP, {"app": "ios"})["statusCode"] == 404


def test_audience_app_on_another_apps_platform_application_answers_409_naming_it(api: Api) -> None:
    # Saved, the same phone registered on both apps shared one SNS endpoint: the second user's registration took the
    # first user's pushes, and deleting either device deleted the other's endpoint.
    body = {"platform_application_arn": api.application_arn}

    second = api.admin("PUT", APP, {"app": "android-v2"}, body)
    again = api.admin("PUT", APP, {"app": "android"}, body)

    assert second["statusCode"] == 409
    assert response_json(second)["message"].startswith(
        "platform_application_arn: the app 'android' has this platform application"
    )
    assert api.admin("GET", APP, {"app": "android-v2"})["statusCode"] == 404
    assert again["statusCode"] == 200


def _other_application(api: Api) -> str:
    created = api.sns.create_platform_application(
        Name="android-next", Platform="GCM", Attributes={"PlatformCredential": "key"}
    )
    return str(created["PlatformApplicationArn"])


def test_audience_app_with_devices_moved_to_another_platform_application_answers_409(api: Api) -> None:
    # Saved, the devices' endpoints stayed on the application the app left: every push to them failed once it was gone.
    api.user("ada")
    api.register("ada")

    moved = api.admin("PUT", APP, {"app": "android"}, {"platform_application_arn": _other_application(api)})

    assert moved["statusCode"] == 409
    assert response_json(moved)["message"].startswith(
        "platform_application_arn: the app has 1 devices on its platform application"
    )
    assert response_json(api.admin("GET", APP, {"app": "android"}))["platform_application_arn"] == api.application_arn


def test_audience_app_without_devices_moves_to_another_platform_application(api: Api) -> None:
    other = _other_application(api)

    moved = api.admin("PUT", APP, {"app": "android"}, {"platform_application_arn": other})

    assert moved["statusCode"] == 200
    assert response_json(moved)["platform_application_arn"] == other


def test_audience_app_deletion_out_of_time_answers_202_and_a_call_again_finishes(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.user("ada")
    api.register("ada")
    monkeypatch.setattr(devices, "APP_DELETION_MARGIN_SECONDS", 3600.0)  # a call with no time to delete anything

    first = api.admin("DELETE", APP, {"app": "android"})

    assert first["statusCode"] == 202
    assert response_json(first) == {
        "devices_deleted": 0,
        "message": "0 devices deleted; the app has more: DELETE it again to go on",
    }
    assert api.admin("GET", APP, {"app": "android"})["statusCode"] == 200
    monkeypatch.setattr(devices, "APP_DELETION_MARGIN_SECONDS", 2.0)
    assert api.admin("DELETE", APP, {"app": "android"})["statusCode"] == 204
    assert api.endpoints() == {}


def test_audience_database_down_answers_502(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("DATABASE_URL", f"postgresql://notify@127.0.0.1:{closed_port}/notify?connect_timeout=1")
    clients.reset()

    response = api.call("GET", USER, {"user_id": "ada"})

    assert response["statusCode"] == 502
    assert str(closed_port) not in response_json(response)["message"]


def _schedule(database: Database, caller: str | None = "k1a2b3c4d5") -> str:
    """Record a schedule as ``caller`` (an API key id; api_event's by default) asked for it."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from core.audience.repository import AudienceRepository
    from core.audience.schedules import NewScheduledSend

    send = NewScheduledSend(
        notification_id=str(uuid.uuid4()),
        target={"topic": "news/daily"},
        content={"text": "Hello"},
        channels=["push"],
        fire_at=datetime.now(UTC) + timedelta(hours=1),
        caller=caller,
    )
    return AudienceRepository(database).create_scheduled_send(send).schedule_id


def test_schedules_cancel_then_show_cancelled_and_listed(api: Api, database: Database) -> None:
    schedule_id = _schedule(database)

    cancelled = api.call("DELETE", "/v1/schedules/{schedule_id}", {"schedule_id": schedule_id})
    shown = response_json(api.call("GET", "/v1/schedules/{schedule_id}", {"schedule_id": schedule_id}))
    listed = response_json(api.call("GET", "/v1/schedules"))

    assert cancelled["statusCode"] == 204
    assert shown["status"] == "cancelled"
    assert [item["schedule_id"] for item in listed["schedules"]] == [schedule_id]


def test_schedules_of_another_api_key_are_not_listed_shown_or_cancelled(api: Api, database: Database) -> None:
    # As the status of a notification is its publisher's only: another key saw a schedule's audience and content, and
    # could cancel it.
    own, others = _schedule(database), _schedule(database, caller="k-other-key")

    listed = response_json(api.call("GET", "/v1/schedules"))
    shown = api.call("GET", "/v1/schedules/{schedule_id}", {"schedule_id": others})
    cancelled = api.call("DELETE", "/v1/schedules/{schedule_id}", {"schedule_id": others})

    assert [item["schedule_id"] for item in listed["schedules"]] == [own]
    assert (shown["statusCode"], cancelled["statusCode"]) == (404, 404)
    assert response_json(shown)["message"] == response_json(cancelled)["message"] == "the schedule does not exist"
    assert AudienceRepository(database).get_schedule(others).status == "scheduled"
    assert "caller" not in response_json(api.call("GET", "/v1/schedules/{schedule_id}", {"schedule_id": own}))


def test_schedules_of_a_send_without_caller_are_any_keys(api: Api, database: Database) -> None:
    # Made before sends recorded their caller, as a notification's record without one is any key's to read: no key
    # could see or cancel it, and it fired all the same.
    legacy = _schedule(database, caller=None)

    listed = response_json(api.call("GET", "/v1/schedules"))
    shown = api.call("GET", "/v1/schedules/{schedule_id}", {"schedule_id": legacy})
    cancelled = api.call("DELETE", "/v1/schedules/{schedule_id}", {"schedule_id": legacy})

    assert [item["schedule_id"] for item in listed["schedules"]] == [legacy]
    assert (shown["statusCode"], cancelled["statusCode"]) == (200, 204)


def test_schedules_list_pages_stop_at_2_mib_so_the_answer_fits_lambdas_6_mb(api: Api) -> None:
    # Fifty schedules, each of a large email and push content, made an 8.4 MB answer: a 5xx, and no page reachable.
    api.user("ada")
    html = ('<a href="https://example.com/x">link</a>' * 2500)[:99_000]
    push = {"GCM": {"fcmV1Message": {"message": {"data": {"article": "y" * 3_900}}}}}  # FCM takes 4096 bytes
    content = {"text": "hi " * 1300, "subject": "s", "html": html, "push": push}
    for _ in range(45):
        body = {"to": {"user_ids": ["ada"]}, "channels": ["email"], "content": content, "at": "2099-01-01T09:00:00Z"}
        assert audience.handler(api_event("POST", "/v1/sends", None, body), api.context)["statusCode"] == 202

    listed, cursor = 0, None
    while True:
        path = "/v1/schedules"
        event = api_event("GET", path, None, None)
        event["queryStringParameters"] = {"cursor": cursor} if cursor else None
        result = audience.handler(event, api.context)
        assert result["statusCode"] == 200
        assert len(json.dumps(result)) < 6_000_000
        page = response_json(result)
        listed += len(page["schedules"])
        cursor = page.get("next")
        if cursor is None:
            break

    assert listed == 45


def test_schedules_unknown_id_is_404(api: Api) -> None:
    result = api.call("GET", "/v1/schedules/{schedule_id}", {"schedule_id": "not-a-schedule"})

    assert result["statusCode"] == 404


def _send_with_key(api: Api, body: dict[str, Any]) -> Any:
    return audience.handler(api_event("POST", "/v1/sends", None, body, {"Idempotency-Key": "k-1"}), api.context)


def test_sends_scheduled_again_with_its_idempotency_key_answers_the_same_schedule(api: Api, db: Any) -> None:
    body = {"to": {"user_ids": ["ada"]}, "content": {"text": "Hi"}, "at": "2099-01-01T09:00:00", "local_time": True}
    api.user("ada")

    first, again = _send_with_key(api, body), _send_with_key(api, body)

    assert (first["statusCode"], again["statusCode"]) == (202, 202)
    assert response_json(again) == response_json(first)
    with db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM scheduled_sends")
        assert cursor.fetchone() == (1,)


@pytest.mark.parametrize("number", ["1e16", "-0.0", "2.5e20"])
@pytest.mark.parametrize("at", [None, "2099-01-01T09:00:00Z"], ids=["at-once", "scheduled"])
def test_sends_retried_with_its_idempotency_key_and_a_number_jsonb_spells_otherwise_is_the_same_send(
    api: Api, number: str, at: str | None
) -> None:
    # PostgreSQL's JSONB keeps a number's value, not its spelling (1e16 comes back 10000000000000000): the retry a 502
    # invites was refused 409 as another body, and the send, its job never submitted, stayed queued for ever.
    api.user("ada")
    aws_client("sqs").create_queue(QueueName="notify-test-expansion")
    timing = f', "at": "{at}"' if at else ""
    body = '{"to": {"where": {"field": "score", "gte": ' + number + '}}, "content": {"text": "hi"}' + timing + "}"
    headers = {"Idempotency-Key": f"retry-{number}"}

    first = audience.handler(api_event("POST", "/v1/sends", None, body, headers), api.context)
    again = audience.handler(api_event("POST", "/v1/sends", None, body, headers), api.context)

    assert (first["statusCode"], again["statusCode"]) == (202, 202)
    assert response_json(again) == response_json(first)


def test_sends_idempotency_key_reused_with_a_number_differing_past_28_digits_is_409(api: Api) -> None:
    # Numbers compared by value were rounded to 28 digits: two order ids of 32 digits were the same request, and
    # the second send was silently taken for the first.
    api.user("ada")
    aws_client("sqs").create_queue(QueueName="notify-test-expansion")
    headers = {"Idempotency-Key": "ids"}

    def send(order: str) -> Any:
        body = '{"to": {"where": {"field": "order", "eq": ' + order + '}}, "content": {"text": "hi"}}'
        return audience.handler(api_event("POST", "/v1/sends", None, body, headers), api.context)

    first, other = send("12345678901234567890123456789012"), send("12345678901234567890123456789019")

    assert (first["statusCode"], other["statusCode"]) == (202, 409)


@pytest.mark.parametrize("change", [{"at": None}, {"at": "2099-01-01T10:00:00"}], ids=["at-once", "other-at"])
def test_sends_idempotency_key_of_a_scheduled_send_with_another_time_409_and_nothing_sent(
    api: Api, db: Any, change: dict[str, Any]
) -> None:
    body = {"to": {"user_ids": ["ada"]}, "content": {"text": "Hi"}, "at": "2099-01-01T09:00:00", "local_time": True}
    api.user("ada")
    _send_with_key(api, body)

    response = _send_with_key(api, {**body, **change, "local_time": change["at"] is not None})

    assert response["statusCode"] == 409
    with db.cursor() as cursor:
        cursor.execute("SELECT status FROM sends")
        assert cursor.fetchall() == [("scheduled",)]


@pytest.mark.parametrize("enqueued", [True, False], ids=["sent", "retried"])
def test_sends_idempotency_key_of_an_instant_the_cron_tried_answers_it_only_for_the_same_at(
    api: Api, database: Database, enqueued: bool
) -> None:
    # Once the cron had tried an instant send, any other ``at`` under its key answered that send: next week's send
    # was never scheduled. A retry moves fire_at, not the time asked for.
    from core.audience.repository import AudienceRepository
    from core.audience.schedules import dispatch_due
    from tests.fakes.audience import RecordingEnqueuer

    api.user("ada")
    now = datetime.now(UTC)
    body = {"to": {"user_ids": ["ada"]}, "content": {"text": "Hi"}, "at": (now - timedelta(minutes=1)).isoformat()}
    first = _send_with_key(api, body)
    enqueuer = RecordingEnqueuer()
    if not enqueued:
        enqueuer.failing[response_json(first)["notification_id"]] = UpstreamError("the expansion queue timed out")
    dispatch_due(AudienceRepository(database), enqueuer, now, 10, timedelta(minutes=5))

    same = _send_with_key(api, body)
    other = _send_with_key(api, {**body, "at": (now + timedelta(days=7)).isoformat()})

    assert (first["statusCode"], same["statusCode"], other["statusCode"]) == (202, 202, 409)
    assert response_json(same)["schedule_id"] == response_json(first)["schedule_id"]


@pytest.mark.parametrize(
    ("send", "field"),
    [
        ({"content": {"text": "Hi", "push": {"GCM": {"data": {"k": "\ud800"}}}}}, "content.push.GCM.data.k"),
        ({"content": {"text": "Hi\uffff"}, "at": "2099-01-01T09:00:00+01:00"}, "content.text"),
        ({"content": {"text": "Hi\x00"}}, "content.text"),
        ({"content": {"text": "Hi", "subject": "\x00"}, "at": "2099-01-01T09:00:00+01:00"}, "content.subject"),
    ],
)
def test_sends_content_a_message_cannot_carry_answers_422_naming_the_field(
    api: Api, db: Any, send: dict[str, Any], field: str
) -> None:
    response = api.call("POST", "/v1/sends", body={"to": {"user_ids": ["ada"]}, **send})

    assert response["statusCode"] == 422, response["body"]
    assert response_json(response)["message"].startswith(f"{field}: ")
    with db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sends")
        assert cursor.fetchone() == (0,)


def test_sends_location_of_a_scheduled_send_is_its_schedule(api: Api) -> None:
    api.user("ada")
    body = {"to": {"user_ids": ["ada"]}, "content": {"text": "Hi"}, "at": "2099-01-01T09:00:00Z"}

    later = api.call("POST", "/v1/sends", None, body)

    assert later["statusCode"] == 202
    assert response_header(later, "Location") == f"/v1/schedules/{response_json(later)['schedule_id']}"
    shown = api.call("GET", "/v1/schedules/{schedule_id}", {"schedule_id": response_json(later)["schedule_id"]})
    assert shown["statusCode"] == 200


def test_sends_location_of_a_send_now_answers_its_status_before_any_worker_ran(api: Api) -> None:
    from api.handler import handler as api_handler

    api.user("ada")
    body = {"to": {"user_ids": ["ada"]}, "content": {"text": "Hi"}, "channels": ["browser"]}

    accepted = api.call("POST", "/v1/sends", None, body)
    notification_id = response_json(accepted)["notification_id"]
    # The job waits on the expansion queue (or fails for now, the database down, and ends in its DLQ): the status was
    # a 404 "does not exist" until a worker wrote the record.
    status = api_handler(
        api_event("GET", "/v1/notifications/{notification_id}", {"notification_id": notification_id}), api.context
    )

    assert response_header(accepted, "Location") == f"/v1/notifications/{notification_id}"
    assert status["statusCode"] == 200, status["body"]
    shown = response_json(status)
    assert (shown["source"], shown["channel"], shown["topic"], shown["deliveries"]) == ("send", "audience", "send", [])
