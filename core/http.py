"""HTTP edge shared by the API functions: a small API Gateway router, the one place that maps domain errors to
status codes, and body parsing.

API Gateway (REST, proxy integration) hands every event the resource template it matched, so routing is a lookup by
method and resource; this keeps the handlers' import light (powertools' resolver package costs ~100 ms at cold start).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from importlib import import_module
from itertools import accumulate
from types import MappingProxyType, UnionType
from typing import Annotated, Any, Literal, NamedTuple, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core.core_schema import ErrorType

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
    SnsMessageError,
    UpstreamError,
    field_path,
)
from core.observability import logger, remaining_time
from core.validation import PATTERN_RULES

MAX_BODY_BYTES = 256 * 1024
# json's decoder, pydantic's serializer and the template renderer recurse once per level, so a body a few thousand
# levels deep would overflow them (a 500); bodies are measured without recursion and refused past this depth first.
MAX_JSON_DEPTH = 64
# A string, closed or not: the body and end are possessive and an unclosed string runs to the end of the text, so a
# failed match never rescans the text (no quadratic time on bodies made of quotes and backslashes). This and the other
# patterns of this module are compiled (and cached by ``re``) at their first use: a deep body, a validation error.
_JSON_STRING = r'(?s)"(?:[^"\\]|\\.)*+(?:"|\\?\Z)'
_NOT_BRACKET = r"[^\[\]{}]+"
_NESTING = {"[": 1, "{": 1, "]": -1, "}": -1}
# pydantic puts the tag of a discriminated union into the error location (``integrations.0.email.target``); callers
# know the field as ``integrations[0].target``, so a tag (a channel's type: ``_channel_words``) right after a list
# index is left out...
# ...and so is pydantic's label of the member of a plain union that refused a value (``model.str``,
# ``model.dict[str,any]``). A model member's label is its class name, which could be a field's too: such unions are
# given one message by a validator before them instead (``core.channels.base.json_shape``).
_MEMBER_LABEL = r"(?s)(?:str|int|float|bool|bytes|none|(?:constrained|lax|strict)-\w+|[a-z-]+\[.*\])"
_QUOTED = r"'((?:[^'\\]|\\.)*)'"
# pydantic's own error types; any other was raised by this service's validators, in words already meant for people.
_PYDANTIC_TYPES = frozenset(get_args(ErrorType))
# Credentials' values (``_channel_words``) are never quoted, whatever their length. Other values are quoted back only
# when this short. Problems never hold "; ": it separates one field's from the next.
MAX_ECHO_CHARS = 40
# The kind of value a type error asks for.
_KINDS = {
    "string_type": "a string",
    "bytes_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "int_parsing_size": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "decimal_type": "a number",
    "decimal_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "none_required": "null",
    "dict_type": "a JSON object",
    "mapping_type": "a JSON object",
    "model_type": "a JSON object",
    "model_attributes_type": "a JSON object",
    "dataclass_type": "a JSON object",
    "list_type": "a JSON array",
    "tuple_type": "a JSON array",
    "set_type": "a JSON array",
    "frozen_set_type": "a JSON array",
    "iterable_type": "a JSON array",
    "json_type": "a JSON string",
    "string_unicode": "valid Unicode text",
    "url_type": "a URL string",
    "uuid_type": "a UUID",
    "uuid_parsing": "a UUID",
    "date_type": "a date such as 2024-05-01",
    "date_parsing": "a date such as 2024-05-01",
    "datetime_type": "an ISO 8601 date and time such as 2024-05-01T09:30:00Z",
    "datetime_parsing": "an ISO 8601 date and time such as 2024-05-01T09:30:00Z",
    "datetime_from_date_parsing": "an ISO 8601 date and time such as 2024-05-01T09:30:00Z",
    "date_from_datetime_parsing": "a date such as 2024-05-01",
    "time_delta_type": "a duration",
    "time_delta_parsing": "a duration",
}

_STATUS: tuple[tuple[type[NotificationError], int], ...] = (
    (MalformedRequestError, 400),
    (SnsMessageError, 400),
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


class RouteDoc(NamedTuple):
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
    patterns: Mapping[str, str] = MappingProxyType({})
    summary: str = ""
    operation_id: str = ""


class Response(NamedTuple):
    """An HTTP response, turned into API Gateway's proxy result by ``to_proxy``."""

    status_code: int
    body: str = ""
    headers: Mapping[str, str] = MappingProxyType({})
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


class Identity(NamedTuple):
    """Who called, as API Gateway tells it."""

    api_key: str | None
    api_key_id: str | None
    source_ip: str | None


def caller_id(identity: Identity) -> str:
    """Identify a publisher by its API key id, or by a digest of the key where API Gateway gives no id."""
    if identity.api_key_id:
        return identity.api_key_id
    return hashlib.sha256((identity.api_key or "").encode("utf-8", "surrogatepass")).hexdigest()[:32]


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
        """The body, decoded from base64 when API Gateway encoded it; ``MalformedRequestError`` (400) when it is not
        base64 of UTF-8 text."""
        body = self.raw.get("body")
        if body and self.raw.get("isBase64Encoded"):
            try:
                data = base64.b64decode(body, validate=True)
            except ValueError:  # binascii.Error
                raise MalformedRequestError("body: is not valid base64") from None
            try:
                return data.decode()
            except UnicodeDecodeError:
                raise MalformedRequestError("body: is not UTF-8") from None
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
        self._docs: dict[tuple[str, str], RouteDoc | None] = {}
        # Compiled at the first event that names no known resource, not at each route's registration.
        self._patterns: list[tuple[str, re.Pattern[str], str]] | None = None
        # By deployed resource: the path as documented, and its parameters' names by the deployed ones.
        self._documented: dict[tuple[str, str], str] = {}
        self._names: dict[tuple[str, str], dict[str, str]] = {}
        # Routes another module's router serves (``include``): the module, by deployed resource.
        self._included: dict[tuple[str, str], str] = {}
        self.current_event: Request = Request({})
        # The invocation's Lambda context (None when a test resolves an event without one): its remaining time.
        self.lambda_context: Any = None

    def route(
        self, method: str, path: str, doc: RouteDoc | None = None, *, deployed: str | None = None
    ) -> Callable[[RouteFunction], RouteFunction]:
        """Register a function for a method and a path such as ``/v1/topics/<topic>``, with what its document says.

        ``deployed``: the resource as serverless.yml declares it, when it names a path parameter otherwise. API
        Gateway takes one variable name per level of the path (``/v1/notifications/{channel}`` of the publish routes
        rules out a sibling ``{notification_id}``); the function still gets the parameter under the path's name, and
        the API's document shows the path.
        """
        resource = resource_template(path)
        served = deployed or resource
        names = dict(zip(re.findall(r"\{(\w+)\}", served), re.findall(r"\{(\w+)\}", resource), strict=True))

        def register(function: RouteFunction) -> RouteFunction:
            key = (method.upper(), served)
            self._routes[key] = function
            self._docs[key] = doc
            self._documented[key] = resource
            self._names[key] = names
            self._patterns = None
            return function

        return register

    def get(
        self, path: str, doc: RouteDoc | None = None, *, deployed: str | None = None
    ) -> Callable[[RouteFunction], RouteFunction]:
        """Register a GET route."""
        return self.route("GET", path, doc, deployed=deployed)

    def post(
        self, path: str, doc: RouteDoc | None = None, *, deployed: str | None = None
    ) -> Callable[[RouteFunction], RouteFunction]:
        """Register a POST route."""
        return self.route("POST", path, doc, deployed=deployed)

    def put(
        self, path: str, doc: RouteDoc | None = None, *, deployed: str | None = None
    ) -> Callable[[RouteFunction], RouteFunction]:
        """Register a PUT route."""
        return self.route("PUT", path, doc, deployed=deployed)

    def delete(
        self, path: str, doc: RouteDoc | None = None, *, deployed: str | None = None
    ) -> Callable[[RouteFunction], RouteFunction]:
        """Register a DELETE route."""
        return self.route("DELETE", path, doc, deployed=deployed)

    def include(self, module: str, routes: Iterable[tuple[str, str]]) -> None:
        """Serve ``routes`` (method, resource template as deployed) by the ``router`` of ``module``, imported at the
        first request to one of them: a function loads a feature's models and stores when a request needs them, not
        every feature's at its cold start."""
        for method, resource in routes:
            self._included[(method.upper(), resource)] = module

    @property
    def includes(self) -> dict[tuple[str, str], str]:
        """The module whose router serves each included route, by (method, resource template)."""
        return dict(self._included)

    def _included_router(self, key: tuple[str, str]) -> Router:
        router = import_module(self._included[key]).router
        if not isinstance(router, Router) or key not in router._routes:
            raise LookupError(f"{self._included[key]} serves no {key[0]} {key[1]}")
        return router

    @property
    def routes(self) -> list[tuple[str, str]]:
        """Every (method, resource template) this router serves, in registration order; then those it includes."""
        return [*self._routes, *self._included]

    @property
    def docs(self) -> dict[tuple[str, str], RouteDoc | None]:
        """What the document says of each route, by (method, resource template); the included routes' too (this
        imports their modules)."""
        return {**self._docs, **{key: self._included_router(key)._docs[key] for key in self._included}}

    def function(self, method: str, resource: str) -> RouteFunction:
        """Return the function registered for a method and resource template."""
        key = (method, resource)
        return self._included_router(key).function(*key) if key in self._included else self._routes[key]

    def documented(self, method: str, resource: str) -> str:
        """Return the path a deployed resource template is documented as (the same unless ``deployed`` renamed it)."""
        key = (method, resource)
        return self._included_router(key).documented(*key) if key in self._included else self._documented[key]

    def _named(self, key: tuple[str, str], parameters: Mapping[str, str]) -> dict[str, str]:
        names = self._names[key]
        return {names.get(name, name): value for name, value in parameters.items()}

    def _match(self, request: Request) -> tuple[RouteFunction | None, dict[str, str]]:
        key = (request.http_method, request.resource)
        function = self._routes.get(key)
        if function is not None:
            return function, self._named(key, request.path_parameters)
        # Without a known resource (a greedy proxy route), match the concrete path instead.
        for method, pattern, resource in self._path_patterns():
            found = pattern.match(request.path)
            if method == request.http_method and found:
                return self._routes[(method, resource)], self._named((method, resource), found.groupdict())
        return None, {}

    def _path_patterns(self) -> list[tuple[str, re.Pattern[str], str]]:
        if self._patterns is None:
            self._patterns = []
            for method, served in self._routes:
                pattern = re.escape(served).replace(r"\{", "{").replace(r"\}", "}")
                pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
                self._patterns.append((method, re.compile(f"^{pattern}$"), served))
        return self._patterns

    def _serving(self, request: Request) -> Router:
        """Return the router that serves a request: this one, or the included router of its route (imported now)."""
        key = (request.http_method, request.resource)
        if key in self._included:
            return self._included_router(key)
        if key in self._routes or not self._included:
            return self
        # An unknown resource (a greedy proxy route): the router whose path matches, every included one loaded.
        if self._match(request)[0] is None:
            for key in {module: key for key, module in self._included.items()}.values():
                router = self._included_router(key)
                if router._match(request)[0] is not None:
                    return router
        return self

    def function_place(self) -> tuple[str, str] | None:
        """The AWS partition and account the function runs in (from its invocation's function ARN), ``None`` outside
        Lambda."""
        arn = getattr(self.lambda_context, "invoked_function_arn", None)
        parts = arn.split(":") if isinstance(arn, str) else []
        return (parts[1], parts[4]) if len(parts) > 4 and parts[1] and parts[4] else None

    def time_left(self, margin_seconds: float = 0.0) -> Callable[[], float] | None:
        """Return what tells the seconds left to this invocation less ``margin_seconds``; None without a context."""
        if self.lambda_context is None:
            return None
        return remaining_time(self.lambda_context, margin_seconds)

    def resolve(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """Run the route of an event and return the proxy result; every error becomes ``{"message": …}``."""
        request = Request(event)
        router = self._serving(request)
        if router is not self:
            return router.resolve(event, context)
        self.current_event = request
        self.lambda_context = context
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


class _ChannelWords(NamedTuple):
    """What the translation of validation errors knows of the channels: their types (the tags of the integration
    union), the fields whose values are never quoted, and each request pattern's rule in words."""

    union_tags: tuple[str, ...]
    secret_parts: frozenset[str]
    pattern_rules: Mapping[str, str]


@cache
def _channel_words() -> _ChannelWords:
    """Return the channels' words, read from their registry by the first validation error described."""
    # Not at import: ``core.channels.registry`` loads every channel module, which functions that neither deliver nor
    # administer topics (the token, websocket and Stripe webhook functions) would otherwise load for nothing.
    from core.channels.registry import CHANNELS, CREDENTIAL_FIELDS, PATTERN_RULES

    return _ChannelWords(
        union_tags=tuple(CHANNELS),
        secret_parts=frozenset({"credentials"}.union(*CREDENTIAL_FIELDS.values())),
        pattern_rules=PATTERN_RULES,
    )


def _pattern_rule(pattern: str) -> str:
    """Say in words what a pattern allows: the rule its domain gave it, else the pattern itself."""
    rule = PATTERN_RULES.get(pattern) or _channel_words().pattern_rules.get(pattern)
    return rule or f"must match the pattern {pattern}"


def _number(value: Any) -> str:
    """Write a bound as a person would: ``0`` for ``0.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _either(words: Sequence[str]) -> str:
    """Join choices as ``a``, ``a or b``, ``a, b or c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _choices(expected: Any) -> list[str]:
    """The plain values of pydantic's list of expected values (``'a' or 'b'``, ``<Kind.A: 'a'>``), in its order."""
    quoted = re.findall(_QUOTED, str(expected))
    return quoted or [str(expected)]


def _members(node: Any) -> list[Any]:
    """The types a field's annotation can hold: ``Annotated`` unwrapped, a union split, ``None`` left out."""
    while get_origin(node) is Annotated:
        node = get_args(node)[0]
    if get_origin(node) in (Union, UnionType):
        return [member for arg in get_args(node) for member in _members(arg) if member is not type(None)]
    return [node]


def _is_model(node: Any) -> bool:
    return isinstance(node, type) and issubclass(node, BaseModel)


def _tags(model: type[BaseModel]) -> set[Any]:
    """The values a discriminated union can tell ``model`` by: its ``Literal`` fields' values, and its class name."""
    values: set[Any] = {model.__name__}
    for info in model.model_fields.values():
        if get_origin(info.annotation) is Literal:
            values.update(get_args(info.annotation))
    return values


def _child(node: Any, part: str | int) -> Any:
    """The annotation at ``part`` under ``node`` in a model's schema, or ``None`` when it cannot be told."""
    for member in _members(node):
        if _is_model(member) and isinstance(part, str):
            for name, info in member.model_fields.items():
                if part in (name, info.alias):
                    return info.annotation
            if part in _tags(member):
                return member
        elif isinstance(part, int) and get_origin(member) in (list, tuple, set, frozenset):
            return get_args(member)[0] if get_args(member) else None
        elif isinstance(part, str) and get_origin(member) is dict:
            return get_args(member)[1]
    return None


def _fields_at(model: type[BaseModel] | None, loc: Sequence[str | int]) -> list[str] | None:
    """The fields (as a caller writes them) of the object at ``loc`` of ``model``, or ``None`` when it is not known."""
    node: Any = model
    for part in loc:
        node = _child(node, part)
        if node is None:
            return None
    objects = [member for member in _members(node) if _is_model(member)]
    if len(objects) != 1:
        return None
    return [info.alias or name for name, info in objects[0].model_fields.items()]


class _Failure(NamedTuple):
    """One of pydantic's errors, as the translation reads it; ``value`` decides words (characters or items), it is
    never quoted."""

    ctx: Mapping[str, Any]
    value: Any
    loc: tuple[str | int, ...]
    model: type[BaseModel] | None


def _length(failure: _Failure, at_least: bool) -> str:
    count = failure.ctx["min_length" if at_least else "max_length"]
    bound = "at least" if at_least else "at most"
    if isinstance(failure.value, str | bytes):  # a SecretStr's too_short says "Value … items": it is a string
        return "must not be empty" if at_least and count == 1 else f"must be {bound} {count} characters long"
    return f"must hold {bound} {count} item{'' if count == 1 else 's'}"


def _one_of(expected: Any) -> str:
    choices = _choices(expected)
    return f"must be {choices[0]}" if len(choices) == 1 else f"must be one of: {', '.join(choices)}"


def _unknown_field(failure: _Failure) -> str:
    fields = _fields_at(failure.model, failure.loc[:-1])
    if fields is None:
        return "is not an accepted field"
    return (
        f"is not an accepted field (accepted: {', '.join(fields)})"
        if fields
        else "is not an accepted field (this object takes none)"
    )


def _validator_message(failure: _Failure) -> str:
    """A validator's own words (pydantic's ``Value error, `` left out); never a secret's value, nor a long one."""
    message = " ".join(str(failure.ctx.get("error", "")).split())
    value = failure.value
    secret_parts = _channel_words().secret_parts
    secret = any(part in secret_parts for part in failure.loc if isinstance(part, str))
    if isinstance(value, str) and value and value in message and (secret or len(value) > MAX_ECHO_CHARS):
        return "is not valid"
    return message or "is not valid"


# What is wrong and what is allowed, by pydantic's error type, read from its context; the kinds of value a type error
# asks for are in ``_KINDS``. A pydantic type missing from both gets "is not valid", still naming the field.
_PROBLEMS: dict[str, Callable[[_Failure], str]] = {
    "missing": lambda failure: "is required",
    "extra_forbidden": _unknown_field,
    "string_too_short": lambda failure: _length(failure, at_least=True),
    "too_short": lambda failure: _length(failure, at_least=True),
    "bytes_too_short": lambda failure: _length(failure, at_least=True),
    "string_too_long": lambda failure: _length(failure, at_least=False),
    "too_long": lambda failure: _length(failure, at_least=False),
    "bytes_too_long": lambda failure: _length(failure, at_least=False),
    "url_too_long": lambda failure: _length(failure, at_least=False),
    "string_pattern_mismatch": lambda failure: _pattern_rule(str(failure.ctx.get("pattern"))),
    "timezone_aware": lambda failure: "must carry its UTC offset, such as 2024-05-01T09:30:00Z or +02:00",
    "timezone_naive": lambda failure: "must not carry a UTC offset",
    "datetime_past": lambda failure: "must be in the past",
    "datetime_future": lambda failure: "must be in the future",
    "string_not_ascii": lambda failure: "must hold ASCII characters only",
    "greater_than": lambda failure: f"must be greater than {_number(failure.ctx['gt'])}",
    "greater_than_equal": lambda failure: f"must be {_number(failure.ctx['ge'])} or more",
    "less_than": lambda failure: f"must be less than {_number(failure.ctx['lt'])}",
    "less_than_equal": lambda failure: f"must be {_number(failure.ctx['le'])} or less",
    "multiple_of": lambda failure: f"must be a multiple of {_number(failure.ctx['multiple_of'])}",
    "literal_error": lambda failure: _one_of(failure.ctx.get("expected")),
    "enum": lambda failure: _one_of(failure.ctx.get("expected")),
    "union_tag_invalid": lambda failure: _one_of(failure.ctx.get("expected_tags")),
    "union_tag_not_found": lambda failure: f"is required (one of: {', '.join(_channel_words().union_tags)})",
    "json_invalid": lambda failure: "is not valid JSON",
    "url_parsing": lambda failure: "is not a valid URL",
    "url_syntax_violation": lambda failure: "is not a valid URL",
    "url_scheme": lambda failure: (
        f"must be a URL starting with {_either(_choices(failure.ctx.get('expected_schemes')))}"
    ),
    "value_error": _validator_message,
    "assertion_error": _validator_message,
    "recursion_loop": lambda failure: "is nested too deeply",
    "frozen_field": lambda failure: "cannot be changed",
}


# An unknown key written back in a message: a field name mistyped, shorter than the shortest secret a channel accepts
# (a webhook's signing secret, 16); any other may be a secret.
_NAME_LIKE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,14}")


def _location(loc: Sequence[str | int], error_type: str) -> str:
    """The field as a caller knows it: pydantic's union tags and member labels left out, then ``a[0].b`` written."""
    parts: list[str | int] = []
    words = _channel_words()
    for index, part in enumerate(loc):
        if part == "[key]":
            continue  # pydantic's mark of a dict's key refused: the key before it names the field
        user_key = error_type == "extra_forbidden" and index == len(loc) - 1
        if isinstance(part, str) and not user_key:
            if part.startswith("function-") or re.fullmatch(_MEMBER_LABEL, part):
                continue
            if part in words.union_tags and index > 0 and isinstance(loc[index - 1], int):
                continue
        if isinstance(part, str) and "credentials" in loc[:index] and (user_key or part not in words.secret_parts):
            # A key under credentials that is no credential field's name may be the secret itself, sent where its
            # name belongs (an unknown key, or one holding text that cannot be stored): never written back.
            parts.append("...")
            continue
        if user_key and isinstance(part, str) and not _NAME_LIKE.fullmatch(part):
            # An unknown key that is no field name mistyped may be a secret pasted where its name belongs (a bot
            # token, a Slack URL, a signing secret, on the integration itself): not written back, even in part.
            parts.append("...")
            continue
        parts.append(part)
    return field_path(parts)


def _problem(error: Mapping[str, Any], model: type[BaseModel] | None) -> tuple[str, str | None]:
    """Say what is wrong with a field and what is allowed; with the kind of value it must be when that is the whole
    problem, so that the members of a union that all refused a value are told in one message."""
    kind = error["type"]
    failure = _Failure(error.get("ctx") or {}, error.get("input"), tuple(error["loc"]), model)
    if kind in _KINDS:
        words = _KINDS[kind]
        fields = _fields_at(model, failure.loc) if words == "a JSON object" else None
        return (f"must be {words} (fields: {', '.join(fields)})" if fields else f"must be {words}"), words
    if kind not in _PYDANTIC_TYPES:
        return " ".join(str(error["msg"]).split()), None  # raised by this service's validators, in its words
    return _PROBLEMS.get(kind, lambda failure: "is not valid")(failure), None


def describe_validation_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """Say what is wrong with each field of a pydantic error, for a person: ``<field>: <what is wrong and allowed>``.

    ``model`` is the model validated, when known: an unknown field's message then lists the accepted ones. The words
    are this service's, never pydantic's; they never quote a credential, nor any value longer than a few characters.
    """
    found: dict[str, list[tuple[str, str | None]]] = {}
    for error in exc.errors(include_url=False):
        location = _location(error["loc"], error["type"])
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # pydantic names the union; callers know the field that tells its members apart.
            discriminator = str((error.get("ctx") or {}).get("discriminator", "type")).strip("'")
            location = field_path([discriminator], location)
        problem = _problem(error, model)
        if problem not in found.setdefault(location or "body", []):
            found[location or "body"].append(problem)
    lines = []
    for location, problems in found.items():
        kinds = [kind for _, kind in problems if kind is not None]
        if len(problems) > 1 and len(kinds) == len(problems):
            # Every member of a union refused the value's type: say what it may be, once.
            lines.append(f"{location}: must be {_either(list(dict.fromkeys(kinds)))}")
        else:
            lines.extend(f"{location}: {text}" for text, _ in problems)
    return "; ".join(lines)


IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY_LENGTH = 255


def checked_idempotency_key(key: str | None) -> str | None:
    """Return an ``Idempotency-Key`` header's value (None without one), refusing an empty key or one over 255
    characters: not dropped when empty, or a client whose key came out empty would take its retries for
    deduplicated ones."""
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidRequestError(IDEMPOTENCY_KEY_HEADER, f"must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters")
    return key


def raw_body(body: str | None) -> str:
    """Return the request body, refusing one over the size limit."""
    text = body or ""
    # surrogatepass: a lone surrogate (a JSON escape could make one too) is the models' to refuse, not an error here.
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"request body exceeds {MAX_BODY_BYTES // 1024} KiB")
    return text


def nested_too_deeply(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON text nests arrays and objects more than ``limit`` levels deep, measured without recursion.

    Brackets inside strings do not count. For a text that is not JSON the answer is an over-estimate, never an
    under-estimate of how deep a parser would go before it fails.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = re.sub(_NOT_BRACKET, "", re.sub(_JSON_STRING, "", text))
    return max(accumulate(_NESTING[char] for char in brackets), default=0) > limit


class NotJsonNumberError(ValueError):
    """A number Python's JSON parser takes but JSON has not: NaN, Infinity, or one past a float's range."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotJsonNumberError(f"the number {text[:40]} is beyond a floating-point number's range")
    return value


def _no_constant(text: str) -> Any:
    raise NotJsonNumberError(f"{text} is not a JSON number")


def load_json(text: str) -> Any:
    """``json.loads``, refusing what Python's parser takes and JSON has not (NaN, Infinity, a number past a float's
    range): each would reach a delivery as ``null``. Raises ``ValueError``: ``json.JSONDecodeError``,
    ``NotJsonNumberError``, or a whole number longer than Python's digit limit."""
    return json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)


def parse_body(body: str | None, model: type[Model]) -> Model:
    """Parse a JSON request body into ``model``: 413 over the limit, 400 not JSON (NaN and Infinity are not), too deep
    or a number too long to read, 422 naming the field."""
    text = raw_body(body)
    if nested_too_deeply(text):
        raise MalformedRequestError("the body is nested too deeply")
    try:
        data = load_json(text) if text.strip() else None
    except json.JSONDecodeError as exc:
        raise MalformedRequestError(f"request body is not valid JSON: {exc.msg} at position {exc.pos}") from exc
    except NotJsonNumberError as exc:
        raise MalformedRequestError(f"request body is not valid JSON: {exc}") from None
    except ValueError:  # valid JSON, but a whole number longer than Python's limit on converting digits
        limit = sys.get_int_max_str_digits()
        raise MalformedRequestError(
            f"request body holds a number of more than {limit} digits; a number may have at most {limit}"
        ) from None
    if not isinstance(data, dict):
        raise MalformedRequestError("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Dropped, not chained: pydantic's error text quotes the input, credentials included.
        raise InvalidRequestError("", describe_validation_error(exc, model)) from None
