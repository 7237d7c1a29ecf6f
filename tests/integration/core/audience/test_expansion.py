"""Integration tests of the expansion worker's logic (core/audience/expansion.py) on the audience in a real PostgreSQL
(the send's cursor and lease are SQL): a local-time send's zone hand-offs, one after a run of another zone failed.

The ledger and the delivery queue are the in-memory fakes; the queue refuses the calls a test names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from core.audience import expansion
from core.audience.connection import Database
from core.audience.expansion import expand_send
from core.audience.models import UserRequest
from core.audience.repository import AudienceRepository
from core.audience.schedules import NewScheduledSend
from core.audience.sends import ExpansionJob, NewSend
from core.errors import UpstreamError
from core.queue import DeliveryQueue, SendOutcome
from tests.fakes.audience import FakeExpansionQueue, FakeSendLedger
from tests.fakes.sqs import FakeSqsClient

KATHMANDU, KOLKATA = "Asia/Kathmandu", "Asia/Kolkata"
# u01, u03, u05, u07 in Kathmandu; u02, u04, u06, u08 in Kolkata: ids interleaved, so a zone's users lie on both
# sides of the other zone's cursor.
ZONE_OF = {f"u{index:02d}": KATHMANDU if index % 2 else KOLKATA for index in range(1, 9)}


class RefusingQueue(DeliveryQueue):
    """The delivery queue on a fake SQS, refusing every message of the calls numbered in ``refuse``."""

    def __init__(self, refuse: set[int]) -> None:
        self.sqs = FakeSqsClient(key=lambda body: json.loads(body)["delivery_key"])
        super().__init__(self.sqs, "https://queue")
        self.calls = 0
        self.refuse = refuse

    def send(self, messages: Sequence[tuple[str, str]], time_left: Callable[[], float] | None = None) -> SendOutcome:
        """Refuse the call when its number is in ``refuse``, else send."""
        self.calls += 1
        if self.calls in self.refuse:
            return SendOutcome(failed={key: "InternalError" for key, _body in messages})
        return super().send(messages, time_left)

    def reached(self) -> list[str]:
        """Return the user ids of every message sent, in the order sent."""
        return [json.loads(body)["recipient"]["user_id"] for body in self.sqs.sent.values()]


@pytest.fixture
def send_id(database: Database) -> str:
    """A local-time send (09:00 in each zone) to every user of both zones, recorded as the cron would find it."""
    repository = AudienceRepository(database)
    for user_id, zone in ZONE_OF.items():
        repository.put_user(user_id, UserRequest(timezone=zone, data={"plan": "pro"}))
    schedule = repository.create_scheduled_send(
        NewScheduledSend(
            notification_id="n-zones",
            target={"where": {"field": "plan", "eq": "pro"}},
            content={"text": "Hi"},
            channels=["browser"],
            fire_at=datetime(2026, 5, 1, 3, 15, tzinfo=UTC),
            local_at=datetime(2026, 5, 1, 9, 0),
        )
    )
    return schedule.send_id


def _expand(database: Database, send_id: str, zone: str, queue: RefusingQueue) -> Any:
    job = ExpansionJob(send_id=send_id, notification_id="n-zones", zones=[zone])
    return expand_send(job, AudienceRepository(database), FakeSendLedger(), queue, FakeExpansionQueue(), page_size=2)


def _fail_after_first_page(db: Any, database: Database, send_id: str, queue: RefusingQueue) -> None:
    """Run Kathmandu's hand-off until the queue refuses its second page, then let its lease lapse (a run that died)."""
    with pytest.raises(UpstreamError):
        _expand(database, send_id, KATHMANDU, queue)
    with db.cursor() as cursor:
        cursor.execute("UPDATE sends SET leased_until = now() - interval '1 second'")
    db.commit()


def test_expand_send_next_zone_after_a_failed_zone_run_reaches_all_its_users(
    db: Any, database: Database, send_id: str
) -> None:
    queue = RefusingQueue(refuse={2})
    _fail_after_first_page(db, database, send_id, queue)

    report = _expand(database, send_id, KOLKATA, queue)

    assert report.status == "expanded"
    assert sorted(uid for uid in queue.reached() if ZONE_OF[uid] == KOLKATA) == ["u02", "u04", "u06", "u08"]


def test_expand_send_same_zone_after_its_failed_run_resumes_after_its_cursor(
    db: Any, database: Database, send_id: str
) -> None:
    queue = RefusingQueue(refuse={2})
    _fail_after_first_page(db, database, send_id, queue)

    report = _expand(database, send_id, KATHMANDU, queue)

    assert report.status == "expanded"
    # Page one (u01, u03) was enqueued by the failed run; the retry goes on after it, nothing is sent twice.
    assert queue.reached() == ["u01", "u03", "u05", "u07"]


def _recipients(db: Any, send_id: str) -> int:
    with db.cursor() as cursor:
        cursor.execute("SELECT recipients FROM sends WHERE id = %s", (send_id,))
        count: int = cursor.fetchone()[0]
    return count


def test_expand_send_zone_job_delivered_twice_enqueues_and_counts_its_users_once(
    db: Any, database: Database, send_id: str
) -> None:
    queue = RefusingQueue(refuse=set())
    _expand(database, send_id, KATHMANDU, queue)

    again = _expand(database, send_id, KATHMANDU, queue)

    assert again.status == "expanded"
    assert (again.pages, again.enqueued) == (0, 0)
    assert queue.reached() == ["u01", "u03", "u05", "u07"]
    assert _recipients(db, send_id) == 4


def test_expand_send_zone_run_after_another_zone_failed_then_the_first_zone_again_counts_each_user_once(
    db: Any, database: Database, send_id: str
) -> None:
    queue = RefusingQueue(refuse={2})
    _fail_after_first_page(db, database, send_id, queue)
    _expand(database, send_id, KOLKATA, queue)

    report = _expand(database, send_id, KATHMANDU, queue)  # the failed run's job, back from the queue

    assert report.status == "expanded"
    assert sorted(queue.reached()) == sorted(ZONE_OF)
    assert _recipients(db, send_id) == len(ZONE_OF)


def test_expand_send_zones_planned_again_with_one_more_reach_and_count_each_user_once(
    db: Any, database: Database, send_id: str
) -> None:
    queue = RefusingQueue(refuse=set())
    _expand(database, send_id, KATHMANDU, queue)
    job = ExpansionJob(send_id=send_id, notification_id="n-zones", zones=[KATHMANDU, KOLKATA])

    # The cron's claim planned again (its mark failed) once Kolkata's clock came too: both zones in one job.
    expand_send(job, AudienceRepository(database), FakeSendLedger(), queue, FakeExpansionQueue(), page_size=2)

    assert sorted(queue.reached()) == sorted(ZONE_OF)
    assert _recipients(db, send_id) == len(ZONE_OF)


class LeaseTakenAtFirstPage(AudienceRepository):
    """The audience store, where another run takes the send's lease just before this run records its first page."""

    taken = False

    def advance_send(self, send_id: str, *args: Any, **kwargs: Any) -> bool:
        """Let another run take the lease (then lapse, as a run that died), once; then record as the store does."""
        if not self.taken:
            self.taken = True
            self._db.run(
                lambda cursor: cursor.execute(
                    "UPDATE sends SET lease = gen_random_uuid(), leased_until = now() - interval '1 second'"
                ),
                "taking the lease",
            )
        return super().advance_send(send_id, *args, **kwargs)


def test_expand_send_run_whose_lease_was_taken_puts_its_job_back_and_the_job_reaches_every_user(
    db: Any, database: Database, send_id: str
) -> None:
    queue, expansion = RefusingQueue(refuse=set()), FakeExpansionQueue()
    job = ExpansionJob(send_id=send_id, notification_id="n-zones", zones=[KATHMANDU])

    report = expand_send(job, LeaseTakenAtFirstPage(database), FakeSendLedger(), queue, expansion, page_size=2)
    assert (report.status, expansion.jobs, expansion.delays) == ("lease lost", [job], [30])
    expand_send(job, AudienceRepository(database), FakeSendLedger(), queue, FakeExpansionQueue(), page_size=2)

    assert sorted(set(queue.reached())) == ["u01", "u03", "u05", "u07"]
    assert _recipients(db, send_id) == 4


def _move(database: Database, user_id: str, zone: str) -> None:
    """Change a user's time zone as ``PUT /v1/users/{id}`` does."""
    AudienceRepository(database).put_user(user_id, UserRequest(timezone=zone, data={"plan": "pro"}))


def test_expand_send_user_moved_to_a_zone_handed_over_later_is_enqueued_and_counted_once(
    db: Any, database: Database, send_id: str
) -> None:
    queue = RefusingQueue(refuse=set())
    _expand(database, send_id, KATHMANDU, queue)
    _move(database, "u01", KOLKATA)  # reached with Kathmandu; Kolkata's clock comes 15 minutes later

    report = _expand(database, send_id, KOLKATA, queue)

    assert (report.status, report.enqueued) == ("expanded", 4)
    assert sorted(queue.reached()) == sorted(ZONE_OF)
    assert _recipients(db, send_id) == len(ZONE_OF)


class MovesAUserAfterTheFirstPage(AudienceRepository):
    """The audience store, where ``u01`` moves from Kathmandu to Kolkata once the first page is recorded."""

    moved = False

    def advance_send(self, send_id: str, *args: Any, **kwargs: Any) -> bool:
        """Record as the store does, then move ``u01``, once."""
        recorded = super().advance_send(send_id, *args, **kwargs)
        if not self.moved:
            self.moved = True
            self.put_user("u01", UserRequest(timezone=KOLKATA, data={"plan": "pro"}))
        return recorded


def test_expand_send_user_moved_between_the_zones_of_one_job_is_enqueued_and_counted_once(
    db: Any, database: Database, send_id: str
) -> None:
    queue = RefusingQueue(refuse=set())
    job = ExpansionJob(send_id=send_id, notification_id="n-zones", zones=[KATHMANDU, KOLKATA])

    report = expand_send(
        job, MovesAUserAfterTheFirstPage(database), FakeSendLedger(), queue, FakeExpansionQueue(), page_size=2
    )

    assert (report.status, report.enqueued) == ("expanded", len(ZONE_OF))
    assert sorted(queue.reached()) == sorted(ZONE_OF)
    assert _recipients(db, send_id) == len(ZONE_OF)


class DiesAfterTheFirstEnqueue(AudienceRepository):
    """The audience store, failing the first page's record once: the run dies after its page was enqueued."""

    failed = False

    def advance_send(self, send_id: str, *args: Any, **kwargs: Any) -> bool:
        """Fail once, as a lost connection does; then record as the store does."""
        if not self.failed:
            self.failed = True
            raise UpstreamError("the connection to the database was lost")
        return super().advance_send(send_id, *args, **kwargs)


def test_expand_send_zone_page_enqueued_then_job_retried_is_enqueued_again_and_counted_once(
    db: Any, database: Database, send_id: str
) -> None:
    queue = RefusingQueue(refuse=set())
    job = ExpansionJob(send_id=send_id, notification_id="n-zones", zones=[KATHMANDU])
    with pytest.raises(UpstreamError):
        expand_send(job, DiesAfterTheFirstEnqueue(database), FakeSendLedger(), queue, FakeExpansionQueue(), page_size=2)
    with db.cursor() as cursor:
        cursor.execute("UPDATE sends SET leased_until = now() - interval '1 second'")
    db.commit()

    report = _expand(database, send_id, KATHMANDU, queue)  # the job, back from the queue

    # Its first page again, under the same delivery keys (the consumer sends a delivered one once), counted once.
    assert (report.status, report.enqueued) == ("expanded", 4)
    assert sorted(queue.reached()) == ["u01", "u01", "u03", "u03", "u05", "u07"]
    assert _recipients(db, send_id) == 4


def test_expand_send_page_is_built_and_enqueued_a_chunk_at_a_time(
    monkeypatch: pytest.MonkeyPatch, database: Database, send_id: str
) -> None:
    # A page of 500 users with their devices, each message up to 248 KiB, built whole, took the function's memory.
    monkeypatch.setattr(expansion, "ENQUEUE_CHUNK_BYTES", 1)
    queue = RefusingQueue(refuse=set())
    job = ExpansionJob(send_id=send_id, notification_id="n-zones", zones=[KATHMANDU])

    report = expand_send(job, AudienceRepository(database), FakeSendLedger(), queue, FakeExpansionQueue(), page_size=4)

    assert (report.status, report.pages, report.enqueued) == ("expanded", 1, 4)
    assert queue.calls == 4  # one message a chunk: the page's four
    assert queue.reached() == ["u01", "u03", "u05", "u07"]


def test_expand_send_page_failing_after_its_first_chunk_is_enqueued_again_whole_and_counted_once(
    monkeypatch: pytest.MonkeyPatch, db: Any, database: Database, send_id: str
) -> None:
    monkeypatch.setattr(expansion, "ENQUEUE_CHUNK_BYTES", 1)
    queue = RefusingQueue(refuse={2})
    job = ExpansionJob(send_id=send_id, notification_id="n-zones", zones=[KATHMANDU])
    run = lambda: expand_send(  # noqa: E731
        job, AudienceRepository(database), FakeSendLedger(), queue, FakeExpansionQueue(), page_size=4
    )
    with pytest.raises(UpstreamError):
        run()
    with db.cursor() as cursor:
        cursor.execute("UPDATE sends SET leased_until = now() - interval '1 second'")
    db.commit()

    report = run()

    assert report.status == "expanded"
    # The page's first chunk went before its second was refused: the page is enqueued again whole, under the same
    # delivery keys (the consumer sends a key once), and its users are counted once.
    assert queue.reached() == ["u01", "u01", "u03", "u05", "u07"]
    assert _recipients(db, send_id) == 4


def test_expand_send_failing_after_a_chunk_of_its_page_counts_the_deliveries_on_their_way(
    monkeypatch: pytest.MonkeyPatch, database: Database
) -> None:
    repository = AudienceRepository(database)
    for user_id in ("a1", "a2", "b" + "x" * 126):
        repository.put_user(user_id, UserRequest(timezone="UTC", data={"plan": "pro"}))
    send, _ = repository.create_send(
        NewSend("n-part", {"where": {"field": "plan", "eq": "pro"}}, {"text": "hi"}, ["browser"])
    )
    monkeypatch.setattr(expansion, "ENQUEUE_CHUNK_BYTES", 1)
    # Between the short ids' messages and the long id's: the page's last message fails the send.
    monkeypatch.setattr(expansion, "DELIVERY_MESSAGE_BYTES_LIMIT", 700)
    queue, ledger = RefusingQueue(refuse=set()), FakeSendLedger()

    report = expand_send(
        ExpansionJob(send_id=send.send_id, notification_id="n-part"), repository, ledger, queue, FakeExpansionQueue()
    )

    # The two enqueued before it are delivered: the notification counts them beside its error.
    assert (report.status, report.enqueued) == ("failed", 2)
    assert queue.reached() == ["a1", "a2"]
    assert ledger.records["n-part"].delivery_count == 2
    assert ledger.records["n-part"].error == "the browser message exceeds 0 KiB"


def test_sweep_leaves_the_users_of_a_zone_whose_hand_off_comes_back_to_it(db: Any, database: Database) -> None:
    """Pago Pago's hand-off failed for now (its job back from the queue in 15 minutes, or 90 when its worker died);
    the last claim's sweep ran first and skipped its user as too late, and the job, back, left that user out: never
    reached, though in Pago Pago when its clock showed 09:00."""
    repository = AudienceRepository(database)
    repository.put_user("u1", UserRequest(timezone="Pacific/Pago_Pago"))  # UTC-11, there all along
    repository.put_user("u2", UserRequest(timezone="Etc/GMT+12"))  # UTC-12: the last clock to show 09:00
    schedule = repository.create_scheduled_send(
        NewScheduledSend(
            notification_id="n-sweep",
            target={"user_ids": ["u1", "u2"]},
            content={"text": "Hi"},
            channels=["browser"],
            fire_at=datetime(2026, 5, 1, 20, 0, tzinfo=UTC),
            local_at=datetime(2026, 5, 1, 9, 0),
        )
    )
    ledger, queue = FakeSendLedger(), RefusingQueue(refuse={1})  # Pago Pago's first page refused once (an outage)

    def run(job: ExpansionJob) -> Any:
        return expand_send(job, repository, ledger, queue, FakeExpansionQueue(), page_size=10)

    pago = ExpansionJob(send_id=schedule.send_id, notification_id="n-sweep", zones=["Pacific/Pago_Pago"])
    with pytest.raises(UpstreamError):
        run(pago)
    with db.cursor() as cursor:  # the failed run's lease lapses
        cursor.execute("UPDATE sends SET leased_until = now() - interval '1 second'")
    db.commit()
    swept = run(ExpansionJob(send_id=schedule.send_id, notification_id="n-sweep", zones=["Etc/GMT+12"], sweep=True))
    assert ("n-sweep", "browser:u1") not in ledger.rows

    run(pago)  # back from the queue

    assert swept.status == "expanded"
    assert sorted(queue.reached()) == ["u1", "u2"]
    assert ("n-sweep", "browser:u1") not in ledger.rows  # reached, not skipped
    assert repository.zones_pending(schedule.send_id) == set()


class LedgerFailingCounts(FakeSendLedger):
    """The ledger, refusing the first ``failures`` writes of a record's count (DynamoDB throttling)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def count_deliveries(self, notification_id: str, delivery_count: int, error: str | None = None) -> None:
        """Fail while failures are left, then write."""
        if self.failures:
            self.failures -= 1
            raise UpstreamError("updating the ledger failed (ProvisionedThroughputExceededException)")
        super().count_deliveries(notification_id, delivery_count, error)


@pytest.mark.parametrize("failures", [1, 2])
def test_send_whose_last_page_count_write_failed_is_retried_until_the_count_is_written(
    db: Any, database: Database, failures: int
) -> None:
    """The last page's write failed, logged ("the next page writes it again"): no page came next, and the status said
    none of the send's deliveries was queued until each had a row."""
    repository = AudienceRepository(database)
    for user_id in ("a1", "a2", "a3"):
        repository.put_user(user_id, UserRequest(timezone="UTC", data={"plan": "pro"}))
    send, _ = repository.create_send(
        NewSend("n-count", {"where": {"field": "plan", "eq": "pro"}}, {"text": "hi"}, ["browser"])
    )
    ledger, queue = LedgerFailingCounts(failures), RefusingQueue(refuse=set())
    job = ExpansionJob(send_id=send.send_id, notification_id="n-count")

    if failures > 1:  # the final write failed too: the job fails, and comes back from the queue
        with pytest.raises(UpstreamError):
            expand_send(job, repository, ledger, queue, FakeExpansionQueue())
        with db.cursor() as cursor:  # after the failed run's lease lapsed
            cursor.execute("UPDATE sends SET leased_until = now() - interval '1 second'")
        db.commit()
    report = expand_send(job, repository, ledger, queue, FakeExpansionQueue())

    assert report.status == "expanded"
    assert sorted(queue.reached()) == ["a1", "a2", "a3"]
    assert ledger.records["n-count"].delivery_count == 3
