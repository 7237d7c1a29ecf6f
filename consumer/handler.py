"""Lambda adapter of the delivery queue: batches with partial failures, records delivered concurrently."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from consumer.credentials import CredentialSource
from consumer.delivery import Attempt, Deliverer, Outcome, delivery_of, run_of
from consumer.retry import RetryPolicy
from core.clients import (
    AWS_SEND_SECONDS,
    get_channels,
    get_client,
    get_delivery_queue,
    get_expansion_queue_at,
    get_ledger,
    get_pacer,
)
from core.observability import logger, metrics, tracer
from core.queue import DeadLetterQueue, VisibilityScheduler
from core.roles.deliver import DeliverSettings
from core.settings import load_settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

# A processor set here is used instead of this container's own (tests give one per poller thread).
processor: AsyncBatchProcessor | None = None


@cache
def batch_processor() -> AsyncBatchProcessor:
    """Return this container's batch processor, built by the first batch: powertools' batch utility loads asyncio
    and every event data class (~35 ms of import)."""
    from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType

    # Every record reports its own failure, so a batch whose records all failed is an answer, not an error.
    return AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def count_delivery(channel_type: str, outcome: str) -> None:
    """Emit one delivery metric with the channel type as its dimension."""
    with single_metric(
        name=outcome, unit=MetricUnit.Count, value=1, default_dimensions=metrics.default_dimensions
    ) as metric:
        metric.add_dimension(name="channel_type", value=channel_type)


def settings() -> DeliverSettings:
    """Return this function's settings, parsed at the container's first invocation; a missing variable fails it."""
    return load_settings(DeliverSettings)


def endpoint_disabled_reporter(config: DeliverSettings) -> Callable[[str, float], None] | None:
    """Return what reports a disabled SNS endpoint to the expansion worker (which disables its devices), or ``None``
    when the function has no ``EXPANSION_QUEUE_URL``."""
    if config.expansion_queue_url is None:
        return None
    from core.audience.sends import DisableEndpointJob

    queue = get_expansion_queue_at(config.expansion_queue_url, config.aws_region)

    def report(endpoint_arn: str, observed_at: float) -> None:
        job = DisableEndpointJob(endpoint_arn=endpoint_arn, observed_at=datetime.fromtimestamp(observed_at, UTC))
        logger.info("disabled endpoint reported", extra={"message_id": queue.submit(job)})

    return report


@cache
def _credential_source(ssm: Any, max_age: int) -> CredentialSource:
    return CredentialSource(ssm, max_age)


def credential_source(region: str, max_age: int) -> CredentialSource:
    """Return this container's integration credentials, cached across invocations, on the shared SSM client (a new
    client, after ``core.clients.reset``, starts an empty cache)."""
    return _credential_source(get_client("ssm", region), max_age)


def build_deliverer() -> Deliverer:
    """Return a deliverer on this container's cached clients, session and settings."""
    config = settings()
    sqs = get_client("sqs", config.aws_region)
    return Deliverer(
        channels=get_channels(config),
        ledger=get_ledger(config),
        credentials=credential_source(config.aws_region, config.secrets_cache_seconds),
        queue=get_delivery_queue(config),
        dead_letters=DeadLetterQueue(sqs, config.dead_letter_queue_url),
        scheduler=VisibilityScheduler(sqs, config.delivery_queue_url),
        pacer=get_pacer(config),
        policy=RetryPolicy(
            base_seconds=config.retry_base_seconds,
            cap_seconds=config.retry_cap_seconds,
            window_seconds=config.retry_window_hours * 3600,
            max_attempts=config.max_attempts,
        ),
        count=count_delivery,
        on_endpoint_disabled=endpoint_disabled_reporter(config),
        max_wait_seconds=config.pacing_max_wait_seconds,
        lead_seconds=config.pacing_lead_seconds,
        max_receive_count=config.max_receive_count,
    )


def send_reserve_seconds(config: DeliverSettings) -> float:
    """Return how long before its timeout an invocation starts no send: the longest send, and its bookkeeping.

    The longest send is a URL-based one (its connect plus read timeouts) or one through AWS (SES, SNS); a browser
    delivery keeps to the former however many connections it posts to. 2 s more for name resolution (no socket timeout
    interrupts it) and the outcome's bookkeeping. The deploy checks refuse a timeout that leaves no time before it.
    """
    return max(config.http_connect_timeout + config.http_read_timeout, AWS_SEND_SECONDS) + 2


def latest_start(context: Any) -> float | None:
    """Return the last moment a send may start in this invocation: before the timeout, less one send's time."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return time.time() + remaining() / 1000 - send_reserve_seconds(settings())


def attempt_of(record: SQSRecord) -> Attempt:
    """Return the attempt an SQS record stands for."""
    return Attempt(
        message_id=record.message_id,
        receipt_handle=record.receipt_handle,
        receive_count=int(record.attributes.approximate_receive_count),
        body=record.body,
    )


def batch_attempts(event: dict[str, Any]) -> list[Attempt]:
    """Return the attempts of an event's records; a record that names no attempt is left to its own handling."""
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    attempts = []
    for record in event.get("Records", []):
        try:
            attempts.append(attempt_of(SQSRecord(record)))
        except (KeyError, TypeError, ValueError):
            continue
    return attempts


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    """Deliver a batch; return the ids of the records to retry (``batchItemFailures``)."""
    import asyncio

    from aws_lambda_powertools.utilities.batch import async_process_partial_response

    concurrency = settings().delivery_concurrency
    metrics.add_metric(name="records", unit=MetricUnit.Count, value=len(event.get("Records", [])))
    deliverer = build_deliverer()
    until = latest_start(context)
    # The ledger rows of the records that start at once, in one read before the sends: a GetItem per message would
    # hold each send back. A record that waits for a thread reads its own row when its turn comes, and so does every
    # copy of a delivery that comes twice in the batch.
    attempts = batch_attempts(event)
    entries = deliverer.read_entries(attempts, concurrency)
    # Copies of one delivery in a batch (SQS delivers at least once, even one message twice in a batch; a redrive whose
    # delete was lost sends a second) run one after another: at once, both read a row not yet delivered, and both
    # sent. Once one copy of a run came to an outcome (delivered, failed, or carried on by a copy it sent: a retry, a
    # slot, an outcome to record), the others of that run are done: the row alone does not tell them (a delivered send
    # whose write failed, a retry's backoff), and each sent again.
    key_of = {attempt.message_id: delivery_of(attempt.body) for attempt in attempts}
    copies = Counter(key_of[attempt.message_id] for attempt in attempts)
    turns: dict[tuple[str, str], asyncio.Lock] = {}
    carried: set[tuple[tuple[str, str], int]] = set()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="deliver") as pool:

        async def deliver_record(record: SQSRecord) -> str:
            attempt = attempt_of(record)
            key = key_of.get(attempt.message_id)
            if key is None or copies[key] < 2:
                outcome = await asyncio.get_running_loop().run_in_executor(
                    pool, deliverer.process, attempt, until, entries
                )
                return outcome.value
            run = (key, run_of(attempt.body))
            async with turns.setdefault(key, asyncio.Lock()):
                if run in carried:
                    logger.info(
                        "delivery skipped: another copy in this batch carried it on",
                        extra={"notification_id": key[0], "delivery_key": key[1], "message_id": attempt.message_id},
                    )
                    return Outcome.SKIPPED.value
                outcome = await asyncio.get_running_loop().run_in_executor(
                    pool, deliverer.process, attempt, until, entries
                )
                carried.add(run)
            return outcome.value

        return async_process_partial_response(
            event=event, record_handler=deliver_record, processor=processor or batch_processor(), context=context
        )
