"""Unit tests of the helpers channels share (consumer/channels/base.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumer.channels.base import retry_after_seconds, truncate

NOW = datetime(2026, 11, 21, 20, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Sat, 21 Nov 2026 20:01:30 GMT", 90.0),
        ("Sat, 21 Nov 2026 19:00:00 GMT", 0.0),
        ("-5", 0.0),
        ("soon", None),
        ("nan", None),
        (None, None),
    ],
)
def test_retry_after_seconds_parses_header(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, lambda: NOW) == seconds


def test_truncate_marks_cut_with_ellipsis() -> None:
    assert truncate("abcdef", 4) == "abc…"


def test_truncate_short_text_unchanged() -> None:
    assert truncate("abc", 4) == "abc"
