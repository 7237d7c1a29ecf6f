"""Integration tests of the admin topic routes (api/handler.py → api/topics.py) on moto."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from unittest.mock import patch

import pytest
from botocore.exceptions import ClientError

from api.topics import MAX_NEW_CREDENTIALS, put_topic
from core import clients
from core.channels.registry import TopicRequest
from core.errors import ConflictError, UpstreamError
from core.models import DeliveryStatus
from core.secrets import SecretStore
from core.topics import TopicRegistry, hash_topic_secret
from tests.fakes.lambda_context import FakeLambdaContext
from tests.integration.api.conftest import TOPIC, AdminApi
from tests.integration.consumer.flow import consume_once
from tests.support.aws import ADMIN_TOKEN, NAMES, AwsResources
from tests.support.events import (
    TOPIC_SECRETS,
    admin_event,
    publish_event,
    response_header,
    response_json,
    topic_body,
)
from tests.support.receivers import running_receiver

PREFIX = "/notify/test/integrations/orders/shipped"
PATH = {"channel": "orders", "topic": "shipped"}


def _parameters(aws: AwsResources) -> dict[str, dict[str, Any]]:
    pages = aws.ssm.get_paginator("describe_parameters").paginate(
        ParameterFilters=[{"Key": "Path", "Option": "Recursive", "Values": ["/notify/test/integrations"]}]
    )
    return {parameter["Name"]: parameter for page in pages for parameter in page["Parameters"]}


def _topic_item(aws: AwsResources) -> dict[str, Any] | None:
    key = {"channel": {"S": "orders"}, "topic": {"S": "shipped"}}
    item: dict[str, Any] | None = aws.dynamodb.get_item(TableName=NAMES["TOPICS_TABLE"], Key=key).get("Item")
    return item


def _refs(aws: AwsResources) -> dict[str, str]:
    """Return the topic's integrations' credential references, by integration name."""
    item = _topic_item(aws)
    assert item is not None
    return {
        entry["name"]: entry["credentials_ref"]
        for entry in json.loads(item["integrations"]["S"])
        if entry.get("credentials_ref")
    }


def _body_without(*names: str) -> dict[str, Any]:
    body = topic_body()
    body["integrations"] = [item for item in body["integrations"] if item["name"] not in names]
    return body


def _error(response: dict[str, Any]) -> str:
    body = response_json(response)
    assert set(body) == {"message"}
    message: str = body["message"]
    return message


# --- create, replace, read, list --------------------------------------------------------------------------------


def test_put_new_topic_returns_201_with_topic_hash(admin: AdminApi) -> None:
    response = admin.put_topic(topic_body())

    body = response_json(response)
    assert response["statusCode"] == 201
    assert len(body["topic_hash"]) >= 40
    assert [item["name"] for item in body["integrations"]] == [
        "ops-email",
        "team-slack",
        "ops-telegram",
        "erp-webhook",
        "buyer-push",
    ]


def test_put_new_topic_stores_only_the_sha256_of_the_hash(admin: AdminApi, aws: AwsResources) -> None:
    topic_hash = response_json(admin.put_topic(topic_body()))["topic_hash"]

    item = _topic_item(aws)

    assert item is not None
    assert item["hash_sha256"]["S"] == hash_topic_secret(topic_hash)
    assert topic_hash not in json.dumps(item)


def test_put_credentials_are_masked_in_the_response(admin: AdminApi) -> None:
    response = admin.put_topic(topic_body())

    credentials = {item["name"]: item.get("credentials") for item in response_json(response)["integrations"]}
    assert credentials == {
        "ops-email": None,
        "team-slack": {"webhook_url": "********"},
        "ops-telegram": {"bot_token": "********"},
        "erp-webhook": {"signing_secret": "********"},
        "buyer-push": None,
    }
    assert not any(secret in response["body"] for secret in TOPIC_SECRETS)
    assert "/notify/test" not in response["body"]


def test_put_credentials_stored_as_secure_string_parameters(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(topic_body())

    refs = _refs(aws)
    parameters = _parameters(aws)
    values = {
        name: json.loads(aws.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
        for name in parameters
    }
    assert {name: parameter["Type"] for name, parameter in parameters.items()} == dict.fromkeys(
        refs.values(), "SecureString"
    )
    assert values == {
        refs["team-slack"]: {"webhook_url": TOPIC_SECRETS[0]},
        refs["ops-telegram"]: {"bot_token": TOPIC_SECRETS[1]},
        refs["erp-webhook"]: {"signing_secret": TOPIC_SECRETS[2]},
    }


def test_put_credentials_named_under_their_integrations_path(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(topic_body())

    # The functions' SSM permissions name the parameters by the prefix /notify/<stage>/integrations/.
    assert all(ref.startswith(f"{PREFIX}/{name}/") for name, ref in _refs(aws).items())


def test_put_credentials_never_in_the_dynamodb_item(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(topic_body())

    item = json.dumps(_topic_item(aws))

    assert not any(secret in item for secret in TOPIC_SECRETS)
    assert set(_refs(aws).values()) == set(_parameters(aws))


def test_put_existing_topic_returns_200_without_a_hash(admin: AdminApi) -> None:
    admin.put_topic(topic_body())

    response = admin.put_topic(_body_without("buyer-push"))

    assert response["statusCode"] == 200
    assert "topic_hash" not in response_json(response)
    assert [item["name"] for item in response_json(response)["integrations"]] == [
        "ops-email",
        "team-slack",
        "ops-telegram",
        "erp-webhook",
    ]


def test_put_existing_topic_keeps_the_hash(admin: AdminApi, aws: AwsResources) -> None:
    topic_hash = response_json(admin.put_topic(topic_body()))["topic_hash"]

    admin.put_topic(_body_without("buyer-push"))

    item = _topic_item(aws)
    assert item is not None
    assert item["hash_sha256"]["S"] == hash_topic_secret(topic_hash)


def test_put_replace_keeps_credentials_of_removed_integrations_for_queued_deliveries(
    admin: AdminApi, aws: AwsResources
) -> None:
    admin.put_topic(topic_body())
    refs = _refs(aws)

    admin.put_topic(_body_without("team-slack", "erp-webhook"))

    assert {refs["team-slack"], refs["erp-webhook"]} <= set(_parameters(aws))
    assert set(_retired(aws)) == {refs["team-slack"], refs["erp-webhook"]}
    assert _live_credentials(aws, "ops-telegram") == {"bot_token": TOPIC_SECRETS[1]}


def test_put_replace_without_credentials_retires_its_parameter(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(topic_body())
    refs = _refs(aws)
    body = topic_body()
    del body["integrations"][3]["credentials"]

    admin.put_topic(body)

    assert refs["erp-webhook"] in _parameters(aws)
    assert set(_retired(aws)) == {refs["erp-webhook"]}


def test_put_same_credentials_again_keeps_their_parameters(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(topic_body())
    before = _parameter_values(aws)

    admin.put_topic(topic_body())
    admin.put_topic(topic_body())

    # Applying a topic again (a deploy's re-run) writes no credentials and retires none: every queued delivery's
    # reference stays the one the topic uses.
    assert _parameter_values(aws) == before
    assert set(before) == set(_refs(aws).values())
    assert _retired(aws) == {}


def test_put_same_credentials_keeps_parameters_named_by_earlier_versions(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(topic_body())
    # Earlier versions named a topic's first credentials by the integration's path alone.
    legacy = {name: f"{PREFIX}/{name}" for name in _refs(aws)}
    for name, ref in _refs(aws).items():
        value = aws.ssm.get_parameter(Name=ref, WithDecryption=True)["Parameter"]["Value"]
        aws.ssm.put_parameter(Name=legacy[name], Value=value, Type="SecureString")
        aws.ssm.delete_parameter(Name=ref)
    item = _topic_item(aws)
    assert item is not None
    integrations = json.loads(item["integrations"]["S"])
    for entry in integrations:
        if entry["name"] in legacy:
            entry["credentials_ref"] = legacy[entry["name"]]
    aws.dynamodb.put_item(
        TableName=NAMES["TOPICS_TABLE"], Item={**item, "integrations": {"S": json.dumps(integrations)}}
    )

    admin.put_topic(topic_body())

    assert _refs(aws) == legacy
    assert set(_parameters(aws)) == set(legacy.values())


def test_put_replace_switches_the_topic_to_the_new_credentials(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(topic_body())
    body = topic_body()
    body["integrations"][2]["credentials"]["bot_token"] = "654321:rotated"

    admin.put_topic(body)

    assert _live_credentials(aws, "ops-telegram") == {"bot_token": "654321:rotated"}


def test_get_topic_returns_it_masked(admin: AdminApi) -> None:
    created = response_json(admin.put_topic(topic_body()))

    response = admin.call("GET", TOPIC, PATH)

    body = response_json(response)
    assert response["statusCode"] == 200
    assert body == {key: value for key, value in created.items() if key != "topic_hash"}
    assert not any(secret in response["body"] for secret in TOPIC_SECRETS)


def test_put_rate_per_second_is_stored_and_shown(admin: AdminApi, aws: AwsResources) -> None:
    body = topic_body()
    body["integrations"][3]["rate_per_second"] = 2.5

    created = response_json(admin.put_topic(body))

    item = _topic_item(aws)
    assert item is not None
    stored = {entry["name"]: entry["rate_per_second"] for entry in json.loads(item["integrations"]["S"])}
    shown = {entry["name"]: entry.get("rate_per_second") for entry in created["integrations"]}
    assert (
        stored
        == shown
        == {
            "ops-email": None,
            "team-slack": None,
            "ops-telegram": None,
            "erp-webhook": 2.5,
            "buyer-push": None,
        }
    )


def test_get_unknown_topic_returns_404(admin: AdminApi) -> None:
    response = admin.call("GET", TOPIC, {"channel": "orders", "topic": "nope"})

    assert response["statusCode"] == 404
    assert "nope" in _error(response)


def test_list_topics_returns_the_channels_topics_masked(admin: AdminApi) -> None:
    admin.put_topic(topic_body(), topic="shipped")
    admin.put_topic(_body_without("ops-email"), topic="cancelled")
    admin.put_topic(topic_body(), channel="billing", topic="paid")

    response = admin.call("GET", "/v1/channels/{channel}/topics", {"channel": "orders"})

    body = response_json(response)
    assert response["statusCode"] == 200
    assert body["channel"] == "orders"
    assert [topic["topic"] for topic in body["topics"]] == ["cancelled", "shipped"]
    assert not any(secret in response["body"] for secret in TOPIC_SECRETS)


def test_list_topics_of_empty_channel_returns_empty_list(admin: AdminApi) -> None:
    response = admin.call("GET", "/v1/channels/{channel}/topics", {"channel": "orders"})

    assert response["statusCode"] == 200
    assert response_json(response) == {"channel": "orders", "topics": []}


def _list(admin: AdminApi, channel: str, **query: str) -> dict[str, Any]:
    from api.handler import handler

    event = admin_event("GET", "/v1/channels/{channel}/topics", {"channel": channel}, None, ADMIN_TOKEN)
    event["queryStringParameters"] = query or None
    result: dict[str, Any] = handler(event, FakeLambdaContext())
    return result


def test_list_topics_pages_by_limit_and_cursor(admin: AdminApi) -> None:
    for name in ("a", "b", "c"):
        admin.put_topic(_body_without("ops-email"), topic=name)

    first = _list(admin, "orders", limit="2")
    second = _list(admin, "orders", limit="2", cursor=response_json(first)["next"])

    assert [topic["topic"] for topic in response_json(first)["topics"]] == ["a", "b"]
    assert [topic["topic"] for topic in response_json(second)["topics"]] == ["c"]
    assert "next" not in response_json(second)


def test_list_topics_page_stops_at_2_mib_of_json_so_the_answer_fits_lambdas_6_mb(admin: AdminApi) -> None:
    # Every topic in one answer: nine topics of 62,000 emoji each (a legal 248 KB PUT, 744 KB of escaped JSON) made a
    # 6.7 MB body, over Lambda's response limit, so the route failed with a 5xx.
    model = "\U0001f600" * 62_000
    body = {
        "integrations": [{"name": "w", "type": "webhook", "target": {"url": "https://h.example/x"}, "model": model}]
    }
    text = json.dumps(body, ensure_ascii=False)  # 4 bytes an emoji, as a client sends UTF-8
    for index in range(9):
        assert admin.put_topic(text, channel="big", topic=f"t{index}")["statusCode"] == 201

    listed: list[str] = []
    query: dict[str, str] = {}
    while True:
        response = _list(admin, "big", **query)
        assert response["statusCode"] == 200
        assert len(json.dumps(response)) < 6_000_000
        page = response_json(response)
        listed += [topic["topic"] for topic in page["topics"]]
        if "next" not in page:
            break
        query = {"cursor": page["next"]}

    assert listed == [f"t{index}" for index in range(9)]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1" * 4301}, "limit"),  # more digits than Python reads
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "eyJ0IjogImJhZCBuYW1lIn0"}, "cursor"),  # {"t": "bad name"}
    ],
)
def test_list_topics_bad_limit_or_cursor_returns_422_naming_it(
    admin: AdminApi, query: dict[str, str], field: str
) -> None:
    response = _list(admin, "orders", **query)

    assert response["statusCode"] == 422
    assert _error(response).startswith(f"{field}: ")


# --- delete and rotate --------------------------------------------------------------------------------------------


def test_delete_topic_returns_204_and_removes_item_and_parameters(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(topic_body())

    response = admin.call("DELETE", TOPIC, PATH)

    assert response["statusCode"] == 204
    assert not response["body"]
    assert _topic_item(aws) is None
    assert _parameters(aws) == {}


def test_delete_then_put_again_stores_credentials_under_names_the_deleted_topic_never_used(
    admin: AdminApi, aws: AwsResources
) -> None:
    admin.put_topic(topic_body())
    deleted = set(_refs(aws).values())
    admin.call("DELETE", TOPIC, PATH)

    admin.put_topic(_with_slack_url(WINNER_URL))

    # A delivery queued under the deleted topic still names its references: they must find nothing.
    assert not deleted & set(_parameters(aws))


def test_delete_then_put_again_fails_deliveries_queued_before_without_the_new_credentials(
    admin: AdminApi, aws: AwsResources, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from producer.handler import handler as publish

    monkeypatch.setenv("ALLOW_PRIVATE_TARGETS", "true")
    # Failed at once: a delivery younger than this is retried, its credentials maybe not yet visible in SSM.
    monkeypatch.setattr("consumer.delivery.MISSING_CREDENTIALS_GRACE_SECONDS", 0)
    clients.reset()
    with running_receiver() as receiver:
        body = {
            "integrations": [
                {
                    "name": "team-slack",
                    "type": "slack",
                    "model": "order $order_id shipped",
                    "credentials": {"webhook_url": f"{receiver.url}/deleted-topic"},
                }
            ]
        }
        topic_hash = response_json(admin.put_topic(body))["topic_hash"]
        published = publish(
            publish_event("orders", "shipped", {"metadata": {"order_id": "A-1"}}, topic_hash), lambda_context
        )
        notification_id = response_header(published, "X-Notification-Id")
        assert notification_id is not None
        admin.call("DELETE", TOPIC, PATH)
        body["integrations"][0]["credentials"] = {"webhook_url": f"{receiver.url}/recreated-topic"}
        assert admin.put_topic(body)["statusCode"] == 201

        consume_once(aws)

    entry = clients.get_ledger().get_entry(notification_id, "team-slack")
    assert receiver.requests == []
    assert entry is not None
    assert (entry.status, entry.last_error) == (DeliveryStatus.FAILED, "credentials are missing")


def test_delete_unknown_topic_returns_404(admin: AdminApi) -> None:
    response = admin.call("DELETE", TOPIC, PATH)

    assert response["statusCode"] == 404
    assert "shipped" in _error(response)


def test_rotate_hash_returns_a_new_hash_and_stores_its_sha256(admin: AdminApi, aws: AwsResources) -> None:
    old_hash = response_json(admin.put_topic(topic_body()))["topic_hash"]

    response = admin.call("POST", f"{TOPIC}/rotate-hash", PATH)

    new_hash = response_json(response)["topic_hash"]
    item = _topic_item(aws)
    assert response["statusCode"] == 200
    assert new_hash != old_hash
    assert item is not None
    assert item["hash_sha256"]["S"] == hash_topic_secret(new_hash)


def test_rotate_hash_of_unknown_topic_returns_404(admin: AdminApi) -> None:
    response = admin.call("POST", f"{TOPIC}/rotate-hash", PATH)

    assert response["statusCode"] == 404


# --- validation ----------------------------------------------------------------------------------------------------


def _with(index: int, **fields: Any) -> dict[str, Any]:
    body = topic_body()
    body["integrations"][index].update(fields)
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            _with(0, target={"to": ["not-an-address"], "from": "a@b.co"}), "integrations[0].target.to[0]", id="email-to"
        ),
        pytest.param(_with(0, target={"to": [], "from": "a@b.co"}), "integrations[0].target.to", id="email-to-empty"),
        pytest.param(
            _with(0, target={"to": ["a@b.co"], "from": "nobody"}), "integrations[0].target.from", id="email-from"
        ),
        pytest.param(_with(0, model={"subject": "s"}), "integrations[0].model.text", id="email-model-text"),
        pytest.param(
            _with(1, credentials={}), "integrations[1].credentials.webhook_url", id="slack-webhook-url-missing"
        ),
        pytest.param(
            _with(1, credentials={"webhook_url": "ftp://x"}),
            "integrations[1].credentials.webhook_url",
            id="slack-url-scheme",
        ),
        pytest.param(_with(1, model=""), "integrations[1].model", id="slack-empty-model"),
        pytest.param(_with(2, target={}), "integrations[2].target.chat_id", id="telegram-chat-id"),
        pytest.param(
            _with(2, credentials={"bot_token": ""}), "integrations[2].credentials.bot_token", id="telegram-token"
        ),
        pytest.param(_with(3, target={"url": "not a url"}), "integrations[3].target.url", id="webhook-url"),
        pytest.param(
            _with(3, credentials={"signing_secret": "short"}),
            "integrations[3].credentials.signing_secret",
            id="webhook-secret-too-short",
        ),
        pytest.param(_with(4, target={}), "integrations[4].target", id="push-neither-arn"),
        pytest.param(
            _with(4, target={"endpoint_arn": "arn:x"}), "integrations[4].target.endpoint_arn", id="push-bad-arn"
        ),
        pytest.param(
            _with(4, target={"topic_arn": "arn:aws:sns:us-east-1:123456789012:other-alerts"}),
            "integrations[4].target.topic_arn",
            id="push-topic-the-deliver-role-may-not-publish-to",
        ),
        pytest.param(
            _with(4, target={"topic_arn": "arn:aws:sns:eu-west-1:123456789012:notify-test-push-alerts"}),
            "integrations[4].target.topic_arn",
            id="push-topic-of-another-region",
        ),
        pytest.param(
            _with(4, target={"topic_arn": "arn:aws:sns:us-east-1:999999999999:notify-test-push-alerts"}),
            "integrations[4].target.topic_arn",
            id="push-topic-of-another-account",
        ),
        pytest.param(
            _with(4, target={"endpoint_arn": "arn:aws:sns:eu-west-1:123456789012:endpoint/GCM/app/0b9355f1-0019"}),
            "integrations[4].target.endpoint_arn",
            id="push-endpoint-of-another-region",
        ),
        pytest.param(
            _with(4, target={"endpoint_arn": "arn:aws:sns:us-east-1:999999999999:endpoint/GCM/app/0b9355f1-0019"}),
            "integrations[4].target.endpoint_arn",
            id="push-endpoint-of-another-account",
        ),
        pytest.param(
            _with(4, target={"endpoint_arn": "arn:aws:sns:us-east-1:123456789012:notify-test-alarms"}),
            "integrations[4].target.endpoint_arn",
            id="push-endpoint-arn-naming-a-topic",
        ),
        pytest.param(
            _with(4, target={"topic_arn": "arn:aws-cn:sns:us-east-1:123456789012:notify-test-push-alerts"}),
            "integrations[4].target.topic_arn",
            id="push-topic-of-another-partition",
        ),
        pytest.param(
            _with(4, target={"topic_arn": "arn:aws:sns:us-east-1:123456789012:notify-test-push-alerts:6b0e71bd-1e0f"}),
            "integrations[4].target.topic_arn",
            id="push-topic-arn-naming-a-subscription",
        ),
        pytest.param(
            _with(4, target={"topic_arn": "arn:aws:sns:us-east-1:123456789012:notify-test-push-alerts.fifo"}),
            "integrations[4].target.topic_arn",
            id="push-fifo-topic",
        ),
        pytest.param(_with(1, type="fax"), "integrations[1].type", id="unknown-type"),
        pytest.param(_with(3, rate_per_second=0), "integrations[3].rate_per_second", id="rate-zero"),
        pytest.param(_with(2, rate_per_second=-1), "integrations[2].rate_per_second", id="rate-negative"),
        pytest.param(_with(0, name="bad name!"), "integrations[0].name", id="integration-name"),
        pytest.param(_with(0, colour="red"), "integrations[0].colour", id="unknown-field"),
        pytest.param({"integrations": []}, "integrations", id="no-integrations"),
        pytest.param({"integrations": [topic_body()["integrations"][1]] * 2}, "integrations", id="duplicate-names"),
    ],
)
def test_put_invalid_integration_returns_422_naming_the_field(admin: AdminApi, body: Any, field: str) -> None:
    response = admin.put_topic(body)

    assert response["statusCode"] == 422
    assert _error(response).startswith(f"{field}: ")


def test_put_duplicate_names_message_names_the_duplicate(admin: AdminApi) -> None:
    response = admin.put_topic({"integrations": [topic_body()["integrations"][1]] * 2})

    assert "'team-slack'" in _error(response)


@pytest.mark.parametrize(
    ("model", "field"),
    [
        pytest.param("costs $ 5", "integrations[1].model", id="lone-dollar"),
        pytest.param("ends with $", "integrations[1].model", id="trailing-dollar"),
        pytest.param("${unclosed", "integrations[1].model", id="unclosed-brace"),
    ],
)
def test_put_template_with_invalid_placeholder_returns_422(admin: AdminApi, model: str, field: str) -> None:
    response = admin.put_topic(_with(1, model=model))

    assert response["statusCode"] == 422
    assert _error(response).startswith(f"{field}: has an invalid placeholder")


def test_put_nested_template_with_lone_dollar_names_its_path(admin: AdminApi) -> None:
    response = admin.put_topic(_with(0, model={"subject": "ok", "text": "pay $ now"}))

    assert response["statusCode"] == 422
    assert _error(response).startswith("integrations[0].model.text: has an invalid placeholder at character 5")


def test_put_invalid_template_stores_nothing(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(_with(1, model="costs $"))

    assert _topic_item(aws) is None
    assert _parameters(aws) == {}


def test_put_template_with_escaped_dollar_is_accepted(admin: AdminApi) -> None:
    response = admin.put_topic(_with(1, model="costs $$5 for $name"))

    assert response["statusCode"] == 201


@pytest.mark.parametrize(
    ("path", "field"),
    [
        pytest.param({"channel": "bad channel", "topic": "shipped"}, "channel", id="channel-space"),
        pytest.param({"channel": "orders", "topic": "-dash-first"}, "topic", id="topic-leading-dash"),
        pytest.param({"channel": "orders", "topic": "x" * 65}, "topic", id="topic-too-long"),
        pytest.param({"channel": "orders", "topic": "é"}, "topic", id="topic-non-ascii"),
    ],
)
def test_put_bad_name_returns_422_naming_it(admin: AdminApi, path: dict[str, str], field: str) -> None:
    response = admin.call("PUT", TOPIC, path, topic_body())

    assert response["statusCode"] == 422
    assert _error(response).startswith(f"{field}: ")


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_topic_route_bad_name_returns_422(admin: AdminApi, method: str) -> None:
    response = admin.call(method, TOPIC, {"channel": "orders", "topic": "bad topic"})

    assert response["statusCode"] == 422
    assert _error(response).startswith("topic: ")


def test_rotate_hash_bad_name_returns_422(admin: AdminApi) -> None:
    response = admin.call("POST", f"{TOPIC}/rotate-hash", {"channel": "bad channel", "topic": "shipped"})

    assert response["statusCode"] == 422


def test_list_topics_bad_channel_name_returns_422(admin: AdminApi) -> None:
    response = admin.call("GET", "/v1/channels/{channel}/topics", {"channel": "bad channel"})

    assert response["statusCode"] == 422
    assert _error(response).startswith("channel: ")


def test_put_malformed_json_returns_400(admin: AdminApi) -> None:
    response = admin.put_topic('{"integrations": [')

    assert response["statusCode"] == 400
    assert "not valid JSON" in _error(response)


def test_put_credentials_over_ssm_limit_returns_422_naming_them(admin: AdminApi, aws: AwsResources) -> None:
    response = admin.put_topic(_with(3, credentials={"signing_secret": "s" * 5000}))

    assert response["statusCode"] == 422
    assert _error(response).startswith("integrations[3].credentials: must take at most 4096 characters")
    assert "s" * 100 not in response["body"]
    assert _parameters(aws) == {}


def test_delete_topic_credentials_delete_failure_still_answers_204(
    admin: AdminApi, aws: AwsResources, logs: Callable[[], str]
) -> None:
    admin.put_topic(topic_body())
    store = SecretStore(_SsmFailingOnDelete(aws.ssm), NAMES["PARAMETER_PREFIX"])

    with patch("api.topics.get_secret_store", return_value=store):
        response = admin.call("DELETE", TOPIC, PATH)

    assert response["statusCode"] == 204
    assert _topic_item(aws) is None
    assert "deleted topic's credentials kept" in logs()


def test_put_invalid_body_error_never_echoes_a_secret(admin: AdminApi) -> None:
    response = admin.put_topic(_with(3, credentials={"signing_secret": "webhook-secret-2b7e-0123456789", "x": 1}))

    assert response["statusCode"] == 422
    assert TOPIC_SECRETS[2] not in response["body"]


# --- credentials are switched by the conditional write, never overwritten in place ----------------------------------

WINNER_URL = "https://hooks.slack.example/services/T0/B0/winner-9d1c"
LOSER_URL = "https://hooks.slack.example/services/T0/B0/loser-7e2a"


def _with_slack_url(url: str) -> dict[str, Any]:
    return _with(1, credentials={"webhook_url": url})


def _parameter_values(aws: AwsResources) -> dict[str, Any]:
    return {
        name: json.loads(aws.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
        for name in _parameters(aws)
    }


def _live_credentials(aws: AwsResources, integration: str) -> dict[str, Any]:
    item = _topic_item(aws)
    assert item is not None
    [ref] = [
        entry["credentials_ref"] for entry in json.loads(item["integrations"]["S"]) if entry["name"] == integration
    ]
    value: dict[str, Any] = json.loads(aws.ssm.get_parameter(Name=ref, WithDecryption=True)["Parameter"]["Value"])
    return value


class _DynamoDB:
    """A DynamoDB client that runs ``after_read`` once, right after its first GetItem, and can fail its PutItem (or
    apply it, then fail, as an answer lost after DynamoDB applied the write)."""

    def __init__(
        self,
        client: Any,
        after_read: Callable[[], object] | None = None,
        fail_put: bool = False,
        apply_then_fail: bool = False,
        apply_then_conflict: bool = False,
    ) -> None:
        self._client = client
        self._after_read = after_read
        self._fail_put = fail_put
        self._apply_then_fail = apply_then_fail
        self._apply_then_conflict = apply_then_conflict

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_item(self, **kwargs: Any) -> Any:
        response = self._client.get_item(**kwargs)
        after_read, self._after_read = self._after_read, None
        if after_read is not None:
            after_read()
        return response

    def put_item(self, **kwargs: Any) -> Any:
        if self._apply_then_conflict:
            # The answer lost after DynamoDB applied the write: botocore's retry meets its own write's condition.
            self._client.put_item(**kwargs)
            return self._client.put_item(**kwargs)
        if self._apply_then_fail:
            self._client.put_item(**kwargs)
        if self._fail_put or self._apply_then_fail:
            error = {"Error": {"Code": "InternalServerError", "Message": "boom"}}
            raise ClientError(error, "PutItem")
        return self._client.put_item(**kwargs)


def _retired(aws: AwsResources) -> dict[str, str]:
    item = _topic_item(aws)
    assert item is not None
    retired: dict[str, str] = json.loads(item["retired_refs"]["S"]) if "retired_refs" in item else {}
    return retired


def _put_directly(aws: AwsResources, body: dict[str, Any], dynamodb: Any, ssm: Any = None) -> None:
    """Run the PUT's logic on the given clients, as the handler does on its own."""
    registry = TopicRegistry(dynamodb, NAMES["TOPICS_TABLE"], cache_ttl_seconds=0)
    store = SecretStore(ssm or aws.ssm, NAMES["PARAMETER_PREFIX"])
    put_topic("orders", "shipped", TopicRequest.model_validate(body), registry, store)


def test_put_losing_a_race_leaves_the_winners_credentials_unchanged(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(topic_body())
    after_winner: dict[str, Any] = {}

    def winner_commits_meanwhile() -> None:
        assert admin.put_topic(_with_slack_url(WINNER_URL))["statusCode"] == 200
        after_winner.update(_parameter_values(aws))

    with pytest.raises(ConflictError):
        _put_directly(aws, _with_slack_url(LOSER_URL), _DynamoDB(aws.dynamodb, after_read=winner_commits_meanwhile))

    assert _live_credentials(aws, "team-slack") == {"webhook_url": WINNER_URL}
    assert _parameter_values(aws) == after_winner


def test_put_losing_a_race_through_the_api_answers_409(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(topic_body())
    registry = TopicRegistry(
        _DynamoDB(aws.dynamodb, after_read=lambda: admin.put_topic(_with_slack_url(WINNER_URL))),
        NAMES["TOPICS_TABLE"],
        cache_ttl_seconds=0,
    )

    with patch("api.topics.get_topic_registry", return_value=registry):
        response = admin.put_topic(_with_slack_url(LOSER_URL))

    assert response["statusCode"] == 409
    assert _live_credentials(aws, "team-slack") == {"webhook_url": WINNER_URL}


def test_put_failed_topic_write_keeps_old_credentials_and_leaves_no_new_parameters(
    admin: AdminApi, aws: AwsResources
) -> None:
    admin.put_topic(topic_body())
    parameters_before, item_before = _parameter_values(aws), _topic_item(aws)

    with pytest.raises(UpstreamError):
        _put_directly(aws, _with_slack_url(LOSER_URL), _DynamoDB(aws.dynamodb, fail_put=True))

    assert _parameter_values(aws) == parameters_before
    assert _topic_item(aws) == item_before


def test_put_write_applied_then_failing_keeps_the_credentials_the_topic_names(
    admin: AdminApi, aws: AwsResources
) -> None:
    admin.put_topic(topic_body())

    _put_directly(aws, _with_slack_url(WINNER_URL), _DynamoDB(aws.dynamodb, apply_then_fail=True))

    # DynamoDB applied the write before the error: the topic names the new credentials, which must not be deleted as
    # those of a write that failed, and the PUT is answered as done (it was).
    assert _live_credentials(aws, "team-slack") == {"webhook_url": WINNER_URL}


class _AppliedThenReplaced(_DynamoDB):
    """A PutItem DynamoDB applied, another PUT landing before its answer, which is lost (an error)."""

    def __init__(self, client: Any, admin: AdminApi) -> None:
        super().__init__(client)
        self._admin = admin

    def put_item(self, **kwargs: Any) -> Any:
        self._client.put_item(**kwargs)
        assert self._admin.put_topic(_with_slack_url(WINNER_URL))["statusCode"] == 200
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "boom"}}, "PutItem")


def test_put_write_applied_then_replaced_keeps_the_credentials_the_topic_retired(
    admin: AdminApi, aws: AwsResources
) -> None:
    admin.put_topic(topic_body())
    before = set(_retired(aws))

    with pytest.raises(UpstreamError):
        _put_directly(aws, _with_slack_url(LOSER_URL), _AppliedThenReplaced(aws.dynamodb, admin))

    # This PUT's version was live until the other replaced it: publishes made meanwhile name its credentials, which
    # the topic keeps among its retired ones; they must still be there.
    retired = [ref for ref in set(_retired(aws)) - before if "team-slack" in ref]
    values = [
        json.loads(parameter["Value"])
        for parameter in aws.ssm.get_parameters(Names=retired, WithDecryption=True)["Parameters"]
    ]
    assert {"webhook_url": LOSER_URL} in values, (retired, values)


@pytest.mark.parametrize("existing", [False, True], ids=["create", "replace"])
def test_put_write_applied_then_its_retry_conflicting_answers_done_with_the_hash(
    admin: AdminApi, aws: AwsResources, existing: bool
) -> None:
    # botocore's retry of a write DynamoDB had applied failed its own condition: a 409 "changed meanwhile" for a
    # change that never ran, and a created topic's hash, stored, was never shown (a PUT again shows none).
    if existing:
        admin.put_topic(topic_body())
    registry = TopicRegistry(
        _DynamoDB(aws.dynamodb, apply_then_conflict=True), NAMES["TOPICS_TABLE"], cache_ttl_seconds=0
    )
    store = SecretStore(aws.ssm, NAMES["PARAMETER_PREFIX"])

    change, topic_hash = put_topic(
        "orders", "shipped", TopicRequest.model_validate(_with_slack_url(WINNER_URL)), registry, store
    )

    assert change.created is not existing
    stored = registry.read("orders", "shipped")
    assert (topic_hash is not None) is not existing
    if topic_hash is not None:
        assert stored.hash_sha256 == hash_topic_secret(topic_hash)
    assert _live_credentials(aws, "team-slack") == {"webhook_url": WINNER_URL}


def test_put_failed_create_leaves_no_parameters(aws: AwsResources) -> None:
    with pytest.raises(UpstreamError):
        _put_directly(aws, topic_body(), _DynamoDB(aws.dynamodb, fail_put=True))

    assert _parameters(aws) == {}


class _SsmFailingOnPut:
    """An SSM client whose ``n``-th PutParameter fails."""

    def __init__(self, client: Any, n: int) -> None:
        self._client = client
        self._left = n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_parameter(self, **kwargs: Any) -> Any:
        self._left -= 1
        if self._left == 0:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "boom"}}, "PutParameter")
        return self._client.put_parameter(**kwargs)


def test_put_failed_credentials_write_removes_those_already_written(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(topic_body())
    parameters_before, item_before = _parameter_values(aws), _topic_item(aws)
    body = _with_slack_url(LOSER_URL)
    body["integrations"][2]["credentials"]["bot_token"] = "654321:rotated"
    body["integrations"][3]["credentials"]["signing_secret"] = "webhook-secret-rotated-0123456789"

    with pytest.raises(UpstreamError):
        _put_directly(aws, body, aws.dynamodb, _SsmFailingOnPut(aws.ssm, 3))

    assert _parameter_values(aws) == parameters_before
    assert _topic_item(aws) == item_before


def test_put_replace_keeps_the_replaced_credentials_for_queued_deliveries(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(topic_body())
    first = _refs(aws)["team-slack"]

    admin.put_topic(_with_slack_url(WINNER_URL))

    # A delivery queued before the change still names the first reference.
    value = aws.ssm.get_parameter(Name=first, WithDecryption=True)["Parameter"]["Value"]
    assert json.loads(value) == {"webhook_url": TOPIC_SECRETS[0]}


def test_put_second_replace_keeps_credentials_replaced_by_the_first(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(topic_body())
    first = _refs(aws)["team-slack"]
    admin.put_topic(_with_slack_url(WINNER_URL))

    admin.put_topic(_with_slack_url(LOSER_URL))

    # A delivery queued before the first change may be retried for days: its credentials outlive later changes.
    values = _parameter_values(aws)
    assert values[first] == {"webhook_url": TOPIC_SECRETS[0]}
    assert len(values) == 5  # the three live credentials and the two Slack URLs they replaced
    assert len(_retired(aws)) == 2
    assert _live_credentials(aws, "team-slack") == {"webhook_url": LOSER_URL}


def test_put_after_the_retention_deletes_retired_credentials(admin: AdminApi, aws: AwsResources) -> None:
    with patch("api.topics.utc_now", return_value="2026-11-01T00:00:00.000Z"):
        admin.put_topic(topic_body())
        first = _refs(aws)["team-slack"]
        admin.put_topic(_with_slack_url(WINNER_URL))

    with patch("api.topics.utc_now", return_value="2026-12-13T00:00:00.001Z"):  # 42 days and a moment later
        admin.put_topic(_with_slack_url(LOSER_URL))

    values = _parameter_values(aws)
    assert first not in values
    assert len(values) == 4  # the three live credentials and the winner's URL, retired now
    assert list(_retired(aws).values()) == ["2026-12-13T00:00:00.001Z"]


def test_put_beyond_the_most_retired_credentials_deletes_the_oldest(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(topic_body())
    first = _refs(aws)["team-slack"]
    admin.put_topic(_with_slack_url(WINNER_URL))

    with patch("api.topics.MAX_RETIRED_CREDENTIALS", 1):
        admin.put_topic(_with_slack_url(LOSER_URL))

    values = _parameter_values(aws)
    assert first not in values
    assert [values[ref] for ref in _retired(aws)] == [{"webhook_url": WINNER_URL}]


class _SsmFailingOnDelete:
    """An SSM client whose DeleteParameters fails."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def delete_parameters(self, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "boom"}}, "DeleteParameters")


def test_put_cleanup_failure_after_the_write_still_answers_success(
    admin: AdminApi, aws: AwsResources, logs: Callable[[], str]
) -> None:
    with patch("api.topics.utc_now", return_value="2026-11-01T00:00:00.000Z"):
        admin.put_topic(topic_body())
        admin.put_topic(_with_slack_url(WINNER_URL))
    ssm = _SsmFailingOnDelete(aws.ssm)

    with patch("api.topics.utc_now", return_value="2026-12-14T00:00:00.000Z"):
        _put_directly(aws, _with_slack_url(LOSER_URL), aws.dynamodb, ssm)

    assert _live_credentials(aws, "team-slack") == {"webhook_url": LOSER_URL}
    assert "retired credentials not deleted" in logs()


def test_delete_topic_removes_replaced_credentials_too(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(topic_body())
    admin.put_topic(_with_slack_url(WINNER_URL))

    admin.call("DELETE", TOPIC, PATH)

    assert _parameters(aws) == {}


def test_rotate_hash_keeps_replaced_credentials_until_the_next_change(admin: AdminApi, aws: AwsResources) -> None:
    admin.put_topic(topic_body())
    admin.put_topic(_with_slack_url(WINNER_URL))
    admin.call("POST", f"{TOPIC}/rotate-hash", PATH)

    admin.call("DELETE", TOPIC, PATH)

    assert _parameters(aws) == {}


# --- URLs are parsed when the topic is saved ------------------------------------------------------------------------

BAD_URLS = [
    pytest.param("http://exa\uff0fmple.com/services/T0/B0/url-secret", id="nfkc-netloc"),
    pytest.param("https://hooks.slack.example\uff0fservices\uff0furl-secret", id="nfkc-whole-path"),
    pytest.param("http://[::1/services/url-secret", id="unclosed-ipv6"),
    pytest.param("http://hooks.example:99999/url-secret", id="port-out-of-range"),
    pytest.param("http://hooks.example:8o/url-secret", id="port-not-a-number"),
    pytest.param("http://a..example/url-secret", id="empty-label"),
    pytest.param(f"http://{'a' * 64}.example/url-secret", id="label-too-long"),
    pytest.param("http://user:pw@hooks.example/url-secret", id="user-info"),
    pytest.param("http://hooks.example/url-secret\n", id="trailing-newline"),
    pytest.param("http://hooks.exa\u0000mple/url-secret", id="nul"),
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_put_slack_webhook_url_that_does_not_parse_returns_422_without_the_url(admin: AdminApi, url: str) -> None:
    response = admin.put_topic(_with_slack_url(url))

    assert response["statusCode"] == 422
    assert _error(response).startswith("integrations[1].credentials.webhook_url: ")
    assert "url-secret" not in response["body"]
    assert "example" not in response["body"]


@pytest.mark.parametrize("url", BAD_URLS)
def test_put_webhook_target_url_that_does_not_parse_returns_422_naming_it(admin: AdminApi, url: str) -> None:
    response = admin.put_topic(_with(3, target={"url": url}))

    assert response["statusCode"] == 422
    assert _error(response).startswith("integrations[3].target.url: ")


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.example/services/T0/B0/x",
        "http://127.0.0.1:3001/slack/demo?rate=2",
        "https://[2001:db8::1]:8443/hook",
        "https://bücher.example/hook",
    ],
)
def test_put_usual_urls_are_accepted(admin: AdminApi, url: str) -> None:
    body = topic_body()
    body["integrations"][1]["credentials"]["webhook_url"] = url
    body["integrations"][3]["target"]["url"] = url

    assert admin.put_topic(body)["statusCode"] == 201


# --- large and non-ASCII topics ---------------------------------------------------------------------------------------


def test_put_topic_with_a_210_kb_cjk_model_is_stored_and_read_back(admin: AdminApi) -> None:
    text = "通知" * 35_000  # 70 000 characters, 210 000 bytes of UTF-8
    request = json.dumps(_with(3, model={"text": text}), ensure_ascii=False)

    response = admin.put_topic(request)

    assert response["statusCode"] == 201, response["body"]
    [webhook] = [
        item for item in response_json(admin.call("GET", TOPIC, PATH))["integrations"] if item["type"] == "webhook"
    ]
    assert webhook["model"] == {"text": text}


def test_put_topic_too_large_for_one_item_returns_413_and_writes_nothing(admin: AdminApi, aws: AwsResources) -> None:
    # "1E15" takes 4 bytes of the request and 18 of the item (1000000000000000.0): the request fits, the item would not.
    numbers = "[" + ",".join(["1E15"] * 50_000) + "]"
    request = json.dumps(topic_body()).replace(json.dumps(topic_body()["integrations"][3]["model"]), numbers)
    assert len(request.encode()) < 256 * 1024

    response = admin.put_topic(request)

    assert response["statusCode"] == 413
    assert "400 KB" in _error(response)
    assert _topic_item(aws) is None
    assert _parameters(aws) == {}


def test_publish_template_repeating_a_large_value_returns_413_naming_the_integration(
    admin: AdminApi, aws: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    from producer.handler import handler as publish

    body = {
        "integrations": [
            {"name": "w", "type": "webhook", "target": {"url": "https://h.example/x"}, "model": "$v " * 600}
        ]
    }
    topic_hash = response_json(admin.put_topic(body))["topic_hash"]

    response = publish(
        publish_event("orders", "shipped", {"metadata": {"v": "x" * 200_000}}, topic_hash), lambda_context
    )

    assert response["statusCode"] == 413
    assert _error(response) == (
        "the rendered message of integration 'w' exceeds 248 KiB (SQS's 256 KiB less 8 KiB kept for its retries)"
    )


# --- text a delivery message cannot carry ---------------------------------------------------------------------------

UNSENDABLE_RULE = "must hold only characters a message can carry"


@pytest.mark.parametrize(
    ("model", "field"),
    [
        pytest.param("\ud800", "integrations[3].model", id="string-model"),
        pytest.param(["\ud800"], "integrations[3].model[0]", id="array-item"),
        pytest.param({"a": "\udfff $v"}, "integrations[3].model.a", id="low-surrogate-in-a-template"),
        pytest.param({"event": "order\ud800"}, "integrations[3].model.event", id="in-a-value"),
        pytest.param({"a": {"b": ["ok", "\uffff"]}}, "integrations[3].model.a.b[1]", id="u-ffff-deep"),
        pytest.param({"a": "\ufffe"}, "integrations[3].model.a", id="u-fffe"),
    ],
)
def test_put_model_with_text_a_message_cannot_carry_returns_422_naming_it_and_stores_nothing(
    admin: AdminApi, aws: AwsResources, model: Any, field: str
) -> None:
    # json.dumps writes a lone surrogate as its escape ("\\ud800"): the request is what a client may send.
    response = admin.put_topic(json.dumps(_with(3, model=model)))

    assert response["statusCode"] == 422
    assert _error(response).startswith(f"{field}: {UNSENDABLE_RULE}")
    assert _topic_item(aws) is None


def test_put_model_key_with_a_lone_surrogate_returns_422_naming_the_model(admin: AdminApi, aws: AwsResources) -> None:
    response = admin.put_topic(json.dumps(_with(3, model={"ok": "$v", "\ud800": "a"})))

    assert response["statusCode"] == 422
    assert _error(response).startswith("integrations[3].model[")
    assert UNSENDABLE_RULE in _error(response)
    assert _topic_item(aws) is None


def test_put_target_with_a_lone_surrogate_returns_422_naming_it(admin: AdminApi, aws: AwsResources) -> None:
    response = admin.put_topic(json.dumps(_with(2, target={"chat_id": "-100\ud800"})))

    assert response["statusCode"] == 422
    assert _error(response).startswith(f"integrations[2].target.chat_id: {UNSENDABLE_RULE}")
    assert _topic_item(aws) is None


@pytest.mark.parametrize(
    ("index", "credentials", "field"),
    [
        (3, {"signing_secret": "hunter2-0123456789\ud800"}, "signing_secret"),
        # Every Telegram delivery failed on it (its destination is named by a digest of the token), retried to dead.
        (2, {"bot_token": "123456:hunter2-telegram\ud800"}, "bot_token"),
    ],
    ids=["webhook-signing-secret", "telegram-bot-token"],
)
def test_put_credential_with_a_lone_surrogate_returns_422_without_the_secret(
    admin: AdminApi, aws: AwsResources, index: int, credentials: dict[str, str], field: str
) -> None:
    # Stored, such a secret could sign no body nor name its destination: every delivery would fail.
    response = admin.put_topic(json.dumps(_with(index, credentials=credentials)))

    assert response["statusCode"] == 422
    assert _error(response).startswith(f"integrations[{index}].credentials.{field}: ")
    assert "hunter2" not in response["body"]
    assert _parameters(aws) == {}


# --- email addresses --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "field"),
    [
        pytest.param(
            {"to": ["ops@example.com\n"], "from": "a@b.co"}, "integrations[0].target.to[0]", id="to-trailing-lf"
        ),
        pytest.param(
            {"to": ["ops@example.com\r\nBcc: x@evil.example"], "from": "a@b.co"},
            "integrations[0].target.to[0]",
            id="to-crlf",
        ),
        pytest.param(
            {"to": ["ops@example.com"], "from": "a@b.co\n"}, "integrations[0].target.from", id="from-trailing-lf"
        ),
        pytest.param(
            {"to": ["ops@example.com"], "from": "Shop\r\nBcc: x@evil.example <a@b.co>"},
            "integrations[0].target.from",
            id="from-header-injection",
        ),
        pytest.param(
            {"to": ["ops@example.com"], "from": "Shop\t<a@b.co>"}, "integrations[0].target.from", id="from-tab"
        ),
        pytest.param(
            {"to": ["a@b.co", "ops@exa\u0085mple.com"], "from": "a@b.co"}, "integrations[0].target.to[1]", id="to-nel"
        ),
    ],
)
def test_put_email_address_with_control_characters_returns_422_naming_it(
    admin: AdminApi, aws: AwsResources, target: dict[str, Any], field: str
) -> None:
    response = admin.put_topic(_with(0, target=target))

    assert response["statusCode"] == 422
    assert _error(response).startswith(f"{field}: ")
    assert _topic_item(aws) is None


def _slacks(count: int, first: int = 0) -> dict[str, Any]:
    """A topic of ``count`` Slack integrations, each with credentials of its own."""
    return {
        "integrations": [
            {
                "name": f"s{index}",
                "type": "slack",
                "model": "m",
                "credentials": {"webhook_url": f"https://hooks.slack.com/services/T0/B0/x{index}"},
            }
            for index in range(first, first + count)
        ]
    }


def test_put_topic_with_more_new_credentials_than_a_request_writes_answers_422_and_steps_get_there(
    admin: AdminApi, aws: AwsResources
) -> None:
    # SSM's PutParameter is throttled at a few a second per account: 100 credentials at once outlived the function.
    refused = admin.put_topic(_slacks(MAX_NEW_CREDENTIALS + 1))

    assert refused["statusCode"] == 422
    assert response_json(refused)["message"].startswith(
        f"integrations: may bring at most {MAX_NEW_CREDENTIALS} new or changed credentials in one request "
        f"({MAX_NEW_CREDENTIALS + 1} here;"
    )
    assert _parameters(aws) == {}
    assert admin.put_topic(_slacks(MAX_NEW_CREDENTIALS))["statusCode"] == 201
    grown = admin.put_topic(_slacks(MAX_NEW_CREDENTIALS + 1))  # only the last one's credentials are new
    assert grown["statusCode"] == 200
    assert len(_parameters(aws)) == MAX_NEW_CREDENTIALS + 1


def test_put_topic_out_of_time_while_storing_credentials_deletes_those_it_stored(aws: AwsResources) -> None:
    registry = TopicRegistry(aws.dynamodb, NAMES["TOPICS_TABLE"], cache_ttl_seconds=0)
    store = SecretStore(aws.ssm, NAMES["PARAMETER_PREFIX"])

    def time_left() -> float:  # SSM throttled: time runs out after three writes
        return 60.0 if len(_parameters(aws)) < 3 else 1.0

    with pytest.raises(UpstreamError, match="SSM was too slow storing the credentials; nothing was changed"):
        put_topic("orders", "shipped", TopicRequest.model_validate(_slacks(5)), registry, store, time_left)

    assert _parameters(aws) == {}
    assert _topic_item(aws) is None


def test_put_push_to_a_topic_of_the_stage_prefix_is_accepted(admin: AdminApi) -> None:
    body = _with(4, target={"topic_arn": "arn:aws:sns:us-east-1:123456789012:notify-test-push-alerts"})

    assert admin.put_topic(body)["statusCode"] == 201
