"""Publishing a notification: check the topic hash, parse the body, fan out once per idempotency key.

The SNS route (``producer/sns.py``) opens the topic and fans out through the same two steps."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from core.errors import ConflictError, ForbiddenError, NotFoundError, NotificationError, UpstreamError
from core.fanout import IdempotentPublish, PublishResult, fan_out, record_enqueued, request_digest
from core.http import checked_idempotency_key, parse_body
from core.ids import idempotent_notification_id
from core.models import PublishRequest, Topic
from core.observability import logger, metrics
from core.ports import NotificationLedgerPort, TopicRegistryPort
from core.queue import DeliveryQueue
from core.times import epoch_time
from core.topics import check_topic_hash
from core.validation import NAME_RULE, is_name
from producer.idempotency import IdempotentPublisher, PublishInProgressError


class PublishCall(NamedTuple):
    """What the publish route received: path, the headers that matter, the caller's identity, the raw body."""

    channel: str
    topic: str
    topic_hash: str | None
    idempotency_key: str | None
    caller: str
    body: str
    # Seconds left to the invocation for the sends to SQS (``fan_out``); None: as long as they take.
    time_left: Callable[[], float] | None = None


def check_topic_names(channel: str, topic: str) -> None:
    """Raise ``NotFoundError`` naming the path parameter whose value no topic can have (it breaks the name rule).

    Checked before the read: DynamoDB refuses a key over its limits (a topic over 1 KiB), which would be a 502.
    """
    for field, value in (("channel", channel), ("topic", topic)):
        if not is_name(value):
            raise NotFoundError(f"{field}: is not a valid name, so no such {field} exists ({NAME_RULE})")


def open_topic(registry: TopicRegistryPort, channel: str, topic: str, topic_hash: str | None, credential: str) -> Topic:
    """Return the topic a caller may publish to: a missing hash is refused before any read, an unknown topic (or a
    name no topic can have) is 404, a wrong hash 403 (after a read past the cache); ``credential`` names where the
    hash was expected (``x-topic-hash-x header``)."""
    if not topic_hash:
        raise ForbiddenError(f"{credential} is required")
    check_topic_names(channel, topic)
    found = registry.get(channel, topic)
    try:
        check_topic_hash(found, topic_hash)
    except ForbiddenError:
        # The cached topic may be older than a rotation of its hash, or than the topic itself (deleted and made
        # again): a hash it refuses is checked against the table before a 403, so a new hash works at once.
        found = registry.read(channel, topic)
        try:
            check_topic_hash(found, topic_hash)
        except ForbiddenError:
            raise ForbiddenError(f"{credential} does not match the topic") from None
    return found


def publish_once(
    topic: Topic,
    request: PublishRequest,
    ledger: NotificationLedgerPort,
    queue: DeliveryQueue,
    idempotency: IdempotentPublisher,
    *,
    caller: str | None,
    source: str = "publish",
    scope: list[str] | None = None,
    time_left: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Fan a checked request out; with an idempotency ``scope``, at most once for it. Return ``{"notification_id",
    "message_ids"}``. ``time_left`` bounds the wait for SQS (``fan_out``)."""
    published: list[PublishResult] = []

    def action(idempotent: IdempotentPublish | None = None) -> dict[str, Any]:
        result = fan_out(
            topic,
            request.metadata,
            ledger,
            queue,
            caller=caller,
            source=source,
            idempotent=idempotent,
            time_left=time_left,
        )
        published.append(result)
        logger.set_correlation_id(result.notification_id)
        logger.info(
            "notification published",
            extra={"channel": topic.channel, "topic": topic.topic, "source": source, "resumed": result.resumed},
        )
        metrics.add_metric(name="NotificationsPublished", unit="Count", value=1)
        metrics.add_metric(name="DeliveryMessagesEnqueued", unit="Count", value=len(result.message_ids))
        return {"notification_id": result.notification_id, "message_ids": result.message_ids}

    if scope is None:
        return action()
    payload = _payload(request)
    # The powertools record of a publish that failed is deleted, so a retry runs the action again: the notification id
    # comes from the scope, so that retry finds the first attempt's record and finishes it rather than starting anew.
    idempotent = IdempotentPublish(
        notification_id=idempotent_notification_id(scope),
        request_digest=request_digest(payload),
        window_seconds=idempotency.ttl_seconds,
    )
    # When the store cannot save the answer, a retry after its in-progress record lapses runs the action again; the
    # enqueued ids written on the notification's record make that run send nothing and answer the same.
    outcome = idempotency.run(
        scope, payload, lambda: action(idempotent), on_unsaved=lambda _: record_enqueued(ledger, published[-1])
    )
    logger.set_correlation_id(outcome["notification_id"])
    return outcome


def _payload(request: PublishRequest) -> str:
    """What a repeat of a publish under its ``Idempotency-Key`` must match: its body, canonical."""
    return json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


# The notifications one key may have named, one after another, each at least its window after the one before: the
# ledger keeps a record 30 days, its rows 30 days after their last change.
MAX_KEY_CHAIN = 64


def _recorded_answer(
    ledger: NotificationLedgerPort, notification_id: str, digest: str, window_seconds: float
) -> dict[str, Any] | None:
    """Return the answer of a publish whose record lists every delivery enqueued (the ids written when the idempotency
    store could not save the answer, or by a retry that finished it) under the request ``digest``, made within the
    key's ``window_seconds``; else ``None``.

    The key's notification is found as ``fan_out`` finds it: past the window (or its record gone, its rows left), the
    key names the next notification of its chain.
    """
    for _ in range(MAX_KEY_CHAIN):
        try:
            record = ledger.get_record(notification_id)
        except NotFoundError:
            if not ledger.orphaned(notification_id):
                return None
        else:
            made = epoch_time(record.created_at)
            if made is None or time.time() - made <= window_seconds:
                break
        notification_id = idempotent_notification_id(["after", notification_id])
    else:
        return None
    enqueued = record.enqueued or {}
    if record.request_digest != digest or any(delivery.key not in enqueued for delivery in record.deliveries):
        return None
    return {
        "notification_id": record.notification_id,
        "message_ids": {d.key: enqueued[d.key] for d in record.deliveries},
    }


def _replayed(
    call: PublishCall, ledger: NotificationLedgerPort, idempotency: IdempotentPublisher, gone: NotFoundError
) -> dict[str, Any]:
    """Return the answer of the publish this one repeats (its ``Idempotency-Key`` and body), made before its topic was
    deleted; raise ``gone`` (404) when there is none.

    The caller lost the first answer and retries, as it should: told the topic does not exist, it would take the
    notification for unsent, though its deliveries are on their way. Only a valid request is looked up, and nothing is
    sent: the store answers with the saved result, or the notification's record with the ids it kept when the store
    could not save it; else the lookup's action raises ``gone``. A first attempt still in progress is a 409, and the
    store or the ledger failing a 502, as with the topic there.
    """
    if call.idempotency_key is None or not (is_name(call.channel) and is_name(call.topic)):
        raise gone
    try:
        request = parse_body(call.body, PublishRequest)
        key = checked_idempotency_key(call.idempotency_key)
    except NotificationError:
        raise gone from None
    if key is None:
        raise gone

    scope = [call.caller, call.channel, call.topic, key]
    payload = _payload(request)

    def missing() -> dict[str, Any]:
        notification_id = idempotent_notification_id(scope)
        answer = _recorded_answer(ledger, notification_id, request_digest(payload), idempotency.ttl_seconds)
        if answer is None:
            raise gone
        return answer

    try:
        return idempotency.run(scope, payload, missing)
    except (PublishInProgressError, UpstreamError):
        raise
    except ConflictError:
        # Another body under the key: the topic is gone all the same, and that is the answer.
        raise gone from None


def publish(
    call: PublishCall,
    registry: TopicRegistryPort,
    ledger: NotificationLedgerPort,
    queue: DeliveryQueue,
    idempotency: IdempotentPublisher,
) -> dict[str, Any]:
    """Publish a notification; return ``{"notification_id", "message_ids"}``.

    Order of checks: a missing hash is refused before any read, an unknown topic is 404, a wrong hash 403, then the
    body is parsed and the ``Idempotency-Key`` checked; only a valid request reaches the idempotency store, so errors
    are never replayed. A repeat of a publish whose topic was deleted since gets the first answer again (``_replayed``).
    """
    try:
        topic = open_topic(registry, call.channel, call.topic, call.topic_hash, "x-topic-hash-x header")
    except NotFoundError as gone:
        return _replayed(call, ledger, idempotency, gone)
    request = parse_body(call.body, PublishRequest)
    key = checked_idempotency_key(call.idempotency_key)
    scope = [call.caller, call.channel, call.topic, key] if key is not None else None
    return publish_once(
        topic, request, ledger, queue, idempotency, caller=call.caller, scope=scope, time_left=call.time_left
    )
