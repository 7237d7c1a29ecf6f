"""Integration tests of what every HTTP channel shares (core/channels/base.py ``post``) against loopback servers:
an answer's body is read only so far, and only so long."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from core.channels.base import post
from core.outbound import MAX_ANSWER_BYTES, OutboundSession
from tests.support.receivers import Answer, Receiver


def _session(read_timeout: float = 0.5) -> OutboundSession:
    return OutboundSession(connect_timeout=0.5, read_timeout=read_timeout, allow_private=True)


def test_post_answer_body_over_the_limit_is_read_only_to_it(receiver: Receiver) -> None:
    receiver.script(Answer(200, b"x" * (8 * 2**20)), Answer(200, b"next"))
    session = _session()

    response = post(session, f"{receiver.url}/hook", "webhook", json={})

    assert (response.status_code, len(response.content)) == (200, MAX_ANSWER_BYTES)
    # The rest went with its connection: the next request is answered with its own answer, not the old body.
    assert post(session, f"{receiver.url}/hook", "webhook", json={}).content == b"next"


def test_post_short_answer_body_is_read_whole_and_its_connection_kept(receiver: Receiver) -> None:
    receiver.script(Answer(200, {"ok": True}), Answer(200, b"again"))
    session = _session()

    first = post(session, f"{receiver.url}/hook", "webhook", json={})
    second = post(session, f"{receiver.url}/hook", "webhook", json={})

    assert (first.json(), second.content) == ({"ok": True}, b"again")


def test_post_same_host_redirect_body_over_the_limit_is_read_only_to_it(receiver: Receiver) -> None:
    receiver.script(Answer(307, b"x" * (8 * 2**20), headers={"Location": "/moved"}), Answer(200, b"ok"))

    response = post(_session(), f"{receiver.url}/hook", "webhook", json={})

    [redirect] = response.history
    assert (response.content, len(redirect.content)) == (b"ok", MAX_ANSWER_BYTES)


@pytest.fixture
def dripping() -> Iterator[Callable[[], str]]:
    """A server answering 200 with a body of 1,000 bytes sent one every 50 ms (50 s in all); yields its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\n")
                for _ in range(1000):
                    if stop.is_set():
                        return
                    try:
                        connection.sendall(b"x")
                    except OSError:
                        break
                    time.sleep(0.05)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield lambda: f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_post_dripping_answer_body_is_given_up_at_the_read_timeout(dripping: Callable[[], str]) -> None:
    response = post(_session(read_timeout=0.5), dripping(), "webhook", json={})

    # Each byte comes well within the read timeout, so only the deadline on the whole body stops the reading: read
    # whole, the body would have taken 50 s and held all 1,000 bytes.
    assert response.status_code == 200
    assert 0 < len(response.content) < 1000
