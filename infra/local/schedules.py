"""EventBridge schedule expressions (``rate()`` and six-field ``cron()``, in UTC) and the timers that play them."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_MONTHS = {name.upper(): index for index, name in enumerate(calendar.month_abbr) if name}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_SEARCH_DAYS = 366 * 5


class ScheduleError(ValueError):
    """A schedule expression EventBridge would refuse."""


@dataclass(frozen=True)
class Rate:
    """``rate(n unit)``: every ``seconds`` seconds, the first one period after the rule is created."""

    seconds: int

    def next_after(self, moment: datetime, created: datetime | None = None) -> datetime:
        """Return the first firing strictly after ``moment``, counting periods from ``created`` (default: moment)."""
        created = moment if created is None else created
        elapsed = (moment - created).total_seconds()
        periods = int(elapsed // self.seconds) + 1
        return created + timedelta(seconds=periods * self.seconds)


def _numbers(field: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    values: set[int] = set()
    for item in field.split(","):
        part, _, step_text = item.partition("/")
        if step_text and not step_text.isdigit():
            raise ScheduleError(f"bad step in {field!r}")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ScheduleError(f"bad step in {field!r}")
        if part in {"*", "?"}:
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = _value(first, names), _value(last, names)
        else:
            start = _value(part, names)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high):
            raise ScheduleError(f"{field!r} is out of range {low}-{high}")
        if start <= end:
            values.update(range(start, end + 1, step))
        else:  # a wrapping range such as FRI-MON
            values.update([*range(start, high + 1), *range(low, end + 1)][::step])
    return frozenset(values)


def _value(text: str, names: dict[str, int] | None) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise ScheduleError(f"{text!r} is not a number or a name")
    return int(text)


@dataclass(frozen=True)
class Cron:
    """``cron(minutes hours day-of-month month day-of-week year)`` as EventBridge reads it (UTC, 1 = Sunday)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    day_of_month: str
    months: frozenset[int]
    day_of_week: str
    years: frozenset[int]

    @classmethod
    def parse(cls, body: str) -> Cron:
        """Parse the six fields inside ``cron(…)``."""
        fields = body.split()
        if len(fields) != 6:
            raise ScheduleError(f"cron() needs 6 fields, got {len(fields)}")
        minutes, hours, dom, month, dow, year = fields
        if (dom == "?") == (dow == "?"):
            raise ScheduleError("cron() needs '?' in exactly one of day-of-month and day-of-week")
        cron = cls(
            minutes=_numbers(minutes, 0, 59),
            hours=_numbers(hours, 0, 23),
            day_of_month=dom.upper(),
            months=_numbers(month, 1, 12, _MONTHS),
            day_of_week=dow.upper(),
            years=_numbers(year, 1970, 2199),
        )
        cron.matches_day(date(2000, 1, 1))  # refuse a bad day field now, not at the first firing
        return cron

    def matches_day(self, day: date) -> bool:
        """Tell whether the schedule fires at some time on ``day``."""
        if day.year not in self.years or day.month not in self.months:
            return False
        if self.day_of_month != "?":
            return self._dom_matches(day)
        return self._dow_matches(day)

    def _dom_matches(self, day: date) -> bool:
        last = calendar.monthrange(day.year, day.month)[1]
        field = self.day_of_month
        if field == "L":
            return day.day == last
        if field.endswith("W"):
            wanted = min(int(field[:-1]), last)
            target = date(day.year, day.month, wanted)
            if target.weekday() == 5:  # Saturday: the Friday before, unless that leaves the month
                target = target - timedelta(days=1) if wanted > 1 else target + timedelta(days=2)
            elif target.weekday() == 6:  # Sunday: the Monday after, unless that leaves the month
                target = target + timedelta(days=1) if wanted < last else target - timedelta(days=2)
            return day == target
        return day.day in _numbers(field, 1, 31)

    def _dow_matches(self, day: date) -> bool:
        weekday = (day.weekday() + 1) % 7 + 1  # Python's Monday=0 → EventBridge's Sunday=1
        field = self.day_of_week
        if "#" in field:
            name, nth = field.split("#", 1)
            return weekday == _value(name, _DAYS) and (day.day - 1) // 7 + 1 == int(nth)
        if field.endswith("L") and field != "L":
            last = calendar.monthrange(day.year, day.month)[1]
            return weekday == _value(field[:-1], _DAYS) and day.day > last - 7
        if field == "L":
            return weekday == 7
        return weekday in _numbers(field, 1, 7, _DAYS)

    def next_after(self, moment: datetime, created: datetime | None = None) -> datetime:
        """Return the first firing strictly after ``moment`` (UTC)."""
        start = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.date()
        for _ in range(_SEARCH_DAYS):
            if self.matches_day(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        raise ScheduleError("the schedule never fires in the next five years")


def parse_schedule(expression: str) -> Rate | Cron:
    """Parse ``rate(…)`` or ``cron(…)``; raise ``ScheduleError`` on what EventBridge would refuse."""
    text = expression.strip()
    rate = _RATE.match(text)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            raise ScheduleError("rate() needs a positive value")
        if (value == 1) != (not unit.endswith("s")):
            raise ScheduleError(f"write rate({value} {unit.rstrip('s') if value == 1 else unit.rstrip('s') + 's'})")
        seconds = {"minute": 60, "hour": 3600, "day": 86400}[unit.rstrip("s")]
        return Rate(value * seconds)
    cron = _CRON.match(text)
    if cron:
        return Cron.parse(cron.group(1))
    raise ScheduleError(f"{expression!r} is neither rate(…) nor cron(…)")
