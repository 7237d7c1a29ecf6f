"""Unit tests of the local receiver (infra/local/peers.py): scripted rate limit and outage, records' raw bodies."""

from __future__ import annotations

import base64
import io
import itertools
import json
from types import SimpleNamespace
from typing import Any

import pytest

from core.channels.webhook import signature_v2
from infra.local.peers import RateWindow, Records, _ReceiverHandler, raw_body_fields, scripted_outage

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


class FakeConnection:
    """A connection the receiver's handler reads one request from and writes its answer to, with no socket."""

    def __init__(self, request: bytes) -> None:
        self._request = request
        self.sent = b""

    def makefile(self, mode: str, *_args: Any) -> io.BytesIO:
        return io.BytesIO(self._request)

    def sendall(self, data: bytes) -> None:
        self.sent += data


def receive(path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """Have the receiver handle one POST; return the record it kept."""
    lines = [f"POST {path} HTTP/1.1", "Host: receiver", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    records = Records()
    server = SimpleNamespace(records=records, telegram_ids=itertools.count(1))
    connection = FakeConnection(request)
    _ReceiverHandler(connection, ("127.0.0.1", 50000), server)  # type: ignore[arg-type]
    [record] = records.all()
    assert connection.sent.startswith(b"HTTP/1.1 200"), connection.sent[:200]
    return record


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
