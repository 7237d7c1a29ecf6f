"""The registry of every channel, and what is built from all of them: the consumer's channels (``build_channels``)
and the admin schema (``IntegrationSpec``, ``TopicRequest``, ``CREDENTIAL_FIELDS``, ``PATTERN_RULES``).

Importing this module imports every channel's module. The channel types and their modules are listed once, in
``core/channels/__init__.py``; what needs one channel only (the producer's rendering) loads that one from there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, TypeAlias, Union

from pydantic import Field, field_validator

from core.channels import CHANNEL_MODULES, channel_class
from core.channels.base import Channel, ChannelResources, IntegrationBase
from core.channels.browser import BrowserResources
from core.channels.push import SNS_ARN_PATTERN, SNS_ARN_RULE
from core.channels.subscribers import SubscribersChannel
from core.channels.webhook import URL_PATTERN, URL_RULE
from core.realtime.refs import TOPIC_REF_PATTERN, TOPIC_REF_RULE, USER_ID_PATTERN, USER_ID_RULE
from core.validation import NAME_PATTERN, NAME_RULE, Strict

CHANNELS: dict[str, type[Channel]] = {name: channel_class(name) for name in CHANNEL_MODULES}


def build_channels(resources: ChannelResources) -> dict[str, Channel]:
    """Return one instance of every registered channel, sharing ``resources``."""
    return {name: channel(resources) for name, channel in CHANNELS.items()}


# One integration as an admin writes it, told apart by ``type``. The union is built from the registry at run time; type
# checkers see what every member has.
if TYPE_CHECKING:
    IntegrationSpec: TypeAlias = IntegrationBase
else:
    IntegrationSpec = Annotated[
        Union[tuple(channel.integration_model for channel in CHANNELS.values())],  # noqa: UP007
        Field(discriminator="type"),
    ]


class TopicRequest(Strict):
    """Body of ``PUT /v1/channels/{channel}/topics/{topic}``."""

    integrations: list[IntegrationSpec] = Field(min_length=1, max_length=100)

    @field_validator("integrations")
    @classmethod
    def _unique_names(cls, value: list[IntegrationSpec]) -> list[IntegrationSpec]:
        seen: dict[str, int] = {}
        for index, integration in enumerate(value):
            if integration.name in seen:
                # A name is short and never a secret (it matches NAME_PATTERN), so it may be quoted.
                raise ValueError(
                    f"integrations[{seen[integration.name]}] and integrations[{index}] are both named "
                    f"{integration.name!r} (each integration needs a name of its own)"
                )
            seen[integration.name] = index
        subscribers = [index for index, item in enumerate(value) if item.type == SubscribersChannel.type]
        if len(subscribers) > 1:
            raise ValueError(
                f"integrations[{subscribers[0]}] and integrations[{subscribers[1]}] are both of type 'subscribers' "
                "(a topic's subscribers are reached once: keep one)"
            )
        return value


# What each pattern of a channel's fields allows, in words (``core.validation.PATTERN_RULES``: a 422 says this).
PATTERN_RULES: dict[str, str] = {
    NAME_PATTERN: f"is not a valid name: {NAME_RULE}",
    URL_PATTERN: URL_RULE,
    SNS_ARN_PATTERN: SNS_ARN_RULE,
    USER_ID_PATTERN: USER_ID_RULE,
    TOPIC_REF_PATTERN: TOPIC_REF_RULE,
}

CREDENTIAL_FIELDS: dict[str, tuple[str, ...]] = {
    name: tuple(credentials.model_fields)
    for name, channel in CHANNELS.items()
    if (credentials := channel.credentials_model) is not None
}

__all__ = [
    "CHANNELS",
    "CREDENTIAL_FIELDS",
    "PATTERN_RULES",
    "BrowserResources",
    "IntegrationSpec",
    "TopicRequest",
    "build_channels",
]
