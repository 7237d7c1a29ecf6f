"""Unit tests of the channel registry (consumer/channels/__init__.py)."""

from __future__ import annotations

from consumer.channels import CHANNELS, ChannelResources, build_channels
from core.models import IntegrationType


def test_registry_has_a_channel_for_every_integration_type() -> None:
    assert set(CHANNELS) == {kind.value for kind in IntegrationType}


def test_registry_keys_are_channel_types() -> None:
    assert all(channel.type == name for name, channel in CHANNELS.items())


def test_build_channels_shares_resources() -> None:
    resources = ChannelResources(http=None, aws_client=lambda _: None, telegram_api_base="")  # type: ignore[arg-type]

    channels = build_channels(resources)

    assert {channel._resources for channel in channels.values()} == {resources}
