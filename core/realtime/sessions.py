"""What the WebSocket routes and the token route do: check a token and store its connection, forget a connection,
hand a live connection a fresh token, sign a token for the app's backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core.errors import InvalidRequestError, InvalidTokenError, NotFoundError, TokenScopeError
from core.realtime.connections import Connection
from core.realtime.ports import ConnectionStorePort, KeyRingPort
from core.realtime.refs import TOPIC_REF, topic_ref
from core.realtime.tokens import MAX_TOKEN_CHARS, IssuedToken, issue_token, read_token

# A token names at most this many channel/topics: it travels in a query string.
MAX_TOPICS = 20

__all__ = [
    "MAX_TOPICS",
    "close_connection",
    "new_token",
    "open_connection",
    "refresh_token",
    "requested_topics",
    "topic_ref",
]


def requested_topics(query: Mapping[str, str], granted: Sequence[str]) -> tuple[str, ...]:
    """Return the topics a connection hears: those of ``?topics=a/b,c/d`` when given, else every one the token names.

    Raises
    ------
    TokenScopeError
        A requested topic is not one the token names.
    """
    raw = query.get("topics")
    if raw is None or not raw.strip():
        return tuple(granted)
    wanted = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    outside = [topic for topic in wanted if topic not in granted]
    if outside:
        shown = ", ".join(topic if TOPIC_REF.fullmatch(topic) else "(an invalid name)" for topic in outside[:3])
        raise TokenScopeError(f"the token does not open {shown}")
    return wanted


def open_connection(
    connection_id: str, query: Mapping[str, str], keys: KeyRingPort, store: ConnectionStorePort, now: float
) -> Connection:
    """Check the token of a ``$connect`` (``?token=…[&topics=…]``) and store the connection it opens.

    Raises
    ------
    InvalidTokenError
        No token, or one that is malformed, forged or expired.
    TokenScopeError
        The connection asks for a topic its token does not name.
    """
    token = query.get("token")
    if not token:
        raise InvalidTokenError("no token: connect with ?token=<token from POST /v1/realtime/tokens>")
    claims = read_token(token, keys, now)
    connection = Connection(
        connection_id=connection_id,
        user_id=claims.user_id,
        topics=requested_topics(query, claims.topics),
        connected_at=int(now),
        token_expires_at=claims.expires_at,
        token_seconds=claims.expires_at - claims.issued_at,
    )
    store.add(connection)
    return connection


def close_connection(connection_id: str, store: ConnectionStorePort) -> Connection | None:
    """Forget a connection that closed; return it, or ``None`` when it was not stored (or is gone already)."""
    connection = store.get(connection_id)
    if connection is not None:
        store.remove(connection)
    return connection


def refresh_token(
    connection_id: str, keys: KeyRingPort, store: ConnectionStorePort, ttl_seconds: int, now: float
) -> IssuedToken:
    """Sign a new token for a live connection, with its user and topics, and keep the connection open until then.

    The new token lives as long as the one the connection opened with, at most ``ttl_seconds``: a backend that asked
    for a short token, to have the page come back through its own session check, is not bypassed by refreshing.

    Raises
    ------
    NotFoundError
        The connection is not stored (it closed, or its items expired; or it closed during this refresh).
    InvalidTokenError
        The connection's token expired before this refresh: only a new token from the app's backend opens it again.
    """
    connection = store.get(connection_id)
    if connection is None:
        raise NotFoundError("this connection is not known any more: connect again")
    if connection.token_expires_at <= now:
        raise InvalidTokenError("the connection's token has expired: connect again with a new token")
    lives = min(ttl_seconds, connection.token_seconds) if connection.token_seconds > 0 else ttl_seconds
    issued = issue_token(connection.user_id, connection.topics, lives, keys, now)
    if not store.extend(connection, issued.claims.expires_at):
        raise NotFoundError("this connection is not known any more: connect again")
    return issued


def new_token(
    user_id: str,
    topics: Sequence[str],
    ttl_seconds: int | None,
    keys: KeyRingPort,
    now: float,
    *,
    default_seconds: int,
    max_seconds: int,
) -> IssuedToken:
    """Sign a token for the app's backend to hand to a browser; ``ttl_seconds`` at most ``max_seconds``.

    Raises
    ------
    InvalidRequestError
        ``ttl_seconds`` is over this stage's maximum.
    """
    if ttl_seconds is not None and ttl_seconds > max_seconds:
        raise InvalidRequestError("ttl_seconds", f"must be {max_seconds} or less (this stage's longest token)")
    issued = issue_token(user_id, tuple(topics), ttl_seconds or default_seconds, keys, now)
    if len(issued.token) > MAX_TOKEN_CHARS:
        # Every connect would refuse it as malformed: said here, where the caller can name fewer or shorter topics.
        raise InvalidRequestError(
            "topics",
            f"with this user_id make a token over {MAX_TOKEN_CHARS} characters, longer than a connect takes: name "
            "fewer or shorter topics",
        )
    return issued
