"""Integration tests of core/outbound.py: the guard with the system's own resolver, and what a send logs."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from core.errors import BlockedTargetError
from core.outbound import OutboundSession, check_url, send_deadline, send_seconds

SECRET_PATH = "/bot123456:telegram-secret-8c1d/sendMessage"


@contextlib.contextmanager
def _answering(answer: bytes) -> Iterator[str]:
    """A loopback server answering every request with ``answer`` (raw bytes); yield its base URL."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                request = b""
                while b"\r\n\r\n" not in request and (chunk := connection.recv(65536)):
                    request += chunk
                head, _, body = request.partition(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                while len(body) < length and (chunk := connection.recv(65536)):
                    body += chunk  # read whole: closed with a request unread, the socket would reset the answer
                connection.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone would not)
        server.close()
        thread.join(5)


@pytest.fixture
def malformed_headers() -> Iterator[str]:
    """A loopback server answering every request with a header line that is no header; return its base URL."""
    with _answering(
        b"HTTP/1.1 500 Internal Server Error\r\nthis line is no header\r\nContent-Length: 2\r\n\r\nno"
    ) as url:
        yield url


@pytest.mark.parametrize(
    "headers",
    [
        b"".join(b"X-Trace-%d: v\r\n" % index for index in range(101)),  # a gateway adding many headers
        b"Set-Cookie: " + b"a" * 70_000 + b"\r\n",  # one header line over 64 KiB
    ],
    ids=["101-headers", "a-70k-header-line"],
)
def test_send_answer_whose_headers_http_client_refuses_keeps_its_status(headers: bytes) -> None:
    """The receiver took the request and answered 200, with headers http.client will not parse: the send was taken
    for a failed connection, and a delivery sent again until it was dead."""
    session = OutboundSession(connect_timeout=1, read_timeout=1, allow_private=True)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + headers + b"\r\n"
    with _answering(answer) as url, send_deadline(time.monotonic() + 5):
        response = session.post(url + "/hook", json={"text": "hi"})

    assert response.status_code == 200


def test_check_url_decimal_loopback_is_refused_by_resolution() -> None:
    # "2130706433" is 127.0.0.1 written as one number: only resolving the name (getaddrinfo) shows it.
    with pytest.raises(BlockedTargetError):
        check_url("http://2130706433/", False)


def test_send_logs_no_part_of_its_url_at_any_level(malformed_headers: str, caplog: pytest.LogCaptureFixture) -> None:
    # urllib3 logs the URL, path and all, at DEBUG for every request and at WARNING for headers it cannot parse: a
    # Slack webhook's path and a Telegram bot token are secrets.
    caplog.set_level(logging.DEBUG)
    session = OutboundSession(connect_timeout=1, read_timeout=1, allow_private=True)

    response = session.post(malformed_headers + SECRET_PATH, json={"text": "hi"})

    assert response.status_code == 500
    assert "telegram-secret" not in caplog.text


@contextlib.contextmanager
def _silent_addresses(count: int) -> Iterator[tuple[list[str], int]]:
    """Yield ``count`` loopback addresses (127.0.0.20 …) and one port on which none answers a connect: each listener's
    backlog is full and nothing accepts, so Linux drops further SYNs, as a public address that drops packets does."""
    opened: list[socket.socket] = []
    addresses = [f"127.0.0.{20 + index}" for index in range(count)]
    port = 0
    try:
        for address in addresses:
            listener = socket.socket()
            listener.bind((address, port))
            port = listener.getsockname()[1]
            listener.listen(0)
            opened.append(listener)
            for _ in range(3):  # fill the accept queue; later SYNs are dropped
                filler = socket.socket()
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect((address, port))
                opened.append(filler)
        yield addresses, port
    finally:
        for sock in opened:
            sock.close()


def _resolving(monkeypatch: pytest.MonkeyPatch, host: str, addresses: list[str]) -> None:
    """Have ``socket.getaddrinfo`` answer ``addresses`` for ``host``, as a DNS answer of that many A records would."""
    real = socket.getaddrinfo

    def answer(name: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if name == host:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port))) for address in addresses]
        return real(name, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", answer)


def test_send_to_a_name_of_many_silent_addresses_ends_within_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib3 waits the whole connect timeout at each address of a name: eight that drop SYNs held a 1 s send 4 s
    (in Lambda, ten addresses held it past the function's own timeout, and the whole batch came back)."""
    session = OutboundSession(connect_timeout=0.5, read_timeout=0.5, allow_private=True)
    with _silent_addresses(8) as (addresses, port):
        _resolving(monkeypatch, "hooks.example.test", addresses)
        started = time.monotonic()
        with send_deadline(session.timeout), pytest.raises(requests.Timeout):
            session.post(f"http://hooks.example.test:{port}/hook", data=b"{}", timeout=session.timeout)
        took = time.monotonic() - started

    assert took < send_seconds(session.timeout) + 1.0


def test_send_to_a_name_whose_first_address_is_silent_connects_to_the_next_in_its_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accepting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with _silent_addresses(1) as (silent, _):
            port = server.server_address[1]
            _resolving(monkeypatch, "hooks.example.test", [*silent, "127.0.0.1"])
            session = OutboundSession(connect_timeout=0.4, read_timeout=1.0, allow_private=True)
            with send_deadline(session.timeout):
                answer = session.post(f"http://hooks.example.test:{port}/hook", data=b"{}", timeout=session.timeout)
    finally:
        server.shutdown()
        server.server_close()

    assert answer.status_code == 204


class _Accepting(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""
