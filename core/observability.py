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


# What the X-Ray SDK may patch to trace: AWS calls only (see ``LazyTracer``).
PATCHED_MODULES = ("botocore",)


class LazyTracer:
    """powertools' Tracer, built on first use.

    Building a Tracer imports the X-Ray SDK (~90 ms), so doing it at import time would put that on every cold start's
    init phase before the handler can even be loaded; here it happens on the first traced call instead.

    Only botocore is patched (``PATCHED_MODULES``): the SDK's patches of requests and http.client put each outbound
    request's URL, and the text of the exception a failed one raised, into the trace; a Telegram bot token and a Slack
    webhook's secret are in those URLs, a Stripe key in an exception about its header. Its botocore patch records the
    service, operation and a few named parameters (table, queue URL), never values.
    """

    def __init__(self) -> None:
        self._tracer: Any = None

    @property
    def tracer(self) -> Any:
        """The powertools Tracer, created on first access."""
        if self._tracer is None:
            from aws_lambda_powertools import Tracer

            self._tracer = Tracer(patch_modules=PATCHED_MODULES)
        return self._tracer

    def capture_lambda_handler(self, handler: F) -> F:
        """Trace a Lambda handler as powertools' ``capture_lambda_handler`` does, without its response."""
        traced: dict[int, Callable[..., Any]] = {}

        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> Any:
            tracer = self.tracer
            if id(tracer) not in traced:  # built by this container's Tracer (a test may build another)
                traced.clear()
                # Never a response in a trace: some carry what is shown once (a realtime token, a topic hash).
                traced[id(tracer)] = tracer.capture_lambda_handler(handler, capture_response=False)
            return traced[id(tracer)](event, context)

        return wrapper  # type: ignore[return-value]

    def capture_method(self, method: F) -> F:
        """Trace a function as a subsegment, as powertools' ``capture_method`` does, without its return value."""
        traced: dict[int, Callable[..., Any]] = {}

        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tracer = self.tracer
            if id(tracer) not in traced:
                traced.clear()
                traced[id(tracer)] = tracer.capture_method(method, capture_response=False)
            return traced[id(tracer)](*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tracer, name)


tracer = LazyTracer()
