"""The connections table on moto (core/realtime/connections.py): a user's connections and a topic's are one Query
each, removal deletes every item, every item expires a while after its token, and a user's connections take at most
as many seats as the limit, however their connects interleave."""

from __future__ import annotations

from typing import Any

import pytest

from core.realtime.connections import DEFAULT_GRACE_SECONDS, SEATS_PREFIX, Connection, ConnectionStore
from tests.integration.realtime.conftest import CONNECTIONS_TABLE, create_connections_table
from tests.support.aws import AwsResources
from tests.support.aws import client as aws_client


@pytest.fixture
def dynamodb(aws: AwsResources) -> Any:
    client = aws_client("dynamodb")
    create_connections_table(client)
    return client


def _connection(connection_id: str, user: str, topics: tuple[str, ...] = ("orders/shipped",)) -> Connection:
    return Connection(connection_id, user, topics, 1_800_000_000, 1_800_000_900)


def _queries(client: Any) -> list[str]:
    seen: list[str] = []
    client.meta.events.register("before-call.dynamodb.Query", lambda **kwargs: seen.append("Query"))
    return seen


def test_of_user_is_one_query_for_the_users_connections_only(dynamodb: Any) -> None:
    store = ConnectionStore(dynamodb, CONNECTIONS_TABLE)
    for index in range(30):
        store.add(_connection(f"a{index}", "alice"))
    store.add(_connection("b1", "bob"))
    queries = _queries(dynamodb)

    found = store.of_user("alice")

    assert sorted(c.connection_id for c in found) == sorted(f"a{index}" for index in range(30))
    assert queries == ["Query"]


def test_of_topic_is_one_query_for_the_connections_hearing_it(dynamodb: Any) -> None:
    store = ConnectionStore(dynamodb, CONNECTIONS_TABLE)
    store.add(_connection("a1", "alice", ("orders/shipped", "news/all")))
    store.add(_connection("b1", "bob", ("news/all",)))
    queries = _queries(dynamodb)

    assert [c.connection_id for c in store.of_topic("orders/shipped")] == ["a1"]
    assert queries == ["Query"]


def test_get_returns_the_connection_as_stored(dynamodb: Any) -> None:
    store = ConnectionStore(dynamodb, CONNECTIONS_TABLE)
    connection = _connection("a1", "alice", ("orders/shipped", "news/all"))
    store.add(connection)

    assert store.get("a1") == connection


def test_remove_deletes_every_item_of_the_connection(dynamodb: Any) -> None:
    store = ConnectionStore(dynamodb, CONNECTIONS_TABLE)
    connection = _connection("a1", "alice", ("orders/shipped", "news/all"))
    store.add(connection)

    store.remove(connection)

    assert dynamodb.scan(TableName=CONNECTIONS_TABLE)["Count"] == 0


def test_items_expire_a_grace_period_after_the_token_and_move_with_a_refresh(dynamodb: Any) -> None:
    store = ConnectionStore(dynamodb, CONNECTIONS_TABLE)
    connection = _connection("a1", "alice")
    store.add(connection)

    store.extend(connection, 1_800_003_600)

    items = dynamodb.scan(TableName=CONNECTIONS_TABLE)["Items"]
    assert {int(item["expires_at"]["N"]) for item in items} == {1_800_003_600 + DEFAULT_GRACE_SECONDS}
    refreshed = store.get("a1")
    assert refreshed is not None
    assert refreshed.token_expires_at == 1_800_003_600


def test_extend_of_a_connection_removed_since_it_was_read_writes_nothing(dynamodb: Any) -> None:
    # A refresh racing its connection's $disconnect wrote every item back: the closed connection stayed hours, posted
    # to.
    store = ConnectionStore(dynamodb, CONNECTIONS_TABLE)
    connection = _connection("a1", "alice", ("orders/shipped", "news/all"))
    store.add(connection)
    store.remove(connection)

    assert store.extend(connection, 1_800_003_600) is False
    assert dynamodb.scan(TableName=CONNECTIONS_TABLE)["Count"] == 0


def test_a_connection_keeps_the_life_of_the_token_it_opened_with(dynamodb: Any) -> None:
    store = ConnectionStore(dynamodb, CONNECTIONS_TABLE)
    connection = Connection("a1", "alice", (), 1_800_000_000, 1_800_000_060, token_seconds=60)
    store.add(connection)

    assert store.extend(connection, 1_800_000_120) is True
    assert store.get("a1") == Connection("a1", "alice", (), 1_800_000_000, 1_800_000_120, token_seconds=60)


def test_extend_racing_a_disconnect_between_its_writes_leaves_nothing_of_the_connection(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The $disconnect ran after the connection's own item was written again, before its user's and topics' items
    # were: those came back, and deliveries posted to the closed connection until a 410.
    store = ConnectionStore(dynamodb, CONNECTIONS_TABLE)
    connection = _connection("a1", "alice", ("orders/shipped",))
    store.add(connection)
    write = store._write

    def write_after_a_disconnect(requests: list[dict[str, Any]], action: str) -> None:
        monkeypatch.setattr(store, "_write", write)
        store.remove(connection)  # the $disconnect, in its own invocation
        write(requests, action)

    monkeypatch.setattr(store, "_write", write_after_a_disconnect)

    assert store.extend(connection, 1_800_003_600) is False
    assert dynamodb.scan(TableName=CONNECTIONS_TABLE)["Count"] == 0


NOW = 1_800_000_000


def _seat_ids(dynamodb: Any, user: str) -> set[str]:
    key = {"pk": {"S": SEATS_PREFIX + user}, "sk": {"S": "#"}}
    item = dynamodb.get_item(TableName=CONNECTIONS_TABLE, Key=key).get("Item", {})
    return set(item.get("seats", {}).get("M", {}))


def test_admit_stores_connections_of_a_user_up_to_the_limit_then_refuses_storing_nothing(dynamodb: Any) -> None:
    store = ConnectionStore(dynamodb, CONNECTIONS_TABLE)
    admitted = [store.admit(_connection(f"a{index}", "alice"), 3, NOW) for index in range(3)]

    refused = store.admit(_connection("a3", "alice"), 3, NOW)

    assert (admitted, refused) == ([True, True, True], False)
    assert (store.get("a3"), len(store.of_user("alice"))) == (None, 3)


def test_admit_seat_of_a_connection_whose_token_expired_is_taken_again(dynamodb: Any) -> None:
    # Its $disconnect never ran: it would hold its place for good.
    store = ConnectionStore(dynamodb, CONNECTIONS_TABLE)
    store.admit(_connection("a0", "alice"), 1, NOW)

    assert store.admit(_connection("a1", "alice"), 1, 1_800_000_900) is True
    assert _seat_ids(dynamodb, "alice") == {"a1"}


def test_release_frees_the_connections_seat(dynamodb: Any) -> None:
    store = ConnectionStore(dynamodb, CONNECTIONS_TABLE)
    connection = _connection("a0", "alice")
    store.admit(connection, 1, NOW)
    store.remove(connection)

    store.release(connection)

    assert store.admit(_connection("a1", "alice"), 1, NOW) is True


def test_release_of_a_connection_without_a_seat_writes_nothing(dynamodb: Any) -> None:
    # Stored before seats were kept: its $disconnect must still work, and leave no item behind.
    store = ConnectionStore(dynamodb, CONNECTIONS_TABLE)
    connection = _connection("a0", "alice")
    store.add(connection)
    store.remove(connection)

    store.release(connection)

    assert dynamodb.scan(TableName=CONNECTIONS_TABLE)["Count"] == 0


def test_extend_keeps_the_seat_as_long_as_the_refreshed_token(dynamodb: Any) -> None:
    # A refreshed connection whose seat still showed its first token's expiry gave its place away while it lived.
    store = ConnectionStore(dynamodb, CONNECTIONS_TABLE)
    connection = _connection("a0", "alice")
    store.admit(connection, 1, NOW)

    store.extend(connection, 1_800_001_800)

    assert store.admit(_connection("a1", "alice"), 1, 1_800_000_900) is False


def test_admit_racing_another_connect_of_its_user_does_not_pass_the_limit(dynamodb: Any) -> None:
    # Connects of one user run at once in several functions: each read the seats before the other wrote them.
    store = ConnectionStore(dynamodb, CONNECTIONS_TABLE)
    store.admit(_connection("a0", "alice"), 2, NOW)
    raced: list[bool] = []

    def another_connect_first(params: dict[str, Any], **_: Any) -> None:
        # Once, as this connect writes its seat: the other one reads and writes in between.
        if params["Item"]["pk"]["S"].startswith(SEATS_PREFIX) and not raced:
            raced.append(False)
            raced[0] = store.admit(_connection("theirs", "alice"), 2, NOW)

    dynamodb.meta.events.register("provide-client-params.dynamodb.PutItem", another_connect_first)

    mine = store.admit(_connection("mine", "alice"), 2, NOW)

    assert (raced, mine) == ([True], False)
    assert _seat_ids(dynamodb, "alice") == {"a0", "theirs"}
