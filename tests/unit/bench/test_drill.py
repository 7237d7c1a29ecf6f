"""The fault drill's judgement (bench/drill.py) on records made up here: what counts as lost, what explains a repeat,
what a receiver dropping repeats by (X-Notification-Id, X-Delivery-Key) keeps."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from bench.drill import SHORT, Delivery, DrillReport, why_lost
from bench.workers import Kill

START = 1_800_000_000.0
_ids = itertools.count(1)


def _record(at: float, status: int = 200, fault: str | None = None, key: str = "flaky", body: str = "e30=") -> Any:
    moment = datetime.fromtimestamp(START + at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    headers = {"X-Notification-Id": "n1", "X-Delivery-Key": key}
    return {
        "id": next(_ids),
        "time": moment,
        "status": status,
        "fault": fault,
        "headers": headers,
        "raw_body_base64": body,
    }


def _line(at: float, message: str = "delivered", request: str = "r1", key: str = "flaky") -> dict[str, Any]:
    moment = datetime.fromtimestamp(START + at, UTC)
    stamp = f"{moment:%Y-%m-%d %H:%M:%S},{moment.microsecond // 1000:03d}+0000"
    return {
        "message": message,
        "timestamp": stamp,
        "function_request_id": request,
        "notification_id": "n1",
        "delivery_key": key,
    }


def _report(delivery: Delivery, kills: list[Kill] | None = None) -> DrillReport:
    return DrillReport(SHORT, [delivery.key], 1, 1, [delivery], list(delivery.records), kills or [], START, 1.0, 0)


def test_why_lost_delivered_with_only_a_reset_acceptance_is_lost() -> None:
    delivery = Delivery("n1", "flaky", "delivered", records=[_record(0, fault="reset")])

    assert why_lost(delivery) == "delivered, but the receiver answered no attempt of it with a clean 2xx"


def test_why_lost_delivered_with_a_clean_acceptance_is_not_lost() -> None:
    delivery = Delivery("n1", "flaky", "delivered", records=[_record(0, fault="slow"), _record(11)])

    assert why_lost(delivery) is None


def test_why_lost_failed_without_a_permanent_refusal_at_the_receiver_is_lost() -> None:
    delivery = Delivery("n1", "rejects", "failed", "webhook: HTTP 400", 1, records=[_record(0, status=503)])

    assert why_lost(delivery) is not None


def test_why_lost_failed_with_the_refusal_its_reason_names_is_not_lost() -> None:
    delivery = Delivery("n1", "rejects", "failed", "webhook: HTTP 400", 1, records=[_record(0, status=400)])

    assert why_lost(delivery) is None


def test_why_lost_dead_with_fewer_receiver_records_than_attempts_is_lost() -> None:
    delivery = Delivery("n1", "broken", "dead", "12 attempts made", 12, records=[_record(0, status=503)] * 3)

    assert why_lost(delivery) == "dead after 12 attempts, of which the receiver got 3"


def test_why_lost_dead_missing_a_record_for_an_attempt_the_consumer_logged_as_timed_out_is_not_lost() -> None:
    """A starved machine: a send that ran out of its time before its request was written is an attempt the receiver
    never saw (a loaded CI run saw 12 attempts and 11 records)."""
    retried = [{"message": "delivery will be retried", "reason": "webhook: timed out"}]
    records = [_record(0, status=503)] * 11
    delivery = Delivery("n1", "broken", "dead", "12 attempts made", 12, records=records, logged=retried)
    unexplained = Delivery("n1", "broken", "dead", "12 attempts made", 12, records=records)
    refused = [{"message": "delivery will be retried", "reason": "webhook: HTTP 503"}]
    answered = Delivery("n1", "broken", "dead", "12 attempts made", 12, records=records, logged=refused)

    assert why_lost(delivery) is None
    assert why_lost(unexplained) == "dead after 12 attempts, of which the receiver got 11"
    assert why_lost(answered) == "dead after 12 attempts, of which the receiver got 11"


def test_repeats_second_clean_acceptance_with_one_delivered_log_is_unexplained() -> None:
    delivery = Delivery("n1", "flaky", "delivered", records=[_record(0), _record(0.05)], logged=[_line(0.1)])

    assert _report(delivery).duplicates() == {"unexplained": 1}


def test_repeats_two_invocations_each_logging_delivered_are_the_queue() -> None:
    logged = [_line(0.1, request="r1"), _line(0.2, request="r2")]
    delivery = Delivery("n1", "flaky", "delivered", records=[_record(0), _record(0.15)], logged=logged)

    assert _report(delivery).duplicates() == {"queue": 1}


def test_repeats_unheard_acceptance_then_a_kill_of_a_worker_is_killed() -> None:
    logged = [_line(40.1, request="r2")]
    delivery = Delivery("n1", "flaky", "delivered", records=[_record(0), _record(40)], logged=logged)

    assert _report(delivery, [Kill(START + 0.5, 123)]).duplicates() == {"killed": 1}


def test_repeats_unheard_acceptance_with_a_kill_long_after_is_unexplained() -> None:
    logged = [_line(40.1, request="r2")]
    delivery = Delivery("n1", "flaky", "delivered", records=[_record(0), _record(40)], logged=logged)

    assert _report(delivery, [Kill(START + 20, 123)]).duplicates() == {"unexplained": 1}


def test_repeats_after_a_reset_are_the_reset() -> None:
    delivery = Delivery("n1", "flaky", "delivered", records=[_record(0, fault="reset"), _record(2)], logged=[_line(2)])

    assert _report(delivery).duplicates() == {"reset": 1}


def test_dropped_by_headers_keeps_the_first_of_each_pair_and_compares_bodies() -> None:
    records = [_record(0, fault="reset"), _record(1, body="b3RoZXI="), _record(2, status=500)]
    delivery = Delivery("n1", "flaky", "delivered", records=records)

    dropped = _report(delivery).dropped_by_headers()

    assert (dropped.kept, dropped.dropped, dropped.delivered_kept, dropped.same_bodies) == (1, 1, 1, False)
