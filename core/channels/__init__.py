"""One module per channel type behind one interface; ``CHANNEL_MODULES`` is the explicit list of them.

A new channel is one module and one line in ``CHANNEL_MODULES``. A channel's module is imported when it is first
needed: the producer renders a topic's integrations with their channels' modules only (``render_content``), while
``core/channels/registry.py`` imports all of them for what is built from every channel (the consumer's channels, the
admin schema). A function that publishes does not define the models of seven channels at its cold start.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib import import_module
from typing import Any

from core.channels.base import (
    Channel,
    ChannelResources,
    DeliveryReceipt,
    IntegrationBase,
    Limit,
    destination_key,
)
from core.models import Content, Integration
from core.validation import NAME_PATTERN, NAME_RULE

# Each channel type, and the module and class of its channel.
CHANNEL_MODULES: dict[str, tuple[str, str]] = {
    "email": ("core.channels.email", "EmailChannel"),
    "slack": ("core.channels.slack", "SlackChannel"),
    "telegram": ("core.channels.telegram", "TelegramChannel"),
    "webhook": ("core.channels.webhook", "WebhookChannel"),
    "push": ("core.channels.push", "PushChannel"),
    "browser": ("core.channels.browser", "BrowserChannel"),
    "subscribers": ("core.channels.subscribers", "SubscribersChannel"),
}


@cache
def channel_class(channel_type: str) -> type[Channel]:
    """Return the channel of a type, importing its module the first time.

    Raises
    ------
    KeyError
        No channel has this type.
    """
    module, name = CHANNEL_MODULES[channel_type]
    found = getattr(import_module(module), name)
    if not (isinstance(found, type) and issubclass(found, Channel) and found.type == channel_type):
        raise TypeError(f"{module}.{name} is not the channel of type {channel_type!r}")
    return found


def render_content(integration: Integration, values: Mapping[str, Any]) -> Content:
    """Render an integration's model into the content its channel sends."""
    return channel_class(integration.type).render(integration.model, values)


__all__ = [
    "CHANNEL_MODULES",
    "NAME_PATTERN",
    "NAME_RULE",
    "Channel",
    "ChannelResources",
    "DeliveryReceipt",
    "IntegrationBase",
    "Limit",
    "channel_class",
    "destination_key",
    "render_content",
]
