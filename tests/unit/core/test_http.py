"""Unit tests of core/http.py: the error → status mapping, the error body, and request body parsing."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from core.channels import TopicRequest
from core.errors import (
    AuthenticationError,
    ConflictError,
    EnqueueError,
    ForbiddenError,
    InvalidRequestError,
    MalformedRequestError,
    MissingTemplateVariablesError,
    NotFoundError,
    NotificationError,
    PayloadTooLargeError,
    TemplateError,
    UpstreamError,
)
from core.http import MAX_BODY_BYTES, MAX_JSON_DEPTH, error_response, parse_body, raw_body
from core.models import PublishRequest


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (MalformedRequestError("bad json"), 400),
        (AuthenticationError("no token"), 401),
        (ForbiddenError("wrong hash"), 403),
        (NotFoundError("no topic"), 404),
        (ConflictError("key reused"), 409),
        (PayloadTooLargeError("too big"), 413),
        (InvalidRequestError("field", "bad"), 422),
        (TemplateError("model", "bad placeholder"), 422),
        (MissingTemplateVariablesError(["b", "a"]), 422),
        (UpstreamError("dynamodb down"), 502),
        (EnqueueError("n-1", {"s": "InternalError"}), 502),
        (NotificationError("unclassified"), 500),
    ],
)
def test_error_response_maps_error_type_to_status(error: NotificationError, status: int) -> None:
    assert error_response(error).status_code == status


def test_error_response_body_is_message_naming_the_field() -> None:
    response = error_response(InvalidRequestError("integrations.0.target.to", "not an email address"))

    assert json.loads(str(response.body)) == {"message": "integrations.0.target.to: not an email address"}


def test_error_response_missing_variables_names_them_all() -> None:
    response = error_response(MissingTemplateVariablesError(["zeta", "alpha"]))

    assert json.loads(str(response.body)) == {"message": "metadata: missing template variables: alpha, zeta"}


def test_error_response_upstream_has_the_contract_prefix() -> None:
    response = error_response(UpstreamError("reading topic failed (ResourceNotFoundException)"))

    assert json.loads(str(response.body)) == {
        "message": "An error occurs while processing the request (Message: reading topic failed "
        "(ResourceNotFoundException))"
    }


def test_error_response_enqueue_error_carries_notification_headers() -> None:
    response = error_response(EnqueueError("n-1", {"s": "InternalError"}))

    assert response.headers["X-Notification-Id"] == "n-1"
    assert response.headers["Location"] == "/v1/notifications/n-1"


def test_raw_body_at_limit_is_accepted() -> None:
    body = "x" * MAX_BODY_BYTES

    assert raw_body(body) == body


def test_raw_body_over_limit_in_bytes_raises_payload_too_large() -> None:
    with pytest.raises(PayloadTooLargeError):
        raw_body("é" * (MAX_BODY_BYTES // 2 + 1))


@pytest.mark.parametrize("body", ['{"metadata": ', "not json", "{'metadata': {}}", "", None, "[]", '"text"'])
def test_parse_body_not_a_json_object_raises_malformed(body: str | None) -> None:
    with pytest.raises(MalformedRequestError):
        parse_body(body, PublishRequest)


def test_parse_body_malformed_message_does_not_echo_the_body() -> None:
    with pytest.raises(MalformedRequestError) as raised:
        parse_body('{"metadata": {"secret": "hunter2"', PublishRequest)

    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"metadata": []}, "metadata", id="metadata-not-object"),
        pytest.param({"metadata": {}, "extra": 1}, "extra", id="unknown-field"),
    ],
)
def test_parse_body_invalid_field_raises_invalid_request_naming_it(body: object, field: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_body(json.dumps(body), PublishRequest)

    assert str(raised.value).startswith(f"{field}: ")


def test_parse_body_valid_returns_model() -> None:
    assert parse_body('{"metadata": {"a": 1}}', PublishRequest) == PublishRequest(metadata={"a": 1})


def test_parse_body_invalid_secret_is_not_echoed() -> None:
    body = {
        "integrations": [
            {"name": "s", "type": "slack", "model": "m", "credentials": {"webhook_url": "ftp://hunter2-secret"}}
        ]
    }

    with pytest.raises(InvalidRequestError) as raised:
        parse_body(json.dumps(body), TopicRequest)

    assert "hunter2" not in str(raised.value)
    assert "integrations.0.credentials.webhook_url" in str(raised.value)


def _slack(**overrides: object) -> dict[str, object]:
    return {
        "name": "s",
        "type": "slack",
        "model": "m",
        "credentials": {"webhook_url": "https://hooks.example/x"},
        **overrides,
    }


@pytest.mark.parametrize(
    ("integration", "message"),
    [
        pytest.param(
            {
                "name": "e",
                "type": "email",
                "target": {"to": ["nobody"], "from": "a@b.co"},
                "model": {"subject": "s", "text": "t"},
            },
            "integrations.0.target.to",
            id="email-to-without-the-union-tag",
        ),
        pytest.param(_slack(credentials=None), "integrations.0.credentials", id="slack-credentials"),
        pytest.param(
            _slack(type="fax"),
            "integrations.0.type: must be one of: email, slack, telegram, webhook, push",
            id="unknown-type",
        ),
        pytest.param({"name": "x", "model": "m"}, "integrations.0.type: must be one of", id="missing-type"),
    ],
)
def test_parse_body_topic_request_error_names_field_as_callers_know_it(integration: object, message: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_body(json.dumps({"integrations": [integration]}), TopicRequest)

    assert str(raised.value).startswith(message)


# --- nesting depth --------------------------------------------------------------------------------------------------


def _deep_metadata(depth: int) -> str:
    """Return a publish body whose metadata is nested ``depth`` levels deep, its own object being the first level."""
    return '{"metadata": ' + '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1) + "}"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("[" * 10_000 + "]" * 10_000, id="arrays"),
        pytest.param('{"a": ' * 10_000 + "1" + "}" * 10_000, id="objects"),
        pytest.param('{"metadata": {"a": ' + '[{"b": ' * 5_000 + "1" + "}]" * 5_000 + "}}", id="mixed"),
        pytest.param("[" * 10_000, id="unclosed"),
    ],
)
def test_parse_body_nested_10000_deep_raises_malformed(body: str) -> None:
    with pytest.raises(MalformedRequestError) as raised:
        parse_body(body, PublishRequest)

    assert str(raised.value) == "the body is nested too deeply"


def test_parse_body_at_depth_limit_is_parsed() -> None:
    body = '{"metadata": {}, "x": ' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1) + "}"

    with pytest.raises(InvalidRequestError) as raised:
        parse_body(body, PublishRequest)

    assert str(raised.value).startswith("x: ")


def test_parse_body_one_level_over_depth_limit_raises_malformed() -> None:
    body = '{"metadata": {}, "x": ' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + "}"

    with pytest.raises(MalformedRequestError, match="nested too deeply"):
        parse_body(body, PublishRequest)


@pytest.mark.parametrize("text", ["[" * 10_000, '{"a": [' * 5_000, '\\"[[[[' * 3_000, "]]]]" * 3_000])
def test_parse_body_brackets_inside_strings_do_not_count(text: str) -> None:
    request = parse_body(json.dumps({"metadata": {"text": text}}), PublishRequest)

    assert request.metadata == {"text": text}


def test_parse_body_metadata_33_deep_raises_invalid_naming_metadata_and_the_limit() -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_body(_deep_metadata(33), PublishRequest)

    assert str(raised.value) == "metadata: must not be nested deeper than 32 levels"


def test_parse_body_metadata_33_deep_in_arrays_raises_invalid() -> None:
    body = '{"metadata": {"a": ' + "[" * 32 + "]" * 32 + "}}"

    with pytest.raises(InvalidRequestError) as raised:
        parse_body(body, PublishRequest)

    assert str(raised.value) == "metadata: must not be nested deeper than 32 levels"


def test_parse_body_metadata_32_deep_is_accepted() -> None:
    request = parse_body(_deep_metadata(32), PublishRequest)

    assert request.metadata["a"]


def test_publish_request_metadata_too_deep_built_in_code_is_refused() -> None:
    value: object = 1
    for _ in range(40):
        value = [value]

    with pytest.raises(ValidationError):
        PublishRequest(metadata={"a": value})
