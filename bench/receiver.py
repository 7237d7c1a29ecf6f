"""The local receiver's records, followed from the outside while a benchmark runs.

The receiver keeps its last 1000 records; ``ReceiverLog`` reads ``/_records?after=<id>`` every quarter second from a
thread, so that none is missed under load, and says so if one was (its ``gaps``).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

ID_HEADER = "X-Notification-Id"
DELIVERY_KEY_HEADER = "X-Delivery-Key"
POLL_SECONDS = 0.25
# Tries of the last read when the log stops: what it misses is missed for good.
LAST_READ_TRIES = 5


def fetch_records(receiver: str, after: int = 0) -> list[dict[str, Any]]:
    """Return the receiver's records after the id ``after``, oldest first."""
    with urllib.request.urlopen(f"{receiver}/_records?after={after}", timeout=30) as response:
        records: list[dict[str, Any]] = json.loads(response.read())["records"]
    return records


def arrival(record: dict[str, Any]) -> float:
    """Return when the receiver got a record's request (Unix time; the receiver stamps milliseconds)."""
    return datetime.fromisoformat(record["time"]).timestamp()


def delivery_of(record: dict[str, Any]) -> tuple[str, str] | None:
    """Return a webhook record's (notification id, delivery key), the pair a receiver drops duplicates by."""
    headers = {str(name).lower(): value for name, value in (record.get("headers") or {}).items()}
    notification_id, key = headers.get(ID_HEADER.lower()), headers.get(DELIVERY_KEY_HEADER.lower())
    return (notification_id, key) if notification_id and key else None


class ReceiverLog:
    """Every record the receiver keeps from now on whose path starts with ``prefix``."""

    def __init__(self, receiver: str, prefix: str = "/") -> None:
        self._receiver = receiver
        self._prefix = prefix
        existing = fetch_records(receiver)
        self._after = existing[-1]["id"] if existing else 0
        self._records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="receiver-log", daemon=True)
        self.gaps = 0
        self.errors = 0

    def _poll(self) -> bool:
        """Read the records since the last read; return whether the read was answered."""
        try:
            batch = fetch_records(self._receiver, self._after)
        except OSError:
            self.errors += 1
            return False
        if batch and batch[0]["id"] > self._after + 1:
            self.gaps += batch[0]["id"] - self._after - 1
        if batch:
            self._after = batch[-1]["id"]
        with self._lock:
            self._records.extend(record for record in batch if record["path"].startswith(self._prefix))
        return True

    def _follow(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self._poll()

    def records(self) -> list[dict[str, Any]]:
        """Return the records followed so far, oldest first."""
        with self._lock:
            return list(self._records)

    def start(self) -> None:
        """Follow the receiver from a thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop following, after one last read that was answered (tried a few times); when none was, the records
        since the read before are missed, how many unknown: ``gaps`` counts one."""
        self._stop.set()
        self._thread.join(timeout=30)
        for _ in range(LAST_READ_TRIES):
            if self._poll():
                return
            time.sleep(POLL_SECONDS)
        self.gaps += 1


@contextmanager
def following(receiver: str, prefix: str = "/") -> Iterator[ReceiverLog]:
    """Follow the receiver's records for the duration of the block."""
    log = ReceiverLog(receiver, prefix)
    log.start()
    try:
        yield log
    finally:
        log.stop()
