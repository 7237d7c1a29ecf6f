"""Function runtimes: a pool of worker processes per function, each with that function's own environment.

Settings and clients are cached per process, so one process per function is what keeps one function's environment
from leaking into another. Like Lambda, a pool grows with concurrent invocations (up to a limit), keeps warm workers
between invocations, and replaces a worker whose invocation timed out.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import LOCAL_STACK_MARKER
from infra.local.definition import FunctionSpec
from infra.local.iam import ROLE_STATEMENTS_VARIABLE
from infra.local.logs import function_log_level

_START_TIMEOUT = 60.0
_PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "TMPDIR")


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invocation: the handler's result, or its error in Lambda's shape."""

    result: Any = None
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0

    @property
    def failed(self) -> bool:
        """Tell whether the invocation raised, timed out or could not start."""
        return self.error is not None


class WorkerError(Exception):
    """A worker process broke: it did not start, died, or outran its deadline."""


class Worker:
    """One running worker process of a function."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=cwd,
            start_new_session=True,  # Ctrl-C goes to the stack, which stops its workers in order
        )
        self._buffer = b""

    def read_message(self, timeout: float) -> dict[str, Any]:
        """Wait for the worker's next reply; raise ``WorkerError`` after ``timeout`` seconds or when it died."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerError("timed out")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise WorkerError(f"exited with status {self.process.wait()}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message

    def send(self, message: dict[str, Any]) -> None:
        """Send one request line."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise WorkerError("is gone") from exc

    def stop(self, grace: float = 2.0) -> None:
        """End the worker: close its input, then kill it if it lingers."""
        if self.process.poll() is None:
            try:
                if self.process.stdin:
                    self.process.stdin.close()
                self.process.wait(grace)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._log.close()


class FunctionPool:
    """The warm workers of one function, grown on demand up to ``max_workers``."""

    def __init__(self, spec: FunctionSpec, env: dict[str, str], cwd: Path, log: Path, max_workers: int) -> None:
        self.spec = spec
        self._env = env
        self._cwd = cwd
        self._log = log
        self._max = max_workers
        self._idle: list[Worker] = []
        self._count = 0
        self._cond = threading.Condition()
        self._closed = False
        self.init_error: dict[str, Any] | None = None

    def _spawn(self) -> Worker:
        worker = Worker(
            [sys.executable, "-m", "infra.local.worker", self.spec.handler], self._env, self._cwd, self._log
        )
        try:
            hello = worker.read_message(_START_TIMEOUT)
        except WorkerError as exc:
            worker.stop(0)
            raise WorkerError(f"{self.spec.key} did not start: {exc}") from exc
        if not hello.get("ready"):
            worker.stop()
            self.init_error = hello.get("error") or {"errorType": "Runtime.Unknown", "errorMessage": "no start"}
            raise WorkerError(f"{self.spec.key}: {self.init_error['errorType']}: {self.init_error['errorMessage']}")
        self.init_error = None
        return worker

    def warm(self) -> None:
        """Start one worker ahead of the first invocation, so that a broken handler shows at start."""
        worker = self._spawn()
        with self._cond:
            self._count += 1
            self._idle.append(worker)
            self._cond.notify()

    def _acquire(self) -> Worker:
        with self._cond:
            while True:
                if self._closed:
                    raise WorkerError("the stack is stopping")
                if self._idle:
                    return self._idle.pop()
                if self._count < self._max:
                    self._count += 1
                    break
                self._cond.wait()
        try:
            return self._spawn()
        except WorkerError:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, worker: Worker, healthy: bool) -> None:
        if not healthy:
            worker.stop(0)
        with self._cond:
            if healthy and not self._closed:
                self._idle.append(worker)
            else:
                self._count -= 1
                if healthy:
                    worker.stop(0)
            self._cond.notify()

    def invoke(self, event: Any, timeout: float | None = None) -> Invocation:
        """Invoke the function synchronously with ``event``; never raises, failures come back as ``error``."""
        limit = float(timeout if timeout is not None else self.spec.timeout)
        started = time.monotonic()
        try:
            worker = self._acquire()
        except WorkerError as exc:
            error = self.init_error or {"errorType": "Runtime.Unavailable", "errorMessage": str(exc)}
            return Invocation(error=error, duration_ms=(time.monotonic() - started) * 1000)
        healthy = True
        request_id = str(uuid.uuid4())
        try:
            worker.send({"id": request_id, "request_id": request_id, "event": event, "timeout": limit})
            reply = worker.read_message(limit + 0.5)
        except WorkerError as exc:
            healthy = False
            kind = "Sandbox.Timedout" if str(exc) == "timed out" else "Runtime.ExitError"
            message = f"Task timed out after {limit:.2f} seconds" if kind == "Sandbox.Timedout" else f"worker {exc}"
            reply = {"error": {"errorType": kind, "errorMessage": message}}
        finally:
            self._release(worker, healthy)
        return Invocation(reply.get("result"), reply.get("error"), (time.monotonic() - started) * 1000)

    def close(self) -> None:
        """Stop every worker of this function."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for worker in idle:
            worker.stop()


def function_env(
    spec: FunctionSpec,
    resolved_env: dict[str, str],
    aws_url: str,
    region: str,
    extra: dict[str, str],
    log_level: str | None = None,
) -> dict[str, str]:
    """Return a function's process environment: the Lambda runtime's variables, the local AWS, its own variables.

    The local stack's marker comes last, so that the functions of stage ``local`` may allow private targets here,
    and only here (``core.roles.shared.OutboundSettings``); what only the real runtime sets (``AWS_EXECUTION_ENV``,
    ``AWS_LAMBDA_RUNTIME_API``) is never passed on. With ``log_level`` (``LOCAL_LOG_LEVEL``), powertools logs at
    DEBUG when DEBUG is asked for and at INFO otherwise, whatever the definition sets: the log files keep INFO and
    above for the local page even when the terminal shows only warnings.
    """
    base = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
    levels = {"POWERTOOLS_LOG_LEVEL": function_log_level(log_level)} if log_level else {}
    # The worker refuses the AWS calls the function's role does not allow, as IAM would (infra/local/iam.py).
    roles = {} if spec.role_statements is None else {ROLE_STATEMENTS_VARIABLE: json.dumps(spec.role_statements)}
    return {
        **base,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_SESSION_TOKEN": "local",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
        # There is no X-Ray daemon on this machine.
        "POWERTOOLS_TRACE_DISABLED": "true",
        **extra,
        **resolved_env,
        **levels,
        **roles,
        LOCAL_STACK_MARKER: "1",
    }
