"""Unit tests of the connections store (core/realtime/connections.py): what it raises when DynamoDB cannot be reached.
Its items and queries run under moto in tests/integration/realtime/test_connections.py."""

from __future__ import annotations

from typing import NoReturn

import pytest
from botocore.exceptions import EndpointConnectionError

from core.errors import UpstreamError
from core.realtime.connections import Connection, ConnectionStore

TABLE = "notify-test-connections"
ENDPOINT = "https://dynamodb.us-east-1.amazonaws.com/"
CONNECTION = Connection("c1", "alice", ("orders/shipped",), connected_at=1_800_000_000, token_expires_at=1_800_000_900)


class UnreachableDynamoDB:
    """A DynamoDB client whose endpoint cannot be reached."""

    def get_item(self, **kwargs: object) -> NoReturn:
        """Fail as botocore does when the connection is refused."""
        raise EndpointConnectionError(endpoint_url=ENDPOINT)

    def batch_write_item(self, **kwargs: object) -> NoReturn:
        """Fail as botocore does when the connection is refused."""
        raise EndpointConnectionError(endpoint_url=ENDPOINT)


def test_connection_store_get_unreachable_dynamodb_raises_upstream_error_without_url() -> None:
    store = ConnectionStore(UnreachableDynamoDB(), TABLE)

    # The whole text is matched: botocore's message names the endpoint, the error's never does.
    with pytest.raises(UpstreamError, match=r"^reading the connection failed \(EndpointConnectionError\)$"):
        store.get("c1")


def test_connection_store_add_unreachable_dynamodb_raises_upstream_error() -> None:
    store = ConnectionStore(UnreachableDynamoDB(), TABLE)

    with pytest.raises(UpstreamError, match=r"^storing the connection failed \(EndpointConnectionError\)$"):
        store.add(CONNECTION)
