"""The fault drill's short form against the session's local stack: the receiver fails on purpose, nothing is lost.

bench/drill.py holds the drill (``python -m bench.drill`` runs its long form, with an outage of minutes and consumer
workers killed mid-batch). Here: 30 notifications to a topic of four webhooks on the local receiver, one with a share
of 500s, 429s, answers later than the consumer's timeout and connection resets, one down for 6 s, one answering 400
and one 503 forever; the stack's params allow 12 attempts with backoffs of 1 to 2 s. The drill runs once for the
module; each test checks one of its outcomes. Faults are drawn from a seeded generator: the first 30 requests to
``flaky`` meet 3 fails, 1 slow answer and 5 resets every run.
"""

from __future__ import annotations

from collections import Counter

import pytest

from bench.drill import SHORT, UNKNOWN_OUTCOME, DrillReport, DrillTarget, run_drill
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def drill(stack: Stack) -> DrillReport:
    """Run the short drill once; about a minute."""
    return run_drill(DrillTarget(stack.api, stack.receiver, stack.api_key, stack.admin_token), SHORT)


def _of(drill: DrillReport, integration: str) -> list[str]:
    return [delivery.status for delivery in drill.deliveries if delivery.key == integration]


def test_drill_every_publish_is_accepted(drill: DrillReport) -> None:
    assert (drill.accepted, dict(drill.refused)) == (SHORT.notifications, {})


def test_drill_receiver_log_misses_no_record(drill: DrillReport) -> None:
    assert drill.gaps == 0


def test_drill_every_delivery_ends_final_with_its_reason_none_lost(drill: DrillReport) -> None:
    lost = drill.lost()

    assert len(drill.deliveries) == len(drill.integrations) * SHORT.notifications
    assert [(d.notification_id, d.key, d.status, d.reason) for d in lost] == []


def test_drill_flaky_and_outage_deliveries_are_all_delivered(drill: DrillReport) -> None:
    # Twelve attempts outlast the 6 s outage (their retries come about a poll apart: bench/drill.py's SHORT), and the
    # seeded faults give no delivery 12 in a row (14 attempt-counting faults meet the first 30 successes).
    statuses = _of(drill, "flaky") + _of(drill, "outage")

    assert Counter(statuses) == {"delivered": 2 * SHORT.notifications}, Counter(statuses)


def test_drill_rejected_deliveries_fail_with_the_receivers_answer(drill: DrillReport) -> None:
    rejected = [delivery for delivery in drill.deliveries if delivery.key == "rejects"]

    assert {delivery.status for delivery in rejected} == {"failed"}
    assert all("400" in (delivery.reason or "") for delivery in rejected), rejected[0].reason


def test_drill_deliveries_whose_retries_are_spent_are_dead_with_a_reason(drill: DrillReport) -> None:
    broken = [delivery for delivery in drill.deliveries if delivery.key == "broken"]

    assert {delivery.status for delivery in broken} == {"dead"}
    assert all(delivery.reason for delivery in broken)


def test_drill_receiver_met_every_kind_of_fault(drill: DrillReport) -> None:
    answers = drill.answers()

    assert answers["slow"] >= 1
    assert answers["reset"] >= 1
    assert answers["500"] >= 1
    assert answers["429"] >= 1


def test_drill_duplicates_follow_only_unknown_outcomes_or_a_message_received_twice(drill: DrillReport) -> None:
    causes = drill.duplicates()

    # No worker is killed here; SQS (and moto) may hand one message to two pollers at once: at least once.
    assert set(causes) <= UNKNOWN_OUTCOME | {"queue"}, [
        (delivery.notification_id, delivery.key, before["time"], after["time"], cause)
        for delivery, before, after, cause in drill.repeats()
    ]


def test_drill_dropping_repeats_by_id_and_key_keeps_one_acceptance_per_delivery(drill: DrillReport) -> None:
    kept, delivered, same_bodies = drill.dropped_by_headers()
    accepted_not_delivered = drill.unknown_only()

    assert same_bodies is True
    assert delivered == drill.statuses()["delivered"]
    assert kept == delivered + len(accepted_not_delivered)
    assert all(
        record.get("fault") in UNKNOWN_OUTCOME for delivery in accepted_not_delivered for record in delivery.accepted
    )
