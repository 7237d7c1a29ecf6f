"""The open WebSocket connections in DynamoDB, found by id, by user and by channel/topic, each with one request.

Table key ``pk`` + ``sk``. A connection is written as several small items that each carry the whole connection:

- ``c#<connection id>`` / ``#``: the connection itself, read by ``$disconnect`` and by a token refresh;
- ``u#<user id>`` / ``<connection id>``: so "every connection of user U" is one ``Query`` on ``u#U``;
- ``t#<channel>/<topic>`` / ``<connection id>``: so "every connection that hears channel/topic T" is one ``Query``.

A user's seats are one more item, ``s#<user id>`` / ``#``: ``seats`` maps each of the user's connections to its
token's expiry, and ``version`` changes at every write. ``admit`` takes a seat, ``release`` frees it and ``extend``
moves its expiry, each by writing the whole map back on the condition that ``version`` is still the one it read, so
connects of one user running at once in several functions never take more seats than the limit, in one read and one
write whatever the table holds. A seat whose token expired is free again: a connection whose ``$disconnect`` never
ran, or that a delivery removed as gone (the delivery function does not write seats), holds its seat no longer.

``expires_at`` (the table's TTL) is the token's expiry plus ``grace_seconds``: a connection whose ``$disconnect``
never ran is gone a while after its token, and a refreshed token moves it on (never past its session's end). A seats
item lives until the latest session end of the connections admitted to it, plus ``grace_seconds``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from core.errors import AWS_ERRORS, NotificationError, UpstreamError, aws_error, error_code

CONNECTION_PREFIX = "c#"
USER_PREFIX = "u#"
TOPIC_PREFIX = "t#"
SEATS_PREFIX = "s#"
SELF_KEY = "#"
_BATCH_WRITE_LIMIT = 25
_BATCH_TRIES = 5
# A seat is taken again when another connect of the user wrote the seats between this one's read and write.
_SEAT_TRIES = 8
# What API Gateway allows at most for one connection (2 hours), past the token's expiry: then the items go.
DEFAULT_GRACE_SECONDS = 2 * 3600


@dataclass(frozen=True)
class Connection:
    """An open connection: its id, whose it is, the ``<channel>/<topic>`` names it hears, and until when.

    ``token_expires_at`` is the expiry of the token it was opened or last refreshed with (Unix time); deliveries
    skip a connection past it. ``token_seconds`` is the life of the token it was opened with (0: not known, a
    connection stored before it was kept): a refresh never gives a longer one. ``session_ends_at`` is the end of the
    session its token belongs to, which no refresh passes (0: not known, a connection stored before it was kept; its
    token's expiry is its end). ``session_key_id`` and ``session_issued_at`` name the key that signed its session's
    first token (the app's backend's) and when: a refresh is refused once that key no longer vouches for it, dropped
    or retired before it ("": not known, a connection stored before they were kept, refreshed as before).
    """

    connection_id: str
    user_id: str
    topics: tuple[str, ...]
    connected_at: int
    token_expires_at: int
    token_seconds: int = 0
    session_ends_at: int = 0
    session_key_id: str = ""
    session_issued_at: int = 0

    @property
    def ends_at(self) -> int:
        """When its session ends: its token's expiry for a connection stored before sessions had an end."""
        return self.session_ends_at or self.token_expires_at


def _seats_key(user_id: str) -> dict[str, Any]:
    return {"pk": {"S": SEATS_PREFIX + user_id}, "sk": {"S": SELF_KEY}}


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
        session_ends_at=int(item.get("session_ends_at", {}).get("N", "0")),
        # key_id and token_issued_at: what a release before sessions kept their first key wrote (its latest token's,
        # checked as strictly as that release did).
        session_key_id=(item.get("session_key_id") or item.get("key_id") or {}).get("S", ""),
        session_issued_at=int((item.get("session_issued_at") or item.get("token_issued_at") or {}).get("N", "0")),
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
            "session_ends_at": {"N": str(connection.session_ends_at)},
            "session_key_id": {"S": connection.session_key_id},
            "session_issued_at": {"N": str(connection.session_issued_at)},
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

    def admit(self, connection: Connection, limit: int, now: float) -> bool:
        """Take a seat for a connection and store it, unless its user holds ``limit`` seats of connections whose
        tokens have not expired; ``False``, storing nothing, when the user does."""

        def take(seats: dict[str, int]) -> dict[str, int] | None:
            held = {other: expiry for other, expiry in seats.items() if expiry > now}
            if len(held) >= limit and connection.connection_id not in held:
                return None
            return {**held, connection.connection_id: connection.token_expires_at}

        # Every seat's connection ends by its session's end, which no refresh passes: the item outlives them all.
        lives_until = connection.ends_at + self._grace
        if not self._change_seats(connection.user_id, take, lives_until):
            return False
        try:
            self.add(connection)
        except NotificationError:
            # The connect is refused: the seat would be held, by nothing, until the token expired.
            with contextlib.suppress(NotificationError):
                self.release(connection)
            raise
        return True

    def release(self, connection: Connection) -> None:
        """Free a connection's seat (it closed); nothing when it holds none."""
        self._change_seats(
            connection.user_id,
            lambda seats: (
                {other: expiry for other, expiry in seats.items() if other != connection.connection_id}
                if connection.connection_id in seats
                else None
            ),
        )

    def _change_seats(
        self, user_id: str, change: Callable[[dict[str, int]], dict[str, int] | None], lives_until: int = 0
    ) -> bool:
        """Write back a user's seats as ``change`` makes them of what is stored (``None``: no write, and ``False``),
        provided no other write came in between; read and tried again when one did.

        One ``GetItem`` and one conditional ``PutItem`` each time: the WebSocket function's role allows no more.
        """
        key = _seats_key(user_id)
        for attempt in range(_SEAT_TRIES):
            try:
                item = self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item") or {}
            except AWS_ERRORS as exc:
                raise aws_error(exc, "reading the user's connections") from exc
            seats = {other: int(value["N"]) for other, value in item.get("seats", {}).get("M", {}).items()}
            changed = change(seats)
            if changed is None:
                return False
            version = int(item.get("version", {}).get("N", "0"))
            written = {
                **key,
                "seats": {"M": {other: {"N": str(expiry)} for other, expiry in changed.items()}},
                "version": {"N": str(version + 1)},
                "expires_at": {"N": str(max(lives_until, int(item.get("expires_at", {}).get("N", "0"))))},
            }
            condition: dict[str, Any] = (
                {
                    "ConditionExpression": "version = :version",
                    "ExpressionAttributeValues": {":version": {"N": str(version)}},
                }
                if item
                else {"ConditionExpression": "attribute_not_exists(pk)"}
            )
            try:
                self._client.put_item(TableName=self._table, Item=written, **condition)
            except AWS_ERRORS as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise aws_error(exc, "storing the user's connections") from exc
                self._sleep(0.01 * 2**attempt)
                continue
            return True
        raise UpstreamError("storing the user's connections failed (they changed at every try)")

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
        # Its seat is held as long as its token lives: past the old expiry, another connection would take it.
        self._change_seats(
            renewed.user_id,
            lambda seats: (
                {**seats, renewed.connection_id: token_expires_at} if renewed.connection_id in seats else None
            ),
        )
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
        """Delete every item of a connection (not its seat: ``release``); deleting what is gone already is no error."""
        deletes = [{"DeleteRequest": {"Key": {"pk": {"S": pk}, "sk": {"S": sk}}}} for pk, sk in _keys(connection)]
        self._write(deletes, "removing the connection")

    def unroute(self, connection: Connection) -> None:
        """Delete a connection's user and topic items, keeping its own item (and its seat) for its ``$disconnect``."""
        _own, *routes = _keys(connection)
        deletes = [{"DeleteRequest": {"Key": {"pk": {"S": pk}, "sk": {"S": sk}}}} for pk, sk in routes]
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
