"""Domain models: stored integrations and topics, the delivery message, ledger statuses, the publish request.

The schema an admin writes integrations in lives in ``core.integrations``; the publish path never loads it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Base of request models: unknown fields are an error, not silently dropped.

    Their validators are built on first use (``defer_build``), so functions that never parse an admin request (the
    publish route, the consumer) do not pay for building them at cold start.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class IntegrationType(StrEnum):
    """The channels a topic can deliver to."""

    EMAIL = "email"
    SLACK = "slack"
    TELEGRAM = "telegram"
    WEBHOOK = "webhook"
    PUSH = "push"


# --- what is stored and what travels --------------------------------------------------------------------------


class Integration(BaseModel):
    """An integration as stored: secrets replaced by the name of the parameter holding them."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: IntegrationType
    model: Any
    target: dict[str, Any] = Field(default_factory=dict)
    credentials_ref: str | None = None


class Topic(BaseModel):
    """A channel/topic and its integrations, as the registry holds it."""

    model_config = ConfigDict(frozen=True)

    channel: str
    topic: str
    integrations: list[Integration]
    hash_sha256: str
    created_at: str
    updated_at: str


class Content(BaseModel):
    """What a channel sends: rendered text, and for some types a subject, html or a structured payload."""

    model_config = ConfigDict(frozen=True)

    text: str | None = None
    subject: str | None = None
    html: str | None = None
    data: Any = None


class MessageIntegration(BaseModel):
    """The part of an integration a delivery message carries: never a secret, only its reference."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: IntegrationType
    target: dict[str, Any] = Field(default_factory=dict)
    credentials_ref: str | None = None


class DeliveryMessage(BaseModel):
    """The body of a message on the delivery queue (version 1 of the contract in DESIGN.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    notification_id: str = Field(min_length=1)
    channel: str
    topic: str
    created_at: str
    integration: MessageIntegration
    content: Content


class DeliveryStatus(StrEnum):
    """Where a delivery stands in the ledger."""

    QUEUED = "queued"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"
    DEAD = "dead"


class PublishRequest(Strict):
    """Body of ``POST /v1/notifications/{channel}/{topic}``."""

    metadata: dict[str, Any] = Field(default_factory=dict)
