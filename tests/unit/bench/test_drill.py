"""The fault drill's judgement (bench/drill.py) on records made up here: what counts as lost, what explains a repeat,
what a receiver dropping repeats by (X-Notification-Id, X-Delivery-Key) keeps."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bench import drill
from bench.drill import SHORT, Delivery, DrillPlan, DrillReport, DrillTarget, QueueDepths, run_drill, targets, why_lost
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


def _line(
    at: float, message: str = "delivered", request: str = "r1", key: str = "flaky", message_id: str = "m1"
) -> dict[str, Any]:
    moment = datetime.fromtimestamp(START + at, UTC)
    stamp = f"{moment:%Y-%m-%d %H:%M:%S},{moment.microsecond // 1000:03d}+0000"
    return {
        "message": message,
        "timestamp": stamp,
        "function_request_id": request,
        "message_id": message_id,
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


def test_repeats_after_a_reset_the_consumer_gave_up_on_are_the_reset() -> None:
    logged = [_line(0.5, "delivery will be retried"), _line(2)]
    delivery = Delivery("n1", "flaky", "delivered", records=[_record(0, fault="reset"), _record(2)], logged=logged)

    assert _report(delivery).duplicates() == {"reset": 1}


def test_repeats_50_ms_after_a_slow_acceptance_with_no_retry_logged_are_unexplained() -> None:
    """The consumer waits its read timeout on a slow answer before it may try again: a second acceptance 50 ms later,
    with no retry logged, is a second send at once, and was excused as 'slow'."""
    delivery = Delivery(
        "n1", "flaky", "delivered", records=[_record(0, fault="slow"), _record(0.05)], logged=[_line(0.1, request="r2")]
    )

    assert _report(delivery).duplicates() == {"unexplained": 1}


def test_repeats_by_another_sqs_message_are_no_repeat_of_the_queue() -> None:
    """Two invocations handling two messages of one delivery (a copy sent after the outcome was known) are a consumer
    sending twice: 'the queue handed it out twice' needs the same message received twice."""
    logged = [_line(0.1, request="r1", message_id="m1"), _line(5.1, request="r2", message_id="m2")]
    delivery = Delivery("n1", "flaky", "delivered", records=[_record(0), _record(5)], logged=logged)

    assert _report(delivery).duplicates() == {"unexplained": 1}


def test_repeats_unheard_acceptance_whose_sender_lived_past_the_kill_are_unexplained() -> None:
    """r1 got a clean 200, logged no 'delivered' but a retry after the kill: the worker killed was another."""
    logged = [_line(4.5, "delivery will be retried", request="r1"), _line(6.1, request="r2")]
    delivery = Delivery("n1", "flaky", "delivered", records=[_record(0), _record(6)], logged=logged)

    assert _report(delivery, [Kill(START + 4.0, 4242)]).duplicates() == {"unexplained": 1}


def test_repeats_killed_sender_whose_batch_came_back_and_failed_once_are_the_kill() -> None:
    """After the batch came back (the visibility timeout after the kill), a first attempt that failed is no sign the
    killed sender lived on."""
    logged = [_line(40.5, "delivery will be retried", request="r2"), _line(42.1, request="r2")]
    delivery = Delivery("n1", "flaky", "delivered", records=[_record(0), _record(42)], logged=logged)

    assert _report(delivery, [Kill(START + 0.5, 123)]).duplicates() == {"killed": 1}


def test_repeats_killed_sender_after_an_earlier_attempts_retry_logged_late_are_the_kill() -> None:
    """The attempt before logs its retry after sending the copy (m1), which may be sent and accepted first: that line
    is another message's, no sign the killed sender of m1 lived on (a loaded e2e run saw it)."""
    logged = [
        _line(0.02, "delivery will be retried", request="r0", message_id="m0"),
        _line(35.6, request="r2", message_id="m1"),
    ]
    delivery = Delivery("n1", "flaky", "delivered", records=[_record(0), _record(35.5)], logged=logged)

    assert _report(delivery, [Kill(START + 0.5, 123)]).duplicates() == {"killed": 1}


def test_targets_miss_a_repeat_with_another_body_and_a_refused_publish() -> None:
    """A repeat the receiver cannot drop safely (another body), and a publish refused, left every target met."""
    records = [_record(0, fault="reset"), _record(1, body="b3RoZXI=")]
    logged = [_line(0.5, "delivery will be retried"), _line(1.1)]
    delivery = Delivery("n1", "flaky", "delivered", records=records, logged=logged)
    report = DrillReport(SHORT, ["flaky"], 2, 1, [delivery], records, [Kill(START + 50, 1)], START, 1.0, 0)
    report.refused[502] += 1

    missed = [target.figure for target in targets(report) if target.met is False]

    assert "drill (short): publishes refused" in missed
    assert any("another body" in figure for figure in missed), missed


def test_dropped_by_headers_keeps_the_first_of_each_pair_and_compares_bodies() -> None:
    records = [_record(0, fault="reset"), _record(1, body="b3RoZXI="), _record(2, status=500)]
    delivery = Delivery("n1", "flaky", "delivered", records=records)

    dropped = _report(delivery).dropped_by_headers()

    assert (dropped.kept, dropped.dropped, dropped.delivered_kept, dropped.same_bodies) == (1, 1, 1, False)


def test_statuses_are_read_after_the_delivery_queue_drained(monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed batch is still hidden on the queue when every row first reads final; when it comes back it changes
    a row (here to 'retrying'). The drill's counts claim to be after the drain, so the row must count as lost."""
    drained = {"done": False}

    @contextlib.contextmanager
    def following(receiver: str, prefix: str) -> Iterator[Any]:
        class Log:
            gaps = 0

            @staticmethod
            def records() -> list[dict[str, Any]]:
                found = []
                for name in ("flaky", "outage"):
                    record = _record(0, key=name)
                    found.append(record)
                found.append(_record(0, status=400, key="rejects"))
                return found

        yield Log()

    def statuses(target: DrillTarget, notification_id: str) -> list[dict[str, Any]]:
        flaky = "retrying" if drained["done"] else "delivered"
        return [
            {"delivery_key": "flaky", "status": flaky, "attempts": 2},
            {"delivery_key": "outage", "status": "delivered", "attempts": 1},
            {"delivery_key": "rejects", "status": "failed", "attempts": 1, "last_error": "webhook: HTTP 400"},
        ]

    depths = iter([QueueDepths(10, 0)])

    def queues() -> QueueDepths:
        found = next(depths, None)
        if found is None:
            drained["done"] = True
            return QueueDepths(0, 0)
        return found

    monkeypatch.setattr(drill, "following", following)
    monkeypatch.setattr(drill, "_create_topic", lambda *args: "hash")
    monkeypatch.setattr(drill, "_publish_all", lambda *args: [(200, "n1")])
    monkeypatch.setattr(drill, "_statuses", statuses)
    monkeypatch.setattr(drill.time, "sleep", lambda seconds: None)
    plan = DrillPlan("t", 1, 0.0, "", 0.0, 0, 1.0, "", False)  # a second: the fakes answer at once
    target = DrillTarget("http://api", "http://receiver", "k", "t", queues=queues)

    report = run_drill(target, plan)

    assert [d.status for d in report.deliveries if d.key == "flaky"] == ["retrying"]
    assert len(report.lost()) == 1
