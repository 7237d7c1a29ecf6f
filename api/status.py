"""What happened to a notification, from the ledger: a count per status and its deliveries, a page at a time."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import Field

from api.handler import settings
from core.clients import get_ledger
from core.errors import NotFoundError
from core.http import Response, RouteDoc, Router, caller_id, json_response
from core.ledger import SUMMARY_SECONDS, LedgerEntry
from core.models import DeliveryStatus
from core.observability import logger
from core.ports import LedgerReaderPort
from core.validation import Reply

# What the counts leave of the invocation's time: the page of deliveries, the answer, and a slow DynamoDB call.
SUMMARY_MARGIN_SECONDS = 3.0
_NOTIFICATION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class DeliveryView(Reply):
    """One delivery of a notification as the status route shows it.

    ``attempts`` counts every attempt, those made before a redrive too; ``redriven`` how often the delivery was moved
    back from the dead-letter queue; ``next_attempt_at`` when a ``retrying`` delivery's next attempt is due (the retry's
    time, or its send slot when it waits for its destination's pace), ``null`` in any other status.
    """

    delivery_key: str
    integration: str
    type: str
    recipient: dict[str, str] | None = None
    status: DeliveryStatus
    attempts: int = Field(description="Attempts made, over every run: those before a redrive count too.")
    redriven: int = Field(default=0, description="How often the delivery was redriven from the dead-letter queue.")
    last_error: str | None
    provider_message_id: str | None = Field(
        default=None,
        description=(
            "What the provider answered for a delivered message: SES, SNS or Telegram message id; for a browser "
            "delivery the connections reached, e.g. `2 connections` (`0 connections` when none was open)."
        ),
    )
    next_attempt_at: str | None = Field(
        default=None,
        description="ISO 8601 UTC time of the next attempt of a `retrying` delivery; null in any other status.",
    )
    updated_at: str


class StatusResponse(Reply):
    """Body of ``GET /v1/notifications/{notification_id}``: counts per status and a page of deliveries."""

    notification_id: str
    source: str
    channel: str
    topic: str
    created_at: str
    summary: dict[str, int]
    summary_partial: bool | None = Field(
        default=None,
        description="True when the summary counts only the first deliveries in key order: a notification of so many "
        "that their whole count would take the route past its time.",
    )
    deliveries: list[DeliveryView]
    next: str | None = None
    error: str | None = Field(
        default=None,
        description="Why the expansion to an audience failed (a send's, or a publish's subscribers), when it did: "
        "the deliveries it did not enqueue are not counted.",
    )


def _delivery(entry: LedgerEntry) -> dict[str, Any]:
    view: dict[str, Any] = {
        "delivery_key": entry.delivery_key,
        "integration": entry.integration,
        "type": entry.type,
        "status": entry.status.value,
        "attempts": entry.attempts,
        "redriven": entry.redriven,
        "last_error": entry.last_error,
        "provider_message_id": entry.provider_message_id,
        "next_attempt_at": entry.next_attempt_at if entry.status is DeliveryStatus.RETRYING else None,
        "updated_at": entry.updated_at,
    }
    if entry.recipient:
        view["recipient"] = entry.recipient
    return view


def _check_caller(notification_id: str, publisher: str | None, caller: str | None) -> None:
    if publisher is not None and publisher != caller:
        raise NotFoundError(f"notification {notification_id!r} does not exist")


def notification_status(
    notification_id: str,
    ledger: LedgerReaderPort,
    caller: str | None,
    cursor: str | None = None,
    time_left: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Return a notification, the count of its deliveries per status, and a page of them; the counts read for the
    time left to the invocation less ``SUMMARY_MARGIN_SECONDS`` (``time_left``), else ``SUMMARY_SECONDS``.

    Only the API key that published a notification may read it; any other key is told it does not exist, so ids of
    other publishers' notifications cannot be probed.
    """
    if not _NOTIFICATION_ID.fullmatch(notification_id):
        # Every id this service gives is a UUID; anything else, however long, names no notification.
        raise NotFoundError("no notification has this id (notification ids are UUIDs)")
    # The caller first: another key's read would otherwise count the deliveries for seconds before its 404 (and the
    # time taken would tell that the id exists); a bad cursor, too, is told only to the notification's publisher.
    record = ledger.get_record(notification_id)
    _check_caller(notification_id, record.caller, caller)
    summary_seconds = SUMMARY_SECONDS if time_left is None else max(0.0, time_left() - SUMMARY_MARGIN_SECONDS)
    page = ledger.page(notification_id, cursor, summary_seconds=summary_seconds, record=record)
    body: dict[str, Any] = {
        "notification_id": notification_id,
        "source": page.record.source,
        "channel": page.record.channel,
        "topic": page.record.topic,
        "created_at": page.record.created_at,
        "summary": page.counts,
        **({} if page.complete else {"summary_partial": True}),
        "deliveries": [_delivery(entry) for entry in page.entries],
    }
    if page.next_cursor:
        body["next"] = page.next_cursor
    if page.record.error:
        body["error"] = page.record.error
    return body


# --- routes: served by the management API function (api/handler.py), which imports this module at their first request

router = Router()


@router.get(
    "/v1/notifications/<notification_id>",
    RouteDoc({200: StatusResponse}, errors=(403, 404, 422, 502), security="api_key", query=("cursor",)),
    # API Gateway takes one variable per level: this one's is the publish routes' {channel}.
    deployed="/v1/notifications/{channel}",
)
def get_notification(notification_id: str) -> Response:
    """Tell the status of every delivery of a notification."""
    logger.set_correlation_id(notification_id)
    event = router.current_event
    caller = caller_id(event.identity)
    cursor = event.query_string_parameters.get("cursor")
    ledger = get_ledger(settings())
    return json_response(200, notification_status(notification_id, ledger, caller, cursor, router.time_left()))
