"""HTTP edge shared by the API functions: a small API Gateway router, the one place that maps domain errors to
status codes, and body parsing.

API Gateway (REST, proxy integration) hands every event the resource template it matched, so routing is a lookup by
method and resource; this keeps the handlers' import light (powertools' resolver package costs ~100 ms at cold start).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

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
from core.models import IntegrationType, PublishRequest, PublishResponse
from core.observability import logger

MAX_BODY_BYTES = 256 * 1024
# json's decoder, pydantic's serializer and the template renderer recurse once per level, so a body a few thousand
# levels deep would overflow them (a 500); bodies are measured without recursion and refused past this depth first.
MAX_JSON_DEPTH = 64
# A string, closed or not: the body and end are possessive and an unclosed string runs to the end of the text, so a
# failed match never rescans the text (no quadratic time on bodies made of quotes and backslashes).
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_NESTING = {"[": 1, "{": 1, "]": -1, "}": -1}
# pydantic puts the tag of a discriminated union into the error location (``integrations.0.email.target``); callers
# know the field as ``integrations.0.target``, so a tag right after a list index is left out.
_UNION_TAGS = tuple(kind.value for kind in IntegrationType)

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
RouteFunction = Callable[..., "Response"]
Security = Literal["api_key", "admin"]


class ErrorResponse(BaseModel):
    """Body of every error: what was wrong, in words."""

    model_config = ConfigDict(defer_build=True)

    message: str


@dataclass(frozen=True)
class RouteDoc:
    """What the OpenAPI document says of a route: its models per status, the errors it can answer, who may call it.

    ``responses`` maps a success status to its body's model (``None``: no body); ``errors`` are the statuses it can
    answer with an ``ErrorResponse``; ``security`` is ``None`` for a route that needs no key.
    """

    responses: Mapping[int, type[BaseModel] | None]
    errors: tuple[int, ...] = ()
    security: Security | None = None
    request: type[BaseModel] | None = None
    request_required: bool = True
    query: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    patterns: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""
    operation_id: str = ""


@dataclass(frozen=True)
class Response:
    """An HTTP response, turned into API Gateway's proxy result by ``to_proxy``."""

    status_code: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def to_proxy(self) -> dict[str, Any]:
        """Return the Lambda proxy integration result."""
        headers = {"Content-Type": self.content_type, **self.headers}
        return {"statusCode": self.status_code, "headers": headers, "body": self.body, "isBase64Encoded": False}


class Headers(dict[str, str]):
    """Request headers looked up without regard to case, as HTTP means them."""

    def __init__(self, raw: Mapping[str, str] | None) -> None:
        super().__init__({key.lower(): value for key, value in (raw or {}).items()})

    def get(self, key: str, default: Any = None) -> Any:
        """Return a header's value by case-insensitive name."""
        return super().get(key.lower(), default)


@dataclass(frozen=True)
class Identity:
    """Who called, as API Gateway tells it."""

    api_key: str | None
    api_key_id: str | None
    source_ip: str | None


def caller_id(identity: Identity) -> str:
    """Identify a publisher by its API key id, or by a digest of the key where API Gateway gives no id."""
    if identity.api_key_id:
        return identity.api_key_id
    return hashlib.sha256((identity.api_key or "").encode()).hexdigest()[:32]


class Request:
    """An API Gateway REST proxy event, read through properties."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.raw = event
        self.http_method: str = str(event.get("httpMethod", "")).upper()
        self.resource: str = str(event.get("resource", ""))
        self.path: str = str(event.get("path", ""))
        self.headers = Headers(event.get("headers"))
        self.path_parameters: dict[str, str] = dict(event.get("pathParameters") or {})
        self.query_string_parameters: dict[str, str] = dict(event.get("queryStringParameters") or {})
        context = event.get("requestContext") or {}
        identity = context.get("identity") or {}
        self.identity = Identity(identity.get("apiKey"), identity.get("apiKeyId"), identity.get("sourceIp"))
        self.authorizer: dict[str, Any] = dict(context.get("authorizer") or {})

    @property
    def decoded_body(self) -> str | None:
        """The body, decoded from base64 when API Gateway encoded it."""
        body = self.raw.get("body")
        if body and self.raw.get("isBase64Encoded"):
            return base64.b64decode(body).decode()
        return body


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """Return a JSON response."""
    return Response(status_code=status, body=json.dumps(body), headers=headers or {})


def error_response(exc: NotificationError) -> Response:
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
    return json_response(status, {"message": message}, headers)


def resource_template(path: str) -> str:
    """Turn ``/v1/x/<name>`` into API Gateway's ``/v1/x/{name}``."""
    return re.sub(r"<(\w+)>", r"{\1}", path)


class Router:
    """Routes API Gateway proxy events to functions by method and resource template.

    Route functions take the path parameters as keyword arguments and read the request from ``current_event``.
    """

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], RouteFunction] = {}
        self.docs: dict[tuple[str, str], RouteDoc | None] = {}
        self._patterns: list[tuple[str, re.Pattern[str], str]] = []
        self.current_event: Request = Request({})

    def route(self, method: str, path: str, doc: RouteDoc | None = None) -> Callable[[RouteFunction], RouteFunction]:
        """Register a function for a method and a path such as ``/v1/topics/<topic>``, with what its document says."""
        resource = resource_template(path)

        def register(function: RouteFunction) -> RouteFunction:
            self._routes[(method.upper(), resource)] = function
            self.docs[(method.upper(), resource)] = doc
            pattern = re.escape(resource).replace(r"\{", "{").replace(r"\}", "}")
            pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
            self._patterns.append((method.upper(), re.compile(f"^{pattern}$"), resource))
            return function

        return register

    def get(self, path: str, doc: RouteDoc | None = None) -> Callable[[RouteFunction], RouteFunction]:
        """Register a GET route."""
        return self.route("GET", path, doc)

    def post(self, path: str, doc: RouteDoc | None = None) -> Callable[[RouteFunction], RouteFunction]:
        """Register a POST route."""
        return self.route("POST", path, doc)

    def put(self, path: str, doc: RouteDoc | None = None) -> Callable[[RouteFunction], RouteFunction]:
        """Register a PUT route."""
        return self.route("PUT", path, doc)

    def delete(self, path: str, doc: RouteDoc | None = None) -> Callable[[RouteFunction], RouteFunction]:
        """Register a DELETE route."""
        return self.route("DELETE", path, doc)

    @property
    def routes(self) -> list[tuple[str, str]]:
        """Every (method, resource template) this router serves, in registration order."""
        return list(self._routes)

    def function(self, method: str, resource: str) -> RouteFunction:
        """Return the function registered for a method and resource template."""
        return self._routes[(method, resource)]

    def _match(self, request: Request) -> tuple[RouteFunction | None, dict[str, str]]:
        function = self._routes.get((request.http_method, request.resource))
        if function is not None:
            return function, request.path_parameters
        # Without a known resource (a greedy proxy route), match the concrete path instead.
        for method, pattern, resource in self._patterns:
            found = pattern.match(request.path)
            if method == request.http_method and found:
                return self._routes[(method, resource)], found.groupdict()
        return None, {}

    def resolve(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """Run the route of an event and return the proxy result; every error becomes ``{"message": …}``."""
        request = Request(event)
        self.current_event = request
        function, parameters = self._match(request)
        if function is None:
            return json_response(404, {"message": f"no route for {request.http_method} {request.path}"}).to_proxy()
        try:
            response = function(**parameters)
        except NotificationError as exc:
            response = error_response(exc)
        except Exception:
            logger.exception("unhandled error")
            response = json_response(500, {"message": "Internal server error"})
        return response.to_proxy()


def describe_validation_error(exc: ValidationError) -> str:
    """Return what is wrong with each field of a pydantic error, in words a caller can act on."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        location = ".".join(
            str(part)
            for index, part in enumerate(loc)
            if not str(part).startswith("function-")
            and not (part in _UNION_TAGS and index > 0 and isinstance(loc[index - 1], int))
        )
        problem = error["msg"]
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # pydantic's own text lists enum reprs; name the discriminator field and its plain values instead.
            discriminator = str(error.get("ctx", {}).get("discriminator", "type")).strip("'")
            location = f"{location}.{discriminator}" if location else discriminator
            problem = f"must be one of: {', '.join(_UNION_TAGS)}"
        problems.append(f"{location or 'body'}: {problem}")
    return "; ".join(problems)


def raw_body(body: str | None) -> str:
    """Return the request body, refusing one over the size limit."""
    text = body or ""
    if len(text.encode()) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"request body exceeds {MAX_BODY_BYTES // 1024} KiB")
    return text


def nested_too_deeply(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON text nests arrays and objects more than ``limit`` levels deep, measured without recursion.

    Brackets inside strings do not count. For a text that is not JSON the answer is an over-estimate, never an
    under-estimate of how deep a parser would go before it fails.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(_NESTING[char] for char in brackets), default=0) > limit


def parse_body(body: str | None, model: type[Model]) -> Model:
    """Parse a JSON request body into ``model``: 413 over the limit, 400 not JSON or too deep, 422 naming the field."""
    text = raw_body(body)
    if nested_too_deeply(text):
        raise MalformedRequestError("the body is nested too deeply")
    try:
        data = json.loads(text) if text.strip() else None
    except json.JSONDecodeError as exc:
        raise MalformedRequestError(f"request body is not valid JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(data, dict):
        raise MalformedRequestError("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError("", describe_validation_error(exc)) from exc


# The publish route is served by the publish function and described by the management API's OpenAPI document; its
# declaration lives here so that neither function imports the other.
PUBLISH_PATH = "/v1/notifications/<channel>/<topic>"
PUBLISH_DOC = RouteDoc(
    {200: PublishResponse},
    errors=(400, 403, 404, 409, 413, 422, 502),
    security="api_key",
    request=PublishRequest,
    headers=("x-topic-hash-x", "Idempotency-Key"),
    summary="Fan a notification out to the topic's integrations.",
    operation_id="publish_notification",
)
