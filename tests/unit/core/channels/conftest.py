"""Fixtures of the channel unit suites: resources whose AWS clients are fakes and whose HTTP is never used."""

from __future__ import annotations

import pytest

from core.channels import ChannelResources
from tests.fakes.delivery import FakeSendingClient


@pytest.fixture
def client() -> FakeSendingClient:
    """The fake SES/SNS client channels get."""
    return FakeSendingClient()


@pytest.fixture
def resources(client: FakeSendingClient) -> ChannelResources:
    """Channel resources handing out ``client`` for every AWS service."""
    return ChannelResources(http=None, aws_client=lambda service: client, telegram_api_base="")  # type: ignore[arg-type]
