"""Any SNS topic as a source: an HTTPS subscription's deliveries become publishes on a channel/topic.

Checks come in the publish route's order: the topic hash (``?hash=``) before anything else, then the body, then the
SNS signature, which may fetch a certificate; so only a caller that knows the hash makes the function reach SNS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from core.errors import (
    InvalidRequestError,
    MalformedRequestError,
    PayloadTooLargeError,
    SnsMessageError,
    field_path,
)
from core.http import Request, describe_validation_error, load_json, nested_too_deeply
from core.models import LONE_SURROGATE, PublishRequest, text_matching
from core.observability import logger, metrics
from core.ports import NotificationLedgerPort, TopicRegistryPort
from core.queue import DeliveryQueue
from core.sns import Fetch, SnsMessage, SnsVerifier, confirm_subscription
from producer.idempotency import IdempotentPublisher
from producer.publish import open_topic, publish_once

# SNS messages are up to 256 KiB; JSON-escaped in the envelope they can take several times that.
MAX_SNS_BODY_BYTES = 2 * 1024 * 1024
SOURCE = "sns"


@dataclass(frozen=True)
class SnsCall:
    """What the SNS route received: path, the topic hash of the query string, the raw body."""

    channel: str
    topic: str
    topic_hash: str | None
    body: str
    # Seconds left to the invocation for the sends to SQS (``fan_out``); None: as long as they take.
    time_left: Callable[[], float] | None = None


@dataclass(frozen=True)
class SnsOutcome:
    """What a delivery did: its type, and for a notification its id and SQS message ids."""

    type: str
    notification_id: str | None = None
    message_ids: dict[str, str] = field(default_factory=dict)


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
