"""Unit tests of the local WebSocket API's pieces that need no socket (infra/local/websocket.py): the definition's
URLs of the WebSocket API resolved to the local servers, route selection, and the events' shapes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request

from infra.local.definition import FunctionSpec, ServiceDefinition, WebsocketEvent
from infra.local.websocket import (
    LocalConnection,
    WebsocketApi,
    WebsocketApiError,
    local_urls,
    new_connection_id,
)

URL = {
    "Fn::Join": [
        "",
        [
            "wss://",
            {"Ref": "WebsocketsApi"},
            ".execute-api.",
            {"Ref": "AWS::Region"},
            ".",
            {"Ref": "AWS::URLSuffix"},
            "/local",
        ],
    ]
}
MANAGEMENT = {
    "Fn::Join": [
        "",
        ["https://", {"Ref": "WebsocketsApi"}, ".execute-api.", {"Ref": "AWS::Region"}, ".amazonaws.com/local"],
    ]
}


def _service(
    environment: dict[str, Any] | None = None, routes: tuple[str, ...] = ("$connect", "$default")
) -> ServiceDefinition:
    spec = FunctionSpec(
        "websocket",
        "svc-local-websocket",
        "WebsocketLambdaFunction",
        "api/websocket.handler",
        10,
        256,
        environment or {},
    )
    return ServiceDefinition(
        service="svc",
        stage="local",
        region="us-east-1",
        template={},
        functions={"websocket": spec},
        websocket=[WebsocketEvent("websocket", route, route == "$default") for route in routes],
    )


def test_local_urls_wss_url_of_the_api_is_the_local_websocket_server_with_its_stage() -> None:
    resolved = local_urls(_service({"REALTIME_URL": URL}), "ws://127.0.0.1:4001", "http://127.0.0.1:4002")

    assert resolved == {json.dumps(URL, sort_keys=True): "ws://127.0.0.1:4001/local"}


def test_local_urls_https_url_of_the_api_is_the_local_management_api() -> None:
    resolved = local_urls(_service({"M": MANAGEMENT}), "ws://127.0.0.1:4001", "http://127.0.0.1:4002")

    assert list(resolved.values()) == ["http://127.0.0.1:4002/local"]


def test_local_urls_other_values_are_left_to_the_stack() -> None:
    assert local_urls(_service({"Q": {"Ref": "DeliveryQueue"}, "S": "x"}), "ws://a", "http://b") == {}


def test_local_urls_intrinsic_it_cannot_evaluate_is_an_error() -> None:
    odd = {"Fn::GetAtt": ["WebsocketsApi", "ApiEndpoint"]}

    with pytest.raises(WebsocketApiError, match="cannot evaluate"):
        local_urls(_service({"U": odd}), "ws://a", "http://b")


@pytest.mark.parametrize(
    ("body", "route"),
    [
        ('{"action": "refresh"}', "$default"),
        ('{"action": "ping"}', "ping"),
        ("not json", "$default"),
        ("[]", "$default"),
    ],
)
def test_select_route_action_of_a_declared_route_else_default(body: str, route: str) -> None:
    api = WebsocketApi(_service(routes=("$connect", "$default", "ping")), {}, lambda line: None)

    assert api.select_route(body) == route


def test_select_route_without_default_is_none() -> None:
    api = WebsocketApi(_service(routes=("$connect",)), {}, lambda line: None)

    assert api.select_route('{"action": "refresh"}') is None


def test_connect_event_is_shaped_as_api_gateways() -> None:
    api = WebsocketApi(_service(), {}, lambda line: None)
    request = Request("/local?token=abc&topics=a%2Fb", Headers({"Host": "127.0.0.1", "User-Agent": "UA/1"}))

    event = api.connect_event("L0SM9cOFvHcCIhw=", request, "127.0.0.1")

    context = event["requestContext"]
    assert (context["routeKey"], context["eventType"], context["connectionId"]) == (
        "$connect",
        "CONNECT",
        "L0SM9cOFvHcCIhw=",
    )
    assert (context["stage"], context["messageDirection"], context["identity"]["userAgent"]) == ("local", "IN", "UA/1")
    assert {"apiId", "domainName", "requestId", "requestTimeEpoch", "connectedAt"} <= set(context)
    assert event["queryStringParameters"] == {"token": "abc", "topics": "a/b"}


def test_message_event_carries_the_frame_as_body() -> None:
    api = WebsocketApi(_service(), {}, lambda line: None)
    from datetime import UTC, datetime

    connection = LocalConnection("c1", None, datetime.now(UTC), "127.0.0.1", None)  # type: ignore[arg-type]

    event = api.message_event("$default", connection, '{"action": "refresh"}')

    assert (event["requestContext"]["eventType"], event["body"]) == ("MESSAGE", '{"action": "refresh"}')


def test_new_connection_id_looks_like_api_gateways_and_needs_no_escaping_but_the_padding() -> None:
    ids = {new_connection_id() for _ in range(200)}

    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{15}=", value) for value in ids)


@pytest.mark.parametrize("ttl", ["\u00b2", "1" * 5000])
def test_realtime_demo_token_with_an_odd_ttl_is_asked_without_it(ttl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # str.isdigit() takes "²" and int() refuses it (and over 4,300 digits): the connection was dropped.
    from infra.local import websocket as module

    asked: list[Any] = []

    def call(method: str, url: str, body: Any, headers: Any) -> tuple[int, Any]:
        asked.append(body)
        return 201, {}

    monkeypatch.setattr(module, "_call", call)
    demo = module.RealtimeDemo("http://127.0.0.1:9", "key", "admin", "ws://127.0.0.1:9")

    status, _headers, _body = demo.serve("/_realtime/token", {"ttl_seconds": ttl, "topics": "x/y"}, "GET")

    assert (status, asked) == (201, [{"user_id": "demo-user", "topics": ["x/y"]}])
