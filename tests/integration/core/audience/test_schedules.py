"""Integration tests of the scheduled sends (core/audience/schedules.py and the repository's schedule block) against
a real PostgreSQL: claims under concurrency, crashed runs, retries, cancels, local-time hand-offs zone by zone.

The behaviour tests run on the in-memory fake too (``store`` is parametrised), so the fake holds to PostgreSQL.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.audience.connection import Database
from core.audience.models import UserRequest
from core.audience.repository import AudienceRepository
from core.audience.schedules import (
    DueSend,
    Handoff,
    NewScheduledSend,
    RetryPolicy,
    SendEnqueuer,
    cancel_schedule,
    clock_instants,
    dispatch_due,
    first_fire_at,
    get_schedule,
    list_schedules,
)
from core.errors import ConflictError, InvalidRequestError, NotFoundError, UpstreamError
from tests.fakes.audience import FakeAudienceRepository, RecordingEnqueuer

NOW = datetime(2026, 6, 14, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(minutes=5)
CONTENT = {"text": "hello", "subject": "hi"}
ZONES = ("Europe/Paris", "America/New_York", "Asia/Tokyo")

Store = AudienceRepository | FakeAudienceRepository


@pytest.fixture(params=["postgres", "fake"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "fake":
        return FakeAudienceRepository()
    database: Database = request.getfixturevalue("database")
    return AudienceRepository(database)


def _send(store: Store, fire_at: datetime, local_at: datetime | None = None, *, name: str | None = None) -> str:
    schedule = store.create_scheduled_send(
        NewScheduledSend(
            notification_id=name or str(uuid.uuid4()),
            target={"topic": "news/daily"},
            content=CONTENT,
            channels=["push"],
            fire_at=fire_at,
            local_at=local_at,
        )
    )
    return schedule.schedule_id


def _local_send(store: Store, local_at: datetime, now: datetime, name: str = "local") -> str:
    return _send(store, first_fire_at(local_at, store.user_zones(), now), local_at, name=name)


def _users(store: Store, *zones: str) -> None:
    for index, zone in enumerate(zones):
        store.put_user(f"user-{index}", UserRequest(timezone=zone))


def _run(store: Store, enqueuer: SendEnqueuer, now: datetime, **options: Any) -> Any:
    return dispatch_due(store, enqueuer, now, options.pop("batch_size", 10), TIMEOUT, **options)


# --- claims, crashes, retries -------------------------------------------------------------------------------------


def test_dispatch_due_two_parallel_runs_send_each_row_once(database: Database, postgres_url: str) -> None:
    names = [f"n-{index:03d}" for index in range(60)]
    setup = AudienceRepository(database)
    for name in names:
        _send(setup, NOW - timedelta(minutes=1), name=name)
    enqueuer = RecordingEnqueuer()
    start = threading.Barrier(2)
    reports: list[Any] = []
    databases = [Database(postgres_url), Database(postgres_url)]

    def run(db: Database) -> None:
        start.wait()
        reports.append(dispatch_due(AudienceRepository(db), enqueuer, NOW, 7, TIMEOUT))

    threads = [threading.Thread(target=run, args=(db,)) for db in databases]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        for db in databases:
            db.close()

    assert sorted(send.notification_id for send in enqueuer.sends) == names
    assert sum(report.sent for report in reports) == 60
    assert all(schedule.status == "sent" for schedule in list_schedules(setup, limit=100).schedules)


def test_dispatch_due_parallel_runs_overlapping_claims_skip_locked_rows(database: Database, postgres_url: str) -> None:
    # The first run holds its claim's transaction open while the second claims: SKIP LOCKED passes its rows by.
    setup = AudienceRepository(database)
    for index in range(4):
        _send(setup, NOW, name=f"n-{index}")
    other = Database(postgres_url)
    with other.transaction() as setting:
        # Waiting for the lock would hang this test: without SKIP LOCKED the claim fails instead.
        setting.execute("SET lock_timeout = '2s'")
    try:
        with database.transaction() as cursor:
            cursor.execute(
                "SELECT id FROM scheduled_sends ORDER BY fire_at, id LIMIT 2 FOR UPDATE",
            )
            claimed = AudienceRepository(other).claim_due(NOW, 10, TIMEOUT)
    finally:
        other.close()

    assert len(claimed) == 2


def test_dispatch_due_crash_between_claim_and_enqueue_sent_after_claim_timeout(store: Store) -> None:
    schedule_id = _send(store, NOW, name="crashed")
    assert len(store.claim_due(NOW, 10, TIMEOUT)) == 1  # the run dies here: nothing enqueued, nothing marked
    enqueuer = RecordingEnqueuer()

    early = _run(store, enqueuer, NOW + TIMEOUT - timedelta(seconds=1))
    late = _run(store, enqueuer, NOW + TIMEOUT + timedelta(seconds=1))

    assert (early.claimed, late.sent) == (0, 1)
    assert enqueuer.count("crashed") == 1
    assert (store.get_schedule(schedule_id).status, store.get_schedule(schedule_id).attempts) == ("sent", 2)


def test_mark_sent_of_a_claim_taken_over_changes_nothing(store: Store) -> None:
    schedule_id = _send(store, NOW)
    [first] = store.claim_due(NOW, 10, TIMEOUT)
    [second] = store.claim_due(NOW + TIMEOUT * 2, 10, TIMEOUT)
    store.mark_failed_attempt(second, "UpstreamError: down", NOW + timedelta(hours=1))

    assert store.mark_sent([Handoff(claim=first, until=NOW)]) == 0
    assert store.get_schedule(schedule_id).status == "scheduled"


def test_dispatch_due_failed_enqueue_retried_later_never_deleted(store: Store) -> None:
    schedule_id = _send(store, NOW, name="flaky")
    enqueuer = RecordingEnqueuer()
    enqueuer.failing["flaky"] = UpstreamError("the delivery queue is unavailable")

    first = _run(store, enqueuer, NOW)
    failed = store.get_schedule(schedule_id)
    del enqueuer.failing["flaky"]
    too_soon = _run(store, enqueuer, NOW + timedelta(seconds=59))
    retried = _run(store, enqueuer, NOW + timedelta(minutes=1))

    assert (first.retried, too_soon.claimed, retried.sent) == (1, 0, 1)
    assert (failed.status, failed.fire_at, failed.attempts) == ("scheduled", NOW + timedelta(minutes=1), 1)
    assert failed.last_error == "UpstreamError: the delivery queue is unavailable"
    after = store.get_schedule(schedule_id)
    assert (after.status, after.attempts, after.last_error, enqueuer.count("flaky")) == ("sent", 2, None, 1)


def test_dispatch_due_retries_exhausted_row_failed_and_kept(store: Store) -> None:
    schedule_id = _send(store, NOW, name="down")
    enqueuer = RecordingEnqueuer()
    enqueuer.failing["down"] = UpstreamError("down")
    policy = RetryPolicy(base=timedelta(minutes=1), cap=timedelta(minutes=2), max_attempts=3)

    reports = [_run(store, enqueuer, NOW + timedelta(hours=hour), retry=policy) for hour in range(4)]

    assert [(report.retried, report.failed) for report in reports] == [(1, 0), (1, 0), (0, 1), (0, 0)]
    schedule = store.get_schedule(schedule_id)
    assert (schedule.status, schedule.attempts, schedule.last_error) == ("failed", 3, "UpstreamError: down")


def test_dispatch_due_permanent_error_failed_at_once(store: Store) -> None:
    schedule_id = _send(store, NOW, name="no-topic")
    enqueuer = RecordingEnqueuer()
    enqueuer.failing["no-topic"] = NotFoundError("the topic does not exist")

    report = _run(store, enqueuer, NOW)

    assert report.failed == 1
    assert store.get_schedule(schedule_id).status == "failed"


def test_dispatch_due_future_row_not_claimed(store: Store) -> None:
    _send(store, NOW + timedelta(seconds=1))

    assert _run(store, RecordingEnqueuer(), NOW).claimed == 0


def test_dispatch_due_instant_already_past_sent_at_once(store: Store) -> None:
    _send(store, NOW - timedelta(days=3), name="late")
    enqueuer = RecordingEnqueuer()

    _run(store, enqueuer, NOW)

    assert [(send.notification_id, send.zones) for send in enqueuer.sends] == [("late", None)]


def test_dispatch_due_more_rows_than_a_batch_claims_them_all_in_one_run(store: Store) -> None:
    for index in range(25):
        _send(store, NOW, name=f"n-{index}")

    report = _run(store, RecordingEnqueuer(), NOW, batch_size=10)

    assert (report.claimed, report.sent, report.batches) == (25, 25, 3)


def test_dispatch_due_out_of_time_claims_nothing(store: Store) -> None:
    _send(store, NOW)

    report = _run(store, RecordingEnqueuer(), NOW, time_left=lambda: 0.0)

    assert (report.claimed, report.out_of_time) == (0, True)


# --- cancel, get, list --------------------------------------------------------------------------------------------


def test_cancel_schedule_never_sent(store: Store) -> None:
    schedule_id = _send(store, NOW, name="cancelled")
    enqueuer = RecordingEnqueuer()

    cancelled = cancel_schedule(store, schedule_id)
    _run(store, enqueuer, NOW + timedelta(days=1))

    assert cancelled.status == "cancelled"
    assert enqueuer.sends == []
    assert store.get_schedule(schedule_id).status == "cancelled"


def test_cancel_schedule_twice_answers_the_same(store: Store) -> None:
    schedule_id = _send(store, NOW)
    cancel_schedule(store, schedule_id)

    assert cancel_schedule(store, schedule_id).status == "cancelled"


def test_cancel_schedule_after_sent_conflicts(store: Store) -> None:
    schedule_id = _send(store, NOW)
    _run(store, RecordingEnqueuer(), NOW)

    with pytest.raises(ConflictError):
        cancel_schedule(store, schedule_id)


def test_cancel_schedule_while_claimed_conflicts(store: Store) -> None:
    schedule_id = _send(store, NOW)
    store.claim_due(NOW, 10, TIMEOUT)

    with pytest.raises(ConflictError):
        cancel_schedule(store, schedule_id)


class _QueuedButUnanswered:
    """An enqueuer whose jobs reach the expansion queue, but whose answers are lost: each reports an UpstreamError."""

    def __init__(self) -> None:
        self.sends: list[DueSend] = []

    def enqueue_all(self, sends: Sequence[DueSend]) -> dict[str, Exception]:
        self.sends.extend(sends)
        return {send.schedule_id: UpstreamError("no answer from the expansion queue") for send in sends}


def test_cancel_schedule_whose_send_a_worker_started_conflicts(database: Database) -> None:
    # The cron's hand-off reached the queue but its answer was lost: the row is ``scheduled`` again (a retry), and a
    # worker took the job. A 204 would say "never sent" while every recipient gets it.
    repository = AudienceRepository(database)
    schedule = repository.create_scheduled_send(
        NewScheduledSend("n-race", {"topic": "news/daily"}, CONTENT, ["push"], NOW - timedelta(minutes=1))
    )
    enqueuer = _QueuedButUnanswered()
    assert _run(repository, enqueuer, NOW).retried == 1
    assert repository.start_expansion(schedule.send_id, str(uuid.uuid4()), 120).status == "expanding"

    with pytest.raises(ConflictError, match="being sent"):
        cancel_schedule(repository, schedule.schedule_id)
    assert repository.get_schedule(schedule.schedule_id).status == "scheduled"


def test_cancel_schedule_local_time_partly_sent_stops_the_other_zones(store: Store) -> None:
    _users(store, *ZONES)
    schedule_id = _local_send(store, datetime(2026, 6, 15, 9, 0), NOW)
    enqueuer = RecordingEnqueuer()
    _run(store, enqueuer, datetime(2026, 6, 15, 0, 0, tzinfo=UTC))  # Tokyo

    cancel_schedule(store, schedule_id)
    _run(store, enqueuer, datetime(2026, 6, 16, tzinfo=UTC))

    assert [send.zones for send in enqueuer.sends] == [["Asia/Tokyo"]]


def test_dispatch_due_marks_the_zones_it_hands_over_before_any_run_starts(database: Database) -> None:
    """A hand-off whose worker died before it began left no mark: the last claim's sweep then took its users for late
    (it leaves those of zones handed over and not done to their run, back from the queue)."""
    store = AudienceRepository(database)
    _users(store, *ZONES)
    schedule_id = _local_send(store, datetime(2026, 6, 15, 9, 0), NOW)

    _run(store, RecordingEnqueuer(), datetime(2026, 6, 15, 0, 0, tzinfo=UTC))  # Tokyo's 09:00

    assert store.zones_pending(store.get_schedule(schedule_id).send_id) == {"Asia/Tokyo"}


@pytest.mark.parametrize("schedule_id", ["not-a-uuid", "8af49bf1-ff72-4b9b-87c7-1b17b8b6c130"])
def test_get_schedule_unknown_not_found(store: Store, schedule_id: str) -> None:
    with pytest.raises(NotFoundError):
        get_schedule(store, schedule_id)


def test_cancel_schedule_unknown_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        cancel_schedule(store, str(uuid.uuid4()))


def test_get_schedule_shows_the_send(store: Store) -> None:
    schedule_id = _send(store, NOW, name="shown")

    schedule = get_schedule(store, schedule_id)

    assert (schedule.notification_id, schedule.status, schedule.to, schedule.content) == (
        "shown",
        "scheduled",
        {"topic": "news/daily"},
        CONTENT,
    )
    assert (schedule.fire_at, schedule.local_time, schedule.attempts) == (NOW, False, 0)


def test_list_schedules_pages_newest_first_by_status(store: Store) -> None:
    ids = [_send(store, NOW) for _ in range(5)]
    cancel_schedule(store, ids[0])

    first = list_schedules(store, "scheduled", limit=3)
    assert first.next is not None
    second = list_schedules(store, "scheduled", first.next, limit=3)

    listed = [schedule.schedule_id for schedule in [*first.schedules, *second.schedules]]
    assert sorted(listed) == sorted(ids[1:])
    assert len(set(listed)) == 4
    assert second.next is None
    assert [item.created_at for item in first.schedules] == sorted(
        (item.created_at for item in first.schedules), reverse=True
    )
    assert [s.schedule_id for s in list_schedules(store, "cancelled").schedules] == [ids[0]]


def test_list_schedules_unknown_status_names_the_field(store: Store) -> None:
    with pytest.raises(InvalidRequestError, match="status"):
        list_schedules(store, "queued")


@pytest.mark.parametrize("cursor", ["garbage", "W10", "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgIngiXQ"])
def test_list_schedules_foreign_cursor_names_the_field(store: Store, cursor: str) -> None:
    with pytest.raises(InvalidRequestError, match="cursor"):
        list_schedules(store, None, cursor)


def test_create_scheduled_send_same_notification_twice_conflicts(store: Store) -> None:
    _send(store, NOW, name="once")

    with pytest.raises(ConflictError):
        _send(store, NOW, name="once")


# --- local time ---------------------------------------------------------------------------------------------------


def test_dispatch_due_local_time_each_zone_at_its_own_instant(store: Store) -> None:
    _users(store, *ZONES, "Europe/Paris")
    local_at = datetime(2026, 6, 15, 9, 0)  # Tokyo 00:00Z, Paris 07:00Z, New York 13:00Z
    schedule_id = _local_send(store, local_at, NOW)
    enqueuer = RecordingEnqueuer()
    handed: list[tuple[datetime, list[str] | None]] = []

    for minute in range(0, 23 * 60, 30):
        now = datetime(2026, 6, 14, 23, 0, tzinfo=UTC) + timedelta(minutes=minute)
        before = len(enqueuer.sends)
        _run(store, enqueuer, now)
        handed.extend((now, send.zones) for send in enqueuer.sends[before:])

    assert handed == [
        (datetime(2026, 6, 15, 0, 0, tzinfo=UTC), ["Asia/Tokyo"]),
        (datetime(2026, 6, 15, 7, 0, tzinfo=UTC), ["Europe/Paris"]),
        (datetime(2026, 6, 15, 13, 0, tzinfo=UTC), ["America/New_York"]),
        # The last claim's empty job: its expansion marks the send expanded (and writes the record, if none).
        (datetime(2026, 6, 15, 21, 0, tzinfo=UTC), []),
    ]
    schedule = store.get_schedule(schedule_id)
    # Sent once every clock has shown 09:00 (UTC-12's, 21:00Z): no zone can get a user in time after that.
    assert (schedule.status, schedule.zones_done_until) == ("sent", datetime(2026, 6, 15, 21, 0, tzinfo=UTC))


def test_dispatch_due_local_time_rearmed_to_the_next_zone(store: Store) -> None:
    _users(store, *ZONES)
    schedule_id = _local_send(store, datetime(2026, 6, 15, 9, 0), NOW)

    report = _run(store, RecordingEnqueuer(), datetime(2026, 6, 15, 0, 1, tzinfo=UTC))

    schedule = store.get_schedule(schedule_id)
    assert (report.rearmed, report.sent) == (1, 0)
    # The next instant any clock shows 09:00 (UTC+8:45, 00:15Z), though no user is there yet.
    assert (schedule.status, schedule.fire_at, schedule.attempts) == (
        "scheduled",
        datetime(2026, 6, 15, 0, 15, tzinfo=UTC),
        0,
    )


def test_dispatch_due_local_time_already_past_in_some_zones_sent_at_once(store: Store) -> None:
    _users(store, *ZONES)
    now = datetime(2026, 6, 15, 8, 0, tzinfo=UTC)  # 09:00 has passed in Tokyo and Paris, not in New York
    _local_send(store, datetime(2026, 6, 15, 9, 0), now)
    enqueuer = RecordingEnqueuer()

    _run(store, enqueuer, now)
    _run(store, enqueuer, datetime(2026, 6, 15, 13, 0, tzinfo=UTC))

    assert [send.zones for send in enqueuer.sends] == [["Asia/Tokyo", "Europe/Paris"], ["America/New_York"]]


def test_dispatch_due_local_time_past_everywhere_sent_at_once_to_all(store: Store) -> None:
    _users(store, *ZONES)
    _local_send(store, datetime(2026, 6, 1, 9, 0), NOW)
    enqueuer = RecordingEnqueuer()

    report = _run(store, enqueuer, NOW)

    assert report.sent == 1
    assert [send.zones for send in enqueuer.sends] == [sorted(ZONES)]


@pytest.mark.parametrize(
    ("local_at", "zone", "instant"),
    [
        # 02:30 does not exist in Paris on 2026-03-29 (02:00 → 03:00): moved forward by the gap, 03:30 CEST.
        (datetime(2026, 3, 29, 2, 30), "Europe/Paris", datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
        # 02:30 exists twice in Paris on 2026-10-25 (03:00 → 02:00): the first, 02:30 CEST.
        (datetime(2026, 10, 25, 2, 30), "Europe/Paris", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        # New York's gap on 2026-03-08 (02:00 → 03:00): 03:30 EDT.
        (datetime(2026, 3, 8, 2, 30), "America/New_York", datetime(2026, 3, 8, 7, 30, tzinfo=UTC)),
        # New York's fold on 2026-11-01 (02:00 → 01:00): 01:30 EDT, the first.
        (datetime(2026, 11, 1, 1, 30), "America/New_York", datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
    ],
    ids=["paris-gap", "paris-fold", "new-york-gap", "new-york-fold"],
)
def test_dispatch_due_local_time_dst_gap_and_fold(
    store: Store, local_at: datetime, zone: str, instant: datetime
) -> None:
    _users(store, zone, "Asia/Tokyo")
    _local_send(store, local_at, local_at.replace(tzinfo=UTC) - timedelta(days=2))
    enqueuer = RecordingEnqueuer()
    # Tokyo (no DST) goes first; then the zone's turn must come exactly at its instant.
    _run(store, enqueuer, instant - timedelta(hours=1))
    _run(store, enqueuer, instant - timedelta(seconds=1))
    before = [send.zones for send in enqueuer.sends]
    at = _run(store, enqueuer, instant)

    assert before == [["Asia/Tokyo"]]
    assert [send.zones for send in enqueuer.sends] == [["Asia/Tokyo"], [zone]]
    assert at.claimed == 1


def test_dispatch_due_local_time_zone_with_a_new_user_reached_at_the_next_handoff(store: Store) -> None:
    _users(store, "Asia/Tokyo", "America/New_York")
    _local_send(store, datetime(2026, 6, 15, 9, 0), NOW)
    enqueuer = RecordingEnqueuer()
    _run(store, enqueuer, datetime(2026, 6, 15, 0, 0, tzinfo=UTC))  # Tokyo; next: New York at 13:00Z
    store.put_user("newcomer", UserRequest(timezone="Europe/Paris"))

    _run(store, enqueuer, datetime(2026, 6, 15, 13, 0, tzinfo=UTC))

    assert [send.zones for send in enqueuer.sends] == [["Asia/Tokyo"], ["America/New_York", "Europe/Paris"]]


def _every_minute(store: Store, enqueuer: RecordingEnqueuer, start: datetime, end: datetime) -> list[Any]:
    """Run the cron once a minute from ``start`` until ``end``; return the instant of each zone set handed over."""
    handed: list[Any] = []
    now = start
    while now < end:
        before = len(enqueuer.sends)
        _run(store, enqueuer, now)
        handed.extend((now, send.zones) for send in enqueuer.sends[before:])
        now += timedelta(minutes=1)
    return handed


def test_dispatch_due_local_time_zone_with_its_first_user_after_the_last_zone_reached_at_its_instant(
    store: Store,
) -> None:
    _users(store, "Asia/Tokyo")
    schedule_id = _local_send(store, datetime(2026, 6, 15, 9, 0), NOW)
    enqueuer = RecordingEnqueuer()
    start = datetime(2026, 6, 14, 23, 58, tzinfo=UTC)
    handed = _every_minute(store, enqueuer, start, datetime(2026, 6, 15, 1, 0, tzinfo=UTC))
    store.put_user("amelie", UserRequest(timezone="Europe/Paris"))  # Tokyo's 10:00, Paris's 03:00

    handed += _every_minute(store, enqueuer, datetime(2026, 6, 15, 1, 0, tzinfo=UTC), datetime(2026, 6, 16, tzinfo=UTC))

    assert handed == [
        (datetime(2026, 6, 15, 0, 0, tzinfo=UTC), ["Asia/Tokyo"]),
        (datetime(2026, 6, 15, 7, 0, tzinfo=UTC), ["Europe/Paris"]),
        (datetime(2026, 6, 15, 21, 0, tzinfo=UTC), []),
    ]
    schedule = store.get_schedule(schedule_id)
    # Sent once 09:00 has come in every zone: UTC-12's clock shows it last, at 21:00Z.
    assert (schedule.status, schedule.sent_at) == ("sent", datetime(2026, 6, 15, 21, 0, tzinfo=UTC))


def test_dispatch_due_local_time_send_made_before_any_user_reaches_users_made_later(store: Store) -> None:
    schedule_id = _local_send(store, datetime(2026, 6, 15, 9, 0), NOW)
    enqueuer = RecordingEnqueuer()
    _every_minute(store, enqueuer, datetime(2026, 6, 14, 18, 0, tzinfo=UTC), datetime(2026, 6, 14, 20, 0, tzinfo=UTC))
    _users(store, "Europe/Paris", "America/New_York")  # imported after Kiritimati's 09:00

    handed = _every_minute(store, enqueuer, datetime(2026, 6, 14, 20, 0, tzinfo=UTC), datetime(2026, 6, 16, tzinfo=UTC))

    assert handed == [
        (datetime(2026, 6, 15, 7, 0, tzinfo=UTC), ["Europe/Paris"]),
        (datetime(2026, 6, 15, 13, 0, tzinfo=UTC), ["America/New_York"]),
        (datetime(2026, 6, 15, 21, 0, tzinfo=UTC), []),
    ]
    assert store.get_schedule(schedule_id).status == "sent"


def test_dispatch_due_local_time_send_that_never_had_users_hands_over_one_empty_job_at_its_last_claim(
    store: Store,
) -> None:
    """Its expansion writes the notification's record, 0 deliveries, and marks the send expanded: the send has a
    status to show, not a record that never comes."""
    schedule_id = _local_send(store, datetime(2026, 6, 15, 9, 0), NOW)
    enqueuer = RecordingEnqueuer()

    handed = _every_minute(store, enqueuer, datetime(2026, 6, 14, 18, 0, tzinfo=UTC), datetime(2026, 6, 16, tzinfo=UTC))

    assert handed == [(datetime(2026, 6, 15, 21, 0, tzinfo=UTC), [])]
    assert store.get_schedule(schedule_id).status == "sent"


def test_dispatch_due_local_time_claims_once_per_distinct_clock_instant_not_per_zone(store: Store) -> None:
    _users(store, "Europe/Paris")
    _local_send(store, datetime(2026, 6, 15, 9, 0), NOW)
    claimed = 0

    now = datetime(2026, 6, 14, 18, 0, tzinfo=UTC)
    while now < datetime(2026, 6, 16, tzinfo=UTC):
        claimed += _run(store, RecordingEnqueuer(), now).claimed
        now += timedelta(minutes=1)

    # About 40 distinct UTC offsets for some 600 zones: one claim at each instant one of them shows 09:00.
    assert claimed == len(clock_instants(datetime(2026, 6, 15, 9, 0)))
    assert 30 <= claimed <= 45


def test_dispatch_due_local_time_failed_zone_retried_without_losing_it(store: Store) -> None:
    _users(store, *ZONES)
    schedule_id = _local_send(store, datetime(2026, 6, 15, 9, 0), NOW, name="local")
    enqueuer = RecordingEnqueuer()
    enqueuer.failing["local"] = UpstreamError("down")
    _run(store, enqueuer, datetime(2026, 6, 15, 7, 0, tzinfo=UTC))  # Tokyo and Paris due, the enqueue fails
    del enqueuer.failing["local"]

    _run(store, enqueuer, datetime(2026, 6, 15, 7, 1, tzinfo=UTC))

    assert [send.zones for send in enqueuer.sends] == [["Asia/Tokyo", "Europe/Paris"]]
    # On to the next instant a clock shows 09:00 (UTC+1, 08:00Z), New York's still to come.
    assert store.get_schedule(schedule_id).fire_at == datetime(2026, 6, 15, 8, 0, tzinfo=UTC)


def test_dispatch_due_local_time_out_of_range_in_a_zone_fails_alone_and_its_batch_is_sent(store: Store) -> None:
    _users(store, "Asia/Tokyo")
    ok = _send(store, NOW, name="ok")
    # A wall clock stored before ``at`` was bounded: year 1 in Tokyo is before the first instant a datetime holds.
    odd = _send(store, NOW, datetime(1, 1, 1), name="odd")
    enqueuer = RecordingEnqueuer()

    report = _run(store, enqueuer, NOW)

    assert (report.sent, report.failed, [send.notification_id for send in enqueuer.sends]) == (1, 1, ["ok"])
    assert store.get_schedule(ok).status == "sent"
    failed = store.get_schedule(odd)
    assert (failed.status, failed.last_error) == (
        "failed",
        "InvalidRequestError: at: is out of range in the time zone Asia/Tokyo",
    )


def test_first_fire_at_with_no_users_is_the_earliest_clock() -> None:
    # Pacific/Kiritimati is UTC+14: the first place where 09:00 comes.
    assert first_fire_at(datetime(2026, 6, 15, 9, 0), [], NOW) == datetime(2026, 6, 14, 19, 0, tzinfo=UTC)
