"""The open WebSocket connections in DynamoDB, found by id, by user and by channel/topic, each with one request.

Table key ``pk`` + ``sk``. A connection is written as several small items that each carry the whole connection:

- ``c#<connection id>`` / ``#``: the connection itself, read by ``$disconnect`` and by a token refresh;
- ``u#<user id>`` / ``<connection id>``: so "every connection of user U" is one ``Query`` on ``u#U``;
- ``t#<channel>/<topic>`` / ``<connection id>``: so "every connection that hears channel/topic T" is one ``Query``.

``expires_at`` (the table's TTL) is the token's expiry plus ``grace_seconds``: a connection whose ``$disconnect``
never ran is gone a while after its token, and a refreshed token moves it on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from core.errors import AWS_ERRORS, UpstreamError, aws_error, error_code

CONNECTION_PREFIX = "c#"
USER_PREFIX = "u#"
TOPIC_PREFIX = "t#"
SELF_KEY = "#"
_BATCH_WRITE_LIMIT = 25
_BATCH_TRIES = 5
# What API Gateway allows at most for one connection (2 hours), past the token's expiry: then the items go.
DEFAULT_GRACE_SECONDS = 2 * 3600


@dataclass(frozen=True)
class Connection:
    """An open connection: its id, whose it is, the ``<channel>/<topic>`` names it hears, and until when.

    ``token_expires_at`` is the expiry of the token it was opened or last refreshed with (Unix time); deliveries
    skip a connection past it. ``token_seconds`` is the life of the token it was opened with (0: not known, a
    connection stored before it was kept): a refresh never gives a longer one.
    """

    connection_id: str
    user_id: str
    topics: tuple[str, ...]
    connected_at: int
    token_expires_at: int
    token_seconds: int = 0


def _keys(connection: Connection) -> list[tuple[str, str]]:
    keys = [(CONNECTION_PREFIX + connection.connection_id, SELF_KEY)]
    keys.append((USER_PREFIX + connection.user_id, connection.connection_id))
    keys.extend((TOPIC_PREFIX + topic, connection.connection_id) for topic in connection.topics)
    return keys


def _connection(item: dict[str, Any]) -> Connection:
    return Connection(
        connection_id=item["connection_id"]["S"],
        user_id=item["user_id"]["S"],
        topics=tuple(entry["S"] for entry in item.get("topics", {}).get("L", [])),
        connected_at=int(item.get("connected_at", {}).get("N", "0")),
        token_expires_at=int(item.get("token_expires_at", {}).get("N", "0")),
        token_seconds=int(item.get("token_seconds", {}).get("N", "0")),
    )


class ConnectionStore:
    """Reads and writes the connections table; implements ``ConnectionStorePort``.

    Parameters
    ----------
    client:
        A boto3 DynamoDB client.
    table_name:
        The table's name.
    grace_seconds:
        How long past its token's expiry a connection's items live (the TTL).
    sleep:
        Waits between the tries of a batch that DynamoDB did not finish.
    """

    def __init__(
        self,
        client: Any,
        table_name: str,
        grace_seconds: int = DEFAULT_GRACE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._table = table_name
        self._grace = grace_seconds
        self._sleep = sleep

    def _item(self, connection: Connection, pk: str, sk: str) -> dict[str, Any]:
        return {
            "pk": {"S": pk},
            "sk": {"S": sk},
            "connection_id": {"S": connection.connection_id},
            "user_id": {"S": connection.user_id},
            "topics": {"L": [{"S": topic} for topic in connection.topics]},
            "connected_at": {"N": str(connection.connected_at)},
            "token_expires_at": {"N": str(connection.token_expires_at)},
            "token_seconds": {"N": str(connection.token_seconds)},
            "expires_at": {"N": str(connection.token_expires_at + self._grace)},
        }

    def _write(self, requests: list[dict[str, Any]], action: str) -> None:
        """Send write requests in batches of 25, sending again what DynamoDB left unprocessed."""
        for start in range(0, len(requests), _BATCH_WRITE_LIMIT):
            pending = requests[start : start + _BATCH_WRITE_LIMIT]
            for attempt in range(_BATCH_TRIES):
                try:
                    answer = self._client.batch_write_item(RequestItems={self._table: pending})
                except AWS_ERRORS as exc:
                    raise aws_error(exc, action) from exc
                pending = answer.get("UnprocessedItems", {}).get(self._table, [])
                if not pending:
                    break
                self._sleep(0.05 * 2**attempt)
            else:
                raise UpstreamError(f"{action} failed (items left unprocessed)")

    def add(self, connection: Connection) -> None:
        """Store a connection under its id, its user and each of its topics."""
        puts = [{"PutRequest": {"Item": self._item(connection, pk, sk)}} for pk, sk in _keys(connection)]
        self._write(puts, "storing the connection")

    def extend(self, connection: Connection, token_expires_at: int) -> bool:
        """Write the connection again with the expiry of its refreshed token; return ``False``, leaving nothing of it,
        when it is not stored any more: its ``$disconnect``, run since it was read (or while this wrote), would
        otherwise be undone, the closed connection kept for hours and posted to. Its own item is written only while
        it exists, then the others, then it is read again."""
        renewed = replace(connection, token_expires_at=token_expires_at)
        [own, *others] = _keys(renewed)
        try:
            self._client.put_item(
                TableName=self._table,
                Item=self._item(renewed, *own),
                ConditionExpression="attribute_exists(pk)",
            )
        except AWS_ERRORS as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise aws_error(exc, "storing the connection") from exc
        self._write(
            [{"PutRequest": {"Item": self._item(renewed, pk, sk)}} for pk, sk in others], "storing the connection"
        )
        if self.get(renewed.connection_id) is None:
            # Its $disconnect ran between the two writes: the user's and topics' items just written go too.
            self.remove(renewed)
            return False
        return True

    def get(self, connection_id: str) -> Connection | None:
        """Return a connection by id, or ``None``."""
        try:
            answer = self._client.get_item(
                TableName=self._table,
                Key={"pk": {"S": CONNECTION_PREFIX + connection_id}, "sk": {"S": SELF_KEY}},
                ConsistentRead=True,
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "reading the connection") from exc
        item = answer.get("Item")
        return _connection(item) if item else None

    def remove(self, connection: Connection) -> None:
        """Delete every item of a connection; deleting what is gone already is no error."""
        deletes = [{"DeleteRequest": {"Key": {"pk": {"S": pk}, "sk": {"S": sk}}}} for pk, sk in _keys(connection)]
        self._write(deletes, "removing the connection")

    def _query(self, pk: str) -> Iterator[dict[str, Any]]:
        paginator = self._client.get_paginator("query")
        try:
            for page in paginator.paginate(
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": pk}},
            ):
                yield from page.get("Items", [])
        except AWS_ERRORS as exc:
            raise aws_error(exc, "reading connections") from exc

    def of_user(self, user_id: str) -> Sequence[Connection]:
        """Return the connections of a user: one ``Query``, paged by DynamoDB."""
        return [_connection(item) for item in self._query(USER_PREFIX + user_id)]

    def of_topic(self, topic: str) -> Sequence[Connection]:
        """Return the connections that hear ``<channel>/<topic>``: one ``Query``, paged by DynamoDB."""
        return [_connection(item) for item in self._query(TOPIC_PREFIX + topic)]
