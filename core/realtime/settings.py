"""Settings of the realtime roles (the token route, the WebSocket function) and their mixins; the base and
``load_settings`` are ``core/settings.py``'s."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from core.settings import (
    FunctionSettings,
)

# The longest any stage may let a token, or a session of refreshed tokens, live; a rotation keeps a retired key that
# long (core.realtime.keys), so that no stage's REALTIME_TOKEN_MAX_SECONDS has to be matched when rotating.
LONGEST_TOKEN_SECONDS = 86400
# The longest a function may reuse the signing keys it read: a signer may sign with a retired key this long after the
# rotation.
LONGEST_KEYS_CACHE_SECONDS = 300


class RealtimeKeysSettings(FunctionSettings):
    """The SSM parameter holding the realtime tokens' signing keys, and how long its value is reused.

    A key added by a rotation is found at once by a verifier that meets its id (it reads the parameter again); the
    cache only bounds how long a signer keeps signing with the key before, and so how long after its retirement a
    verifier still takes a token issued with that key. One value for every function of a stage.
    """

    realtime_keys_parameter: str = Field(alias="REALTIME_KEYS_PARAMETER", pattern=r"^/\S+$")
    realtime_keys_cache_seconds: float = Field(
        default=60.0, ge=0, le=LONGEST_KEYS_CACHE_SECONDS, alias="REALTIME_KEYS_CACHE_SECONDS"
    )


class RealtimeTokenSettings(RealtimeKeysSettings):
    """Lifetime of the browser connection tokens: the default, and the longest a request may ask for, which is also
    the longest a page stays connected by refreshing its token before it must come back to the app's backend."""

    realtime_token_seconds: int = Field(default=900, ge=60, alias="REALTIME_TOKEN_SECONDS")
    realtime_token_max_seconds: int = Field(
        default=3600, ge=60, le=LONGEST_TOKEN_SECONDS, alias="REALTIME_TOKEN_MAX_SECONDS"
    )

    @model_validator(mode="after")
    def _default_within_max(self) -> Self:
        if self.realtime_token_seconds > self.realtime_token_max_seconds:
            raise ValueError("REALTIME_TOKEN_SECONDS must not exceed REALTIME_TOKEN_MAX_SECONDS")
        return self


class RealtimeUrlSettings(FunctionSettings):
    """The URL browsers connect to: the WebSocket API's (``wss://``), or the local stack's (``ws://``)."""

    realtime_url: str = Field(alias="REALTIME_URL", pattern=r"^wss?://\S+$")


class ConnectionsSettings(FunctionSettings):
    """The table of open browser connections."""

    connections_table: str = Field(alias="CONNECTIONS_TABLE", min_length=1)


class RealtimeTokensSettings(RealtimeTokenSettings, RealtimeUrlSettings):
    """The token route: signs browser connection tokens and names the URL to connect to."""


class WebsocketSettings(ConnectionsSettings, RealtimeTokenSettings):
    """The WebSocket API's function: checks tokens, stores connections, signs refreshed tokens."""
