"""Reading osls' packaged state: its $ref pointers, functions and events."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from infra.local.definition import load, resolve_state_refs


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
