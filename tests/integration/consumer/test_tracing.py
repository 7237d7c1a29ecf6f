"""Traces of deliveries, with tracing on as deployed: AWS calls are traced, outbound URLs and their errors are not
(a Telegram bot token and a Slack webhook's secret are in those URLs)."""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import botocore.client
import botocore.endpoint
import pytest
import requests
from aws_lambda_powertools import Tracer

from core import observability
from tests.integration.consumer.flow import consume_once, delivery_message, enqueue, put_credentials
from tests.support.aws import AwsResources
from tests.support.receivers import Answer, Receiver

BOT_TOKEN = "123456:TELEGRAM-SECRET-TOKEN-xyz"
SLACK_SECRET = "SLACK-SECRET-PATH-abc"
# As Lambda sets it for a traced, sampled invocation.
TRACE_ID = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[[], list[dict[str, object]]]]:
    """An X-Ray daemon on a loopback UDP port, tracing on; yield what returns the documents it got so far.

    What the SDK patches is put back after the test (the patches are process-wide, and the next tests trace nothing).
    """
    from aws_xray_sdk import global_sdk_config
    from aws_xray_sdk.core import patcher, xray_recorder
    from aws_xray_sdk.core.lambda_launcher import LambdaContext

    for owner, name in (
        (botocore.client.BaseClient, "_make_api_call"),
        (botocore.endpoint.Endpoint, "prepare_request"),
        (requests.Session, "send"),
    ):
        monkeypatch.setattr(owner, name, getattr(owner, name))
    monkeypatch.setattr(patcher, "_PATCHED_MODULES", set())
    for module in (botocore.client, requests):  # what the SDK marks as patched
        monkeypatch.delattr(module, "_xray_enabled", raising=False)
    monkeypatch.setattr(observability.tracer, "_tracer", None)  # built as on a cold start
    # powertools keeps its Tracers' config in the class, "disabled" once any was built disabled.
    monkeypatch.setattr(Tracer, "_config", copy.copy(Tracer._default_config))
    was_enabled = global_sdk_config.sdk_enabled()
    global_sdk_config.set_sdk_enabled(True)  # a disabled Tracer built before turned the SDK off
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "false")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE_ID)
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(tmp_path))  # powertools traces inside Lambda only
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.5)
    xray_recorder.configure(daemon_address=f"127.0.0.1:{sink.getsockname()[1]}", streaming_threshold=1)
    # Inside Lambda the SDK traces under the invocation's segment, which it reads from _X_AMZN_TRACE_ID.
    monkeypatch.setattr(xray_recorder, "context", LambdaContext())

    def documents() -> list[dict[str, object]]:
        received: list[dict[str, object]] = []
        while True:
            try:
                datagram = sink.recv(65535).decode()
            except TimeoutError:
                return received
            # Each datagram is a header line, then the segment or subsegment document.
            received.append(json.loads(datagram.split("\n", 1)[1]))

    try:
        yield documents
    finally:
        sink.close()
        xray_recorder.configure(daemon_address="127.0.0.1:2000")
        global_sdk_config.set_sdk_enabled(was_enabled)


@pytest.mark.parametrize(
    "answer",
    [Answer(200, {"ok": True, "result": {"message_id": 1}}), Answer(reset=True)],
    ids=["delivered", "connection-reset"],
)
def test_a_telegram_delivery_traces_its_aws_calls_never_its_bot_token(
    consumer_aws: AwsResources, receiver: Receiver, daemon: Callable[[], list[dict[str, object]]], answer: Answer
) -> None:
    ref = put_credentials(consumer_aws, "tg", {"bot_token": BOT_TOKEN})
    receiver.script(answer)
    enqueue(consumer_aws, delivery_message("telegram", {"text": "hi"}, {"chat_id": "42"}, credentials_ref=ref))

    consume_once(consumer_aws)

    documents = daemon()
    names = {str(document.get("name")) for document in documents}
    assert {"## handler", "ssm", "dynamodb"} <= names, names  # the invocation and its AWS calls are traced
    assert receiver.requests, "the delivery was not attempted"
    assert BOT_TOKEN not in json.dumps(documents)
    assert "TELEGRAM-SECRET" not in json.dumps(documents)


def test_a_slack_delivery_never_traces_its_webhook_url(
    consumer_aws: AwsResources, receiver: Receiver, daemon: Callable[[], list[dict[str, object]]]
) -> None:
    ref = put_credentials(consumer_aws, "sl", {"webhook_url": f"{receiver.url}/services/T0/B0/{SLACK_SECRET}"})
    receiver.script(Answer(200, b"ok"))
    enqueue(consumer_aws, delivery_message("slack", {"text": "hi"}, {}, credentials_ref=ref))

    consume_once(consumer_aws)

    documents = daemon()
    assert "## handler" in {document.get("name") for document in documents}
    assert receiver.requests
    assert SLACK_SECRET not in json.dumps(documents)
