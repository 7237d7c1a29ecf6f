"""Lambda adapter of ``POST /v1/webhooks/stripe``: Stripe's webhook endpoint (no API key; the signature is the guard).

A function of its own, so that the stripe SDK loads only where it is used, and only when a request is verified.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import Field

from core.clients import get_stripe_webhook_queue, get_stripe_webhook_secret
from core.http import Response, RouteDoc, Router, json_response
from core.observability import logger, metrics, tracer
from core.purchases.errors import StripeSignatureError
from core.purchases.settings import StripeWebhookSettings
from core.purchases.webhooks import SIGNATURE_HEADER, StripeEventEnvelope, receive_webhook, webhook_payload
from core.settings import load_settings
from core.validation import Reply

app = Router()
WEBHOOK_PATH = "/v1/webhooks/stripe"


class StripeWebhookResponse(Reply):
    """Body of the webhook's 200: the event was verified, and its envelope queued for the payment worker when the
    worker handles its type."""

    received: bool = Field(description="Always true: the event is queued (acknowledged only, if not a handled type).")


def settings() -> StripeWebhookSettings:
    """Return this function's settings, parsed at the container's first invocation; a missing variable fails it."""
    return load_settings(StripeWebhookSettings)


@app.post(
    WEBHOOK_PATH,
    RouteDoc(
        {200: StripeWebhookResponse},
        errors=(400, 502),
        request=StripeEventEnvelope,
        headers=(SIGNATURE_HEADER,),
        summary="Take in a Stripe webhook event: its Stripe-Signature verified, then queued for the payment worker",
        operation_id="receive_stripe_webhook",
    ),
)
def receive_stripe_webhook() -> Response:
    """Verify a Stripe webhook's signature and queue the event (a type not handled is only acknowledged); 400 when it
    is forged, stale, unsigned or malformed."""
    request = app.current_event
    config = settings()
    try:
        payload = webhook_payload(request.raw.get("body"), bool(request.raw.get("isBase64Encoded")))
        event = receive_webhook(
            payload,
            request.headers.get(SIGNATURE_HEADER),
            get_stripe_webhook_secret(config).get,
            config.stripe_webhook_tolerance_seconds,
            get_stripe_webhook_queue(config),
            time.time,
        )
    except StripeSignatureError as exc:
        # The reason only: neither the header nor the body, and never the secret.
        logger.warning("Stripe webhook refused", extra={"reason": str(exc)})
        metrics.add_metric(name="StripeWebhookRefused", unit=MetricUnit.Count, value=1)
        raise
    where = {"stripe_event_id": event.event_id, "stripe_event_type": event.event_type}
    if event.handled:
        logger.info("Stripe event queued", extra=where)
        metrics.add_metric(name="StripeWebhookQueued", unit=MetricUnit.Count, value=1)
    else:
        logger.info("Stripe event type not handled: acknowledged, not queued", extra=where)
        metrics.add_metric(name="StripeWebhookIgnored", unit=MetricUnit.Count, value=1)
    return json_response(200, {"received": True})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Entry point of the Stripe webhook function."""
    settings()
    return app.resolve(event, context)
