"""Audience benchmark: a send to a 100,000-user segment, one cron run over 10,000 due schedules, a segment count with
and without its index; on a real PostgreSQL, with AWS in-process under moto (as bench/delivery.py and intake.py).

The database is a throwaway one: a PostgreSQL server started from the machine's binaries as the local stack and the
tests start it (``infra/local/postgres.py``, loopback, fsync off) and stopped at the end, or, when ``DATABASE_URL``
is set, a database of its own created on that server and dropped at the end. The migrations are applied with
``infra/migrate.py``; users are loaded with ``INSERT … SELECT generate_series`` (not timed). Measured in one run:

- expansion: ``accept_send`` (``POST /v1/sends``) records a push send to the segment ``newsletter`` (every user; each
  has an Android device, every fourth an iPhone too), then the expansion worker's handler (``producer/expansion.py``)
  runs its job from the expansion queue once its clients are warm: it pages the segment (500 users a page), reads the
  page's devices, and enqueues one delivery per device (``SendMessageBatch``). Recipients per second, messages
  enqueued per second, and where the time went (the delivery queue's sends, PostgreSQL). Target: 100,000 recipients
  in under a minute.
- cron: one run of the cron's handler (``cron/handler.py``, 100 rows a claim) over 10,000 due scheduled sends to
  one user each (handed to the expansion queue 25 to a job), beside a per-row loop as the seed system dispatched: one
  transaction per row that claims it (``FOR UPDATE SKIP LOCKED``), enqueues it through the cron's own enqueuer and
  marks it sent. Target: the cron at least 10x as fast as the loop.
- segment count: ``count_users`` of a 1 % segment (``plan`` is ``enterprise``) and a 30 % one (``pro``) over every
  user, with the GIN index ``users_data_idx`` of ``infra/migrations/0001_audience.sql`` and after dropping it (it is
  created again after), with the plan EXPLAIN gives each.

``--quick``: a tenth of every size (10,000 users, 1,000 due rows), well under a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.environment import use_bench_environment
from bench.results import Fragment, Table, Target

use_bench_environment()

EXPANSION_TARGET_SECONDS = 60.0
FULL_USERS = 100_000
CRON_TARGET_RATIO = 10.0
# The users' time zones: spread over a few, as a real audience's are.
ZONES = ("America/New_York", "America/Los_Angeles", "Europe/Paris", "Europe/London", "Asia/Tokyo", "UTC")
SEGMENT = "newsletter"
SEGMENT_WHERE = {"field": "newsletter", "eq": True}
# Counted with and without users_data_idx: containment (eq), which the GIN index serves; the first is the target's.
COUNTED = (
    ("1 % (plan = enterprise)", {"field": "plan", "eq": "enterprise"}),
    ("30 % (plan = pro)", {"field": "plan", "eq": "pro"}),
)
DATA_INDEX = "users_data_idx"
ACCOUNT = "123456789012"
REGION = "us-east-1"
ANDROID_APP = f"arn:aws:sns:us-east-1:{ACCOUNT}:app/GCM/bench-android"
IOS_APP = f"arn:aws:sns:us-east-1:{ACCOUNT}:app/APNS/bench-ios"


@dataclass(frozen=True)
class Sizes:
    """How much of everything one run makes."""

    users: int
    schedules: int
    per_row: int
    rounds: int


FULL = Sizes(users=FULL_USERS, schedules=10_000, per_row=10_000, rounds=7)
QUICK = Sizes(users=FULL_USERS // 10, schedules=1_000, per_row=1_000, rounds=5)


@dataclass
class Stopwatch:
    """Wall time and calls spent in one method of one object, while ``timing`` wraps it."""

    seconds: float = 0.0
    calls: int = 0

    @contextlib.contextmanager
    def timing(self, target: Any, name: str) -> Iterator[None]:
        """Time every call of ``target.<name>`` until the block ends (an instance attribute shadows the method)."""
        method: Callable[..., Any] = getattr(target, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        setattr(target, name, timed)
        try:
            yield
        finally:
            delattr(target, name)


@dataclass
class ExpansionFigures:
    """What the timed expansion run did and how long it took."""

    recipients: int
    messages: int
    seconds: float
    queue: Stopwatch
    database: Stopwatch


@dataclass
class CronFigures:
    """The cron's run and the per-row loop over their own due rows."""

    rows: int
    cron_seconds: float
    cron_claims: int
    cron_sqs: Stopwatch
    loop_rows: int
    loop_seconds: float
    loop_sqs: Stopwatch

    @property
    def loop_extrapolated(self) -> float:
        """The loop's time over as many rows as the cron's run (measured on ``loop_rows``)."""
        return self.loop_seconds * self.rows / self.loop_rows


@dataclass
class CountFigures:
    """One segment counted with and without the data index."""

    label: str
    matches: int
    indexed: float
    indexed_plan: str
    scanned: float
    scanned_plan: str


@contextlib.contextmanager
def flat_moto_sqs() -> Iterator[None]:
    """Keep moto's SendMessage as cheap with a full queue as with an empty one, while the block runs.

    moto builds every attribute of the queue on each message sent (to read ``ContentBasedDeduplication``), counting
    every message in it and converting every attribute name: its cost grows with the queue's depth, which real SQS's
    does not (bench/intake.py drains the queue for the same reason; 100,000 messages cannot be drained in between).
    The name conversion is memoized (a pure function) and the queue's messages are counted with ``len``: nothing
    here is delayed, so ``ApproximateNumberOfMessages`` counts the messages in flight too.
    """
    import moto.sqs.models as sqs_models

    replaced: dict[str, Any] = {
        "approximate_number_of_messages": property(lambda queue: len(queue._messages)),
        "approximate_number_of_messages_delayed": property(lambda queue: 0),
        "approximate_number_of_messages_not_visible": property(lambda queue: 0),
    }
    kept = {name: sqs_models.Queue.__dict__[name] for name in replaced}
    convert = sqs_models.camelcase_to_underscores
    for name, counted in replaced.items():
        setattr(sqs_models.Queue, name, counted)
    sqs_models.camelcase_to_underscores = functools.cache(convert)
    try:
        yield
    finally:
        sqs_models.camelcase_to_underscores = convert
        for name, original in kept.items():
            setattr(sqs_models.Queue, name, original)


# --- PostgreSQL -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield the URL of a PostgreSQL server: ``DATABASE_URL``'s, or a throwaway one from the machine's binaries,
    stopped and its data removed at the end (the tests' own, ``tests/support/postgres.py``)."""
    from tests.support.postgres import throwaway_server

    with throwaway_server(os.environ.get("DATABASE_URL")) as url:
        yield url


@contextlib.contextmanager
def bench_database(server_url: str) -> Iterator[str]:
    """Yield the URL of a migrated database of this run's own on the server; dropped at the end."""
    from tests.support.postgres import migrated_database

    with migrated_database(server_url) as url:
        yield url


def server_version(connection: Any) -> str:
    """Return the server's PostgreSQL version (``15.18``)."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = str(cursor.fetchone()[0]).split()[0]
    connection.rollback()
    return version


def load_users(connection: Any, count: int) -> int:
    """Insert ``count`` users (ids u0000000…) with an Android device each and an iPhone for every fourth, in a few
    statements; return the devices made."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO apps (name, platform, platform_application_arn)"
            " VALUES ('bench-android', 'GCM', %s), ('bench-ios', 'APNS', %s)",
            (ANDROID_APP, IOS_APP),
        )
        cursor.execute(
            "INSERT INTO users (id, timezone, email, data)"
            " SELECT format('u%%s', lpad(n::text, 7, '0')), (%s::text[])[n %% %s + 1],"
            " format('user%%s@example.com', n),"
            " jsonb_build_object('plan', CASE WHEN n %% 100 = 0 THEN 'enterprise'"
            " WHEN n %% 10 IN (1, 2, 3) THEN 'pro' ELSE 'free' END, 'age', 18 + n %% 60, 'newsletter', true)"
            " FROM generate_series(0, %s) AS n",
            (list(ZONES), len(ZONES), count - 1),
        )
        cursor.execute(
            "INSERT INTO devices (user_id, app, token, endpoint_arn)"
            " SELECT format('u%%s', lpad(n::text, 7, '0')), 'bench-android', format('android-%%s', n),"
            " format(%s, n) FROM generate_series(0, %s) AS n",
            (f"arn:aws:sns:us-east-1:{ACCOUNT}:endpoint/GCM/bench-android/%s", count - 1),
        )
        cursor.execute(
            "INSERT INTO devices (user_id, app, token, endpoint_arn)"
            " SELECT format('u%%s', lpad(n::text, 7, '0')), 'bench-ios', format('ios-%%s', n),"
            " format(%s, n) FROM generate_series(0, %s, 4) AS n",
            (f"arn:aws:sns:us-east-1:{ACCOUNT}:endpoint/APNS/bench-ios/%s", count - 1),
        )
        cursor.execute("SELECT count(*) FROM devices")
        devices = int(cursor.fetchone()[0])
        cursor.execute("ANALYZE")
    connection.commit()
    return devices


def schedule_due(connection: Any, count: int, prefix: str, users: int) -> None:
    """Insert ``count`` scheduled sends, each to one user, due five minutes ago, in one statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH made AS (INSERT INTO sends (notification_id, target, content, channels, status)"
            " SELECT format(%s, n),"
            " jsonb_build_object('user_ids', jsonb_build_array(format('u%%s', lpad((n %% %s)::text, 7, '0')))),"
            " '{\"text\": \"Your order ships today\"}'::jsonb, ARRAY['push'], 'scheduled'"
            " FROM generate_series(1, %s) AS n RETURNING id)"
            " INSERT INTO scheduled_sends (send_id, fire_at) SELECT id, %s FROM made",
            (f"{prefix}-%s", users, count, datetime.now(UTC) - timedelta(minutes=5)),
        )
        cursor.execute("ANALYZE scheduled_sends")
    connection.commit()


# --- the measurements -----------------------------------------------------------------------------------------------


def _quiet(call: Callable[[], Any]) -> Any:
    # The handlers' metrics are flushed to stdout as EMF lines, as CloudWatch reads them: not for this output.
    with contextlib.redirect_stdout(io.StringIO()):
        return call()


def _run_send(aws: Any, request_body: dict[str, Any]) -> tuple[dict[str, Any], Callable[[], Any]]:
    """Accept a send as ``POST /v1/sends`` does and return its job, with the expansion handler's call on it."""
    from core import clients
    from core.audience.sends import SendRequest, accept_send
    from producer.expansion import handler
    from tests.fakes.lambda_context import FakeLambdaContext
    from tests.integration.consumer.flow import sqs_event

    accept_send(
        SendRequest.model_validate(request_body),
        clients.get_audience_repository(),
        clients.get_expansion_queue(),
        datetime.now(UTC),
        str(uuid.uuid4()),
    )
    received = aws.sqs.receive_message(QueueUrl=aws.env["EXPANSION_QUEUE_URL"], MaxNumberOfMessages=1)["Messages"]
    job: dict[str, Any] = json.loads(received[0]["Body"])
    event = sqs_event(received)
    # The expansion function's timeout (serverless.yml): a run that needs longer hands the rest to a new job.
    context = FakeLambdaContext(function_name="notify-bench-expand", timeout_seconds=900)

    def expand() -> None:
        result = _quiet(lambda: handler(event, context))
        if result["batchItemFailures"]:
            raise RuntimeError(f"the expansion job failed: {result}")

    return job, expand


def _queue_depth(aws: Any, url: str) -> int:
    attributes = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def _queued_sends(name: str) -> int:
    """Return how many sends the jobs on the expansion queue name (a batch job names several), read from moto's
    backend."""
    from moto.sqs.models import sqs_backends

    from core.audience.sends import ExpansionBatchJob, parse_job

    jobs = [parse_job(message.body) for message in sqs_backends[ACCOUNT][REGION].queues[name]._messages]
    return sum(len(job.jobs) if isinstance(job, ExpansionBatchJob) else 1 for job in jobs)


def measure_expansion(aws: Any, users: int) -> ExpansionFigures:
    """Time the expansion worker's handler on a push send to the segment of every user."""
    from core import clients

    repository = clients.get_audience_repository()
    repository.put_segment(SEGMENT, {"where": SEGMENT_WHERE})
    content = {"text": "Spring sale: 20 % off everything today", "subject": "Spring sale"}
    # Warm-up: a send to ten users, so the timed run finds settings, clients and the connection made.
    _, warm_up = _run_send(aws, {"to": {"user_ids": [f"u{n:07d}" for n in range(10)]}, "content": content})
    warm_up()
    before = _queue_depth(aws, aws.delivery_queue_url)
    job, expand = _run_send(aws, {"to": {"segment": SEGMENT}, "content": content, "channels": ["push"]})
    queue, database = Stopwatch(), Stopwatch()
    with (
        queue.timing(clients.get_delivery_queue(), "send"),
        database.timing(clients.get_database(), "run"),
    ):
        started = time.perf_counter()
        expand()
        seconds = time.perf_counter() - started
    send = repository.get_send(job["send_id"])
    if send.status != "expanded":
        raise RuntimeError(f"the send is {send.status} after the run ({send.last_error}): not done in one run")
    messages = _queue_depth(aws, aws.delivery_queue_url) - before
    if messages != send.recipients:
        raise RuntimeError(f"{messages} messages on the delivery queue for {send.recipients} deliveries")
    aws.sqs.purge_queue(QueueUrl=aws.delivery_queue_url)  # moto holds them in memory; once a minute at most
    return ExpansionFigures(users, messages, seconds, queue, database)


def _per_row_loop(url: str, enqueuer: Any, limit: int) -> int:
    """Dispatch due rows as the seed system did: one transaction per row holding its claim, enqueue and mark."""
    import psycopg2

    from core.audience.schedules import DueSend

    connection = psycopg2.connect(url, application_name="notify-bench-per-row")
    now = datetime.now(UTC)
    done = 0
    try:
        while done < limit:
            with connection, connection.cursor() as cursor:
                cursor.execute(
                    "SELECT ss.id::text, ss.send_id::text, d.notification_id, d.target, d.content, d.channels"
                    " FROM scheduled_sends ss JOIN sends d ON d.id = ss.send_id"
                    " WHERE ss.status = 'scheduled' AND ss.fire_at <= %s"
                    " ORDER BY ss.fire_at LIMIT 1 FOR UPDATE OF ss SKIP LOCKED",
                    (now,),
                )
                row = cursor.fetchone()
                if row is None:
                    break
                cursor.execute(
                    "UPDATE scheduled_sends SET status = 'claimed', claimed_at = %s, attempts = attempts + 1,"
                    " updated_at = now() WHERE id = %s",
                    (now, row[0]),
                )
                enqueuer.enqueue(
                    DueSend(
                        schedule_id=row[0],
                        send_id=row[1],
                        notification_id=row[2],
                        target=row[3],
                        content=row[4],
                        channels=list(row[5]),
                    )
                )
                cursor.execute(
                    "UPDATE scheduled_sends SET status = 'sent', sent_at = %s, updated_at = now() WHERE id = %s",
                    (now, row[0]),
                )
            done += 1
    finally:
        connection.close()
    return done


def measure_cron(aws: Any, url: str, connection: Any, sizes: Sizes) -> CronFigures:
    """Time one cron run over the due rows, then the per-row loop over as many (or a sample) of other due rows."""
    from core import clients
    from cron.handler import build_enqueuer, handler, settings
    from tests.fakes.lambda_context import FakeLambdaContext
    from tests.support.events import load_event

    event = load_event("eventbridge_scheduled.json")

    def cron_run() -> dict[str, Any]:
        # The cron function's timeout (serverless.yml): a run that needs longer stops, out of time, and leaves the rest.
        context = FakeLambdaContext(function_name="notify-bench-cron", timeout_seconds=60)
        report: dict[str, Any] = _quiet(lambda: handler(event, context))
        return report

    cron_run()  # warm-up with nothing due: settings, clients
    expansion_url = aws.env["EXPANSION_QUEUE_URL"]
    before = _queued_sends(expansion_url.rsplit("/", 1)[1])
    schedule_due(connection, sizes.schedules, "cron", sizes.users)
    cron_sqs = Stopwatch()
    queue = clients.get_expansion_queue()
    with cron_sqs.timing(queue, "submit"), cron_sqs.timing(queue, "submit_all"):
        started = time.perf_counter()
        report = cron_run()
        cron_seconds = time.perf_counter() - started
    if report["sent"] != sizes.schedules or report["out_of_time"]:
        raise RuntimeError(f"the cron run did not send the {sizes.schedules} due rows: {report}")
    if _queued_sends(expansion_url.rsplit("/", 1)[1]) - before != sizes.schedules:
        raise RuntimeError("the cron run did not hand every due row to the expansion queue")
    before += sizes.schedules
    schedule_due(connection, sizes.per_row, "loop", sizes.users)
    loop_sqs = Stopwatch()
    enqueuer = build_enqueuer(settings())
    with loop_sqs.timing(clients.get_expansion_queue(), "submit"):
        started = time.perf_counter()
        loop_rows = _per_row_loop(url, enqueuer, sizes.per_row)
        loop_seconds = time.perf_counter() - started
    if loop_rows != sizes.per_row or _queued_sends(expansion_url.rsplit("/", 1)[1]) - before != sizes.per_row:
        raise RuntimeError(f"the per-row loop dispatched {loop_rows} of {sizes.per_row} rows")
    return CronFigures(
        rows=sizes.schedules,
        cron_seconds=cron_seconds,
        cron_claims=int(report["batches"]),
        cron_sqs=cron_sqs,
        loop_rows=loop_rows,
        loop_seconds=loop_seconds,
        loop_sqs=loop_sqs,
    )


def _plan_nodes(node: dict[str, Any]) -> list[str]:
    """The plan's nodes from the top down, each with the relation or index it reads."""
    label = node["Node Type"]
    if "Index Name" in node:
        label += f" using {node['Index Name']}"
    elif "Relation Name" in node:
        label += f" on {node['Relation Name']}"
    children = node.get("Plans", [])
    if not children:
        return [label]
    below = [" + ".join(" > ".join(_plan_nodes(child)) for child in children)]
    return [label, *below]


def explain(connection: Any, condition: Any) -> str:
    """Return the plan of ``count_users``'s query for ``condition``, as the server chooses it now."""
    with connection.cursor() as cursor:
        # The query of AudienceRepository.count_users: the compiled condition's SQL is this codebase's text, its values
        # are parameters.
        query = f"EXPLAIN (FORMAT JSON) SELECT count(*) FROM users u WHERE ({condition.sql})"  # noqa: S608
        cursor.execute(query, condition.params)
        plan = cursor.fetchone()[0][0]["Plan"]
    connection.rollback()
    return " > ".join(_plan_nodes(plan))


def _median_count(repository: Any, condition: Any, rounds: int) -> tuple[int, float]:
    matches = repository.count_users(condition)  # warm-up
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        repository.count_users(condition)
        times.append(time.perf_counter() - started)
    return matches, statistics.median(times)


def measure_counts(connection: Any, sizes: Sizes) -> tuple[list[CountFigures], float]:
    """Count each segment with the data index, then without it; return the figures and the index's build time."""
    from core import clients
    from core.audience.segments import compile_where, parse_where

    repository = clients.get_audience_repository()
    conditions = [(label, compile_where(parse_where(where))) for label, where in COUNTED]
    indexed = []
    for label, condition in conditions:
        matches, seconds = _median_count(repository, condition, sizes.rounds)
        indexed.append((label, condition, matches, seconds, explain(connection, condition)))
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (DATA_INDEX,))
        found = cursor.fetchone()
        if found is None:
            raise RuntimeError(f"the migrations made no index {DATA_INDEX}")
        definition: str = found[0]
        cursor.execute(f"DROP INDEX {DATA_INDEX}")
    connection.commit()
    figures = []
    try:
        for label, condition, matches, seconds, plan in indexed:
            _, scanned = _median_count(repository, condition, sizes.rounds)
            figures.append(CountFigures(label, matches, seconds, plan, scanned, explain(connection, condition)))
    finally:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(definition)
        connection.commit()
        build = time.perf_counter() - started
    return figures, build


# --- the run --------------------------------------------------------------------------------------------------------


def _rate(count: float, seconds: float) -> str:
    return f"{count / seconds:,.0f}"


def main() -> None:
    """Run the three measurements on one database, print the figures and save them for the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of every size")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    fragment = Fragment(
        "audience",
        "Audience: a send to a segment, the cron over due schedules, a segment count",
        "python -m bench.audience" + (" --quick" if args.quick else ""),
        args.quick,
    )
    import psycopg2
    from moto import mock_aws

    from core import clients
    from tests.support.aws import create_resources

    # Stopped from outside (make bench's timeout, Ctrl-C), the run still stops its PostgreSQL in the finally blocks.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with postgres_server() as server, bench_database(server) as url, mock_aws(), flat_moto_sqs():
        aws = create_resources()
        os.environ.update({**aws.env, "DATABASE_URL": url})
        clients.reset()
        connection = psycopg2.connect(url, application_name="notify-bench")
        try:
            version = server_version(connection)
            started = time.perf_counter()
            devices = load_users(connection, sizes.users)
            loaded = time.perf_counter() - started
            print(
                f"Audience benchmark: PostgreSQL {version} on loopback, AWS in-process under moto; "
                f"load average {os.getloadavg()[0]:.1f} at the start"
            )
            print(f"  loaded {sizes.users:,} users and {devices:,} devices in {loaded:.1f} s (not measured)")
            expansion = measure_expansion(aws, sizes.users)
            cron = measure_cron(aws, url, connection, sizes)
            counts, build = measure_counts(connection, sizes)
        finally:
            connection.close()
            clients.get_database().close()
    report(fragment, sizes, version, devices, expansion, cron, counts, build)
    fragment.save()


def report(
    fragment: Fragment,
    sizes: Sizes,
    version: str,
    devices: int,
    expansion: ExpansionFigures,
    cron: CronFigures,
    counts: list[CountFigures],
    build: float,
) -> None:
    """Print the figures and add them to the fragment."""
    e = expansion
    rest = e.seconds - e.queue.seconds - e.database.seconds
    print(f"\nExpansion: a push send to the segment {SEGMENT!r} of {e.recipients:,} users ({devices:,} devices)")
    print(f"  {'expansion worker run':<38} {e.seconds:9.1f} s")
    print(f"  {'recipients per second':<38} {_rate(e.recipients, e.seconds):>9}")
    print(f"  {'messages enqueued per second':<38} {_rate(e.messages, e.seconds):>9}   ({e.messages:,} messages)")
    print(f"  {'  of the run: delivery queue sends':<38} {e.queue.seconds:9.1f} s   ({e.queue.calls} pages)")
    print(
        f"  {'  PostgreSQL (queries, rows to models)':<38} {e.database.seconds:9.1f} s"
        f"   ({e.database.calls} transactions)"
    )
    print(f"  {'  building messages, ledger, the rest':<38} {rest:9.1f} s")
    own = e.seconds - e.queue.seconds
    print(f"  {'recipients per second, queue sends aside':<38} {_rate(e.recipients, own):>9}   ({own:.1f} s)")
    extrapolated = e.seconds * FULL_USERS / e.recipients
    if sizes.users != FULL_USERS:
        print(f"  at this rate {FULL_USERS:,} recipients take {extrapolated:.0f} s (extrapolated)")

    c = cron
    loop_full = c.loop_extrapolated
    ratio = loop_full / c.cron_seconds
    sampled = c.loop_rows != c.rows
    sqs_free = (c.loop_seconds - c.loop_sqs.seconds) * c.rows / c.loop_rows / (c.cron_seconds - c.cron_sqs.seconds)
    print(f"\nCron: {c.rows:,} due scheduled sends to one user each (small sends: 25 to a job on the expansion queue)")
    print(
        f"  {'cron run (cron/handler.py)':<38} {c.cron_seconds:9.2f} s   {_rate(c.rows, c.cron_seconds):>6} rows/s"
        f"   {c.rows:,} rows in {c.cron_claims} claims; SQS (SendMessageBatch) {c.cron_sqs.seconds:.2f} s"
    )
    print(
        f"  {'per-row loop (a transaction a row)':<38} {c.loop_seconds:9.2f} s   "
        f"{_rate(c.loop_rows, c.loop_seconds):>6} rows/s   {c.loop_rows:,} rows;"
        f" SQS (SendMessage) {c.loop_sqs.seconds:.2f} s"
    )
    if sampled:
        print(f"  per-row loop over {c.rows:,} rows: {loop_full:.1f} s (extrapolated from {c.loop_rows:,} rows)")
    print(f"  cron {ratio:.1f}x as fast as the per-row loop")
    print(f"  leaving out the time in SQS: cron {sqs_free:.1f}x as fast")

    print(f"\nSegment count over {sizes.users:,} users (count_users, median of {sizes.rounds} after a warm-up)")
    for count in counts:
        print(f"  {count.label}: {count.matches:,} users")
        print(f"    {'with ' + DATA_INDEX:<20} {count.indexed * 1000:8.1f} ms   {count.indexed_plan}")
        print(f"    {'without it':<20} {count.scanned * 1000:8.1f} ms   {count.scanned_plan}")
    print(f"  {DATA_INDEX} created again in {build:.1f} s")

    fragment.tables += [
        Table(
            f"Expansion: a push send to a segment of {e.recipients:,} users ({devices:,} devices), "
            f"PostgreSQL {version}, SQS in-process under moto",
            ["figure", "value"],
            [
                ["expansion worker run", f"{e.seconds:.1f} s"],
                ["recipients per second", _rate(e.recipients, e.seconds)],
                ["messages enqueued per second", f"{_rate(e.messages, e.seconds)} ({e.messages:,} messages)"],
                ["of which delivery queue sends", f"{e.queue.seconds:.1f} s ({e.queue.calls} pages)"],
                [
                    "of which PostgreSQL (queries, rows to models)",
                    f"{e.database.seconds:.1f} s ({e.database.calls} transactions)",
                ],
                ["of which building messages, ledger, the rest", f"{rest:.1f} s"],
                ["recipients per second, the queue's sends aside", f"{_rate(e.recipients, own)} ({own:.1f} s)"],
            ],
        ),
        Table(
            f"Cron: {c.rows:,} due scheduled sends to one user each, handed to the expansion queue",
            ["dispatcher", "rows timed", "time", "rows/s", "of which SQS", f"time for {c.rows:,}"],
            [
                [
                    "cron run (cron/handler.py, claims of 100)",
                    f"{c.rows:,}",
                    f"{c.cron_seconds:.2f} s",
                    _rate(c.rows, c.cron_seconds),
                    f"{c.cron_sqs.seconds:.2f} s",
                    f"{c.cron_seconds:.2f} s",
                ],
                [
                    "per-row loop (claim, enqueue, mark: a transaction a row)",
                    f"{c.loop_rows:,}",
                    f"{c.loop_seconds:.2f} s",
                    _rate(c.loop_rows, c.loop_seconds),
                    f"{c.loop_sqs.seconds:.2f} s",
                    f"{loop_full:.2f} s" + (" (extrapolated)" if sampled else ""),
                ],
            ],
        ),
        Table(
            f"Segment count over {sizes.users:,} users (count_users, median of {sizes.rounds} after a warm-up)",
            ["segment", "users", f"with {DATA_INDEX}", "plan", "without it", "plan"],
            [
                [
                    count.label,
                    f"{count.matches:,}",
                    f"{count.indexed * 1000:.1f} ms",
                    count.indexed_plan,
                    f"{count.scanned * 1000:.1f} ms",
                    count.scanned_plan,
                ]
                for count in counts
            ],
        ),
    ]
    if sizes.users == FULL_USERS:
        expansion_target = Target(
            f"audience: expansion of a {FULL_USERS:,}-user segment",
            f"{e.seconds:.1f} s",
            f"< {EXPANSION_TARGET_SECONDS:.0f} s",
            e.seconds < EXPANSION_TARGET_SECONDS,
        )
    else:
        expansion_target = Target(
            f"audience: expansion of a {e.recipients:,}-user segment, extrapolated to {FULL_USERS:,}",
            f"{extrapolated:.0f} s",
            f"< {EXPANSION_TARGET_SECONDS:.0f} s",
            extrapolated < EXPANSION_TARGET_SECONDS,
        )
    narrow = counts[0]
    fragment.targets += [
        expansion_target,
        Target(
            f"audience: cron run vs per-row loop over {c.rows:,} due rows",
            f"{ratio:.1f}x",
            f">= {CRON_TARGET_RATIO:.0f}x",
            ratio >= CRON_TARGET_RATIO,
        ),
        Target(
            f"audience: count of a {narrow.label} segment of {sizes.users:,} users, with / without {DATA_INDEX}",
            f"{narrow.indexed * 1000:.1f} / {narrow.scanned * 1000:.1f} ms",
            "-",
            None,
        ),
    ]
    fragment.notes += [
        "Expansion: `accept_send` records the send, the expansion worker's handler (`producer/expansion.py`) runs its "
        "job once its clients are warm (a ten-user send before it); the messages are counted on the delivery queue "
        "after the run. moto runs in the same process, so its work on each SendMessageBatch is in the figures; its "
        "SQS is kept from growing slower as the queue fills (`flat_moto_sqs`: moto counts every queued message on "
        "each message sent, which SQS does not).",
        "Cron: the per-row loop is the seed system's dispatch, one transaction per row holding the claim "
        "(`FOR UPDATE SKIP LOCKED`), the enqueue through the cron's own enqueuer (one SendMessage) and the mark; the "
        "cron claims 100 rows a statement, hands small sends over 25 to a job and ten jobs a SendMessageBatch, and "
        f"marks them in one statement. Without the time in SQS the cron is {sqs_free:.1f}x as fast."
        + (f" The loop was timed over {c.loop_rows:,} rows and extrapolated to {c.rows:,}." if sampled else ""),
        f"Segment count: `{DATA_INDEX}` (GIN, `jsonb_path_ops`) dropped for the second column and created again "
        f"({build:.1f} s); plans from `EXPLAIN` of `count_users`'s query.",
    ]


if __name__ == "__main__":
    main()
