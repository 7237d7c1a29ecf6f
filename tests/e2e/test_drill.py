"""The fault drill's short form on a local stack of its own: the receiver fails on purpose, a consumer worker is killed
mid-batch, nothing is lost.

bench/drill.py holds the drill (``python -m bench.drill`` runs its long form, with an outage of minutes and more
kills). Here: 30 notifications to a topic of four webhooks on the local receiver, one with a share of 500s, 429s,
answers later than the consumer's timeout and connection resets, one down for 6 s, one answering 400 and one 503
forever; the stack's params allow 12 attempts with backoffs of 1 to 2 s, and a delivery queue visibility timeout of
35 s, so that the batch of the worker killed comes back within the run. The drill runs once for the module; each test
checks one of its outcomes against the receiver's raw records and the consumer's log. Faults are drawn from a seeded
generator: the first 30 requests to ``flaky`` meet 3 fails, 1 slow answer and 5 resets every run.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from bench.drill import (
    CONSUMER_LOG,
    SHORT,
    UNKNOWN_OUTCOME,
    DrillReport,
    DrillTarget,
    function_log,
    queue_reader,
    run_drill,
    targets,
    why_lost,
)
from bench.workers import kill_busy
from tests.e2e.conftest import Ports, launch, new_state_dir, role_refusals, stack_at, stack_env, stop, wait_ready

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def drill() -> Iterator[DrillReport]:
    """Start a stack with the short form's params, run the short drill on it once (about a minute), stop it."""
    state, ports = new_state_dir(), Ports.free()
    output = state / "stack.out"
    process = launch(stack_env(state, ports, {"LOCAL_PARAMS": SHORT.params}), output)
    try:
        stack = stack_at(ports, output)
        wait_ready(process, output, stack.api)
        target = DrillTarget(
            stack.api,
            stack.receiver,
            stack.api_key,
            stack.admin_token,
            kill=lambda: kill_busy(process.pid),
            queues=queue_reader(ports.aws),
            consumer_log=function_log(state / "logs" / CONSUMER_LOG),
        )
        yield run_drill(target, SHORT)
        assert role_refusals(state / "logs") == []
    finally:
        stop(process)
        shutil.rmtree(state, ignore_errors=True)


def _of(drill: DrillReport, integration: str) -> list[str]:
    return [delivery.status for delivery in drill.deliveries if delivery.key == integration]


def test_drill_every_publish_is_accepted(drill: DrillReport) -> None:
    assert (drill.accepted, dict(drill.refused)) == (SHORT.notifications, {})


def test_drill_receiver_log_misses_no_record(drill: DrillReport) -> None:
    assert drill.gaps == 0


def test_drill_consumer_worker_is_killed_mid_batch_as_planned(drill: DrillReport) -> None:
    assert len(drill.kills) == SHORT.kills


def test_drill_delivery_queue_is_empty_after_the_drill(drill: DrillReport) -> None:
    assert drill.queues is not None
    assert drill.queues.delivery == 0


def test_drill_every_delivery_ends_final_backed_by_the_receiver_none_lost(drill: DrillReport) -> None:
    lost = [(d.notification_id, d.key, d.status, d.reason, why_lost(d)) for d in drill.lost()]

    assert lost == []


def test_drill_every_request_at_the_receiver_names_a_delivery_of_the_drill(drill: DrillReport) -> None:
    dropped = drill.dropped_by_headers()

    assert (dropped.unnamed, dropped.stray) == (0, 0)


def test_drill_flaky_and_outage_deliveries_are_all_delivered(drill: DrillReport) -> None:
    # Twelve attempts outlast the 6 s outage (their retries come about a poll apart: bench/drill.py's SHORT), and the
    # seeded faults give no delivery 12 in a row (14 attempt-counting faults meet the first 30 successes).
    statuses = _of(drill, "flaky") + _of(drill, "outage")

    assert statuses.count("delivered") == len(statuses) == 2 * SHORT.notifications, statuses


def test_drill_rejected_deliveries_fail_with_the_receivers_answer(drill: DrillReport) -> None:
    rejected = [delivery for delivery in drill.deliveries if delivery.key == "rejects"]

    assert [delivery.status for delivery in rejected] == ["failed"] * SHORT.notifications
    assert all(
        "400" in (delivery.reason or "") and any(record["status"] == 400 for record in delivery.records)
        for delivery in rejected
    ), rejected[0]


def test_drill_deliveries_whose_retries_are_spent_are_dead_after_every_attempt_reached_the_receiver(
    drill: DrillReport,
) -> None:
    broken = [delivery for delivery in drill.deliveries if delivery.key == "broken"]

    assert [delivery.status for delivery in broken] == ["dead"] * SHORT.notifications
    # Each attempt reached the receiver, but one the consumer logged as timed out or unconnected (``why_lost``).
    assert all(why_lost(delivery) is None for delivery in broken), [
        (d.reason, d.attempts, len(d.records), why_lost(d)) for d in broken
    ]


def test_drill_receiver_met_every_kind_of_fault(drill: DrillReport) -> None:
    answers = drill.answers()

    assert answers["slow"] >= 1
    assert answers["reset"] >= 1
    assert answers["500"] >= 1
    assert answers["429"] >= 1


def test_drill_duplicates_have_a_cause_the_logs_show(drill: DrillReport) -> None:
    causes = drill.duplicates()

    assert causes["unexplained"] == 0, [
        (delivery.notification_id, delivery.key, before["time"], after["time"], cause)
        for delivery, before, after, cause in drill.repeats()
    ]


def test_drill_dropping_repeats_by_id_and_key_keeps_one_acceptance_per_delivery(drill: DrillReport) -> None:
    dropped = drill.dropped_by_headers()
    accepted_not_delivered = drill.unknown_only()

    assert dropped.same_bodies is True
    assert dropped.dropped == sum(drill.duplicates().values())
    assert dropped.delivered_kept == drill.statuses()["delivered"]
    assert dropped.kept == dropped.delivered_kept + len(accepted_not_delivered)
    assert all(
        record.get("fault") in UNKNOWN_OUTCOME for delivery in accepted_not_delivered for record in delivery.accepted
    )


def test_drill_meets_every_target_of_its_report(drill: DrillReport) -> None:
    missed = [(target.figure, target.measured, target.target) for target in targets(drill) if target.met is False]

    assert missed == []
