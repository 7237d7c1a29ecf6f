"""How browsers, their tokens and the connections table name a user and a channel/topic (``<channel>/<topic>``).

Shared by the browser channel, the token route and the WebSocket function; here rather than in
``core.channels.browser`` so that the realtime functions do not load every channel to check a name.
"""

from __future__ import annotations

import re

from core.validation import NAME_PATTERN

USER_ID_PATTERN = r"^[^\s\x00-\x1f\x7f]{1,128}$"
USER_ID_RULE = "must be 1-128 characters without spaces or control characters"
TOPIC_REF_PATTERN = NAME_PATTERN.removesuffix("$") + "/" + NAME_PATTERN.removeprefix("^")
TOPIC_REF_RULE = (
    "must be <channel>/<topic>, each 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
)
TOPIC_REF = re.compile(TOPIC_REF_PATTERN)


def topic_ref(channel: str, topic: str) -> str:
    """Return how tokens and the connections table name a channel/topic: ``<channel>/<topic>``."""
    return f"{channel}/{topic}"
