"""A function's process environment on the local stack (infra/local/workers.py)."""

from __future__ import annotations

import pytest

from core.settings import DeliverSettings
from infra.local.definition import FunctionSpec
from infra.local.workers import function_env

SPEC = FunctionSpec(
    key="deliver",
    name="notify-local-deliver",
    logical_id="DeliverLambdaFunction",
    handler="consumer/handler.handler",
    timeout=30,
    memory=256,
    environment={},
)
RESOLVED = {
    "STAGE": "local",
    "DELIVERIES_TABLE": "notify-local-ledger",
    "DELIVERY_QUEUE_URL": "http://127.0.0.1:3002/123456789012/notify-local-deliveries",
    "DEAD_LETTER_QUEUE_URL": "http://127.0.0.1:3002/123456789012/notify-local-deliveries-dlq",
    "PACING_TABLE": "notify-local-pacing",
    "ALLOW_PRIVATE_TARGETS": "true",
}


def _env(resolved: dict[str, str]) -> dict[str, str]:
    return function_env(SPEC, resolved, "http://127.0.0.1:3002", "us-east-1", {})


def test_function_env_carries_the_local_stack_marker_over_the_definition() -> None:
    assert _env({**RESOLVED, "NOTIFY_LOCAL_STACK": "0"})["NOTIFY_LOCAL_STACK"] == "1"


def test_function_env_passes_on_no_variable_only_the_real_lambda_runtime_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.12")
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")

    env = _env(RESOLVED)

    assert "AWS_EXECUTION_ENV" not in env
    assert "AWS_LAMBDA_RUNTIME_API" not in env


def test_function_env_local_deliver_may_allow_private_targets() -> None:
    settings = DeliverSettings.from_env(_env(RESOLVED))

    assert settings.allow_private_targets is True
    assert settings.on_local_stack is True
