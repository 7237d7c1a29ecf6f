"""Settings of the audience roles (the audience routes, the cron, the expansion worker) and their mixins; the base and
``load_settings`` are ``core/settings.py``'s."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from core.roles.shared import DeliveryQueueSettings, LedgerSettings, TopicsSettings
from core.settings import FunctionSettings


class DatabaseSettings(FunctionSettings):
    """The audience's PostgreSQL: ``DATABASE_URL`` or ``DATABASE_SECRET_PARAMETER``, one of them required.

    ``DATABASE_URL`` (a libpq URL or DSN) is for the local stack and the tests. On AWS the credentials stay out of the
    function's environment: ``DATABASE_SECRET_PARAMETER`` names the SSM SecureString holding the URL, or a Secrets
    Manager secret (an RDS one's JSON too) as ``/aws/reference/secretsmanager/<secret name>``; it is read when the
    connection is opened, so a rotated secret is used from the next connection on. When both are set,
    ``DATABASE_URL`` wins. ``DATABASE_CONNECT_TIMEOUT`` bounds a connection attempt, in seconds.
    """

    database_url: SecretStr | None = Field(default=None, alias="DATABASE_URL")
    database_secret_parameter: str | None = Field(default=None, alias="DATABASE_SECRET_PARAMETER", pattern=r"^/\S+$")
    database_connect_timeout: int = Field(default=5, ge=1, le=30, alias="DATABASE_CONNECT_TIMEOUT")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.database_url is None and self.database_secret_parameter is None:
            raise ValueError("DATABASE_URL or DATABASE_SECRET_PARAMETER must be set (the audience database)")
        return self


class ExpansionQueueSettings(FunctionSettings):
    """The expansion queue: sends handed to the expansion worker (``POST /v1/sends``, the cron)."""

    expansion_queue_url: str = Field(alias="EXPANSION_QUEUE_URL", min_length=1)


class AudienceSettings(DatabaseSettings, ExpansionQueueSettings, LedgerSettings):
    """The audience routes' function: the PostgreSQL audience, SNS (in the function's own region, ``AWS_REGION``)
    for the devices' platform endpoints, the expansion queue ``POST /v1/sends`` hands sends to, and the ledger a
    user's deletion is recorded in (the consumer sends nothing more to them)."""


class ScheduleDispatchSettings(FunctionSettings):
    """How the cron dispatches scheduled sends: rows per claim, the claim timeout, the margin kept before the function
    times out, and the retries of a failed enqueue.

    The claim timeout must be longer than the function's timeout (serverless.yml), so that only the claims of a run
    that died are taken over, never those of one still running.
    """

    cron_batch_size: int = Field(default=100, ge=1, le=1000, alias="CRON_BATCH_SIZE")
    cron_claim_timeout_seconds: int = Field(default=300, ge=60, le=3600, alias="CRON_CLAIM_TIMEOUT_SECONDS")
    cron_time_margin_seconds: float = Field(default=10.0, ge=0, le=120, alias="CRON_TIME_MARGIN_SECONDS")
    cron_retry_base_seconds: int = Field(default=60, ge=1, alias="CRON_RETRY_BASE_SECONDS")
    cron_retry_cap_seconds: int = Field(default=3600, ge=1, alias="CRON_RETRY_CAP_SECONDS")
    cron_max_attempts: int = Field(default=24, ge=1, alias="CRON_MAX_ATTEMPTS")
    # How long a local-time send's recorded recipients (each zone leaves out those an earlier zone reached) are kept
    # after its schedule ended, at least: longer still while a hand-off of it has no finished run, since its job may
    # come back from the expansion DLQ (core/audience/repository.py purge_send_recipients).
    cron_recipients_kept_hours: float = Field(default=72, ge=1, le=24 * 14, alias="CRON_RECIPIENTS_KEPT_HOURS")


class CronSettings(DatabaseSettings, ScheduleDispatchSettings, ExpansionQueueSettings):
    """The cron (EventBridge ``rate(1 minute)``): claims due scheduled sends in PostgreSQL and hands them to the
    expansion queue."""


class ExpansionSettings(FunctionSettings):
    """How the expansion worker pages an audience, the margin it keeps before the function times out, and the
    channel/topic whose email and telegram integrations sends go out through (``<channel>/<topic>``; unset, a send
    asking for email or telegram fails naming it)."""

    expansion_page_size: int = Field(default=500, ge=1, le=1000, alias="EXPANSION_PAGE_SIZE")
    expansion_time_margin_seconds: float = Field(default=20.0, ge=0, le=300, alias="EXPANSION_TIME_MARGIN_SECONDS")
    # How long a run holds a send past its last page: a run that died frees the send after this.
    expansion_lease_seconds: float = Field(default=120.0, ge=10, le=900, alias="EXPANSION_LEASE_SECONDS")
    audience_sender_topic: str | None = Field(
        default=None,
        alias="AUDIENCE_SENDER_TOPIC",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}/[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    )


class ExpandSettings(
    DatabaseSettings,
    ExpansionSettings,
    ExpansionQueueSettings,
    TopicsSettings,
    LedgerSettings,
    DeliveryQueueSettings,
):
    """The expansion worker (SQS, batch size 1): reads the audience in PostgreSQL, the sender topic, writes the
    ledger's record and skipped rows, enqueues deliveries, and hands a send it has no time left for to a new job."""
