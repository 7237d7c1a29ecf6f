"""bench/intake.py's per-publish call counts (moto in-process): an extra call on some warm publishes must show."""

from __future__ import annotations

import os
from typing import Any

import pytest

from bench import intake


def test_a_topic_read_on_one_warm_publish_in_ten_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """The warm path reads the topic on 1 publish of 10 (a cache that expires, say): the counts were divided by the
    number of publishes and rounded down, 1 // 10 = 0, so the row said 'topic reads 0' and the warm-path check
    passed."""
    from core import clients
    from producer import handler as publish_handler

    real = publish_handler.handler
    calls = {"n": 0}

    def handler(event: Any, context: Any) -> Any:
        calls["n"] += 1
        if calls["n"] % 10 == 0:
            # The topic read a cache miss would make, through the counted client.
            clients.get_client("dynamodb").get_item(
                TableName=os.environ["TOPICS_TABLE"], Key={"channel": {"S": "bench"}, "topic": {"S": "t1"}}
            )
        return real(event, context)

    monkeypatch.setattr(publish_handler, "handler", handler)
    monkeypatch.setattr(intake, "SIZES", (1,))

    [row] = intake.measure_publishing(warm_publishes=10)

    assert row["warm"]["topic reads"] > 0, f"1 topic read in 10 warm publishes reported as {row['warm']}"
