"""Helpers of the management API suites: call the handler as API Gateway does once the admin authorizer allowed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.lambda_context import FakeLambdaContext
from tests.support.aws import ADMIN_TOKEN, AwsResources
from tests.support.events import admin_event

TOPIC = "/v1/channels/{channel}/topics/{topic}"


class AdminApi:
    """Calls the management API function with admin events."""

    def __init__(self, context: FakeLambdaContext) -> None:
        self._context = context

    def call(
        self,
        method: str,
        resource: str,
        path_parameters: dict[str, str] | None = None,
        body: Any = None,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Invoke the handler with an admin event (``query``: its query string) and return its proxy result."""
        from api.handler import handler

        event = admin_event(method, resource, path_parameters, body, ADMIN_TOKEN)
        event["queryStringParameters"] = query
        result: dict[str, Any] = handler(event, self._context)
        return result

    def put_topic(self, body: Any, channel: str = "orders", topic: str = "shipped") -> dict[str, Any]:
        """``PUT /v1/channels/{channel}/topics/{topic}``."""
        return self.call("PUT", TOPIC, {"channel": channel, "topic": topic}, body)


@pytest.fixture
def admin(aws: AwsResources, lambda_context: FakeLambdaContext) -> AdminApi:
    """The management API, on moto."""
    return AdminApi(lambda_context)
