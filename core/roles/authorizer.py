"""Settings of the admin authorizer: the admin token hash's parameter and how long it is reused."""

from __future__ import annotations

from pydantic import Field

from core.settings import ADMIN_TOKEN_ROTATION_SECONDS, FunctionSettings


class AdminTokenSettings(FunctionSettings):
    """The SSM parameter holding the admin token's SHA-256, and how long the authorizer reuses it.

    The cache is at most half of ``ADMIN_TOKEN_ROTATION_SECONDS``; API Gateway's result cache takes the other half.
    """

    admin_token_hash_parameter: str = Field(alias="ADMIN_TOKEN_HASH_PARAMETER", pattern=r"^/\S+$")
    admin_token_cache_seconds: float = Field(
        default=30.0, ge=0, le=ADMIN_TOKEN_ROTATION_SECONDS / 2, alias="ADMIN_TOKEN_CACHE_SECONDS"
    )


class AuthorizerSettings(AdminTokenSettings):
    """The admin authorizer: the token hash parameter only."""
