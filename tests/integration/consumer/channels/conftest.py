"""Fixtures of the channel suites: channel resources on a real outbound session that may reach loopback."""

from __future__ import annotations

from typing import Any

import pytest

from consumer.channels import ChannelResources
from core.outbound import OutboundSession
from tests.support.receivers import Receiver


def _no_aws(service: str) -> Any:
    raise AssertionError(f"an HTTP channel asked for an AWS client ({service})")


@pytest.fixture
def resources(receiver: Receiver) -> ChannelResources:
    """Resources whose session allows loopback, with 0.5 s timeouts, and whose Telegram API is ``receiver``."""
    session = OutboundSession(connect_timeout=0.5, read_timeout=0.5, allow_private=True)
    return ChannelResources(http=session, aws_client=_no_aws, telegram_api_base=receiver.url)
