"""Lambda adapter of ``POST /v1/notifications/{channel}/{topic}`` and of its SNS subscription route (``…/sns``,
``producer/sns.py``'s router)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.logging import correlation_paths

from core.clients import get_client, get_delivery_queue, get_ledger, get_topic_registry
from core.http import Response, Router, caller_id, json_response, raw_body
from core.observability import logger, metrics, tracer
from core.roles.publish import PublishSettings
from core.routes import PUBLISH_DOC, PUBLISH_PATH
from core.settings import load_settings
from producer.idempotency import IdempotentPublisher
from producer.publish import PublishCall, publish

app = Router()
# The SNS subscription route is its module's router, imported at its first delivery: a container that serves only
# publishes never loads SNS's message model and signature checks.
app.include("producer.sns", [("POST", "/v1/notifications/{channel}/{topic}/sns")])
# What an invocation keeps after its sends to SQS: the ledger rows of deliveries they did not enqueue, the idempotency
# record, the answer. The sends get the rest of the function's timeout and no more, so that a slow SQS ends in a 502
# that names the deliveries not enqueued (their rows say why), never in a timeout that leaves them unexplained.
SEND_MARGIN_SECONDS = 2.0


def settings() -> PublishSettings:
    """Return this function's settings, parsed at the container's first invocation; a missing variable fails it."""
    return load_settings(PublishSettings)


def get_idempotency() -> IdempotentPublisher:
    """Return the idempotency store of this warm container, made on the cached DynamoDB client."""
    config = settings()
    return _idempotency(
        get_client("dynamodb", config.aws_region), config.idempotency_table, config.idempotency_ttl_seconds
    )


# Keyed on the client, so that a new one (``clients.reset()``, as tests do between cases) gets a store that uses it.
@lru_cache(maxsize=1)
def _idempotency(client: Any, table_name: str, ttl_seconds: int) -> IdempotentPublisher:
    return IdempotentPublisher(client, table_name, ttl_seconds)


def published_response(notification_id: str, message_ids: Mapping[str, str]) -> Response:
    """Answer a publish: its SQS message ids, and where its status is."""
    headers = {"X-Notification-Id": notification_id, "Location": f"/v1/notifications/{notification_id}"}
    return json_response(200, message_ids, headers)


@app.post(PUBLISH_PATH, PUBLISH_DOC)
def publish_notification(channel: str, topic: str) -> Response:
    """Fan a notification out to the topic's integrations."""
    event = app.current_event
    call = PublishCall(
        channel=channel,
        topic=topic,
        topic_hash=event.headers.get("x-topic-hash-x"),
        idempotency_key=event.headers.get("idempotency-key"),
        caller=caller_id(event.identity),
        body=raw_body(event.decoded_body),
        time_left=app.time_left(SEND_MARGIN_SECONDS),
    )
    config = settings()
    outcome = publish(
        call, get_topic_registry(config), get_ledger(config), get_delivery_queue(config), get_idempotency()
    )
    return published_response(outcome["notification_id"], outcome["message_ids"])


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Entry point of the publish function."""
    settings()
    get_idempotency().register_context(context)
    return app.resolve(event, context)
