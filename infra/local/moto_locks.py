"""One lock of the process around chosen methods of moto's backends: what makes their work atomic, as AWS's is.

moto (5.x) checks and changes its state without locks, and its server answers on threads. ``serialize(backend,
names)`` wraps each named method of a backend class so that it runs whole under ``LOCK``; it is idempotent, and costs
no throughput (moto's work holds the interpreter anyway). See ``moto_dynamodb`` and ``moto_sqs``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from typing import Any

LOCK = threading.RLock()
_MARK = "_notify_serialized"


def is_serialized(method: Callable[..., Any]) -> bool:
    """Tell whether ``method`` is already one this module wrapped."""
    return bool(getattr(method, _MARK, False))


def mark(wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a wrapper made by hand as serialized (so that ``serialize`` leaves it alone)."""
    setattr(wrapper, _MARK, True)
    return wrapper


def serialize(backend: type, names: Iterable[str]) -> None:
    """Make each named method of ``backend`` run whole under ``LOCK``, once."""
    for name in names:
        method = getattr(backend, name)
        if not is_serialized(method):
            setattr(backend, name, _serialized(method))


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with LOCK:
            return method(*args, **kwargs)

    return mark(wrapper)
