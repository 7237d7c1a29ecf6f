"""Lambda adapter of the WebSocket API's routes: ``$connect``, ``$disconnect`` and ``$default``.

``$connect`` answers 200 to let the browser in, or the status of the refusal (401 no, forged or expired token; 403 a
topic the token does not name; 409 its user has as many open connections as one may have; 502 the store failed),
which API Gateway turns into a refused handshake. ``$default`` answers a ``{"action": "refresh"}`` frame through its
route response with ``{"type": "token", "token", "expires_at", "expires_in"}`` (the seconds the token lives, which a
browser reads against its own clock, however wrong that is), or with an error frame once the session its first token
opened is ending; anything else with ``{"type": "error", "message"}``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.clients import get_connection_store, get_signing_keys
from core.errors import MalformedRequestError, NotificationError
from core.http import error_response
from core.observability import logger, metrics, tracer
from core.realtime.sessions import close_connection, open_connection, refresh_token
from core.realtime.settings import WebsocketSettings
from core.settings import load_settings
from core.times import iso_time

CONNECT, DISCONNECT, DEFAULT = "$connect", "$disconnect", "$default"
# The route keys this function serves; a test keeps them equal to serverless.yml's websocket events.
ROUTES = (CONNECT, DISCONNECT, DEFAULT)
MAX_FRAME_CHARS = 4096


class WebsocketContext(BaseModel):
    """The part of API Gateway's ``requestContext`` the routes read."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    route_key: str = Field(alias="routeKey")
    connection_id: str = Field(alias="connectionId", min_length=1)


class WebsocketEvent(BaseModel):
    """An API Gateway WebSocket event: the route, the connection, the query string of a connect, a frame's body."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    request_context: WebsocketContext = Field(alias="requestContext")
    query: dict[str, str] | None = Field(default=None, alias="queryStringParameters")
    body: str | None = None


def settings() -> WebsocketSettings:
    """Return this function's settings, parsed at the container's first invocation; a missing variable fails it."""
    return load_settings(WebsocketSettings)


def _answer(status: int, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"statusCode": status, **({"body": json.dumps(body)} if body is not None else {})}


def _refusal(exc: NotificationError, frame: bool) -> dict[str, Any]:
    answer = error_response(exc)
    message = json.loads(answer.body)["message"]
    return _answer(answer.status_code, {"type": "error", "message": message} if frame else {"message": message})


def connect(event: WebsocketEvent) -> dict[str, Any]:
    """Let a browser in when its token is good, storing its connection; refuse it otherwise."""
    config = settings()
    connection_id = event.request_context.connection_id
    try:
        connection = open_connection(
            connection_id,
            event.query or {},
            get_signing_keys(config),
            get_connection_store(config),
            time.time(),
            max_seconds=config.realtime_token_max_seconds,
        )
    except NotificationError as exc:
        logger.info("connection refused", extra={"connection_id": connection_id, "reason": str(exc)})
        return _refusal(exc, frame=False)
    logger.info("connected", extra={"connection_id": connection_id, "topics": len(connection.topics)})
    return _answer(200)


def disconnect(event: WebsocketEvent) -> dict[str, Any]:
    """Forget a closed connection; a failure is logged, and its items expire with their TTL."""
    connection_id = event.request_context.connection_id
    try:
        close_connection(connection_id, get_connection_store(settings()))
    except NotificationError as exc:
        logger.warning(
            "disconnected connection not removed", extra={"connection_id": connection_id, "reason": str(exc)}
        )
    return _answer(200)


def message(event: WebsocketEvent) -> dict[str, Any]:
    """Answer a frame: ``{"action": "refresh"}`` gets a new token for this connection; ``{"action": "ping"}`` gets
    nothing, and keeps the connection from closing idle (API Gateway closes one after 10 minutes without a frame)."""
    config = settings()
    try:
        action = _action(event.body)
        if action == "ping":
            return _answer(200)
        if action != "refresh":
            raise MalformedRequestError(
                'unknown action: send {"action": "refresh"} to get a new token, {"action": "ping"} to stay connected'
            )
        issued = refresh_token(
            event.request_context.connection_id,
            get_signing_keys(config),
            get_connection_store(config),
            config.realtime_token_seconds,
            time.time(),
        )
    except NotificationError as exc:
        return _refusal(exc, frame=True)
    claims = issued.claims
    lives = claims.expires_at - claims.issued_at
    return _answer(
        200, {"type": "token", "token": issued.token, "expires_at": iso_time(claims.expires_at), "expires_in": lives}
    )


def _action(body: str | None) -> str | None:
    if not body or len(body) > MAX_FRAME_CHARS:
        raise MalformedRequestError('frames are JSON objects such as {"action": "refresh"}')
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: brackets nested too deeply for the parser
        raise MalformedRequestError('frames are JSON objects such as {"action": "refresh"}') from None
    action = data.get("action") if isinstance(data, dict) else None
    return action if isinstance(action, str) else None


def route(event: dict[str, Any]) -> dict[str, Any]:
    """Answer one WebSocket event by its route key."""
    try:
        parsed = WebsocketEvent.model_validate(event)
    except ValidationError:
        logger.error("not an API Gateway WebSocket event")
        return _answer(400, {"message": "not an API Gateway WebSocket event"})
    key = parsed.request_context.route_key
    if key == CONNECT:
        return connect(parsed)
    if key == DISCONNECT:
        return disconnect(parsed)
    return message(parsed)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Entry point of the WebSocket API's function: one route per invocation."""
    settings()
    return route(event)
