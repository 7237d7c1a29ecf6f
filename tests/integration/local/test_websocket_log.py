"""The local WebSocket API's log lines, against its server on loopback: control characters of a request's path (an
escape sequence, a bell, a NUL) never reach the terminal as they came."""

from __future__ import annotations

import socket

from infra.local.websocket import WebsocketApi
from tests.unit.infra.local.test_websocket import _service


def test_websocket_handshake_log_line_of_a_path_with_control_characters_shows_them_escaped() -> None:
    lines: list[str] = []
    api = WebsocketApi(_service(), {}, lines.append)
    api.start()
    try:
        port = int(api.websocket_origin.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(
                b"GET /x\x1b[2J\x1b]0;owned\x07\x00y HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            answer = conn.recv(4096)
    finally:
        api.shutdown()

    assert answer.startswith(b"HTTP/1.1 403"), answer
    assert [line for line in lines if line.startswith("WS handshake")] == [
        "WS handshake /x\\x1b[2J\\x1b]0;owned\\x07\\x00y → 403: connect to /local"
    ]
