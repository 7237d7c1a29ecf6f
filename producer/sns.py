"""Any SNS topic as a source: an HTTPS subscription's deliveries become publishes on a channel/topic.

Checks come in the publish route's order: the topic hash (``?hash=``) before anything else, then the body, then the
SNS signature, which may fetch a certificate; so only a caller that knows the hash makes the function reach SNS.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any, NamedTuple

from pydantic import ValidationError

from core.clients import get_delivery_queue, get_http_session, get_ledger, get_topic_registry
from core.errors import (
    InvalidRequestError,
    MalformedRequestError,
    PayloadTooLargeError,
    SnsMessageError,
    field_path,
)
from core.http import Request, Response, Router, describe_validation_error, json_response, load_json, nested_too_deeply
from core.models import PublishRequest
from core.observability import logger, metrics
from core.ports import NotificationLedgerPort, TopicRegistryPort
from core.queue import DeliveryQueue
from core.roles.shared import OutboundSettings
from core.settings import load_settings
from core.sns import SNS_DOC, SNS_PATH, Fetch, HttpsFetcher, SnsMessage, SnsVerifier, confirm_subscription
from core.validation import LONE_SURROGATE, text_matching
from producer.handler import SEND_MARGIN_SECONDS, get_idempotency, published_response, settings
from producer.idempotency import IdempotentPublisher
from producer.publish import open_topic, publish_once

# SNS messages are up to 256 KiB; JSON-escaped in the envelope they can take several times that.
MAX_SNS_BODY_BYTES = 2 * 1024 * 1024
SOURCE = "sns"


class SnsCall(NamedTuple):
    """What the SNS route received: path, the topic hash of the query string, the raw body."""

    channel: str
    topic: str
    topic_hash: str | None
    body: str
    # Seconds left to the invocation for the sends to SQS (``fan_out``); None: as long as they take.
    time_left: Callable[[], float] | None = None


class SnsOutcome(NamedTuple):
    """What a delivery did: its type, and for a notification its id and SQS message ids."""

    type: str
    notification_id: str | None = None
    message_ids: Mapping[str, str] = MappingProxyType({})


def request_body(request: Request) -> str:
    """Return an SNS delivery's body as text (API Gateway may have base64-encoded it); 400 when it is not UTF-8."""
    try:
        return request.decoded_body or ""
    except MalformedRequestError as exc:  # not base64, or not UTF-8 once decoded
        raise SnsMessageError(str(exc)) from None


def parse_sns_message(body: str) -> SnsMessage:
    """Parse an SNS delivery's body; 413 over the limit, 400 naming what is wrong (never quoting the body)."""
    if len(body.encode()) > MAX_SNS_BODY_BYTES:
        raise PayloadTooLargeError(f"request body exceeds {MAX_SNS_BODY_BYTES // 1024 // 1024} MiB")
    if nested_too_deeply(body):
        raise SnsMessageError("the body is not an SNS message: it is nested too deeply")
    try:
        data = json.loads(body)
    except ValueError:
        raise SnsMessageError("the body is not an SNS message: it is not JSON") from None
    if not isinstance(data, dict):
        raise SnsMessageError("the body is not an SNS message: it is not a JSON object")
    # SNS sends UTF-8 text: a lone surrogate (a JSON escape such as "\ud800") would fail encoding the signed text.
    surrogate = text_matching(data, LONE_SURROGATE)
    if surrogate is not None:
        raise SnsMessageError(
            f"the body is not an SNS message: {field_path(surrogate)} holds a lone surrogate (U+D800 to U+DFFF); "
            "SNS sends Unicode text only"
        )
    try:
        return SnsMessage.model_validate(data)
    except ValidationError as exc:
        raise SnsMessageError(f"the body is not an SNS message: {describe_validation_error(exc, SnsMessage)}") from None


def message_metadata(text: str) -> dict[str, Any]:
    """Return a message's template variables: ``data`` is the message as SNS sent it, always.

    When the message is a JSON object, its top-level fields are variables too, with their JSON values, as a publish's
    metadata: a template's text gets a string as is and any other value as compact JSON, a JSON model gets it typed.
    A field named ``data`` is shadowed by the message. A message that is not a JSON object, holds NaN or Infinity,
    or nests deeper than a publish's metadata may is text only.
    """
    fields: dict[str, Any] = {}
    if text.lstrip().startswith("{") and not nested_too_deeply(text, PublishRequest.max_metadata_depth):
        try:
            parsed = load_json(text)
        except ValueError:  # also ints beyond Python's digit limit
            parsed = None
        if isinstance(parsed, dict):
            fields = parsed
    return {**fields, "data": text}


def receive_sns(
    call: SnsCall,
    registry: TopicRegistryPort,
    ledger: NotificationLedgerPort,
    queue: DeliveryQueue,
    idempotency: IdempotentPublisher,
    verifier: SnsVerifier,
    fetch: Fetch,
) -> SnsOutcome:
    """Take one SNS delivery: confirm a subscription, acknowledge an unsubscription, publish a notification.

    A notification is published at most once per SNS ``MessageId`` and topic (SNS retries a delivery it saw no answer
    to); the record's caller is none, since no API key published it, and its source is ``sns``.
    """
    topic = open_topic(registry, call.channel, call.topic, call.topic_hash, "hash query parameter")
    message = parse_sns_message(call.body)
    verifier.verify(message)
    context = {"channel": call.channel, "topic": call.topic, "topic_arn": message.topic_arn, "type": message.type}
    if message.type == "SubscriptionConfirmation":
        confirm_subscription(message, verifier, fetch)
        logger.info("sns subscription confirmed", extra=context)
        metrics.add_metric(name="SnsSubscriptionsConfirmed", unit="Count", value=1)
        return SnsOutcome(message.type)
    if message.type == "UnsubscribeConfirmation":
        logger.info("sns unsubscription acknowledged", extra=context)
        return SnsOutcome(message.type)
    try:
        request = PublishRequest.model_validate({"metadata": message_metadata(message.message)})
    except ValidationError as exc:
        raise InvalidRequestError("", describe_validation_error(exc, PublishRequest)) from None
    # The MessageId is the idempotency key: SNS sends a message's retries with the same one. A scope of five parts
    # never equals a publish's scope of four (caller, channel, topic, Idempotency-Key).
    scope = [SOURCE, message.topic_arn, call.channel, call.topic, message.message_id]
    outcome = publish_once(
        topic, request, ledger, queue, idempotency, caller=None, source=SOURCE, scope=scope, time_left=call.time_left
    )
    return SnsOutcome(message.type, outcome["notification_id"], outcome["message_ids"])


# --- the route: served by the publish function (producer/handler.py), which imports this module at its first delivery

router = Router()


@lru_cache(maxsize=1)
def get_sns_fetcher() -> HttpsFetcher:
    """Return what GETs SNS's certificates and confirmation URLs: the outbound session, guarded and pooled."""
    return HttpsFetcher(get_http_session(load_settings(OutboundSettings)))


@lru_cache(maxsize=1)
def get_sns_verifier() -> SnsVerifier:
    """Return the SNS signature verifier of this warm container, which keeps the certificates it fetched."""
    return SnsVerifier(get_sns_fetcher())


@router.post(SNS_PATH, SNS_DOC)
def receive_sns_delivery(channel: str, topic: str) -> Response:
    """Take an SNS HTTPS subscription's delivery: confirm it, or publish its notification."""
    event = router.current_event
    call = SnsCall(
        channel=channel,
        topic=topic,
        topic_hash=event.query_string_parameters.get("hash"),
        body=request_body(event),
        time_left=router.time_left(SEND_MARGIN_SECONDS),
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
    return published_response(outcome.notification_id, outcome.message_ids)
