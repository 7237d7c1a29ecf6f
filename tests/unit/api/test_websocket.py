"""Unit tests of the WebSocket API's routes (api/websocket.py) with API Gateway WebSocket events, on fakes; the
handler itself (powertools around ``route``) runs under moto in tests/integration/realtime."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from api import websocket
from core import clients
from core.realtime.connections import Connection
from core.realtime.sessions import MAX_CONNECTIONS_PER_USER
from core.realtime.tokens import issue_token, read_token
from tests.unit.core.realtime.fakes import FakeConnectionStore, FakeKeyRing

KEYS = FakeKeyRing()


def ws_event(route: str, connection_id: str = "L0SM9cOFvHcCIhw=", **extra: Any) -> dict[str, Any]:
    """An API Gateway WebSocket event of ``route``, shaped as API Gateway sends it."""
    kinds = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}
    event: dict[str, Any] = {
        "requestContext": {
            "routeKey": route,
            "eventType": kinds.get(route, "MESSAGE"),
            "extendedRequestId": "Z2OHaHn1oAMFv7A=",
            "requestTime": "15/Jan/2027:08:00:00 +0000",
            "messageDirection": "IN",
            "stage": "prod",
            "connectedAt": 1800000000000,
            "requestTimeEpoch": 1800000000000,
            "identity": {"sourceIp": "203.0.113.9", "userAgent": "Mozilla/5.0"},
            "requestId": "Z2OHaFcpIAMFz1g=",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "connectionId": connection_id,
            "apiId": "abc123",
        },
        "isBase64Encoded": False,
    }
    event.update(extra)
    return event


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConnectionStore]:
    for name, value in {
        "STAGE": "prod",
        "AWS_REGION": "eu-west-1",
        "CONNECTIONS_TABLE": "notify-prod-connections",
        "REALTIME_KEYS_PARAMETER": "/notify/prod/realtime/signing-keys",
    }.items():
        monkeypatch.setenv(name, value)
    fake = FakeConnectionStore()
    monkeypatch.setattr(websocket, "get_signing_keys", lambda settings: KEYS)
    monkeypatch.setattr(websocket, "get_connection_store", lambda settings: fake)
    clients.reset()
    yield fake
    clients.reset()


def _call(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = websocket.route(event)
    return result


def _token(user: str = "alice", topics: tuple[str, ...] = ("orders/shipped",), ttl: int = 900) -> str:
    return issue_token(user, topics, ttl, KEYS, time.time()).token


def test_connect_with_a_good_token_answers_200_and_stores_the_connection(store: FakeConnectionStore) -> None:
    response = _call(ws_event("$connect", queryStringParameters={"token": _token()}))

    assert response == {"statusCode": 200}
    stored = store.get("L0SM9cOFvHcCIhw=")
    assert stored is not None
    assert (stored.user_id, stored.topics) == ("alice", ("orders/shipped",))


def test_connect_forged_token_is_refused_401(store: FakeConnectionStore) -> None:
    forged = issue_token("alice", (), 900, FakeKeyRing(keys={"k1": b"f" * 32}), time.time()).token

    response = _call(ws_event("$connect", queryStringParameters={"token": forged}))

    assert response["statusCode"] == 401
    assert json.loads(response["body"]) == {"message": "the token's signature does not verify"}
    assert store.connections == {}


@pytest.mark.parametrize("part", [2, 3])
def test_connect_token_with_non_ascii_text_is_refused_401(store: FakeConnectionStore, part: int) -> None:
    parts = _token().split(".")
    parts[part] = "\u00e9" + parts[part][1:]

    response = _call(ws_event("$connect", queryStringParameters={"token": ".".join(parts)}))

    assert response["statusCode"] == 401
    assert json.loads(response["body"]) == {"message": "the token is malformed"}
    assert store.connections == {}


def test_connect_expired_token_is_refused_401(store: FakeConnectionStore) -> None:
    expired = issue_token("alice", (), 60, KEYS, time.time() - 61).token

    response = _call(ws_event("$connect", queryStringParameters={"token": expired}))

    assert response["statusCode"] == 401


def test_connect_without_query_string_is_refused_401(store: FakeConnectionStore) -> None:
    assert _call(ws_event("$connect", queryStringParameters=None))["statusCode"] == 401


def test_connect_topic_outside_the_token_is_refused_403(store: FakeConnectionStore) -> None:
    event = ws_event("$connect", queryStringParameters={"token": _token(), "topics": "billing/invoices"})

    assert _call(event)["statusCode"] == 403


def test_connect_beyond_the_users_connection_limit_is_refused_409(store: FakeConnectionStore) -> None:
    token = _token()
    for index in range(MAX_CONNECTIONS_PER_USER):
        _call(ws_event("$connect", f"conn{index:012d}=", queryStringParameters={"token": token}))

    response = _call(ws_event("$connect", "OneTooMany00000=", queryStringParameters={"token": token}))

    assert response["statusCode"] == 409
    assert json.loads(response["body"])["message"].startswith(f"this user has {MAX_CONNECTIONS_PER_USER} open")
    assert store.get("OneTooMany00000=") is None


def test_disconnect_removes_the_connection(store: FakeConnectionStore) -> None:
    _call(ws_event("$connect", queryStringParameters={"token": _token()}))

    response = _call(ws_event("$disconnect", disconnectStatusCode=1001, disconnectReason="Going away"))

    assert response == {"statusCode": 200}
    assert store.connections == {}


def test_disconnect_of_an_unknown_connection_answers_200(store: FakeConnectionStore) -> None:
    assert _call(ws_event("$disconnect")) == {"statusCode": 200}


def test_default_refresh_frame_answers_a_new_token_for_the_same_user(store: FakeConnectionStore) -> None:
    _call(ws_event("$connect", queryStringParameters={"token": _token()}))

    response = _call(ws_event("$default", body=json.dumps({"action": "refresh"})))

    frame = json.loads(response["body"])
    assert (response["statusCode"], frame["type"]) == (200, "token")
    claims = read_token(frame["token"], KEYS, time.time(), max_seconds=3600)
    assert claims.user_id == "alice"
    assert frame["expires_in"] == claims.expires_at - claims.issued_at > 0


def test_default_ping_frame_answers_200_with_nothing_to_send_back(store: FakeConnectionStore) -> None:
    # The client pings every 5 minutes so that API Gateway never closes its connection idle (after 10).
    _call(ws_event("$connect", queryStringParameters={"token": _token()}))

    assert _call(ws_event("$default", body=json.dumps({"action": "ping"}))) == {"statusCode": 200}


def test_default_refresh_of_an_expired_connection_is_refused(store: FakeConnectionStore) -> None:
    store.add(Connection("L0SM9cOFvHcCIhw=", "alice", (), 0, int(time.time()) - 1))

    response = _call(ws_event("$default", body=json.dumps({"action": "refresh"})))

    assert response["statusCode"] == 401
    assert json.loads(response["body"])["type"] == "error"


@pytest.mark.parametrize(
    "body", ["not json", json.dumps({"action": "subscribe"}), json.dumps([1]), "", "x" * 5000, "[" * 2000]
)
def test_default_other_frames_answer_an_error_frame(store: FakeConnectionStore, body: str) -> None:
    response = _call(ws_event("$default", body=body))

    assert response["statusCode"] == 400
    assert json.loads(response["body"])["type"] == "error"


def test_handler_not_a_websocket_event_answers_400(store: FakeConnectionStore) -> None:
    assert _call({"hello": "world"})["statusCode"] == 400
