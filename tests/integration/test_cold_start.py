"""Every handler parses its role's settings before anything else: a missing variable fails its cold start naming it,
and the SSRF guard's switch is refused inside Lambda but on the local stack."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest

from core import clients
from core.roles.deliver import DeliverSettings
from core.settings import SettingsError, load_settings
from tests.fakes.lambda_context import FakeLambdaContext
from tests.support.aws import ADMIN_TOKEN, AwsResources
from tests.support.events import api_event, authorizer_event, load_event, publish_event

EVENTS: dict[str, Callable[[], dict[str, Any]]] = {
    "producer.handler": lambda: publish_event("orders", "shipped", {"metadata": {}}, "hash"),
    "api.handler": lambda: api_event("GET", "/v1/health", api_key=None, api_key_id=None),
    "api.authorizer": lambda: authorizer_event(f"Bearer {ADMIN_TOKEN}"),
    "consumer.handler": lambda: load_event("sqs_event.json"),
}


def _invoke(module: str, context: FakeLambdaContext) -> Any:
    handler = importlib.import_module(module).handler
    return handler(EVENTS[module](), context)


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(
    ("module", "variable"),
    [
        ("producer.handler", "IDEMPOTENCY_TABLE"),
        ("producer.handler", "DELIVERY_QUEUE_URL"),
        ("api.handler", "DEAD_LETTER_QUEUE_URL"),
        ("api.handler", "PARAMETER_PREFIX"),
        ("api.authorizer", "ADMIN_TOKEN_HASH_PARAMETER"),
        ("consumer.handler", "PACING_TABLE"),
        ("consumer.handler", "DEAD_LETTER_QUEUE_URL"),
        ("consumer.handler", "STAGE"),
    ],
)
def test_handler_variable_unset_fails_cold_start_naming_it(
    monkeypatch: pytest.MonkeyPatch, lambda_context: FakeLambdaContext, module: str, variable: str
) -> None:
    monkeypatch.delenv(variable)
    clients.reset()

    with pytest.raises(SettingsError, match=rf"\b{variable} is not set\b"):
        _invoke(module, lambda_context)


@pytest.mark.usefixtures("aws")
def test_deliver_handler_private_targets_in_lambda_of_another_stage_fail_cold_start(
    monkeypatch: pytest.MonkeyPatch, lambda_context: FakeLambdaContext
) -> None:
    monkeypatch.setenv("ALLOW_PRIVATE_TARGETS", "true")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "notify-test-deliver")
    clients.reset()

    with pytest.raises(SettingsError, match="ALLOW_PRIVATE_TARGETS=true is refused inside Lambda"):
        _invoke("consumer.handler", lambda_context)


def test_deliver_handler_private_targets_on_the_local_stack_start(
    aws: AwsResources, monkeypatch: pytest.MonkeyPatch, lambda_context: FakeLambdaContext
) -> None:
    for name, value in {
        "ALLOW_PRIVATE_TARGETS": "true",
        "AWS_LAMBDA_FUNCTION_NAME": "notify-local-deliver",
        "STAGE": "local",
        "NOTIFY_LOCAL_STACK": "1",
    }.items():
        monkeypatch.setenv(name, value)
    clients.reset()

    result = _invoke("consumer.handler", lambda_context)

    assert "batchItemFailures" in result
    assert clients.get_http_session(load_settings(DeliverSettings)).allow_private is True
