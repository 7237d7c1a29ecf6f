"""Unit tests of the times the ledger, the API and the stores write (core/times.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from core.times import epoch_time, iso_time, utc_now


def test_iso_time_is_utc_with_milliseconds_and_z() -> None:
    assert iso_time(1795370400.1234) == "2026-11-22T18:00:00.123Z"


def test_utc_now_is_now_as_iso_time() -> None:
    before = time.time()
    text = utc_now()
    after = time.time()

    read = epoch_time(text)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text)
    assert read is not None
    assert before - 0.001 <= read <= after


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T18:00:00.123Z", 1795370400.123),
        ("2026-11-22T18:00:00+00:00", 1795370400.0),
        ("2026-11-22T19:00:00+01:00", 1795370400.0),
        ("2026-11-22T18:00:00", 1795370400.0),
    ],
    ids=["z", "utc-offset", "other-offset", "no-offset-is-utc"],
)
def test_epoch_time_reads_iso_times(text: str, expected: float) -> None:
    assert epoch_time(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", [None, "", "yesterday", "2026-13-01T00:00:00Z"], ids=["none", "empty", "word", "month"]
)
def test_epoch_time_not_a_time_is_none(text: str | None) -> None:
    assert epoch_time(text) is None


def test_iso_time_and_epoch_time_round_trip_to_the_millisecond() -> None:
    assert epoch_time(iso_time(1795370400.5)) == 1795370400.5


def test_importing_times_loads_no_ledger() -> None:
    # The realtime routes and the payments store write times without the ledger's module (its cold start cost).
    code = "import sys, core.times; print('core.ledger' in sys.modules, 'core.models' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.split() == ["False", "False"]
