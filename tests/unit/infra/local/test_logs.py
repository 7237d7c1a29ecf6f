"""The functions' logs in the terminal and for the page (infra/local/logs.py)."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from infra.local.logs import LineFormat, LogFollower, colour_wanted, function_log_level, metrics, parse

NOTIFICATION = "7d3f0c1e-0a4b-4c55-9f1e-2b8e6c1d9a01"
STAMP = "2024-05-01 12:00:00,123+0000"


def _record(**fields: Any) -> dict[str, Any]:
    return {
        "level": "INFO",
        "location": "process:42",
        "message": "delivered",
        "timestamp": STAMP,
        "service": "notify",
        "cold_start": False,
        "function_name": "notify-local-deliver",
        "function_request_id": "req-1",
        **fields,
    }


def _line(record: dict[str, Any], level: str = "INFO", function: str = "deliver") -> str | None:
    return LineFormat(level, Path("/tmp/logs")).record(function, record)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# --- one record, one line --------------------------------------------------------------------------------------------


def test_line_format_record_shows_level_function_and_message() -> None:
    line = _line(_record(level="WARNING", message="delivery kept on the queue"))

    assert line is not None
    assert "WARNING" in line
    assert " deliver " in line
    assert line.endswith("delivery kept on the queue")


def test_line_format_record_starts_with_the_records_time_on_the_local_clock() -> None:
    line = _line(_record())

    assert line is not None
    assert line.startswith(time.strftime("%H:%M:%S  ", time.localtime(1714564800)))


def test_line_format_record_below_the_level_is_not_shown() -> None:
    assert _line(_record(level="INFO"), level="WARNING") is None


def test_line_format_record_debug_is_shown_at_debug() -> None:
    line = _line(_record(level="DEBUG", message="delivery not due yet: sent on"), level="DEBUG")

    assert line is not None
    assert "DEBUG" in line


def test_line_format_record_warn_counts_as_warning() -> None:
    line = _line(_record(level="WARN"), level="WARNING")

    assert line is not None
    assert "WARNING" in line


def test_line_format_record_no_metrics_warning_of_powertools_counts_as_debug() -> None:
    message = "/x/base.py:213: UserWarning: No application metrics to publish. The cold-start metric may be published"
    record = _record(level="WARNING", message=message)

    assert _line(record, level="INFO") is None
    assert _line(record, level="DEBUG") is not None


def test_line_format_record_of_a_delivery_shows_notification_and_delivery_key() -> None:
    line = _line(_record(notification_id=NOTIFICATION, delivery_key="hook", correlation_id="other"))

    assert line is not None
    assert f"  {NOTIFICATION}/hook  " in line


def test_line_format_record_with_only_a_notification_id_shows_it() -> None:
    line = _line(_record(notification_id=NOTIFICATION))

    assert line is not None
    assert f"  {NOTIFICATION}  " in line


def test_line_format_record_without_ids_shows_the_correlation_id() -> None:
    line = _line(_record(message="notification published", correlation_id=NOTIFICATION), function="publish")

    assert line is not None
    assert f"  {NOTIFICATION}  notification published" in line


def test_line_format_record_without_correlation_shows_the_request_id() -> None:
    line = _line(_record(message="admin token refused"))

    assert line is not None
    assert "  req-1  admin token refused" in line


def test_line_format_record_without_any_id_shows_a_dash() -> None:
    record = _record()
    del record["function_request_id"]

    line = _line(record)

    assert line is not None
    assert "  -  delivered" in line


def test_line_format_record_extra_keys_follow_as_key_value() -> None:
    line = _line(_record(message="delivery paced", wait_seconds=1.25, channel_type="webhook", resumed=False))

    assert line is not None
    assert line.endswith("delivery paced  wait_seconds=1.25 channel_type=webhook resumed=false")


def test_line_format_record_status_and_attempt_come_first() -> None:
    line = _line(_record(channel_type="slack", attempt=2, status="retrying"))

    assert line is not None
    assert line.endswith("status=retrying attempt=2 channel_type=slack")


def test_line_format_record_quotes_a_value_with_spaces() -> None:
    line = _line(_record(reason="connection refused"))

    assert line is not None
    assert line.endswith('reason="connection refused"')


def test_line_format_record_shortens_a_long_value() -> None:
    line = _line(_record(reason="x" * 500))

    assert line is not None
    assert "x" * 500 not in line
    assert line.endswith("…")


def test_line_format_record_leaves_out_powertools_context_and_ids() -> None:
    line = _line(_record(notification_id=NOTIFICATION, delivery_key="hook", message_id="sqs-1", xray_trace_id="x"))

    assert line is not None
    for key in ("location=", "service=", "cold_start=", "function_name=", "message_id=", "xray_trace_id=", "delivery"):
        assert key not in line.split("  delivered", 1)[1]


def test_line_format_record_with_exception_shows_its_last_line_and_the_log_file() -> None:
    traceback = 'Traceback (most recent call last):\n  File "x.py", line 1, in f\nValueError: bad value'
    record = _record(level="ERROR", message="unhandled error", exception=traceback, exception_name="ValueError")

    line = LineFormat("INFO", Path("/tmp/logs")).record("api", record)

    assert line is not None
    assert "Traceback" not in line
    assert "\n" not in line
    assert line.endswith("↳ ValueError: bad value (traceback in /tmp/logs/api.log)")


def test_line_format_record_message_of_several_lines_stays_one_line() -> None:
    line = _line(_record(message="first\nsecond"))

    assert line is not None
    assert "\n" not in line
    assert "first ⏎ second" in line


def test_line_format_record_escapes_terminal_control_characters() -> None:
    line = _line(_record(message="\x1b[2Jcleared"))

    assert line is not None
    assert "\x1b" not in line
    assert "\\x1b[2Jcleared" in line


def test_line_format_record_message_that_is_an_object_shows_as_json() -> None:
    line = _line(_record(message={"a": 1}))

    assert line is not None
    assert line.endswith('{"a": 1}')


def test_line_format_raw_line_is_shown_as_it_is_at_warning() -> None:
    line = LineFormat("INFO", Path("/tmp/logs")).raw("deliver", "Traceback (most recent call last):")

    assert line is not None
    assert "WARNING" in line
    assert line.endswith("deliver  -  Traceback (most recent call last):")


def test_line_format_raw_line_is_not_shown_at_error() -> None:
    assert LineFormat("ERROR", Path("/tmp/logs")).raw("deliver", "printed") is None


def test_line_format_raw_blank_line_is_not_shown() -> None:
    assert LineFormat("INFO", Path("/tmp/logs")).raw("deliver", "   ") is None


def test_line_format_without_colour_has_no_escape_codes() -> None:
    line = LineFormat("INFO", Path("/tmp/logs"), colour=False).record("deliver", _record(level="ERROR"))

    assert line is not None
    assert "\x1b" not in line


def test_line_format_with_colour_paints_the_level() -> None:
    line = LineFormat("INFO", Path("/tmp/logs"), colour=True).record("deliver", _record(level="ERROR"))

    assert line is not None
    assert "\x1b[31mERROR" in line


def test_line_format_pads_function_names_to_one_width() -> None:
    line = LineFormat("INFO", Path("/tmp/logs"), width=15).record("api", _record())

    assert line is not None
    assert f" {'api':<15}  " in line


# --- parsing, colour, levels -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["Traceback (most recent call last):", "{not json", "[1, 2]", '{"no": "level"}', ""])
def test_parse_non_record_line_is_none(text: str) -> None:
    assert parse(text) is None


def test_parse_record_line_is_the_record() -> None:
    assert parse(json.dumps(_record()) + "\n") == _record()


EMF = {
    "_aws": {
        "Timestamp": 1714564800123,
        "CloudWatchMetrics": [
            {
                "Namespace": "Notify",
                "Dimensions": [["channel_type", "service"]],
                "Metrics": [{"Name": "delivered", "Unit": "Count"}],
            }
        ],
    },
    "channel_type": "webhook",
    "service": "notify",
    "delivered": [1.0, 1.0],
}


def test_metrics_of_an_emf_line_is_a_debug_record_of_values_and_dimensions() -> None:
    assert metrics(json.dumps(EMF)) == {
        "level": "DEBUG",
        "message": "metrics",
        "timestamp": "2024-05-01T12:00:00.123+00:00",
        "delivered": 2,
        "channel_type": "webhook",
    }


@pytest.mark.parametrize("text", [json.dumps(_record()), '{"_aws": {}}', "not json"])
def test_metrics_of_another_line_is_none(text: str) -> None:
    assert metrics(text) is None


def test_colour_wanted_not_a_terminal_is_false() -> None:
    assert colour_wanted(io.StringIO(), {}) is False


def test_colour_wanted_terminal_is_true() -> None:
    assert colour_wanted(_Terminal(), {}) is True


def test_colour_wanted_terminal_with_no_color_is_false() -> None:
    assert colour_wanted(_Terminal(), {"NO_COLOR": "1"}) is False


@pytest.mark.parametrize(("terminal", "functions"), [("DEBUG", "DEBUG"), ("INFO", "INFO"), ("ERROR", "INFO")])
def test_function_log_level_is_debug_only_when_asked(terminal: str, functions: str) -> None:
    assert function_log_level(terminal) == functions


# --- the follower ----------------------------------------------------------------------------------------------------


def _write(path: Path, *lines: str | dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        for line in lines:
            handle.write((json.dumps(line) if isinstance(line, dict) else line) + "\n")


def _stopped() -> threading.Event:
    """A stop event already set: ``start`` takes the files' ends and its thread ends at once; the test polls."""
    stop = threading.Event()
    stop.set()
    return stop


def _follower(tmp_path: Path, level: str = "INFO") -> tuple[LogFollower, list[str]]:
    printed: list[str] = []
    for name in ("publish", "deliver"):
        (tmp_path / f"{name}.log").write_bytes(b"")
    follower = LogFollower(tmp_path, ["publish", "deliver"], level, printed.append, colour=False)
    follower.start(_stopped()).join()
    return follower, printed


def test_log_follower_poll_emits_appended_records(tmp_path: Path) -> None:
    follower, printed = _follower(tmp_path)
    _write(tmp_path / "deliver.log", _record(notification_id=NOTIFICATION, delivery_key="hook"))

    follower.poll()

    assert len(printed) == 1
    assert f"{NOTIFICATION}/hook  delivered" in printed[0]


def test_log_follower_start_skips_what_was_written_before(tmp_path: Path) -> None:
    _write(tmp_path / "deliver.log", _record(message="before"))
    printed: list[str] = []
    follower = LogFollower(tmp_path, ["deliver"], "INFO", printed.append, colour=False)
    follower.start(_stopped()).join()
    _write(tmp_path / "deliver.log", _record(message="after"))

    follower.poll()

    assert [line.rsplit("  ", 1)[-1] for line in printed] == ["after"]


def test_log_follower_poll_filters_by_level(tmp_path: Path) -> None:
    follower, printed = _follower(tmp_path, level="WARNING")
    _write(tmp_path / "deliver.log", _record(level="INFO"), _record(level="ERROR", message="ledger update failed"))

    follower.poll()

    assert len(printed) == 1
    assert "ledger update failed" in printed[0]


def test_log_follower_poll_shows_non_json_lines_as_warnings(tmp_path: Path) -> None:
    follower, printed = _follower(tmp_path)
    _write(tmp_path / "deliver.log", "Traceback (most recent call last):", "ValueError: boom")

    follower.poll()

    assert len(printed) == 2
    assert all("WARNING" in line for line in printed)
    assert printed[1].endswith("ValueError: boom")


def test_log_follower_poll_hides_metrics_below_debug(tmp_path: Path) -> None:
    follower, printed = _follower(tmp_path)
    _write(tmp_path / "deliver.log", EMF)

    follower.poll()

    assert printed == []


def test_log_follower_poll_shows_metrics_at_debug(tmp_path: Path) -> None:
    follower, printed = _follower(tmp_path, level="DEBUG")
    _write(tmp_path / "deliver.log", EMF)

    follower.poll()

    assert len(printed) == 1
    assert printed[0].endswith("  -  metrics  delivered=2 channel_type=webhook")


def test_log_follower_poll_waits_for_the_end_of_a_line(tmp_path: Path) -> None:
    follower, printed = _follower(tmp_path)
    text = json.dumps(_record(message="whole"))
    with (tmp_path / "deliver.log").open("a") as handle:
        handle.write(text[:20])
    follower.poll()
    with (tmp_path / "deliver.log").open("a") as handle:
        handle.write(text[20:] + "\n")

    follower.poll()

    assert len(printed) == 1
    assert printed[0].endswith("whole")


def test_log_follower_poll_reads_a_truncated_file_from_its_start(tmp_path: Path) -> None:
    follower, printed = _follower(tmp_path)
    _write(tmp_path / "deliver.log", _record(message="first run, a long line to be longer than the next"))
    follower.poll()
    (tmp_path / "deliver.log").write_bytes(b"")
    _write(tmp_path / "deliver.log", _record(message="next"))

    follower.poll()

    assert printed[-1].endswith("next")


def test_log_follower_poll_reads_a_file_created_after_start(tmp_path: Path) -> None:
    printed: list[str] = []
    follower = LogFollower(tmp_path, ["cron"], "INFO", printed.append, colour=False)
    follower.start(_stopped()).join()
    _write(tmp_path / "cron.log", _record(message="swept"))

    follower.poll()

    assert printed[0].endswith("swept")


def test_log_follower_thread_emits_without_being_polled(tmp_path: Path) -> None:
    printed: list[str] = []
    (tmp_path / "deliver.log").write_bytes(b"")
    stop = threading.Event()
    thread = LogFollower(tmp_path, ["deliver"], "INFO", printed.append, colour=False, poll_seconds=0.01).start(stop)
    _write(tmp_path / "deliver.log", _record())
    deadline = time.monotonic() + 5
    while not printed and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(5)

    assert len(printed) == 1
    assert not thread.is_alive()


def test_log_follower_emit_failure_does_not_stop_following(tmp_path: Path) -> None:
    calls: list[str] = []

    def emit(line: str) -> None:
        calls.append(line)
        if len(calls) == 1:
            raise BrokenPipeError

    (tmp_path / "deliver.log").write_bytes(b"")
    follower = LogFollower(tmp_path, ["deliver"], "INFO", emit, colour=False)
    follower.start(_stopped()).join()
    _write(tmp_path / "deliver.log", _record(message="one"), _record(message="two"))

    follower.poll()

    assert len(calls) == 2


def test_log_follower_for_notification_returns_its_records_of_every_level_oldest_first(tmp_path: Path) -> None:
    follower, _ = _follower(tmp_path, level="ERROR")
    _write(
        tmp_path / "deliver.log",
        _record(
            level="DEBUG",
            message="delivery not due yet: sent on",
            notification_id=NOTIFICATION,
            timestamp="2024-05-01 12:00:00,200+0000",
        ),
        _record(notification_id="someone-else", delivery_key="hook", timestamp="2024-05-01 12:00:00,250+0000"),
        _record(notification_id=NOTIFICATION, delivery_key="hook", timestamp="2024-05-01 12:00:00,300+0000"),
    )
    _write(
        tmp_path / "publish.log",
        _record(message="notification published", correlation_id=NOTIFICATION, timestamp=STAMP),
    )

    follower.poll()
    found = follower.for_notification(NOTIFICATION)

    assert [(item["function"], item["message"]) for item in found] == [
        ("publish", "notification published"),
        ("deliver", "delivery not due yet: sent on"),
        ("deliver", "delivered"),
    ]


def test_log_follower_poll_prints_the_records_of_all_functions_oldest_first(tmp_path: Path) -> None:
    follower, printed = _follower(tmp_path)
    _write(tmp_path / "deliver.log", _record(message="second", timestamp="2024-05-01 12:00:01,000+0000"))
    _write(tmp_path / "publish.log", _record(message="first", timestamp=STAMP))

    follower.poll()

    assert [line.rsplit("  ", 1)[-1] for line in printed] == ["first", "second"]


def test_log_follower_for_notification_matches_the_correlation_id(tmp_path: Path) -> None:
    follower, _ = _follower(tmp_path)
    _write(tmp_path / "publish.log", _record(message="notification published", correlation_id=NOTIFICATION))

    follower.poll()

    assert [item["message"] for item in follower.for_notification(NOTIFICATION)] == ["notification published"]


def test_log_follower_for_notification_record_shape(tmp_path: Path) -> None:
    follower, _ = _follower(tmp_path)
    traceback = "Traceback (most recent call last):\nRuntimeError: send failed"
    _write(
        tmp_path / "deliver.log",
        _record(
            level="ERROR",
            message="delivery attempt failed unexpectedly",
            notification_id=NOTIFICATION,
            delivery_key="hook",
            attempt=2,
            exception=traceback,
            exception_name="RuntimeError",
            stack_trace={"frames": []},
        ),
    )

    follower.poll()

    assert follower.for_notification(NOTIFICATION) == [
        {
            "time": "2024-05-01T12:00:00.123Z",
            "level": "ERROR",
            "function": "deliver",
            "message": "delivery attempt failed unexpectedly",
            "correlation_id": f"{NOTIFICATION}/hook",
            "fields": {
                "notification_id": NOTIFICATION,
                "delivery_key": "hook",
                "attempt": 2,
                "exception": "RuntimeError: send failed",
            },
        }
    ]


def test_log_follower_for_notification_keeps_the_newest_500(tmp_path: Path) -> None:
    follower, _ = _follower(tmp_path, level="CRITICAL")
    _write(tmp_path / "deliver.log", *(_record(notification_id=NOTIFICATION, attempt=n) for n in range(520)))

    follower.poll()
    found = follower.for_notification(NOTIFICATION)

    assert len(found) == 500
    assert found[-1]["fields"]["attempt"] == 519


def test_log_follower_keeps_a_bounded_number_of_records(tmp_path: Path) -> None:
    (tmp_path / "deliver.log").write_bytes(b"")
    follower = LogFollower(tmp_path, ["deliver"], "CRITICAL", lambda _line: None, colour=False, keep=3)
    follower.start(_stopped()).join()
    _write(tmp_path / "deliver.log", *(_record(notification_id=f"n-{n}") for n in range(5)))

    follower.poll()

    assert follower.for_notification("n-1") == []
    assert len(follower.for_notification("n-4")) == 1


def test_log_follower_for_unknown_notification_is_empty(tmp_path: Path) -> None:
    follower, _ = _follower(tmp_path)

    assert follower.for_notification(NOTIFICATION) == []
