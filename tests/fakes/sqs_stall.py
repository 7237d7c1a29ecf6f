"""Makes a boto3 SQS client's SendMessageBatch calls wait, as an SQS that stops answering, through botocore hooks.

The held call goes on to the real endpoint (moto) once released, as a call SQS answers late does: the messages are
enqueued after the caller gave up on them. ``finish`` releases and waits for the calls, so none outlives its test.
"""

from __future__ import annotations

import threading
from typing import Any


class SqsStall:
    """Registered on a boto3 SQS client; holds every SendMessageBatch call until ``finish``."""

    def __init__(self, client: Any) -> None:
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._held = 0
        self._answered = threading.Condition(self._lock)
        client.meta.events.register("before-call.sqs.SendMessageBatch", self._hold)
        client.meta.events.register("after-call.sqs.SendMessageBatch", self._done)

    def _hold(self, **_: Any) -> None:
        with self._lock:
            self._held += 1
        self._release.wait(timeout=30.0)

    def _done(self, **_: Any) -> None:
        with self._answered:
            self._held -= 1
            self._answered.notify_all()

    def finish(self) -> None:
        """Let the held calls reach SQS and wait until each has its answer."""
        self._release.set()
        with self._answered:
            assert self._answered.wait_for(lambda: self._held == 0, timeout=30.0), "a held call never finished"
