"""Lambda adapter of the payment worker: the Stripe webhook queue, one record per batch, partial batch failures.

A record whose handling raises (Stripe unavailable, DynamoDB or SNS failing) is reported failed and comes back after
the queue's visibility timeout; after 5 receives it is in the webhook DLQ. Everything else is acknowledged.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from core.clients import get_payment_store, get_purchase_publisher, get_stripe_gateway
from core.errors import NotificationError
from core.observability import logger, metrics, tracer
from core.purchases.settings import PaymentWorkerSettings
from core.purchases.webhooks import process_webhook_event
from core.settings import load_settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch import BatchProcessor
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


@cache
def batch_processor() -> BatchProcessor:
    """Return this container's batch processor, built by the first batch: powertools' batch utility loads asyncio
    and every event data class (~60 ms of import)."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

    # The one record of a batch reports its own failure, so a failed batch is an answer, not an error.
    return BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def settings() -> PaymentWorkerSettings:
    """Return this function's settings, parsed at the container's first invocation; a missing variable fails it."""
    return load_settings(PaymentWorkerSettings)


def count_event(outcome: str) -> None:
    """Emit one ``StripeEvents`` metric with the outcome (``published``, ``duplicate``, ``retried``…) as dimension."""
    with single_metric(
        name="StripeEvents", unit=MetricUnit.Count, value=1, default_dimensions=metrics.default_dimensions
    ) as metric:
        metric.add_dimension(name="outcome", value=outcome)


def handle_record(record: SQSRecord) -> str:
    """Handle one queued Stripe event; raise to have it retried."""
    config = settings()
    try:
        result = process_webhook_event(
            record.body, get_stripe_gateway(config), get_payment_store(config), get_purchase_publisher(config)
        )
    except NotificationError as exc:
        # Domain errors' texts are safe to log; others could quote a request.
        logger.warning("Stripe event not handled: retried", extra={"error": type(exc).__name__, "reason": str(exc)})
        count_event("retried")
        raise
    except Exception:
        logger.exception("Stripe event failed: retried")
        count_event("retried")
        raise
    count_event(result.outcome.value)
    if result.mark_failed:
        metrics.add_metric(name="PaymentPublicationUnrecorded", unit=MetricUnit.Count, value=1)
    return result.outcome.value


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    """Handle a batch of queued Stripe events; return the ids of the records to retry (``batchItemFailures``)."""
    from aws_lambda_powertools.utilities.batch import process_partial_response

    settings()
    return process_partial_response(
        event=event, record_handler=handle_record, processor=batch_processor(), context=context
    )
