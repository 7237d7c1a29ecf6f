"""The functions' logs in the terminal: one readable line per record, and each notification's records for the page.

Every function writes powertools' one-line JSON to ``<function>.log``. ``LogFollower`` tails those files and prints a
line per record at the chosen level and above (time, level, function, correlation id, message, a few fields), shows a
line that is not JSON (a crashed worker's traceback, a ``print``) as it is, and keeps the last records that carry a
notification id, so that the local page can show a notification's log lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}

# What powertools (and the local runtime) put on every record: shown in the line's own columns, or not at all.
_CONTEXT_KEYS = frozenset(
    {
        "level",
        "location",
        "message",
        "timestamp",
        "service",
        "logger",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "correlation_id",
        "xray_trace_id",
        "sampling_rate",
        "exception",
        "exception_name",
        "stack_trace",
    }
)
# Already in the correlation column, or an SQS message id nobody reads in a terminal.
_HIDDEN_IN_LINE = frozenset({"notification_id", "delivery_key", "message_id"})
# The fields that say what happened come first, in this order; the rest follow as the record has them.
_FIRST = ("status", "attempt", "error", "reason", "wait_seconds", "retry_in_seconds", "due_in_seconds")
# powertools warns on every invocation that records no metric (a read, an error): expected, as pyproject.toml says.
_EXPECTED_WARNINGS = ("UserWarning: No application metrics to publish",)
_VALUE_LIMIT = 120
_RAW_LIMIT = 2000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BARE = re.compile(r"[^\s\"'=]+")

_EARLIEST = datetime.min.replace(tzinfo=UTC)
_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_CYAN = "\x1b[36m"
_COLOURS = {"DEBUG": _DIM, "INFO": "\x1b[32m", "WARNING": "\x1b[33m", "ERROR": "\x1b[31m", "CRITICAL": "\x1b[1;31m"}


def colour_wanted(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Tell whether to colour lines for ``stream``: only a terminal, and only without ``NO_COLOR`` (no-color.org)."""
    if environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def level_name(raw: Any) -> str:
    """Return the standard name of a record's level (``WARN`` is ``WARNING``); an unknown level counts as INFO."""
    upper = str(raw).strip().upper()
    upper = _ALIASES.get(upper, upper)
    return upper if upper in LEVELS else "INFO"


def record_level(record: Mapping[str, Any]) -> str:
    """Return a record's level, with the warnings every function gives in normal work counted as DEBUG."""
    level = level_name(record.get("level", "INFO"))
    message = record.get("message")
    if level == "WARNING" and isinstance(message, str) and any(text in message for text in _EXPECTED_WARNINGS):
        return "DEBUG"
    return level


def level_number(name: str) -> int:
    """Return the number of a level name; an unknown name counts as INFO."""
    return LEVELS[level_name(name)]


def function_log_level(terminal_level: str) -> str:
    """Return the level the functions log at, given ``LOCAL_LOG_LEVEL``.

    The log files (and the page) keep INFO and above whatever the terminal shows, as a function on AWS does by default;
    DEBUG is only written when asked for.
    """
    return "DEBUG" if level_number(terminal_level) <= LEVELS["DEBUG"] else "INFO"


# What a terminal would act on, line breaks too: a request's path holds any of them once decoded.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(line: str) -> str:
    """Return ``line`` with every character a terminal would act on (a line break, an escape, a NUL, C1 controls)
    written as ``\\xNN``: one line of a request's log, whatever its path or an error's text holds."""
    return _UNPRINTABLE.sub(lambda match: f"\\x{ord(match.group()):02x}", line)


def _clean(text: str) -> str:
    """Put ``text`` on one line, with no control characters a terminal would act on."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", " ⏎ ".join(lines))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value(value: Any) -> str:
    if isinstance(value, str):
        text = _shorten(_clean(value), _VALUE_LIMIT)
        return text if _BARE.fullmatch(text) else json.dumps(text, ensure_ascii=False)
    return _shorten(_clean(json.dumps(value, default=str, ensure_ascii=False)), _VALUE_LIMIT)


def _message(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return _clean(text)


def _timestamp(raw: Any) -> datetime | None:
    """Read powertools' timestamp (``2024-05-01 12:00:00,123+0000``), or an ISO 8601 one."""
    if not isinstance(raw, str):
        return None
    for pattern in ("%Y-%m-%d %H:%M:%S,%f%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return datetime.strptime(raw, pattern)
        except ValueError:
            continue
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def correlation(record: Mapping[str, Any]) -> str:
    """Return the id that ties a record to the work it is about.

    A delivery's records carry the notification id and the delivery key (``<notification id>/<delivery key>``); a
    record with only the notification id, that id; else the record's correlation id (the producer sets the
    notification id as one once it is known, the API the request id of API Gateway); else the invocation's request id.
    """
    notification_id = record.get("notification_id")
    delivery_key = record.get("delivery_key")
    if notification_id and delivery_key:
        return f"{notification_id}/{delivery_key}"
    for key in ("notification_id", "correlation_id", "function_request_id"):
        if record.get(key):
            return str(record[key])
    return ""


def notification_of(record: Mapping[str, Any]) -> str | None:
    """Return the notification a record is about: its ``notification_id``, else its correlation id."""
    value = record.get("notification_id") or record.get("correlation_id")
    return str(value) if value else None


def _exception_line(record: Mapping[str, Any]) -> str:
    """Return the last line of the record's traceback (``ValueError: bad``), or an empty string."""
    exception = record.get("exception")
    if not isinstance(exception, str):
        return ""
    lines = [line.strip() for line in exception.splitlines() if line.strip()]
    if lines:
        return _clean(lines[-1])
    name = record.get("exception_name")
    return str(name) if name else ""


def fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """Return a record's own fields: what the code logging it passed in ``extra``, and its traceback's last line."""
    own = {key: value for key, value in record.items() if key not in _CONTEXT_KEYS}
    exception = _exception_line(record)
    if exception:
        own["exception"] = exception
    return own


class LineFormat:
    """Turns one line of a function's log into the line the terminal shows, or nothing below the level."""

    def __init__(self, level: str, logs_dir: Path, *, colour: bool = False, width: int = 0) -> None:
        self.threshold = level_number(level)
        self._logs_dir = logs_dir
        self._colour = colour
        self._width = width

    def _paint(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self._colour and code else text

    def _lead(self, moment: datetime, level: str, function: str) -> str:
        clock = self._paint(_DIM, moment.astimezone().strftime("%H:%M:%S"))
        painted = self._paint(_COLOURS.get(level, ""), f"{level:<8}")
        return f"{clock}  {painted} {self._paint(_CYAN, f'{function:<{self._width}}')}"

    def log_file(self, function: str) -> str:
        """Return where a function's full log is, relative to the working directory when under it."""
        path = self._logs_dir / f"{function}.log"
        try:
            return str(path.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    def record(self, function: str, record: Mapping[str, Any]) -> str | None:
        """Return the line of a parsed JSON record, or ``None`` when it is below the level."""
        level = record_level(record)
        if LEVELS[level] < self.threshold:
            return None
        moment = _timestamp(record.get("timestamp")) or datetime.now(UTC)
        parts = [self._lead(moment, level, function), correlation(record) or "-", _message(record.get("message", ""))]
        own = {key: value for key, value in fields(record).items() if key not in _HIDDEN_IN_LINE}
        exception = own.pop("exception", "")
        ordered = [key for key in _FIRST if key in own] + [key for key in own if key not in _FIRST]
        if ordered:
            parts.append(" ".join(f"{key}={_value(own[key])}" for key in ordered))
        if exception:
            parts.append(f"↳ {exception} (traceback in {self.log_file(function)})")
        return "  ".join(parts)

    def raw(self, function: str, text: str) -> str | None:
        """Return the line of something the function wrote that is not a JSON record, shown as it is at WARNING."""
        if LEVELS["WARNING"] < self.threshold or not text.strip():
            return None
        shown = _shorten(_CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text.rstrip()), _RAW_LIMIT)
        return f"{self._lead(datetime.now(UTC), 'WARNING', function)}  -  {shown}"


def _json_object(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parse(text: str) -> dict[str, Any] | None:
    """Return the record of a JSON log line, or ``None`` when the line is not one (a traceback, a ``print``)."""
    record = _json_object(text)
    return record if record is not None and "level" in record and "message" in record else None


def metrics(text: str) -> dict[str, Any] | None:
    """Return the metrics of an embedded-metric-format line (powertools' ``Metrics`` flush), or ``None``.

    On AWS, CloudWatch turns these lines into metrics; here they are shown at DEBUG as one record: the metrics' values
    and their dimensions as fields.
    """
    blob = _json_object(text)
    if blob is None or not isinstance(blob.get("_aws"), dict):
        return None
    try:
        directives = blob["_aws"]["CloudWatchMetrics"]
        names = [metric["Name"] for directive in directives for metric in directive["Metrics"]]
        dimensions = [name for directive in directives for group in directive["Dimensions"] for name in group]
        timestamp = datetime.fromtimestamp(blob["_aws"]["Timestamp"] / 1000, UTC)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    shown: dict[str, Any] = {}
    for name in names:
        value = blob.get(name)
        total = sum(value) if isinstance(value, list) else value
        shown[name] = int(total) if isinstance(total, float) and total.is_integer() else total
    for name in dimensions:
        if name != "service" and name in blob:
            shown[name] = blob[name]
    return {
        "level": "DEBUG",
        "message": "metrics",
        "timestamp": timestamp.isoformat(timespec="milliseconds"),
        **shown,
    }


def entry(function: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """Return a record as the page shows it: time (ISO 8601, UTC), level, function, message, correlation id, fields."""
    moment = _timestamp(record.get("timestamp"))
    return {
        "time": moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None,
        "level": record_level(record),
        "function": function,
        "message": _message(record.get("message", "")),
        "correlation_id": correlation(record) or None,
        "fields": fields(record),
    }


class _Tail:
    """The read position in one function's log and the part of a line not yet ended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def skip_to_end(self) -> None:
        try:
            self.offset = self.path.stat().st_size
        except OSError:
            self.offset = 0
        self.partial = b""

    def read_lines(self, limit: int) -> list[str]:
        """Return the lines appended since the last read (at most ``limit`` bytes of them)."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if size < self.offset:  # the file was truncated: a new run, read it from its start
            self.offset, self.partial = 0, b""
        if size == self.offset:
            return []
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read(min(limit, size - self.offset))
        except OSError:
            return []
        self.offset += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        if len(self.partial) > limit:  # a line that never ends is shown in pieces rather than held forever
            lines.append(self.partial)
            self.partial = b""
        return [line.decode("utf-8", errors="replace") for line in lines]


class LogFollower:
    """Follows every function's log: prints a readable line per record and keeps each notification's records.

    Parameters
    ----------
    logs_dir
        The directory of ``<function>.log`` files.
    functions
        The function names (the keys of the definition's ``functions``), which name the files.
    level
        The lowest level printed (``LOCAL_LOG_LEVEL``); records of every level are kept for ``for_notification``.
    emit
        Prints one whole line (the stack's ``say``), so that lines of different threads never interleave.
    colour
        Colour the lines; by default when stdout is a terminal and ``NO_COLOR`` is unset.
    """

    def __init__(
        self,
        logs_dir: Path,
        functions: Iterable[str],
        level: str,
        emit: Callable[[str], None],
        *,
        colour: bool | None = None,
        poll_seconds: float = 0.2,
        keep: int = 20_000,
        per_notification: int = 500,
        chunk_bytes: int = 1 << 20,
    ) -> None:
        names = sorted(set(functions))
        self._tails = {name: _Tail(logs_dir / f"{name}.log") for name in names}
        self._format = LineFormat(
            level,
            logs_dir,
            colour=colour_wanted(sys.stdout) if colour is None else colour,
            width=max((len(name) for name in names), default=0),
        )
        self._emit = emit
        self._poll_seconds = poll_seconds
        self._per_notification = per_notification
        self._chunk = chunk_bytes
        self._records: deque[tuple[str, dict[str, Any]]] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def start(self, stop_event: threading.Event) -> threading.Thread:
        """Follow the logs from their current ends in a daemon thread until ``stop_event`` is set."""
        for tail in self._tails.values():
            tail.skip_to_end()
        thread = threading.Thread(target=self._run, args=(stop_event,), name="logs", daemon=True)
        thread.start()
        return thread

    def _run(self, stop_event: threading.Event) -> None:
        while not stop_event.wait(self._poll_seconds):
            self.poll()

    def poll(self) -> None:
        """Read what every function appended since the last poll: print its lines, keep its records, oldest first."""
        batch: list[tuple[datetime, int, str, str, dict[str, Any] | None]] = []
        for function, tail in self._tails.items():
            moment = _EARLIEST  # a line that is not a record goes with the record before it in its file
            for text in tail.read_lines(self._chunk):
                record = parse(text) or metrics(text)
                moment = (_timestamp(record.get("timestamp")) if record else None) or moment
                batch.append((moment, len(batch), function, text, record))
        batch.sort(key=lambda item: item[:2])
        for _moment, _order, function, text, record in batch:
            self._take(function, text, record)

    def _take(self, function: str, text: str, record: dict[str, Any] | None) -> None:
        if record is not None:
            notification_id = notification_of(record)
            if notification_id:
                with self._lock:
                    self._records.append((notification_id, entry(function, record)))
        line = self._format.raw(function, text) if record is None else self._format.record(function, record)
        if line is not None:
            # A closed terminal must not end the following: the files still hold everything.
            with contextlib.suppress(OSError):
                self._emit(line)

    def for_notification(self, notification_id: str) -> list[dict[str, Any]]:
        """Return the kept records about ``notification_id`` (every level, newest last, the last 500 at most).

        Each is ``{"time", "level", "function", "message", "correlation_id", "fields"}``; see ``entry``.
        """
        with self._lock:
            found = [item for key, item in self._records if key == notification_id]
        return found[-self._per_notification :]
