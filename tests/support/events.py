"""API Gateway events shaped like the real ones, built from the samples in ``tests/events/``, and the topics they
address."""

from __future__ import annotations

import copy
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from core.models import Integration, IntegrationType, Topic
from core.topics import TopicRegistry, hash_topic_secret
from tests.fakes.dynamodb import FakeDynamoDBClient

EVENTS = Path(__file__).resolve().parent.parent / "events"


@cache
def _sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


def load_event(name: str) -> dict[str, Any]:
    """Return a fresh copy of a sample event."""
    return copy.deepcopy(_sample(name))


def api_event(
    method: str,
    resource: str,
    path_parameters: dict[str, str] | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    api_key: str | None = "publisher-api-key-0001",
    api_key_id: str | None = "k1a2b3c4d5",
) -> dict[str, Any]:
    """Return an API Gateway REST proxy event for ``method`` on ``resource`` (a path template like ``/v1/x/{id}``).

    ``body`` may be a string (sent as is) or any JSON value (serialised).
    """
    event = load_event("api_gateway_proxy.json")
    params = path_parameters or {}
    path = resource
    for key, value in params.items():
        path = path.replace("{" + key + "}", value)
    event["resource"] = resource
    event["path"] = path
    event["httpMethod"] = method
    event["pathParameters"] = params or None
    event["headers"].update(headers or {})
    event["multiValueHeaders"] = {key: [value] for key, value in event["headers"].items()}
    event["body"] = body if body is None or isinstance(body, str) else json.dumps(body)
    context = event["requestContext"]
    context.update({"httpMethod": method, "resourcePath": resource, "path": f"/dev{path}"})
    context["requestId"] = str(uuid.uuid4())
    context["identity"]["apiKey"] = api_key
    context["identity"]["apiKeyId"] = api_key_id
    return event


def authorizer_event(authorization: str, method_arn: str | None = None) -> dict[str, Any]:
    """Return a TOKEN authorizer event carrying ``authorization`` as the header value."""
    event = load_event("authorizer_token.json")
    event["authorizationToken"] = authorization
    if method_arn:
        event["methodArn"] = method_arn
    return event


def response_json(response: dict[str, Any]) -> Any:
    """Return the parsed JSON body of a Lambda proxy response."""
    body = response.get("body") or ""
    return json.loads(body) if body else None


def response_header(response: dict[str, Any], name: str) -> str | None:
    """Return a response header by case-insensitive name."""
    for key, value in (response.get("headers") or {}).items():
        if key.lower() == name.lower():
            return str(value)
    multi = response.get("multiValueHeaders") or {}
    for key, values in multi.items():
        if key.lower() == name.lower() and values:
            return str(values[0])
    return None


def publish_event(
    channel: str,
    topic: str,
    body: Any,
    topic_hash: str | None,
    idempotency_key: str | None = None,
    api_key: str | None = "publisher-api-key-0001",
    api_key_id: str | None = "k1a2b3c4d5",
) -> dict[str, Any]:
    """Return the event of ``POST /v1/notifications/{channel}/{topic}`` with the headers a publisher sends."""
    headers = {"X-Topic-Hash-X": topic_hash} if topic_hash is not None else {}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return api_event(
        "POST",
        "/v1/notifications/{channel}/{topic}",
        {"channel": channel, "topic": topic},
        body,
        headers,
        api_key=api_key,
        api_key_id=api_key_id,
    )


def admin_event(
    method: str, resource: str, path_parameters: dict[str, str] | None = None, body: Any = None, token: str = ""
) -> dict[str, Any]:
    """Return a management API event as API Gateway passes it after the admin authorizer allowed ``token``."""
    event = api_event(method, resource, path_parameters, body, {"Authorization": f"Bearer {token}"}, None, None)
    event["requestContext"]["authorizer"] = {"principalId": "admin", "integrationLatency": 12}
    return event


TOPIC_SECRETS = (
    "https://hooks.slack.example/services/T0/B0/slack-secret-4f9a",
    "123456:telegram-secret-8c1d",
    "webhook-secret-2b7e-0123456789",
)


def topic_body() -> dict[str, Any]:
    """Return a fresh copy of the sample topic (one integration of each type); its secrets are ``TOPIC_SECRETS``."""
    return load_event("api_topic_body.json")


def registered_topic_client(tables: dict[str, tuple[str, ...]], model: str) -> FakeDynamoDBClient:
    """Return an in-memory DynamoDB client of ``tables`` whose ``topics`` table holds ``orders/shipped``: one Slack
    integration ``s`` rendering ``model``, topic secret ``right``; the calls that wrote it are forgotten."""
    client = FakeDynamoDBClient(tables)
    TopicRegistry(client, "topics").create(
        Topic(
            channel="orders",
            topic="shipped",
            integrations=[Integration(name="s", type=IntegrationType.SLACK, model=model)],
            hash_sha256=hash_topic_secret("right"),
            created_at="2026-01-01T00:00:00.000Z",
            updated_at="2026-01-01T00:00:00.000Z",
        )
    )
    client.calls.clear()
    return client
