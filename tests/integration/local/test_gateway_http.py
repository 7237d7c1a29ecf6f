"""The local API Gateway's HTTP front: malformed or chunked request framing gets an answer, never a dropped socket."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local.gateway import GatewayServer


class _EchoGateway:
    """Stands for Gateway: answers 200 with the body it was handed."""

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes, source_ip: str) -> Any:
        return 200, {"Content-Type": ["application/octet-stream"]}, b"got:" + body


@pytest.fixture
def gateway_address() -> Iterator[tuple[str, int]]:
    server = GatewayServer(("127.0.0.1", 0), _EchoGateway())  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _exchange(address: tuple[str, int], raw: bytes) -> bytes:
    with socket.create_connection(address, timeout=5) as conn:
        conn.sendall(raw)
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize(
    ("framing", "status", "message"),
    [
        # A traceback in make run's terminal and the connection dropped with no answer.
        (b"Content-Length: abc", b"400", b"Content-Length: is not a number"),
        (b"Content-Length: \xb2", b"400", b"Content-Length: is not a number"),  # "²" to latin-1: isdigit(), not int()
        # A MemoryError (or a thread waiting for 2 GB that never come), no answer.
        (b"Content-Length: 99999999999", b"413", b"Request Too Long"),
        (b"Transfer-Encoding: chunked\r\n\r\nzz", b"400", b"is not a hexadecimal number"),
        (b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % (11 * 2**20), b"413", b"Request Too Long"),
    ],
)
def test_broken_or_oversized_framing_is_refused_with_a_message_and_the_connection_closed(
    gateway_address: tuple[str, int], framing: bytes, status: bytes, message: bytes
) -> None:
    answer = _exchange(gateway_address, b"POST /v1/x HTTP/1.1\r\nHost: h\r\n" + framing + b"\r\n\r\n{}")

    assert answer.startswith(b"HTTP/1.1 " + status), answer
    assert message in answer
    assert b"Connection: close" in answer


def test_a_chunked_body_reaches_the_function_and_the_connection_stays_in_step(
    gateway_address: tuple[str, int],
) -> None:
    body = b'{"metadata": {}}'
    raw = (
        b"POST /v1/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
        + b"GET /v1/y HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    answer = _exchange(gateway_address, raw)

    assert answer.count(b"HTTP/1.1 200") == 2, answer
    assert b"got:" + body in answer, answer


@pytest.mark.parametrize("method", [b"TRACE", b"CONNECT", b"BREW"])
def test_a_method_no_route_has_is_the_gateways_to_answer_not_a_501_page(
    gateway_address: tuple[str, int], method: bytes
) -> None:
    answer = _exchange(gateway_address, method + b" /v1/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 200"), answer  # the stand-in gateway answers every request it is handed
    assert b"got:" in answer
