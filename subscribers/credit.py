"""Lambda adapter of the Stripe credit subscriber of the SNS ``Purchase`` topic.

A purchase with a usable promo code credits the customer's Stripe balance once. A refusal (unknown or inactive code,
unknown customer) is recorded and answered; Stripe or AWS being unavailable raises, so that Lambda's async retries,
then the on-failure destination, take the event again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.clients import get_promotion_store, get_purchase_store, get_stripe_gateway
from core.observability import logger, metrics, tracer
from core.purchases.credit import credit_purchase
from core.purchases.settings import StripeCreditSettings
from core.settings import load_settings
from subscribers.sns import purchase_events


def settings() -> StripeCreditSettings:
    """Return this function's settings, parsed at the container's first invocation; a missing variable fails it."""
    return load_settings(StripeCreditSettings)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Credit each purchase of the SNS event; return what was done with each (``{"purchases": {id: outcome}}``)."""
    config = settings()
    outcomes: dict[str, str] = {}
    for purchase in purchase_events(event):
        logger.append_keys(purchase_id=purchase.purchase_id)
        result = credit_purchase(
            purchase,
            get_promotion_store(config),
            get_purchase_store(config),
            get_stripe_gateway(config),
            datetime.now(UTC),
        )
        outcomes[purchase.purchase_id] = result.outcome.value
    return {"purchases": outcomes}
