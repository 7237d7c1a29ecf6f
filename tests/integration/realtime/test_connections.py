"""The connections table on moto (core/realtime/connections.py): a user's connections and a topic's are one Query
each, removal deletes every item, and every item expires a while after its token."""

from __future__ import annotations

from typing import Any

import pytest

from core.realtime.connections import DEFAULT_GRACE_SECONDS, Connection, ConnectionStore
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
