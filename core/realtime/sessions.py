"""What the WebSocket routes and the token route do: check a token and store its connection, forget a connection,
hand a live connection a fresh token, sign a token for the app's backend.

A token from the app's backend opens a session that ends ``REALTIME_TOKEN_MAX_SECONDS`` after it was issued: refreshes
over a connection keep the page connected until then, never after, so a page comes back through its backend's own
session check at least that often, and a token that leaked, or a user logged out of the app, hears nothing longer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from core.errors import ConflictError, InvalidRequestError, InvalidTokenError, NotFoundError, TokenScopeError
from core.realtime.connections import Connection
from core.realtime.ports import ConnectionStorePort, KeyRingPort
from core.realtime.refs import TOPIC_REF, topic_ref
from core.realtime.tokens import MAX_TOKEN_CHARS, IssuedToken, issue_token, read_token, session_vouched_for

# API Gateway takes a WebSocket URL of at most 4096 characters, a browser's token in its query (``?token=…``): room is
# kept for the rest (``wss://<id>.execute-api.<region>.amazonaws.com/<stage>?token=`` is about 70 characters; a
# custom domain's may be longer) and for a refresh signed by a key whose id is longer.
MAX_ISSUED_TOKEN_CHARS = MAX_TOKEN_CHARS - 256

# A token names at most this many channel/topics: it travels in a query string.
MAX_TOPICS = 20
# A user's open connections at most: a browser's tabs and a few devices. Each is one more post per notification of
# theirs, and one token opens as many as it is used for.
MAX_CONNECTIONS_PER_USER = 20
# The shortest token a refresh signs (as the token route's shortest): with less of its session left, the page goes
# back to its backend while its token still works, rather than refreshing ever shorter tokens.
MIN_REFRESH_SECONDS = 60

__all__ = [
    "MAX_CONNECTIONS_PER_USER",
    "MAX_TOPICS",
    "MIN_REFRESH_SECONDS",
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
    connection_id: str,
    query: Mapping[str, str],
    keys: KeyRingPort,
    store: ConnectionStorePort,
    now: float,
    *,
    max_seconds: int,
) -> Connection:
    """Check the token of a ``$connect`` (``?token=…[&topics=…]``) and store the connection it opens, unless its user
    has ``MAX_CONNECTIONS_PER_USER`` open already; ``max_seconds`` is this stage's longest token.

    Raises
    ------
    InvalidTokenError
        No token, or one that is malformed, forged, expired or longer-lived than this stage issues.
    TokenScopeError
        The connection asks for a topic its token does not name.
    ConflictError
        The user has as many open connections as one may have.
    """
    token = query.get("token")
    if not token:
        raise InvalidTokenError("no token: connect with ?token=<token from POST /v1/realtime/tokens>")
    claims = read_token(token, keys, now, max_seconds=max_seconds)
    connection = Connection(
        connection_id=connection_id,
        user_id=claims.user_id,
        topics=requested_topics(query, claims.topics),
        connected_at=int(now),
        token_expires_at=claims.expires_at,
        token_seconds=claims.expires_at - claims.issued_at,
        session_ends_at=claims.session_ends_at,
        session_key_id=claims.session_key_id,
        session_issued_at=claims.session_issued_at,
    )
    if not store.admit(connection, MAX_CONNECTIONS_PER_USER, now):
        raise ConflictError(
            f"this user has {MAX_CONNECTIONS_PER_USER} open connections, the most one user may have: close one first"
        )
    return connection


def close_connection(connection_id: str, store: ConnectionStorePort) -> Connection | None:
    """Forget a connection that closed, and free its place among its user's; return it, or ``None`` when it was not
    stored (or is gone already)."""
    connection = store.get(connection_id)
    if connection is not None:
        store.remove(connection)
        store.release(connection)
    return connection


def refresh_token(
    connection_id: str, keys: KeyRingPort, store: ConnectionStorePort, ttl_seconds: int, now: float
) -> IssuedToken:
    """Sign a new token for a live connection, with its user and topics, and keep the connection open until then.

    The new token lives as long as the one the connection opened with, at most ``ttl_seconds``, and never past the
    end of its session (``REALTIME_TOKEN_MAX_SECONDS`` after the app's backend issued the first): a chain of refreshes
    does not keep a page connected for ever without its backend.

    Raises
    ------
    NotFoundError
        The connection is not stored (it closed, or its items expired; or it closed during this refresh).
    InvalidTokenError
        The connection's token expired before this refresh, the key that signed its session's first token no longer
        vouches for it (a rotation dropped the key, or retired it before that token was issued: a session whose token
        leaked is not renewed, whichever key signed its latest), or its session ends within ``MIN_REFRESH_SECONDS``:
        only a new token from the app's backend opens it again.
    """
    connection = store.get(connection_id)
    if connection is None:
        raise NotFoundError("this connection is not known any more: connect again")
    if connection.token_expires_at <= now:
        raise InvalidTokenError("the connection's token has expired: connect again with a new token")
    first = (connection.session_key_id, connection.session_issued_at) if connection.session_key_id else None
    if first is not None and not session_vouched_for(keys, *first):
        raise InvalidTokenError("the connection's session was revoked: connect again with a new token")
    ends_at = connection.ends_at
    if ends_at - int(now) < MIN_REFRESH_SECONDS:
        raise InvalidTokenError(
            "the connection's session is ending: connect again with a new token from the app's backend"
        )
    lives = min(ttl_seconds, connection.token_seconds) if connection.token_seconds > 0 else ttl_seconds
    issued = issue_token(
        connection.user_id, connection.topics, lives, keys, now, session_ends_at=ends_at, session=first
    )
    if len(issued.token) > MAX_TOKEN_CHARS:
        # A token issued before its refreshes were measured (new_token): the refresh would be refused at connect.
        raise InvalidTokenError("the connection's token is too long to refresh: connect again with a new token")
    # A connection stored before sessions kept their first key takes the refreshed token's: checked from now on.
    renewed = replace(
        connection,
        session_ends_at=ends_at,
        session_key_id=issued.claims.session_key_id,
        session_issued_at=issued.claims.session_issued_at,
    )
    if not store.extend(renewed, issued.claims.expires_at):
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
    """Sign a token for the app's backend to hand to a browser; ``ttl_seconds`` at most ``max_seconds``, which is also
    how long refreshes may keep its page connected (its session's end).

    Raises
    ------
    InvalidRequestError
        ``ttl_seconds`` is over this stage's maximum.
    """
    if ttl_seconds is not None and ttl_seconds > max_seconds:
        raise InvalidRequestError("ttl_seconds", f"must be {max_seconds} or less (this stage's longest token)")
    lives, ends_at = ttl_seconds or default_seconds, int(now) + max_seconds
    issued = issue_token(user_id, tuple(topics), lives, keys, now, session_ends_at=ends_at)
    # Its refreshes carry the session's first key and time too: the longest token of the session is a refresh's.
    session = (issued.claims.session_key_id, issued.claims.session_issued_at)
    refreshed = issue_token(user_id, tuple(topics), lives, keys, now, session_ends_at=ends_at, session=session)
    if max(len(issued.token), len(refreshed.token)) > MAX_ISSUED_TOKEN_CHARS:
        # A connect refuses a token over MAX_TOKEN_CHARS as malformed, and API Gateway a URL over 4096 characters:
        # said here, where the caller can name fewer or shorter topics. A 4,000-character token was answered 201, and
        # its first refresh made one no connect took.
        raise InvalidRequestError(
            "topics",
            f"with this user_id make a token over {MAX_ISSUED_TOKEN_CHARS} characters, longer than a connection's "
            "URL can carry: name fewer or shorter topics",
        )
    return issued
