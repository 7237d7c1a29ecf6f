"""Reading osls' packaged state: its $ref pointers, functions, events and the REST API's gateway responses."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from infra.local.definition import DefinitionError, GatewayResponse, gateway_responses, load, resolve_state_refs


def test_resolve_state_refs_follows_pointers() -> None:
    root = {"a": {"b": [{"c": 1}]}, "x": {"$ref": '$["a"]["b"][0]'}}

    assert resolve_state_refs(root["x"], root) == {"c": 1}


def _write(tmp_path: Path, functions: Mapping[str, object], resources: Mapping[str, object]) -> Path:
    state = {
        "service": {"service": "svc", "provider": {"stage": "local", "region": "us-east-1"}, "functions": functions}
    }
    (tmp_path / "serverless-state.json").write_text(json.dumps(state))
    (tmp_path / "cloudformation-template-update-stack.json").write_text(json.dumps({"Resources": resources}))
    return tmp_path


def _lambda(name: str, handler: str, env: dict[str, object]) -> dict[str, object]:
    props = {"FunctionName": name, "Handler": handler, "Timeout": 7, "MemorySize": 256}
    return {"Type": "AWS::Lambda::Function", "Properties": {**props, "Environment": {"Variables": env}}}


def test_load_reads_functions_and_every_event_kind(tmp_path: Path) -> None:
    authorizer = {"name": "auth", "type": "token", "arn": {"Fn::GetAtt": ["AuthLambdaFunction", "Arn"]}}
    functions = {
        "api": {
            "name": "svc-local-api",
            "events": [
                {"http": {"path": "v1/things/{id}", "method": "get", "private": True}},
                {"http": {"path": "v1/admin", "method": "put", "authorizer": authorizer}},
            ],
        },
        "auth": {"name": "svc-local-auth", "events": []},
        "work": {
            "name": "svc-local-work",
            "events": [
                {
                    "sqs": {
                        "arn": {"Fn::GetAtt": ["Queue", "Arn"]},
                        "batchSize": 5,
                        "functionResponseType": "ReportBatchItemFailures",
                    }
                },
                {"sns": "purchase"},
                {"schedule": {"rate": ["rate(1 hour)", "cron(0 8 * * ? *)"], "enabled": False}},
                {"s3": "bucket"},
            ],
        },
    }
    resources = {
        "ApiLambdaFunction": _lambda("svc-local-api", "api/handler.handler", {"Q": {"Ref": "Queue"}}),
        "AuthLambdaFunction": _lambda("svc-local-auth", "api/authorizer.handler", {}),
        "WorkLambdaFunction": _lambda("svc-local-work", "work/handler.handler", {}),
    }

    service = load(_write(tmp_path, functions, resources), "123456789012")

    assert service.functions["api"].environment == {"Q": {"Ref": "Queue"}}
    assert service.functions["api"].timeout == 7
    assert [(e.method, e.path, e.private) for e in service.http] == [
        ("GET", "/v1/things/{id}", True),
        ("PUT", "/v1/admin", False),
    ]
    assert service.http[1].authorizer is not None
    assert service.http[1].authorizer.function == "auth"
    assert service.sqs[0].batch_size == 5
    assert service.sqs[0].report_failures
    assert service.sns[0].topic_arn == "arn:aws:sns:us-east-1:123456789012:purchase"
    assert [(s.expression, s.enabled) for s in service.schedules] == [
        ("rate(1 hour)", False),
        ("cron(0 8 * * ? *)", False),
    ]
    assert service.unplayed == ["work: s3"]


def _response(kind: str, **props: object) -> dict[str, object]:
    return {
        "Type": "AWS::ApiGateway::GatewayResponse",
        "Properties": {"RestApiId": {"Ref": "ApiGatewayRestApi"}, "ResponseType": kind, **props},
    }


def test_gateway_responses_reads_status_templates_and_static_headers() -> None:
    template = {
        "Resources": {
            "Unauthorized": _response(
                "UNAUTHORIZED",
                StatusCode="401",
                ResponseTemplates={"application/json": '{"message": "send a token"}'},
                ResponseParameters={"gatewayresponse.header.WWW-Authenticate": "'Bearer'"},
            )
        }
    }

    assert gateway_responses(template) == {
        "UNAUTHORIZED": GatewayResponse(
            "UNAUTHORIZED", 401, {"application/json": '{"message": "send a token"}'}, {"WWW-Authenticate": "Bearer"}
        )
    }


def test_gateway_responses_without_status_code_keep_none() -> None:
    template = {"Resources": {"Default": _response("DEFAULT_4XX")}}

    assert gateway_responses(template)["DEFAULT_4XX"].status_code is None


def test_gateway_responses_of_another_rest_api_are_left_out() -> None:
    other = {
        "Type": "AWS::ApiGateway::GatewayResponse",
        "Properties": {"RestApiId": {"Ref": "OtherApi"}, "ResponseType": "THROTTLED"},
    }

    assert gateway_responses({"Resources": {"Other": other}}) == {}


def test_gateway_responses_request_mapped_header_is_listed_unplayed() -> None:
    mapped = {"gatewayresponse.header.x-request": "method.request.header.x-request"}
    unplayed: list[str] = []

    found = gateway_responses({"Resources": {"R": _response("THROTTLED", ResponseParameters=mapped)}}, unplayed)

    assert found["THROTTLED"].headers == {}
    assert unplayed == [
        "gateway response THROTTLED: gatewayresponse.header.x-request = method.request.header.x-request"
    ]


def test_gateway_responses_status_code_not_a_number_raises() -> None:
    with pytest.raises(DefinitionError, match="StatusCode"):
        gateway_responses({"Resources": {"R": _response("THROTTLED", StatusCode={"Ref": "Status"})}})


def test_load_reads_the_gateway_responses(tmp_path: Path) -> None:
    resources = {"Missing": _response("MISSING_AUTHENTICATION_TOKEN", StatusCode="403")}

    service = load(_write(tmp_path, {}, resources), "123456789012")

    assert service.gateway_responses["MISSING_AUTHENTICATION_TOKEN"].status_code == 403


def test_load_reads_websocket_routes_and_their_route_responses(tmp_path: Path) -> None:
    functions = {
        "websocket": {
            "name": "svc-local-websocket",
            "events": [
                {"websocket": {"route": "$connect"}},
                {"websocket": "$disconnect"},
                {"websocket": {"route": "$default", "routeResponseSelectionExpression": "$default"}},
            ],
        }
    }
    resources = {"WebsocketLambdaFunction": _lambda("svc-local-websocket", "api/websocket.handler", {})}

    service = load(_write(tmp_path, functions, resources), "123456789012")

    assert [(e.function, e.route, e.route_response) for e in service.websocket] == [
        ("websocket", "$connect", False),
        ("websocket", "$disconnect", False),
        ("websocket", "$default", True),
    ]
    assert service.websocket_route_selection == "$request.body.action"
    assert service.unplayed == []
