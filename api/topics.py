"""Administering topics: create or replace (credentials go to SSM), read with credentials masked, rotate, delete."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from api.handler import ADMIN_ERRORS, settings
from core.channels import NAME_RULE
from core.channels.registry import CREDENTIAL_FIELDS, IntegrationSpec, TopicRequest
from core.clients import QUICK_CALL_SECONDS, get_secret_store, get_topic_registry
from core.errors import InvalidRequestError, NotFoundError, NotificationError, UpstreamError
from core.http import Response, RouteDoc, Router, json_response, parse_body
from core.models import Integration, IntegrationType, Topic
from core.observability import logger
from core.pages import cursor_text, encode_cursor, fitting, page_limit
from core.ports import SecretStorePort, TopicRegistryPort
from core.secrets import MAX_SECRET_CHARS, secret_text
from core.templates import variables
from core.times import epoch_time, iso_time, utc_now
from core.topics import StoredTopic, check_item_size, hash_topic_secret, new_topic_hash
from core.validation import NAME_PATTERN, Reply, is_name

MASK = "********"
# A page of topics: at most this many (and ``core.pages.PAGE_CHARS`` of JSON: a channel's topics, each up to
# DynamoDB's 400 KB, would otherwise exceed Lambda's 6 MB response).
LIST_LIMIT = 100
# SSM's PutParameter is throttled at a few a second per account: a request writes at most this many credentials, and
# writes one more only while it has time for it, for deleting what it wrote (one call a ten), and to answer.
MAX_NEW_CREDENTIALS = 10
CREDENTIALS_MARGIN_SECONDS = 2 * QUICK_CALL_SECONDS + 1.0
# How long credentials a topic stopped using are kept: a delivery queued with them may be retried for its whole retry
# window (RETRY_WINDOW_HOURS, 14 days at most), wait in its dead-letter queue for a redrive (14 days), then be retried
# for a window again. A delivery older than that which still names them fails, saying its credentials are missing.
CREDENTIALS_RETENTION_DAYS = 42
# At most this many are kept per topic (each takes a parameter and room in the topic's item); the oldest go first.
MAX_RETIRED_CREDENTIALS = 200


class IntegrationView(Reply):
    """An integration as responses show it: credentials masked."""

    name: str
    type: IntegrationType
    model: Any
    target: dict[str, Any]
    credentials: dict[str, str] | None = None
    rate_per_second: float | None = None


class TopicResponse(Reply):
    """Body of reading or replacing a topic."""

    channel: str
    topic: str
    created_at: str
    updated_at: str
    integrations: list[IntegrationView]


class TopicCreatedResponse(TopicResponse):
    """Body of creating a topic: the topic and its hash, shown this once."""

    topic_hash: str


class TopicListResponse(Reply):
    """Body of listing a channel's topics: a page of them by name, and ``next``, the cursor of the next page, when
    more may follow."""

    channel: str
    topics: list[TopicResponse]
    next: str | None = None


class TopicHashResponse(Reply):
    """Body of rotating a topic's hash: the new hash, shown this once."""

    topic_hash: str


@dataclass(frozen=True)
class TopicChange:
    """The outcome of a create or replace: the topic as a caller may see it, and the new hash on create only."""

    created: bool
    view: dict[str, Any]


def check_name(field: str, value: str) -> None:
    """Raise naming ``field`` when ``value`` is not a valid channel or topic name."""
    if not is_name(value):
        raise InvalidRequestError(field, f"is not a valid name: {NAME_RULE}")


def check_names(channel: str, topic: str) -> None:
    """Raise naming the path parameter that is not a valid channel or topic name."""
    check_name("channel", channel)
    check_name("topic", topic)


def list_topics(channel: str, query: Mapping[str, str], registry: TopicRegistryPort) -> dict[str, Any]:
    """Return a page of a channel's topics by name, masked: at most ``limit`` (``LIST_LIMIT``) and
    ``core.pages.PAGE_CHARS`` of JSON, at least one, with ``next`` when more may follow.

    Raises
    ------
    InvalidRequestError
        ``limit`` or ``cursor`` is not one this route takes.
    """
    check_name("channel", channel)
    limit = page_limit(query.get("limit"), LIST_LIMIT)
    cursor = query.get("cursor")
    topics, more = registry.page(channel, cursor_text(cursor, "t", is_name) if cursor is not None else None, limit)
    views = [topic_view(topic) for topic in topics]
    page = fitting(views, lambda view: len(json.dumps(view)))
    body: dict[str, Any] = {"channel": channel, "topics": page}
    if page and (more or len(page) < len(views)):
        body["next"] = encode_cursor({"t": page[-1]["topic"]})
    return body


def topic_view(topic: Topic) -> dict[str, Any]:
    """Return a topic as responses show it: credentials masked, never their values nor their parameter names."""
    return {
        "channel": topic.channel,
        "topic": topic.topic,
        "created_at": topic.created_at,
        "updated_at": topic.updated_at,
        "integrations": [_integration_view(integration) for integration in topic.integrations],
    }


def _integration_view(integration: Integration) -> dict[str, Any]:
    view: dict[str, Any] = {
        "name": integration.name,
        "type": integration.type.value,
        "model": integration.model,
        "target": integration.target,
    }
    if integration.credentials_ref:
        view["credentials"] = dict.fromkeys(CREDENTIAL_FIELDS.get(integration.type, ()), MASK)
    if integration.rate_per_second is not None:
        view["rate_per_second"] = integration.rate_per_second
    return view


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json", by_alias=True, exclude_none=True) if isinstance(value, BaseModel) else value


def _integrations(specs: list[IntegrationSpec], refs: dict[str, str]) -> list[Integration]:
    return [
        Integration(
            name=spec.name,
            type=spec.type,
            model=_dump(spec.model),
            target=_dump(spec.target),
            credentials_ref=refs.get(spec.name),
            rate_per_second=spec.rate_per_second,
        )
        for spec in specs
    ]


def _store_credentials(
    channel: str,
    topic: str,
    secrets: dict[str, dict[str, str]],
    store: SecretStorePort,
    time_left: Callable[[], float] | None = None,
) -> dict[str, str]:
    """Write each integration's credentials under a new name; return integration name → reference.

    No parameter ever had these names (``SecretStore.integration_refs``), so no delivery queued earlier names them:
    not one of this topic, nor one of a deleted topic of the same name; a name that exists is never overwritten
    (``SecretStore.add``). If a write fails, or ``time_left`` says less than ``CREDENTIALS_MARGIN_SECONDS`` remain
    before the next (SSM throttles writes: the function would end with some made and none deleted), those already
    made are deleted.
    """
    written: dict[str, str] = {}
    try:
        for name, secret in secrets.items():
            _check_time(time_left)
            written[name] = store.add(store.integration_refs(channel, topic, name), secret)
    except Exception:
        _delete_quietly(written.values(), store, "new credentials not deleted after a failed write", quick=True)
        raise
    return written


def _check_time(time_left: Callable[[], float] | None) -> None:
    if time_left is not None and time_left() < CREDENTIALS_MARGIN_SECONDS:
        raise UpstreamError("SSM was too slow storing the credentials; nothing was changed: retry")


def _delete_quietly(refs: Iterable[str], store: SecretStorePort, failure: str, *, quick: bool = False) -> None:
    """Delete credentials when the topic write is already decided; a failure is logged, never raised over it."""
    names = sorted(refs)
    if not names:
        return
    try:
        store.delete(names, quick=quick)
    except UpstreamError as exc:
        logger.warning(failure, extra={"count": len(names), "reason": str(exc)})


def _live_refs(topic: Topic) -> dict[str, str]:
    return {i.name: i.credentials_ref for i in topic.integrations if i.credentials_ref}


def _retire(retired: Mapping[str, str], now_retired: Iterable[str], now: str) -> tuple[dict[str, str], set[str]]:
    """Return the retired credentials to keep (reference → when retired) and those to delete now: those retired
    ``CREDENTIALS_RETENTION_DAYS`` ago or longer, and the oldest beyond ``MAX_RETIRED_CREDENTIALS``."""
    kept = {**retired, **dict.fromkeys(now_retired, now)}
    cutoff = iso_time((epoch_time(now) or 0.0) - CREDENTIALS_RETENTION_DAYS * 86400)
    expired = {ref for ref, when in kept.items() if when <= cutoff}
    by_age = sorted((when, ref) for ref, when in kept.items() if ref not in expired)
    expired.update(ref for _, ref in by_age[: max(0, len(by_age) - MAX_RETIRED_CREDENTIALS)])
    return {ref: when for ref, when in kept.items() if ref not in expired}, expired


# SNS's longest topic name (letters, digits, hyphens and underscores; a FIFO topic's ends in .fifo).
MAX_TOPIC_NAME_CHARS = 256


def check_push_topics(request: TopicRequest, prefix: str, region: str, place: tuple[str, str] | None = None) -> None:
    """Refuse a push integration's target that the deliver role may not publish to (infra/iam.yml, its ``Push``
    statement): a topic or platform endpoint of another region, or (``place``: this function's partition and account,
    when known) of another partition or account; a ``topic_arn`` whose name does not start with the stage's ``prefix``
    or that names no topic (a subscription); an ``endpoint_arn`` that names no platform endpoint. Saved, it would fail
    every delivery (SNS: AuthorizationError)."""
    for index, spec in enumerate(request.integrations):
        if spec.type != IntegrationType.PUSH:
            continue
        for field, rule, fits in (
            (
                "topic_arn",
                f"a standard (not FIFO) SNS topic whose name starts with {prefix} (the pushTopicPrefix param)",
                lambda name: (
                    re.fullmatch(re.escape(prefix) + r"[A-Za-z0-9_-]{0,256}", name) is not None
                    and len(name) <= MAX_TOPIC_NAME_CHARS
                ),
            ),
            (
                "endpoint_arn",
                "an SNS platform endpoint (endpoint/<platform>/<application>/<id>)",
                lambda name: re.fullmatch(r"endpoint/[^/:]+/[^/:]+/[^/:]+", name) is not None,
            ),
        ):
            arn = getattr(spec.target, field, None)
            if arn is None:
                continue
            _, arn_partition, _, arn_region, arn_account, name = arn.split(":", 5)
            elsewhere = place is not None and (arn_partition, arn_account) != place
            if arn_region != region or elsewhere or not fits(name):
                here = f"region {region}" + (f", partition {place[0]}, account {place[1]}" if place else "")
                raise InvalidRequestError(
                    f"integrations[{index}].target.{field}",
                    f"must be {rule} of this {here}: the only ones deliveries may publish to",
                )


def put_topic(
    channel: str,
    topic: str,
    request: TopicRequest,
    registry: TopicRegistryPort,
    store: SecretStorePort,
    time_left: Callable[[], float] | None = None,
) -> tuple[TopicChange, str | None]:
    """Create a topic (returning its new hash, shown this once) or replace its integrations (the hash is kept).

    Credentials are written under new parameter names and the topic's conditional write switches to them, so a PUT
    that loses a race (409) or fails (502) changes no credentials a topic uses, and deletes the ones it wrote.
    Credentials equal to those an integration uses keep their parameter: applying the same topic again writes none.
    Those a replace stops using (changed, dropped, or of an integration it removed) are kept for deliveries queued
    with them, ``CREDENTIALS_RETENTION_DAYS``, and deleted by the first change after that.
    """
    check_names(channel, topic)
    for index, spec in enumerate(request.integrations):
        # A template that cannot render is refused now, not at publish time.
        variables(_dump(spec.model), f"integrations[{index}].model")
    existing = _find(registry, channel, topic)
    now = utc_now()
    topic_hash: str | None = None
    if existing is None:
        topic_hash = new_topic_hash()
        base = Topic(
            channel=channel,
            topic=topic,
            integrations=[],
            hash_sha256=hash_topic_secret(topic_hash),
            created_at=now,
            updated_at=now,
        )
    else:
        base = existing.topic
    before = _live_refs(base)
    secrets = {spec.name: credentials for spec in request.integrations if (credentials := spec.credentials_dict())}
    for index, spec in enumerate(request.integrations):
        if spec.name in secrets and len(secret_text(secrets[spec.name])) > MAX_SECRET_CHARS:
            raise InvalidRequestError(
                f"integrations[{index}].credentials",
                f"must take at most {MAX_SECRET_CHARS} characters stored as JSON (SSM's limit); these are longer",
            )
    current = store.read(sorted(before[name] for name in secrets if name in before))
    same = {
        name: before[name] for name, secret in secrets.items() if name in before and current.get(before[name]) == secret
    }
    changed = {name: secret for name, secret in secrets.items() if name not in same}
    if len(changed) > MAX_NEW_CREDENTIALS:
        raise InvalidRequestError(
            "integrations",
            f"may bring at most {MAX_NEW_CREDENTIALS} new or changed credentials in one request ({len(changed)} here;"
            " SSM stores a few a second): put the topic in steps, credentials already stored are not written again",
        )
    retired, expired = _retire(existing.retired if existing else {}, set(before.values()) - set(same.values()), now)

    def version(refs: dict[str, str]) -> Topic:
        return base.model_copy(update={"integrations": _integrations(request.integrations, refs), "updated_at": now})

    # Checked with the longest names credentials may get, before anything is written.
    longest = {name: store.integration_refs(channel, topic, name)[-1] for name in changed}
    check_item_size(version({**same, **longest}), retired)
    written = _store_credentials(channel, topic, changed, store, time_left)
    stored = version({**same, **written})
    try:
        if existing is None:
            registry.create(stored)
        else:
            registry.replace(stored, existing.topic.updated_at, retired)
    except Exception:
        found, readable = _after_failed_write(registry, channel, topic)
        if found is None or found.topic.model_dump() != stored.model_dump():
            # Not this very version (its integrations, hash and time of change, to the millisecond). Its credentials
            # stay when the topic names them, live or retired (an AWS error after DynamoDB applied a write, replaced
            # since: publishes made meanwhile name them), or when the topic is unreadable: keeping credentials nobody
            # may name is the lesser harm.
            named = {i.credentials_ref for i in found.topic.integrations} | set(found.retired) if found else set()
            if written and not readable:
                logger.warning(
                    "topic unreadable after a failed write: its new credentials are kept", extra={"topic": topic}
                )
            elif not set(written.values()) & named:
                _delete_quietly(written.values(), store, "new credentials not deleted after a failed write")
            raise
        # DynamoDB applied the write and its answer was lost: botocore's retry then found its own write and failed
        # the condition (a 409 naming a change that never ran), or the error came after. Answered as done: a create's
        # hash is shown this once, and a retried PUT would not show it again.
        logger.info("topic write applied though its answer failed", extra={"channel": channel, "topic": topic})
    _delete_quietly(expired, store, "retired credentials not deleted")
    return TopicChange(created=existing is None, view=topic_view(stored)), topic_hash


def _after_failed_write(registry: TopicRegistryPort, channel: str, topic: str) -> tuple[StoredTopic | None, bool]:
    """The topic as the table holds it after its write failed, with the credentials it retired (``None``: none), and
    whether it could be read."""
    try:
        return registry.read_stored(channel, topic), True
    except NotFoundError:
        return None, True
    except NotificationError:
        return None, False


def _find(registry: TopicRegistryPort, channel: str, topic: str) -> StoredTopic | None:
    try:
        return registry.read_stored(channel, topic)
    except NotFoundError:
        return None


def delete_topic(channel: str, topic: str, registry: TopicRegistryPort, store: SecretStorePort) -> None:
    """Delete a topic and the credentials of its integrations, those it replaced last included.

    A delivery still queued with them fails, its credentials missing: no later topic of the same name stores its
    credentials under these names (``SecretStore.integration_refs``), so none is ever sent with another topic's.
    """
    removed = registry.delete(channel, topic)
    # The topic is gone whatever happens next: credentials left behind are logged, never answered as a failure.
    _delete_quietly(
        set(_live_refs(removed.topic).values()) | set(removed.retired), store, "deleted topic's credentials kept"
    )


def rotate_hash(channel: str, topic: str, registry: TopicRegistryPort) -> str:
    """Give a topic a new hash and return it; the old one stops working (after the publishers' cache TTL)."""
    existing = registry.read_stored(channel, topic)
    topic_hash = new_topic_hash()
    rotated = existing.topic.model_copy(update={"hash_sha256": hash_topic_secret(topic_hash), "updated_at": utc_now()})
    registry.replace(rotated, existing.topic.updated_at, existing.retired)
    return topic_hash


# --- routes: served by the management API function (api/handler.py), which imports this module at their first request

router = Router()
NAMES = {"channel": NAME_PATTERN, "topic": NAME_PATTERN}


@router.put(
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
    request = parse_body(router.current_event.decoded_body, TopicRequest)
    config = settings()
    check_push_topics(request, config.push_topic_prefix, config.aws_region, router.function_place())
    change, topic_hash = put_topic(
        channel, topic, request, get_topic_registry(config), get_secret_store(config), router.time_left()
    )
    if topic_hash is not None:
        return json_response(201, {**change.view, "topic_hash": topic_hash})
    return json_response(200, change.view)


@router.get(
    "/v1/channels/<channel>/topics/<topic>",
    RouteDoc({200: TopicResponse}, errors=(404, 422, *ADMIN_ERRORS), security="admin", patterns=NAMES),
)
def get_channel_topic(channel: str, topic: str) -> Response:
    """Show a topic with its credentials masked."""
    check_names(channel, topic)
    return json_response(200, topic_view(get_topic_registry(settings()).read(channel, topic)))


@router.get(
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
    query = router.current_event.query_string_parameters or {}
    return json_response(200, list_topics(channel, query, get_topic_registry(settings())))


@router.delete(
    "/v1/channels/<channel>/topics/<topic>",
    RouteDoc({204: None}, errors=(404, 409, 422, *ADMIN_ERRORS), security="admin", patterns=NAMES),
)
def delete_channel_topic(channel: str, topic: str) -> Response:
    """Delete a topic and its stored credentials."""
    check_names(channel, topic)
    config = settings()
    delete_topic(channel, topic, get_topic_registry(config), get_secret_store(config))
    return Response(status_code=204)


@router.post(
    "/v1/channels/<channel>/topics/<topic>/rotate-hash",
    RouteDoc({200: TopicHashResponse}, errors=(404, 409, 422, *ADMIN_ERRORS), security="admin", patterns=NAMES),
)
def rotate_channel_topic_hash(channel: str, topic: str) -> Response:
    """Give a topic a new hash, shown this once."""
    check_names(channel, topic)
    return json_response(200, {"topic_hash": rotate_hash(channel, topic, get_topic_registry(settings()))})
