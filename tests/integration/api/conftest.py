"""Helpers of the management API suites: call the handler as API Gateway does once the admin authorizer allowed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.observability import logger
from tests.fakes.lambda_context import FakeLambdaContext
from tests.fakes.log_stream import CurrentStdout
from tests.support.aws import ADMIN_TOKEN, AwsResources
from tests.support.events import admin_event

TOPIC = "/v1/channels/{channel}/topics/{topic}"


class AdminApi:
    """Calls the management API function with admin events."""

    def __init__(self, context: FakeLambdaContext) -> None:
        self._context = context

    def call(
        self, method: str, resource: str, path_parameters: dict[str, str] | None = None, body: Any = None
    ) -> dict[str, Any]:
        """Invoke the handler with an admin event and return its proxy result."""
        from api.handler import handler

        result: dict[str, Any] = handler(
            admin_event(method, resource, path_parameters, body, ADMIN_TOKEN), self._context
        )
        return result

    def put_topic(self, body: Any, channel: str = "orders", topic: str = "shipped") -> dict[str, Any]:
        """``PUT /v1/channels/{channel}/topics/{topic}``."""
        return self.call("PUT", TOPIC, {"channel": channel, "topic": topic}, body)


@pytest.fixture
def admin(aws: AwsResources, lambda_context: FakeLambdaContext) -> AdminApi:
    """The management API, on moto."""
    return AdminApi(lambda_context)


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """What the functions log: powertools' handler holds the stdout of import time, so it is redirected to capsys."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(CurrentStdout())
    yield lambda: capsys.readouterr().out
    handler.setStream(previous)
