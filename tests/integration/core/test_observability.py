"""Integration tests of the shared observability (core/observability.py) with powertools and the X-Ray SDK (which
opens its UDP emitter socket): what a trace may hold."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from aws_lambda_powertools import Tracer

from core.observability import LazyTracer
from tests.fakes.lambda_context import FakeLambdaContext

TOKEN = "rt1.k1.eyJ1Ijoid2FsZG8ifQ.c2lnbmF0dXJl"


@pytest.fixture
def kept(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """What powertools would put in a trace as a handler's or method's response: (data, capture_response), of this
    test's thread only (threads an earlier test left running, a stack's workers say, trace their own calls)."""
    captured: list[tuple[Any, Any]] = []
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")  # no X-Ray daemon here
    test_thread = threading.get_ident()

    def add(
        self: Tracer, method_name: Any = None, data: Any = None, subsegment: Any = None, capture_response: Any = None
    ) -> None:
        if threading.get_ident() == test_thread:
            captured.append((data, capture_response))

    monkeypatch.setattr(Tracer, "_add_response_as_metadata", add)
    return captured


def test_traced_handler_keeps_no_response_in_the_trace(kept: list[tuple[Any, Any]]) -> None:
    handler = LazyTracer().capture_lambda_handler(lambda event, context: {"token": TOKEN})

    assert handler({}, FakeLambdaContext()) == {"token": TOKEN}
    assert [capture for _, capture in kept] == [False]


def test_traced_method_keeps_no_return_value_in_the_trace(kept: list[tuple[Any, Any]]) -> None:
    method = LazyTracer().capture_method(lambda: TOKEN)

    assert method() == TOKEN
    assert [capture for _, capture in kept] == [False]
