"""SQS's receives made exclusive in moto, as SQS makes them: a message in flight is handed to one receiver only.

moto (5.x) scans a queue's messages and marks them received without a lock, and its server answers on threads: two of
the local stack's pollers of one queue could both take the same message, and the consumer sent it twice (a duplicate
SQS itself almost never makes), or a scan met another thread's change ("Set changed size during iteration", a 500).

``serialize_queues()`` runs each scan of ``receive_message``, and every call that changes a queue's messages, under the
lock of ``moto_locks``. A long poll waits for messages outside the lock, so senders are never held up by it. It is
idempotent; moto's work holds the interpreter anyway, so the lock costs no throughput.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from infra.local.moto_locks import LOCK, is_serialized, mark, serialize

# Backend methods that change which messages a queue holds, or their visibility: each runs whole under the lock.
METHODS = (
    "send_message",
    "send_message_batch",
    "delete_message",
    "delete_message_batch",
    "change_message_visibility",
    "change_message_visibility_batch",
    "purge_queue",
)


def serialize_queues() -> None:
    """Make moto's SQS receives exclusive, and its queue changes atomic, with respect to each other in this process."""
    from moto.sqs.models import SQSBackend

    serialize(SQSBackend, METHODS)
    if not is_serialized(SQSBackend.receive_message):
        SQSBackend.receive_message = _exclusive_receive(SQSBackend.receive_message)  # type: ignore[method-assign]


def _exclusive_receive(receive: Callable[..., Any]) -> Callable[..., Any]:
    """Scan under the lock without waiting there; a long poll waits for messages between scans."""

    @functools.wraps(receive)
    def wrapper(backend: Any, queue_name: str, count: int, wait_seconds_timeout: int, *args: Any, **kwargs: Any) -> Any:
        polling_end = time.monotonic() + wait_seconds_timeout
        while True:
            with LOCK:
                result = receive(backend, queue_name, count, 0, *args, **kwargs)
            if result or time.monotonic() >= polling_end:
                return result
            backend.get_queue(queue_name).wait_for_messages(min(1.0, max(0.0, polling_end - time.monotonic())))

    return mark(wrapper)
