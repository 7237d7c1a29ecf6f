"""Fixtures of the channel suites: a loopback receiver, and channel resources on a real outbound session that may
reach it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from core.channels import ChannelResources
from core.outbound import OutboundSession
from tests.support.receivers import Receiver, running_receiver


def _no_aws(service: str) -> Any:
    raise AssertionError(f"an HTTP channel asked for an AWS client ({service})")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A scripted HTTP receiver on 127.0.0.1, stopped when the test ends."""
    with running_receiver() as running:
        yield running


@pytest.fixture
def resources(receiver: Receiver) -> ChannelResources:
    """Resources whose session allows loopback, with 1 s timeouts (a receiver's "slow" answer waits 1.5 s; 0.5 s was
    once too short for a prompt answer on a loaded 2-core host), and whose Telegram API is ``receiver``."""
    session = OutboundSession(connect_timeout=1.0, read_timeout=1.0, allow_private=True)
    return ChannelResources(http=session, aws_client=_no_aws, telegram_api_base=receiver.url)
