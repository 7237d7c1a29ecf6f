"""Unit tests of core/audience/schedules.py with the in-memory store: the local-time rule, the dispatcher's outcomes
and bookkeeping, the enqueuer of topic sends, the schedule routes' logic."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from core.audience.models import UserRequest
from core.audience.schedules import (
    ClaimedSend,
    Handoff,
    NewScheduledSend,
    RetryPolicy,
    decode_cursor,
    dispatch_due,
    first_fire_at,
    plan_handoff,
    schedule_times,
    zone_instants,
)
from core.errors import InvalidRequestError, UpstreamError
from tests.fakes.audience import FakeAudienceRepository, RecordingEnqueuer

NOW = datetime(2026, 6, 14, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(minutes=5)


def _claim(local_at: datetime | None, zones: tuple[str, ...], done: datetime | None = None) -> ClaimedSend:
    return ClaimedSend(
        schedule_id=str(uuid.uuid4()),
        send_id=str(uuid.uuid4()),
        notification_id="n",
        target={"topic": "news/daily"},
        content={"text": "hi"},
        channels=["push"],
        fire_at=NOW,
        local_at=local_at,
        zones_done_until=done,
        attempts=1,
        claimed_at=NOW,
        user_zones=zones,
    )


def _store_with(*fire_ats: datetime) -> FakeAudienceRepository:
    store = FakeAudienceRepository()
    for index, fire_at in enumerate(fire_ats):
        store.create_scheduled_send(
            NewScheduledSend(f"n-{index}", {"topic": "news/daily"}, {"text": "hi"}, ["push"], fire_at)
        )
    return store


def test_plan_handoff_instant_send_is_everyone_once() -> None:
    assert plan_handoff(_claim(None, ()), NOW) == (None, None)


def test_plan_handoff_zones_after_the_watermark_and_not_after_now() -> None:
    claim = _claim(
        datetime(2026, 6, 15, 9, 0),
        ("Asia/Tokyo", "Europe/Paris", "America/New_York"),
        done=datetime(2026, 6, 15, 0, 0, tzinfo=UTC),
    )

    zones, next_fire_at = plan_handoff(claim, datetime(2026, 6, 15, 7, 0, tzinfo=UTC))

    # Next: the next instant any clock shows 09:00 (UTC+1, 08:00Z), not only New York's, whose users are known now.
    assert (zones, next_fire_at) == (["Europe/Paris"], datetime(2026, 6, 15, 8, 0, tzinfo=UTC))


def test_plan_handoff_last_zone_has_no_next() -> None:
    claim = _claim(datetime(2026, 6, 15, 9, 0), ("Asia/Tokyo",))

    assert plan_handoff(claim, datetime(2026, 6, 16, tzinfo=UTC)) == (["Asia/Tokyo"], None)


def test_plan_handoff_last_zone_with_users_keeps_the_send_until_every_clock_shows_its_time() -> None:
    # A zone that gets its first user later (Paris, 07:00Z) must still find the send scheduled.
    claim = _claim(datetime(2026, 6, 15, 9, 0), ("Asia/Tokyo",))

    zones, next_fire_at = plan_handoff(claim, datetime(2026, 6, 15, 0, 0, tzinfo=UTC))

    assert zones == ["Asia/Tokyo"]
    assert next_fire_at is not None
    assert next_fire_at <= datetime(2026, 6, 15, 7, 0, tzinfo=UTC)


def test_plan_handoff_after_the_last_clock_has_no_next() -> None:
    # UTC-12 (Etc/GMT+12) is the last place where 09:00 comes: 21:00Z.
    claim = _claim(datetime(2026, 6, 15, 9, 0), (), done=datetime(2026, 6, 15, 20, 0, tzinfo=UTC))

    assert plan_handoff(claim, datetime(2026, 6, 15, 20, 59, tzinfo=UTC)) == ([], datetime(2026, 6, 15, 21, tzinfo=UTC))
    assert plan_handoff(claim, datetime(2026, 6, 15, 21, 0, tzinfo=UTC)) == ([], None)


def test_plan_handoff_unknown_zone_taken_as_utc() -> None:
    """A zone the clock does not know (a name a later tzdata dropped) was left out, and its users never reached."""
    claim = _claim(datetime(2026, 6, 15, 9, 0), ("Mars/Olympus_Mons", "Asia/Tokyo"))

    assert plan_handoff(claim, datetime(2026, 6, 15, 8, 59, tzinfo=UTC))[0] == ["Asia/Tokyo"]
    assert plan_handoff(claim, datetime(2026, 6, 15, 9, 0, tzinfo=UTC))[0] == ["Asia/Tokyo", "Mars/Olympus_Mons"]


def test_first_fire_at_earliest_clock_or_now_when_past() -> None:
    local_at = datetime(2026, 6, 15, 9, 0)

    # UTC+14's 09:00, whatever zones have users: any zone may get a user before its time comes.
    assert first_fire_at(local_at, ["Europe/Paris", "Asia/Tokyo"], NOW) == datetime(2026, 6, 14, 19, 0, tzinfo=UTC)
    assert first_fire_at(local_at, ["Europe/Paris"], datetime(2026, 6, 20, tzinfo=UTC)) == datetime(
        2026, 6, 20, tzinfo=UTC
    )


def test_schedule_times_offset_is_one_instant() -> None:
    at = datetime(2026, 6, 15, 9, 0, tzinfo=UTC) + timedelta(hours=2)

    assert schedule_times(at, False, ["Asia/Tokyo"], NOW) == (at, None)


def test_schedule_times_local_time_is_a_wall_clock_per_zone() -> None:
    at = datetime(2026, 6, 15, 9, 0)

    assert schedule_times(at, True, ["Europe/Paris"], NOW) == (datetime(2026, 6, 14, 19, 0, tzinfo=UTC), at)


@pytest.mark.parametrize(
    ("at", "local_time"),
    [(datetime(2026, 6, 15, 9, 0), False), (datetime(2026, 6, 15, 9, 0, tzinfo=UTC), True)],
    ids=["no-offset-not-local", "offset-and-local"],
)
def test_schedule_times_inconsistent_at_names_the_field(at: datetime, local_time: bool) -> None:
    with pytest.raises(InvalidRequestError, match=r"^at"):
        schedule_times(at, local_time, [], NOW)


@pytest.mark.parametrize(
    ("at", "local_time"),
    [(datetime(2025, 6, 13, 9, 0), True), (datetime(2025, 6, 13, 9, 0, tzinfo=UTC), False)],
    ids=["wall-clock", "instant"],
)
def test_schedule_times_more_than_a_year_past_names_at(at: datetime, local_time: bool) -> None:
    with pytest.raises(InvalidRequestError, match=r"^at: must not be more than a year in the past"):
        schedule_times(at, local_time, ["Europe/Paris"], NOW)


def test_schedule_times_instant_out_of_range_names_at() -> None:
    at = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-12)))

    with pytest.raises(InvalidRequestError, match=r"^at: is out of range"):
        schedule_times(at, False, [], NOW)


def test_zone_instants_out_of_range_in_a_zone_names_at() -> None:
    with pytest.raises(InvalidRequestError, match=r"^at: is out of range in the time zone Asia/Tokyo"):
        zone_instants(datetime(1, 1, 1), ["America/New_York", "Asia/Tokyo"])


def test_retry_policy_backs_off_exponentially_capped() -> None:
    policy = RetryPolicy(base=timedelta(minutes=1), cap=timedelta(minutes=10))

    delays = [policy.retry_at(attempts, NOW) - NOW for attempts in (1, 2, 3, 4, 5, 50)]

    assert delays == [timedelta(minutes=minutes) for minutes in (1, 2, 4, 8, 10, 10)]


def test_dispatch_due_naive_now_refused() -> None:
    with pytest.raises(ValueError, match="instant"):
        dispatch_due(FakeAudienceRepository(), RecordingEnqueuer(), datetime(2026, 6, 14), 10, TIMEOUT)


class _BrokenMarks(FakeAudienceRepository):
    def mark_sent(self, handoffs: Any) -> int:
        raise UpstreamError("the database went away")


def test_dispatch_due_failed_mark_after_enqueue_never_raises_and_stops() -> None:
    store = _BrokenMarks()
    for index in range(3):
        store.create_scheduled_send(NewScheduledSend(f"n-{index}", {"topic": "a/b"}, {"text": "hi"}, ["push"], NOW))
    enqueuer = RecordingEnqueuer()

    report = dispatch_due(store, enqueuer, NOW, 2, TIMEOUT)

    assert (report.claimed, report.batches, len(enqueuer.sends), report.sent) == (2, 1, 2, 0)
    assert report.errors == ["UpstreamError: the database went away"]


def test_dispatch_due_bug_in_enqueuer_retried_not_lost() -> None:
    store = _store_with(NOW)
    enqueuer = RecordingEnqueuer()
    enqueuer.failing["n-0"] = KeyError("oops")

    report = dispatch_due(store, enqueuer, NOW, 10, TIMEOUT)

    assert report.retried == 1
    assert next(iter(store.schedules.values())).status == "scheduled"


def test_dispatch_due_local_time_claim_with_no_zone_due_rearmed_without_enqueue() -> None:
    store = FakeAudienceRepository()
    store.put_user("u", UserRequest(timezone="America/New_York"))
    # Fired for a Tokyo user who has moved to New York since: nothing is due before New York's instant.
    store.create_scheduled_send(
        NewScheduledSend(
            "n",
            {"topic": "a/b"},
            {"text": "hi"},
            ["push"],
            datetime(2026, 6, 15, 0, 0, tzinfo=UTC),
            datetime(2026, 6, 15, 9, 0),
        )
    )
    enqueuer = RecordingEnqueuer()

    report = dispatch_due(store, enqueuer, datetime(2026, 6, 15, 0, 0, tzinfo=UTC), 10, TIMEOUT)

    assert (report.rearmed, enqueuer.sends) == (1, [])
    # The next instant a clock shows 09:00 (UTC+8:45, 00:15Z): a zone may get a user before its time.
    assert next(iter(store.schedules.values())).fire_at == datetime(2026, 6, 15, 0, 15, tzinfo=UTC)


def test_dispatch_due_claim_out_of_range_in_a_zone_fails_alone_and_the_batch_goes_on() -> None:
    store = _store_with(NOW)
    store.put_user("tokyo", UserRequest(timezone="Asia/Tokyo"))
    # Stored before ``at`` was bounded: year 1 in Tokyo is before the first instant a datetime holds.
    store.create_scheduled_send(
        NewScheduledSend("n-odd", {"topic": "a/b"}, {"text": "hi"}, ["push"], NOW, datetime(1, 1, 1))
    )
    enqueuer = RecordingEnqueuer()

    report = dispatch_due(store, enqueuer, NOW, 10, TIMEOUT)

    assert (report.sent, report.failed, [send.notification_id for send in enqueuer.sends]) == (1, 1, ["n-0"])
    odd = next(row for row in store.schedules.values() if row.notification_id == "n-odd")
    assert (odd.status, odd.last_error) == (
        "failed",
        "InvalidRequestError: at: is out of range in the time zone Asia/Tokyo",
    )


def test_dispatch_due_bug_in_planning_retried_and_the_batch_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.audience import schedules

    store = _store_with(NOW, NOW)
    planned = schedules.plan_handoff

    def plan(claim: ClaimedSend, now: datetime) -> tuple[list[str] | None, datetime | None]:
        if claim.notification_id == "n-1":
            raise KeyError("oops")
        return planned(claim, now)

    monkeypatch.setattr(schedules, "plan_handoff", plan)
    enqueuer = RecordingEnqueuer()

    report = dispatch_due(store, enqueuer, NOW, 10, TIMEOUT)

    assert (report.sent, report.retried, [send.notification_id for send in enqueuer.sends]) == (1, 1, ["n-0"])
    assert {row.notification_id: row.status for row in store.schedules.values()} == {
        "n-0": "sent",
        "n-1": "scheduled",
    }


def test_mark_sent_without_handoffs_is_nothing() -> None:
    assert FakeAudienceRepository().mark_sent([]) == 0
    assert Handoff(claim=_claim(None, ()), until=NOW).next_fire_at is None


def test_decode_cursor_of_deeply_nested_brackets_refused_naming_cursor() -> None:
    import base64

    with pytest.raises(InvalidRequestError, match="cursor"):
        decode_cursor(base64.urlsafe_b64encode(b"[" * 1500).decode())


def test_decode_cursor_with_an_offset_postgresql_cannot_store_is_read_in_utc() -> None:
    """An offset beyond PostgreSQL's 15:59 reached the query: a 422 naming no field ("a value cannot be stored")."""
    import base64
    import json

    schedule_id = str(uuid.uuid4())
    raw = json.dumps(["2026-01-01T00:00:00+20:00", schedule_id]).encode()

    assert decode_cursor(base64.urlsafe_b64encode(raw).decode()) == (
        datetime(2025, 12, 31, 4, 0, tzinfo=UTC),
        schedule_id,
    )
    assert decode_cursor(base64.urlsafe_b64encode(raw).decode())[0].utcoffset() == timedelta(0)


def test_decode_cursor_naive_time_refused() -> None:
    import base64
    import json

    raw = json.dumps(["2026-01-01T00:00:00", str(uuid.uuid4())]).encode()

    with pytest.raises(InvalidRequestError, match="cursor"):
        decode_cursor(base64.urlsafe_b64encode(raw).decode())
