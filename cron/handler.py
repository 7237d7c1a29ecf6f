"""Lambda adapter of the cron: EventBridge ``rate(1 minute)`` → the due scheduled sends to the expansion worker.

Each run claims due rows in batches until none is left or the function's time, less a margin, is spent
(``core.audience.schedules.dispatch_due``). A run that fails to reach the database raises (Lambda reports it; the
next minute's run tries again); a run that dies leaves its claims to the claim timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.audience.repository import AudienceRepository
from core.audience.schedules import RetryPolicy, SendEnqueuer, dispatch_due
from core.audience.sends import AudienceSendEnqueuer
from core.audience.settings import CronSettings
from core.clients import get_database, get_expansion_queue
from core.errors import UpstreamError
from core.observability import logger, metrics, remaining_time, tracer
from core.settings import load_settings


class ScheduledEvent(BaseModel):
    """The EventBridge event of a schedule rule (``detail-type`` "Scheduled Event")."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: str
    detail_type: str = Field(alias="detail-type")
    source: str
    time: datetime
    resources: list[str] = Field(default_factory=list)


def settings() -> CronSettings:
    """Return this function's settings, parsed at the container's first invocation; a missing variable fails it."""
    return load_settings(CronSettings)


def build_enqueuer(config: CronSettings) -> SendEnqueuer:
    """Return what hands a due send over: every audience (a topic's subscribers too) to the expansion queue."""
    return AudienceSendEnqueuer(get_expansion_queue(config))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Dispatch the scheduled sends due now; return the run's report (claimed, sent, rearmed, retried, failed)."""
    config = settings()
    scheduled = ScheduledEvent.model_validate(event)
    logger.append_keys(event_id=scheduled.id, scheduled_time=scheduled.time.isoformat())
    database = get_database(config)
    database.bound_to(remaining_time(context))
    repository = AudienceRepository(database)
    time_left = remaining_time(context, config.cron_time_margin_seconds)
    report = dispatch_due(
        repository,
        build_enqueuer(config),
        datetime.now(UTC),
        config.cron_batch_size,
        timedelta(seconds=config.cron_claim_timeout_seconds),
        time_left=time_left,
        retry=RetryPolicy(
            base=timedelta(seconds=config.cron_retry_base_seconds),
            cap=timedelta(seconds=config.cron_retry_cap_seconds),
            max_attempts=config.cron_max_attempts,
        ),
    )
    purged = purge_recipients(repository, config, time_left)
    logger.info("cron run done", extra={**report.as_dict(), "recipients_purged": purged})
    return report.as_dict()


# At most this many purge statements a run (each deletes at most repository.PURGE_ROWS rows).
PURGES_PER_RUN = 20


def purge_recipients(repository: AudienceRepository, config: CronSettings, time_left: Callable[[], float]) -> int:
    """Delete the recorded recipients of local-time sends that ended long enough ago, a bounded statement at a time
    while the run has time (after the sends were dispatched); return how many went.

    Housekeeping: a failure is logged, never raised (the next minute's run purges).
    """
    purged = 0
    for _ in range(PURGES_PER_RUN):
        if time_left() <= 0:
            break
        try:
            rows = repository.purge_send_recipients(config.cron_recipients_kept_hours * 3600)
        except UpstreamError as exc:
            logger.warning("purging the recipients of ended sends failed", extra={"reason": str(exc)})
            break
        if rows is None:
            break
        purged += rows
    return purged
