"""Integration tests of the push channel (core/channels/push.py) on moto: a topic saved through the admin API,
published through the producer and delivered by the consumer, read back from what moto's SNS recorded."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.sns.models import sns_backends

from core import clients
from core.channels.push import platform_payloads
from core.models import DeliveryStatus
from tests.fakes.lambda_context import FakeLambdaContext
from tests.integration.api.conftest import AdminApi
from tests.integration.consumer.conftest import consumer_aws
from tests.integration.consumer.flow import consume_once, delivery_message, enqueue, entry
from tests.support.aws import ACCOUNT, REGION, AwsResources
from tests.support.aws import client as aws_client
from tests.support.events import publish_event, response_header, response_json

__all__ = ["consumer_aws"]

# A topic push model as AWS's examples write one: each platform's payload a JSON string.
AWS_FORM = {
    "default": "$msg",
    "APNS": '{"aps":{"alert":"$msg"}}',
    "GCM": '{"fcmV1Message":{"message":{"notification":{"body":"$msg"}}}}',
}
# What APNs and FCM take: 4096 bytes of payload each.
PLATFORM_LIMIT = 4096


def _endpoint(platform: str = "APNS") -> str:
    sns = aws_client("sns")
    app = sns.create_platform_application(Name="app", Platform=platform, Attributes={"PlatformCredential": "k"})
    arn: str = sns.create_platform_endpoint(PlatformApplicationArn=app["PlatformApplicationArn"], Token="t1")[
        "EndpointArn"
    ]
    return arn


def _published(arn: str) -> list[dict[str, Any]]:
    """The SNS message structures moto recorded for an endpoint, each platform's payload parsed."""
    return [
        {key: value if key == "default" else json.loads(value) for key, value in json.loads(message).items()}
        for message in sns_backends[ACCOUNT][REGION].platform_endpoints[arn].messages.values()
    ]


def _topic(model: Any, arn: str) -> dict[str, Any]:
    return {"integrations": [{"name": "phone", "type": "push", "model": model, "target": {"endpoint_arn": arn}}]}


@pytest.mark.parametrize("msg", ['He said "hi"', "line 1\nline 2", 'x","badge":99,"sound":"evil.caf'])
def test_push_json_string_model_metadata_reaches_sns_as_text(consumer_aws: AwsResources, msg: str) -> None:
    from producer.handler import handler as publish

    arn = _endpoint()
    saved = AdminApi(FakeLambdaContext()).put_topic(_topic(AWS_FORM, arn))
    assert saved["statusCode"] == 201, saved
    published = publish(
        publish_event("orders", "shipped", {"metadata": {"msg": msg}}, response_json(saved)["topic_hash"]),
        FakeLambdaContext(),
    )
    assert published["statusCode"] == 200, published

    consume_once(consumer_aws)

    row = clients.get_ledger().get_entry(response_header(published, "X-Notification-Id") or "", "phone")
    assert row is not None
    assert row.status is DeliveryStatus.DELIVERED
    assert _published(arn) == [
        {
            "default": msg,
            "APNS": {"aps": {"alert": msg}},
            "GCM": {"fcmV1Message": {"message": {"notification": {"body": msg}}}},
        }
    ]


def test_push_json_string_model_is_stored_as_its_objects(consumer_aws: AwsResources) -> None:
    admin = AdminApi(FakeLambdaContext())
    admin.put_topic(_topic(AWS_FORM, _endpoint()))

    shown = response_json(
        admin.call("GET", "/v1/channels/{channel}/topics/{topic}", {"channel": "orders", "topic": "shipped"})
    )

    assert shown["integrations"][0]["model"]["APNS"] == {"aps": {"alert": "$msg"}}


@pytest.mark.parametrize("value", ['{"aps":{"badge":$count}}', '{"aps":{"alert":"$msg"}'])
def test_push_platform_value_not_json_refused_at_save_with_422(consumer_aws: AwsResources, value: str) -> None:
    response = AdminApi(FakeLambdaContext()).put_topic(_topic({"default": "$msg", "APNS": value}, _endpoint()))

    assert response["statusCode"] == 422, response
    assert response_json(response)["message"].startswith("integrations[0].model.APNS: must be a JSON object")


def test_push_long_send_payloads_reach_sns_cut_to_the_platform_limits(consumer_aws: AwsResources) -> None:
    text, subject = "é" * 4096, "T" * 998  # the longest a send takes (core/audience/sends.py)
    arn = _endpoint()
    # The content the expansion worker builds for a push (core/audience/expansion.py).
    message = delivery_message("push", {"text": text, "data": platform_payloads(text, subject)}, {"endpoint_arn": arn})
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    [raw] = sns_backends[ACCOUNT][REGION].platform_endpoints[arn].messages.values()
    sizes = {key: len(value.encode()) for key, value in json.loads(raw).items() if key != "default"}
    assert max(sizes.values()) <= PLATFORM_LIMIT, sizes
    [sent] = _published(arn)
    assert sent["APNS"]["aps"]["alert"]["title"] == subject
    assert sent["APNS"]["aps"]["alert"]["body"].endswith("…")
    assert entry(message).status is DeliveryStatus.DELIVERED


def test_push_custom_payload_over_the_limit_fails_naming_it_and_publishes_nothing(consumer_aws: AwsResources) -> None:
    arn = _endpoint("GCM")
    data = {"default": "hi", "GCM": {"fcmV1Message": {"message": {"data": {"blob": "x" * 5000}}}}}
    message = delivery_message("push", {"text": "hi", "data": data}, {"endpoint_arn": arn})
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    assert _published(arn) == []
    row = entry(message)
    assert row.status is DeliveryStatus.FAILED
    assert (row.last_error or "").startswith("push: the GCM payload takes ")
