"""The purchase notification: a purchase published on its configured channel/topic through the one fan-out.

Once per purchase: the notification id is derived from the purchase id (``purchase_notification_id``), so a second
delivery of the event by SNS, or a retry, finds the first one's notification record and finishes it instead of
starting another; the purchases record keeps that id, and a purchase that has one is not published again.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from core.errors import ConflictError, InvalidRequestError, NotFoundError, PayloadTooLargeError
from core.fanout import IdempotentPublish, fan_out, request_digest
from core.ids import idempotent_notification_id
from core.observability import logger, metrics
from core.ports import NotificationLedgerPort, TopicRegistryPort
from core.purchases.models import PurchaseEvent
from core.purchases.purchases import PurchaseStorePort
from core.queue import DeliveryQueue

SOURCE = "purchase"
# ISO 4217 currencies whose amounts Stripe counts without minor units, and those with three decimals.
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
THREE_DECIMAL_CURRENCIES = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


class NotifyOutcome(StrEnum):
    """What ``notify_purchase`` did with a purchase."""

    ALREADY_NOTIFIED = "already_notified"
    PUBLISHED = "published"
    FAILED = "failed"


@dataclass(frozen=True)
class NotifyResult:
    """The outcome, the notification's id when there is one, and the error when none could be made."""

    outcome: NotifyOutcome
    notification_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class PurchaseNotification:
    """Where purchases are published: the channel/topic (stage params) whose integrations' templates render them."""

    channel: str
    topic: str


def format_amount(amount: int, currency: str) -> str:
    """Return an amount in minor units as a person reads it: ``2500, "eur"`` → ``"25.00 EUR"``, ``1500, "jpy"`` →
    ``"1500 JPY"``."""
    code = currency.lower()
    decimals = 0 if code in ZERO_DECIMAL_CURRENCIES else 3 if code in THREE_DECIMAL_CURRENCIES else 2
    if decimals == 0:
        return f"{amount} {code.upper()}"
    units, cents = divmod(amount, 10**decimals)
    return f"{units}.{cents:0{decimals}d} {code.upper()}"


def purchase_variables(event: PurchaseEvent) -> dict[str, Any]:
    """Return the template variables of a purchase; optional fields the event lacks are empty strings, so that a
    template naming them renders for every purchase."""
    return {
        "purchase_id": event.purchase_id,
        "customer_id": event.customer_id,
        "user_id": event.user_id or "",
        "email": event.email or "",
        "amount": event.amount,
        "currency": event.currency,
        "amount_display": format_amount(event.amount, event.currency),
        "promo_code": event.promo_code or "",
        "purchased_at": event.purchased_at.isoformat(),
    }


def purchase_notification_id(purchase_id: str) -> str:
    """Return the notification id of a purchase: always the same for it, never one of a publish's."""
    return idempotent_notification_id([SOURCE, purchase_id])


def notify_purchase(
    event: PurchaseEvent,
    target: PurchaseNotification,
    registry: TopicRegistryPort,
    ledger: NotificationLedgerPort,
    queue: DeliveryQueue,
    purchases: PurchaseStorePort,
    now: datetime,
) -> NotifyResult:
    """Publish a purchase on its channel/topic once, and record the notification's id on the purchase.

    A topic that does not exist, a template that needs a variable a purchase does not have, a message too large, or
    the purchase id seen before with other fields, is recorded as ``notification_error`` and returned as ``FAILED``:
    retrying cannot help. AWS failures (``UpstreamError``, ``EnqueueError``) propagate, so the event is retried; the
    retry finishes the same notification.
    """
    try:
        earlier = purchases.get(event.purchase_id)
    except NotFoundError:
        earlier = None
    if earlier is not None and earlier.notification_id is not None:
        logger.info("purchase notified already", extra={"purchase_id": event.purchase_id})
        return NotifyResult(NotifyOutcome.ALREADY_NOTIFIED, earlier.notification_id)
    variables = purchase_variables(event)
    idempotent = IdempotentPublish(
        notification_id=purchase_notification_id(event.purchase_id),
        request_digest=request_digest(json.dumps(variables, sort_keys=True, separators=(",", ":"))),
        # Never a new notification for the same purchase, however late its event comes again.
        window_seconds=math.inf,
    )
    try:
        topic = registry.get(target.channel, target.topic)
        result = fan_out(topic, variables, ledger, queue, source=SOURCE, idempotent=idempotent)
    except (NotFoundError, InvalidRequestError, PayloadTooLargeError, ConflictError) as exc:
        # Recorded before answering; a store failure here raises, and the retry decides again (nothing was sent).
        purchases.record_notification_error(event, str(exc), now)
        logger.warning(
            "purchase notification not made",
            extra={"purchase_id": event.purchase_id, "error": str(exc), "error_type": type(exc).__name__},
        )
        metrics.add_metric(name="PurchaseNotificationsFailed", unit="Count", value=1)
        return NotifyResult(NotifyOutcome.FAILED, error=str(exc))
    metrics.add_metric(name="PurchaseNotificationsPublished", unit="Count", value=1)
    metrics.add_metric(name="DeliveryMessagesEnqueued", unit="Count", value=len(result.message_ids))
    _record(purchases, event, result.notification_id, now)
    return NotifyResult(NotifyOutcome.PUBLISHED, result.notification_id)


def _record(purchases: PurchaseStorePort, event: PurchaseEvent, notification_id: str, now: datetime) -> None:
    """Record the notification on the purchase; never raise: its deliveries are queued already."""
    try:
        purchases.record_notification(event, notification_id, now)
    except Exception:
        logger.exception(
            "recording the purchase notification failed",
            extra={"purchase_id": event.purchase_id, "notification_id": notification_id},
        )
        metrics.add_metric(name="PurchaseNotificationRecordFailed", unit="Count", value=1)
        return
    logger.info(
        "purchase notified",
        extra={"purchase_id": event.purchase_id, "notification_id": notification_id},
    )
