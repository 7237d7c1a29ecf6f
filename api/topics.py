"""Administering topics: create or replace (credentials go to SSM), read with credentials masked, rotate, delete."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from core.channels import CREDENTIAL_FIELDS, NAME_RULE, IntegrationSpec, TopicRequest
from core.errors import InvalidRequestError, NotFoundError, UpstreamError
from core.ledger import utc_now
from core.models import Integration, IntegrationType, Reply, Topic, is_name
from core.observability import logger
from core.ports import SecretStorePort, TopicRegistryPort
from core.templates import variables
from core.topics import StoredTopic, check_item_size, hash_topic_secret, new_topic_hash

MASK = "********"


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
    """Body of listing a channel's topics."""

    channel: str
    topics: list[TopicResponse]


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
    channel: str, topic: str, secrets: dict[str, dict[str, str]], taken: set[str], store: SecretStorePort
) -> dict[str, str]:
    """Write each integration's credentials under a name no parameter holds; return integration name → reference.

    The usual name is tried first unless the topic (or a delivery queued before its last change) uses it; a name
    taken meanwhile by another write is never overwritten (``SecretStore.add``). If a write fails, those already
    made are deleted.
    """
    written: dict[str, str] = {}
    try:
        for name, secret in secrets.items():
            candidates = [ref for ref in store.integration_refs(channel, topic, name) if ref not in taken]
            written[name] = store.add(candidates, secret)
    except Exception:
        _delete_quietly(written.values(), store, "new credentials not deleted after a failed write")
        raise
    return written


def _delete_quietly(refs: Iterable[str], store: SecretStorePort, failure: str) -> None:
    """Delete credentials when the topic write is already decided; a failure is logged, never raised over it."""
    names = sorted(refs)
    if not names:
        return
    try:
        store.delete(names)
    except UpstreamError as exc:
        logger.warning(failure, extra={"count": len(names), "reason": str(exc)})


def _live_refs(topic: Topic) -> dict[str, str]:
    return {i.name: i.credentials_ref for i in topic.integrations if i.credentials_ref}


def put_topic(
    channel: str, topic: str, request: TopicRequest, registry: TopicRegistryPort, store: SecretStorePort
) -> tuple[TopicChange, str | None]:
    """Create a topic (returning its new hash, shown this once) or replace its integrations (the hash is kept).

    Credentials are written under new parameter names and the topic's conditional write switches to them, so a PUT
    that loses a race (409) or fails (502) changes no credentials a topic uses, and deletes the ones it wrote. After
    a replace, the credentials of integrations it removed are deleted, and those it replaced are kept until the next
    change, for deliveries already queued with them.
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
    replaced = sorted(before[name] for name in secrets if name in before)

    def version(refs: dict[str, str]) -> Topic:
        return base.model_copy(update={"integrations": _integrations(request.integrations, refs), "updated_at": now})

    # Checked with the longest names credentials may get, before anything is written.
    check_item_size(version({name: store.integration_refs(channel, topic, name)[-1] for name in secrets}), replaced)
    taken = set(before.values()) | set(existing.replaced_refs if existing is not None else ())
    refs = _store_credentials(channel, topic, secrets, taken, store)
    stored = version(refs)
    try:
        if existing is None:
            registry.create(stored)
        else:
            registry.replace(stored, existing.topic.updated_at, replaced)
    except Exception:
        _delete_quietly(refs.values(), store, "new credentials not deleted after a failed write")
        raise
    if existing is not None:
        # Replaced two changes ago, or removed now: neither the topic nor a delivery queued since names them.
        unused = set(existing.replaced_refs) | (set(before.values()) - set(replaced))
        _delete_quietly(unused, store, "replaced credentials not deleted")
    return TopicChange(created=existing is None, view=topic_view(stored)), topic_hash


def _find(registry: TopicRegistryPort, channel: str, topic: str) -> StoredTopic | None:
    try:
        return registry.read_stored(channel, topic)
    except NotFoundError:
        return None


def delete_topic(channel: str, topic: str, registry: TopicRegistryPort, store: SecretStorePort) -> None:
    """Delete a topic and the credentials of its integrations, those it replaced last included."""
    removed = registry.delete(channel, topic)
    refs = set(_live_refs(removed.topic).values()) | set(removed.replaced_refs)
    if refs:
        store.delete(sorted(refs))


def rotate_hash(channel: str, topic: str, registry: TopicRegistryPort) -> str:
    """Give a topic a new hash and return it; the old one stops working (after the publishers' cache TTL)."""
    existing = registry.read_stored(channel, topic)
    topic_hash = new_topic_hash()
    rotated = existing.topic.model_copy(update={"hash_sha256": hash_topic_secret(topic_hash), "updated_at": utc_now()})
    registry.replace(rotated, existing.topic.updated_at, existing.replaced_refs)
    return topic_hash
