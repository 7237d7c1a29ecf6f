"""Unit tests of the push channel (core/channels/push.py) with a fake SNS client: rendering, pacing, sending."""

from __future__ import annotations

import json

import pytest

from core.channels import ChannelResources, Limit, destination_key
from core.channels.push import PushChannel, fcm_payload, platform_payloads, push_payload
from core.errors import DeliveryError, EndpointDisabledError, PermanentDeliveryError, RetryableDeliveryError
from core.models import Content
from tests.fakes.delivery import FakeSendingClient

ENDPOINT = "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/1234"
TOPIC = "arn:aws:sns:us-east-1:123456789012:news"


def test_push_text_becomes_payload_per_platform() -> None:
    payload = json.loads(push_payload(Content(text="Shipped")))

    assert {key: json.loads(value) if key != "default" else value for key, value in payload.items()} == {
        "default": "Shipped",
        "APNS": {"aps": {"alert": "Shipped"}},
        "APNS_SANDBOX": {"aps": {"alert": "Shipped"}},
        "GCM": {"fcmV1Message": {"message": {"notification": {"body": "Shipped"}}}},
    }


def test_push_platform_object_is_encoded_per_platform() -> None:
    data = {"default": "Shipped", "APNS": {"aps": {"alert": "A"}}, "FCM": {"notification": {"title": "F"}}}

    payload = json.loads(push_payload(Content(data=data)))

    assert payload == {
        "default": "Shipped",
        "APNS": '{"aps":{"alert":"A"}}',
        "GCM": '{"notification":{"title":"F"}}',
    }


def test_push_platform_object_without_default_gets_one() -> None:
    payload = json.loads(push_payload(Content(data={"GCM": {"notification": {"body": "x"}}})))

    assert payload["default"] == '{"notification":{"body":"x"}}'


def test_push_publishes_to_endpoint(resources: ChannelResources, client: FakeSendingClient) -> None:
    PushChannel(resources).send(
        Content(text="hi"), {"endpoint_arn": ENDPOINT}, None, notification_id="n-1", delivery_key="k-1"
    )

    [call] = client.calls
    assert (call["TargetArn"], call["MessageStructure"]) == (ENDPOINT, "json")


def test_push_publishes_to_topic(resources: ChannelResources, client: FakeSendingClient) -> None:
    PushChannel(resources).send(
        Content(text="hi"), {"topic_arn": TOPIC}, None, notification_id="n-1", delivery_key="k-1"
    )

    assert client.calls[0]["TopicArn"] == TOPIC


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("EndpointDisabled", 400, EndpointDisabledError),
        ("InvalidParameter", 400, PermanentDeliveryError),
        ("NotFound", 404, PermanentDeliveryError),
        ("Throttled", 429, RetryableDeliveryError),
        ("InternalError", 500, RetryableDeliveryError),
        ("KMSThrottlingException", 400, RetryableDeliveryError),
        ("KMSThrottling", 400, RetryableDeliveryError),
    ],
)
def test_push_sns_error_is_classified(code: str, status: int, kind: type[DeliveryError]) -> None:
    client = FakeSendingClient(code, status)
    resources = ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base="")  # type: ignore[arg-type]

    with pytest.raises(DeliveryError) as raised:
        PushChannel(resources).send(
            Content(text="hi"), {"endpoint_arn": ENDPOINT}, None, notification_id="n-1", delivery_key="k-1"
        )

    assert type(raised.value) is kind


@pytest.mark.parametrize("code", ["KMSThrottling", "KMSThrottlingException"])
def test_push_sns_kms_throttling_is_rate_limited(code: str) -> None:
    client = FakeSendingClient(code, 400)
    resources = ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base="")  # type: ignore[arg-type]

    with pytest.raises(RetryableDeliveryError) as raised:
        PushChannel(resources).send(
            Content(text="hi"), {"endpoint_arn": ENDPOINT}, None, notification_id="n-1", delivery_key="k-1"
        )

    assert raised.value.rate_limited is True


def test_push_target_with_both_arns_is_permanent(resources: ChannelResources) -> None:
    with pytest.raises(PermanentDeliveryError):
        PushChannel(resources).send(
            Content(text="hi"),
            {"endpoint_arn": ENDPOINT, "topic_arn": TOPIC},
            None,
            notification_id="n-1",
            delivery_key="k-1",
        )


def test_push_render_string_model_into_text_unescaped() -> None:
    assert PushChannel.render("Hi $v", {"v": "<b>&"}) == Content(text="Hi <b>&")


def test_push_render_platform_object_into_data() -> None:
    content = PushChannel.render({"default": "$v", "APNS": {"aps": {"alert": "$v"}}}, {"v": "Shipped"})

    assert content == Content(data={"default": "Shipped", "APNS": {"aps": {"alert": "Shipped"}}})


def test_push_render_platform_object_one_variable_keeps_its_type_in_the_payload() -> None:
    model = {"default": "$text", "APNS": {"aps": {"alert": "$text", "badge": "$count"}}}

    payload = json.loads(push_payload(PushChannel.render(model, {"text": "Shipped", "count": 3})))

    assert json.loads(payload["APNS"]) == {"aps": {"alert": "Shipped", "badge": 3}}


def test_push_rate_limits_without_integration_rate_none(resources: ChannelResources) -> None:
    assert PushChannel(resources).rate_limits({"endpoint_arn": ENDPOINT}, None, None) == []


def test_push_rate_limits_integration_rate_limits_its_endpoint(resources: ChannelResources) -> None:
    limits = PushChannel(resources).rate_limits({"topic_arn": TOPIC}, None, 2.0)

    assert limits == [Limit(destination_key("push", TOPIC), 2.0)]


def test_push_rate_limits_invalid_target_is_permanent(resources: ChannelResources) -> None:
    with pytest.raises(PermanentDeliveryError):
        PushChannel(resources).rate_limits({}, None, None)


def test_push_endpoint_disabled_names_the_endpoint() -> None:
    client = FakeSendingClient("EndpointDisabled", 400)
    resources = ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base="")  # type: ignore[arg-type]

    with pytest.raises(EndpointDisabledError) as raised:
        PushChannel(resources).send(
            Content(text="hi"), {"endpoint_arn": ENDPOINT}, None, notification_id="n-1", delivery_key="k-1"
        )

    assert (raised.value.endpoint_arn, raised.value.reason) == (ENDPOINT, "push: EndpointDisabled")


def test_push_endpoint_disabled_says_when_sns_was_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    # A device registered again after that time keeps its enabled endpoint: the time is the ask's, not a later one.
    client = FakeSendingClient("EndpointDisabled", 400)
    resources = ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base="")  # type: ignore[arg-type]
    clock = iter([1_800_000_000.0, 1_800_000_009.0])
    monkeypatch.setattr("core.channels.push.time.time", lambda: next(clock))

    with pytest.raises(EndpointDisabledError) as raised:
        PushChannel(resources).send(
            Content(text="hi"), {"endpoint_arn": ENDPOINT}, None, notification_id="n-1", delivery_key="k-1"
        )

    assert raised.value.observed_at == 1_800_000_000.0


def test_push_endpoint_disabled_on_a_topic_is_only_permanent() -> None:
    client = FakeSendingClient("EndpointDisabled", 400)
    resources = ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base="")  # type: ignore[arg-type]

    with pytest.raises(PermanentDeliveryError) as raised:
        PushChannel(resources).send(
            Content(text="hi"), {"topic_arn": TOPIC}, None, notification_id="n-1", delivery_key="k-1"
        )

    assert type(raised.value) is PermanentDeliveryError


def test_push_text_with_subject_titles_every_platform() -> None:
    payload = json.loads(push_payload(Content(text="Body", subject="Title")))

    assert json.loads(payload["APNS"]) == {"aps": {"alert": {"title": "Title", "body": "Body"}}}
    assert json.loads(payload["GCM"]) == {
        "fcmV1Message": {"message": {"notification": {"title": "Title", "body": "Body"}}}
    }


def test_push_platform_payloads_object_reused_is_encoded_once_each_time() -> None:
    data = platform_payloads("Hi", "T")

    first, second = push_payload(Content(data=data)), push_payload(Content(data=data))

    assert first == second
    assert json.loads(json.loads(first)["GCM"])["fcmV1Message"]["message"]["notification"] == {
        "title": "T",
        "body": "Hi",
    }
    assert data["GCM"] == fcm_payload("Hi", "T")


def test_push_platform_payloads_apns_override_serves_the_sandbox_too() -> None:
    data = platform_payloads("Hi", overrides={"APNS": {"aps": {"badge": 1}}, "FCM": {"fcmV1Message": {"message": {}}}})

    assert data["APNS_SANDBOX"] == {"aps": {"badge": 1}}
    assert data["GCM"] == {"fcmV1Message": {"message": {}}}


def test_push_fcm_data_values_sent_as_strings() -> None:
    assert fcm_payload("Hi", data={"n": 3, "s": "x"})["fcmV1Message"]["message"]["data"] == {"n": "3", "s": "x"}
