"""Wall-clock times in users' time zones, with ``zoneinfo`` and the zone's own rules (never a fixed offset).

A local-time send names a wall-clock time (``2026-03-29T09:00`` without an offset); each recipient gets it when
their zone's clock shows it. Where that time does not exist (the clock jumps over it: a DST gap), it is moved forward
by the gap (02:30 in a 02:00→03:00 jump is 03:30); where it exists twice (the clock goes back: a fold), it is the
first of the two; where it is already past, it is now.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_to_utc(local: datetime, zone: str) -> datetime:
    """Return the instant (UTC) at which the clock of ``zone`` shows the wall-clock time ``local``.

    A time in a gap is moved forward by the gap; an ambiguous time is its first occurrence.

    Raises
    ------
    ValueError
        ``local`` has an offset (it is an instant already), or ``zone`` is not a time zone name.
    """
    if local.tzinfo is not None:
        raise ValueError("local must be a wall-clock time, without an offset")
    # PEP 495: fold=0 takes the offset in force before a transition. In a fold that is the first occurrence; in a gap
    # it is the offset before the jump, which lands the instant past the jump by exactly the time asked into the gap.
    return local.replace(tzinfo=_zone(zone), fold=0).astimezone(UTC)


def fire_times(local: datetime, zones: Iterable[str], now: datetime) -> dict[str, datetime]:
    """Return, for each zone, when a local-time send of ``local`` reaches its recipients there (UTC).

    A zone whose clock is already past ``local`` gets ``now``: the send goes at once, it is never skipped.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an instant, with an offset")
    current = now.astimezone(UTC)
    return {zone: max(local_to_utc(local, zone), current) for zone in zones}
