"""Local peers: one receiver that answers as a Slack incoming webhook, the Telegram Bot API and a webhook endpoint.

Paths: ``/slack/<name>``, ``/telegram/bot<token>/<method>`` (``TELEGRAM_API_BASE`` is ``…/telegram``),
``/webhook/<name>``. Query parameters script the answers of one URL:
- ``?status=500,200`` answers 500 to the first request and 200 from then on, ``?status=500`` answers 500 forever;
- ``?rate=2`` accepts at most 2 requests in any one second and answers the others 429 with ``Retry-After: 1``, as a
  rate-limited provider does (``?rate=0.5``: one request every two seconds);
- ``?down=150`` answers 503 for 150 seconds from the first request to it (an outage), then as usual;
- faults, each a share of the requests (one random draw per request picks at most one, in this order):
  ``?fail=0.2`` answers 500; ``?throttle=0.1`` answers 429 with ``Retry-After: 1`` (``&retry_after=5`` for another
  delay); ``?slow=0.05`` takes the request in and answers 200 only after 12 seconds (``&slow_seconds=…``), later than
  the consumer's HTTP read timeout (``HTTP_READ_TIMEOUT``, 10 s); ``?reset=0.05`` takes the request in and resets the
  connection instead of answering. A slow or reset request was received, but its sender cannot know it: the record
  says ``"fault": "slow"`` or ``"reset"`` with the status the receiver meant (200), so a drill can tell the
  duplicates that follow from such attempts. ``&seed=7`` draws from a generator of the URL's own, seeded, so that the
  same requests to a fresh URL meet the same faults.
``GET /_records`` lists what came in, oldest first (``?after=<id>``: only the records after that id; the receiver
keeps the last 1000): beside the parsed ``body``, each record keeps the body exactly as received, ``raw_body_base64``
(always) and ``raw_body`` (the same bytes as text when they are valid UTF-8, else ``null``), so a webhook signature can
be checked against the bytes that were signed; ``fault`` names the scripted fault, if any.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import random
import re
import socket
import struct
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_TELEGRAM = re.compile(r"^/telegram/bot(?P<token>[^/]+)/(?P<method>\w+)$")
_DROPPED_HEADERS = ("host", "content-length", "connection", "accept-encoding", "accept")
_MAX_RECORDS = 1000
# Later than the consumer's HTTP read timeout (HTTP_READ_TIMEOUT, 10 s by default), so the sender gives up first.
SLOW_SECONDS = 12.0
FAULTS = ("fail", "throttle", "slow", "reset")


def scripted_status(query: str, count: int) -> int | None:
    """Return the status the ``status`` query parameter scripts for the ``count``-th request (0-based), if any."""
    values = parse_qs(query).get("status")
    if not values:
        return None
    steps = [int(step) for step in values[0].split(",") if re.fullmatch(r"[0-9]{1,3}", step.strip())]
    if not steps:
        return None
    return steps[min(count, len(steps) - 1)]


def _number(query: str, name: str) -> float | None:
    values = parse_qs(query).get(name)
    try:
        value = float(values[0]) if values else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and value > 0 else None


class RateWindow:
    """Admits at most ``rate`` requests per key in any sliding window of one second (one per ``1/rate`` below 1)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._admitted: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def admit(self, key: str, rate: float) -> bool:
        """Count a request to ``key``; return ``False`` when it is one too many for ``rate``."""
        window = max(1.0, 1.0 / rate)
        capacity = max(1, math.floor(rate * window))
        now = self._clock()
        with self._lock:
            admitted = self._admitted[key]
            while admitted and admitted[0] <= now - window:
                admitted.popleft()
            if len(admitted) >= capacity:
                return False
            admitted.append(now)
            return True


def scripted_outage(query: str, first_seen: float, now: float) -> bool:
    """Return whether the ``down`` query parameter says the URL is still down (seconds since its first request)."""
    down = _number(query, "down")
    return down is not None and now - first_seen < down


@dataclass(frozen=True)
class Fault:
    """A scripted fault of one request: ``kind`` is one of ``FAULTS``.

    ``status`` is what the receiver answers (``fail``, ``throttle``) or means to answer (``slow`` after ``delay``
    seconds, ``reset`` never).
    """

    kind: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def scripted_fault(query: str, draw: float) -> Fault | None:
    """Return the fault the ``fail``/``throttle``/``slow``/``reset`` shares script for a request drawn ``draw``.

    ``draw`` is uniform in [0, 1); the shares are stacked in the order of ``FAULTS``, so ``?fail=0.2&reset=0.1``
    fails the draws below 0.2 and resets those from 0.2 to 0.3.
    """
    edge = 0.0
    for kind in FAULTS:
        share = _number(query, kind)
        if share is None:
            continue
        edge += share
        if draw < edge:
            return _fault(kind, query)
    return None


def _fault(kind: str, query: str) -> Fault:
    if kind == "fail":
        return Fault(kind, 500)
    if kind == "throttle":
        retry_after = _number(query, "retry_after") or 1.0
        return Fault(kind, 429, {"Retry-After": f"{math.ceil(retry_after)}"})
    if kind == "slow":
        return Fault(kind, delay=_number(query, "slow_seconds") or SLOW_SECONDS)
    return Fault(kind)


class Records:
    """What the receiver got, in order, shared with the local page."""

    def __init__(self) -> None:
        self._items: list[dict[str, Any]] = []
        self._counts: dict[str, int] = defaultdict(int)
        self._first: dict[str, float] = {}
        self._generators: dict[str, random.Random] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.rates = RateWindow()

    def next_count(self, url: str) -> int:
        """Count one more request to ``url``; return how many came before it."""
        with self._lock:
            count = self._counts[url]
            self._counts[url] += 1
            self._first.setdefault(url, time.monotonic())
            return count

    def draw(self, url: str, seed: str | None, fallback: Callable[[], float]) -> float:
        """Return the next draw for a request to ``url``: from its generator seeded with ``seed``, else ``fallback``."""
        if seed is None:
            return fallback()
        with self._lock:
            generator = self._generators.setdefault(url, random.Random(seed))  # noqa: S311 - faults, not secrets
            return generator.random()

    def first_seen(self, url: str) -> float:
        """Return when the first request to ``url`` came (monotonic clock)."""
        with self._lock:
            return self._first.get(url, time.monotonic())

    def add(self, record: dict[str, Any]) -> None:
        """Keep one request."""
        with self._lock:
            self._items.append({"id": next(self._ids), **record})
            del self._items[:-_MAX_RECORDS]

    def all(self, after: int = 0) -> list[dict[str, Any]]:
        """Return every request kept with an id above ``after``, oldest first."""
        with self._lock:
            return [item for item in self._items if item["id"] > after]


def _parse(body: bytes, content_type: str) -> Any:
    text = body.decode("utf-8", "replace")
    if "json" in content_type or text[:1] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            return text
    if "x-www-form-urlencoded" in content_type:
        return {key: values[-1] for key, values in parse_qs(text).items()}
    return text


def raw_body_fields(body: bytes) -> dict[str, str | None]:
    """Return the body as received: base64 always, and the text too when the bytes are valid UTF-8."""
    try:
        text: str | None = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"raw_body": text, "raw_body_base64": base64.b64encode(body).decode("ascii")}


def _summary(channel: str, payload: Any) -> str:
    if channel in {"slack", "telegram"} and isinstance(payload, dict):
        return str(payload.get("text") or json.dumps(payload))
    return payload if isinstance(payload, str) else json.dumps(payload)


class ReceiverServer(ThreadingHTTPServer):
    """The receiver's HTTP server."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        records: Records,
        draw: Callable[[], float] = random.random,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.records = records
        self.telegram_ids = itertools.count(1)
        self.draw = draw  # uniform in [0, 1): picks the scripted faults
        self.sleep = sleep
        super().__init__(address, _ReceiverHandler)


class _ReceiverHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ReceiverServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle waits for the sender's delayed ACK (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _answer(
        self, status: int, body: Any, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        """List the records (``/_records``, ``?after=<id>`` for the newer ones only)."""
        split = urlsplit(self.path)
        if split.path == "/_records":
            after = (parse_qs(split.query).get("after") or ["0"])[0]
            self._answer(
                200, {"records": self.server.records.all(int(after) if re.fullmatch(r"[0-9]{1,18}", after) else 0)}
            )
        else:
            self._answer(404, {"message": "not a receiver path"})

    def do_POST(self) -> None:
        """Receive a Slack, Telegram or webhook request."""
        split = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = self.headers.get("Content-Type", "")
        payload = _parse(body, content_type)
        telegram = _TELEGRAM.match(split.path)
        if split.path.startswith("/slack/"):
            channel, target = "slack", split.path[len("/slack/") :]
        elif telegram:
            channel, target = "telegram", f"chat {payload.get('chat_id') if isinstance(payload, dict) else '?'}"
        elif split.path.startswith("/webhook/"):
            channel, target = "webhook", split.path[len("/webhook/") :]
        else:
            self._answer(404, {"message": "use /slack/…, /telegram/bot<token>/…, or /webhook/…"})
            return
        url = split.path + ("?" + split.query if split.query else "") if not telegram else split.path
        count = self.server.records.next_count(url)
        status = scripted_status(split.query, count) or 200
        extra: dict[str, str] = {}
        fault: Fault | None = None
        if scripted_outage(split.query, self.server.records.first_seen(url), time.monotonic()):
            status = 503
        else:
            rate = _number(split.query, "rate")
            if rate is not None and status < 400 and not self.server.records.rates.admit(url, rate):
                status, extra = 429, {"Retry-After": "1"}
            if status < 400:
                seeds = parse_qs(split.query).get("seed")
                draw = self.server.records.draw(url, seeds[0] if seeds else None, self.server.draw)
                fault = scripted_fault(split.query, draw)
            if fault is not None and fault.kind in {"fail", "throttle"}:
                status, extra = fault.status, fault.headers
        headers = {name: value for name, value in self.headers.items() if name.lower() not in _DROPPED_HEADERS}
        self.server.records.add(
            {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "channel": channel,
                "target": target,
                "path": split.path if not telegram else f"/telegram/bot…/{telegram.group('method')}",
                "query": split.query,
                "status": status,
                "headers": headers,
                "body": payload,
                **raw_body_fields(body),
                "text": _summary(channel, payload),
                "fault": fault.kind if fault is not None else None,
            }
        )
        if fault is not None and fault.kind == "reset":
            self._reset()
            return
        if fault is not None and fault.kind == "slow":
            self.server.sleep(fault.delay)
        try:
            self._reply(channel, status, payload, extra, telegram.group("method") if telegram else "")
        except OSError:
            # The sender of a slow answer has given up and closed the connection.
            self.close_connection = True

    def _reset(self) -> None:
        """Drop the connection without an answer: a zero linger makes the close a TCP reset."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _reply(self, channel: str, status: int, payload: Any, extra: dict[str, str], method: str) -> None:
        if channel == "slack":
            self._answer(status, "ok" if status < 400 else "error", "text/plain", extra)
        elif channel == "telegram":
            self._telegram(status, method, payload, extra)
        else:
            self._answer(status, {"received": status < 400}, headers=extra)

    def _telegram(self, status: int, method: str, payload: Any, headers: dict[str, str]) -> None:
        if status == 429:
            body = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1"}
            self._answer(429, {**body, "parameters": {"retry_after": 1}}, headers=headers)
            return
        if status >= 400:
            self._answer(status, {"ok": False, "error_code": status, "description": "scripted failure"})
            return
        if method != "sendMessage" or not isinstance(payload, dict) or "chat_id" not in payload:
            self._answer(400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})
            return
        chat_id = payload["chat_id"]
        result = {
            "message_id": next(self.server.telegram_ids),
            "date": int(datetime.now(UTC).timestamp()),
            "chat": {"id": int(chat_id) if str(chat_id).lstrip("-").isdigit() else chat_id, "type": "private"},
            "text": payload.get("text", ""),
        }
        self._answer(200, {"ok": True, "result": result})

    def log_message(self, format: str, *args: Any) -> None:
        """The page and ``/_records`` show what came in."""
