"""The benchmarks' view of the local receiver's records (bench/receiver.py)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.receiver import ReceiverLog


def test_receiver_log_counts_records_it_could_not_read_at_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last read fails (the receiver busy past 30 s, a reset): the records since the previous read are never
    seen, yet ``gaps`` (the drill's 'receiver records missed') stays 0; ``errors`` is counted nowhere."""
    calls = {"n": 0}

    def fetch(receiver: str, after: int = 0) -> list[dict[str, Any]]:
        calls["n"] += 1
        if calls["n"] == 1:
            return [{"id": 5, "path": "/webhook/x"}]
        raise ConnectionResetError("reset")

    monkeypatch.setattr("bench.receiver.fetch_records", fetch)
    log = ReceiverLog("http://receiver", "/webhook/")
    log.start()
    log.stop()  # the thread's first read is 0.25 s away: only the last read, which fails

    assert log.errors >= 1
    assert log.gaps > 0, "a last read never answered left 'receiver records missed: 0'"
