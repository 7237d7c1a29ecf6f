"""The realtime pieces on moto, with the local WebSocket API (infra/local/websocket.py) in this process: its routes
invoke the real ``websocket`` handler, its Management API answers the unmodified boto3 client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from core import clients
from core.ledger import NotificationRecord
from core.realtime.keys import rotate
from infra.local.definition import FunctionSpec, ServiceDefinition, WebsocketEvent
from infra.local.websocket import WebsocketApi
from infra.local.workers import Invocation
from tests.fakes.lambda_context import FakeLambdaContext
from tests.support.aws import REGION, AwsResources
from tests.support.aws import client as aws_client

CONNECTIONS_TABLE = "notify-test-connections"
KEYS_PARAMETER = "/notify/test/realtime/signing-keys"
URL = "wss://abc123.execute-api.us-east-1.amazonaws.com/test"


class InProcessPool:
    """A function pool that runs the WebSocket handler in this process (on moto), as a worker would."""

    def __init__(self) -> None:
        self.spec = FunctionSpec("websocket", "notify-test-websocket", "WebsocketLambdaFunction", "", 10, 256, {})

    def invoke(self, event: Any, timeout: float | None = None) -> Invocation:
        """Invoke ``api.websocket.handler``."""
        from api.websocket import handler

        started = time.monotonic()
        try:
            result = handler(event, FakeLambdaContext())
        except Exception as exc:
            return Invocation(error={"errorType": type(exc).__name__, "errorMessage": str(exc)})
        return Invocation(result=result, duration_ms=(time.monotonic() - started) * 1000)


@dataclass
class Realtime:
    """The local WebSocket API and what the tests act through."""

    api: WebsocketApi
    dynamodb: Any
    ssm: Any

    def record(self, notification_id: str, channel: str = "orders", topic: str = "shipped") -> None:
        """Write a notification's record to the ledger, as the producer does before any delivery."""
        clients.get_ledger().record_notification(
            NotificationRecord(notification_id, "publish", channel, topic, "2027-01-15T08:00:00.000Z", None, 1)
        )


def create_connections_table(dynamodb: Any) -> None:
    """Create the connections table with the key schema and TTL of infra/dynamodb.yml."""
    dynamodb.create_table(
        TableName=CONNECTIONS_TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    dynamodb.update_time_to_live(
        TableName=CONNECTIONS_TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )


@pytest.fixture
def realtime(aws: AwsResources, monkeypatch: pytest.MonkeyPatch) -> Iterator[Realtime]:
    """The connections table and signing keys in moto, the local WebSocket API serving the real handler."""
    dynamodb = aws_client("dynamodb")
    create_connections_table(dynamodb)
    rotate(aws.ssm, KEYS_PARAMETER)
    service = ServiceDefinition(
        service="notify",
        stage="test",
        region=REGION,
        template={},
        websocket=[
            WebsocketEvent("websocket", "$connect"),
            WebsocketEvent("websocket", "$disconnect"),
            WebsocketEvent("websocket", "$default", route_response=True),
        ],
    )
    api = WebsocketApi(service, {"websocket": InProcessPool()}, lambda line: None)
    api.start()
    for name, value in {
        "CONNECTIONS_TABLE": CONNECTIONS_TABLE,
        "REALTIME_KEYS_PARAMETER": KEYS_PARAMETER,
        "REALTIME_URL": api.websocket_url,
        "REALTIME_MANAGEMENT_URL": api.management_url,
    }.items():
        monkeypatch.setenv(name, value)
    clients.reset()
    try:
        yield Realtime(api, dynamodb, aws.ssm)
    finally:
        api.shutdown()
