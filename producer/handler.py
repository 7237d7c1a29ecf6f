"""Lambda adapter of ``POST /v1/notifications/{channel}/{topic}`` and of its SNS subscription route (``…/sns``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.logging import correlation_paths

from core.clients import get_client, get_delivery_queue, get_http_session, get_ledger, get_topic_registry
from core.http import PUBLISH_DOC, PUBLISH_PATH, Response, Router, caller_id, json_response, raw_body
from core.observability import logger, metrics, tracer
from core.settings import OutboundSettings, PublishSettings, load_settings
from core.sns import SNS_DOC, SNS_PATH, HttpsFetcher, SnsVerifier
from producer.idempotency import IdempotentPublisher
from producer.publish import PublishCall, publish
from producer.sns import SnsCall, receive_sns, request_body

app = Router()
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


@lru_cache(maxsize=1)
def get_sns_fetcher() -> HttpsFetcher:
    """Return what GETs SNS's certificates and confirmation URLs: the outbound session, guarded and pooled."""
    return HttpsFetcher(get_http_session(load_settings(OutboundSettings)))


@lru_cache(maxsize=1)
def get_sns_verifier() -> SnsVerifier:
    """Return the SNS signature verifier of this warm container, which keeps the certificates it fetched."""
    return SnsVerifier(get_sns_fetcher())


def _published(notification_id: str, message_ids: dict[str, str]) -> Response:
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
    return _published(outcome["notification_id"], outcome["message_ids"])


@app.post(SNS_PATH, SNS_DOC)
def receive_sns_delivery(channel: str, topic: str) -> Response:
    """Take an SNS HTTPS subscription's delivery: confirm it, or publish its notification."""
    event = app.current_event
    call = SnsCall(
        channel=channel,
        topic=topic,
        topic_hash=event.query_string_parameters.get("hash"),
        body=request_body(event),
        time_left=app.time_left(SEND_MARGIN_SECONDS),
    )
    config = settings()
    outcome = receive_sns(
        call,
        get_topic_registry(config),
        get_ledger(config),
        get_delivery_queue(config),
        get_idempotency(),
        get_sns_verifier(),
        get_sns_fetcher(),
    )
    if outcome.notification_id is None:
        return json_response(200, {})
    return _published(outcome.notification_id, outcome.message_ids)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Entry point of the publish function."""
    settings()
    get_idempotency().register_context(context)
    return app.resolve(event, context)
