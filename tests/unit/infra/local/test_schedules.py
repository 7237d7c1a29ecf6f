"""EventBridge schedule expressions: rate() and six-field cron() in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from infra.local.schedules import Cron, Rate, ScheduleError, parse_schedule

NOW = datetime(2026, 11, 21, 20, 7, 30, tzinfo=UTC)  # a Saturday


def test_parse_schedule_rate_minutes_is_seconds() -> None:
    assert parse_schedule("rate(5 minutes)") == Rate(300)


def test_parse_schedule_rate_one_needs_singular_unit() -> None:
    with pytest.raises(ScheduleError):
        parse_schedule("rate(1 minutes)")


def test_parse_schedule_unknown_expression_is_refused() -> None:
    with pytest.raises(ScheduleError):
        parse_schedule("every 5 minutes")


def test_rate_next_after_counts_periods_from_creation() -> None:
    created = datetime(2026, 11, 21, 20, 0, tzinfo=UTC)

    assert Rate(300).next_after(NOW, created) == datetime(2026, 11, 21, 20, 10, tzinfo=UTC)


def test_cron_every_15_minutes_on_weekdays_skips_the_weekend() -> None:
    cron = parse_schedule("cron(0/15 * ? * MON-FRI *)")

    assert cron.next_after(NOW) == datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


def test_cron_daily_time_is_utc_and_later_the_same_day() -> None:
    assert parse_schedule("cron(30 21 * * ? *)").next_after(NOW) == datetime(2026, 11, 21, 21, 30, tzinfo=UTC)


def test_cron_next_after_is_strictly_later() -> None:
    moment = datetime(2026, 11, 21, 21, 30, tzinfo=UTC)

    assert parse_schedule("cron(30 21 * * ? *)").next_after(moment) == datetime(2026, 11, 22, 21, 30, tzinfo=UTC)


def test_cron_last_day_of_month() -> None:
    assert parse_schedule("cron(0 9 L * ? *)").next_after(NOW) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_cron_nth_weekday_of_month() -> None:
    # The first Monday (2) of December 2026 is the 7th.
    assert parse_schedule("cron(0 8 ? 12 2#1 *)").next_after(NOW) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def test_cron_last_friday_of_month() -> None:
    assert parse_schedule("cron(0 17 ? * 6L *)").next_after(NOW) == datetime(2026, 11, 27, 17, 0, tzinfo=UTC)


def test_cron_nearest_weekday_moves_saturday_to_friday() -> None:
    # 2027-05-15 is a Saturday: 15W fires on Friday the 14th.
    start = datetime(2027, 5, 1, tzinfo=UTC)

    assert parse_schedule("cron(0 6 15W * ? *)").next_after(start) == datetime(2027, 5, 14, 6, 0, tzinfo=UTC)


def test_cron_month_names_and_years() -> None:
    cron = parse_schedule("cron(0 0 1 JAN ? 2028)")

    assert cron.next_after(NOW) == datetime(2028, 1, 1, 0, 0, tzinfo=UTC)


def test_cron_needs_question_mark_in_one_day_field() -> None:
    with pytest.raises(ScheduleError):
        Cron.parse("0 0 * * * *")


def test_cron_needs_six_fields() -> None:
    with pytest.raises(ScheduleError):
        parse_schedule("cron(0 0 * * ?)")


def test_cron_out_of_range_minute_is_refused() -> None:
    with pytest.raises(ScheduleError):
        parse_schedule("cron(61 0 * * ? *)")
