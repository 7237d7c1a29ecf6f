"""Integration tests of core/outbound.py: the guard with the system's own resolver, and what a send logs."""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Iterator

import pytest

from core.errors import BlockedTargetError
from core.outbound import OutboundSession, check_url

SECRET_PATH = "/bot123456:telegram-secret-8c1d/sendMessage"


@pytest.fixture
def malformed_headers() -> Iterator[str]:
    """A loopback server answering every request with a header line that is no header; return its base URL."""
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
                connection.sendall(
                    b"HTTP/1.1 500 Internal Server Error\r\nthis line is no header\r\nContent-Length: 2\r\n\r\nno"
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone would not)
    server.close()
    thread.join(5)


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
