"""Lambda adapter of ``POST /v1/notifications/{channel}/{topic}``."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.logging import correlation_paths

from core.clients import get_client, get_delivery_queue, get_ledger, get_topic_registry
from core.http import PUBLISH_DOC, PUBLISH_PATH, Response, Router, caller_id, json_response, raw_body
from core.observability import logger, metrics, tracer
from core.settings import PublishSettings, load_settings
from producer.idempotency import IdempotentPublisher
from producer.publish import PublishCall, publish

app = Router()


def settings() -> PublishSettings:
    """Return this function's settings, parsed at the container's first invocation; a missing variable fails it."""
    return load_settings(PublishSettings)


@lru_cache(maxsize=1)
def get_idempotency() -> IdempotentPublisher:
    """Return the idempotency store of this warm container."""
    config = settings()
    return IdempotentPublisher(
        get_client("dynamodb", config.aws_region), config.idempotency_table, config.idempotency_ttl_seconds
    )


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
    )
    config = settings()
    outcome = publish(
        call, get_topic_registry(config), get_ledger(config), get_delivery_queue(config), get_idempotency()
    )
    notification_id = outcome["notification_id"]
    headers = {"X-Notification-Id": notification_id, "Location": f"/v1/notifications/{notification_id}"}
    return json_response(200, outcome["message_ids"], headers)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Entry point of the publish function."""
    settings()
    get_idempotency().register_context(context)
    return app.resolve(event, context)
