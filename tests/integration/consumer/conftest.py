"""Fixtures of the consumer suites: a loopback receiver, and the consumer's settings pointing at it under moto."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core import clients
from tests.support.aws import AwsResources
from tests.support.receivers import Receiver, running_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A scripted HTTP receiver on 127.0.0.1, stopped when the test ends."""
    with running_receiver() as running:
        yield running


@pytest.fixture
def consumer_aws(aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> AwsResources:
    """AWS under moto, with short HTTP timeouts, loopback targets allowed and Telegram played by ``receiver``."""
    monkeypatch.setenv("ALLOW_PRIVATE_TARGETS", "true")
    monkeypatch.setenv("HTTP_CONNECT_TIMEOUT", "0.5")
    monkeypatch.setenv("HTTP_READ_TIMEOUT", "0.5")
    monkeypatch.setenv("TELEGRAM_API_BASE", receiver.url)
    clients.reset()
    return aws
