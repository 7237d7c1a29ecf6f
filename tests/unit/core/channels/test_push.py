"""Unit tests of the push channel (core/channels/push.py) with a fake SNS client: rendering, pacing, sending."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from core.channels import ChannelResources, Limit, destination_key
from core.channels.push import (
    PushChannel,
    PushIntegration,
    _endpoint_gone,
    apns_payload,
    fcm_payload,
    platform_payloads,
    push_payload,
)
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
        ("NotFound", 404, EndpointDisabledError),
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


@pytest.mark.parametrize(
    ("code", "message", "gone"),
    [
        ("EndpointDisabled", "Endpoint is disabled", "EndpointDisabled"),
        ("NotFound", "Endpoint does not exist", "NotFound"),
        (
            "InvalidParameter",
            "Invalid parameter: TargetArn Reason: No endpoint found for the target arn specified",
            "NotFound",
        ),
        ("InvalidParameter", "Invalid parameter: Message too long", None),
        ("Throttled", "Rate exceeded", None),
    ],
)
def test_push_endpoint_gone_read_from_the_answer(code: str, message: str, gone: str | None) -> None:
    error = ClientError({"Error": {"Code": code, "Message": message}}, "Publish")

    assert _endpoint_gone(error) == gone


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


# --- platform payloads written as JSON strings (AWS's message-structure form) ----------------------------------------

AWS_FORM = {
    "default": "$msg",
    "APNS": '{"aps":{"alert":"$msg"}}',
    "GCM": '{"fcmV1Message":{"message":{"notification":{"body":"$msg"}}}}',
}
HOSTILE = ['He said "hi"', "line 1\nline 2", 'x","badge":99,"sound":"evil.caf', "back\\slash"]


def _platforms(message: str) -> dict[str, Any]:
    return {key: value if key == "default" else json.loads(value) for key, value in json.loads(message).items()}


@pytest.mark.parametrize("msg", HOSTILE)
def test_push_render_json_string_platform_value_keeps_inserted_text_as_text(msg: str) -> None:
    payload = _platforms(push_payload(PushChannel.render(AWS_FORM, {"msg": msg})))

    assert payload == {
        "default": msg,
        "APNS": {"aps": {"alert": msg}},
        "GCM": {"fcmV1Message": {"message": {"notification": {"body": msg}}}},
    }


def test_push_integration_json_string_platform_value_is_saved_as_its_object() -> None:
    model = {**AWS_FORM, "FCM": '{"notification":{"title":"$msg"}}'}

    saved = _integration(model).model

    assert saved == {
        "default": "$msg",
        "APNS": {"aps": {"alert": "$msg"}},
        "GCM": {"fcmV1Message": {"message": {"notification": {"body": "$msg"}}}},
        "FCM": {"notification": {"title": "$msg"}},
    }


@pytest.mark.parametrize(
    "value", ['{"aps":{"badge":$count}}', '{"aps":{"alert":"$msg"}', "plain $msg", '["aps"]', '"text"']
)
def test_push_integration_platform_value_not_a_json_object_is_refused_naming_it(value: str) -> None:
    with pytest.raises(ValidationError) as raised:
        _integration({"default": "$msg", "APNS_SANDBOX": value})

    message = str(raised.value)
    assert "APNS_SANDBOX" in message
    assert "JSON object" in message


@pytest.mark.parametrize("model", [{"APNS": "$apns", "GCM": "${gcm}"}, {"default": "Hi $msg", "email": "Dear $msg"}])
def test_push_integration_placeholder_and_text_values_are_kept_as_written(model: dict[str, Any]) -> None:
    assert _integration(model).model == model


def test_push_render_stored_json_string_platform_value_is_rendered_as_its_object() -> None:
    # A model saved before platform strings were parsed at save is stored as written: it must not be rendered raw.
    content = PushChannel.render({"APNS": '{"aps":{"alert":"$msg","badge":"$n"}}'}, {"msg": 'a"b', "n": 2})

    assert content == Content(data={"APNS": {"aps": {"alert": 'a"b', "badge": 2}}})


@given(st.text(st.characters(exclude_categories=["Cs"])))
def test_push_render_json_string_platform_value_any_text_arrives_as_itself(msg: str) -> None:
    payload = _platforms(push_payload(PushChannel.render(AWS_FORM, {"msg": msg})))

    assert payload["APNS"] == {"aps": {"alert": msg}}
    assert payload["GCM"] == {"fcmV1Message": {"message": {"notification": {"body": msg}}}}


def test_push_payload_platform_string_not_a_json_object_is_permanent_naming_it() -> None:
    with pytest.raises(PermanentDeliveryError, match="APNS"):
        push_payload(Content(data={"default": "x", "APNS": '{"aps":{"alert":"x"}'}))


@pytest.mark.parametrize(
    ("value", "held"), [(5, "a number"), ([1, 2], "an array"), (True, "a boolean"), (None, "null"), (1.5, "a number")]
)
def test_push_payload_platform_value_no_object_is_permanent_naming_what_it_holds(value: Any, held: str) -> None:
    # Only a string was checked: a metadata value of 5 standing for the whole payload was published as "5".
    with pytest.raises(PermanentDeliveryError, match=f"the APNS payload is not a JSON object \\(it holds {held}\\)"):
        push_payload(Content(data={"APNS": value}))


def test_push_payload_platform_string_that_is_json_is_sent_as_its_object() -> None:
    payload = _platforms(push_payload(Content(data={"GCM": '{ "notification": {"body": "x"} }'})))

    assert payload["GCM"] == {"notification": {"body": "x"}}


def _integration(model: Any) -> PushIntegration:
    return PushIntegration.model_validate(
        {"name": "phone", "type": "push", "target": {"endpoint_arn": ENDPOINT}, "model": model}
    )


# --- the platforms' payload limits ---------------------------------------------------------------------------------

LIMIT = 4096


def _sizes(message: str) -> dict[str, int]:
    return {key: len(value.encode()) for key, value in json.loads(message).items() if key != "default"}


def test_push_text_over_the_platform_limits_is_cut_with_an_ellipsis_to_fit() -> None:
    text = "é" * 4096

    message = push_payload(Content(text=text))

    assert max(_sizes(message).values()) <= LIMIT
    payload = _platforms(message)
    alert = payload["APNS"]["aps"]["alert"]
    body = payload["GCM"]["fcmV1Message"]["message"]["notification"]["body"]
    for cut in (alert, body):
        assert cut.endswith("…")
        assert text.startswith(cut[:-1])
        assert len(cut) > 2000  # the longest cut that fits: é takes 2 bytes
    assert payload["default"] == text  # the text SNS gives other protocols is not a platform payload


def test_push_text_cut_is_the_longest_that_fits() -> None:
    text = "a" * 5000

    alert = apns_payload(text)["aps"]["alert"]

    kept = len(alert) - 1
    assert _json_bytes({"aps": {"alert": alert}}) <= LIMIT
    assert _json_bytes({"aps": {"alert": text[: kept + 1] + "…"}}) > LIMIT


def _json_bytes(payload: dict[str, Any]) -> int:
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())


def test_push_escaped_characters_are_counted_as_sent() -> None:
    # A quote is two bytes in the JSON SNS gets, a control character six.
    sizes = _sizes(push_payload(Content(text='"\x01' * 2000)))

    assert max(sizes.values()) <= LIMIT


def test_push_text_that_fits_is_sent_whole() -> None:
    text = "a" * 4000

    payload = _platforms(push_payload(Content(text=text, subject="T")))

    assert payload["APNS"]["aps"]["alert"] == {"title": "T", "body": text}


def test_push_long_send_text_and_subject_fit_every_platform_keeping_the_title() -> None:
    text, subject = "é" * 4096, "T" * 998

    message = push_payload(Content(data=platform_payloads(text, subject)))

    assert max(_sizes(message).values()) <= LIMIT
    assert _platforms(message)["APNS"]["aps"]["alert"]["title"] == subject


def test_push_title_taking_over_half_the_payload_is_cut_too() -> None:
    title = "😀" * 998  # 3992 bytes

    payload = _platforms(push_payload(Content(text="b" * 4096, subject=title)))

    alert = payload["APNS"]["aps"]["alert"]
    assert alert["title"].endswith("…")
    assert alert["body"].endswith("…")
    assert len(alert["body"]) > 1000


def test_push_custom_platform_payload_over_its_limit_is_refused_naming_it() -> None:
    data = {"default": "x", "GCM": {"fcmV1Message": {"message": {"data": {"blob": "x" * 5000}}}}}

    with pytest.raises(PermanentDeliveryError, match=r"GCM payload takes \d+ bytes.*4096"):
        push_payload(Content(data=data))


def test_push_send_of_an_oversized_custom_payload_publishes_nothing(
    resources: ChannelResources, client: FakeSendingClient
) -> None:
    content = Content(data={"APNS": {"aps": {"alert": "x" * 5000}}})

    with pytest.raises(PermanentDeliveryError, match="APNS"):
        PushChannel(resources).send(content, {"endpoint_arn": ENDPOINT}, None, notification_id="n", delivery_key="k")

    assert client.calls == []


@settings(max_examples=50)
@given(
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=5000),
    st.none() | st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=1200),
)
def test_push_any_text_and_title_fit_every_platform_as_a_start_of_themselves(text: str, title: str | None) -> None:
    payload = _platforms(message := push_payload(Content(text=text, subject=title)))

    assert max(_sizes(message).values()) <= LIMIT
    alert = payload["APNS"]["aps"]["alert"]
    cuts = [(text, alert["body"]), (title, alert["title"])] if title else [(text, alert)]
    for whole, cut in cuts:
        assert cut == whole or (cut.endswith("…") and whole.startswith(cut[:-1]))


def test_push_text_payload_for_other_protocols_is_not_held_to_a_platform_limit() -> None:
    message = push_payload(Content(data={"default": "d" * 10_000, "email": "e" * 10_000}))

    assert len(json.loads(message)["email"]) == 10_000
