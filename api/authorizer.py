"""Lambda adapter of the admin authorizer (API Gateway TOKEN authorizer on the ``Authorization`` header).

A rotated admin token stops working within ``ADMIN_TOKEN_ROTATION_SECONDS`` (60 s): this function reuses the token
hash it read from SSM for ``ADMIN_TOKEN_CACHE_SECONDS`` (30 s), and API Gateway reuses its answer for a token for the
authorizer's ``resultTtlInSeconds`` (30 s, serverless.yml); the deploy checks keep the two within the window.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from time import time as wall_clock
from typing import Any

from api.admin_auth import check_admin_token
from core.clients import get_client
from core.errors import AWS_ERRORS, AuthenticationError, ForbiddenError, aws_error
from core.observability import logger
from core.roles.authorizer import AuthorizerSettings
from core.settings import load_settings


class TokenHash:
    """The admin token's SHA-256, read through ``read`` and reused for at most ``max_age`` seconds.

    Parameters
    ----------
    read:
        Reads the current hash (from SSM); a failure propagates, so an expired hash is never reused past its age.
    max_age:
        Seconds a hash read is reused; 0 reads it on every call.
    clock:
        Seconds of the wall clock, injectable for tests. Not the monotonic clock: the age must count the time a frozen
        Lambda environment sat between invocations, or a rarely invoked authorizer could accept a rotated token for
        longer than the rotation window.
    """

    def __init__(self, read: Callable[[], str], max_age: float, clock: Callable[[], float] = wall_clock) -> None:
        self._read = read
        self._max_age = max_age
        self._clock = clock
        self._value: str | None = None
        self._read_at = 0.0

    def get(self) -> str:
        """Return the hash, read again when the last read is ``max_age`` seconds old or older."""
        now = self._clock()
        if self._value is None or now - self._read_at >= self._max_age:
            self._value = self._read()
            # The age counts from before the read: a hash is never used later than max_age after it was asked for.
            self._read_at = now
        return self._value


def settings() -> AuthorizerSettings:
    """Return this function's settings, parsed at the container's first invocation; a missing variable fails it."""
    return load_settings(AuthorizerSettings)


@lru_cache(maxsize=1)
def token_hash(config: AuthorizerSettings, ssm: Any) -> TokenHash:
    """Return this container's cache of the token hash, read from SSM on the shared client."""

    def read() -> str:
        try:
            response = ssm.get_parameter(Name=config.admin_token_hash_parameter, WithDecryption=True)
        except AWS_ERRORS as exc:
            raise aws_error(exc, "reading the admin token hash") from exc
        return str(response["Parameter"]["Value"])

    return TokenHash(read, config.admin_token_cache_seconds, clock=wall_clock)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Allow every admin route for a valid admin token, deny otherwise; raise ``Unauthorized`` without one."""
    # Imported here: the data_classes package imports every event class powertools has (~15 ms) when loaded.
    from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
        APIGatewayAuthorizerResponse,
        APIGatewayAuthorizerTokenEvent,
    )

    config = settings()
    token_event = APIGatewayAuthorizerTokenEvent(event)
    arn = token_event.parsed_arn
    policy = APIGatewayAuthorizerResponse(
        principal_id="admin",
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
    )
    expected = token_hash(config, get_client("ssm", config.aws_region)).get()
    try:
        check_admin_token(token_event.authorization_token, expected)
    except AuthenticationError:
        # API Gateway's identity validation expression answers these without invoking this function; a direct invoke
        # still gets the one warning. API Gateway turns exactly this message into a 401; the runtime logs the raise.
        logger.warning("admin token refused", extra={"reason": "no Bearer token in Authorization"})
        raise Exception("Unauthorized") from None  # noqa: TRY002
    except ForbiddenError:
        logger.warning("admin token refused", extra={"reason": "not the admin token"})
        policy.deny_all_routes()
        return policy.asdict()
    # The policy covers all admin routes so API Gateway may cache it for the token.
    policy.allow_all_routes()
    return policy.asdict()
