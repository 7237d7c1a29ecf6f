"""Settings of each function role, parsed once from the environment into a frozen model built from mixins.

A role's model holds what that function needs and no more: real resource names (tables, queue URLs, parameter names)
are required and have no default, so a function deployed without one fails its cold start naming the variable;
tunables have defaults. Field aliases are the environment variables. Only handlers and ``core/clients.py`` read
settings; this module is the only one that reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

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


class RealtimeKeysSettings(FunctionSettings):
    """The SSM parameter holding the realtime tokens' signing keys, and how long its value is reused.

    A key added by a rotation is found at once by a verifier that meets its id (it reads the parameter again); the
    cache only bounds how long a signer keeps signing with the key before.
    """

    realtime_keys_parameter: str = Field(alias="REALTIME_KEYS_PARAMETER", pattern=r"^/\S+$")
    realtime_keys_cache_seconds: float = Field(default=60.0, ge=0, le=300, alias="REALTIME_KEYS_CACHE_SECONDS")


class RealtimeTokenSettings(RealtimeKeysSettings):
    """Lifetime of the browser connection tokens: the default, and the longest a request may ask for."""

    realtime_token_seconds: int = Field(default=900, ge=60, alias="REALTIME_TOKEN_SECONDS")
    realtime_token_max_seconds: int = Field(default=3600, ge=60, le=86400, alias="REALTIME_TOKEN_MAX_SECONDS")

    @model_validator(mode="after")
    def _default_within_max(self) -> Self:
        if self.realtime_token_seconds > self.realtime_token_max_seconds:
            raise ValueError("REALTIME_TOKEN_SECONDS must not exceed REALTIME_TOKEN_MAX_SECONDS")
        return self


class RealtimeUrlSettings(FunctionSettings):
    """The URL browsers connect to: the WebSocket API's (``wss://``), or the local stack's (``ws://``)."""

    realtime_url: str = Field(alias="REALTIME_URL", pattern=r"^wss?://\S+$")


class ConnectionsSettings(FunctionSettings):
    """The table of open browser connections."""

    connections_table: str = Field(alias="CONNECTIONS_TABLE", min_length=1)


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


class StripeSettings(FunctionSettings):
    """The Stripe API: the SSM SecureString holding the secret key, how long it is reused, and the API's base URL.

    ``STRIPE_API_BASE`` is set for the local stage only (the local Stripe server); unset, the SDK's own base is used.
    """

    stripe_secret_key_parameter: str = Field(alias="STRIPE_SECRET_KEY_PARAMETER", pattern=r"^/\S+$")
    stripe_secrets_cache_seconds: int = Field(default=300, ge=0, alias="STRIPE_SECRETS_CACHE_SECONDS")
    stripe_api_base: str | None = Field(default=None, alias="STRIPE_API_BASE", pattern=r"^https?://\S+$")
    stripe_timeout_seconds: float = Field(default=10.0, gt=0, le=60, alias="STRIPE_TIMEOUT_SECONDS")


class StripeWebhookSecretSettings(FunctionSettings):
    """The SSM SecureString holding the Stripe webhook endpoint's signing secret, and Stripe's timestamp tolerance."""

    stripe_webhook_secret_parameter: str = Field(alias="STRIPE_WEBHOOK_SECRET_PARAMETER", pattern=r"^/\S+$")
    stripe_secrets_cache_seconds: int = Field(default=300, ge=0, alias="STRIPE_SECRETS_CACHE_SECONDS")
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600, alias="STRIPE_WEBHOOK_TOLERANCE_SECONDS")


class StripeWebhookQueueSettings(FunctionSettings):
    """The queue verified Stripe webhook events wait in for the payment worker."""

    stripe_webhook_queue_url: str = Field(alias="STRIPE_WEBHOOK_QUEUE_URL", min_length=1)


class PurchaseTopicSettings(FunctionSettings):
    """The SNS ``Purchase`` topic the payment worker publishes to."""

    purchase_topic_arn: str = Field(alias="PURCHASE_TOPIC_ARN", min_length=1)


class PurchaseNotificationSettings(FunctionSettings):
    """The channel/topic a purchase is published on as a notification (stage params), its integrations' templates
    getting the purchase's fields as variables."""

    purchase_notification_channel: str = Field(alias="PURCHASE_NOTIFICATION_CHANNEL", min_length=1)
    purchase_notification_topic: str = Field(alias="PURCHASE_NOTIFICATION_TOPIC", min_length=1)


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


class RealtimeTokensSettings(RealtimeTokenSettings, RealtimeUrlSettings):
    """The token route: signs browser connection tokens and names the URL to connect to."""


class WebsocketSettings(ConnectionsSettings, RealtimeTokenSettings):
    """The WebSocket API's function: checks tokens, stores connections, signs refreshed tokens."""


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


class StripeCreditSettings(StripeSettings, PromotionsSettings, PurchasesSettings):
    """The Stripe credit subscriber: reads promotions, credits customer balances, records the credits."""


class PurchaseNotifySettings(
    PurchaseNotificationSettings, TopicsSettings, LedgerSettings, DeliveryQueueSettings, PurchasesSettings
):
    """The purchase notification subscriber: publishes a purchase on its channel/topic through the one fan-out."""


class StripeWebhookSettings(StripeWebhookSecretSettings, StripeWebhookQueueSettings):
    """The Stripe webhook route: checks the signature, enqueues the event."""


class PaymentWorkerSettings(StripeSettings, PaymentsSettings, PurchaseTopicSettings):
    """The payment worker: retrieves PaymentIntents, records payments, publishes Purchase events."""


# The role of each function of serverless.yml, by its key there; the deploy checks parse each packaged environment.
ROLE_SETTINGS: dict[str, type[FunctionSettings]] = {
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
}

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


class AudienceSettings(DatabaseSettings, ExpansionQueueSettings):
    """The audience routes' function: the PostgreSQL audience, SNS (in the function's own region, ``AWS_REGION``)
    for the devices' platform endpoints, and the expansion queue ``POST /v1/sends`` hands sends to."""


# Appended, not in the dict above: the role's model is defined after it.
ROLE_SETTINGS["audience"] = AudienceSettings


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


class CronSettings(DatabaseSettings, ScheduleDispatchSettings, ExpansionQueueSettings):
    """The cron (EventBridge ``rate(1 minute)``): claims due scheduled sends in PostgreSQL and hands them to the
    expansion queue."""


# Appended, not in the dict above: the role's model is defined after it.
ROLE_SETTINGS["cron"] = CronSettings


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


ROLE_SETTINGS["expand"] = ExpandSettings
