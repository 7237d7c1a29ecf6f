"""Unit tests of core/topics.py: topic-hash helpers and the registry's TTL cache (fake client, injected clock)."""

from __future__ import annotations

import hashlib
from typing import NoReturn

import pytest
from botocore.exceptions import ClientError

from core.errors import ForbiddenError, NotFoundError, PayloadTooLargeError, UpstreamError
from core.models import Integration, IntegrationType, Topic
from core.topics import (
    StoredTopic,
    TopicRegistry,
    check_item_size,
    check_topic_hash,
    hash_topic_secret,
    new_topic_hash,
)
from tests.fakes.dynamodb import FakeDynamoDBClient
from tests.fakes.unreachable import UnreachableClient

TABLE = "topics"


class Clock:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _topic(hash_sha256: str = "0" * 64, text: str = "hi $name") -> Topic:
    return Topic(
        channel="orders",
        topic="shipped",
        integrations=[Integration(name="s", type=IntegrationType.SLACK, model=text, credentials_ref="/p/s")],
        hash_sha256=hash_sha256,
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
    )


@pytest.fixture
def client() -> FakeDynamoDBClient:
    fake = FakeDynamoDBClient({TABLE: ("channel", "topic")})
    TopicRegistry(fake, TABLE).create(_topic())
    fake.calls.clear()
    return fake


def test_new_topic_hash_fresh_each_time_and_long() -> None:
    first, second = new_topic_hash(), new_topic_hash()

    assert first != second
    assert len(first) >= 40


def test_hash_topic_secret_is_sha256_hex() -> None:
    assert hash_topic_secret("abc") == hashlib.sha256(b"abc").hexdigest()


def test_check_topic_hash_matching_hash_passes() -> None:
    check_topic_hash(_topic(hash_topic_secret("right")), "right")


@pytest.mark.parametrize("given", ["wrong", "", "right ", hash_topic_secret("right")])
def test_check_topic_hash_other_value_raises_forbidden(given: str) -> None:
    with pytest.raises(ForbiddenError):
        check_topic_hash(_topic(hash_topic_secret("right")), given)


def test_registry_get_warm_second_read_does_no_get_item(client: FakeDynamoDBClient) -> None:
    registry = TopicRegistry(client, TABLE, cache_ttl_seconds=30, clock=Clock())

    first = registry.get("orders", "shipped")
    second = registry.get("orders", "shipped")

    assert second == first
    assert client.count("get_item") == 1


def test_registry_get_after_ttl_reads_again(client: FakeDynamoDBClient) -> None:
    clock = Clock()
    registry = TopicRegistry(client, TABLE, cache_ttl_seconds=30, clock=clock)
    registry.get("orders", "shipped")

    clock.now += 29.9
    registry.get("orders", "shipped")
    calls_within_ttl = client.count("get_item")
    clock.now += 0.1
    registry.get("orders", "shipped")

    assert calls_within_ttl == 1
    assert client.count("get_item") == 2


def test_registry_get_after_ttl_sees_the_change(client: FakeDynamoDBClient) -> None:
    clock = Clock()
    registry = TopicRegistry(client, TABLE, cache_ttl_seconds=30, clock=clock)
    registry.get("orders", "shipped")
    TopicRegistry(client, TABLE).replace(_topic(text="changed"), "2026-01-01T00:00:00.000Z")

    stale = registry.get("orders", "shipped")
    clock.now += 30
    fresh = registry.get("orders", "shipped")

    assert stale.integrations[0].model == "hi $name"
    assert fresh.integrations[0].model == "changed"


def test_registry_get_zero_ttl_reads_every_time(client: FakeDynamoDBClient) -> None:
    registry = TopicRegistry(client, TABLE, cache_ttl_seconds=0, clock=Clock())

    registry.get("orders", "shipped")
    registry.get("orders", "shipped")

    assert client.count("get_item") == 2


def test_registry_write_through_same_registry_forgets_cached_topic(client: FakeDynamoDBClient) -> None:
    registry = TopicRegistry(client, TABLE, cache_ttl_seconds=30, clock=Clock())
    registry.get("orders", "shipped")

    registry.replace(_topic(text="changed"), "2026-01-01T00:00:00.000Z")

    assert registry.get("orders", "shipped").integrations[0].model == "changed"


def test_registry_get_unknown_topic_raises_not_found_every_time(client: FakeDynamoDBClient) -> None:
    registry = TopicRegistry(client, TABLE, cache_ttl_seconds=30, clock=Clock())

    for _ in range(2):
        with pytest.raises(NotFoundError, match="'missing' of channel 'orders'"):
            registry.get("orders", "missing")

    assert client.count("get_item") == 2


def test_registry_round_trip_keeps_template_values_exactly(client: FakeDynamoDBClient) -> None:
    registry = TopicRegistry(client, TABLE)
    model = {"n": 1.5, "none": None, "nested": [{"k": "$v"}], "flag": False}
    topic = _topic().model_copy(
        update={"topic": "typed", "integrations": [Integration(name="w", type=IntegrationType.WEBHOOK, model=model)]}
    )

    registry.create(topic)

    assert registry.read("orders", "typed") == topic


def test_registry_stores_text_as_utf8_not_escapes(client: FakeDynamoDBClient) -> None:
    registry = TopicRegistry(client, TABLE)

    registry.replace(_topic(text="通知 $name"), "2026-01-01T00:00:00.000Z")

    [(_, put)] = [call for call in client.calls if call[0] == "put_item"]
    assert "通知" in put["Item"]["integrations"]["S"]
    assert registry.read("orders", "shipped").integrations[0].model == "通知 $name"


def test_registry_write_over_the_item_limit_raises_payload_too_large_naming_it(client: FakeDynamoDBClient) -> None:
    registry = TopicRegistry(client, TABLE)

    with pytest.raises(PayloadTooLargeError, match="400 KB"):
        registry.replace(_topic(text="通" * 140_000), "2026-01-01T00:00:00.000Z")

    assert client.count("put_item") == 0


def test_check_item_size_counts_utf8_bytes() -> None:
    check_item_size(_topic(text="通" * 130_000))  # 390 000 bytes: fits

    with pytest.raises(PayloadTooLargeError):
        check_item_size(_topic(text="通" * 134_000))  # 402 000 bytes: does not


def test_check_item_size_counts_retired_credentials() -> None:
    topic = _topic(text="x" * 399_000)
    check_item_size(topic)

    with pytest.raises(PayloadTooLargeError):
        check_item_size(
            topic,
            {f"/notify/test/integrations/orders/shipped/s{index}": "2026-01-01T00:00:00.000Z" for index in range(50)},
        )


def test_registry_round_trip_keeps_retired_credentials_with_their_times(client: FakeDynamoDBClient) -> None:
    registry = TopicRegistry(client, TABLE)
    retired = {"/p/s": "2026-01-01T00:00:00.000Z", "/p/t": "2026-01-02T00:00:00.000Z"}

    registry.replace(_topic(), "2026-01-01T00:00:00.000Z", retired)

    assert registry.read_stored("orders", "shipped") == StoredTopic(_topic(), retired)


def test_registry_item_of_replaced_credentials_without_times_reads_them_retired_at_its_last_change(
    client: FakeDynamoDBClient,
) -> None:
    registry = TopicRegistry(client, TABLE)
    registry.create(_topic())
    key = {"channel": {"S": "orders"}, "topic": {"S": "shipped"}}
    item = client.get_item(TableName=TABLE, Key=key)["Item"]
    client.put_item(TableName=TABLE, Item={**item, "replaced_refs": {"SS": ["/p/s", "/p/t"]}})

    stored = registry.read_stored("orders", "shipped")

    assert stored.retired == {"/p/s": _topic().updated_at, "/p/t": _topic().updated_at}


def test_registry_topic_without_retired_credentials_reads_none(client: FakeDynamoDBClient) -> None:
    assert TopicRegistry(client, TABLE).read_stored("orders", "shipped").retired == {}


def test_registry_list_over_several_query_pages_returns_every_topic_by_name() -> None:
    fake = FakeDynamoDBClient({TABLE: ("channel", "topic")}, page_size=2)
    registry = TopicRegistry(fake, TABLE)
    names = ["e", "a", "d", "b", "c"]
    for name in names:
        registry.create(_topic().model_copy(update={"topic": name}))

    topics = registry.list("orders")

    assert [topic.topic for topic in topics] == sorted(names)
    assert fake.count("query") == 3


def test_registry_list_refused_query_raises_upstream_error(
    client: FakeDynamoDBClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    error = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "-"}}, "Query")

    def refused(**kwargs: object) -> NoReturn:
        raise error

    monkeypatch.setattr(client, "query", refused)

    with pytest.raises(UpstreamError, match=r"^listing topics failed \(AccessDeniedException\)$"):
        TopicRegistry(client, TABLE).list("orders")


def test_registry_read_unreachable_dynamodb_raises_upstream_error_without_url() -> None:
    registry = TopicRegistry(UnreachableClient("dynamodb"), TABLE)

    # The whole text is matched: botocore's message names the endpoint, the error's never does.
    with pytest.raises(UpstreamError, match=r"^reading topic failed \(EndpointConnectionError\)$"):
        registry.read("orders", "shipped")


def test_registry_create_unreachable_dynamodb_raises_upstream_error_not_conflict() -> None:
    registry = TopicRegistry(UnreachableClient("dynamodb"), TABLE)

    with pytest.raises(UpstreamError, match=r"^writing topic failed \(EndpointConnectionError\)$"):
        registry.create(_topic())
