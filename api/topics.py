"""Administering topics: create or replace (credentials go to SSM), read with credentials masked, rotate, delete."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from core.channels import CREDENTIAL_FIELDS, NAME_PATTERN, IntegrationSpec, TopicRequest
from core.errors import InvalidRequestError, NotFoundError
from core.ledger import utc_now
from core.models import Integration, Topic
from core.secrets import SecretStore
from core.templates import variables
from core.topics import TopicRegistry, hash_topic_secret, new_topic_hash

MASK = "********"
_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class TopicChange:
    """The outcome of a create or replace: the topic as a caller may see it, and the new hash on create only."""

    created: bool
    view: dict[str, Any]


def check_name(field: str, value: str) -> None:
    """Raise naming ``field`` when ``value`` is not a valid channel or topic name."""
    if not _NAME.fullmatch(value):  # match() would let "$" accept a trailing newline
        raise InvalidRequestError(field, "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")


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


def _stored(channel: str, topic: str, spec: IntegrationSpec, store: SecretStore) -> Integration:
    credentials = spec.credentials_dict()
    ref = None
    if credentials:
        ref = store.integration_ref(channel, topic, spec.name)
        store.put(ref, credentials)
    return Integration(
        name=spec.name,
        type=spec.type,
        model=_dump(spec.model),
        target=_dump(spec.target),
        credentials_ref=ref,
        rate_per_second=spec.rate_per_second,
    )


def put_topic(
    channel: str, topic: str, request: TopicRequest, registry: TopicRegistry, store: SecretStore
) -> tuple[TopicChange, str | None]:
    """Create a topic (returning its new hash, shown this once) or replace its integrations (the hash is kept)."""
    check_names(channel, topic)
    for index, spec in enumerate(request.integrations):
        # A template that cannot render is refused now, not at publish time.
        variables(_dump(spec.model), f"integrations.{index}.model")
    existing = _find(registry, channel, topic)
    integrations = [_stored(channel, topic, spec, store) for spec in request.integrations]
    now = utc_now()
    if existing is None:
        topic_hash = new_topic_hash()
        stored = Topic(
            channel=channel,
            topic=topic,
            integrations=integrations,
            hash_sha256=hash_topic_secret(topic_hash),
            created_at=now,
            updated_at=now,
        )
        registry.create(stored)
        return TopicChange(created=True, view=topic_view(stored)), topic_hash
    stored = existing.model_copy(update={"integrations": integrations, "updated_at": now})
    registry.replace(stored, existing.updated_at)
    _forget_credentials(existing, stored, store)
    return TopicChange(created=False, view=topic_view(stored)), None


def _find(registry: TopicRegistry, channel: str, topic: str) -> Topic | None:
    try:
        return registry.read(channel, topic)
    except NotFoundError:
        return None


def _forget_credentials(before: Topic, after: Topic | None, store: SecretStore) -> None:
    """Delete the parameters of integrations that no longer exist."""
    kept = {i.credentials_ref for i in after.integrations} if after else set()
    stale = {i.credentials_ref for i in before.integrations if i.credentials_ref} - kept
    if stale:
        store.delete(sorted(ref for ref in stale if ref))


def delete_topic(channel: str, topic: str, registry: TopicRegistry, store: SecretStore) -> None:
    """Delete a topic and the credentials of its integrations."""
    removed = registry.delete(channel, topic)
    _forget_credentials(removed, None, store)


def rotate_hash(channel: str, topic: str, registry: TopicRegistry) -> str:
    """Give a topic a new hash and return it; the old one stops working (after the publishers' cache TTL)."""
    existing = registry.read(channel, topic)
    topic_hash = new_topic_hash()
    rotated = existing.model_copy(update={"hash_sha256": hash_topic_secret(topic_hash), "updated_at": utc_now()})
    registry.replace(rotated, existing.updated_at)
    return topic_hash
