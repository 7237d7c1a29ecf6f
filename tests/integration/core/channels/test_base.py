"""Integration tests of what every HTTP channel shares (core/channels/base.py ``post``) against loopback servers:
an answer's body is read only so far, and only so long; a whole send, redirects and all, ends by one deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from core.channels.base import post
from core.errors import RetryableDeliveryError
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


# --- one deadline for the whole send: connect plus read timeout (0.5 + 0.5 s here) ---------------------------------

SEND_BUDGET = 1.0  # _session(): connect 0.5 s + read 0.5 s; consumer/handler.py latest_start reserves the same sum
# A send cut at its deadline ends within this much after it (thread scheduling on a loaded machine).
LATE_BY_AT_MOST = 0.5


class Trickle:
    """A loopback HTTP server that answers each request on a connection with the next of ``answers``, sent ``piece``
    bytes at a time, ``pause`` seconds apart: each pause well within a read timeout, the whole answer not."""

    def __init__(self, answers: list[bytes], piece: int, pause: float) -> None:
        self.paths: list[str] = []
        self._answers = answers
        self._piece = piece
        self._pause = pause
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    @property
    def url(self) -> str:
        """Base URL of the server, without a trailing slash."""
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> None:
        """Accept connections in a background thread."""
        self._threads[0].start()

    def stop(self) -> None:
        """Stop answering, wait for every thread and close the listener."""
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        connection.settimeout(0.1)
        with connection:
            received = b""
            while not self._stop.is_set():
                request, received = self._request(connection, received)
                if request is None:
                    return
                answer = self._answers[min(len(self.paths), len(self._answers) - 1)]
                self.paths.append(request)
                for start in range(0, len(answer), self._piece):
                    if self._stop.wait(self._pause):
                        return
                    try:
                        connection.sendall(answer[start : start + self._piece])
                    except OSError:  # the client gave up and closed
                        return

    def _request(self, connection: socket.socket, received: bytes) -> tuple[str | None, bytes]:
        """Read one request (headers and Content-Length body); return its path and what came after it."""
        while b"\r\n\r\n" not in received or len(received) < self._end(received):
            if self._stop.is_set():
                return None, b""
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return None, b""
            if not chunk:
                return None, b""
            received += chunk
        end = self._end(received)
        return received.split(b" ", 2)[1].decode(), received[end:]

    @staticmethod
    def _end(received: bytes) -> int:
        head, _, _ = received.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        return len(head) + 4 + length


@pytest.fixture
def trickle() -> Iterator[Callable[[list[bytes], int, float], Trickle]]:
    """Start ``Trickle`` servers; every one is stopped when the test ends."""
    servers: list[Trickle] = []

    def start(answers: list[bytes], piece: int, pause: float) -> Trickle:
        server = Trickle(answers, piece, pause)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


OK_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def _times_out_at_the_deadline(server: Trickle) -> None:
    """Post to the server; the send fails as a timeout (retried, its outcome unknown), at the send's deadline."""
    started = time.monotonic()

    with pytest.raises(RetryableDeliveryError) as raised:
        post(_session(), f"{server.url}/hook", "webhook", json={})

    took = time.monotonic() - started
    assert raised.value.reason == "webhook: timed out"
    assert SEND_BUDGET <= took < SEND_BUDGET + LATE_BY_AT_MOST


def test_post_status_line_and_headers_dripping_past_the_deadline_is_a_retryable_timeout(
    trickle: Callable[[list[bytes], int, float], Trickle],
) -> None:
    # One byte every 0.1 s: every read is well within the 0.5 s read timeout, the whole head takes 6 s.
    server = trickle([OK_ANSWER], 1, 0.1)

    _times_out_at_the_deadline(server)


def test_post_same_host_redirects_share_one_deadline(trickle: Callable[[list[bytes], int, float], Trickle]) -> None:
    # Each hop's answer comes in 0.4 s (four pieces, 0.1 s apart): any one hop is well within the budget, the three
    # redirects and the last answer together (1.6 s) are not.
    redirects = [
        f"HTTP/1.1 307 Temporary Redirect\r\nLocation: /hop{hop}\r\nContent-Length: 0\r\n\r\n".encode()
        for hop in (1, 2, 3)
    ]
    answers = [*redirects, OK_ANSWER]
    server = trickle(answers, -(-max(len(answer) for answer in answers) // 4), 0.1)

    _times_out_at_the_deadline(server)

    assert server.paths[:2] == ["/hook", "/hop1"]  # the first hops were followed: the deadline cut a later one
