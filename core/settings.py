"""Settings of every function, parsed once from the environment into a frozen model."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    """What a function needs to know about its deployment; names are the environment variables, lower-cased."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    service_name: str = Field(default="notify", alias="POWERTOOLS_SERVICE_NAME")
    stage: str = Field(default="dev", alias="STAGE")
    aws_region: str = Field(default="us-east-1", alias="AWS_REGION")
    topics_table: str = Field(default="notify-topics", alias="TOPICS_TABLE")
    deliveries_table: str = Field(default="notify-deliveries", alias="DELIVERIES_TABLE")
    idempotency_table: str = Field(default="notify-idempotency", alias="IDEMPOTENCY_TABLE")
    delivery_queue_url: str = Field(default="", alias="DELIVERY_QUEUE_URL")
    dead_letter_queue_url: str = Field(default="", alias="DEAD_LETTER_QUEUE_URL")
    parameter_prefix: str = Field(default="/notify/dev", alias="PARAMETER_PREFIX")
    admin_token_hash_parameter: str = Field(default="/notify/dev/admin-token-hash", alias="ADMIN_TOKEN_HASH_PARAMETER")
    topic_cache_ttl_seconds: float = Field(default=30.0, ge=0, alias="TOPIC_CACHE_TTL_SECONDS")
    ledger_ttl_days: int = Field(default=30, ge=1, alias="LEDGER_TTL_DAYS")
    idempotency_ttl_seconds: int = Field(default=86400, ge=60, alias="IDEMPOTENCY_TTL_SECONDS")
    telegram_api_base: str = Field(default="https://api.telegram.org", alias="TELEGRAM_API_BASE")
    allow_private_targets: bool = Field(default=False, alias="ALLOW_PRIVATE_TARGETS")
    http_connect_timeout: float = Field(default=3.05, gt=0, alias="HTTP_CONNECT_TIMEOUT")
    http_read_timeout: float = Field(default=10.0, gt=0, alias="HTTP_READ_TIMEOUT")
    retry_base_seconds: float = Field(default=10.0, gt=0, alias="RETRY_BASE_SECONDS")
    retry_cap_seconds: float = Field(default=900.0, gt=0, alias="RETRY_CAP_SECONDS")
    retry_window_hours: float = Field(default=24.0, gt=0, le=24 * 14, alias="RETRY_WINDOW_HOURS")
    max_attempts: int = Field(default=100, ge=1, alias="MAX_ATTEMPTS")
    pacing_table: str = Field(default="notify-pacing", alias="PACING_TABLE")
    pacing_max_wait_seconds: float = Field(default=5.0, gt=0, alias="PACING_MAX_WAIT_SECONDS")
    pacing_lead_seconds: float = Field(default=2.0, ge=0, alias="PACING_LEAD_SECONDS")
    delivery_concurrency: int = Field(default=10, ge=1, alias="DELIVERY_CONCURRENCY")
    secrets_cache_seconds: int = Field(default=300, ge=0, alias="SECRETS_CACHE_SECONDS")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; unknown variables are ignored."""
        return cls.model_validate({key: value for key, value in environ.items() if value != ""})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the settings of this process, parsed from ``os.environ`` on first use."""
    return Settings.from_env(os.environ)
