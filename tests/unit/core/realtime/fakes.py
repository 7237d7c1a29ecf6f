"""In-memory fakes of the realtime ports and of the Management API client, for unit tests of tokens, sessions, the
browser channel and the WebSocket handler."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.exceptions import ClientError

from core.realtime.connections import Connection
from core.realtime.keys import KeySet, SigningKey, VerificationKey


@dataclass
class FakeKeyRing:
    """Signing keys held in memory: ``current`` signs, every key in ``keys`` verifies; a key in ``retired`` (its
    retirement time) only what was issued before it, or within ``cache_seconds`` after, as ``SigningKeyStore``."""

    current: str = "k1"
    keys: dict[str, bytes] = field(default_factory=lambda: {"k1": b"k" * 32})
    retired: dict[str, int] = field(default_factory=dict)
    cache_seconds: int = 60

    @classmethod
    def of(cls, key_set: KeySet) -> FakeKeyRing:
        """The key ring a ``SigningKeyStore`` reading ``key_set`` would be."""
        return cls(
            key_set.current,
            {key_id: key.secret for key_id, key in key_set.keys.items()},
            {key_id: key.retired_at for key_id, key in key_set.keys.items() if key.retired_at is not None},
        )

    def key_set(self) -> KeySet:
        """These keys as the parameter would hold them."""
        return KeySet(
            self.current,
            {key_id: SigningKey(secret, 0, self.retired.get(key_id)) for key_id, secret in self.keys.items()},
        )

    def signing_key(self) -> tuple[str, bytes]:
        """Return the current key."""
        return self.current, self.keys[self.current]

    def verification_key(self, key_id: str) -> VerificationKey | None:
        """Return a kept key."""
        if key_id not in self.keys:
            return None
        retired_at = self.retired.get(key_id)
        return VerificationKey(self.keys[key_id], None if retired_at is None else retired_at + self.cache_seconds)


@dataclass
class FakeConnectionStore:
    """Connections by id, with the lookups the DynamoDB store answers with one query each."""

    connections: dict[str, Connection] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    unrouted: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)

    def add(self, connection: Connection) -> None:
        """Store a connection."""
        self.connections[connection.connection_id] = connection

    def admit(self, connection: Connection, limit: int, now: float) -> bool:
        """Store a connection unless its user has ``limit`` whose tokens have not expired."""
        held = [
            other
            for other in self.connections.values()
            if other.user_id == connection.user_id
            and other.token_expires_at > now
            and other.connection_id != connection.connection_id
        ]
        if len(held) >= limit:
            return False
        self.add(connection)
        return True

    def release(self, connection: Connection) -> None:
        """Free a connection's place: nothing to do, since ``admit`` counts the stored connections."""
        self.released.append(connection.connection_id)

    def get(self, connection_id: str) -> Connection | None:
        """Return a connection by id."""
        return self.connections.get(connection_id)

    def remove(self, connection: Connection) -> None:
        """Forget a connection."""
        self.connections.pop(connection.connection_id, None)
        self.removed.append(connection.connection_id)

    def unroute(self, connection: Connection) -> None:
        """Stop routing to a connection: gone from ``of_user``/``of_topic``, still found by ``get``."""
        self.unrouted.append(connection.connection_id)

    def extend(self, connection: Connection, token_expires_at: int) -> bool:
        """Move a connection's expiry; ``False`` when it is not stored any more."""
        if connection.connection_id not in self.connections:
            return False
        self.connections[connection.connection_id] = replace(connection, token_expires_at=token_expires_at)
        return True

    def of_user(self, user_id: str) -> Sequence[Connection]:
        """Return a user's connections."""
        return [c for c in self.connections.values() if c.user_id == user_id and c.connection_id not in self.unrouted]

    def of_topic(self, topic: str) -> Sequence[Connection]:
        """Return the connections hearing a topic."""
        return [c for c in self.connections.values() if topic in c.topics and c.connection_id not in self.unrouted]


def client_error(code: str, status: int) -> ClientError:
    """A ClientError as botocore raises it for an AWS error answer."""
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "op")


@dataclass
class FakeManagementApi:
    """The Management API client: records posts and deletes; ``answers`` maps a connection id to the error it gets."""

    answers: dict[str, ClientError] = field(default_factory=dict)
    posts: list[tuple[str, bytes]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        """Record a post, or raise the error set for the connection."""
        if ConnectionId in self.answers:
            raise self.answers[ConnectionId]
        self.posts.append((ConnectionId, Data))
        return {}

    def delete_connection(self, ConnectionId: str) -> dict[str, Any]:
        """Record a close."""
        self.deleted.append(ConnectionId)
        return {}
