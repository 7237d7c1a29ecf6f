"""The ports realtime logic takes as collaborators; ``SigningKeyStore`` and ``ConnectionStore`` implement them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from core.realtime.connections import Connection
    from core.realtime.keys import VerificationKey


@runtime_checkable
class KeyRingPort(Protocol):
    """The signing keys of connection tokens: the current one signs, any kept one verifies what it signed before its
    retirement."""

    def signing_key(self) -> tuple[str, bytes]:
        """Return the current key's id and secret."""
        ...

    def verification_key(self, key_id: str) -> VerificationKey | None:
        """Return key ``key_id``'s secret and the latest issue time it signs, or ``None`` when no such key is kept."""
        ...


@runtime_checkable
class ConnectionStorePort(Protocol):
    """The open connections, found by id, by user and by channel/topic."""

    def add(self, connection: Connection) -> None:
        """Store a connection under its id, its user and each of its topics."""
        ...

    def admit(self, connection: Connection, limit: int, now: float) -> bool:
        """Store a connection unless its user has ``limit`` connections whose tokens have not expired; ``False``,
        storing nothing, when it has (connects of one user running at once never pass the limit together)."""
        ...

    def get(self, connection_id: str) -> Connection | None:
        """Return a connection by id, or ``None``."""
        ...

    def remove(self, connection: Connection) -> None:
        """Delete every item of a connection."""
        ...

    def unroute(self, connection: Connection) -> None:
        """Delete the items that lead frames to a connection (its user's and its topics'), keeping its own: its
        ``$disconnect`` reads that to free its place among its user's."""
        ...

    def release(self, connection: Connection) -> None:
        """Free the place a closed connection held among its user's (``admit``)."""
        ...

    def extend(self, connection: Connection, token_expires_at: int) -> bool:
        """Keep a connection open until ``token_expires_at`` (its token was refreshed); ``False`` when it is not
        stored any more (closed meanwhile)."""
        ...

    def of_user(self, user_id: str) -> Sequence[Connection]:
        """Return the connections of a user."""
        ...

    def of_topic(self, topic: str) -> Sequence[Connection]:
        """Return the connections subscribed to ``<channel>/<topic>``."""
        ...
