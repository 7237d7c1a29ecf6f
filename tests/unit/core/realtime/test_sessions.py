"""Unit tests of the WebSocket routes' and token route's logic (core/realtime/sessions.py) on in-memory fakes: tokens
open connections (a bounded number per user), refreshes keep them open until their session ends."""

from __future__ import annotations

import pytest

from core.errors import ConflictError, InvalidRequestError, InvalidTokenError, NotFoundError, TokenScopeError
from core.realtime.connections import Connection
from core.realtime.sessions import (
    MAX_CONNECTIONS_PER_USER,
    close_connection,
    new_token,
    open_connection,
    refresh_token,
)
from core.realtime.tokens import issue_token, read_token
from tests.unit.core.realtime.fakes import FakeConnectionStore, FakeKeyRing

NOW = 1_800_000_000.0
MAX_SECONDS = 3600


def _token(user: str = "alice", topics: tuple[str, ...] = ("orders/shipped", "news/all"), ttl: int = 900) -> str:
    """A token as the token route signs it: its session ends the stage's maximum after it is issued."""
    return issue_token(user, topics, ttl, FakeKeyRing(), NOW, session_ends_at=int(NOW) + MAX_SECONDS).token


def test_open_connection_stores_the_tokens_user_and_topics() -> None:
    store = FakeConnectionStore()

    connection = open_connection("c1", {"token": _token()}, FakeKeyRing(), store, NOW, max_seconds=MAX_SECONDS)

    assert store.get("c1") == connection
    assert (connection.user_id, connection.topics) == ("alice", ("orders/shipped", "news/all"))
    assert connection.token_expires_at == int(NOW) + 900


def test_open_connection_topics_query_narrows_to_those_named() -> None:
    connection = open_connection(
        "c1",
        {"token": _token(), "topics": "news/all"},
        FakeKeyRing(),
        FakeConnectionStore(),
        NOW,
        max_seconds=MAX_SECONDS,
    )

    assert connection.topics == ("news/all",)


def test_open_connection_topic_outside_the_token_is_refused_and_not_stored() -> None:
    store = FakeConnectionStore()

    with pytest.raises(TokenScopeError, match="does not open billing/invoices"):
        open_connection(
            "c1", {"token": _token(), "topics": "billing/invoices"}, FakeKeyRing(), store, NOW, max_seconds=MAX_SECONDS
        )
    assert store.connections == {}


def test_open_connection_without_token_is_refused() -> None:
    with pytest.raises(InvalidTokenError, match="no token"):
        open_connection("c1", {}, FakeKeyRing(), FakeConnectionStore(), NOW, max_seconds=MAX_SECONDS)


def test_open_connection_expired_token_is_refused() -> None:
    with pytest.raises(InvalidTokenError, match="expired"):
        open_connection(
            "c1", {"token": _token(ttl=60)}, FakeKeyRing(), FakeConnectionStore(), NOW + 61, max_seconds=MAX_SECONDS
        )


def test_close_connection_removes_it() -> None:
    store = FakeConnectionStore()
    open_connection("c1", {"token": _token()}, FakeKeyRing(), store, NOW, max_seconds=MAX_SECONDS)

    closed = close_connection("c1", store)

    assert closed is not None
    assert store.get("c1") is None


def test_close_connection_frees_its_place_among_its_users() -> None:
    store = FakeConnectionStore()
    open_connection("c1", {"token": _token()}, FakeKeyRing(), store, NOW, max_seconds=MAX_SECONDS)

    close_connection("c1", store)

    assert store.released == ["c1"]


def test_close_connection_unknown_is_nothing() -> None:
    assert close_connection("nope", FakeConnectionStore()) is None


def test_refresh_token_signs_the_same_user_and_topics_and_keeps_the_connection_open_longer() -> None:
    store, keys = FakeConnectionStore(), FakeKeyRing()
    open_connection("c1", {"token": _token(), "topics": "news/all"}, keys, store, NOW, max_seconds=MAX_SECONDS)

    issued = refresh_token("c1", keys, store, 900, NOW + 600)

    claims = read_token(issued.token, keys, NOW + 600, max_seconds=MAX_SECONDS)
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
    open_connection("c1", {"token": _token(ttl=60)}, keys, store, NOW, max_seconds=MAX_SECONDS)

    issued = refresh_token("c1", keys, store, 900, NOW + 30)

    assert issued.claims.expires_at - issued.claims.issued_at == 60
    stored = store.get("c1")
    assert stored is not None
    assert (stored.token_expires_at, stored.token_seconds) == (int(NOW) + 30 + 60, 60)


def test_refresh_token_of_a_connection_stored_without_its_tokens_life_lasts_the_stages_default() -> None:
    store = FakeConnectionStore(
        {"c1": Connection("c1", "alice", (), int(NOW), int(NOW) + 60, session_ends_at=int(NOW) + 3600)}
    )

    issued = refresh_token("c1", FakeKeyRing(), store, 900, NOW + 30)

    assert issued.claims.expires_at == int(NOW) + 30 + 900


def test_refresh_token_of_a_connection_closed_during_the_refresh_is_not_found() -> None:
    # Its $disconnect ran between the refresh's read and its write: the write must not bring the connection back.
    store, keys = FakeConnectionStore(), FakeKeyRing()
    open_connection("c1", {"token": _token()}, keys, store, NOW, max_seconds=MAX_SECONDS)
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

    with pytest.raises(InvalidRequestError, match=r"^topics: .* over 3840 characters"):
        new_token("用" * 128, topics, None, FakeKeyRing(), NOW, default_seconds=900, max_seconds=3600)


def _longest_token(keys: FakeKeyRing) -> str:
    """The longest token new_token answers: as many topics of 129 characters as it takes, the user id then growing a
    UTF-8 byte at a time (ASCII letters turned into 2-, 3- then 4-byte characters)."""
    for count in range(20, 0, -1):
        topics = [f"{index:02d}" + "c" * 62 + "/" + "t" * 64 for index in range(count)]
        longest = ""
        for wide in range(128 * 3 + 1):
            user = "".join(
                "\U0001f600" if i < wide - 256 else "用" if i < wide - 128 else "é" if i < wide else "u"
                for i in range(128)
            )
            try:
                longest = new_token(user, topics, None, keys, NOW, default_seconds=900, max_seconds=MAX_SECONDS).token
            except InvalidRequestError:
                break
        if longest:
            return longest
    raise AssertionError("no token answered")


def test_new_token_longest_answered_refreshes_into_a_token_a_connect_takes_and_fits_a_websocket_url() -> None:
    """A 4,095-character token was answered 201; its refresh (carrying the session's first key and time) came out at
    4,157 characters, which every connect refused; and API Gateway takes a WebSocket URL of 4096 characters at most."""
    keys, store = FakeKeyRing(), FakeConnectionStore()
    token = _longest_token(keys)
    open_connection("c1", {"token": token}, keys, store, NOW, max_seconds=MAX_SECONDS)

    refreshed = refresh_token("c1", keys, store, 900, NOW + 600)

    assert read_token(refreshed.token, keys, NOW + 601, max_seconds=MAX_SECONDS).topics
    url = "wss://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/production?token="
    assert len(url + max(token, refreshed.token, key=len)) <= 4096


def test_new_token_session_ends_the_stage_maximum_after_it_is_issued() -> None:
    issued = new_token("alice", [], 60, FakeKeyRing(), NOW, default_seconds=900, max_seconds=MAX_SECONDS)

    assert (issued.claims.expires_at, issued.claims.session_ends_at) == (int(NOW) + 60, int(NOW) + MAX_SECONDS)


def test_refresh_token_chain_of_a_short_token_ends_with_its_session() -> None:
    # A 60 s token refreshed every 30 s was refreshed for ever: a leaked token, or a user logged out of the app, kept
    # hearing notifications without the backend ever being asked again.
    store, keys = FakeConnectionStore(), FakeKeyRing()
    open_connection("c1", {"token": _token(ttl=60)}, keys, store, NOW, max_seconds=MAX_SECONDS)
    expiries, refused = [], None
    for step in range(1, 4 * 120):
        try:
            expiries.append(refresh_token("c1", keys, store, 900, NOW + 30 * step).claims.expires_at)
        except InvalidTokenError as exc:
            refused = str(exc)
            break

    assert refused is not None
    assert "from the app's backend" in refused
    assert max(expiries) <= int(NOW) + MAX_SECONDS


def test_refresh_token_never_signs_past_the_session_end() -> None:
    store = FakeConnectionStore(
        {"c1": Connection("c1", "alice", (), int(NOW), int(NOW) + 900, 900, session_ends_at=int(NOW) + 300)}
    )

    issued = refresh_token("c1", FakeKeyRing(), store, 900, NOW + 30)

    assert (issued.claims.expires_at, issued.claims.session_ends_at) == (int(NOW) + 300, int(NOW) + 300)


def test_refresh_token_with_under_a_minute_of_its_session_left_is_refused() -> None:
    # Rather than ever shorter tokens, the page goes back to its backend while its token still works.
    store = FakeConnectionStore(
        {"c1": Connection("c1", "alice", (), int(NOW), int(NOW) + 90, 90, session_ends_at=int(NOW) + 90)}
    )

    with pytest.raises(InvalidTokenError, match="session is ending"):
        refresh_token("c1", FakeKeyRing(), store, 900, NOW + 31)


def test_refresh_token_of_a_connection_stored_without_a_session_end_ends_with_its_token() -> None:
    store = FakeConnectionStore({"c1": Connection("c1", "alice", (), int(NOW), int(NOW) + 600, 900)})

    issued = refresh_token("c1", FakeKeyRing(), store, 900, NOW + 30)

    assert issued.claims.expires_at == issued.claims.session_ends_at == int(NOW) + 600
    stored = store.get("c1")
    assert stored is not None
    assert stored.session_ends_at == int(NOW) + 600


def test_open_connection_with_a_refreshed_token_keeps_the_first_tokens_session_end() -> None:
    store, keys = FakeConnectionStore(), FakeKeyRing()
    open_connection("c1", {"token": _token()}, keys, store, NOW, max_seconds=MAX_SECONDS)
    refreshed = refresh_token("c1", keys, store, 900, NOW + 30).token

    again = open_connection("c2", {"token": refreshed}, keys, store, NOW + 40, max_seconds=MAX_SECONDS)

    assert again.session_ends_at == int(NOW) + MAX_SECONDS


def _open_many(store: FakeConnectionStore, count: int, user: str = "alice") -> None:
    for index in range(count):
        open_connection(f"c{index}", {"token": _token(user=user)}, FakeKeyRing(), store, NOW, max_seconds=3600)


def test_open_connection_beyond_the_users_limit_is_refused_and_not_stored() -> None:
    # One token opened 300 connections, each one more post per notification of its user.
    store = FakeConnectionStore()
    _open_many(store, MAX_CONNECTIONS_PER_USER)

    with pytest.raises(ConflictError, match=f"{MAX_CONNECTIONS_PER_USER} open connections"):
        open_connection("extra", {"token": _token()}, FakeKeyRing(), store, NOW, max_seconds=MAX_SECONDS)
    assert (len(store.connections), store.get("extra")) == (MAX_CONNECTIONS_PER_USER, None)


def test_open_connection_connections_whose_tokens_expired_hold_no_place() -> None:
    store = FakeConnectionStore()
    for index in range(MAX_CONNECTIONS_PER_USER):
        store.add(Connection(f"old{index}", "alice", (), int(NOW) - 900, int(NOW) - 1))

    connection = open_connection("c1", {"token": _token()}, FakeKeyRing(), store, NOW, max_seconds=3600)

    assert store.get("c1") == connection


def test_open_connection_other_users_connections_hold_no_place() -> None:
    store = FakeConnectionStore()
    _open_many(store, MAX_CONNECTIONS_PER_USER, user="bob")

    connection = open_connection("c1", {"token": _token()}, FakeKeyRing(), store, NOW, max_seconds=3600)

    assert store.get("c1") == connection
