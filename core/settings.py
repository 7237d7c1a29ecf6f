"""Settings of each function role, parsed once from the environment into a frozen model built from mixins.

This module holds the base, the spine's roles (publish, the management API, the authorizer, the consumer) and their
mixins; each later domain's roles are its own ``settings`` module (``core/audience/``, ``core/purchases/``,
``core/realtime/``), so a function defines only the models of its domain at its cold start.

A role's model holds what that function needs and no more: real resource names (tables, queue URLs, parameter names)
are required and have no default, so a function deployed without one fails its cold start naming the variable;
tunables have defaults. Field aliases are the environment variables. Only handlers and ``core/clients.py`` read
settings; this module is the only one that reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# The stage whose functions may send to loopback and private addresses: the local stack's (DESIGN.md).
LOCAL_STAGE = "local"
# Set by the local stack (infra/local/workers.py) in every function it runs, never in serverless.yml.
LOCAL_STACK_MARKER = "NOTIFY_LOCAL_STACK"
# The longest a rotated admin token keeps working: API Gateway's authorizer result cache plus the authorizer's own
# cache of the token hash (serverless.yml custom.adminAuthorizer, ADMIN_TOKEN_CACHE_SECONDS).
ADMIN_TOKEN_ROTATION_SECONDS = 60


class SettingsError(Exception):
    """The environment does not configure this function; the message names every variable missing or invalid."""


def _problem(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        return f"{where} is not set"
    message = str(error["msg"]).removeprefix("Value error, ")
    # Only the variable and the rule: the value itself might be a secret.
    return f"{where}: {message}" if where else message


class FunctionSettings(BaseModel):
    """What every function knows: its stage and region. The base of every mixin and role."""

    # Built on first use: a function validates its one role, so the mixins and the other roles are never built.
    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    stage: str = Field(alias="STAGE", min_length=1)
    aws_region: str = Field(alias="AWS_REGION", min_length=1)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """Build the settings from an environment mapping; an empty variable counts as unset.

        Raises
        ------
        SettingsError
            A required variable is not set or a value is invalid; the message names the variables, not the values.
        """
        try:
            return cls.model_validate({key: value for key, value in environ.items() if value != ""})
        except ValidationError as exc:
            problems = "; ".join(_problem(error) for error in exc.errors(include_url=False, include_input=False))
            raise SettingsError(f"{cls.__name__}: {problems}") from None


class TopicsSettings(FunctionSettings):
    """The topics table and how long a read topic is reused."""

    topics_table: str = Field(alias="TOPICS_TABLE", min_length=1)
    topic_cache_ttl_seconds: float = Field(default=30.0, ge=0, alias="TOPIC_CACHE_TTL_SECONDS")


class LedgerSettings(FunctionSettings):
    """The delivery ledger table and how long its rows live."""

    deliveries_table: str = Field(alias="DELIVERIES_TABLE", min_length=1)
    ledger_ttl_days: int = Field(default=30, ge=1, alias="LEDGER_TTL_DAYS")


class DeliveryQueueSettings(FunctionSettings):
    """The delivery queue."""

    delivery_queue_url: str = Field(alias="DELIVERY_QUEUE_URL", min_length=1)


class DeadLetterQueueSettings(FunctionSettings):
    """The delivery queue's dead-letter queue."""

    dead_letter_queue_url: str = Field(alias="DEAD_LETTER_QUEUE_URL", min_length=1)


class IdempotencySettings(FunctionSettings):
    """The idempotency table of publishing and how long a key is remembered."""

    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE", min_length=1)
    idempotency_ttl_seconds: int = Field(default=86400, ge=60, alias="IDEMPOTENCY_TTL_SECONDS")


class IntegrationSecretsSettings(FunctionSettings):
    """Where integration credentials are written: SSM parameters under this prefix."""

    parameter_prefix: str = Field(alias="PARAMETER_PREFIX", pattern=r"^/\S+$")


class CredentialsCacheSettings(FunctionSettings):
    """How long read integration credentials are reused, so a rotated secret takes effect within that time."""

    secrets_cache_seconds: int = Field(default=300, ge=0, alias="SECRETS_CACHE_SECONDS")


class AdminTokenSettings(FunctionSettings):
    """The SSM parameter holding the admin token's SHA-256, and how long the authorizer reuses it.

    The cache is at most half of ``ADMIN_TOKEN_ROTATION_SECONDS``; API Gateway's result cache takes the other half.
    """

    admin_token_hash_parameter: str = Field(alias="ADMIN_TOKEN_HASH_PARAMETER", pattern=r"^/\S+$")
    admin_token_cache_seconds: float = Field(
        default=30.0, ge=0, le=ADMIN_TOKEN_ROTATION_SECONDS / 2, alias="ADMIN_TOKEN_CACHE_SECONDS"
    )


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


class OutboundSettings(FunctionSettings):
    """Outbound HTTP of deliveries: timeouts, concurrency, the Telegram API, and the SSRF guard's one switch.

    ``ALLOW_PRIVATE_TARGETS=true`` is refused inside Lambda unless this is the local stack: with the guard off, a
    webhook URL could reach the Lambda runtime API on 127.0.0.1:9001 or anything in the VPC. Inside Lambda means
    ``AWS_LAMBDA_FUNCTION_NAME`` is set (tests and scripts set none). The local stack is told apart by ``STAGE=local``
    and its marker ``NOTIFY_LOCAL_STACK=1``, and by the absence of what only the real runtime sets
    (``AWS_EXECUTION_ENV``, ``AWS_LAMBDA_RUNTIME_API``; reserved, a deploy cannot set or unset them): a Lambda of
    stage ``local`` deployed to AWS is refused too.
    """

    http_connect_timeout: float = Field(default=3.05, gt=0, alias="HTTP_CONNECT_TIMEOUT")
    http_read_timeout: float = Field(default=10.0, gt=0, alias="HTTP_READ_TIMEOUT")
    delivery_concurrency: int = Field(default=10, ge=1, alias="DELIVERY_CONCURRENCY")
    telegram_api_base: str = Field(default="https://api.telegram.org", pattern=r"^https?://", alias="TELEGRAM_API_BASE")
    allow_private_targets: bool = Field(default=False, alias="ALLOW_PRIVATE_TARGETS")
    lambda_function_name: str | None = Field(default=None, alias="AWS_LAMBDA_FUNCTION_NAME")
    lambda_execution_env: str | None = Field(default=None, alias="AWS_EXECUTION_ENV")
    lambda_runtime_api: str | None = Field(default=None, alias="AWS_LAMBDA_RUNTIME_API")
    local_stack: bool = Field(default=False, alias=LOCAL_STACK_MARKER)

    @property
    def on_local_stack(self) -> bool:
        """Tell whether this function runs on the local stack (``make run``), not in AWS."""
        real_runtime = self.lambda_execution_env is not None or self.lambda_runtime_api is not None
        return self.stage == LOCAL_STAGE and self.local_stack and not real_runtime

    @model_validator(mode="after")
    def _private_targets_only_locally(self) -> Self:
        inside_lambda = self.lambda_function_name is not None
        if self.allow_private_targets and inside_lambda and not self.on_local_stack:
            raise ValueError(
                "ALLOW_PRIVATE_TARGETS=true is refused inside Lambda: loopback and private targets are allowed on "
                f"the local stack only (STAGE={LOCAL_STAGE} under make run); this is stage {self.stage!r}"
            )
        return self


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


class PromotionsSettings(FunctionSettings):
    """The promotions table (promo codes and the credit each earns)."""

    promotions_table: str = Field(alias="PROMOTIONS_TABLE", min_length=1)


class PurchasesSettings(FunctionSettings):
    """The purchases table: per purchase, the Stripe balance credit (or why none) and the purchase notification."""

    purchases_table: str = Field(alias="PURCHASES_TABLE", min_length=1)


class PaymentsSettings(FunctionSettings):
    """The payments table: payments taken in from Stripe webhooks, with the Stripe event ids recorded for each."""

    payments_table: str = Field(alias="PAYMENTS_TABLE", min_length=1)


class ChannelSettings(OutboundSettings, BrowserDeliverySettings, LedgerSettings):
    """What the channels send through: outbound HTTP, and for browsers the connections, the Management API, and the
    ledger's notification records (a frame names the notification's channel/topic and creation time).

    ``EXPANSION_QUEUE_URL``, where the stage has an audience, is where a ``subscribers`` delivery hands its
    notification's subscribers and a push delivery that SNS answered ``EndpointDisabled`` sends its endpoint: the
    expansion worker has the database, the consumer has not.
    """

    expansion_queue_url: str | None = Field(default=None, alias="EXPANSION_QUEUE_URL", min_length=1)


class PublishSettings(TopicsSettings, LedgerSettings, DeliveryQueueSettings, IdempotencySettings):
    """The publish function: reads topics, records notifications, enqueues deliveries, remembers idempotency keys."""


class ApiSettings(
    TopicsSettings,
    LedgerSettings,
    DeliveryQueueSettings,
    DeadLetterQueueSettings,
    IntegrationSecretsSettings,
    PromotionsSettings,
    PurchasesSettings,
    PaymentsSettings,
):
    """The management API: topics and their credentials, notification status, dead letters and their redrive,
    promotions, and what was done with purchases and payments."""


class AuthorizerSettings(AdminTokenSettings):
    """The admin authorizer: the token hash parameter only."""


class DeliverSettings(
    DeliveryQueueSettings,
    DeadLetterQueueSettings,
    PacingSettings,
    RetrySettings,
    ChannelSettings,
    CredentialsCacheSettings,
):
    """The delivery consumer: ledger, queues, pacing, retries, the channels' resources and integration credentials."""


S = TypeVar("S", bound=FunctionSettings)
_loaded: dict[type[FunctionSettings], FunctionSettings] = {}


def load_settings(model: type[S]) -> S:
    """Return this process's settings of ``model``, parsed from ``os.environ`` the first time (the cold start).

    Raises
    ------
    SettingsError
        The environment lacks a variable the model requires, or has an invalid one; nothing is cached then.
    """
    found = _loaded.get(model)
    if found is None:
        found = _loaded[model] = model.from_env(os.environ)
    assert isinstance(found, model)
    return found


def clear_settings() -> None:
    """Forget every parsed settings model; tests call it (through ``core.clients.reset``) after changing the env."""
    _loaded.clear()


def role_settings() -> dict[str, type[FunctionSettings]]:
    """Return the settings model of each function of serverless.yml, by its key there (the deploy checks parse each
    packaged environment with it). The domains' roles are imported here, at the call: a function imports its own
    role's module only, and defines no other role's models at its cold start."""
    from core.audience.settings import AudienceSettings, CronSettings, ExpandSettings
    from core.purchases.settings import (
        PaymentWorkerSettings,
        PurchaseNotifySettings,
        StripeCreditSettings,
        StripeWebhookSettings,
    )
    from core.realtime.settings import RealtimeTokensSettings, WebsocketSettings

    return {
        "publish": PublishSettings,
        "api": ApiSettings,
        "adminAuthorizer": AuthorizerSettings,
        "deliver": DeliverSettings,
        "realtimeTokens": RealtimeTokensSettings,
        "websocket": WebsocketSettings,
        "stripeCredit": StripeCreditSettings,
        "purchaseNotify": PurchaseNotifySettings,
        "stripeWebhook": StripeWebhookSettings,
        "paymentWorker": PaymentWorkerSettings,
        "audience": AudienceSettings,
        "cron": CronSettings,
        "expand": ExpandSettings,
    }
