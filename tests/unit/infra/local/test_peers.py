"""Unit tests of the local receiver (infra/local/peers.py): scripted rate limit, outage and faults, records' raw
bodies, records after an id."""

from __future__ import annotations

import base64
import io
import itertools
import json
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from core.channels.webhook import signature_v2
from core.roles.shared import OutboundSettings
from infra.local.peers import (
    SLOW_SECONDS,
    Fault,
    RateWindow,
    Records,
    _ReceiverHandler,
    raw_body_fields,
    scripted_fault,
    scripted_outage,
)

SECRET = "receiver-test-signing-secret"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_window_admits_rate_requests_in_one_second_then_refuses() -> None:
    window = RateWindow(Clock())

    answers = [window.admit("/webhook/a", 2) for _ in range(3)]

    assert answers == [True, True, False]


def test_rate_window_admits_again_once_the_first_leaves_the_window() -> None:
    clock = Clock()
    window = RateWindow(clock)
    window.admit("/webhook/a", 2)
    clock.now += 0.5
    window.admit("/webhook/a", 2)

    clock.now += 0.5
    first_left = window.admit("/webhook/a", 2)
    refused = window.admit("/webhook/a", 2)

    assert (first_left, refused) == (True, False)


def test_rate_window_paced_one_step_apart_is_never_refused() -> None:
    clock = Clock()
    window = RateWindow(clock)

    answers = []
    for _ in range(20):
        answers.append(window.admit("/webhook/a", 5))
        clock.now += 0.2

    assert all(answers)


def test_rate_window_below_one_per_second_spaces_by_its_interval() -> None:
    clock = Clock()
    window = RateWindow(clock)
    window.admit("/webhook/a", 0.5)
    clock.now += 1.5

    early = window.admit("/webhook/a", 0.5)
    clock.now += 0.5
    on_time = window.admit("/webhook/a", 0.5)

    assert (early, on_time) == (False, True)


def test_rate_window_keys_are_independent() -> None:
    window = RateWindow(Clock())
    window.admit("/webhook/a", 1)

    assert window.admit("/webhook/b", 1) is True


@pytest.mark.parametrize(
    ("query", "elapsed", "down"),
    [("down=150", 0.0, True), ("down=150", 149.9, True), ("down=150", 150.0, False), ("", 0.0, False)],
)
def test_scripted_outage_is_down_for_its_seconds_from_the_first_request(query: str, elapsed: float, down: bool) -> None:
    assert scripted_outage(query, 1000.0, 1000.0 + elapsed) is down


@pytest.mark.parametrize("query", ["down=abc", "down=-5", "down=nan", "down=inf"])
def test_scripted_outage_ignores_values_that_are_not_positive_numbers(query: str) -> None:
    assert scripted_outage(query, 1000.0, 1000.0) is False


@pytest.mark.parametrize(
    ("query", "draw", "kind"),
    [
        ("fail=0.2", 0.19, "fail"),
        ("fail=0.2", 0.2, None),
        ("throttle=0.1", 0.05, "throttle"),
        ("slow=0.05", 0.04, "slow"),
        ("reset=0.05", 0.01, "reset"),
        ("", 0.0, None),
    ],
)
def test_scripted_fault_draw_below_the_share_picks_the_fault(query: str, draw: float, kind: str | None) -> None:
    fault = scripted_fault(query, draw)

    assert (fault.kind if fault else None) == kind


@pytest.mark.parametrize(("draw", "kind"), [(0.1, "fail"), (0.25, "throttle"), (0.32, "slow"), (0.37, "reset")])
def test_scripted_fault_shares_stack_in_the_order_fail_throttle_slow_reset(draw: float, kind: str) -> None:
    fault = scripted_fault("reset=0.05&slow=0.05&throttle=0.1&fail=0.2", draw)

    assert fault is not None
    assert fault.kind == kind


def test_scripted_fault_draws_past_the_stacked_shares_pick_none() -> None:
    assert scripted_fault("fail=0.2&throttle=0.1&slow=0.05&reset=0.05", 0.4) is None


@pytest.mark.parametrize("query", ["fail=abc", "fail=-0.5", "fail=nan", "fail=0"])
def test_scripted_fault_ignores_shares_that_are_not_positive_numbers(query: str) -> None:
    assert scripted_fault(query, 0.0) is None


def test_scripted_fault_fail_answers_500() -> None:
    assert scripted_fault("fail=1", 0.5) == Fault("fail", 500)


@pytest.mark.parametrize(("query", "retry_after"), [("throttle=1", "1"), ("throttle=1&retry_after=5", "5")])
def test_scripted_fault_throttle_answers_429_with_retry_after(query: str, retry_after: str) -> None:
    assert scripted_fault(query, 0.5) == Fault("throttle", 429, {"Retry-After": retry_after})


def test_scripted_fault_slow_answers_200_after_the_consumers_read_timeout() -> None:
    fault = scripted_fault("slow=1", 0.5)

    assert fault is not None
    assert (fault.status, fault.delay) == (200, SLOW_SECONDS)
    assert fault.delay > OutboundSettings.model_fields["http_read_timeout"].default


def test_scripted_fault_slow_seconds_sets_the_delay() -> None:
    assert scripted_fault("slow=1&slow_seconds=3", 0.5) == Fault("slow", 200, delay=3.0)


def test_records_all_after_an_id_lists_the_newer_ones_only() -> None:
    records = Records()
    for index in range(4):
        records.add({"n": index})

    newer = records.all(after=2)

    assert [(item["id"], item["n"]) for item in newer] == [(3, 2), (4, 3)]


def test_records_draw_with_a_seed_repeats_its_sequence_on_a_fresh_url() -> None:
    records = Records()

    first = [records.draw("/webhook/a?seed=7", "7", lambda: 0.0) for _ in range(5)]
    again = [records.draw("/webhook/b?seed=7", "7", lambda: 0.0) for _ in range(5)]

    assert first == again
    assert len(set(first)) == 5


def test_records_draw_without_a_seed_takes_the_fallback() -> None:
    assert Records().draw("/webhook/a", None, lambda: 0.25) == 0.25


@dataclass
class FakeConnection:
    """A connection the receiver's handler reads one request from and writes its answer to, with no socket."""

    request: bytes
    sent: bytes = b""
    options: dict[tuple[int, int], Any] = field(default_factory=dict)
    closed: bool = False

    def makefile(self, mode: str, *_args: Any) -> io.BytesIO:
        return io.BytesIO(self.request)

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def setsockopt(self, level: int, name: int, value: Any) -> None:
        self.options[level, name] = value

    def close(self) -> None:
        self.closed = True


@dataclass
class Exchange:
    """One request the receiver handled: the record it kept, the connection, and the sleeps it took."""

    record: dict[str, Any]
    connection: FakeConnection
    sleeps: list[float]


def exchange(
    path: str, body: bytes = b"{}", headers: dict[str, str] | None = None, draw: Callable[[], float] = lambda: 0.5
) -> Exchange:
    """Have the receiver handle one POST; return what it kept and what it did to the connection."""
    lines = [f"POST {path} HTTP/1.1", "Host: receiver", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {"Content-Type": "application/json"}).items()]
    records = Records()
    sleeps: list[float] = []
    server = SimpleNamespace(records=records, telegram_ids=itertools.count(1), draw=draw, sleep=sleeps.append)
    connection = FakeConnection(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    _ReceiverHandler(connection, ("127.0.0.1", 50000), server)  # type: ignore[arg-type]
    [record] = records.all()
    return Exchange(record, connection, sleeps)


def receive(path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """Have the receiver handle one POST it accepts; return the record it kept."""
    done = exchange(path, body, headers)
    assert done.connection.sent.startswith(b"HTTP/1.1 200"), done.connection.sent[:200]
    return done.record


def test_receiver_records_route_after_an_id_lists_the_newer_ones_only() -> None:
    records = Records()
    for index in range(3):
        records.add({"n": index})
    server = SimpleNamespace(records=records)
    connection = FakeConnection(b"GET /_records?after=2 HTTP/1.1\r\nHost: receiver\r\n\r\n")

    _ReceiverHandler(connection, ("127.0.0.1", 50000), server)  # type: ignore[arg-type]
    body = json.loads(connection.sent.partition(b"\r\n\r\n")[2])

    assert [item["n"] for item in body["records"]] == [2]


def test_receiver_fail_share_answers_500_and_records_the_fault() -> None:
    done = exchange("/webhook/drill?fail=0.2", draw=lambda: 0.1)

    assert done.connection.sent.startswith(b"HTTP/1.1 500")
    assert (done.record["status"], done.record["fault"]) == (500, "fail")


def test_receiver_throttle_share_answers_429_with_retry_after() -> None:
    done = exchange("/webhook/drill?throttle=0.1", draw=lambda: 0.05)

    assert done.connection.sent.startswith(b"HTTP/1.1 429")
    assert b"\r\nRetry-After: 1\r\n" in done.connection.sent


def test_receiver_slow_share_answers_200_after_its_delay() -> None:
    done = exchange("/webhook/drill?slow=0.05", draw=lambda: 0.01)

    assert done.sleeps == [SLOW_SECONDS]
    assert done.connection.sent.startswith(b"HTTP/1.1 200")
    assert (done.record["status"], done.record["fault"]) == (200, "slow")


def test_receiver_reset_share_closes_with_a_reset_and_no_answer() -> None:
    done = exchange("/webhook/drill?reset=0.05", draw=lambda: 0.01)

    assert done.connection.sent == b""
    assert done.connection.closed is True
    assert done.connection.options[socket.SOL_SOCKET, socket.SO_LINGER] == struct.pack("ii", 1, 0)
    assert (done.record["status"], done.record["fault"]) == (200, "reset")


def test_receiver_draw_past_the_shares_answers_200_without_a_fault() -> None:
    done = exchange("/webhook/drill?fail=0.2&reset=0.05", draw=lambda: 0.9)

    assert done.connection.sent.startswith(b"HTTP/1.1 200")
    assert done.record["fault"] is None


def test_receiver_scripted_status_error_takes_no_fault() -> None:
    done = exchange("/webhook/drill?status=400&reset=1", draw=lambda: 0.0)

    assert done.connection.sent.startswith(b"HTTP/1.1 400")
    assert done.record["fault"] is None


def test_receiver_sets_no_delay_on_its_connections() -> None:
    done = exchange("/webhook/plain")

    assert done.connection.options[socket.IPPROTO_TCP, socket.TCP_NODELAY] == 1


def signed_webhook(body: bytes) -> dict[str, str]:
    """Return the headers the webhook channel sends with ``body``, signed with ``SECRET``."""
    fields = {"X-Notification-Timestamp": "1767225600", "X-Notification-Id": "n-1", "X-Delivery-Key": "hook"}
    signature = signature_v2(SECRET, "1767225600", "n-1", "hook", body)
    return {"Content-Type": "application/json", **fields, "X-Notification-Signature-V2": signature}


def test_raw_body_fields_valid_utf8_gives_text_and_base64() -> None:
    body = '{"name": "Zoë"}'.encode()

    fields = raw_body_fields(body)

    assert fields == {"raw_body": '{"name": "Zoë"}', "raw_body_base64": base64.b64encode(body).decode()}


def test_raw_body_fields_invalid_utf8_gives_base64_only() -> None:
    body = b'{"name": "\xff\xfe"}'

    fields = raw_body_fields(body)

    assert fields["raw_body"] is None
    assert base64.b64decode(fields["raw_body_base64"] or "") == body


def test_receiver_record_keeps_the_body_bytes_as_received_beside_the_parsed_one() -> None:
    body = '{"z":1,"a":"Zoë </script>"}'.encode()

    record = receive("/webhook/raw", body, signed_webhook(body))

    assert record["body"] == {"z": 1, "a": "Zoë </script>"}
    assert record["raw_body"] == body.decode()
    assert base64.b64decode(record["raw_body_base64"]) == body


def test_receiver_record_raw_body_verifies_the_signature_where_the_parsed_body_does_not() -> None:
    body = '{"z":1,"a":"Zoë"}'.encode()

    record = receive("/webhook/raw", body, signed_webhook(body))
    headers = record["headers"]

    def signs(candidate: bytes) -> bool:
        timestamp, notification_id = headers["X-Notification-Timestamp"], headers["X-Notification-Id"]
        expected = signature_v2(SECRET, timestamp, notification_id, headers["X-Delivery-Key"], candidate)
        return bool(headers["X-Notification-Signature-V2"] == expected)

    assert signs(base64.b64decode(record["raw_body_base64"])) is True
    assert signs(json.dumps(record["body"]).encode()) is False


@pytest.mark.parametrize("after", ["%C2%B2", "1" * 5000])
def test_receiver_records_route_with_an_odd_after_answers_all(after: str) -> None:
    # "²".isdigit() is true and int("²") raises, as int() of over 4,300 digits does: the connection was dropped.
    connection = FakeConnection(f"GET /_records?after={after} HTTP/1.1\r\nHost: receiver\r\n\r\n".encode())

    _ReceiverHandler(connection, ("127.0.0.1", 50000), SimpleNamespace(records=Records()))  # type: ignore[arg-type]

    assert connection.sent.startswith(b"HTTP/1.1 200"), connection.sent[:200]
