"""The realtime handlers on moto: the token route's and the WebSocket function's, with the signing keys in SSM and a
key rotation between issuing a token and using it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from api import realtime as token_route
from api import websocket
from core import clients
from core.realtime.keys import rotate
from core.realtime.tokens import read_token
from tests.fakes.lambda_context import FakeLambdaContext
from tests.integration.realtime.conftest import CONNECTIONS_TABLE, KEYS_PARAMETER, create_connections_table
from tests.support.aws import AwsResources
from tests.support.aws import client as aws_client
from tests.support.events import api_event, response_json
from tests.unit.api.test_websocket import ws_event

URL = "wss://abc123.execute-api.us-east-1.amazonaws.com/test"


@pytest.fixture
def keys(aws: AwsResources, monkeypatch: pytest.MonkeyPatch) -> Any:
    create_connections_table(aws_client("dynamodb"))
    rotate(aws.ssm, KEYS_PARAMETER)
    for name, value in {
        "CONNECTIONS_TABLE": CONNECTIONS_TABLE,
        "REALTIME_KEYS_PARAMETER": KEYS_PARAMETER,
        "REALTIME_URL": URL,
    }.items():
        monkeypatch.setenv(name, value)
    clients.reset()
    return aws.ssm


def _token(body: dict[str, Any]) -> dict[str, Any]:
    response = token_route.handler(api_event("POST", token_route.TOKENS_PATH, body=body), FakeLambdaContext())
    assert response["statusCode"] == 201, response
    result: dict[str, Any] = response_json(response)
    return result


def _connect(token: str, connection_id: str = "L0SM9cOFvHcCIhw=") -> dict[str, Any]:
    event = ws_event("$connect", connection_id, queryStringParameters={"token": token})
    result: dict[str, Any] = websocket.handler(event, FakeLambdaContext())
    return result


def test_token_route_handler_answers_the_url_of_the_websocket_api(keys: Any) -> None:
    body = _token({"user_id": "alice", "topics": ["orders/shipped"], "ttl_seconds": 300})

    assert body["url"] == URL
    assert read_token(body["token"], clients.get_signing_keys(), time.time()).expires_at - time.time() <= 300


def test_connect_handler_token_from_the_route_opens_a_connection(keys: Any) -> None:
    assert _connect(_token({"user_id": "alice"})["token"]) == {"statusCode": 200}


def test_connect_handler_token_issued_before_a_key_rotation_still_connects(keys: Any) -> None:
    token = _token({"user_id": "alice"})["token"]
    rotate(keys, KEYS_PARAMETER)
    clients.reset()

    assert _connect(token) == {"statusCode": 200}


def test_connect_handler_token_signed_with_a_key_added_after_the_verifier_read_the_keys(
    keys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _connect(_token({"user_id": "alice"})["token"], "first0000000000=")  # the verifier has read the keys
    new_key = rotate(keys, KEYS_PARAMETER)
    clients.reset()  # the signer (another container) reads the new key; the verifier's cache is older
    fresh = _token({"user_id": "alice"})["token"]
    assert fresh.split(".")[1] == new_key
    monkeypatch.setattr("core.realtime.keys.REFRESH_FLOOR_SECONDS", 0.0)

    assert _connect(fresh, "second000000000=") == {"statusCode": 200}


def test_connect_handler_token_of_a_dropped_key_is_refused(keys: Any) -> None:
    token = _token({"user_id": "alice"})["token"]
    for _ in range(2):
        rotate(keys, KEYS_PARAMETER, keep_seconds=0)
    clients.reset()

    response = _connect(token)

    assert response["statusCode"] == 401
    assert json.loads(response["body"])["message"] == "the token was signed with a key this service does not hold"


def test_token_route_without_signing_keys_is_502_saying_how_to_set_them_up(keys: Any) -> None:
    keys.delete_parameter(Name=KEYS_PARAMETER)
    clients.reset()

    response = token_route.handler(
        api_event("POST", token_route.TOKENS_PATH, body={"user_id": "a"}), FakeLambdaContext()
    )

    assert response["statusCode"] == 502
    assert "python -m core.realtime.keys rotate" in response_json(response)["message"]
