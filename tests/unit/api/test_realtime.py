"""Unit tests of the token route (api/realtime.py) with API Gateway REST events, keys faked; the handler runs under
moto in tests/integration/realtime."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from api import realtime
from core import clients
from core.realtime.tokens import read_token
from tests.support.events import api_event, response_json
from tests.unit.core.realtime.fakes import FakeKeyRing

URL = "wss://abc123.execute-api.eu-west-1.amazonaws.com/prod"
KEYS = FakeKeyRing()


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "STAGE": "prod",
        "AWS_REGION": "eu-west-1",
        "REALTIME_KEYS_PARAMETER": "/notify/prod/realtime/signing-keys",
        "REALTIME_URL": URL,
        "REALTIME_TOKEN_SECONDS": "900",
        "REALTIME_TOKEN_MAX_SECONDS": "3600",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(realtime, "get_signing_keys", lambda settings: KEYS)
    clients.reset()
    yield
    clients.reset()


def _post(body: Any) -> dict[str, Any]:
    event = api_event("POST", realtime.TOKENS_PATH, body=body)
    result: dict[str, Any] = realtime.app.resolve(event)
    return result


def test_create_token_answers_201_with_token_expiry_and_url() -> None:
    response = _post({"user_id": "alice", "topics": ["orders/shipped"]})

    body = response_json(response)
    assert response["statusCode"] == 201
    assert body["url"] == URL
    assert body["expires_at"].endswith("Z")
    assert response["headers"]["Cache-Control"] == "no-store"


def test_create_token_signs_the_user_and_topics_asked_for() -> None:
    body = response_json(_post({"user_id": "alice", "topics": ["orders/shipped", "orders/shipped"]}))

    claims = read_token(body["token"], KEYS, time.time(), max_seconds=3600)
    assert (claims.user_id, claims.topics) == ("alice", ("orders/shipped",))
    assert claims.expires_at - claims.issued_at == body["expires_in"] == 900


def test_create_token_ttl_over_the_stage_maximum_is_422_naming_it() -> None:
    response = _post({"user_id": "alice", "ttl_seconds": 7200})

    assert response["statusCode"] == 422
    assert response_json(response) == {"message": "ttl_seconds: must be 3600 or less (this stage's longest token)"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "user_id: is required"),
        ({"user_id": "has space"}, "user_id: must be 1-128 characters without spaces or control characters"),
        ({"user_id": "a", "topics": ["nope"]}, "topics[0]: must be <channel>/<topic>"),
        ({"user_id": "a", "ttl_seconds": 5}, "ttl_seconds: must be 60 or more"),
        ({"user_id": "a", "ttl_seconds": "600"}, "ttl_seconds: must be a whole number"),
        ({"user_id": "a", "scope": "all"}, "scope: is not an accepted field"),
    ],
)
def test_create_token_invalid_body_is_422_in_plain_words(body: dict[str, Any], message: str) -> None:
    response = _post(body)

    assert response["statusCode"] == 422
    assert response_json(response)["message"].startswith(message)


def test_create_token_malformed_json_is_400() -> None:
    assert _post("{not json")["statusCode"] == 400
