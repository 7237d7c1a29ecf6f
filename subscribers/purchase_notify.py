"""Lambda adapter of the purchase notification subscriber of the SNS ``Purchase`` topic.

Each purchase is published once on the configured channel/topic through the one fan-out. A topic or template that
cannot make it is recorded and answered; AWS being unavailable raises, so that Lambda's async retries, then the
on-failure destination, take the event again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.clients import get_delivery_queue, get_ledger, get_purchase_store, get_topic_registry
from core.observability import logger, metrics, tracer
from core.purchases.notify import PurchaseNotification, notify_purchase
from core.purchases.settings import PurchaseNotifySettings
from core.settings import load_settings
from subscribers.sns import purchase_events


def settings() -> PurchaseNotifySettings:
    """Return this function's settings, parsed at the container's first invocation; a missing variable fails it."""
    return load_settings(PurchaseNotifySettings)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Publish each purchase of the SNS event; return what was done with each (``{"purchases": {id: outcome}}``)."""
    config = settings()
    target = PurchaseNotification(config.purchase_notification_channel, config.purchase_notification_topic)
    outcomes: dict[str, str] = {}
    for purchase in purchase_events(event):
        logger.append_keys(purchase_id=purchase.purchase_id)
        result = notify_purchase(
            purchase,
            target,
            get_topic_registry(config),
            get_ledger(config),
            get_delivery_queue(config),
            get_purchase_store(config),
            datetime.now(UTC),
        )
        outcomes[purchase.purchase_id] = result.outcome.value
    return {"purchases": outcomes}
