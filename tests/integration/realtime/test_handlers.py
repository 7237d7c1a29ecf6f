"""The realtime handlers on moto: the token route's and the WebSocket function's, with the signing keys in SSM and a
key rotation between issuing a token and using it; refreshes over a connection as its clock moves on."""

from __future__ import annotations

import json
import time
import types
from collections.abc import Callable
from typing import Any

import pytest

from api import realtime as token_route
from api import websocket
from core import clients
from core.realtime.keys import KeySet, rotate
from core.realtime.tokens import issue_token, read_token
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


def _refresh(connection_id: str = "L0SM9cOFvHcCIhw=") -> dict[str, Any]:
    event = ws_event("$default", connection_id, body=json.dumps({"action": "refresh"}))
    frame: dict[str, Any] = json.loads(websocket.handler(event, FakeLambdaContext())["body"])
    return frame


def _websocket_clock(monkeypatch: pytest.MonkeyPatch, start: float) -> Callable[[float], None]:
    """Move the WebSocket function's clock (it checks tokens and signs refreshed ones) to ``start`` + a number of
    seconds; the token route's stays real."""
    now = {"at": start}
    monkeypatch.setattr(websocket, "time", types.SimpleNamespace(time=lambda: now["at"]))
    return lambda seconds: now.update(at=start + seconds)


def _refresh_every_30_seconds(move: Callable[[float], None], seconds: int) -> tuple[int | None, str]:
    """Refresh as the client does a 60 s token's (every half of its life) for ``seconds``, or until refused; return
    when it was refused (seconds from the start; ``None``: never) and the last token it got."""
    last = ""
    for step in range(1, seconds // 30 + 1):
        move(30 * step)
        frame = _refresh()
        if frame["type"] != "token":
            return 30 * step, last
        last = frame["token"]
    return None, last


def test_token_route_handler_answers_the_url_of_the_websocket_api(keys: Any) -> None:
    body = _token({"user_id": "alice", "topics": ["orders/shipped"], "ttl_seconds": 300})

    assert body["url"] == URL
    assert (
        read_token(body["token"], clients.get_signing_keys(), time.time(), max_seconds=3600).expires_at - time.time()
        <= 300
    )


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


def test_refresh_handler_chain_of_a_60_second_token_is_refused_within_the_stage_maximum(
    keys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 60 s token from the backend, refreshed over its connection every 30 s, was refreshed for ever: a leaked token,
    # or a user logged out of the app, kept hearing notifications without the backend ever being asked again.
    issued = _token({"user_id": "mallory", "ttl_seconds": 60})
    move = _websocket_clock(monkeypatch, time.time())
    assert _connect(issued["token"]) == {"statusCode": 200}

    refused_at, _ = _refresh_every_30_seconds(move, 2 * 3600)

    assert refused_at is not None
    assert refused_at <= 3600  # REALTIME_TOKEN_MAX_SECONDS: this stage's longest session without the backend


def test_refresh_handler_after_every_token_was_refused_signs_nothing(keys: Any) -> None:
    # README: "to refuse every token at once, rotate twice with --keep-seconds 0". A connection opened before the
    # rotations was refreshed with a token of the new key, which opened new connections as its user.
    leaked = _token({"user_id": "victim", "topics": ["billing/invoices"]})["token"]
    assert _connect(leaked, "Attacker0000000=") == {"statusCode": 200}
    for _ in range(2):
        rotate(keys, KEYS_PARAMETER, keep_seconds=0)
    clients.reset()

    frame = _refresh("Attacker0000000=")

    assert frame["type"] == "error", frame
    assert "revoked" in frame["message"]
    assert _connect(leaked, "Attacker0000001=")["statusCode"] == 401


def test_refresh_handler_between_the_two_rotations_launders_nothing(keys: Any) -> None:
    # A page refreshing in a loop got, between the two rotations, a token of the second key: the second rotation only
    # retired that key, so the connection kept being refreshed and the token opened new connections as its user.
    leaked = _token({"user_id": "victim", "topics": ["billing/invoices"]})["token"]
    assert _connect(leaked, "Attacker0000000=") == {"statusCode": 200}
    rotate(keys, KEYS_PARAMETER, keep_seconds=0)
    clients.reset()
    laundered = _refresh("Attacker0000000=")
    assert laundered["type"] == "token"
    rotate(keys, KEYS_PARAMETER, keep_seconds=0)
    clients.reset()

    refreshed = _refresh("Attacker0000000=")["type"]
    reopened = _connect(laundered["token"], "Attacker0000001=")["statusCode"]

    assert (refreshed, reopened) == ("error", 401)


def test_refresh_handler_of_a_connection_stored_by_the_release_before_checks_the_key_it_kept(keys: Any) -> None:
    # That release wrote key_id and token_issued_at: read as "not known", the connection was refreshed after every
    # token was refused, and its new token opened connections.
    leaked = _token({"user_id": "victim", "topics": ["billing/invoices"]})["token"]
    assert _connect(leaked, "Attacker0000000=") == {"statusCode": 200}
    dynamodb = aws_client("dynamodb")
    for item in dynamodb.scan(TableName=CONNECTIONS_TABLE)["Items"]:
        if item.get("connection_id", {}).get("S") == "Attacker0000000=":
            item["key_id"], item["token_issued_at"] = item.pop("session_key_id"), item.pop("session_issued_at")
            dynamodb.put_item(TableName=CONNECTIONS_TABLE, Item=item)
    for _ in range(2):
        rotate(keys, KEYS_PARAMETER, keep_seconds=0)
    clients.reset()

    assert _refresh("Attacker0000000=")["type"] == "error"


def test_refresh_handler_after_one_rotation_renews_and_the_next_refresh_too(keys: Any) -> None:
    # A rotation keeps the retired key: tokens signed before it work until they expire, and so do their refreshes,
    # whose tokens the new key signs.
    assert _connect(_token({"user_id": "alice"})["token"]) == {"statusCode": 200}
    new_key = rotate(keys, KEYS_PARAMETER)
    clients.reset()

    first = _refresh()
    second = _refresh()

    assert (first["type"], second["type"]) == ("token", "token"), (first, second)
    assert first["token"].split(".")[1] == new_key
    assert _connect(second["token"], "Reconnected0000=") == {"statusCode": 200}


def test_connect_handler_refreshed_token_opens_nothing_once_its_session_ended(
    keys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = _token({"user_id": "mallory", "ttl_seconds": 60})
    move = _websocket_clock(monkeypatch, time.time())
    assert _connect(issued["token"]) == {"statusCode": 200}
    _, last = _refresh_every_30_seconds(move, 3600 - 30)
    move(3600)

    response = _connect(last, "Reconnected0000=")

    assert response["statusCode"] == 401


def _key_set(ssm: Any) -> KeySet:
    return KeySet.from_json(ssm.get_parameter(Name=KEYS_PARAMETER, WithDecryption=True)["Parameter"]["Value"])


class _StolenKey:
    """A key ring of one key someone copied: it signs with it, whatever the service has done with it since."""

    def __init__(self, key_id: str, secret: bytes) -> None:
        self._key = (key_id, secret)

    def signing_key(self) -> tuple[str, bytes]:
        return self._key

    def verification_key(self, key_id: str) -> None:
        return None


def test_connect_handler_token_signed_with_a_key_after_its_retirement_is_refused(keys: Any) -> None:
    # A rotation after a key leaked revoked nothing: tokens signed with it later, for any user and any lifetime,
    # verified until a second rotation dropped it.
    now = time.time()
    keys.delete_parameter(Name=KEYS_PARAMETER)
    leaked = rotate(keys, KEYS_PARAMETER, now=now - 2 * 86400)
    rotate(keys, KEYS_PARAMETER, now=now - 86400)
    stolen = _StolenKey(leaked, _key_set(keys).keys[leaked].secret)
    clients.reset()

    response = _connect(issue_token("victim", ("billing/invoices",), 900, stolen, now).token)

    assert response["statusCode"] == 401


def test_connect_handler_token_living_longer_than_the_stage_maximum_is_refused(keys: Any) -> None:
    token = issue_token("alice", (), 7200, clients.get_signing_keys(), time.time()).token

    response = _connect(token)

    assert response["statusCode"] == 401


def test_connect_handler_24_hour_token_survives_two_rotations_an_hour_apart(
    keys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The settings allow a stage 24 h tokens; a rotation kept a retired key 3,900 s, so the second rotation of a day
    # dropped the key of every live long token, refused 401 at their next connect.
    monkeypatch.setenv("REALTIME_TOKEN_MAX_SECONDS", "86400")
    now = time.time()
    keys.delete_parameter(Name=KEYS_PARAMETER)
    rotate(keys, KEYS_PARAMETER, now=now - 5000)
    clients.reset()
    token = issue_token("alice", (), 86400, clients.get_signing_keys(), now - 4999).token
    rotate(keys, KEYS_PARAMETER, now=now - 4000)
    rotate(keys, KEYS_PARAMETER, now=now - 10)
    clients.reset()

    assert _connect(token) == {"statusCode": 200}
