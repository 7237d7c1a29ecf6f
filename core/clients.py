"""Cached getters for AWS clients, the HTTP session and the stores built on them: created on first use, reused warm."""

from __future__ import annotations

from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from core.ledger import DeliveryLedger
from core.pacing import DynamoPaceStore, Pacer
from core.queue import DeliveryQueue
from core.secrets import SecretStore
from core.settings import get_settings
from core.topics import TopicRegistry

if TYPE_CHECKING:
    from core.channels import Channel
    from core.outbound import OutboundSession

_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"mode": "standard", "max_attempts": 3},
    max_pool_connections=20,
)


@cache
def get_client(service: str) -> Any:
    """Return the boto3 client of an AWS service; ``AWS_ENDPOINT_URL`` points it at a local AWS when set."""
    return boto3.session.Session().client(service, region_name=get_settings().aws_region, config=_CONFIG)


@lru_cache(maxsize=1)
def get_topic_registry() -> TopicRegistry:
    """Return the topic registry, whose cache lives as long as the warm container."""
    settings = get_settings()
    return TopicRegistry(get_client("dynamodb"), settings.topics_table, settings.topic_cache_ttl_seconds)


@lru_cache(maxsize=1)
def get_ledger() -> DeliveryLedger:
    """Return the delivery ledger."""
    settings = get_settings()
    return DeliveryLedger(get_client("dynamodb"), settings.deliveries_table, settings.ledger_ttl_days)


@lru_cache(maxsize=1)
def get_pacer() -> Pacer:
    """Return the pacer of this container: it remembers what it last saw of each destination."""
    return Pacer(DynamoPaceStore(get_client("dynamodb"), get_settings().pacing_table))


@lru_cache(maxsize=1)
def get_delivery_queue() -> DeliveryQueue:
    """Return the delivery queue."""
    return DeliveryQueue(get_client("sqs"), get_settings().delivery_queue_url)


@lru_cache(maxsize=1)
def get_secret_store() -> SecretStore:
    """Return the store of integration secrets."""
    return SecretStore(get_client("ssm"), get_settings().parameter_prefix)


@lru_cache(maxsize=1)
def get_parameter_provider() -> Any:
    """Return powertools' SSM provider on the shared client; it caches values for ``max_age`` seconds."""
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    return SSMProvider(boto3_client=get_client("ssm"))


@lru_cache(maxsize=1)
def get_http_session() -> OutboundSession:
    """Return the one pooled, guarded HTTP session of outbound deliveries."""
    # Imported here: requests costs ~25 ms at cold start and only the consumer sends over HTTP.
    from core.outbound import OutboundSession

    settings = get_settings()
    return OutboundSession(
        connect_timeout=settings.http_connect_timeout,
        read_timeout=settings.http_read_timeout,
        allow_private=settings.allow_private_targets,
        pool_maxsize=settings.delivery_concurrency,
    )


@lru_cache(maxsize=1)
def get_channels() -> dict[str, Channel]:
    """Return one instance of every channel, sharing this container's HTTP session and AWS clients."""
    from core.channels import ChannelResources, build_channels

    resources = ChannelResources(
        http=get_http_session(), aws_client=get_client, telegram_api_base=get_settings().telegram_api_base
    )
    return build_channels(resources)


_GETTERS = (
    get_channels,
    get_client,
    get_topic_registry,
    get_ledger,
    get_delivery_queue,
    get_pacer,
    get_secret_store,
    get_parameter_provider,
    get_http_session,
)


def reset() -> None:
    """Forget every cached client, store and the settings; tests call it between cases."""
    get_settings.cache_clear()
    for getter in _GETTERS:
        getter.cache_clear()
