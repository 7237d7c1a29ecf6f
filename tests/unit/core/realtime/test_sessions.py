"""Unit tests of the WebSocket routes' and token route's logic (core/realtime/sessions.py) on in-memory fakes."""

from __future__ import annotations

import pytest

from core.errors import InvalidRequestError, InvalidTokenError, NotFoundError, TokenScopeError
from core.realtime.connections import Connection
from core.realtime.sessions import close_connection, new_token, open_connection, refresh_token
from core.realtime.tokens import issue_token, read_token
from tests.unit.core.realtime.fakes import FakeConnectionStore, FakeKeyRing

NOW = 1_800_000_000.0


def _token(user: str = "alice", topics: tuple[str, ...] = ("orders/shipped", "news/all"), ttl: int = 900) -> str:
    return issue_token(user, topics, ttl, FakeKeyRing(), NOW).token


def test_open_connection_stores_the_tokens_user_and_topics() -> None:
    store = FakeConnectionStore()

    connection = open_connection("c1", {"token": _token()}, FakeKeyRing(), store, NOW)

    assert store.get("c1") == connection
    assert (connection.user_id, connection.topics) == ("alice", ("orders/shipped", "news/all"))
    assert connection.token_expires_at == int(NOW) + 900


def test_open_connection_topics_query_narrows_to_those_named() -> None:
    connection = open_connection(
        "c1", {"token": _token(), "topics": "news/all"}, FakeKeyRing(), FakeConnectionStore(), NOW
    )

    assert connection.topics == ("news/all",)


def test_open_connection_topic_outside_the_token_is_refused_and_not_stored() -> None:
    store = FakeConnectionStore()

    with pytest.raises(TokenScopeError, match="does not open billing/invoices"):
        open_connection("c1", {"token": _token(), "topics": "billing/invoices"}, FakeKeyRing(), store, NOW)
    assert store.connections == {}


def test_open_connection_without_token_is_refused() -> None:
    with pytest.raises(InvalidTokenError, match="no token"):
        open_connection("c1", {}, FakeKeyRing(), FakeConnectionStore(), NOW)


def test_open_connection_expired_token_is_refused() -> None:
    with pytest.raises(InvalidTokenError, match="expired"):
        open_connection("c1", {"token": _token(ttl=60)}, FakeKeyRing(), FakeConnectionStore(), NOW + 61)


def test_close_connection_removes_it() -> None:
    store = FakeConnectionStore()
    open_connection("c1", {"token": _token()}, FakeKeyRing(), store, NOW)

    closed = close_connection("c1", store)

    assert closed is not None
    assert store.get("c1") is None


def test_close_connection_unknown_is_nothing() -> None:
    assert close_connection("nope", FakeConnectionStore()) is None


def test_refresh_token_signs_the_same_user_and_topics_and_keeps_the_connection_open_longer() -> None:
    store, keys = FakeConnectionStore(), FakeKeyRing()
    open_connection("c1", {"token": _token(), "topics": "news/all"}, keys, store, NOW)

    issued = refresh_token("c1", keys, store, 900, NOW + 600)

    claims = read_token(issued.token, keys, NOW + 600)
    assert (claims.user_id, claims.topics) == ("alice", ("news/all",))
    stored = store.get("c1")
    assert stored is not None
    assert stored.token_expires_at == int(NOW) + 600 + 900


def test_refresh_token_after_the_connections_token_expired_is_refused() -> None:
    store = FakeConnectionStore({"c1": Connection("c1", "alice", (), int(NOW), int(NOW) + 60)})

    with pytest.raises(InvalidTokenError, match="expired"):
        refresh_token("c1", FakeKeyRing(), store, 900, NOW + 60)


def test_refresh_token_of_an_unknown_connection_is_not_found() -> None:
    with pytest.raises(NotFoundError):
        refresh_token("c1", FakeKeyRing(), FakeConnectionStore(), 900, NOW)


def test_new_token_without_ttl_lasts_the_default() -> None:
    issued = new_token("alice", [], None, FakeKeyRing(), NOW, default_seconds=900, max_seconds=3600)

    assert issued.claims.expires_at == int(NOW) + 900


def test_new_token_ttl_over_the_maximum_is_invalid_naming_it() -> None:
    with pytest.raises(InvalidRequestError, match=r"^ttl_seconds: must be 3600 or less"):
        new_token("alice", [], 3601, FakeKeyRing(), NOW, default_seconds=900, max_seconds=3600)


def test_refresh_token_lives_as_long_as_the_token_the_connection_opened_with() -> None:
    # A backend that asks for a 60 s token, to have the page come back through its own session check, was bypassed:
    # a refresh gave a 900 s token, and refreshing again kept the page connected for ever.
    store, keys = FakeConnectionStore(), FakeKeyRing()
    open_connection("c1", {"token": _token(ttl=60)}, keys, store, NOW)

    issued = refresh_token("c1", keys, store, 900, NOW + 30)

    assert issued.claims.expires_at - issued.claims.issued_at == 60
    stored = store.get("c1")
    assert stored is not None
    assert (stored.token_expires_at, stored.token_seconds) == (int(NOW) + 30 + 60, 60)


def test_refresh_token_of_a_connection_stored_without_its_tokens_life_lasts_the_stages_default() -> None:
    store = FakeConnectionStore({"c1": Connection("c1", "alice", (), int(NOW), int(NOW) + 60)})

    issued = refresh_token("c1", FakeKeyRing(), store, 900, NOW + 30)

    assert issued.claims.expires_at == int(NOW) + 30 + 900


def test_refresh_token_of_a_connection_closed_during_the_refresh_is_not_found() -> None:
    # Its $disconnect ran between the refresh's read and its write: the write must not bring the connection back.
    store, keys = FakeConnectionStore(), FakeKeyRing()
    open_connection("c1", {"token": _token()}, keys, store, NOW)
    read = store.get

    def closing_get(connection_id: str) -> Connection | None:
        found = read(connection_id)
        if found is not None:
            store.remove(found)  # the $disconnect
        return found

    store.get = closing_get  # type: ignore[method-assign]

    with pytest.raises(NotFoundError):
        refresh_token("c1", keys, store, 900, NOW + 30)
    assert store.connections == {}


def test_new_token_too_long_to_connect_with_is_invalid_naming_topics() -> None:
    # 20 topics of 129 characters and a user id of 128 CJK characters made a 4,173-character token, answered 201;
    # every connect then refused it as malformed.
    topics = [f"{index:02d}" + "c" * 60 + "/" + "t" * 66 for index in range(20)]

    with pytest.raises(InvalidRequestError, match=r"^topics: .* over 4096 characters"):
        new_token("用" * 128, topics, None, FakeKeyRing(), NOW, default_seconds=900, max_seconds=3600)
