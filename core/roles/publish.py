"""Settings of the publish function: topics, the ledger, the delivery queue and the idempotency table."""

from __future__ import annotations

from pydantic import Field

from core.roles.shared import DeliveryQueueSettings, LedgerSettings, TopicsSettings
from core.settings import FunctionSettings


class IdempotencySettings(FunctionSettings):
    """The idempotency table of publishing and how long a key is remembered."""

    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE", min_length=1)
    idempotency_ttl_seconds: int = Field(default=86400, ge=60, alias="IDEMPOTENCY_TTL_SECONDS")


class PublishSettings(TopicsSettings, LedgerSettings, DeliveryQueueSettings, IdempotencySettings):
    """The publish function: reads topics, records notifications, enqueues deliveries, remembers idempotency keys."""
