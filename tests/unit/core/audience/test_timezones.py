"""Unit tests of core/audience/timezones.py: wall-clock times in IANA zones, DST gaps and folds, far offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.audience.timezones import fire_times, local_to_utc

ZONES = sorted(available_timezones() - {"Factory", "localtime"})
_LOCAL = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31))


def test_local_to_utc_paris_gap_moves_forward_by_the_gap() -> None:
    instant = local_to_utc(datetime(2026, 3, 29, 2, 30), "Europe/Paris")

    assert instant == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert instant.astimezone(ZoneInfo("Europe/Paris")).strftime("%H:%M %Z") == "03:30 CEST"


def test_local_to_utc_paris_overlap_is_the_first_occurrence() -> None:
    instant = local_to_utc(datetime(2026, 10, 25, 2, 30), "Europe/Paris")

    assert instant == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert instant.astimezone(ZoneInfo("Europe/Paris")).tzname() == "CEST"


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("Pacific/Kiritimati", datetime(2026, 6, 30, 19, 0, tzinfo=UTC)),  # +14
        ("Pacific/Pago_Pago", datetime(2026, 7, 1, 20, 0, tzinfo=UTC)),  # -11
        ("Asia/Kathmandu", datetime(2026, 7, 1, 3, 15, tzinfo=UTC)),  # +5:45
    ],
)
def test_local_to_utc_far_and_odd_offsets_use_the_zone_rules(zone: str, expected: datetime) -> None:
    assert local_to_utc(datetime(2026, 7, 1, 9, 0), zone) == expected


def test_local_to_utc_far_past_uses_the_zone_of_that_date_not_lmt() -> None:
    # Paris in 2026: +01:00 in winter, never its 1911 LMT offset of +00:09:21.
    assert local_to_utc(datetime(2026, 1, 15, 9, 0), "Europe/Paris") == datetime(2026, 1, 15, 8, 0, tzinfo=UTC)


def test_local_to_utc_aware_time_refused() -> None:
    with pytest.raises(ValueError, match="wall-clock"):
        local_to_utc(datetime(2026, 1, 1, tzinfo=UTC), "Europe/Paris")


@settings(max_examples=300, deadline=None)
@given(local=_LOCAL, zone=st.sampled_from(ZONES))
def test_local_to_utc_existing_time_shows_that_wall_clock(local: datetime, zone: str) -> None:
    instant = local_to_utc(local, zone)
    shown = instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    exists = shown == local

    if exists:
        # Ambiguous or not, no earlier instant shows the same wall clock (the first occurrence).
        earlier = instant - timedelta(hours=3)
        candidates = [earlier + timedelta(minutes=step) for step in range(0, 180, 15)]
        assert all(moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None) != local for moment in candidates)
    else:
        # A gap: the clock jumped over it. Moved forward by exactly the jump: the offset after the transition less
        # the one before it (the instant less the shift is before the transition, the instant after it).
        shift = shown - local
        after = instant.astimezone(ZoneInfo(zone)).utcoffset()
        before = (instant - shift).astimezone(ZoneInfo(zone)).utcoffset()
        assert after is not None
        assert before is not None
        assert timedelta(0) < shift <= timedelta(hours=24)
        assert shift == after - before


@settings(max_examples=300, deadline=None)
@given(local=_LOCAL, zone=st.sampled_from(ZONES))
def test_local_to_utc_is_monotonic_in_wall_clock(local: datetime, zone: str) -> None:
    later = local + timedelta(hours=1)

    assert local_to_utc(later, zone) >= local_to_utc(local, zone)


def test_fire_times_past_zone_fires_now_future_zone_at_its_time() -> None:
    now = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    times = fire_times(datetime(2026, 7, 1, 9, 0), ["Pacific/Kiritimati", "America/New_York"], now)

    assert times == {
        "Pacific/Kiritimati": now,  # 09:00 there was 2026-06-30 19:00 UTC
        "America/New_York": datetime(2026, 7, 1, 13, 0, tzinfo=UTC),
    }


def test_fire_times_user_changing_zone_gets_the_new_zones_time() -> None:
    now = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
    local = datetime(2026, 7, 1, 9, 0)

    before = fire_times(local, ["Asia/Tokyo"], now)["Asia/Tokyo"]
    after = fire_times(local, ["America/Los_Angeles"], now)["America/Los_Angeles"]

    assert (before, after) == (datetime(2026, 7, 1, 0, 0, tzinfo=UTC), datetime(2026, 7, 1, 16, 0, tzinfo=UTC))


@settings(max_examples=200, deadline=None)
@given(local=_LOCAL, zone=st.sampled_from(ZONES), now=st.datetimes(timezones=st.just(UTC)))
def test_fire_times_never_before_now_nor_before_the_wall_clock(local: datetime, zone: str, now: datetime) -> None:
    fired = fire_times(local, [zone], now)[zone]

    assert fired == max(now, local_to_utc(local, zone))


def test_fire_times_naive_now_refused() -> None:
    with pytest.raises(ValueError, match="instant"):
        fire_times(datetime(2026, 1, 1), ["UTC"], datetime(2026, 1, 1))
