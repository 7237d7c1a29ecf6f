"""One module per channel behind one interface; ``CHANNELS`` is the explicit registry of them."""

from __future__ import annotations

from consumer.channels.base import Channel, ChannelResources, DeliveryReceipt
from consumer.channels.email import EmailChannel
from consumer.channels.push import PushChannel
from consumer.channels.slack import SlackChannel
from consumer.channels.telegram import TelegramChannel
from consumer.channels.webhook import WebhookChannel

CHANNELS: dict[str, type[Channel]] = {
    EmailChannel.type: EmailChannel,
    SlackChannel.type: SlackChannel,
    TelegramChannel.type: TelegramChannel,
    WebhookChannel.type: WebhookChannel,
    PushChannel.type: PushChannel,
}


def build_channels(resources: ChannelResources) -> dict[str, Channel]:
    """Return one instance of every registered channel, sharing ``resources``."""
    return {name: channel(resources) for name, channel in CHANNELS.items()}


__all__ = ["CHANNELS", "Channel", "ChannelResources", "DeliveryReceipt", "build_channels"]
