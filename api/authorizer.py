"""Lambda adapter of the admin authorizer (API Gateway TOKEN authorizer on the ``Authorization`` header)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponse,
    APIGatewayAuthorizerTokenEvent,
)

from api.admin_auth import check_admin_token
from core.clients import get_parameter_provider
from core.errors import AuthenticationError, ForbiddenError
from core.observability import logger
from core.settings import get_settings

# The token hash is re-read at most this often, so a rotated token takes effect within five minutes.
_HASH_MAX_AGE_SECONDS = 300


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Allow every admin route for a valid admin token, deny otherwise; raise ``Unauthorized`` without one."""
    token_event = APIGatewayAuthorizerTokenEvent(event)
    arn = token_event.parsed_arn
    policy = APIGatewayAuthorizerResponse(
        principal_id="admin",
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
    )
    expected = get_parameter_provider().get(
        get_settings().admin_token_hash_parameter, decrypt=True, max_age=_HASH_MAX_AGE_SECONDS
    )
    try:
        check_admin_token(token_event.authorization_token, str(expected or ""))
    except AuthenticationError as exc:
        # API Gateway turns exactly this message into a 401.
        raise Exception("Unauthorized") from exc  # noqa: TRY002
    except ForbiddenError:
        logger.warning("admin token refused")
        policy.deny_all_routes()
        return policy.asdict()
    # The policy covers all admin routes so API Gateway may cache it for the token.
    policy.allow_all_routes()
    return policy.asdict()
