"""Cached getters for AWS clients, the HTTP session and the stores built on them: created on first use, reused warm.

A getter takes the calling role's settings (``core/roles/``, or a domain's ``settings`` module) and keys its cache
on what tells its objects apart (service and region, table, queue, prefix). Handlers pass their settings; a test or
script that gives none gets the settings of the mixin the getter needs, parsed from the environment like a role's.
"""

from __future__ import annotations

import threading
from functools import cache, partial
from typing import TYPE_CHECKING, Any

import botocore.session
from botocore.config import Config

from core.settings import clear_settings, load_settings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.audience.connection import Database
    from core.audience.endpoints import PushEndpoints
    from core.audience.repository import AudienceRepository
    from core.audience.sends import ExpansionQueue
    from core.audience.settings import DatabaseSettings, ExpansionQueueSettings
    from core.channels import Channel
    from core.ledger import DeliveryLedger
    from core.models import Content
    from core.outbound import OutboundSession
    from core.pacing import Pacer
    from core.purchases.events import PurchasePublisher
    from core.purchases.payments import PaymentStore
    from core.purchases.ports import StripeGateway
    from core.purchases.promotions import PromotionStore
    from core.purchases.purchases import PurchaseStore
    from core.purchases.settings import (
        PurchaseTopicSettings,
        StripeSettings,
        StripeWebhookQueueSettings,
        StripeWebhookSecretSettings,
    )
    from core.purchases.tables import PaymentsSettings, PromotionsSettings, PurchasesSettings
    from core.purchases.webhooks import WebhookQueue, WebhookSecret
    from core.queue import DeliveryQueue
    from core.realtime.connections import ConnectionStore
    from core.realtime.keys import SigningKeyStore
    from core.realtime.settings import ConnectionsSettings, RealtimeKeysSettings
    from core.roles.api import IntegrationSecretsSettings
    from core.roles.deliver import ChannelSettings, PacingSettings
    from core.roles.shared import DeliveryQueueSettings, LedgerSettings, OutboundSettings, TopicsSettings
    from core.secrets import SecretStore, SecureParameters
    from core.topics import TopicRegistry

_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"mode": "standard", "max_attempts": 3},
    max_pool_connections=20,
)
# SendMessageBatch of a publish bounded in time: one try per call (the queue tries refused entries once more itself). A
# batch the publish stopped waiting for is left to its thread (core/queue.py); with botocore's retries, that thread
# could send the batch again after the answer was given, even after the container thawed from a freeze.
_SINGLE_TRY_CONFIG = _CONFIG.merge(Config(retries={"mode": "standard", "total_max_attempts": 1}))
# A channel's send through AWS (SES, SNS) ends within a URL-based send's budget, 2 x (2 + 4) s plus at most 1 s of
# backoff: the consumer starts no send later than that budget before its timeout (consumer/handler.py latest_start).
# The default's 3 x (2 + 5) s and backoff could outlast it, and the invocation be killed before its ledger writes; the
# delivery's own retries, paced and counted, take over from botocore's.
_SEND_CONFIG = _CONFIG.merge(Config(read_timeout=4, retries={"mode": "standard", "total_max_attempts": 2}))
AWS_SEND_SECONDS = 2 * (2 + 4) + 1
# Writes a request must finish or undo within its own time (a topic's credentials in SSM): short timeouts, so that a
# request knows how long one try can take (QUICK_CALL_SECONDS) and stops writing while it can still undo them. Throttles
# are still retried (SSM takes a few writes a second), answered at once, so a retry costs its backoff only.
_QUICK_CONFIG = _CONFIG.merge(Config(connect_timeout=1, read_timeout=2))
QUICK_CALL_SECONDS = 1 + 2
_CONFIGS = {"calls": _CONFIG, "single_try": _SINGLE_TRY_CONFIG, "sends": _SEND_CONFIG, "quick": _QUICK_CONFIG}


# One botocore session per process: each new session loads and parses botocore's endpoint and model data again (tens of
# milliseconds per client, at every cold start). A session is not thread-safe: clients are made under this lock. The
# clients are botocore's, which boto3's are: boto3 itself (its resources, s3transfer) would add ~10 ms to every cold
# start and nothing a function uses. No function loads it at import (DynamoDB's typed values are ``core.attributes``',
# SecureString parameters ``core.secrets.SecureParameters``'); the publish function loads it with powertools'
# idempotency layer, at the first request with an ``Idempotency-Key``.
_SESSION_LOCK = threading.Lock()


@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


def _new_client(service: str, **options: Any) -> Any:
    with _SESSION_LOCK:
        return _session().create_client(service, **options)


@cache
def _default_region() -> str | None:
    """The region botocore picks by itself (``AWS_DEFAULT_REGION``, which Lambda sets as it sets ``AWS_REGION``)."""
    with _SESSION_LOCK:
        region = _session().get_config_variable("region")
    return str(region) if region else None


@cache
def _client(service: str, region: str | None, kind: str = "calls") -> Any:
    return _new_client(service, region_name=region, config=_CONFIGS[kind])


def get_client(
    service: str, region: str | None = None, *, single_try: bool = False, sends: bool = False, quick: bool = False
) -> Any:
    """Return the client of an AWS service in ``region`` (botocore's default when not given); ``single_try``: the
    one that makes each call once, without botocore's retries; ``sends``: the one channels send with, each call
    bounded to a send's budget; ``quick``: short timeouts, a try at most ``QUICK_CALL_SECONDS``.

    ``AWS_ENDPOINT_URL`` points it at a local AWS when set. Leaving the region out and naming the default one give
    the same client.
    """
    kind = "single_try" if single_try else "sends" if sends else "quick" if quick else "calls"
    return _client(service, region or _default_region(), kind)


# Each store's module loads with its first store: a function imports the stores it uses, not all of them.
@cache
def _topic_registry(table: str, cache_ttl_seconds: float, region: str) -> TopicRegistry:
    from core.topics import TopicRegistry

    return TopicRegistry(get_client("dynamodb", region), table, cache_ttl_seconds)


def get_topic_registry(settings: TopicsSettings | None = None) -> TopicRegistry:
    """Return the topic registry, whose cache lives as long as the warm container."""
    if settings is None:
        from core.roles.shared import TopicsSettings

        settings = load_settings(TopicsSettings)
    return _topic_registry(settings.topics_table, settings.topic_cache_ttl_seconds, settings.aws_region)


@cache
def _ledger(table: str, ttl_days: int, region: str) -> DeliveryLedger:
    from core.ledger import DeliveryLedger

    return DeliveryLedger(get_client("dynamodb", region), table, ttl_days)


def get_ledger(settings: LedgerSettings | None = None) -> DeliveryLedger:
    """Return the delivery ledger."""
    if settings is None:
        from core.roles.shared import LedgerSettings

        settings = load_settings(LedgerSettings)
    return _ledger(settings.deliveries_table, settings.ledger_ttl_days, settings.aws_region)


@cache
def _pacer(table: str, region: str) -> Pacer:
    from core.pacing import DynamoPaceStore, Pacer

    return Pacer(DynamoPaceStore(get_client("dynamodb", region), table))


def get_pacer(settings: PacingSettings | None = None) -> Pacer:
    """Return the pacer of this container: it remembers what it last saw of each destination."""
    if settings is None:
        from core.roles.deliver import PacingSettings

        settings = load_settings(PacingSettings)
    return _pacer(settings.pacing_table, settings.aws_region)


@cache
def _delivery_queue(url: str, region: str) -> DeliveryQueue:
    from core.queue import DeliveryQueue

    return DeliveryQueue(
        get_client("sqs", region), url, batch_client=partial(get_client, "sqs", region, single_try=True)
    )


def get_delivery_queue(settings: DeliveryQueueSettings | None = None) -> DeliveryQueue:
    """Return the delivery queue."""
    if settings is None:
        from core.roles.shared import DeliveryQueueSettings

        settings = load_settings(DeliveryQueueSettings)
    return _delivery_queue(settings.delivery_queue_url, settings.aws_region)


@cache
def _secret_store(prefix: str, region: str) -> SecretStore:
    from core.secrets import SecretStore

    return SecretStore(get_client("ssm", region), prefix, writer=get_client("ssm", region, quick=True))


def get_secret_store(settings: IntegrationSecretsSettings | None = None) -> SecretStore:
    """Return the store of integration secrets."""
    if settings is None:
        from core.roles.api import IntegrationSecretsSettings

        settings = load_settings(IntegrationSecretsSettings)
    return _secret_store(settings.parameter_prefix, settings.aws_region)


@cache
def _secure_parameters(region: str | None) -> SecureParameters:
    from core.secrets import SecureParameters

    return SecureParameters(get_client("ssm", region))


def get_secure_parameters(region: str | None = None) -> SecureParameters:
    """Return the reader of SecureString parameters on the shared client; it keeps values for ``max_age`` seconds."""
    return _secure_parameters(region or _default_region())


@cache
def _management_client(endpoint_url: str, region: str | None) -> Any:
    # It posts one delivery's frames to many connections at once (``BrowserChannel``), from every delivery thread of
    # the consumer: a larger pool, and the standard retries (they cover its 429 LimitExceeded). Its timeouts and tries
    # are the channel's (``post_*``): a page that stopped reading must not hold a post longer than the channel waits
    # for one (``post_seconds``), or its thread outlives its turn (4 tries of 2 s + 5 s once took up to 35 s).
    from core.channels.browser import BrowserChannel

    config = Config(
        connect_timeout=BrowserChannel.post_connect_seconds,
        read_timeout=BrowserChannel.post_read_seconds,
        retries={"mode": "standard", "total_max_attempts": BrowserChannel.post_tries},
        max_pool_connections=64,
    )
    return _new_client("apigatewaymanagementapi", endpoint_url=endpoint_url, region_name=region, config=config)


def get_management_client(endpoint_url: str, region: str | None = None) -> Any:
    """Return the API Gateway Management API client of one WebSocket API endpoint (``https://…/<stage>``).

    Its endpoint is the API's own, never ``AWS_ENDPOINT_URL``: one client per endpoint, reused.
    """
    return _management_client(endpoint_url, region or _default_region())


@cache
def _signing_keys(parameter: str, cache_seconds: float, region: str) -> SigningKeyStore:
    from core.realtime.keys import SigningKeyStore

    return SigningKeyStore(get_client("ssm", region), parameter, cache_seconds)


def get_signing_keys(settings: RealtimeKeysSettings | None = None) -> SigningKeyStore:
    """Return the realtime tokens' signing keys, cached for the settings' time in this container."""
    if settings is None:
        from core.realtime.settings import RealtimeKeysSettings

        settings = load_settings(RealtimeKeysSettings)
    return _signing_keys(settings.realtime_keys_parameter, settings.realtime_keys_cache_seconds, settings.aws_region)


@cache
def _connection_store(table: str, region: str) -> ConnectionStore:
    from core.realtime.connections import ConnectionStore

    return ConnectionStore(get_client("dynamodb", region), table)


def get_connection_store(settings: ConnectionsSettings | None = None) -> ConnectionStore:
    """Return the store of open browser connections."""
    if settings is None:
        from core.realtime.settings import ConnectionsSettings

        settings = load_settings(ConnectionsSettings)
    return _connection_store(settings.connections_table, settings.aws_region)


@cache
def _http_session(connect_timeout: float, read_timeout: float, allow_private: bool, pool_maxsize: int) -> Any:
    # Imported here: requests costs ~25 ms at cold start and only the consumer sends over HTTP.
    from core.outbound import OutboundSession

    return OutboundSession(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        allow_private=allow_private,
        pool_maxsize=pool_maxsize,
    )


def get_http_session(settings: OutboundSettings | None = None) -> OutboundSession:
    """Return the one pooled, guarded HTTP session of outbound deliveries.

    Private targets are allowed only when the settings allow them, which they refuse inside Lambda but for the local
    stack (``OutboundSettings``).
    """
    if settings is None:
        from core.roles.shared import OutboundSettings

        settings = load_settings(OutboundSettings)
    session: OutboundSession = _http_session(
        settings.http_connect_timeout,
        settings.http_read_timeout,
        settings.allow_private_targets,
        settings.delivery_concurrency,
    )
    return session


@cache
def _channels(settings: ChannelSettings) -> dict[str, Channel]:
    from core.channels import ChannelResources
    from core.channels.registry import BrowserResources, build_channels

    handoff = None
    if settings.expansion_queue_url is not None:
        handoff = partial(_hand_off_subscribers, settings.expansion_queue_url, settings.aws_region)
    resources = ChannelResources(
        http=get_http_session(settings),
        aws_client=partial(get_client, region=settings.aws_region, sends=True),
        telegram_api_base=settings.telegram_api_base,
        handoff=handoff,
    )
    if settings.connections_table is not None and settings.realtime_management_url is not None:
        resources = BrowserResources(
            http=resources.http,
            aws_client=resources.aws_client,
            telegram_api_base=resources.telegram_api_base,
            handoff=handoff,
            connections=_connection_store(settings.connections_table, settings.aws_region),
            management=partial(get_management_client, settings.realtime_management_url, settings.aws_region),
            records=get_ledger(settings),
        )
    return build_channels(resources)


def _hand_off_subscribers(
    url: str, region: str, notification_id: str, content: Content, channels: Sequence[str]
) -> str:
    """Put a notification's subscribers job on the expansion queue; return its message id."""
    from core.audience.sends import SubscribersJob

    job = SubscribersJob(
        notification_id=notification_id,
        content=content.model_dump(include={"text", "subject"}, exclude_none=True),
        channels=list(channels),
    )
    return _expansion_queue(url, region).submit(job)


def get_channels(settings: ChannelSettings | None = None) -> dict[str, Channel]:
    """Return one instance of every channel, sharing this container's HTTP session, AWS clients and, when the
    settings name them, the browser connections and the WebSocket API's Management API."""
    if settings is None:
        from core.roles.deliver import ChannelSettings

        settings = load_settings(ChannelSettings)
    return _channels(settings)


# The purchases domain's stores and Stripe load on first use: only the purchase functions and the API need them, and
# the Stripe SDK is heavy (core/purchases/stripe.py imports it when its first client is built).
@cache
def _promotion_store(table: str, region: str) -> PromotionStore:
    from core.purchases.promotions import PromotionStore

    return PromotionStore(get_client("dynamodb", region), table)


def get_promotion_store(settings: PromotionsSettings | None = None) -> PromotionStore:
    """Return the promotions store."""
    if settings is None:
        from core.purchases.tables import PromotionsSettings

        settings = load_settings(PromotionsSettings)
    return _promotion_store(settings.promotions_table, settings.aws_region)


@cache
def _purchase_store(table: str, region: str) -> PurchaseStore:
    from core.purchases.purchases import PurchaseStore

    return PurchaseStore(get_client("dynamodb", region), table)


def get_purchase_store(settings: PurchasesSettings | None = None) -> PurchaseStore:
    """Return the store of what was done with each purchase (credit, notification)."""
    if settings is None:
        from core.purchases.tables import PurchasesSettings

        settings = load_settings(PurchasesSettings)
    return _purchase_store(settings.purchases_table, settings.aws_region)


@cache
def _stripe_gateway(
    parameter: str, cache_seconds: int, api_base: str | None, timeout_seconds: float, region: str
) -> StripeGateway:
    from core.purchases.stripe import StripeApiGateway, StripeKeySource

    key = StripeKeySource(get_secure_parameters(region), parameter, cache_seconds)
    return StripeApiGateway(key, api_base=api_base, timeout_seconds=timeout_seconds)


def get_stripe_gateway(settings: StripeSettings | None = None) -> StripeGateway:
    """Return the Stripe gateway: the stripe SDK on the secret key of SSM (cached for the settings' time), its base
    URL the local Stripe server's when the settings name one."""
    if settings is None:
        from core.purchases.settings import StripeSettings

        settings = load_settings(StripeSettings)
    return _stripe_gateway(
        settings.stripe_secret_key_parameter,
        settings.stripe_secrets_cache_seconds,
        settings.stripe_api_base,
        settings.stripe_timeout_seconds,
        settings.aws_region,
    )


@cache
def _payment_store(table: str, region: str) -> PaymentStore:
    from core.purchases.payments import PaymentStore

    return PaymentStore(get_client("dynamodb", region), table)


def get_payment_store(settings: PaymentsSettings | None = None) -> PaymentStore:
    """Return the store of payments taken in from Stripe webhooks."""
    if settings is None:
        from core.purchases.tables import PaymentsSettings

        settings = load_settings(PaymentsSettings)
    return _payment_store(settings.payments_table, settings.aws_region)


@cache
def _purchase_publisher(topic_arn: str, region: str) -> PurchasePublisher:
    from core.purchases.events import PurchasePublisher

    return PurchasePublisher(get_client("sns", region), topic_arn)


def get_purchase_publisher(settings: PurchaseTopicSettings | None = None) -> PurchasePublisher:
    """Return the publisher of Purchase events to the SNS ``Purchase`` topic."""
    if settings is None:
        from core.purchases.settings import PurchaseTopicSettings

        settings = load_settings(PurchaseTopicSettings)
    return _purchase_publisher(settings.purchase_topic_arn, settings.aws_region)


@cache
def _stripe_webhook_queue(url: str, region: str) -> WebhookQueue:
    from core.purchases.webhooks import WebhookQueue

    return WebhookQueue(get_client("sqs", region), url)


def get_stripe_webhook_queue(settings: StripeWebhookQueueSettings | None = None) -> WebhookQueue:
    """Return the queue verified Stripe webhook events are sent to."""
    if settings is None:
        from core.purchases.settings import StripeWebhookQueueSettings

        settings = load_settings(StripeWebhookQueueSettings)
    return _stripe_webhook_queue(settings.stripe_webhook_queue_url, settings.aws_region)


@cache
def _stripe_webhook_secret(parameter: str, max_age: int, region: str) -> WebhookSecret:
    from core.purchases.webhooks import WebhookSecret

    return WebhookSecret(get_secure_parameters(region), parameter, max_age)


def get_stripe_webhook_secret(settings: StripeWebhookSecretSettings | None = None) -> WebhookSecret:
    """Return the Stripe webhook endpoint's signing secret, read from SSM, cached for the settings' time."""
    if settings is None:
        from core.purchases.settings import StripeWebhookSecretSettings

        settings = load_settings(StripeWebhookSecretSettings)
    return _stripe_webhook_secret(
        settings.stripe_webhook_secret_parameter, settings.stripe_secrets_cache_seconds, settings.aws_region
    )


# The audience's database: psycopg2 and core.audience load on first use, in the functions that reach PostgreSQL.
@cache
def _database(url: str, connect_timeout: int) -> Database:
    from core.audience.connection import Database

    return Database(url, connect_timeout=connect_timeout)


@cache
def _database_from_parameter(parameter: str, connect_timeout: int, region: str) -> Database:
    from core.audience.connection import Database, read_database_secret

    return Database(
        partial(read_database_secret, get_client("ssm", region), parameter), connect_timeout=connect_timeout
    )


def get_database(settings: DatabaseSettings | None = None) -> Database:
    """Return the container's one database connection (opened on first use, re-opened when broken).

    From ``DATABASE_URL`` when set, else from the secret ``DATABASE_SECRET_PARAMETER`` names, read at each connect.
    """
    if settings is None:
        from core.audience.settings import DatabaseSettings

        settings = load_settings(DatabaseSettings)
    if settings.database_url is not None:
        return _database(settings.database_url.get_secret_value(), settings.database_connect_timeout)
    assert settings.database_secret_parameter is not None  # the settings require one of the two
    return _database_from_parameter(
        settings.database_secret_parameter, settings.database_connect_timeout, settings.aws_region
    )


def get_audience_repository(settings: DatabaseSettings | None = None) -> AudienceRepository:
    """Return the audience repository on the container's one database connection.

    Not cached itself: it holds nothing but the cached connection (``get_database``), and costs nothing to make.
    """
    from core.audience.repository import AudienceRepository

    return AudienceRepository(get_database(settings))


def get_push_endpoints(region: str | None = None) -> PushEndpoints:
    """Return the devices' SNS platform endpoints on the shared SNS client of ``region`` (nothing else to cache)."""
    from core.audience.endpoints import PushEndpoints

    return PushEndpoints(get_client("sns", region))


@cache
def _expansion_queue(url: str, region: str) -> ExpansionQueue:
    from core.audience.sends import ExpansionQueue

    return ExpansionQueue(get_client("sqs", region), url)


def get_expansion_queue(settings: ExpansionQueueSettings | None = None) -> ExpansionQueue:
    """Return the expansion queue, where sends are handed to the expansion worker."""
    if settings is None:
        from core.audience.settings import ExpansionQueueSettings

        settings = load_settings(ExpansionQueueSettings)
    return _expansion_queue(settings.expansion_queue_url, settings.aws_region)


def get_expansion_queue_at(url: str, region: str) -> ExpansionQueue:
    """Return the expansion queue of ``url`` (the consumer's optional ``EXPANSION_QUEUE_URL``)."""
    return _expansion_queue(url, region)


_CACHES: tuple[Any, ...] = (
    _default_region,
    _client,
    _topic_registry,
    _ledger,
    _pacer,
    _delivery_queue,
    _secret_store,
    _secure_parameters,
    _management_client,
    _signing_keys,
    _connection_store,
    _http_session,
    _channels,
    _promotion_store,
    _purchase_store,
    _stripe_gateway,
    _payment_store,
    _purchase_publisher,
    _stripe_webhook_queue,
    _stripe_webhook_secret,
    _database,
    _database_from_parameter,
    _expansion_queue,
)


def reset() -> None:
    """Forget every cached client, store and the settings; tests call it between cases. The botocore session stays: it
    holds botocore's loaded data, and the credentials of the environment, which no test changes."""
    clear_settings()
    for cached in _CACHES:
        cached.cache_clear()
