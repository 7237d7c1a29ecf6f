"""A pacing store in memory with the semantics of ``DynamoPaceStore``, for unit tests of ``Pacer``."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from core.pacing import Slot, slowed


@dataclass(frozen=True)
class StoreCall:
    """One call made to the store: ``take`` (with its ``busy`` hint), ``advance`` or ``hold`` (``busy`` is ``None``)."""

    operation: str
    key: str
    busy: bool | None = None


@dataclass
class _State:
    tat: float
    slow_factor: float = 1.0
    slow_until: float = 0.0


class InMemoryPaceStore:
    """Implements the ``PaceStore`` port in a dict under a lock; records every call in ``calls``.

    As in DynamoDB, a slot is ``max(tat, now)`` and TAT moves ``step`` past it; a hold moves TAT to ``until`` unless
    it is later already, and records the slow-down either way. The ``busy`` hint changes nothing but is recorded.
    """

    def __init__(self) -> None:
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()
        self.calls: list[StoreCall] = []

    def take(self, key: str, step: float, now: float, busy: bool) -> Slot:
        """Take the next slot of ``key`` and move its TAT ``step`` seconds past it."""
        with self._lock:
            self.calls.append(StoreCall("take", key, busy))
            state = self._states.setdefault(key, _State(tat=now))
            at = max(state.tat, now)
            state.tat = at + step
            return Slot(at=at, tat=state.tat, slow_factor=state.slow_factor, slow_until=state.slow_until)

    def advance(self, key: str, to: float, now: float) -> None:
        """Move the TAT of ``key`` to ``to`` unless it is later already."""
        with self._lock:
            self.calls.append(StoreCall("advance", key))
            state = self._states.setdefault(key, _State(tat=to))
            state.tat = max(state.tat, to)

    def hold(self, key: str, until: float, now: float) -> Slot:
        """Give ``key`` no slot before ``until``, and slow it down from its stored state."""
        with self._lock:
            self.calls.append(StoreCall("hold", key))
            state = self._states.setdefault(key, _State(tat=until))
            state.tat = max(state.tat, until)
            state.slow_factor, state.slow_until = slowed(state.slow_factor, state.slow_until, until, now)
            return Slot(at=state.tat, tat=state.tat, slow_factor=state.slow_factor, slow_until=state.slow_until)

    def tat(self, key: str) -> float | None:
        """Return the TAT of ``key``, or ``None`` when it was never paced."""
        with self._lock:
            state = self._states.get(key)
            return state.tat if state else None

    def busy_hints(self, key: str) -> list[bool | None]:
        """Return the ``busy`` hints of the ``take`` calls made for ``key``, in order."""
        with self._lock:
            return [call.busy for call in self.calls if call.operation == "take" and call.key == key]
