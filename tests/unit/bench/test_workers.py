"""The drill's worker kills (bench/workers.py): only a worker in the middle of an invocation is taken for one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.workers import CONSUMER_HANDLER, kill_busy

ROOT = Path(__file__).resolve().parents[3]


def test_kill_busy_leaves_a_worker_still_importing_its_handler() -> None:
    """A consumer worker the stack has just started is busy importing its handler, not in a batch: it was killed, and
    the drill counted a kill 'mid-batch' that cut none (the pool saw Runtime.Unavailable, no ExitError)."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "infra.local.worker", CONSUMER_HANDLER],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    try:
        # This process is the worker's parent, as the stack is its workers'; nothing is ever sent to it.
        kill = kill_busy(os.getpid(), patience=0.3)

        assert kill is None
        assert worker.poll() is None
    finally:
        worker.kill()
        worker.wait(10)
