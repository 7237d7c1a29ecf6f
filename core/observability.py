"""The logger, metrics and tracer every function shares (powertools; service name from the environment), and the
time an invocation has left, from its Lambda context."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics

F = TypeVar("F", bound=Callable[..., Any])

logger = Logger()
metrics = Metrics()


def remaining_time(context: Any, margin_seconds: float = 0.0) -> Callable[[], float]:
    """Return what tells the seconds left to the invocation of ``context`` (a Lambda context), less a margin."""
    return lambda: float(context.get_remaining_time_in_millis()) / 1000 - margin_seconds


class LazyTracer:
    """powertools' Tracer, built on first use.

    Building a Tracer imports the X-Ray SDK (~90 ms), so doing it at import time would put that on every cold start's
    init phase before the handler can even be loaded; here it happens on the first traced call instead.
    """

    def __init__(self) -> None:
        self._tracer: Any = None

    @property
    def tracer(self) -> Any:
        """The powertools Tracer, created on first access."""
        if self._tracer is None:
            from aws_lambda_powertools import Tracer

            self._tracer = Tracer()
        return self._tracer

    def capture_lambda_handler(self, handler: F) -> F:
        """Trace a Lambda handler as powertools' ``capture_lambda_handler`` does, without its response."""
        traced: Callable[..., Any] | None = None

        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> Any:
            nonlocal traced
            if traced is None:
                # Never a response in a trace: some carry what is shown once (a realtime token, a topic hash).
                traced = self.tracer.capture_lambda_handler(handler, capture_response=False)
            return traced(event, context)

        return wrapper  # type: ignore[return-value]

    def capture_method(self, method: F) -> F:
        """Trace a function as a subsegment, as powertools' ``capture_method`` does, without its return value."""
        traced: Callable[..., Any] | None = None

        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal traced
            if traced is None:
                traced = self.tracer.capture_method(method, capture_response=False)
            return traced(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tracer, name)


tracer = LazyTracer()
