"""HTTP edge shared by the API functions: the one place that maps domain errors to status codes, and body parsing."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from pydantic import BaseModel, ValidationError

from core.errors import (
    AuthenticationError,
    ConflictError,
    EnqueueError,
    ForbiddenError,
    InvalidRequestError,
    MalformedRequestError,
    NotFoundError,
    NotificationError,
    PayloadTooLargeError,
    UpstreamError,
)
from core.observability import logger

MAX_BODY_BYTES = 256 * 1024

_STATUS: tuple[tuple[type[NotificationError], int], ...] = (
    (MalformedRequestError, 400),
    (AuthenticationError, 401),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (PayloadTooLargeError, 413),
    (InvalidRequestError, 422),
    (UpstreamError, 502),
)

Model = TypeVar("Model", bound=BaseModel)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    """Return a JSON response."""
    return Response(status_code=status, content_type="application/json", body=json.dumps(body), headers=headers)


def error_response(exc: NotificationError) -> Response[str]:
    """Map a domain error to its status and a ``{"message": …}`` body that names what was wrong."""
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
    message = str(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, UpstreamError):
        message = f"An error occurs while processing the request (Message: {message})"
    if isinstance(exc, EnqueueError):
        headers = {"X-Notification-Id": exc.notification_id, "Location": f"/v1/notifications/{exc.notification_id}"}
    if status >= 500:
        logger.warning("request failed upstream", extra={"error": type(exc).__name__, "status": status})
    return json_response(status, {"message": message}, headers or None)


def create_resolver() -> APIGatewayRestResolver:
    """Return an API Gateway resolver whose errors all come out as ``{"message": …}`` with the right status."""
    app = APIGatewayRestResolver(strip_prefixes=None)

    @app.exception_handler(NotificationError)
    def _domain_error(exc: NotificationError) -> Response[str]:
        return error_response(exc)

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response[str]:
        logger.exception("unhandled error")
        return json_response(500, {"message": "Internal server error"})

    @app.not_found
    def _no_route(exc: Exception) -> Response[str]:
        event = app.current_event
        return json_response(404, {"message": f"no route for {event.http_method} {event.path}"})

    return app


def describe_validation_error(exc: ValidationError) -> tuple[str, str]:
    """Return the field path and the problem of a pydantic error, in words a caller can act on."""
    problems = []
    first_field = ""
    for error in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
        first_field = first_field or location
        problems.append(f"{location or 'body'}: {error['msg']}")
    return first_field, "; ".join(problems)


def raw_body(body: str | None) -> str:
    """Return the request body, refusing one over the size limit."""
    text = body or ""
    if len(text.encode()) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"request body exceeds {MAX_BODY_BYTES // 1024} KiB")
    return text


def parse_body(body: str | None, model: type[Model]) -> Model:
    """Parse a JSON request body into ``model``: 413 over the limit, 400 when not JSON, 422 naming the field."""
    text = raw_body(body)
    try:
        data = json.loads(text) if text.strip() else None
    except json.JSONDecodeError as exc:
        raise MalformedRequestError(f"request body is not valid JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(data, dict):
        raise MalformedRequestError("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        _field, problem = describe_validation_error(exc)
        raise InvalidRequestError("", problem) from exc
