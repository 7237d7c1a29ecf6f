"""Settings of the delivery consumer: queues, pacing, retries, the channels' resources and integration credentials."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from core.roles.shared import DeadLetterQueueSettings, DeliveryQueueSettings, LedgerSettings, OutboundSettings
from core.settings import FunctionSettings


class CredentialsCacheSettings(FunctionSettings):
    """How long read integration credentials are reused, so a rotated secret takes effect within that time."""

    secrets_cache_seconds: int = Field(default=300, ge=0, alias="SECRETS_CACHE_SECONDS")


class PacingSettings(FunctionSettings):
    """The shared pacing state and how long a send may wait for its slot."""

    pacing_table: str = Field(alias="PACING_TABLE", min_length=1)
    pacing_max_wait_seconds: float = Field(default=5.0, gt=0, alias="PACING_MAX_WAIT_SECONDS")
    pacing_lead_seconds: float = Field(default=2.0, ge=0, alias="PACING_LEAD_SECONDS")


class RetrySettings(FunctionSettings):
    """Backoff and limits of failed deliveries, and the delivery queue's ``maxReceiveCount``.

    ``MAX_RECEIVE_COUNT`` is the receives of one message after which SQS moves it to the dead-letter queue itself (the
    queue's redrive policy, the same stage param): a message the consumer keeps on the queue on its last receive gets
    its row written ``dead`` first, since the consumer never sees it again.
    """

    retry_base_seconds: float = Field(default=10.0, gt=0, alias="RETRY_BASE_SECONDS")
    retry_cap_seconds: float = Field(default=900.0, gt=0, alias="RETRY_CAP_SECONDS")
    retry_window_hours: float = Field(default=24.0, gt=0, le=24 * 14, alias="RETRY_WINDOW_HOURS")
    max_attempts: int = Field(default=100, ge=1, alias="MAX_ATTEMPTS")
    # SQS takes 1 to 1000; 5 is serverless.yml's default param.
    max_receive_count: int = Field(default=5, ge=1, le=1000, alias="MAX_RECEIVE_COUNT")


class BrowserDeliverySettings(FunctionSettings):
    """Where browser deliveries go: the connections table and the WebSocket API's Management API endpoint
    (``https://<api>.execute-api.<region>.<suffix>/<stage>``).

    Both or neither: without them a browser delivery fails permanently, saying so. serverless.yml always sets both
    for the deliver function (the deploy checks make sure); they are optional here so that a consumer configured for
    the other channels only still starts.
    """

    connections_table: str | None = Field(default=None, alias="CONNECTIONS_TABLE", min_length=1)
    realtime_management_url: str | None = Field(
        default=None, alias="REALTIME_MANAGEMENT_URL", pattern=r"^https?://\S+$"
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.connections_table is None) != (self.realtime_management_url is None):
            missing = "CONNECTIONS_TABLE" if self.connections_table is None else "REALTIME_MANAGEMENT_URL"
            raise ValueError(
                f"{missing} is not set (browser deliveries need CONNECTIONS_TABLE and REALTIME_MANAGEMENT_URL)"
            )
        return self


class ChannelSettings(OutboundSettings, BrowserDeliverySettings, LedgerSettings):
    """What the channels send through: outbound HTTP, and for browsers the connections, the Management API, and the
    ledger's notification records (a frame names the notification's channel/topic and creation time).

    ``EXPANSION_QUEUE_URL``, where the stage has an audience, is where a ``subscribers`` delivery hands its
    notification's subscribers and a push delivery that SNS answered ``EndpointDisabled`` sends its endpoint: the
    expansion worker has the database, the consumer has not.
    """

    expansion_queue_url: str | None = Field(default=None, alias="EXPANSION_QUEUE_URL", min_length=1)


class DeliverSettings(
    DeliveryQueueSettings,
    DeadLetterQueueSettings,
    PacingSettings,
    RetrySettings,
    ChannelSettings,
    CredentialsCacheSettings,
):
    """The delivery consumer: ledger, queues, pacing, retries, the channels' resources and integration credentials."""
