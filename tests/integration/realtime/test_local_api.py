"""Browser deliveries end to end in one process: real WebSocket clients connect to the local WebSocket API, whose
routes run the real handler on moto; the browser channel posts through boto3's Management API client to the local
Management API. A token for one user never hears another's messages; gone connections are pruned; one topic fans out
to 1,000 connections. A user's token opens a bounded number of connections; a request that is no WebSocket handshake
runs no ``$connect``."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from core import clients
from core.channels.browser import BrowserChannel, BrowserResources
from core.models import Content
from core.realtime.connections import SEATS_PREFIX, Connection
from core.realtime.sessions import MAX_CONNECTIONS_PER_USER
from core.realtime.tokens import issue_token
from infra.local.websocket import CONNECT, DISCONNECT
from tests.integration.realtime.conftest import Realtime

pytestmark = pytest.mark.timeout(300)


def _token(user: str, topics: Sequence[str] = ()) -> str:
    return issue_token(user, tuple(topics), 900, clients.get_signing_keys(), time.time()).token


async def _open(url: str, tokens: Sequence[str], at_once: int = 100) -> list[ClientConnection]:
    gate = asyncio.Semaphore(at_once)

    async def one(token: str) -> ClientConnection:
        async with gate:
            return await connect(f"{url}?token={token}", max_size=None)

    return list(await asyncio.gather(*(one(token) for token in tokens)))


def _stored_items(realtime: Realtime) -> int:
    """Count the items of connections in the table (not the users' seats, which stay, empty, until their TTL)."""
    items = realtime.dynamodb.scan(TableName="notify-test-connections")["Items"]
    return sum(1 for item in items if not item["pk"]["S"].startswith(SEATS_PREFIX))


def _seats(realtime: Realtime, user: str) -> dict[str, Any]:
    item = realtime.dynamodb.get_item(
        TableName="notify-test-connections", Key={"pk": {"S": SEATS_PREFIX + user}, "sk": {"S": "#"}}
    )["Item"]
    seats: dict[str, Any] = item["seats"]["M"]
    return seats


async def _frames(socket: ClientConnection, wait: float) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(socket.recv(), wait)))
    except TimeoutError:
        return frames


def _deliver(target: dict[str, Any], notification_id: str, text: str = "Order 42 shipped") -> str | None:
    channel = clients.get_channels()["browser"]
    receipt = channel.send(Content(text=text), target, None, notification_id=notification_id, delivery_key="browser")
    return receipt.provider_message_id


def test_fan_out_one_topic_reaches_1000_connections_once_each(realtime: Realtime) -> None:
    realtime.record("n-fan-out")
    tokens = [_token(f"user-{index}", ["orders/shipped"]) for index in range(1000)]

    async def run() -> tuple[list[list[dict[str, Any]]], str | None, float]:
        sockets = await _open(realtime.api.websocket_url, tokens)
        started = time.monotonic()
        note = await asyncio.get_running_loop().run_in_executor(None, _deliver, {}, "n-fan-out")
        took = time.monotonic() - started
        received = await asyncio.gather(*(_frames(socket, 2.0) for socket in sockets))
        await asyncio.gather(*(socket.close() for socket in sockets))
        return received, note, took

    received, note, took = asyncio.run(run())

    assert note == "1000 connections"
    assert all(len(frames) == 1 and frames[0]["notification_id"] == "n-fan-out" for frames in received)
    assert realtime.api.stats.snapshot().get("post 200") == 1000
    assert took < 60


def test_user_target_a_token_for_alice_never_hears_bobs_messages(realtime: Realtime) -> None:
    realtime.record("n-bob")

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        alice, bob = await _open(realtime.api.websocket_url, [_token("alice"), _token("bob")])
        await asyncio.get_running_loop().run_in_executor(None, _deliver, {"user_id": "bob"}, "n-bob")
        heard = await asyncio.gather(_frames(alice, 1.0), _frames(bob, 1.0))
        await alice.close()
        await bob.close()
        return heard[0], heard[1]

    alice_heard, bob_heard = asyncio.run(run())

    assert alice_heard == []
    assert [frame["notification_id"] for frame in bob_heard] == ["n-bob"]


def test_topic_target_a_connection_of_another_topic_hears_nothing(realtime: Realtime) -> None:
    realtime.record("n-topic", topic="shipped")

    async def run() -> list[list[dict[str, Any]]]:
        sockets = await _open(
            realtime.api.websocket_url, [_token("a", ["orders/shipped"]), _token("b", ["orders/returned"])]
        )
        await asyncio.get_running_loop().run_in_executor(None, _deliver, {}, "n-topic")
        heard = await asyncio.gather(*(_frames(socket, 1.0) for socket in sockets))
        await asyncio.gather(*(socket.close() for socket in sockets))
        return list(heard)

    shipped, returned = asyncio.run(run())

    assert (len(shipped), returned) == (1, [])


def test_gone_connection_is_removed_from_the_store_and_the_delivery_succeeds(realtime: Realtime) -> None:
    realtime.record("n-gone")
    store = clients.get_connection_store()
    gone = Connection(f"gone-{uuid.uuid4().hex[:8]}=", "carol", (), int(time.time()) - 3600, int(time.time()) + 600)
    store.add(gone)

    note = _deliver({"user_id": "carol"}, "n-gone")

    assert note == "0 connections, 1 gone"
    assert store.of_user("carol") == []
    assert realtime.api.stats.snapshot().get("post 410") == 1


def test_connect_forged_token_is_refused_at_the_handshake_and_not_stored(realtime: Realtime) -> None:
    async def run() -> int:
        try:
            await connect(f"{realtime.api.websocket_url}?token=rt1.k1.e30.forged")
        except InvalidStatus as exc:
            return exc.response.status_code
        return 101

    assert asyncio.run(run()) == 401
    assert realtime.dynamodb.scan(TableName="notify-test-connections")["Count"] == 0  # nor a seat


def test_connect_then_close_stores_then_removes_the_connection(realtime: Realtime) -> None:
    async def run() -> tuple[int, int]:
        (socket,) = await _open(realtime.api.websocket_url, [_token("dave", ["orders/shipped"])])
        stored = _stored_items(realtime)
        await socket.close()
        # $disconnect removes the connection's items, then frees its seat: the second write may still be on its way.
        for _ in range(50):
            if _stored_items(realtime) == 0 and not _seats(realtime, "dave"):
                break
            await asyncio.sleep(0.1)
        return stored, _stored_items(realtime)

    stored, left = asyncio.run(run())

    assert (stored, left) == (3, 0)  # the connection, its user and its topic; all gone after $disconnect
    assert _seats(realtime, "dave") == {}


def test_refresh_frame_is_answered_over_the_connection_with_a_new_token(realtime: Realtime) -> None:
    async def run() -> dict[str, Any]:
        (socket,) = await _open(realtime.api.websocket_url, [_token("erin")])
        await socket.send(json.dumps({"action": "refresh"}))
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), 10))
        await socket.close()
        return frame

    frame = asyncio.run(run())

    assert frame["type"] == "token"
    assert frame["token"].startswith("rt1.")


def test_management_api_get_and_delete_act_on_a_live_connection(realtime: Realtime) -> None:
    management = clients.get_management_client(realtime.api.management_url)

    async def run() -> tuple[dict[str, Any], str | None]:
        (socket,) = await _open(realtime.api.websocket_url, [_token("fay")])
        # The server registers a connection once its session starts, which may be just after the client's handshake.
        for _ in range(100):
            if realtime.api.open_connections():
                break
            await asyncio.sleep(0.02)
        (connection_id,) = realtime.api.open_connections()
        loop = asyncio.get_running_loop()
        described = await loop.run_in_executor(None, lambda: management.get_connection(ConnectionId=connection_id))
        await loop.run_in_executor(None, lambda: management.delete_connection(ConnectionId=connection_id))
        try:
            await asyncio.wait_for(socket.recv(), 5)
        except Exception as exc:
            return described, type(exc).__name__
        return described, None

    described, closed = asyncio.run(run())

    assert described["Identity"]["SourceIp"] == "127.0.0.1"
    assert closed == "ConnectionClosedOK"


def test_management_api_unknown_connection_is_gone_exception(realtime: Realtime) -> None:
    management = clients.get_management_client(realtime.api.management_url)

    with pytest.raises(management.exceptions.GoneException):
        management.post_to_connection(ConnectionId="nobody0000000A=", Data=b"{}")


def test_stopping_with_disconnects_still_running_ends_their_handlers_inside_the_loop(
    realtime: Realtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = realtime.api
    invoke = api._invoke

    async def slow_disconnect(route: str, event: dict[str, Any]) -> Any:
        if route == DISCONNECT:
            await asyncio.sleep(30)
        return await invoke(route, event)

    monkeypatch.setattr(api, "_invoke", slow_disconnect)
    monkeypatch.setattr(api, "CLOSE_SECONDS", 0.5)

    async def run() -> None:
        sockets = await _open(api.websocket_url, [_token(f"user-{index}") for index in range(3)])
        await asyncio.gather(*(socket.close() for socket in sockets))

    asyncio.run(run())
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    api.shutdown()
    gc.collect()

    assert unraisable == []


def test_connect_one_token_opens_at_most_the_users_connection_limit(realtime: Realtime) -> None:
    # 300 connections opened with one token were all stored: each one more post per notification, for ever.
    token = _token("mallory", ["orders/shipped"])

    async def run() -> tuple[int, list[int]]:
        gate = asyncio.Semaphore(10)

        async def one() -> ClientConnection | int:
            async with gate:
                try:
                    return await connect(f"{realtime.api.websocket_url}?token={token}")
                except InvalidStatus as exc:
                    return exc.response.status_code

        opened = await asyncio.gather(*(one() for _ in range(3 * MAX_CONNECTIONS_PER_USER)))
        stored = len(clients.get_connection_store().of_user("mallory"))
        sockets = [socket for socket in opened if not isinstance(socket, int)]
        await asyncio.gather(*(socket.close() for socket in sockets))
        return stored, sorted({status for status in opened if isinstance(status, int)})

    stored, refusals = asyncio.run(run())

    assert 0 < stored <= MAX_CONNECTIONS_PER_USER
    assert refusals == [409]


def _counting_connects(realtime: Realtime, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the ``$connect`` invocations of the local API."""
    api, invoke, connects = realtime.api, realtime.api._invoke, []

    async def counted(route: str, event: dict[str, Any]) -> Any:
        if route == CONNECT:
            connects.append(event["requestContext"]["connectionId"])
        return await invoke(route, event)

    monkeypatch.setattr(api, "_invoke", counted)
    return connects


def test_connect_plain_http_get_with_a_token_is_426_and_runs_no_connect(
    realtime: Realtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # API Gateway runs $connect for WebSocket handshakes only; here a plain GET ran it, stored the connection, and no
    # $disconnect ever removed it.
    connects = _counting_connects(realtime, monkeypatch)
    url = realtime.api.websocket_url.replace("ws://", "http://") + f"?token={_token('alice', ['orders/shipped'])}"

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)

    assert refused.value.code == 426
    assert (connects, realtime.dynamodb.scan(TableName="notify-test-connections")["Count"]) == ([], 0)
    assert dict(realtime.api._opening) == {}


def test_connect_function_slower_than_the_librarys_open_timeout_still_opens_then_closes_cleanly(
    realtime: Realtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # API Gateway waits up to 29 s for $connect; the local server gave up the handshake after websockets' default 10 s
    # while the function ran on, stored the connection, and no $disconnect ever removed it.
    pool = realtime.api._pools["websocket"]
    invoke = pool.invoke

    def slow(event: Any, timeout: float | None = None) -> Any:
        if event["requestContext"]["routeKey"] == CONNECT:
            time.sleep(10.5)
        return invoke(event, timeout)

    monkeypatch.setattr(pool, "invoke", slow)

    async def run() -> int:
        socket = await connect(f"{realtime.api.websocket_url}?token={_token('alice')}", open_timeout=20)
        stored = _stored_items(realtime)
        await socket.close()
        # $disconnect removes the connection's items, then frees its seat: the second write may still be on its way.
        for _ in range(50):
            if _stored_items(realtime) == 0 and not _seats(realtime, "alice"):
                break
            await asyncio.sleep(0.1)
        return stored

    assert asyncio.run(run()) == 2  # the connection and its user's item, while it was open
    assert (_stored_items(realtime), _seats(realtime, "alice")) == (0, {})


def test_local_api_page_a_delivery_met_as_gone_before_its_disconnect_frees_its_seat(
    realtime: Realtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivery meets a closed page as gone (410) before its ``$disconnect`` runs (its invocation lags): the channel
    removed every item of the connection, so ``$disconnect`` found nothing and freed no seat. After 20 such pages
    their user, with none open, was refused (409) until the tokens expired."""
    api = realtime.api
    invoke = api._invoke
    delivered = threading.Event()
    disconnects_done: list[str] = []

    async def lagging_disconnect(route: str, event: dict[str, Any]) -> Any:
        if route == DISCONNECT:
            while not delivered.is_set():
                await asyncio.sleep(0.01)
        result = await invoke(route, event)
        if route == DISCONNECT:
            disconnects_done.append(event["requestContext"]["connectionId"])
        return result

    monkeypatch.setattr(api, "_invoke", lagging_disconnect)
    resources = clients.get_channels()["browser"]._resources
    assert isinstance(resources, BrowserResources)
    # The page opened more than OPENING_SECONDS before the notification: the channel's clock is 11 s ahead.
    channel = BrowserChannel(resources, clock=lambda: time.time() + 11)
    token = _token("zoe", ["orders/shipped"])

    async def one_cycle(index: int) -> str | None:
        delivered.clear()
        socket = await connect(f"{api.websocket_url}?token={token}")
        for _ in range(200):
            if api.open_connections():
                break
            await asyncio.sleep(0.01)
        await socket.close()  # the page goes away; API Gateway will run $disconnect, a little later
        for _ in range(200):
            if not api.open_connections():
                break
            await asyncio.sleep(0.01)
        realtime.record(f"n-{index}")
        note = await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: (
                channel.send(
                    Content(text="hi"), {"user_id": "zoe"}, None, notification_id=f"n-{index}", delivery_key="b"
                ).provider_message_id
            ),
        )
        delivered.set()
        for _ in range(500):  # $disconnect has run (and found nothing to free)
            if len(disconnects_done) >= index + 1:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        return note

    async def run() -> tuple[list[str | None], int | str]:
        notes = [await one_cycle(index) for index in range(MAX_CONNECTIONS_PER_USER)]
        # zoe has no open connection at all now; she opens one page.
        try:
            page = await connect(f"{api.websocket_url}?token={token}")
        except InvalidStatus as exc:
            return notes, exc.response.status_code
        await page.close()
        # Its $disconnect runs a moment later: the store is looked at once it has (a loaded run saw the page still
        # stored).
        for _ in range(1000):
            if len(disconnects_done) > MAX_CONNECTIONS_PER_USER:
                break
            await asyncio.sleep(0.01)
        return notes, 101

    notes, status = asyncio.run(run())

    assert set(notes) == {"0 connections, 1 gone"}  # each delivery met the closed page as gone and removed it
    assert clients.get_connection_store().of_user("zoe") == []
    leaked = _seats(realtime, "zoe")
    assert leaked == {}, f"{len(leaked)} seats still held by connections that are gone"
    assert status == 101, f"zoe, with no open connection, was refused with {status}"
