"""Unit tests of producer/sns.py: the order of checks, the message's variables, each message type, on fakes."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from core.errors import (
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    SnsMessageError,
    SnsSignatureError,
)
from core.http import Request
from core.ledger import DeliveryLedger
from core.queue import DeliveryQueue
from core.topics import TopicRegistry
from core.validation import NAME_RULE, TEXT_RULE
from producer.idempotency import Action, IdempotentPublisher, Unsaved
from producer.sns import MAX_SNS_BODY_BYTES, SnsCall, message_metadata, parse_sns_message, receive_sns, request_body
from tests.fakes.dynamodb import FakeDynamoDBClient
from tests.fakes.sqs import FakeSqsClient
from tests.support.events import registered_topic_client
from tests.support.sns import CERT_URL, FakeSnsFetcher, fetcher, sample, sign, verifier

TABLES: dict[str, tuple[str, ...]] = {"topics": ("channel", "topic"), "deliveries": ("notification_id", "delivery_key")}
NOTIFICATION = "sns_notification.json"
CONFIRMATION = "sns_subscription_confirmation.json"


class _OncePerScope(IdempotentPublisher):
    """Runs an action once per scope and replays its result, as powertools does; records the scopes."""

    def __init__(self) -> None:
        super().__init__(None, "idempotency")
        self.results: dict[str, dict[str, Any]] = {}

    def run(self, scope: list[str], payload: str, action: Action, on_unsaved: Unsaved | None = None) -> dict[str, Any]:
        key = json.dumps(scope)
        if key not in self.results:
            self.results[key] = action()
        return self.results[key]


@pytest.fixture
def dynamodb() -> FakeDynamoDBClient:
    return registered_topic_client(TABLES, model="$data | order $order_id")


def _body(name: str = NOTIFICATION, **changes: Any) -> str:
    return json.dumps(sign({**sample(name), **changes}))


def _receive(
    dynamodb: FakeDynamoDBClient,
    sqs: FakeSqsClient,
    body: str,
    topic_hash: str | None = "right",
    fetch: FakeSnsFetcher | None = None,
    idempotency: IdempotentPublisher | None = None,
    topic: str = "shipped",
) -> Any:
    fetch = fetch or fetcher()
    return receive_sns(
        SnsCall(channel="orders", topic=topic, topic_hash=topic_hash, body=body),
        TopicRegistry(dynamodb, "topics"),
        DeliveryLedger(dynamodb, "deliveries"),
        DeliveryQueue(sqs, "https://sqs.example/q"),
        idempotency or _OncePerScope(),
        verifier(fetch),
        fetch,
    )


def test_receive_sns_notification_enqueues_the_message_as_data_and_its_fields(dynamodb: FakeDynamoDBClient) -> None:
    sqs = FakeSqsClient()

    outcome = _receive(dynamodb, sqs, _body())

    assert outcome.type == "Notification"
    assert outcome.message_ids == {"s": "msg-1"}
    text = json.loads(sqs.sent["msg-1"])["content"]["text"]
    assert text == '{"order_id": "A-1", "name": "Ada", "total": 12.5} | order A-1'


def test_receive_sns_notification_scope_is_the_topic_arn_and_message_id(dynamodb: FakeDynamoDBClient) -> None:
    idempotency = _OncePerScope()

    _receive(dynamodb, FakeSqsClient(), _body(), idempotency=idempotency)

    message = sample(NOTIFICATION)
    assert list(idempotency.results) == [
        json.dumps(["sns", message["TopicArn"], "orders", "shipped", message["MessageId"]])
    ]


def test_receive_sns_notification_record_has_no_caller_and_source_sns(dynamodb: FakeDynamoDBClient) -> None:
    outcome = _receive(dynamodb, FakeSqsClient(), _body())

    record = DeliveryLedger(dynamodb, "deliveries").get_record(outcome.notification_id)
    assert (record.caller, record.source) == (None, "sns")


def test_receive_sns_missing_hash_is_refused_before_any_read(dynamodb: FakeDynamoDBClient) -> None:
    with pytest.raises(ForbiddenError, match="hash query parameter is required"):
        _receive(dynamodb, FakeSqsClient(), _body(), topic_hash=None)

    assert dynamodb.calls == []


def test_receive_sns_unknown_topic_is_not_found(dynamodb: FakeDynamoDBClient) -> None:
    with pytest.raises(NotFoundError):
        _receive(dynamodb, FakeSqsClient(), _body(), topic="other")


def test_receive_sns_wrong_hash_is_forbidden_before_the_body_is_read(dynamodb: FakeDynamoDBClient) -> None:
    fetch = fetcher()

    with pytest.raises(ForbiddenError, match="hash query parameter does not match the topic"):
        _receive(dynamodb, FakeSqsClient(), "not json", topic_hash="wrong", fetch=fetch)
    assert fetch.asked == []


def test_receive_sns_forged_signature_enqueues_nothing(dynamodb: FakeDynamoDBClient) -> None:
    sqs = FakeSqsClient()
    body = json.loads(_body())
    body["Message"] = "forged"

    with pytest.raises(SnsSignatureError):
        _receive(dynamodb, sqs, json.dumps(body))
    assert sqs.sent == {}


def test_receive_sns_subscription_confirmation_gets_the_subscribe_url(dynamodb: FakeDynamoDBClient) -> None:
    fetch = fetcher()
    sqs = FakeSqsClient()

    outcome = _receive(dynamodb, sqs, _body(CONFIRMATION), fetch=fetch)

    assert (outcome.type, outcome.notification_id) == ("SubscriptionConfirmation", None)
    assert fetch.asked == [CERT_URL, sample(CONFIRMATION)["SubscribeURL"]]
    assert sqs.sent == {}


def test_receive_sns_unsubscribe_confirmation_is_only_acknowledged(dynamodb: FakeDynamoDBClient) -> None:
    fetch = fetcher()
    sqs = FakeSqsClient()

    outcome = _receive(dynamodb, sqs, _body(CONFIRMATION, Type="UnsubscribeConfirmation"), fetch=fetch)

    assert outcome.type == "UnsubscribeConfirmation"
    assert fetch.asked == [CERT_URL]
    assert sqs.sent == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param("", "it is not JSON", id="empty"),
        pytest.param("Type=Notification", "it is not JSON", id="form"),
        pytest.param("[1]", "it is not a JSON object", id="array"),
        pytest.param("[" * 100 + "]" * 100, "nested too deeply", id="deep"),
        pytest.param(json.dumps({**sample(NOTIFICATION), "Type": "Publish"}), "Type: must be one of:", id="type"),
        pytest.param(json.dumps({**sample(NOTIFICATION), "MessageId": 7}), "MessageId: must be a string", id="int"),
    ],
)
def test_parse_sns_message_bad_body_raises_naming_what_is_wrong(body: str, message: str) -> None:
    with pytest.raises(SnsMessageError, match=message):
        parse_sns_message(body)


def test_parse_sns_message_missing_fields_are_all_named() -> None:
    fields = sample(NOTIFICATION)
    del fields["Signature"], fields["TopicArn"]

    with pytest.raises(SnsMessageError) as raised:
        parse_sns_message(json.dumps(fields))
    assert str(raised.value) == "the body is not an SNS message: TopicArn: is required; Signature: is required"


def test_parse_sns_message_error_does_not_quote_the_message() -> None:
    fields = {**sample(NOTIFICATION), "Type": "Secret message text " * 5}

    with pytest.raises(SnsMessageError) as raised:
        parse_sns_message(json.dumps(fields))
    assert "Secret" not in str(raised.value)


def test_parse_sns_message_lone_surrogate_raises_naming_the_field() -> None:
    body = json.dumps({**sample(NOTIFICATION), "Subject": "Order \ud800"})  # json writes it "\ud800"

    with pytest.raises(SnsMessageError) as raised:
        parse_sns_message(body)
    assert str(raised.value) == (
        "the body is not an SNS message: Subject holds a lone surrogate (U+D800 to U+DFFF); SNS sends Unicode text only"
    )


def test_receive_sns_lone_surrogate_is_refused_before_the_signature(dynamodb: FakeDynamoDBClient) -> None:
    fetch = fetcher()
    sqs = FakeSqsClient()
    body = json.loads(_body())
    body["Subject"] = "\udfff"

    with pytest.raises(SnsMessageError, match="Subject holds a lone surrogate"):
        _receive(dynamodb, sqs, json.dumps(body), fetch=fetch)
    assert (fetch.asked, sqs.sent) == ([], {})


@pytest.mark.parametrize("text", ["\\ud800", "\\uffff"])
def test_receive_sns_message_field_a_message_cannot_carry_is_invalid_naming_it(
    dynamodb: FakeDynamoDBClient, text: str
) -> None:
    sqs = FakeSqsClient()
    body = _body(Message='{"order_id": "' + text + '"}')

    with pytest.raises(InvalidRequestError) as raised:
        _receive(dynamodb, sqs, body)
    assert str(raised.value) == f"metadata.order_id: {TEXT_RULE}"
    assert sqs.sent == {}


def test_receive_sns_overlong_topic_is_not_found_before_any_read(dynamodb: FakeDynamoDBClient) -> None:
    with pytest.raises(NotFoundError, match=f"^topic: is not a valid name, so no such topic exists \\({NAME_RULE}\\)$"):
        _receive(dynamodb, FakeSqsClient(), _body(), topic="t" * 1025)

    assert dynamodb.calls == []


def test_parse_sns_message_over_the_limit_raises_payload_too_large() -> None:
    with pytest.raises(PayloadTooLargeError):
        parse_sns_message(" " * (MAX_SNS_BODY_BYTES + 1))


def test_parse_sns_message_sns_body_as_sent_is_parsed() -> None:
    message = parse_sns_message(json.dumps(sample(NOTIFICATION), indent=2, separators=(",", " : ")))

    assert (message.type, message.subject) == ("Notification", "Order shipped")


@pytest.mark.parametrize(
    ("text", "metadata"),
    [
        pytest.param("Hello", {"data": "Hello"}, id="text"),
        pytest.param(
            '{"id": "A-1", "total": 12.5, "tags": ["a"], "ok": true, "none": null}',
            {"id": "A-1", "total": 12.5, "tags": ["a"], "ok": True, "none": None},
            id="object",
        ),
        pytest.param('{"data": "field"}', {}, id="data-shadowed"),
        pytest.param("[1, 2]", {}, id="array"),
        pytest.param('"quoted"', {}, id="string"),
        pytest.param('{"total": NaN}', {}, id="nan"),
        pytest.param('{"total": 1e999}', {}, id="infinite"),
        pytest.param('{"id": "A-1"', {}, id="broken"),
        pytest.param('{"deep": ' + "[" * 32 + "]" * 32 + "}", {}, id="deeper-than-metadata"),
    ],
)
def test_message_metadata_is_data_and_a_json_objects_fields(text: str, metadata: dict[str, Any]) -> None:
    assert message_metadata(text) == {**metadata, "data": text}


def test_message_metadata_as_deep_as_metadata_may_be_has_its_fields() -> None:
    text = '{"deep": ' + "[" * 31 + "]" * 31 + "}"

    assert set(message_metadata(text)) == {"deep", "data"}


def test_request_body_base64_not_utf8_raises_sns_message_error() -> None:
    request = Request({"body": base64.b64encode(b"\xff\xfe").decode(), "isBase64Encoded": True})

    with pytest.raises(SnsMessageError, match="not UTF-8"):
        request_body(request)
