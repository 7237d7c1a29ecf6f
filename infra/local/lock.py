"""One local stack per state directory, and ports checked before anything starts."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path
from typing import IO

from infra.local.config import HOST, ConfigError, LocalConfig


class RunLock:
    """An exclusive lock on ``.local/run.lock``; the kernel releases it when the process ends, however it ends."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: IO[str] | None = None
        self.stale_pid: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``ConfigError`` naming the run that holds it."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        handle = self._path.open("a+")
        handle.seek(0)
        previous = handle.read().strip()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise ConfigError(
                f"another local stack (PID {previous or '?'}) is running from {self._path.parent}: stop it with "
                f"Ctrl-C in its terminal or `kill {previous or '<pid>'}`, or set LOCAL_STATE_DIR for a second one"
            ) from exc
        if previous.isdigit():
            self.stale_pid = int(previous)  # a run that was killed before it could clean up
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        """Drop the lock and its file."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()
            self._file.close()
            self._file = None


def port_free(port: int) -> bool:
    """Tell whether nothing listens on ``127.0.0.1:port`` (a port in TIME_WAIT counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def check_ports(config: LocalConfig, with_postgres: bool) -> None:
    """Raise ``ConfigError`` with what to do when a port the stack needs is taken."""
    wanted = [
        ("PORT", config.port, "the API"),
        ("LOCAL_RECEIVER_PORT", config.receiver_port, "the local receiver"),
        ("LOCAL_AWS_PORT", config.aws_port, "moto"),
        ("LOCAL_STRIPE_PORT", config.stripe_port, "the local Stripe server"),
    ]
    if with_postgres:
        wanted.append(("LOCAL_POSTGRES_PORT", config.postgres_port, "PostgreSQL"))
    seen: dict[int, str] = {}
    for variable, port, what in wanted:
        if port in seen:
            raise ConfigError(f"{variable} and {seen[port]} are both {port}: give each its own port")
        seen[port] = variable
        if not port_free(port):
            raise ConfigError(
                f"port {port} ({what}) is in use, by another `make run` or another program: stop it, "
                f"or pick another port, e.g. `{variable}={port + 10} make run`"
            )
