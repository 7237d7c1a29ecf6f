"""Lambda adapter of the management API: health, notification status, topics, dead letters, promotions, purchases
and payments (admin)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.logging import correlation_paths

from api.dead_letters import DeadLettersResponse, RedriveRequest, RedriveResponse, list_dead_letters, redrive
from api.purchases import check_code, check_id, list_promotions, promotion_view, put_promotion
from api.status import StatusResponse, notification_status
from api.topics import (
    TopicCreatedResponse,
    TopicHashResponse,
    TopicListResponse,
    TopicResponse,
    check_names,
    delete_topic,
    list_topics,
    put_topic,
    rotate_hash,
    topic_view,
)
from core.channels import NAME_PATTERN
from core.channels.registry import TopicRequest
from core.clients import (
    get_client,
    get_ledger,
    get_payment_store,
    get_promotion_store,
    get_purchase_store,
    get_secret_store,
    get_topic_registry,
)
from core.http import Response, RouteDoc, Router, caller_id, json_response, parse_body
from core.models import HealthResponse, OpenApiResponse
from core.observability import logger, metrics, tracer
from core.purchases.models import PaymentRecord, Promotion, PromotionListResponse, PromotionRequest, PurchaseRecord
from core.settings import ApiSettings, load_settings

app = Router()
# An admin route answers 401/403 from the authorizer; every route that reads AWS may answer 502.
ADMIN_ERRORS = (401, 403, 502)
NAMES = {"channel": NAME_PATTERN, "topic": NAME_PATTERN}


def settings() -> ApiSettings:
    """Return this function's settings, parsed at the container's first invocation; a missing variable fails it."""
    return load_settings(ApiSettings)


@app.get("/v1/health", RouteDoc({200: HealthResponse}))
def health() -> Response:
    """Say the API is up; needs no key."""
    return json_response(200, {"status": "ok"})


@app.get(
    "/v1/notifications/<notification_id>",
    RouteDoc({200: StatusResponse}, errors=(403, 404, 502), security="api_key", query=("cursor",)),
    # API Gateway takes one variable per level: this one's is the publish routes' {channel}.
    deployed="/v1/notifications/{channel}",
)
def get_notification(notification_id: str) -> Response:
    """Tell the status of every delivery of a notification."""
    logger.set_correlation_id(notification_id)
    event = app.current_event
    caller = caller_id(event.identity)
    cursor = event.query_string_parameters.get("cursor")
    ledger = get_ledger(settings())
    return json_response(200, notification_status(notification_id, ledger, caller, cursor, app.time_left()))


@app.put(
    "/v1/channels/<channel>/topics/<topic>",
    RouteDoc(
        {200: TopicResponse, 201: TopicCreatedResponse},
        errors=(400, 409, 413, 422, *ADMIN_ERRORS),
        security="admin",
        patterns=NAMES,
        request=TopicRequest,
    ),
)
def put_channel_topic(channel: str, topic: str) -> Response:
    """Create a topic (201, with its hash shown once) or replace its integrations (200)."""
    request = parse_body(app.current_event.decoded_body, TopicRequest)
    config = settings()
    change, topic_hash = put_topic(
        channel, topic, request, get_topic_registry(config), get_secret_store(config), app.time_left()
    )
    if topic_hash is not None:
        return json_response(201, {**change.view, "topic_hash": topic_hash})
    return json_response(200, change.view)


@app.get(
    "/v1/channels/<channel>/topics/<topic>",
    RouteDoc({200: TopicResponse}, errors=(404, 422, *ADMIN_ERRORS), security="admin", patterns=NAMES),
)
def get_channel_topic(channel: str, topic: str) -> Response:
    """Show a topic with its credentials masked."""
    check_names(channel, topic)
    return json_response(200, topic_view(get_topic_registry(settings()).read(channel, topic)))


@app.get(
    "/v1/channels/<channel>/topics",
    RouteDoc(
        {200: TopicListResponse},
        errors=(422, *ADMIN_ERRORS),
        security="admin",
        patterns=NAMES,
        query=("limit", "cursor"),
    ),
)
def list_channel_topics(channel: str) -> Response:
    """List a channel's topics by name, a page at a time (``next``), with their credentials masked."""
    query = app.current_event.query_string_parameters or {}
    return json_response(200, list_topics(channel, query, get_topic_registry(settings())))


@app.delete(
    "/v1/channels/<channel>/topics/<topic>",
    RouteDoc({204: None}, errors=(404, 409, 422, *ADMIN_ERRORS), security="admin", patterns=NAMES),
)
def delete_channel_topic(channel: str, topic: str) -> Response:
    """Delete a topic and its stored credentials."""
    check_names(channel, topic)
    config = settings()
    delete_topic(channel, topic, get_topic_registry(config), get_secret_store(config))
    return Response(status_code=204)


@app.post(
    "/v1/channels/<channel>/topics/<topic>/rotate-hash",
    RouteDoc({200: TopicHashResponse}, errors=(404, 409, 422, *ADMIN_ERRORS), security="admin", patterns=NAMES),
)
def rotate_channel_topic_hash(channel: str, topic: str) -> Response:
    """Give a topic a new hash, shown this once."""
    check_names(channel, topic)
    return json_response(200, {"topic_hash": rotate_hash(channel, topic, get_topic_registry(settings()))})


@app.get("/v1/dead-letters", RouteDoc({200: DeadLettersResponse}, errors=ADMIN_ERRORS, security="admin"))
def get_dead_letters() -> Response:
    """List what is in the dead-letter queue, leaving it there."""
    config = settings()
    sqs = get_client("sqs", config.aws_region)
    return json_response(200, list_dead_letters(sqs, config.dead_letter_queue_url, get_ledger(config)))


@app.post(
    "/v1/dead-letters/redrive",
    RouteDoc(
        {200: RedriveResponse},
        errors=(400, 413, 422, *ADMIN_ERRORS),
        security="admin",
        request=RedriveRequest,
        request_required=False,
    ),
)
def redrive_dead_letters() -> Response:
    """Move dead letters back to the delivery queue; their ledger rows say ``queued`` again."""
    body = app.current_event.decoded_body
    request = parse_body(body, RedriveRequest) if body and body.strip() else RedriveRequest()
    config = settings()
    moved = redrive(
        get_client("sqs", config.aws_region),
        config.dead_letter_queue_url,
        config.delivery_queue_url,
        get_ledger(config),
        request.max_messages,
        time_left=app.time_left(),
    )
    return json_response(200, moved)


@app.put(
    "/v1/promotions/<code>",
    RouteDoc(
        {200: Promotion, 201: Promotion},
        errors=(400, 413, 422, *ADMIN_ERRORS),
        security="admin",
        request=PromotionRequest,
    ),
)
def put_promotion_route(code: str) -> Response:
    """Create (201) or replace (200) the promotion of a promo code: the balance credit a purchase with it earns."""
    check_code(code)
    request = parse_body(app.current_event.decoded_body, PromotionRequest)
    view, created = put_promotion(code, request, get_promotion_store(settings()), datetime.now(UTC))
    return json_response(201 if created else 200, view)


@app.get("/v1/promotions/<code>", RouteDoc({200: Promotion}, errors=(404, 422, *ADMIN_ERRORS), security="admin"))
def get_promotion_route(code: str) -> Response:
    """Show a promotion."""
    return json_response(200, promotion_view(get_promotion_store(settings()).get(check_code(code))))


@app.delete("/v1/promotions/<code>", RouteDoc({204: None}, errors=(404, 422, *ADMIN_ERRORS), security="admin"))
def delete_promotion_route(code: str) -> Response:
    """Delete a promotion: purchases with its code earn nothing from then on."""
    get_promotion_store(settings()).delete(check_code(code))
    return Response(status_code=204)


@app.get(
    "/v1/promotions",
    RouteDoc({200: PromotionListResponse}, errors=(422, *ADMIN_ERRORS), security="admin", query=("limit", "cursor")),
)
def list_promotions_route() -> Response:
    """List the promotions, a page at a time (``?limit=``, at most 100; ``?cursor=``, a page's ``next``)."""
    query = app.current_event.query_string_parameters or {}
    return json_response(200, list_promotions(query, get_promotion_store(settings())))


@app.get(
    "/v1/purchases/<purchase_id>", RouteDoc({200: PurchaseRecord}, errors=(404, 422, *ADMIN_ERRORS), security="admin")
)
def get_purchase_route(purchase_id: str) -> Response:
    """Tell what was done with a purchase: the balance credit (or why none) and its notification."""
    record = get_purchase_store(settings()).get(check_id("purchase_id", purchase_id))
    return json_response(200, record.model_dump(mode="json"))


@app.get(
    "/v1/payments/<payment_id>", RouteDoc({200: PaymentRecord}, errors=(404, 422, *ADMIN_ERRORS), security="admin")
)
def get_payment_route(payment_id: str) -> Response:
    """Show a payment taken in from Stripe webhooks, with the Stripe events recorded for it."""
    record = get_payment_store(settings()).get(check_id("payment_id", payment_id))
    return json_response(200, record.model_dump(mode="json"))


@app.get("/v1/openapi.json", RouteDoc({200: OpenApiResponse}))
def get_openapi_document() -> Response:
    """Serve this API's OpenAPI 3 document; needs no key."""
    # The document's code and models load on its first request only, never at cold start.
    from api.openapi import document_json

    return Response(status_code=200, body=document_json())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Entry point of the management API function."""
    settings()
    return app.resolve(event, context)
