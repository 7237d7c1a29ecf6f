"""One function's runtime: a long-lived process that imports the handler once and invokes it per request.

It speaks JSON lines with the local stack: requests on stdin, replies on the stdout it was started with. Everything the
function prints or logs goes to stderr, which the stack sends to the function's log file. Like a Lambda container, it
runs one invocation at a time and keeps its module state (cached clients, settings) between invocations.

Each log record reaches the file as one JSON line, as powertools writes them: the runtime's own (a failed import, an
invocation that raised) and those of the standard ``logging`` loggers and of ``warnings`` (as the Lambda runtime
formats the root logger's records when a function logs JSON), so that the stack can follow them record by record.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import IO, Any

from infra.local import iam

_log = logging.getLogger("lambda.runtime")


class LambdaContext:
    """The context object of one invocation, with the attributes and the deadline of the Lambda runtime's."""

    def __init__(self, function_name: str, memory: int, timeout: float, request_id: str, region: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{function_name}"
        self.memory_limit_in_mb = memory
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"local/[$LATEST]{os.getpid()}"
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class JsonLogFormatter(logging.Formatter):
    """Formats a record as powertools does: one JSON object per line, with the invocation's request id."""

    def __init__(self) -> None:
        super().__init__()
        self.request_id: str | None = None
        self.service = os.environ.get("POWERTOOLS_SERVICE_NAME", "service_undefined")

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one JSON line."""
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "level": record.levelname,
            "location": f"{record.funcName}:{record.lineno}",
            "message": record.getMessage(),
            "timestamp": f"{moment:%Y-%m-%d %H:%M:%S},{moment.microsecond // 1000:03d}+0000",
            "service": self.service,
            "logger": record.name,
        }
        if self.request_id:
            entry["function_request_id"] = self.request_id
        entry.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = self.formatException(record.exc_info)
            entry["exception_name"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str, ensure_ascii=False)


def _written_by_powertools(record: logging.LogRecord) -> bool:
    """Tell whether a powertools handler up the record's logger chain already wrote it."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None:
        if getattr(logger, "powertools_handler", None) is not None:
            return True
        logger = logger.parent if logger.propagate else None
    return False


def install_json_logging(stream: IO[str]) -> JsonLogFormatter:
    """Send the root logger's and ``warnings``' records to ``stream`` as JSON lines; return the formatter.

    The root logger stays at WARNING (Python's default, which the Lambda runtime keeps unless told otherwise), whatever
    ``LOCAL_LOG_LEVEL`` says: the SDK's debug records carry response bodies, parameters' decrypted values among them.
    Installed before the handler is imported, so that powertools' loggers find the handler and keep their records off
    it (and the filter here keeps them off if they do not).
    """
    formatter = JsonLogFormatter()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(lambda record: not _written_by_powertools(record))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    _log.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return formatter


def _log_failure(exc: BaseException) -> None:
    if type(exc) is Exception and str(exc) == "Unauthorized":
        # A Lambda authorizer raises exactly this to have API Gateway answer 401: a refusal, not a failure.
        _log.warning("Unauthorized: the authorizer refused the request (401)")
        return
    _log.error("invocation failed", exc_info=exc)


def _reply(channel: IO[str], message: dict[str, Any]) -> None:
    channel.write(json.dumps(message, default=str) + "\n")
    channel.flush()


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc)[-6:],
    }


def line_writer(fd: int) -> IO[str]:
    """Return a text stream on ``fd`` that writes each line with one ``write``.

    Unbuffered (``PYTHONUNBUFFERED``), a ``print()`` is two writes, the text and then its newline, and another worker of
    the same function appending to the same log between the two would join two records on one line.
    """
    raw = io.BufferedWriter(io.FileIO(fd, "w", closefd=False), buffer_size=1 << 20)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", line_buffering=True)


def main(handler_path: str) -> int:
    """Import ``handler_path`` (``folder/module.function``) and serve invocations until stdin closes."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the function's prints and logs go to its log, never into the protocol
    sys.stderr = line_writer(2)
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stack stops its workers itself, in order
    formatter = install_json_logging(sys.stderr)
    iam.install(os.environ)
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "function")
    memory = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
    region = os.environ.get("AWS_REGION", "us-east-1")
    module_name, _, attribute = handler_path.rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name.replace("/", ".")), attribute)
    except Exception as exc:
        _log.error("handler import failed", exc_info=exc, extra={"fields": {"handler": handler_path}})
        _reply(channel, {"ready": False, "error": {**_error(exc), "errorType": "Runtime.ImportModuleError"}})
        return 1
    _reply(channel, {"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        context = LambdaContext(function_name, memory, request["timeout"], request["request_id"], region)
        formatter.request_id = request["request_id"]
        try:
            result = handler(request["event"], context)
            _reply(channel, {"id": request["id"], "result": result})
        except Exception as exc:
            _log_failure(exc)
            _reply(channel, {"id": request["id"], "error": _error(exc)})
        finally:
            formatter.request_id = None
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
