"""Lambda adapter of the expansion queue (SQS, batch size 1): a send's audience becomes recipient deliveries.

Four kinds of job (``core/audience/sends.py``): ``expand`` (``core.audience.expansion.expand_send``: pages the
audience, enqueues the deliveries, resumes at the send's cursor), ``expand_batch`` (small sends the cron handed over
together, ``expand_batch``: one after the other), ``subscribers`` (the consumer delivered a publish's
``subscribers`` integration: ``expand_subscribers`` records a send to its topic's subscribers under the publish's
notification and expands it) and ``disable_endpoint`` (the consumer saw SNS answer ``EndpointDisabled``: the devices
of that endpoint are disabled, so no later send tries them). A job that failed for now (``UpstreamError``) is
reported in ``batchItemFailures`` and comes back ``RETRY_SECONDS`` later (its visibility set so: the queue's own, 6x
the function's timeout, is for runs still going). So does a body this worker cannot read (a newer producer's job while
a deploy is half done, say): it is never dropped, and after five receives it waits in the expansion DLQ, whose alarm
fires, to be moved back once a worker can read it.
"""

from __future__ import annotations

from typing import Any

from core.audience.expansion import ExpansionError, Senders, expand_batch, expand_send, expand_subscribers
from core.audience.sends import AnyJob, DisableEndpointJob, ExpansionBatchJob, SubscribersJob, parse_job
from core.audience.settings import ExpandSettings
from core.clients import (
    get_audience_repository,
    get_client,
    get_database,
    get_delivery_queue,
    get_expansion_queue,
    get_ledger,
    get_topic_registry,
)
from core.errors import InvalidRequestError, NotFoundError, UpstreamError
from core.observability import logger, metrics, remaining_time, tracer
from core.queue import VisibilityScheduler
from core.settings import load_settings

# A job that failed for now shows again this much later: five receives, an hour, before the expansion DLQ.
RETRY_SECONDS = 900


def settings() -> ExpandSettings:
    """Return this function's settings, parsed at the container's first invocation; a missing variable fails it."""
    return load_settings(ExpandSettings)


def senders(config: ExpandSettings) -> Senders:
    """Return the email and Telegram integrations of the stage's audience sender topic (none when it is unset).

    Raises ``ExpansionError`` when the topic does not exist: the send that needs it fails with that reason.
    """
    if config.audience_sender_topic is None:
        return Senders()
    channel, topic = config.audience_sender_topic.split("/", 1)
    try:
        found = get_topic_registry(config).get(channel, topic)
    except NotFoundError:
        raise ExpansionError(f"the audience sender topic {channel}/{topic} does not exist") from None
    return Senders.of(found.integrations)


def handle(job: AnyJob, context: Any) -> None:
    """Run one job; raise ``UpstreamError`` when it must come back later."""
    config = settings()
    get_database(config).bound_to(remaining_time(context))
    repository = get_audience_repository(config)
    if isinstance(job, DisableEndpointJob):
        disabled = repository.disable_device(job.endpoint_arn, job.observed_at)
        logger.info("devices of a disabled endpoint disabled", extra={"devices": disabled})
        metrics.add_metric(name="DevicesDisabled", unit="Count", value=disabled)
        return
    if not isinstance(job, ExpansionBatchJob):
        logger.append_keys(notification_id=job.notification_id)
    margin = config.expansion_time_margin_seconds
    options: dict[str, Any] = {
        "senders": lambda: senders(config),
        "page_size": config.expansion_page_size,
        "time_left": remaining_time(context, margin),
        "lease_seconds": config.expansion_lease_seconds,
    }
    stores = (repository, get_ledger(config), get_delivery_queue(config), get_expansion_queue(config))
    if isinstance(job, ExpansionBatchJob):
        reports = expand_batch(job, *stores, **options)
        logger.info("expansion batch done", extra={"sends": len(job.jobs), "statuses": [r.status for r in reports]})
        return
    if isinstance(job, SubscribersJob):
        report = expand_subscribers(job, *stores, **options)
    else:
        logger.append_keys(send_id=job.send_id)
        report = expand_send(job, *stores, **options)
    logger.info(
        "expansion run done",
        extra={"status": report.status, "pages": report.pages, "enqueued": report.enqueued, "skipped": report.skipped},
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run the batch's jobs; return the ids of those to retry (``batchItemFailures``), each shown again
    ``RETRY_SECONDS`` later."""
    config = settings()
    failures: list[dict[str, str]] = []
    for record in event.get("Records", []):
        try:
            job = parse_job(record["body"])
        except InvalidRequestError:
            logger.error(
                "expansion job this worker cannot read: it comes back, then waits in the expansion DLQ",
                extra={"message_id": record["messageId"]},
            )
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        try:
            handle(job, context)
        except UpstreamError as exc:
            logger.warning("expansion job failed for now", extra={"error": str(exc)})
            failures.append({"itemIdentifier": record["messageId"]})
    if failures:
        scheduler = VisibilityScheduler(get_client("sqs", config.aws_region), config.expansion_queue_url)
        handles = {record["messageId"]: record.get("receiptHandle") for record in event.get("Records", [])}
        for failure in failures:
            receipt = handles.get(failure["itemIdentifier"])
            if receipt:
                scheduler.postpone(receipt, RETRY_SECONDS)
    return {"batchItemFailures": failures}
