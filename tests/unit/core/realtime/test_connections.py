"""Unit tests of the connections store (core/realtime/connections.py): what it raises when DynamoDB cannot be reached.
Its items and queries run under moto in tests/integration/realtime/test_connections.py."""

from __future__ import annotations

import pytest

from core.errors import UpstreamError
from core.realtime.connections import Connection, ConnectionStore
from tests.fakes.unreachable import UnreachableClient

TABLE = "notify-test-connections"
CONNECTION = Connection("c1", "alice", ("orders/shipped",), connected_at=1_800_000_000, token_expires_at=1_800_000_900)


def test_connection_store_get_unreachable_dynamodb_raises_upstream_error_without_url() -> None:
    store = ConnectionStore(UnreachableClient("dynamodb"), TABLE)

    # The whole text is matched: botocore's message names the endpoint, the error's never does.
    with pytest.raises(UpstreamError, match=r"^reading the connection failed \(EndpointConnectionError\)$"):
        store.get("c1")


def test_connection_store_add_unreachable_dynamodb_raises_upstream_error() -> None:
    store = ConnectionStore(UnreachableClient("dynamodb"), TABLE)

    with pytest.raises(UpstreamError, match=r"^storing the connection failed \(EndpointConnectionError\)$"):
        store.add(CONNECTION)
