"""Integration tests of core/pacing.py: ``DynamoPaceStore``'s conditional updates on the pacing table under moto."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from core.clients import get_client
from core.errors import UpstreamError
from core.pacing import ITEM_TTL_SECONDS, SLOW_FACTOR, SLOW_SECONDS, DynamoPaceStore, Limit, Pacer
from tests.support.aws import NAMES, AwsResources

NOW = 1_700_000_000.0
# DynamoDB adds decimals and the store reads them back as floats: slots at this epoch are exact to a microsecond.
EPSILON = 1e-6
CHAT = Limit("telegram-chat:1", per_second=4.0)
TABLE = NAMES["PACING_TABLE"]
ENDPOINT = "https://dynamodb.us-east-1.amazonaws.com/"


class CountingClient:
    """Wraps a boto3 DynamoDB client and counts its ``update_item`` calls."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.updates = 0

    def update_item(self, **kwargs: Any) -> Any:
        """Count the call and make it."""
        self.updates += 1
        return self._client.update_item(**kwargs)

    def get_item(self, **kwargs: Any) -> Any:
        """Make the call (reads are not counted)."""
        return self._client.get_item(**kwargs)


class UnreachableClient:
    """A DynamoDB client whose endpoint cannot be reached."""

    def update_item(self, **kwargs: Any) -> Any:
        """Fail as botocore does when the connection is refused."""
        raise EndpointConnectionError(endpoint_url=ENDPOINT)

    def get_item(self, **kwargs: Any) -> Any:
        """Fail as botocore does when the connection is refused."""
        raise EndpointConnectionError(endpoint_url=ENDPOINT)


class RefusingClient:
    """A DynamoDB client that AWS answers with an error code."""

    def update_item(self, **kwargs: Any) -> Any:
        """Fail as botocore does when DynamoDB throttles."""
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": f"slow down at {ENDPOINT}"}},
            "UpdateItem",
        )


@pytest.fixture
def client(aws: AwsResources) -> CountingClient:
    """The service's DynamoDB client on moto, counting its updates."""
    return CountingClient(get_client("dynamodb"))


@pytest.fixture
def store(client: CountingClient) -> DynamoPaceStore:
    """The pacing store on the moto table."""
    return DynamoPaceStore(client, TABLE)


def _item(aws: AwsResources, key: str) -> dict[str, Any]:
    item: dict[str, Any] = aws.dynamodb.get_item(TableName=TABLE, Key={"destination": {"S": key}})["Item"]
    return item


def _gaps(slots: list[float]) -> list[float]:
    ordered = sorted(slots)
    return [later - earlier for earlier, later in itertools.pairwise(ordered)]


def test_pacer_burst_from_two_pacers_sharing_table_spaces_slots_one_step_apart(client: CountingClient) -> None:
    pacers = [Pacer(DynamoPaceStore(client, TABLE)), Pacer(DynamoPaceStore(client, TABLE))]

    slots = [pacers[index % 2].reserve([CHAT], NOW) for index in range(10)]

    assert slots == pytest.approx([NOW + index * CHAT.step for index in range(10)], abs=EPSILON)


def test_pacer_burst_from_one_pacer_makes_one_call_per_slot(store: DynamoPaceStore, client: CountingClient) -> None:
    pacer = Pacer(store)

    for _ in range(10):
        pacer.reserve([CHAT], NOW)

    assert client.updates == 10


def test_pacer_stream_slower_than_rate_gets_every_slot_at_now_in_one_call_each(
    store: DynamoPaceStore, client: CountingClient
) -> None:
    pacer = Pacer(store)
    times = [NOW + index * 2 * CHAT.step for index in range(10)]

    slots = [pacer.reserve([CHAT], now) for now in times]

    assert (slots, client.updates) == (pytest.approx(times, abs=EPSILON), 10)


def test_pacer_burst_from_two_pacers_costs_one_more_call_for_the_late_joiner(client: CountingClient) -> None:
    pacers = [Pacer(DynamoPaceStore(client, TABLE)), Pacer(DynamoPaceStore(client, TABLE))]

    for index in range(10):
        pacers[index % 2].reserve([CHAT], NOW)

    assert client.updates == 11


def test_dynamo_pace_store_take_new_destination_hinted_busy_gives_now(
    store: DynamoPaceStore, client: CountingClient
) -> None:
    slot = store.take(CHAT.key, CHAT.step, NOW, busy=True)

    assert (slot.at, slot.tat, client.updates) == (NOW, pytest.approx(NOW + CHAT.step, abs=EPSILON), 2)


def test_dynamo_pace_store_take_passed_destination_hinted_busy_gives_now(
    store: DynamoPaceStore, client: CountingClient
) -> None:
    store.take(CHAT.key, CHAT.step, NOW, busy=False)

    slot = store.take(CHAT.key, CHAT.step, NOW + 10, busy=True)

    assert (slot.at, client.updates) == (NOW + 10, 3)


def test_dynamo_pace_store_take_busy_destination_hinted_idle_gives_next_slot(
    store: DynamoPaceStore, client: CountingClient
) -> None:
    store.take(CHAT.key, CHAT.step, NOW, busy=False)

    slot = store.take(CHAT.key, CHAT.step, NOW, busy=False)

    assert (slot.at, client.updates) == (pytest.approx(NOW + CHAT.step, abs=EPSILON), 3)


def test_pacer_reserve_after_item_expired_gives_now(aws: AwsResources, store: DynamoPaceStore) -> None:
    pacer = Pacer(store)
    for _ in range(10):
        pacer.reserve([CHAT], NOW)
    aws.dynamodb.delete_item(TableName=TABLE, Key={"destination": {"S": CHAT.key}})

    assert pacer.reserve([CHAT], NOW + 1) == NOW + 1


def test_pacer_penalize_then_reserve_gives_no_slot_before_retry_after(store: DynamoPaceStore) -> None:
    pacer = Pacer(store)
    pacer.reserve([CHAT], NOW)

    pacer.penalize([CHAT], retry_after=5.0, now=NOW)

    assert pacer.reserve([CHAT], NOW + 1) == NOW + 5


def test_pacer_penalize_then_reserve_spaces_slots_slow_factor_wider(store: DynamoPaceStore) -> None:
    pacer = Pacer(store)
    pacer.penalize([CHAT], retry_after=5.0, now=NOW)

    slots = [pacer.reserve([CHAT], NOW + 1) for _ in range(4)]

    assert _gaps(slots) == pytest.approx([SLOW_FACTOR * CHAT.step] * 3, abs=EPSILON)


def test_pacer_penalize_shorter_than_queued_slots_keeps_the_queue(store: DynamoPaceStore) -> None:
    pacer = Pacer(store)
    queued = [pacer.reserve([CHAT], NOW) for _ in range(40)]

    pacer.penalize([CHAT], retry_after=1.0, now=NOW)

    assert pacer.reserve([CHAT], NOW) == pytest.approx(queued[-1] + CHAT.step, abs=EPSILON)


def test_pacer_penalize_shorter_than_queued_slots_records_slow_down(aws: AwsResources, store: DynamoPaceStore) -> None:
    pacer = Pacer(store)
    for _ in range(40):
        pacer.reserve([CHAT], NOW)

    pacer.penalize([CHAT], retry_after=1.0, now=NOW)

    assert float(_item(aws, CHAT.key)["slow_factor"]["N"]) == SLOW_FACTOR


def test_dynamo_pace_store_take_sets_expires_at_ttl(aws: AwsResources, store: DynamoPaceStore) -> None:
    store.take(CHAT.key, CHAT.step, NOW, busy=False)

    assert int(_item(aws, CHAT.key)["expires_at"]["N"]) == math.ceil(NOW + CHAT.step) + ITEM_TTL_SECONDS


def test_pacer_long_penalize_then_reserve_item_outlives_its_tat(aws: AwsResources, store: DynamoPaceStore) -> None:
    pacer = Pacer(store)
    pacer.penalize([CHAT], retry_after=2 * 86400.0, now=NOW)

    pacer.reserve([CHAT], NOW + 1)
    item = _item(aws, CHAT.key)

    assert float(item["expires_at"]["N"]) >= float(item["tat"]["N"])


@pytest.mark.parametrize("sends", [1, 2])
def test_pacer_slot_slower_than_the_ttl_item_outlives_its_tat(
    aws: AwsResources, store: DynamoPaceStore, sends: int
) -> None:
    """An integration paced at one send a week: the item expired a day after each take, days before its TAT, and once
    DynamoDB deleted it the next send went at once (up to 7x the rate)."""
    weekly = Limit("webhook:weekly", per_second=1 / (7 * 86400))
    pacer = Pacer(store)
    for _ in range(sends):
        pacer.reserve([weekly], NOW)
    item = _item(aws, weekly.key)

    assert float(item["expires_at"]["N"]) >= float(item["tat"]["N"]) + ITEM_TTL_SECONDS - 1


def test_pacer_penalize_after_a_backlog_days_ahead_keeps_the_item_past_its_tat(
    aws: AwsResources, store: DynamoPaceStore
) -> None:
    """A webhook at 0.001/s with 200 sends queued: its TAT is about 2.3 days ahead. A 429 with Retry-After: 1 set the
    item to expire a day after the slow-down, 1.3 days before the TAT, and then new sends went at once."""
    slow = Limit("webhook:slow", per_second=0.001)
    pacer = Pacer(store)
    for _ in range(200):
        pacer.reserve([slow], NOW)

    pacer.penalize([slow], retry_after=1.0, now=NOW + 1)
    item = _item(aws, slow.key)

    assert float(item["expires_at"]["N"]) >= float(item["tat"]["N"]) + ITEM_TTL_SECONDS
    assert float(item["slow_factor"]["N"]) == SLOW_FACTOR


def test_pacer_penalize_longer_than_the_backlog_keeps_the_item_past_its_slow_down(
    aws: AwsResources, store: DynamoPaceStore
) -> None:
    Pacer(store).reserve([CHAT], NOW)

    Pacer(store).penalize([CHAT], retry_after=600.0, now=NOW)
    item = _item(aws, CHAT.key)

    assert float(item["expires_at"]["N"]) >= float(item["slow_until"]["N"]) + ITEM_TTL_SECONDS
    assert float(item["slow_until"]["N"]) > float(item["tat"]["N"])


def test_dynamo_pace_store_hold_with_a_shorter_retry_after_keeps_the_longer_slow_down(
    aws: AwsResources, store: DynamoPaceStore
) -> None:
    """A slow-down never ends earlier than it did: a 429 with Retry-After: 300, then one with Retry-After: 1 from a copy
    already in flight, still has the destination slowed until the first ends, or the next slots go at the full pace
    while the provider still counts its limit."""
    store.hold(CHAT.key, NOW + 300, NOW)

    slot = store.hold(CHAT.key, NOW + 2, NOW + 1)

    assert slot.slow_until >= NOW + 300 + SLOW_SECONDS
    assert float(_item(aws, CHAT.key)["slow_until"]["N"]) >= NOW + 300 + SLOW_SECONDS


def test_pacer_after_a_long_then_a_short_429_still_spaces_slots_wider_within_the_first_slow_down(
    store: DynamoPaceStore,
) -> None:
    pacer = Pacer(store)
    pacer.penalize([CHAT], 300, NOW)
    pacer.penalize([CHAT], 1, NOW + 1)

    first = pacer.reserve([CHAT], NOW + 301)
    second = pacer.reserve([CHAT], NOW + 301)

    assert second - first > CHAT.step * 1.05


def test_dynamo_pace_store_take_unreachable_dynamodb_raises_upstream_error_without_url() -> None:
    store = DynamoPaceStore(UnreachableClient(), TABLE)

    with pytest.raises(UpstreamError, match="EndpointConnectionError") as raised:
        store.take(CHAT.key, CHAT.step, NOW, busy=False)

    assert "amazonaws" not in str(raised.value)


def test_dynamo_pace_store_hold_unreachable_dynamodb_raises_upstream_error_without_url() -> None:
    store = DynamoPaceStore(UnreachableClient(), TABLE)

    with pytest.raises(UpstreamError, match="EndpointConnectionError") as raised:
        store.hold(CHAT.key, NOW + 5, NOW)

    assert "amazonaws" not in str(raised.value)


def test_dynamo_pace_store_refused_update_raises_upstream_error_naming_code() -> None:
    store = DynamoPaceStore(RefusingClient(), TABLE)

    with pytest.raises(UpstreamError, match="ProvisionedThroughputExceededException") as raised:
        store.take(CHAT.key, CHAT.step, NOW, busy=False)

    assert "amazonaws" not in str(raised.value)


class StaleReadClient:
    """A DynamoDB client whose ``get_item`` answers what it read before another consumer's holds landed."""

    def __init__(self, client: Any, stale: dict[str, Any]) -> None:
        self._client = client
        self._stale = stale

    def get_item(self, **kwargs: Any) -> Any:
        """Answer the stale read."""
        return self._stale

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_dynamo_pace_store_hold_never_undoes_a_stronger_slow_down_written_meanwhile(aws: AwsResources) -> None:
    client = get_client("dynamodb")
    strong = DynamoPaceStore(client, TABLE)
    for _ in range(5):  # another consumer met five 429s in a row: a factor of 1.1**5
        strong.hold(CHAT.key, NOW + 1, NOW)
    before = _item(aws, CHAT.key)

    # This consumer read the destination before those holds (no slow-down yet), and writes its own weaker one.
    DynamoPaceStore(StaleReadClient(client, {}), TABLE).hold(CHAT.key, NOW + 1, NOW)

    after = _item(aws, CHAT.key)
    assert float(after["slow_factor"]["N"]) == float(before["slow_factor"]["N"]) > 1.5
