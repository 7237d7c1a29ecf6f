"""One function's runtime: a long-lived process that imports the handler once and invokes it per request.

It speaks JSON lines with the local stack: requests on stdin, replies on the stdout it was started with. Everything the
function prints or logs goes to stderr, which the stack sends to the function's log file. Like a Lambda container, it
runs one invocation at a time and keeps its module state (cached clients, settings) between invocations.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
import traceback
from typing import IO, Any


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


def _reply(channel: IO[str], message: dict[str, Any]) -> None:
    channel.write(json.dumps(message, default=str) + "\n")
    channel.flush()


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc)[-6:],
    }


def main(handler_path: str) -> int:
    """Import ``handler_path`` (``folder/module.function``) and serve invocations until stdin closes."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the function's prints and logs go to its log, never into the protocol
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stack stops its workers itself, in order
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "function")
    memory = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
    region = os.environ.get("AWS_REGION", "us-east-1")
    module_name, _, attribute = handler_path.rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name.replace("/", ".")), attribute)
    except Exception as exc:
        traceback.print_exc()
        _reply(channel, {"ready": False, "error": {**_error(exc), "errorType": "Runtime.ImportModuleError"}})
        return 1
    _reply(channel, {"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        context = LambdaContext(function_name, memory, request["timeout"], request["request_id"], region)
        try:
            result = handler(request["event"], context)
            _reply(channel, {"id": request["id"], "result": result})
        except Exception as exc:
            traceback.print_exc()
            _reply(channel, {"id": request["id"], "error": _error(exc)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
