"""Times as the ledger, the API and the stores write them: ISO 8601 UTC with milliseconds, and back to Unix time.

Kept apart from ``core.ledger`` so that what only writes a time (the realtime routes, the payments store) does not
load the ledger to do it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utc_now() -> str:
    """Return the current UTC time in ISO 8601 with milliseconds."""
    return iso_time(time.time())


def iso_time(epoch: float) -> str:
    """Return a Unix time as ISO 8601 UTC with milliseconds (``2026-11-22T18:00:00.000Z``)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_time(text: str | None) -> float | None:
    """Return the Unix time of an ISO 8601 time (UTC when it names no offset), or ``None`` when it is not one."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
