"""The expansion worker's Lambda (producer/expansion.py) with SQS events under moto and the audience in a real
PostgreSQL: a send to 1,000 users becomes 1,000 recipient deliveries whose status summary adds up, a worker that
resumes sends nothing twice, and an ``EndpointDisabled`` answer disables the device."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core import clients
from core.audience.connection import Database
from core.audience.expansion import NO_DEVICE, NO_USER, TOO_LATE
from core.audience.models import UserRequest
from core.audience.repository import AudienceRepository
from core.audience.schedules import NewScheduledSend, dispatch_due
from core.audience.sends import ExpansionBatchJob, ExpansionJob, ExpansionQueue, SendRequest, accept_send, parse_job
from core.errors import UpstreamError
from core.ledger import DeliveryLedger
from core.models import DeliveryMessage, DeliveryStatus
from tests.fakes.audience import endpoint
from tests.fakes.lambda_context import FakeLambdaContext
from tests.support.aws import ACCOUNT, ADMIN_TOKEN, NAMES, REGION, AwsResources, receive_all
from tests.support.aws import client as aws_client
from tests.support.events import admin_event, api_event, load_event

APPLICATION = f"arn:aws:sns:{REGION}:{ACCOUNT}:app/GCM/android"


@pytest.fixture
def worker_env(aws: AwsResources, postgres_url: str, database: Database, monkeypatch: pytest.MonkeyPatch) -> Any:
    """AWS under moto and the session's PostgreSQL, as the expansion function is configured; the container's
    connection closed with the test."""
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    monkeypatch.setenv("EXPANSION_TIME_MARGIN_SECONDS", "0")
    clients.reset()
    yield aws
    clients.get_database().close()


def _users(db: Any, with_device: int, without_device: int) -> None:
    """Insert users (ids u0000…) in a few statements: the first ``with_device`` with one GCM device each."""
    total = with_device + without_device
    with db.cursor() as cursor:
        cursor.execute(
            "INSERT INTO apps (name, platform, platform_application_arn) VALUES ('android', 'GCM', %s)",
            (APPLICATION,),
        )
        cursor.execute(
            "INSERT INTO users (id, timezone) SELECT format('u%%s', lpad(n::text, 4, '0')), 'UTC'"
            " FROM generate_series(0, %s) AS n",
            (total - 1,),
        )
        cursor.execute(
            "INSERT INTO devices (user_id, app, token, endpoint_arn)"
            " SELECT format('u%%s', lpad(n::text, 4, '0')), 'android', format('t%%s', n),"
            " format(%s, n) FROM generate_series(0, %s) AS n",
            (f"arn:aws:sns:{REGION}:{ACCOUNT}:endpoint/GCM/android/%s", with_device - 1),
        )
    db.commit()


def _sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    template = load_event("sqs_event.json")["Records"][0]
    records = []
    for message in messages:
        record = copy.deepcopy(template)
        record.update({"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"]})
        record.update({"body": message["Body"], "md5OfBody": message["MD5OfBody"]})
        records.append(record)
    return {"Records": records}


def _expand(aws: AwsResources, context: FakeLambdaContext) -> list[dict[str, Any]]:
    """Run the worker on every job visible on the expansion queue, one per invocation (batch size 1), each with its
    own time: ``context``'s timeout from its start (a job handed over by a run that used its time starts afresh)."""
    from producer.expansion import handler

    results: list[dict[str, Any]] = []
    while jobs := receive_all(aws.sqs, aws.env["EXPANSION_QUEUE_URL"]):
        results.extend(
            handler(_sqs_event([job]), replace(context, started=time.monotonic(), aws_request_id=str(uuid.uuid4())))
            for job in jobs
        )
    return results


def _morning_send(repository: AudienceRepository, to: dict[str, Any]) -> None:
    """Schedule a send of "Good morning" at 09:00 of each recipient's clock on 15 June 2026."""

    repository.create_scheduled_send(
        NewScheduledSend(
            "n-morning",
            to,
            {"text": "Good morning"},
            ["browser"],
            fire_at=datetime(2026, 6, 15, 0, 0, tzinfo=UTC),
            local_at=datetime(2026, 6, 15, 9, 0),
        )
    )


def _hand_off(aws: AwsResources, context: FakeLambdaContext, repository: AudienceRepository, now: datetime) -> None:
    """Run the cron at ``now``, then the worker on what it handed over."""
    from cron.handler import build_enqueuer, settings

    dispatch_due(repository, build_enqueuer(settings()), now, 10, timedelta(minutes=5))
    _expand(aws, context)


def _queued_bodies(queue_name: str = "notify-test-deliveries") -> list[str]:
    """Every body on a moto queue, read from its backend: receiving a thousand messages one call of ten at a time
    costs moto minutes."""
    from moto.sqs.models import sqs_backends

    return [message.body for message in sqs_backends[ACCOUNT][REGION].queues[queue_name]._messages]


def _accept(database: Database, aws: AwsResources, body: dict[str, Any], notification_id: str) -> str:
    request = SendRequest.model_validate(body)
    queue = ExpansionQueue(aws.sqs, aws.env["EXPANSION_QUEUE_URL"])
    accept_send(request, AudienceRepository(database), queue, datetime.now(UTC), notification_id, caller="k1")
    return notification_id


def test_expansion_send_to_1000_users_1000_deliveries_and_a_summary_that_adds_up(
    worker_env: AwsResources, db: Any, database: Database, lambda_context: FakeLambdaContext
) -> None:
    _users(db, with_device=1000, without_device=20)
    target = {"where": {"field": "timezone", "eq": "UTC"}}
    notification_id = _accept(database, worker_env, {"to": target, "content": {"text": "Hi"}}, "n-1000")

    # One run, or more when a loaded machine spends the function's time first and the run hands over to a new job.
    results = _expand(worker_env, lambda_context)
    assert results
    assert all(result == {"batchItemFailures": []} for result in results), results

    messages = [DeliveryMessage.model_validate_json(body) for body in _queued_bodies()]
    assert len(messages) == 1000
    assert len({message.delivery_key for message in messages}) == 1000
    assert {message.recipient.user_id for message in messages if message.recipient} == {
        f"u{n:04d}" for n in range(1000)
    }
    page = DeliveryLedger(worker_env.dynamodb, NAMES["DELIVERIES_TABLE"]).page(notification_id, size=10)
    assert page.counts == {"queued": 1000, "skipped": 20}
    assert sum(page.counts.values()) == page.record.delivery_count == 1020
    assert (page.record.source, page.record.caller) == ("send", "k1")
    with db.cursor() as cursor:
        cursor.execute("SELECT status, expanded_through, recipients FROM sends")
        assert cursor.fetchone() == ("expanded", "u1019", 1020)


def test_expansion_job_again_after_the_send_was_expanded_enqueues_nothing(
    worker_env: AwsResources, db: Any, database: Database, lambda_context: FakeLambdaContext
) -> None:
    _users(db, with_device=3, without_device=0)
    _accept(database, worker_env, {"to": {"user_ids": ["u0000", "u0001", "u0002"]}, "content": {"text": "Hi"}}, "n")
    [job] = receive_all(worker_env.sqs, worker_env.env["EXPANSION_QUEUE_URL"])
    from producer.expansion import handler

    handler(_sqs_event([job]), lambda_context)
    handler(_sqs_event([job]), lambda_context)

    assert len(receive_all(worker_env.sqs, worker_env.delivery_queue_url)) == 3


def test_expansion_worker_resumes_after_its_cursor(
    worker_env: AwsResources, db: Any, database: Database, lambda_context: FakeLambdaContext
) -> None:
    _users(db, with_device=5, without_device=0)
    _accept(database, worker_env, {"to": {"where": {"field": "timezone", "eq": "UTC"}}, "content": {"text": "x"}}, "r")
    with db.cursor() as cursor:
        # A worker that enqueued the first two users and died: its cursor and count are recorded.
        cursor.execute("UPDATE sends SET status = 'expanding', expanded_through = 'u0001', recipients = 2")
    db.commit()

    _expand(worker_env, lambda_context)

    queued = receive_all(worker_env.sqs, worker_env.delivery_queue_url)
    users = sorted(json.loads(item["Body"])["recipient"]["user_id"] for item in queued)
    assert users == ["u0002", "u0003", "u0004"]
    record = DeliveryLedger(worker_env.dynamodb, NAMES["DELIVERIES_TABLE"]).get_record("r")
    assert record.delivery_count == 5


def test_expansion_disabled_endpoint_reported_by_the_consumer_disables_the_device(
    worker_env: AwsResources, database: Database, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from consumer.handler import handler as consume
    from core.audience.models import AppRequest, UserRequest

    sns = aws_client("sns")
    app = sns.create_platform_application(Name="android", Platform="GCM", Attributes={"PlatformCredential": "k"})
    created = sns.create_platform_endpoint(PlatformApplicationArn=app["PlatformApplicationArn"], Token="tok")
    arn = created["EndpointArn"]
    sns.set_endpoint_attributes(EndpointArn=arn, Attributes={"Enabled": "false"})
    repository = AudienceRepository(database)
    repository.put_app("android", AppRequest(platform_application_arn=app["PlatformApplicationArn"]))
    repository.put_user("ada", UserRequest(timezone="UTC"))
    device = repository.register_device("ada", "android", "tok", endpoint(arn)).device
    _accept(database, worker_env, {"to": {"user_ids": ["ada"]}, "content": {"text": "Hi"}}, "n-disabled")
    _expand(worker_env, lambda_context)
    deliveries = receive_all(worker_env.sqs, worker_env.delivery_queue_url)

    result = consume(_sqs_event(deliveries), lambda_context)
    _expand(worker_env, lambda_context)

    assert result["batchItemFailures"] == []
    entry = DeliveryLedger(worker_env.dynamodb, NAMES["DELIVERIES_TABLE"]).get_entry(
        "n-disabled", f"push:ada:{device.device_id}"
    )
    assert entry is not None
    assert (entry.status, entry.last_error) == (DeliveryStatus.FAILED, "push: EndpointDisabled")
    assert repository.list_devices("ada")[0].enabled is False
    assert repository.devices_of(["ada"]) == {}


def test_expansion_disabled_endpoint_registered_again_before_the_report_is_run_stays_enabled(
    worker_env: AwsResources, database: Database, lambda_context: FakeLambdaContext
) -> None:
    # The app registered the token again (its endpoint enabled again) between the consumer's report and the worker's
    # run of it: the device went off, and every later send skipped its user.
    from consumer.handler import handler as consume
    from core.audience.models import AppRequest, UserRequest

    sns = aws_client("sns")
    app = sns.create_platform_application(Name="android", Platform="GCM", Attributes={"PlatformCredential": "k"})
    arn = sns.create_platform_endpoint(PlatformApplicationArn=app["PlatformApplicationArn"], Token="tok")["EndpointArn"]
    sns.set_endpoint_attributes(EndpointArn=arn, Attributes={"Enabled": "false"})
    repository = AudienceRepository(database)
    repository.put_app("android", AppRequest(platform_application_arn=app["PlatformApplicationArn"]))
    repository.put_user("ada", UserRequest(timezone="UTC"))
    repository.register_device("ada", "android", "tok", endpoint(arn))
    _accept(database, worker_env, {"to": {"user_ids": ["ada"]}, "content": {"text": "Hi"}}, "n-again")
    _expand(worker_env, lambda_context)
    consume(_sqs_event(receive_all(worker_env.sqs, worker_env.delivery_queue_url)), lambda_context)

    repository.register_device(
        "ada", "android", "tok", endpoint(arn)
    )  # the app, again, as the report waits on the queue
    _expand(worker_env, lambda_context)

    assert [device.enabled for device in repository.list_devices("ada")] == [True]


def test_expansion_user_ids_stored_longer_than_the_limit_get_keys_the_ledger_takes_and_their_deliveries(
    worker_env: AwsResources, database: Database, db: Any, lambda_context: FakeLambdaContext
) -> None:
    # Ids of 1,020 bytes, stored before ids were bounded in bytes: their keys (push:<id>:<device>) passed DynamoDB's
    # 1024-byte sort key, so every page of the send failed again and the whole send ended in the expansion DLQ.
    from consumer.handler import handler as consume
    from core.audience.models import AppRequest

    reached, skipped = "\U0001f600" * 255, "\U0001f600" * 254 + "a"
    sns = aws_client("sns")
    app = sns.create_platform_application(Name="android", Platform="GCM", Attributes={"PlatformCredential": "k"})
    arn = sns.create_platform_endpoint(PlatformApplicationArn=app["PlatformApplicationArn"], Token="tok")["EndpointArn"]
    repository = AudienceRepository(database)
    repository.put_app("android", AppRequest(platform_application_arn=app["PlatformApplicationArn"]))
    with db.cursor() as cursor:
        cursor.execute("INSERT INTO users (id, timezone) VALUES (%s, 'UTC'), (%s, 'UTC')", (reached, skipped))
    db.commit()
    device = repository.register_device(reached, "android", "tok", endpoint(arn)).device
    target = {"where": {"field": "timezone", "eq": "UTC"}}
    _accept(database, worker_env, {"to": target, "content": {"text": "Hi"}}, "n-long")

    assert all(result == {"batchItemFailures": []} for result in _expand(worker_env, lambda_context))
    deliveries = receive_all(worker_env.sqs, worker_env.delivery_queue_url)
    assert consume(_sqs_event(deliveries), lambda_context)["batchItemFailures"] == []

    [message] = [DeliveryMessage.model_validate_json(item["Body"]) for item in deliveries]
    assert message.recipient is not None
    assert message.recipient.user_id == reached
    assert message.delivery_key.endswith(f":{device.device_id}")
    assert len(message.delivery_key.encode()) <= 1024
    ledger = DeliveryLedger(worker_env.dynamodb, NAMES["DELIVERIES_TABLE"])
    page = ledger.page("n-long", size=10)
    assert page.counts == {"delivered": 1, "skipped": 1}
    assert {entry.recipient["user_id"] for entry in page.entries if entry.recipient} == {reached, skipped}
    with db.cursor() as cursor:
        cursor.execute("SELECT status, recipients FROM sends")
        assert cursor.fetchone() == ("expanded", 2)


@pytest.mark.parametrize(
    "body", ["{}", "not json", '{"v": 2, "kind": "expand", "send_id": "s", "notification_id": "n", "caller": null}']
)
def test_expansion_job_it_cannot_read_comes_back_not_dropped(
    worker_env: AwsResources, lambda_context: FakeLambdaContext, body: str
) -> None:
    # A newer producer's job (v 2) while a deploy is half done was dropped before: its whole send was lost.
    from producer.expansion import handler

    event = _sqs_event([{"MessageId": "m", "ReceiptHandle": "r", "Body": body, "MD5OfBody": "-"}])

    assert handler(event, lambda_context) == {"batchItemFailures": [{"itemIdentifier": "m"}]}


def test_expansion_job_that_failed_shows_again_in_15_minutes_not_the_queues_90(
    worker_env: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    # The queue hides a received job 6x the function's timeout (5400 s), so that a run still going is not received
    # again; a job that failed is set to show again after RETRY_SECONDS, as it did when the queue's was 900 s.
    from producer.expansion import RETRY_SECONDS, handler

    queue_url = worker_env.env["EXPANSION_QUEUE_URL"]
    worker_env.sqs.send_message(QueueUrl=queue_url, MessageBody="not json")
    [job] = receive_all(worker_env.sqs, queue_url)
    changes: list[dict[str, Any]] = []
    sqs = clients.get_client("sqs", REGION)
    sqs.meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibility", lambda params, **_: changes.append(params)
    )

    result = handler(_sqs_event([job]), lambda_context)

    assert result == {"batchItemFailures": [{"itemIdentifier": job["MessageId"]}]}
    assert [(c["ReceiptHandle"], c["VisibilityTimeout"]) for c in changes] == [(job["ReceiptHandle"], RETRY_SECONDS)]
    assert RETRY_SECONDS == 900


def test_expansion_cron_hands_an_audience_send_to_the_worker(
    worker_env: AwsResources, db: Any, database: Database, lambda_context: FakeLambdaContext
) -> None:
    from cron.handler import build_enqueuer, settings
    from producer.expansion import handler

    _users(db, with_device=2, without_device=0)
    now = datetime.now(UTC)
    repository = AudienceRepository(database)
    repository.create_scheduled_send(
        NewScheduledSend("n-cron", {"user_ids": ["u0000", "u0001"]}, {"text": "later"}, ["push"], fire_at=now)
    )
    report = dispatch_due(repository, build_enqueuer(settings()), now, 10, timedelta(minutes=5))
    jobs = receive_all(worker_env.sqs, worker_env.env["EXPANSION_QUEUE_URL"])
    handler(_sqs_event(jobs), lambda_context)

    assert report.sent == 1
    assert [ExpansionJob.model_validate_json(job["Body"]).notification_id for job in jobs] == ["n-cron"]
    assert len(receive_all(worker_env.sqs, worker_env.delivery_queue_url)) == 2


def test_expansion_local_time_user_moving_to_a_later_zone_gets_one_delivery_and_a_summary_that_adds_up(
    worker_env: AwsResources, database: Database, lambda_context: FakeLambdaContext
) -> None:

    repository = AudienceRepository(database)
    repository.put_user("alice", UserRequest(timezone="Asia/Tokyo"))
    repository.put_user("bob", UserRequest(timezone="Europe/Paris"))
    _morning_send(repository, {"user_ids": ["alice", "bob"]})

    def hand_off(now: datetime) -> None:
        _hand_off(worker_env, lambda_context, repository, now)

    hand_off(datetime(2026, 6, 15, 0, 0, 30, tzinfo=UTC))  # 09:00 in Tokyo
    repository.put_user("alice", UserRequest(timezone="America/New_York"))  # alice flies to New York
    hand_off(datetime(2026, 6, 15, 7, 0, 30, tzinfo=UTC))  # 09:00 in Paris
    hand_off(datetime(2026, 6, 15, 13, 0, 30, tzinfo=UTC))  # 09:00 in New York

    keys = [json.loads(body)["delivery_key"] for body in _queued_bodies()]
    assert sorted(keys) == ["browser:alice", "browser:bob"]
    ledger = DeliveryLedger(worker_env.dynamodb, NAMES["DELIVERIES_TABLE"])
    for key in keys:
        ledger.update("n-morning", key, DeliveryStatus.DELIVERED, attempts=1)
    page = ledger.page("n-morning")
    assert page.counts == {"delivered": 2}
    assert page.record.delivery_count == 2


def _run_cron_until_sent(
    aws: AwsResources, context: FakeLambdaContext, repository: AudienceRepository, schedule_id: str, now: datetime
) -> None:
    """Run the cron and the worker every 15 minutes from ``now`` until the schedule is ``sent``."""
    while repository.get_schedule(schedule_id).status != "sent":
        _hand_off(aws, context, repository, now)
        now += timedelta(minutes=15)


def _morning_in_each_zone(repository: AudienceRepository, notification_id: str, to: dict[str, Any]) -> str:
    """Schedule "Good morning" at 09:00 of each recipient's clock on 15 June 2030; return the schedule's id."""
    schedule = repository.create_scheduled_send(
        NewScheduledSend(
            notification_id,
            to,
            {"text": "Good morning"},
            ["browser"],
            fire_at=datetime(2030, 6, 14, 19, 0, tzinfo=UTC),
            local_at=datetime(2030, 6, 15, 9, 0),
        )
    )
    return str(schedule.schedule_id)


def test_expansion_local_time_user_ids_each_get_a_row_by_the_last_claim_none_a_late_message(
    worker_env: AwsResources, database: Database, lambda_context: FakeLambdaContext
) -> None:
    """A local-time send to ids: ``ghost`` never exists, ``carol`` is made in Tokyo after 09:00 there, and ``alice``
    moves from New York to Tokyo once Tokyo was handed over. The zones' pages keep only the users found in them: the
    three had no row at all (an instant send gives ghost a skipped one), and the count said 1 of 4. Each named id
    now has a row by the last claim, skipped with its reason; a user is reached at their zone's time or not at all."""
    repository = AudienceRepository(database)
    repository.put_user("ada", UserRequest(timezone="Europe/Paris"))
    repository.put_user("alice", UserRequest(timezone="America/New_York"))
    schedule_id = _morning_in_each_zone(repository, "n-ids", {"user_ids": ["ada", "alice", "carol", "ghost"]})

    _hand_off(worker_env, lambda_context, repository, datetime(2030, 6, 15, 0, 0, 30, tzinfo=UTC))  # 09:00 in Tokyo
    repository.put_user("carol", UserRequest(timezone="Asia/Tokyo"))
    repository.put_user("alice", UserRequest(timezone="Asia/Tokyo"))
    _run_cron_until_sent(worker_env, lambda_context, repository, schedule_id, datetime(2030, 6, 15, 0, 15, tzinfo=UTC))
    # The last claim's job delivered twice writes and counts nothing again.
    schedule = repository.get_schedule(schedule_id)
    job = ExpansionJob(send_id=str(schedule.send_id), notification_id="n-ids", zones=[], sweep=True)
    ExpansionQueue(worker_env.sqs, worker_env.env["EXPANSION_QUEUE_URL"]).submit(job)
    _expand(worker_env, lambda_context)

    keys = [json.loads(body)["delivery_key"] for body in _queued_bodies()]
    assert keys == ["browser:ada"]
    ledger = DeliveryLedger(worker_env.dynamodb, NAMES["DELIVERIES_TABLE"])
    ledger.update("n-ids", "browser:ada", DeliveryStatus.DELIVERED, attempts=1)
    page = ledger.page("n-ids")
    rows = {entry.delivery_key: (entry.status, entry.last_error) for entry in page.entries}
    assert rows == {
        "browser:ada": (DeliveryStatus.DELIVERED, None),
        "browser:alice": (DeliveryStatus.SKIPPED, TOO_LATE),
        "browser:carol": (DeliveryStatus.SKIPPED, TOO_LATE),
        "browser:ghost": (DeliveryStatus.SKIPPED, NO_USER),
    }
    assert page.counts == {"delivered": 1, "skipped": 3}
    assert page.record.delivery_count == 4


def test_expansion_sweep_back_from_the_dlq_after_the_recipients_purge_time_reaches_no_one_twice(
    worker_env: AwsResources, database: Database, lambda_context: FakeLambdaContext
) -> None:
    """The sweep's job failed for now five times and waited in the expansion DLQ (kept 14 days) past the 72 h the
    cron keeps a send's recorded recipients: purged, the sweep moved back found nobody handed over and skipped ada,
    whom her zone reached, as too late, counting her twice (a phantom queued delivery for ever)."""
    from cron.handler import build_enqueuer, settings

    repository = AudienceRepository(database)
    repository.put_user("ada", UserRequest(timezone="Europe/Paris"))
    schedule_id = _morning_in_each_zone(repository, "n-purged", {"user_ids": ["ada"]})
    held: list[str] = []  # the sweep's job, waiting in the expansion DLQ
    now = datetime(2030, 6, 14, 19, 0, 30, tzinfo=UTC)
    while repository.get_schedule(schedule_id).status != "sent":
        dispatch_due(repository, build_enqueuer(settings()), now, 10, timedelta(minutes=5))
        for job in receive_all(worker_env.sqs, worker_env.env["EXPANSION_QUEUE_URL"]):
            if json.loads(job["Body"]).get("sweep"):
                held.append(job["Body"])
            else:
                from producer.expansion import handler

                handler(_sqs_event([job]), lambda_context)
        now += timedelta(minutes=15)
    database.run(
        lambda cursor: cursor.execute("UPDATE scheduled_sends SET updated_at = now() - interval '4 days'"), "ageing"
    )

    purged_while_held = repository.purge_send_recipients(72 * 3600)
    ExpansionQueue(worker_env.sqs, worker_env.env["EXPANSION_QUEUE_URL"]).submit(parse_job(held[0]))
    _expand(worker_env, lambda_context)

    page = DeliveryLedger(worker_env.dynamodb, NAMES["DELIVERIES_TABLE"]).page("n-purged")
    assert (len(held), purged_while_held) == (1, None)
    assert [json.loads(body)["delivery_key"] for body in _queued_bodies()] == ["browser:ada"]
    assert (page.record.delivery_count, page.counts) == (1, {"queued": 1})
    assert repository.purge_send_recipients(72 * 3600) == 1  # the sweep finished: nothing reads them any more


def test_expansion_local_time_user_of_a_zone_the_clock_does_not_know_is_reached_at_utc_time(
    worker_env: AwsResources, db: Any, database: Database, lambda_context: FakeLambdaContext
) -> None:
    """A user saved with a zone a later tzdata dropped (``US/Pacific-New``, gone since 2020b) was left out of every
    hand-off: the send ended ``expanded`` with no row for them. The zone is taken as UTC."""
    repository = AudienceRepository(database)
    repository.put_user("ada", UserRequest(timezone="Europe/Paris"))
    with db.cursor() as cursor:
        cursor.execute("INSERT INTO users (id, timezone) VALUES ('old', 'US/Pacific-New')")
    db.commit()
    schedule_id = _morning_in_each_zone(repository, "n-old-zone", {"user_ids": ["ada", "old"]})

    _hand_off(worker_env, lambda_context, repository, datetime(2030, 6, 15, 7, 0, 30, tzinfo=UTC))  # 09:00 in Paris
    _hand_off(worker_env, lambda_context, repository, datetime(2030, 6, 15, 9, 0, 30, tzinfo=UTC))  # 09:00 in UTC
    keys = [json.loads(body)["delivery_key"] for body in _queued_bodies()]
    assert sorted(keys) == ["browser:ada", "browser:old"]
    _run_cron_until_sent(worker_env, lambda_context, repository, schedule_id, datetime(2030, 6, 15, 9, 15, tzinfo=UTC))
    assert len(_queued_bodies()) == 2
    assert DeliveryLedger(worker_env.dynamodb, NAMES["DELIVERIES_TABLE"]).get_record("n-old-zone").delivery_count == 2


def _publish_to_followers(aws: AwsResources, metadata: dict[str, Any], channels: list[str] | None = None) -> str:
    """Create ``orders/shipped`` with a webhook and a ``subscribers`` integration (on ``channels``, push by default),
    publish once; return the id."""
    from api.topics import put_topic
    from core.channels.registry import TopicRequest
    from core.fanout import fan_out

    followers: dict[str, Any] = {"name": "followers", "type": "subscribers", "model": {"text": "Order $order shipped"}}
    if channels is not None:
        followers["target"] = {"channels": channels}
        if "email" in channels:
            # Email needs a subject: the topic is refused without one (core/channels/subscribers.py).
            followers["model"]["subject"] = "Your order"
    hook = {"name": "erp", "type": "webhook", "target": {"url": "https://erp.example.com/hook"}, "model": "$order"}
    request = TopicRequest.model_validate({"integrations": [hook, followers]})
    registry = clients.get_topic_registry()
    put_topic("orders", "shipped", request, registry, clients.get_secret_store())
    result = fan_out(
        registry.get("orders", "shipped"), metadata, clients.get_ledger(), clients.get_delivery_queue(), caller="k1"
    )
    return result.notification_id


def test_expansion_publish_reaches_the_topics_subscribers_under_its_notification(
    worker_env: AwsResources, db: Any, database: Database, lambda_context: FakeLambdaContext
) -> None:
    from consumer.handler import handler as consume

    _users(db, with_device=2, without_device=1)
    repository = AudienceRepository(database)
    for user_id in ("u0000", "u0001", "u0002"):
        repository.put_subscription(user_id, "orders", "shipped")
    notification_id = _publish_to_followers(worker_env, {"order": "A-1"})
    published = receive_all(worker_env.sqs, worker_env.delivery_queue_url)
    followers = [message for message in published if json.loads(message["Body"])["delivery_key"] == "followers"]

    assert consume(_sqs_event(followers), lambda_context)["batchItemFailures"] == []
    assert _expand(worker_env, lambda_context) == [{"batchItemFailures": []}]

    messages = [
        DeliveryMessage.model_validate_json(message["Body"])
        for message in receive_all(worker_env.sqs, worker_env.delivery_queue_url)
    ]
    assert sorted(message.recipient.user_id for message in messages if message.recipient) == ["u0000", "u0001"]
    assert {(message.notification_id, message.channel, message.topic) for message in messages} == {
        (notification_id, "orders", "shipped")
    }
    assert {message.content.data["default"] for message in messages} == {"Order A-1 shipped"}
    page = DeliveryLedger(worker_env.dynamodb, NAMES["DELIVERIES_TABLE"]).page(notification_id)
    # The webhook's delivery (not consumed here) and the two pushes are queued, the subscriber without a device
    # skipped, and the subscribers integration itself delivered (handed over): five deliveries in all.
    assert page.counts == {"queued": 3, "skipped": 1, "delivered": 1}
    assert sum(page.counts.values()) == page.record.delivery_count == 5
    assert (page.record.source, page.record.caller) == ("publish", "k1")
    assert [delivery.key for delivery in page.record.deliveries] == ["erp", "followers"]


def test_expansion_scheduled_send_to_a_topic_reaches_its_subscribers_in_the_callers_name(
    worker_env: AwsResources, db: Any, database: Database, lambda_context: FakeLambdaContext
) -> None:
    from cron.handler import build_enqueuer, settings

    _users(db, with_device=2, without_device=0)
    repository = AudienceRepository(database)
    repository.put_subscription("u0001", "news", "daily")
    now = datetime.now(UTC)
    repository.create_scheduled_send(
        NewScheduledSend("n-topic", {"topic": "news/daily"}, {"text": "later"}, ["push"], fire_at=now, caller="k1")
    )

    report = dispatch_due(repository, build_enqueuer(settings()), now, 10, timedelta(minutes=5))
    _expand(worker_env, lambda_context)

    assert report.sent == 1
    record = DeliveryLedger(worker_env.dynamodb, NAMES["DELIVERIES_TABLE"]).get_record("n-topic")
    assert (record.source, record.caller, record.channel, record.topic) == ("send", "k1", "news", "daily")
    [message] = [
        DeliveryMessage.model_validate_json(m["Body"])
        for m in receive_all(worker_env.sqs, worker_env.delivery_queue_url)
    ]
    assert (message.recipient and message.recipient.user_id, message.channel, message.topic) == (
        "u0001",
        "news",
        "daily",
    )


def test_expansion_cron_groups_small_sends_and_the_worker_expands_each(
    worker_env: AwsResources, db: Any, database: Database, lambda_context: FakeLambdaContext
) -> None:
    from cron.handler import build_enqueuer, settings

    _users(db, with_device=30, without_device=0)
    now = datetime.now(UTC)
    repository = AudienceRepository(database)
    for index in range(30):
        target = {"user_ids": [f"u{index:04d}"]}
        repository.create_scheduled_send(NewScheduledSend(f"n-small-{index}", target, {"text": "hi"}, ["push"], now))

    report = dispatch_due(repository, build_enqueuer(settings()), now, 100, timedelta(minutes=5))
    jobs = [
        parse_job(message["Body"]) for message in receive_all(worker_env.sqs, worker_env.env["EXPANSION_QUEUE_URL"])
    ]
    from producer.expansion import handler

    results = [
        handler(
            _sqs_event([{"MessageId": f"m{i}", "ReceiptHandle": "r", "Body": job.model_dump_json(), "MD5OfBody": "-"}]),
            lambda_context,
        )
        for i, job in enumerate(jobs)
    ]

    assert report.sent == 30
    assert [len(job.jobs) for job in jobs if isinstance(job, ExpansionBatchJob)] == [25, 5]
    assert results == [{"batchItemFailures": []}] * 2
    messages = [DeliveryMessage.model_validate_json(body) for body in _queued_bodies()]
    assert sorted(message.notification_id for message in messages) == sorted(f"n-small-{index}" for index in range(30))


def _without_sender_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Name an audience sender topic that does not exist (deleted, or never created on this stage)."""
    monkeypatch.setenv("AUDIENCE_SENDER_TOPIC", "audience/default")
    clients.reset()


def _email_send_without_sender_topic(monkeypatch: pytest.MonkeyPatch, database: Database, aws: AwsResources) -> None:
    """Accept an email send to ada (``n-email``) on a stage whose audience sender topic does not exist."""
    _without_sender_topic(monkeypatch)
    AudienceRepository(database).put_user("ada", UserRequest(timezone="UTC", email="ada@example.com"))
    body = {"to": {"user_ids": ["ada"]}, "content": {"text": "Hi", "subject": "S"}, "channels": ["email"]}
    _accept(database, aws, body, "n-email")


def _send_state(db: Any) -> tuple[str, str | None]:
    with db.cursor() as cursor:
        cursor.execute("SELECT status, last_error FROM sends")
        [row] = cursor.fetchall()
    db.commit()
    return row[0], row[1]


def test_expansion_subscribers_on_email_with_a_missing_sender_topic_fail_the_send_with_the_reason(
    worker_env: AwsResources,
    db: Any,
    database: Database,
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from consumer.handler import handler as consume
    from core.audience.models import UserRequest

    _without_sender_topic(monkeypatch)
    repository = AudienceRepository(database)
    repository.put_user("ada", UserRequest(timezone="UTC", email="ada@example.com"))
    repository.put_subscription("ada", "orders", "shipped")
    _publish_to_followers(worker_env, {"order": "A-1"}, channels=["email"])
    published = receive_all(worker_env.sqs, worker_env.delivery_queue_url)
    followers = [message for message in published if json.loads(message["Body"])["delivery_key"] == "followers"]
    assert consume(_sqs_event(followers), lambda_context)["batchItemFailures"] == []

    assert _expand(worker_env, lambda_context) == [{"batchItemFailures": []}]

    assert _send_state(db) == ("failed", "the audience sender topic audience/default does not exist")
    assert receive_all(worker_env.sqs, worker_env.delivery_queue_url) == []
    # The publish's status tells it too, beside its subscribers integration's row (delivered: handed off).
    notification_id = json.loads(followers[0]["Body"])["notification_id"]
    assert clients.get_ledger().get_record(notification_id).error == _send_state(db)[1]


def test_expansion_send_on_email_with_a_missing_sender_topic_fails_with_the_reason(
    worker_env: AwsResources,
    db: Any,
    database: Database,
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _email_send_without_sender_topic(monkeypatch, database, worker_env)

    assert _expand(worker_env, lambda_context) == [{"batchItemFailures": []}]

    assert _send_state(db) == ("failed", "the audience sender topic audience/default does not exist")
    assert receive_all(worker_env.sqs, worker_env.delivery_queue_url) == []


def test_expansion_failed_sends_of_a_batch_job_are_counted_and_logged_with_their_notification_id(
    worker_env: AwsResources,
    database: Database,
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
    logs: Callable[[], str],
) -> None:
    """The cron groups small scheduled sends into one job: a send that failed there was logged with its send id only
    (no notification id to look it up by) and counted nowhere an alarm could see."""
    from cron.handler import build_enqueuer, settings
    from producer.expansion import handler

    _without_sender_topic(monkeypatch)
    repository = AudienceRepository(database)
    repository.put_user("ada", UserRequest(timezone="UTC", email="ada@example.com"))
    now = datetime.now(UTC)
    for index in range(3):
        repository.create_scheduled_send(
            NewScheduledSend(f"n-mail-{index}", {"user_ids": ["ada"]}, {"text": "hi", "subject": "S"}, ["email"], now)
        )
    dispatch_due(repository, build_enqueuer(settings()), now, 100, timedelta(minutes=5))
    (message,) = receive_all(worker_env.sqs, worker_env.env["EXPANSION_QUEUE_URL"])
    assert isinstance(parse_job(message["Body"]), ExpansionBatchJob)
    logs()

    assert handler(_sqs_event([message]), lambda_context) == {"batchItemFailures": []}

    records = [json.loads(line) for line in logs().splitlines() if line.startswith("{")]
    failed = [record for record in records if record.get("message") == "send cannot be expanded"]
    counted = [record["SendsFailed"] for record in records if "SendsFailed" in record]
    assert sorted(record["notification_id"] for record in failed) == ["n-mail-0", "n-mail-1", "n-mail-2"]
    assert {record["level"] for record in failed} == {"WARNING"}
    assert counted == [[1.0, 1.0, 1.0]]


def test_expansion_days_after_the_send_was_accepted_keeps_its_record_as_long_as_the_rows_it_writes(
    worker_env: AwsResources, db: Any, database: Database, lambda_context: FakeLambdaContext
) -> None:
    """Accepted 13 days ago (its record written then), its job failed for now and waited in the expansion DLQ, and is
    moved back today: the record expired 13 days before the rows the expansion writes, the status then a 404."""
    _users(db, with_device=0, without_device=1)
    days_ago = 13 * 86400
    then = DeliveryLedger(worker_env.dynamodb, NAMES["DELIVERIES_TABLE"], epoch=lambda: time.time() - days_ago)
    request = SendRequest.model_validate({"to": {"user_ids": ["u0000", "ghost"]}, "content": {"text": "Hi"}})
    queue = ExpansionQueue(worker_env.sqs, worker_env.env["EXPANSION_QUEUE_URL"])
    accepted = datetime.now(UTC) - timedelta(seconds=days_ago)
    accept_send(request, AudienceRepository(database), queue, accepted, "n-late", caller="k1", ledger=then)

    _expand(worker_env, lambda_context)

    def expires(delivery_key: str) -> int:
        key = {"notification_id": {"S": "n-late"}, "delivery_key": {"S": delivery_key}}
        item = worker_env.dynamodb.get_item(TableName=NAMES["DELIVERIES_TABLE"], Key=key, ConsistentRead=True)
        return int(item["Item"]["expires_at"]["N"])

    assert expires("#") >= expires("push:ghost")


def test_expansion_local_time_send_that_never_had_users_gets_a_record_of_no_deliveries_at_its_last_claim(
    worker_env: AwsResources, database: Database, lambda_context: FakeLambdaContext
) -> None:
    """Its last claim hands over an empty zone set: the job writes the notification's record (0 deliveries) and marks
    the send expanded. Skipped by the enqueuer, the send stayed queued and its notification unknown for ever."""
    from cron.handler import build_enqueuer, settings

    repository = AudienceRepository(database)
    schedule = repository.create_scheduled_send(
        NewScheduledSend(
            "n-nobody",
            {"where": {"field": "plan", "eq": "pro"}},
            {"text": "Good morning"},
            ["browser"],
            fire_at=datetime(2026, 6, 14, 19, 0, tzinfo=UTC),
            local_at=datetime(2026, 6, 15, 9, 0),
        )
    )

    now = datetime(2026, 6, 14, 19, 0, 30, tzinfo=UTC)
    while repository.get_schedule(schedule.schedule_id).status != "sent":
        dispatch_due(repository, build_enqueuer(settings()), now, 10, timedelta(minutes=5))
        now += timedelta(minutes=15)
    _expand(worker_env, lambda_context)

    record = DeliveryLedger(worker_env.dynamodb, NAMES["DELIVERIES_TABLE"]).get_record("n-nobody")
    assert record.delivery_count == 0
    assert repository.get_send(schedule.send_id).status == "expanded"
    assert _queued_bodies() == []


def test_expansion_segment_of_a_local_time_send_cannot_be_deleted_between_its_zones(
    worker_env: AwsResources, database: Database, lambda_context: FakeLambdaContext
) -> None:
    # Between two zones the send says expanded and its schedule scheduled: the delete was allowed (204), and the
    # zones to come failed, their users never reached.
    from core.errors import ConflictError

    repository = AudienceRepository(database)
    repository.put_user("alice", UserRequest(timezone="Asia/Tokyo", data={"plan": "pro"}))
    repository.put_user("bob", UserRequest(timezone="Europe/Paris", data={"plan": "pro"}))
    repository.put_segment("pros", {"where": {"field": "plan", "eq": "pro"}})
    _morning_send(repository, {"segment": "pros"})

    def hand_off(now: datetime) -> None:
        _hand_off(worker_env, lambda_context, repository, now)

    hand_off(datetime(2026, 6, 15, 0, 0, 30, tzinfo=UTC))  # 09:00 in Tokyo
    with pytest.raises(ConflictError):
        repository.delete_segment("pros")
    hand_off(datetime(2026, 6, 15, 7, 0, 30, tzinfo=UTC))  # 09:00 in Paris

    recipients = sorted(json.loads(body)["recipient"]["user_id"] for body in _queued_bodies())
    assert recipients == ["alice", "bob"]


class _Phone:
    """One phone's push token registered through the audience API, and what moto's SNS published to it (whichever
    endpoint holds the token)."""

    def __init__(self, aws: AwsResources, context: FakeLambdaContext) -> None:
        from api import audience

        self.aws, self.context, self.audience = aws, context, audience
        self.sns = aws_client("sns")
        application = self.sns.create_platform_application(
            Name="android", Platform="GCM", Attributes={"PlatformCredential": "k"}
        )["PlatformApplicationArn"]
        body = {"platform_application_arn": application}
        answer = audience.handler(admin_event("PUT", "/v1/apps/{app}", {"app": "android"}, body, ADMIN_TOKEN), context)
        assert answer["statusCode"] == 201, answer

    def call(self, method: str, resource: str, params: dict[str, str] | None, body: Any) -> dict[str, Any]:
        answer: dict[str, Any] = self.audience.handler(api_event(method, resource, params, body), self.context)
        assert answer["statusCode"] in {200, 201, 202}, answer
        return json.loads(answer["body"])

    def user(self, user_id: str) -> None:
        self.call("PUT", "/v1/users/{user_id}", {"user_id": user_id}, {"timezone": "UTC"})

    def register(self, user_id: str) -> None:
        self.call("POST", "/v1/users/{user_id}/devices", {"user_id": user_id}, {"app": "android", "token": "phone"})

    def pushes(self) -> list[str]:
        from moto.sns.models import sns_backends

        endpoints = sns_backends[ACCOUNT][REGION].platform_endpoints.values()
        return [text for endpoint in endpoints if endpoint.token == "phone" for text in endpoint.messages.values()]

    def deliver(self) -> None:
        from consumer.handler import handler

        messages = receive_all(self.aws.sqs, self.aws.delivery_queue_url)
        assert handler(_sqs_event(messages), self.context) == {"batchItemFailures": []}


def test_expand_push_queued_for_a_user_never_reaches_the_user_its_device_moved_to(
    worker_env: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    phone = _Phone(worker_env, lambda_context)
    phone.user("alice")
    phone.user("zoe")
    phone.register("alice")
    sent = phone.call("POST", "/v1/sends", None, {"to": {"user_ids": ["alice"]}, "content": {"text": "Code 1234"}})
    _expand(worker_env, lambda_context)
    phone.register("zoe")  # alice logs out, zoe logs in on the same phone before the push goes

    phone.deliver()

    [entry] = (
        DeliveryLedger(worker_env.dynamodb, NAMES["DELIVERIES_TABLE"]).page(sent["notification_id"], size=10).entries
    )
    assert phone.pushes() == []
    assert entry.status is DeliveryStatus.FAILED
    assert "registered by another user" in str(entry.last_error)


def test_expand_device_moved_to_a_later_user_of_the_same_send_is_pushed_once(
    worker_env: AwsResources, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from producer.expansion import handler

    monkeypatch.setenv("EXPANSION_PAGE_SIZE", "1")
    monkeypatch.setenv("EXPANSION_TIME_MARGIN_SECONDS", "300")  # hands the send over after every page
    clients.reset()
    phone = _Phone(worker_env, lambda_context)
    phone.user("alice")
    phone.user("zoe")
    phone.register("alice")
    phone.call(
        "POST", "/v1/sends", None, {"to": {"where": {"field": "timezone", "eq": "UTC"}}, "content": {"text": "Sale"}}
    )
    [job] = receive_all(worker_env.sqs, worker_env.env["EXPANSION_QUEUE_URL"])
    assert handler(_sqs_event([job]), lambda_context) == {"batchItemFailures": []}  # alice's page
    phone.register("zoe")  # the same phone, now zoe's, before zoe's page
    _expand(worker_env, lambda_context)

    phone.deliver()

    assert len(phone.pushes()) == 1


def test_expand_user_ids_send_names_a_user_the_audience_lacks_with_a_skipped_row(
    worker_env: AwsResources, database: Database, lambda_context: FakeLambdaContext
) -> None:
    # ghost was never created (or was deleted between the 202 and the expansion): the send named it, so the ledger
    # tells what became of it, per requested channel.
    repository = AudienceRepository(database)
    repository.put_user("ada", UserRequest(timezone="UTC"))
    body = {"to": {"user_ids": ["ada", "ghost"]}, "content": {"text": "Hi"}, "channels": ["browser", "push"]}
    _accept(database, worker_env, body, "n-ghost")

    _expand(worker_env, lambda_context)

    ledger = DeliveryLedger(worker_env.dynamodb, NAMES["DELIVERIES_TABLE"])
    rows = {entry.delivery_key: (entry.status, entry.last_error) for entry in ledger.page("n-ghost", size=10).entries}
    assert rows["browser:ghost"] == rows["push:ghost"] == (DeliveryStatus.SKIPPED, NO_USER)
    assert rows["push:ada"] == (DeliveryStatus.SKIPPED, NO_DEVICE)
    assert ledger.get_record("n-ghost").delivery_count == 4


def _audience_email(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage's audience sender topic with an SES email integration, its sender verified in moto."""
    from api.topics import put_topic
    from core.channels.registry import TopicRequest

    monkeypatch.setenv("AUDIENCE_SENDER_TOPIC", "audience/default")
    clients.reset()
    aws_client("ses").verify_email_identity(EmailAddress="noreply@example.com")
    mail = {
        "name": "mail",
        "type": "email",
        "target": {"to": ["ops@example.com"], "from": "noreply@example.com"},
        "model": {"subject": "s", "text": "t"},
    }
    request = TopicRequest.model_validate({"integrations": [mail]})
    put_topic("audience", "default", request, clients.get_topic_registry(), clients.get_secret_store())


def _emailed() -> list[list[str]]:
    from moto.ses.models import ses_backends

    return [message.destinations["ToAddresses"] for message in ses_backends[ACCOUNT][REGION].sent_messages]


def test_expand_user_deleted_after_expansion_is_not_emailed_and_the_row_says_why(
    worker_env: AwsResources, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    _audience_email(monkeypatch)
    phone = _Phone(worker_env, lambda_context)
    phone.call("PUT", "/v1/users/{user_id}", {"user_id": "ada"}, {"timezone": "UTC", "email": "ada@example.com"})
    body = {"to": {"user_ids": ["ada"]}, "content": {"text": "Hi", "subject": "S"}, "channels": ["email"]}
    sent = phone.call("POST", "/v1/sends", None, body)
    _expand(worker_env, lambda_context)
    deleted = phone.audience.handler(api_event("DELETE", "/v1/users/{user_id}", {"user_id": "ada"}), lambda_context)

    phone.deliver()

    [entry] = (
        DeliveryLedger(worker_env.dynamodb, NAMES["DELIVERIES_TABLE"]).page(sent["notification_id"], size=5).entries
    )
    assert deleted["statusCode"] == 204
    assert _emailed() == []
    assert entry.status is DeliveryStatus.FAILED
    assert str(entry.last_error).startswith("the user was deleted (")


def test_expand_user_created_again_after_a_deletion_gets_what_is_sent_after(
    worker_env: AwsResources, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    _audience_email(monkeypatch)
    phone = _Phone(worker_env, lambda_context)
    user = {"timezone": "UTC", "email": "ada@example.com"}
    phone.call("PUT", "/v1/users/{user_id}", {"user_id": "ada"}, user)
    phone.audience.handler(api_event("DELETE", "/v1/users/{user_id}", {"user_id": "ada"}), lambda_context)
    phone.call("PUT", "/v1/users/{user_id}", {"user_id": "ada"}, user)
    body = {"to": {"user_ids": ["ada"]}, "content": {"text": "Hi", "subject": "S"}, "channels": ["email"]}
    phone.call("POST", "/v1/sends", None, body)
    _expand(worker_env, lambda_context)

    phone.deliver()

    assert _emailed() == [["ada@example.com"]]


def test_expansion_pages_leave_the_record_kept_for_a_delivery_paced_far_ahead(
    worker_env: AwsResources, db: Any, database: Database, lambda_context: FakeLambdaContext
) -> None:
    """The worker put back the whole record after each page: the TTL the consumer had raised for the webhook's slot 40
    days ahead fell to 30 days from the page, and the status route answered 404 before that delivery was made."""
    from consumer.handler import handler as consume

    _users(db, with_device=1, without_device=0)
    AudienceRepository(database).put_subscription("u0000", "orders", "shipped")
    notification_id = _publish_to_followers(worker_env, {"order": "A-1"})
    published = receive_all(worker_env.sqs, worker_env.delivery_queue_url)
    clients.get_ledger().keep_record(notification_id, datetime.now(UTC).timestamp() + 40 * 86400)
    kept = _record_expiry(worker_env, notification_id)

    followers = [m for m in published if json.loads(m["Body"])["delivery_key"] == "followers"]
    assert consume(_sqs_event(followers), lambda_context)["batchItemFailures"] == []
    assert _expand(worker_env, lambda_context) == [{"batchItemFailures": []}]

    assert clients.get_ledger().get_record(notification_id).delivery_count == 3
    assert _record_expiry(worker_env, notification_id) == kept


def _record_expiry(aws: AwsResources, notification_id: str) -> int:
    key = {"notification_id": {"S": notification_id}, "delivery_key": {"S": "#"}}
    item = aws.dynamodb.get_item(TableName=NAMES["DELIVERIES_TABLE"], Key=key, ConsistentRead=True)["Item"]
    return int(item["expires_at"]["N"])


def test_expansion_user_deleted_and_created_again_during_the_run_gets_the_send_expanded_for_them_after(
    worker_env: AwsResources, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A send to ada and bob, a page each. Between the pages bob deletes his account and signs up again (same id, a new
    # address): his page is read after that, and what is expanded for him is his. Every message carried the run's
    # start as when its audience was read, and the consumer failed bob's: "the user was deleted before this was sent".
    _audience_email(monkeypatch)
    monkeypatch.setenv("EXPANSION_PAGE_SIZE", "1")
    clients.reset()
    phone = _Phone(worker_env, lambda_context)
    for user_id in ("ada", "bob"):
        phone.call("PUT", "/v1/users/{user_id}", {"user_id": user_id}, {"timezone": "UTC", "email": f"{user_id}@x.io"})
    body = {"to": {"user_ids": ["ada", "bob"]}, "content": {"text": "Hi", "subject": "S"}, "channels": ["email"]}
    phone.call("POST", "/v1/sends", None, body)
    advance = AudienceRepository.advance_send
    done: list[bool] = []

    def advance_then_bob_signs_up_again(self: AudienceRepository, *args: Any, **kwargs: Any) -> bool:
        recorded = advance(self, *args, **kwargs)
        if not done:
            done.append(True)
            gone = phone.audience.handler(
                api_event("DELETE", "/v1/users/{user_id}", {"user_id": "bob"}), lambda_context
            )
            assert gone["statusCode"] == 204
            phone.call("PUT", "/v1/users/{user_id}", {"user_id": "bob"}, {"timezone": "UTC", "email": "bob.new@x.io"})
        return recorded

    monkeypatch.setattr(AudienceRepository, "advance_send", advance_then_bob_signs_up_again)
    _expand(worker_env, lambda_context)
    phone.deliver()

    assert sorted(_emailed()) == [["ada@x.io"], ["bob.new@x.io"]]


def test_expansion_failed_send_whose_error_write_failed_is_retried_and_tells_why(
    worker_env: AwsResources,
    db: Any,
    database: Database,
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A send that can never be expanded (no audience sender topic) was marked failed although the one ledger write
    # telling why failed (a throttle): no job came back, and the status route never said why.
    _email_send_without_sender_topic(monkeypatch, database, worker_env)
    count = DeliveryLedger.count_deliveries
    throttled: list[str] = []

    def throttled_once(self: Any, notification_id: str, delivery_count: int, error: str | None = None) -> None:
        if error and not throttled:
            throttled.append(error)
            raise UpstreamError("writing the ledger failed (ProvisionedThroughputExceededException)")
        count(self, notification_id, delivery_count, error)

    monkeypatch.setattr(DeliveryLedger, "count_deliveries", throttled_once)

    first = _expand(worker_env, lambda_context)
    assert [len(result["batchItemFailures"]) for result in first] == [1]
    assert _send_state(db)[0] == "expanding"
    # SQS hands the job back once the failed run's lease has lapsed.
    with db.cursor() as cursor:
        cursor.execute("UPDATE sends SET leased_until = now() - interval '1 second' RETURNING id::text")
        [(send_id,)] = cursor.fetchall()
    db.commit()
    ExpansionQueue(worker_env.sqs, worker_env.env["EXPANSION_QUEUE_URL"]).submit(
        ExpansionJob(send_id=send_id, notification_id="n-email", caller="k1")
    )
    _expand(worker_env, lambda_context)

    status, reason = _send_state(db)
    assert status == "failed"
    assert clients.get_ledger().get_record("n-email").error == reason
