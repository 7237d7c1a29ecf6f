"""The cron's Lambda (cron/handler.py) with EventBridge's scheduled event: due sends handed to the expansion queue
under moto, the schedules in a real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.audience.connection import Database
from core.audience.repository import AudienceRepository
from core.audience.schedules import NewScheduledSend
from core.audience.sends import parse_job
from core.errors import UpstreamError
from core.settings import SettingsError
from tests.fakes.audience import RecordingEnqueuer
from tests.fakes.lambda_context import FakeLambdaContext
from tests.support.aws import AwsResources, receive_all

EVENT = json.loads((Path(__file__).parents[2] / "events" / "eventbridge_scheduled.json").read_text())


@pytest.fixture
def cron_env(aws: AwsResources, postgres_url: str, database: Database, monkeypatch: pytest.MonkeyPatch) -> AwsResources:
    """AWS under moto and the database."""
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    return aws


def _schedule(database: Database, notification_id: str, fire_at: datetime, topic: str = "news/daily") -> str:
    return (
        AudienceRepository(database)
        .create_scheduled_send(
            NewScheduledSend(
                notification_id=notification_id,
                target={"topic": topic},
                content={"text": f"hello from {notification_id}"},
                channels=["push"],
                fire_at=fire_at,
            )
        )
        .schedule_id
    )


def _cron(context: FakeLambdaContext) -> Any:
    from cron.handler import handler

    return handler(EVENT, context)


def test_cron_handler_due_send_handed_to_the_expansion_worker_once_then_sent(
    cron_env: AwsResources, database: Database, lambda_context: FakeLambdaContext
) -> None:
    now = datetime.now(UTC)
    schedule_id = _schedule(database, "sched-1", now - timedelta(minutes=1))
    _schedule(database, "sched-later", now + timedelta(hours=1))

    first = _cron(lambda_context)
    second = _cron(lambda_context)

    jobs = [parse_job(message["Body"]) for message in receive_all(cron_env.sqs, cron_env.env["EXPANSION_QUEUE_URL"])]
    schedule = AudienceRepository(database).get_schedule(schedule_id)
    assert [(job.kind, getattr(job, "notification_id", None)) for job in jobs] == [("expand", "sched-1")]
    assert (first["claimed"], first["sent"], second["claimed"]) == (1, 1, 0)
    assert schedule.status == "sent"
    assert receive_all(cron_env.sqs, cron_env.delivery_queue_url) == []


def test_cron_handler_failed_enqueue_retried_later(
    cron_env: AwsResources, database: Database, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cron.handler

    enqueuer = RecordingEnqueuer()
    enqueuer.failing["sched-3"] = UpstreamError("the delivery queue is unavailable")
    monkeypatch.setattr(cron.handler, "build_enqueuer", lambda config: enqueuer)
    now = datetime.now(UTC)
    schedule_id = _schedule(database, "sched-3", now - timedelta(minutes=1))

    report = _cron(lambda_context)

    schedule = AudienceRepository(database).get_schedule(schedule_id)
    assert report["retried"] == 1
    assert schedule.status == "scheduled"
    assert schedule.fire_at > now


def test_cron_handler_no_time_left_claims_nothing(
    cron_env: AwsResources, database: Database, lambda_context: FakeLambdaContext
) -> None:
    _schedule(database, "sched-4", datetime.now(UTC) - timedelta(minutes=1))

    report = _cron(FakeLambdaContext(timeout_seconds=5.0))

    assert (report["claimed"], report["out_of_time"]) == (0, True)


def test_cron_handler_without_database_fails_cold_start_naming_it(
    aws: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL or DATABASE_SECRET_PARAMETER"):
        _cron(lambda_context)


def _local_time_send_ended_days_ago(database: Database) -> str:
    """Return the send id of a local-time send that handed ``u1`` over in one zone and ended four days ago."""
    repository = AudienceRepository(database)
    schedule = repository.create_scheduled_send(
        NewScheduledSend(
            notification_id="local-ended",
            target={"topic": "news/daily"},
            content={"text": "hello"},
            channels=["push"],
            fire_at=datetime.now(UTC) + timedelta(days=1),
            local_at=datetime(2030, 6, 15, 9, 0),
        )
    )
    lease = "5c4f4b0e-4d1c-4f6b-9a51-0d0a3c2b1e7f"
    repository.start_expansion(schedule.send_id, lease, 120)
    repository.advance_send(schedule.send_id, "u1", 1, lease, 120, "Asia/Tokyo", ["u1"])
    repository.finish_send(schedule.send_id, "expanded")
    database.run(
        lambda cursor: cursor.execute(
            "UPDATE scheduled_sends SET status = 'sent', sent_at = now(), updated_at = now() - interval '4 days'"
            " WHERE id = %s",
            (schedule.schedule_id,),
        ),
        "ending the schedule",
    )
    return schedule.send_id


def test_cron_handler_purges_the_recipients_of_a_local_time_send_ended_days_ago(
    cron_env: AwsResources, database: Database, lambda_context: FakeLambdaContext
) -> None:
    send_id = _local_time_send_ended_days_ago(database)

    _cron(lambda_context)

    assert AudienceRepository(database).handed_over(send_id, ["u1"]) == set()


def test_purge_recipients_out_of_time_purges_nothing(cron_env: AwsResources, database: Database) -> None:
    # The purge runs after the sends were dispatched, in what time is left: past it, Lambda would cut the run off.
    from cron.handler import purge_recipients, settings

    send_id = _local_time_send_ended_days_ago(database)
    repository = AudienceRepository(database)

    purged = purge_recipients(repository, settings(), lambda: 0)

    assert (purged, repository.handed_over(send_id, ["u1"])) == (0, {"u1"})
