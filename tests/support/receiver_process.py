"""The local stack's receiver (``infra/local/peers.py``) in a process of its own, for timing tests.

A test whose outcome is a timing (a burst paced to a provider's rate) cannot judge it with a receiver on a thread of
its own process: the consumer's threads, and moto's work on them, hold the interpreter while the receiver's thread
waits to take in and stamp a request, and a request stamped late looks sent late. In its own process the receiver
stamps each request as it comes, as a provider does.

API
---
``running_receiver_process()``
    Context manager: starts ``python -m tests.support.receiver_process`` on a free loopback port and yields its
    ``ReceiverProcess``; on exit it stops the process (which also ends by itself once its parent is gone: it serves
    until its standard input closes).

``ReceiverProcess``
    ``.url`` (``http://127.0.0.1:<port>``); ``.records()``: what came in, oldest first (the receiver keeps the last
    1,000), each with its ``path``, ``query``, ``status``, ``headers`` and ``body``. Paths and query parameters are
    the local receiver's: ``/webhook/<name>?rate=10`` answers 429 beyond 10 requests in any sliding second.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 20


@dataclass(frozen=True)
class ReceiverProcess:
    """A local receiver serving from another process at ``url``."""

    url: str

    def records(self) -> list[dict[str, Any]]:
        """Return every request the receiver kept, oldest first."""
        with urllib.request.urlopen(f"{self.url}/_records", timeout=10) as response:
            return list(json.load(response)["records"])


@contextmanager
def running_receiver_process() -> Iterator[ReceiverProcess]:
    """Run the local receiver in a child process for the duration of the block."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.receiver_process"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        port = _read_port(process)
        yield ReceiverProcess(f"http://127.0.0.1:{port}")
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def _read_port(process: subprocess.Popen[str]) -> int:
    """Return the port the child prints once it listens; fail when it does not within ``START_SECONDS``."""
    assert process.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(START_SECONDS)
    if not lines or not lines[0].strip().isdigit():
        process.kill()
        raise RuntimeError(f"the receiver process did not start within {START_SECONDS} s (it printed {lines!r})")
    return int(lines[0])


def _serve() -> None:
    """Serve on a free loopback port, print it, and stop when standard input closes (the parent ended)."""
    from infra.local.peers import ReceiverServer, Records

    server = ReceiverServer(("127.0.0.1", 0), Records())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    sys.stdout.write(f"{server.server_address[1]}\n")
    sys.stdout.flush()
    sys.stdin.read()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    _serve()
