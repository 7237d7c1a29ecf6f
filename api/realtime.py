"""Lambda adapter of ``POST /v1/realtime/tokens``: the app's backend asks for a browser's connection token."""

from __future__ import annotations

import time
from typing import Annotated, Any

from aws_lambda_powertools.logging import correlation_paths
from pydantic import Field, StrictInt, field_validator

from core.clients import get_signing_keys
from core.http import Response, RouteDoc, Router, json_response, parse_body
from core.observability import logger, metrics, tracer
from core.realtime.refs import TOPIC_REF_PATTERN, USER_ID_PATTERN
from core.realtime.sessions import MAX_TOPICS, new_token
from core.realtime.settings import RealtimeTokensSettings
from core.settings import load_settings
from core.times import iso_time
from core.validation import Reply, Strict

app = Router()
TOKENS_PATH = "/v1/realtime/tokens"


class RealtimeTokenRequest(Strict):
    """Body of ``POST /v1/realtime/tokens``: whose token, the channel/topics it may hear, and its lifetime."""

    user_id: str = Field(pattern=USER_ID_PATTERN, description="The user the browser belongs to.")
    topics: list[Annotated[str, Field(pattern=TOPIC_REF_PATTERN, max_length=129)]] = Field(
        default_factory=list,
        max_length=MAX_TOPICS,
        description="Channel/topics (`<channel>/<topic>`) whose `browser` integrations with an empty target reach it.",
    )
    ttl_seconds: StrictInt | None = Field(
        default=None, ge=60, description="Lifetime in seconds; the stage's default when left out, at most its maximum."
    )

    @field_validator("topics")
    @classmethod
    def _once_each(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class RealtimeTokenResponse(Reply):
    """Body of a token's 201: the token, when it expires, and the WebSocket URL to connect to with ``?token=``."""

    token: str
    expires_at: str = Field(description="ISO 8601 UTC time after which the token opens no connection.")
    expires_in: int = Field(
        description="Seconds the token lives from now: a browser schedules its refresh by it, not by its own clock."
    )
    url: str = Field(description="The WebSocket API's URL; connect to `<url>?token=<token>`.")


def settings() -> RealtimeTokensSettings:
    """Return this function's settings, parsed at the container's first invocation; a missing variable fails it."""
    return load_settings(RealtimeTokensSettings)


@app.post(
    TOKENS_PATH,
    RouteDoc(
        {201: RealtimeTokenResponse},
        errors=(400, 403, 413, 422, 502),
        security="api_key",
        request=RealtimeTokenRequest,
        summary="Sign a short-lived token a browser connects to the WebSocket API with",
    ),
)
def create_token() -> Response:
    """Sign a browser connection token for a user and channel/topics."""
    request = parse_body(app.current_event.decoded_body, RealtimeTokenRequest)
    config = settings()
    issued = new_token(
        request.user_id,
        request.topics,
        request.ttl_seconds,
        get_signing_keys(config),
        time.time(),
        default_seconds=config.realtime_token_seconds,
        max_seconds=config.realtime_token_max_seconds,
    )
    body = {
        "token": issued.token,
        "expires_at": iso_time(issued.claims.expires_at),
        "expires_in": issued.claims.expires_at - issued.claims.issued_at,
        "url": config.realtime_url,
    }
    return json_response(201, body, {"Cache-Control": "no-store"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Entry point of the realtime token function."""
    settings()
    return app.resolve(event, context)
