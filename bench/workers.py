"""The function workers of a running local stack, found from the outside through /proc, and killed on purpose.

The stack runs each function in worker processes it starts itself (``python -m infra.local.worker <handler>``); a
benchmark that started the stack knows its PID and finds them among its children. A drill kills a busy consumer
worker with SIGKILL, as a crashed Lambda container would die in the middle of a batch. Between invocations a worker
waits in ``read`` on its standard input (``/proc/<pid>/syscall`` starts with the number of ``read`` and fd ``0x0``);
in any other state it is handling a batch.
"""

from __future__ import annotations

import os
import platform
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CONSUMER_HANDLER = "consumer/handler.handler"
# The number of the ``read`` system call, as /proc/<pid>/syscall gives it.
READ_SYSCALL = {"x86_64": "0", "aarch64": "63", "arm64": "63"}.get(platform.machine(), "0")


@dataclass(frozen=True)
class Kill:
    """One worker killed: when (Unix time) and which PID."""

    at: float
    pid: int


def _stat_fields(pid: int) -> list[str]:
    text = (PROC / str(pid) / "stat").read_text()
    # The command name (field 2) is in parentheses and may hold spaces; the fields after it are plain.
    return text[text.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    """Return the PIDs whose parent is ``pid``."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry.name))[1]) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def command_line(pid: int) -> list[str]:
    """Return a process's arguments, or nothing when it is gone."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def workers(stack_pid: int, handler: str = CONSUMER_HANDLER) -> list[int]:
    """Return the PIDs of the stack's worker processes running ``handler``."""
    return [pid for pid in children(stack_pid) if command_line(pid)[-2:] == ["infra.local.worker", handler]]


def busy(pid: int) -> bool:
    """Tell whether a worker is in the middle of an invocation: not waiting in ``read`` on its standard input."""
    try:
        call = (PROC / str(pid) / "syscall").read_text().split()
    except OSError:
        return False
    return call[:2] != [READ_SYSCALL, "0x0"]


def kill_busy(stack_pid: int, patience: float = 10.0) -> Kill | None:
    """SIGKILL a consumer worker in the middle of a batch; ``None`` when none was busy within ``patience`` seconds.

    Only a worker seen waiting for an invocation first, then busy: one the stack has just started is busy importing
    its handler, and killing it would cut no batch.
    """
    deadline = time.monotonic() + patience
    waited: set[int] = set()
    while time.monotonic() < deadline:
        for pid in workers(stack_pid):
            if not busy(pid):
                waited.add(pid)
            elif pid in waited:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                return Kill(time.time(), pid)
        time.sleep(0.02)
    return None
