"""Real HTTP receivers on 127.0.0.1, in a thread, answering from a script: they play Slack, Telegram and webhooks.

A receiver records every request (method, path, headers, raw body) and answers with the next scripted ``Answer``, or
once the script is used up by its path's route or its default. An answer may wait before it is sent (a slow
endpoint) or reset the connection instead. ``running_receiver`` stops the server, and wakes any answer still
waiting, when it exits.

Before the script, a receiver can play a provider's own behaviour: ``limit`` answers 429 with ``Retry-After: 1`` to
requests to a path beyond a rate in any sliding second (as the local peers do), and ``outage`` answers 503 until a
deadline. Each request records the status it was answered with; ``accepted`` and ``throttled`` count them.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from infra.local.peers import RateWindow


@dataclass(frozen=True)
class Answer:
    """One scripted answer: status, body (JSON when not bytes), headers, a delay before it, or a reset instead."""

    status: int = 200
    body: Any = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reset: bool = False

    def encoded(self) -> tuple[bytes, str]:
        """Return the body bytes and their content type."""
        if isinstance(self.body, bytes):
            return self.body, "text/plain"
        return json.dumps(self.body).encode(), "application/json"


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it, the status it was answered with (0: reset) and when (monotonic clock)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    at: float = 0.0

    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return json.loads(self.body)


THROTTLED = Answer(429, {"message": "rate limit exceeded"}, headers={"Retry-After": "1"})
UNAVAILABLE = Answer(503, {"message": "service unavailable"})


class Receiver:
    """A scripted HTTP server on loopback at ``url``; ``max_in_flight`` is the most answers it held at once."""

    def __init__(self, default: Answer | None = None) -> None:
        self.default = default or Answer()
        self.requests: list[Received] = []
        self._script: deque[Answer] = deque()
        self._routes: dict[str, Answer] = {}
        self._limits: dict[str, float] = {}
        self._window = RateWindow()
        self._down_until: dict[str | None, float] = {}
        self._in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="receiver", daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL of the receiver, without a trailing slash."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *answers: Answer) -> None:
        """Answer the next requests with ``answers``, in order."""
        with self._lock:
            self._script.extend(answers)

    def route(self, path: str, answer: Answer) -> None:
        """Answer every request to ``path`` with ``answer`` once the script is used up."""
        with self._lock:
            self._routes[path] = answer

    def limit(self, path: str, per_second: float) -> None:
        """Answer requests to ``path`` beyond ``per_second`` in any sliding second 429 with ``Retry-After: 1``.

        Only the requests let through count towards the rate, as a provider counts what it accepts.
        """
        with self._lock:
            self._limits[path] = per_second

    def outage(self, seconds: float, path: str | None = None) -> None:
        """Answer 503 to requests to ``path`` (every path when ``None``) for the next ``seconds``."""
        with self._lock:
            self._down_until[path] = time.monotonic() + seconds

    @property
    def accepted(self) -> list[Received]:
        """Return the requests answered with a 2xx status, in the order they came."""
        with self._lock:
            return [request for request in self.requests if 200 <= request.status < 300]

    @property
    def throttled(self) -> int:
        """Return how many requests were answered 429."""
        with self._lock:
            return sum(1 for request in self.requests if request.status == 429)

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, wake waiting answers and close the socket."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _choose(self, path: str) -> Answer:
        """Return the answer to a request to ``path``: an outage, the rate limit, then the script, route, default."""
        now = time.monotonic()
        if any(now < self._down_until.get(key, 0.0) for key in (None, path)):
            return UNAVAILABLE
        per_second = self._limits.get(path)
        if per_second is not None and not self._window.admit(path, per_second):
            return THROTTLED
        if self._script:
            return self._script.popleft()
        return self._routes.get(path, self.default)

    def _next(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        with self._lock:
            answer = self._choose(path)
            status = 0 if answer.reset else answer.status
            self.requests.append(Received(method, path, headers, body, status, time.monotonic()))
            return answer

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes; Nagle would hold the body for the client's delayed ACK.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                answer = receiver._next("POST", self.path, dict(self.headers.items()), body)
                receiver._enter()
                try:
                    stopped = bool(answer.delay) and receiver._stopping.wait(answer.delay)
                finally:
                    receiver._leave()
                if stopped:
                    return
                if answer.reset:
                    # SO_LINGER with a zero timeout makes close() send a TCP reset instead of a clean shutdown.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                payload, content_type = answer.encoded()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                """Stay quiet; tests read ``requests`` instead."""

        return Handler


@contextmanager
def running_receiver(default: Answer | None = None) -> Iterator[Receiver]:
    """Run a receiver for the duration of the block."""
    receiver = Receiver(default)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
