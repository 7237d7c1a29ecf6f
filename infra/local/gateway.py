"""The local API Gateway (REST, Lambda proxy): routes from the http events, API keys, Lambda authorizers.

Refuses as API Gateway does where the service relies on it, with the definition's gateway responses (API Gateway's own
answers where it has none): ``INVALID_API_KEY`` without a valid API key on a private route, ``UNAUTHORIZED`` /
``ACCESS_DENIED`` from the authorizer, ``MISSING_AUTHENTICATION_TOKEN`` for an unknown route or method; ``502`` when the
function fails, ``504`` past the 29 s integration timeout. Every request is one line of the log, refused ones included.
Until ``set_serving()`` every request is answered ``503``, the stack still starting; until ``set_ready()`` the health
route still is (the stack's own requests, its seed, come in between).
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from infra.local.definition import Authorizer, FunctionSpec, GatewayResponse, HttpEvent
from infra.local.logs import printable
from infra.local.workers import Invocation

INTEGRATION_TIMEOUT_SECONDS = 29.0
_PARAM = re.compile(r"\{([^}]+)\}")
_CONTEXT_VARIABLE = re.compile(r"\$context\.([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)")
# The service's health route: before the stack is ready it answers {"status": "starting"}.
HEALTH_PATH = "/v1/health"
STARTING_MESSAGE = "The local stack is starting; try again in a few seconds"
# API Gateway's status code of each gateway response type the local gateway plays, when the definition sets none.
DEFAULT_STATUS = {
    "MISSING_AUTHENTICATION_TOKEN": 403,
    "INVALID_API_KEY": 403,
    "UNAUTHORIZED": 401,
    "ACCESS_DENIED": 403,
    "THROTTLED": 429,
    "QUOTA_EXCEEDED": 429,
    "AUTHORIZER_CONFIGURATION_ERROR": 500,
    "AUTHORIZER_FAILURE": 500,
}

Answer = tuple[int, dict[str, list[str]], bytes]
# The names the stack's own pages answer under, with any port.
_LOOPBACK_HOST = re.compile(r"(?:127\.0\.0\.1|localhost|\[::1\])(?::[0-9]{1,5})?", re.IGNORECASE)


class Pool(Protocol):
    """What the gateway needs of a function's pool of workers (``infra.local.workers.FunctionPool``)."""

    @property
    def spec(self) -> FunctionSpec:
        """The function as deployed."""
        ...

    def invoke(self, event: Any, timeout: float | None = None) -> Invocation:
        """Invoke the function with ``event``; failures come back as ``error``."""
        ...


@dataclass(frozen=True)
class Route:
    """A compiled http event."""

    event: HttpEvent
    pattern: re.Pattern[str]
    literal_segments: int
    greedy: bool

    @classmethod
    def compile(cls, event: HttpEvent) -> Route:
        """Compile a path template (``/v1/x/{id}``, ``/files/{proxy+}``) into a matcher."""
        parts = []
        literal = 0
        greedy = False
        for segment in event.path.strip("/").split("/") if event.path.strip("/") else []:
            match = _PARAM.fullmatch(segment)
            if match and match.group(1).endswith("+"):
                parts.append(f"(?P<{_group(match.group(1)[:-1])}>.+)")
                greedy = True
            elif match:
                parts.append(f"(?P<{_group(match.group(1))}>[^/]+)")
            else:
                parts.append(re.escape(segment))
                literal += 1
        return cls(event, re.compile("^/" + "/".join(parts) + "/?$"), literal, greedy)

    def names(self) -> dict[str, str]:
        """Map the regex group names back to the template's parameter names."""
        return {_group(name.rstrip("+")): name.rstrip("+") for name in _PARAM.findall(self.event.path)}


def _group(name: str) -> str:
    return "p_" + re.sub(r"\W", "_", name)


class RouteTable:
    """Finds the route of a request: literal segments win over parameters, greedy parameters come last."""

    def __init__(self, events: list[HttpEvent]) -> None:
        routes = [Route.compile(event) for event in events]
        self.routes = sorted(routes, key=lambda route: (route.greedy, -route.literal_segments))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """Return the route and its path parameters, or ``None`` (API Gateway's "Missing Authentication Token").

        ``path`` is the path as sent (percent-encoded). As API Gateway does, the resource is chosen first, then its
        method: a method the resource lacks is refused, never handed to a parameter sibling that has it
        (``PUT /v1/segments/count`` is not ``PUT /v1/segments/{name}``). Parameters are decoded once, ``%2F`` left
        encoded: a parameter never holds a ``/`` that would have split its segment.
        """
        matching = [(route, found) for route in self.routes if (found := route.pattern.match(path))]
        if not matching:
            return None
        resource = matching[0][0].event.path
        for route, found in matching:
            if route.event.path == resource and route.event.method in {method, "ANY"}:
                names = route.names()
                return route, {names[key]: _decoded(value) for key, value in found.groupdict().items()}
        return None


def _decoded(segment: str) -> str:
    """Decode a path parameter once, as API Gateway does, keeping ``%2F`` (an encoded ``/``) as sent."""
    return "%2F".join(unquote(part) for part in re.split("%2[Ff]", segment))


def policy_allows(policy: dict[str, Any], method_arn: str) -> bool | None:
    """Evaluate an IAM policy of an authorizer for ``method_arn``: True allowed, False denied, None not covered."""
    allowed = False
    statements = policy.get("Statement") or []
    for statement in statements if isinstance(statements, list) else [statements]:
        resources = statement.get("Resource") or []
        resources = resources if isinstance(resources, list) else [resources]
        actions = statement.get("Action") or []
        actions = actions if isinstance(actions, list) else [actions]
        if not any(fnmatch.fnmatchcase("execute-api:Invoke", action) for action in actions):
            continue
        if any(fnmatch.fnmatchcase(method_arn, resource) for resource in resources):
            if statement.get("Effect") == "Deny":
                return False
            if statement.get("Effect") == "Allow":
                allowed = True
    return True if allowed else None


def _json(status: int, body: dict[str, Any]) -> Answer:
    return status, {"Content-Type": ["application/json"]}, json.dumps(body).encode()


@dataclass(frozen=True)
class Refusal:
    """A request API Gateway answers itself: the gateway response type, API Gateway's message, and why (for the log)."""

    type: str
    message: str | None
    reason: str


def render_template(template: str, variables: Mapping[str, str | None]) -> str:
    """Put the ``$context.…`` values into a gateway response template; an unknown variable renders empty.

    Values are JSON-escaped (API Gateway inserts them as they are) so that a caller's path never breaks the JSON;
    ``$context.error.messageString`` is the message as a JSON string, quotes included, as API Gateway renders it.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "error.messageString":
            return json.dumps(variables.get("error.message"))
        found = variables.get(name)
        return "" if found is None else json.dumps(str(found))[1:-1]

    return _CONTEXT_VARIABLE.sub(value, template)


def gateway_answer(
    refusal: Refusal, responses: Mapping[str, GatewayResponse], variables: Mapping[str, str | None]
) -> Answer:
    """Answer a refusal with its gateway response, else the DEFAULT_4XX/5XX one, else API Gateway's own answer."""
    default_status = DEFAULT_STATUS.get(refusal.type, 500)
    own = responses.get(refusal.type)
    fallback = responses.get("DEFAULT_4XX" if default_status < 500 else "DEFAULT_5XX")
    status = (own.status_code if own else None) or (fallback.status_code if fallback else None) or default_status
    chosen = own if own is not None and own.templates else fallback
    first = own if own is not None else fallback
    headers = {name: [value] for name, value in (first.headers if first is not None else {}).items()}
    if chosen is None or not chosen.templates:
        # API Gateway's own bodies; its authorizer denials spell the key with a capital M.
        key = "Message" if refusal.type == "ACCESS_DENIED" else "message"
        return status, {**headers, "Content-Type": ["application/json"]}, json.dumps({key: refusal.message}).encode()
    content_type = "application/json" if "application/json" in chosen.templates else next(iter(chosen.templates))
    variables = {**variables, "error.message": refusal.message, "error.responseType": refusal.type}
    body = render_template(chosen.templates[content_type], variables)
    return status, {**headers, "Content-Type": [content_type]}, body.encode()


def _identity_names(authorizer: Authorizer) -> str:
    """Name the identity sources of an authorizer for a person: ``Authorization header``."""
    names = []
    for raw in authorizer.identity_source.split(","):
        source = raw.strip()
        names.append(f"{source.rsplit('.', 1)[-1]} {'header' if '.header.' in source else 'query parameter'}")
    return " and ".join(names)


@dataclass
class _Cached:
    expires: float
    allowed_policy: dict[str, Any]
    principal: Any
    context: dict[str, Any]


class Gateway:
    """Turns HTTP requests into API Gateway proxy events, runs keys and authorizers, and invokes the functions."""

    def __init__(
        self,
        events: list[HttpEvent],
        pools: Mapping[str, Pool],
        api_keys: Callable[[], dict[str, str]],
        stage: str,
        region: str,
        account: str,
        log: Callable[[str], None],
        responses: Mapping[str, GatewayResponse] | None = None,
        ready: bool = False,
    ) -> None:
        self.table = RouteTable(events)
        self.responses: Mapping[str, GatewayResponse] = responses or {}
        # Until ``serving`` every request gets 503; until ``ready`` (the demo topic seeded too) the health route still
        # does, so that a script waiting for health finds everything the banner announces.
        self.serving = threading.Event()
        self.ready = threading.Event()
        if ready:
            self.set_ready()
        self._pools = pools
        self._api_keys = api_keys
        self._stage = stage
        self._region = region
        self._account = account
        self._api_id = "local"
        self._say = log
        self._cache: dict[tuple[str, str], _Cached] = {}
        self._lock = threading.Lock()
        # Pages the stack serves itself, by path prefix: called with the path, the query and the method.
        self.local_routes: dict[str, Callable[[str, dict[str, str], str], Answer]] = {}

    def set_serving(self) -> None:
        """Serve the routes (the functions and resources are up), the health route still answering ``starting``."""
        self.serving.set()

    def set_ready(self) -> None:
        """Serve everything, health included: the stack is up and seeded."""
        self.serving.set()
        self.ready.set()

    def method_arn(self, method: str, path: str) -> str:
        """Return the ``methodArn`` an authorizer receives."""
        return f"arn:aws:execute-api:{self._region}:{self._account}:{self._api_id}/{self._stage}/{method}{path}"

    def handle(self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes, source_ip: str) -> Answer:
        """Answer one request."""
        split = urlsplit(raw_path)
        path = unquote(split.path) or "/"
        if not self.ready.is_set() and (path == HEALTH_PATH or not self.serving.is_set()):
            return self._starting(method, path)
        for prefix, local in self.local_routes.items():
            if path == prefix.rstrip("/") or path.startswith(prefix):
                return self._local(local, method, path, split.query, headers)
        # $context.path is the path as the caller sent it: on AWS it starts with the stage, which local URLs have not.
        variables = {"httpMethod": method, "path": split.path or "/", "stage": self._stage}
        found = self.table.match(method, split.path or "/")
        if found is None:
            if method == "GET" and path == "/":
                return 302, {"Location": ["/_local/"]}, b""
            refusal = Refusal("MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token", "no such route")
            return self._refuse(method, path, refusal, variables)
        route, params = found
        started = time.monotonic()
        event = self._event(route, params, method, path, split.query, headers, body, source_ip)
        variables.update(resourcePath=route.event.path, requestId=event["requestContext"]["requestId"])
        lowered = {name.lower(): value for name, value in headers}
        if route.event.authorizer is not None:
            denied = self._authorize(route.event.authorizer, event, lowered, method, path)
            if denied is not None:
                return self._refuse(method, path, denied, variables)
        if route.event.private:
            key = lowered.get("x-api-key", "")
            key_id = self._api_keys().get(key) if key else None
            if key_id is None:
                reason = "x-api-key is not a key of this stage" if key else "no x-api-key header"
                return self._refuse(method, path, Refusal("INVALID_API_KEY", "Forbidden", reason), variables)
            event["requestContext"]["identity"].update({"apiKey": key, "apiKeyId": key_id})
        outcome = self._pools[route.event.function].invoke(
            event, min(INTEGRATION_TIMEOUT_SECONDS, self._pools[route.event.function].spec.timeout)
        )
        response = self._response(outcome)
        took = (time.monotonic() - started) * 1000
        note = f" {outcome.error['errorType']}: {outcome.error['errorMessage']}" if outcome.error else ""
        self._log(f"{method} {path} → {response[0]} ({route.event.function}, {took:.0f} ms){note}")
        return response

    def _local(
        self,
        local: Callable[[str, dict[str, str], str], Answer],
        method: str,
        path: str,
        query: str,
        headers: list[tuple[str, str]],
    ) -> Answer:
        """Answer a page of the stack's own: only under a loopback name (a page of another site that rebinds its name
        to 127.0.0.1 would be same-origin with it, and read its redrive token), and a request that changes something
        only from the stack's own pages (no other site's form or fetch); an error is a 500 with a message, never a
        dropped connection."""
        lowered = {name.lower(): value for name, value in headers}
        host = lowered.get("host", "")
        if not _LOOPBACK_HOST.fullmatch(host):
            return _json(403, {"message": "the local pages answer at 127.0.0.1 or localhost only"})
        origin = lowered.get("origin")
        if method not in ("GET", "HEAD") and origin is not None and origin != f"http://{host}":
            return _json(403, {"message": "the local pages take requests from their own pages only"})
        try:
            return local(path, dict(parse_qsl(query)), method)
        except Exception as exc:
            self._log(f"{method} {path} → 500 the local page failed: {type(exc).__name__}")
            return _json(500, {"message": f"the local page failed ({type(exc).__name__}): see the stack's output"})

    def _log(self, line: str) -> None:
        """Write one line about a request, whatever its path or an error's text holds."""
        self._say(printable(line))

    def _refuse(self, method: str, path: str, refusal: Refusal, variables: Mapping[str, str | None]) -> Answer:
        answer = gateway_answer(refusal, self.responses, variables)
        self._log(f"{method} {path} → {answer[0]} {refusal.type}: {refusal.reason}")
        return answer

    def _starting(self, method: str, path: str) -> Answer:
        status, headers, payload = _json(
            503, {"status": "starting"} if path == HEALTH_PATH else {"message": STARTING_MESSAGE}
        )
        self._log(f"{method} {path} → 503 starting: the local stack is not ready yet")
        return status, {**headers, "Retry-After": ["1"]}, payload

    def _event(
        self,
        route: Route,
        params: dict[str, str],
        method: str,
        path: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
    ) -> dict[str, Any]:
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for name, value in headers:
            single[name] = value
            multi.setdefault(name, []).append(value)
        pairs = parse_qsl(query, keep_blank_values=True)
        query_single = dict(pairs)
        query_multi: dict[str, list[str]] = {}
        for name, value in pairs:
            query_multi.setdefault(name, []).append(value)
        try:
            text: str | None = body.decode("utf-8") if body else None
            encoded = False
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode(), True
        now = datetime.now(UTC)
        agent = next((value for name, value in headers if name.lower() == "user-agent"), None)
        return {
            "resource": route.event.path,
            "path": path,
            "httpMethod": method,
            "headers": single or None,
            "multiValueHeaders": multi or None,
            "queryStringParameters": query_single or None,
            "multiValueQueryStringParameters": query_multi or None,
            "pathParameters": params or None,
            "stageVariables": None,
            "requestContext": {
                "accountId": self._account,
                "apiId": self._api_id,
                "domainName": single.get("Host") or single.get("host") or "127.0.0.1",
                "domainPrefix": self._api_id,
                "extendedRequestId": uuid.uuid4().hex[:16],
                "httpMethod": method,
                "identity": {
                    "accessKey": None,
                    "accountId": None,
                    "apiKey": None,
                    "apiKeyId": None,
                    "caller": None,
                    "cognitoAuthenticationProvider": None,
                    "cognitoAuthenticationType": None,
                    "cognitoIdentityId": None,
                    "cognitoIdentityPoolId": None,
                    "principalOrgId": None,
                    "sourceIp": source_ip,
                    "user": None,
                    "userAgent": agent,
                    "userArn": None,
                },
                "path": f"/{self._stage}{path}",
                "protocol": "HTTP/1.1",
                "requestId": str(uuid.uuid4()),
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "requestTimeEpoch": int(now.timestamp() * 1000),
                "resourceId": uuid.uuid4().hex[:6],
                "resourcePath": route.event.path,
                "stage": self._stage,
            },
            "body": text,
            "isBase64Encoded": encoded,
        }

    def _identity(self, authorizer: Authorizer, event: dict[str, Any], headers: dict[str, str]) -> str | None:
        values = []
        for raw in authorizer.identity_source.split(","):
            source = raw.strip()
            if source.startswith("method.request.header."):
                values.append(headers.get(source.rsplit(".", 1)[-1].lower()))
            elif source.startswith("method.request.querystring."):
                values.append((event["queryStringParameters"] or {}).get(source.rsplit(".", 1)[-1]))
        if not values or any(not value for value in values):
            return None
        return ",".join(str(value) for value in values)

    def _authorize(
        self, authorizer: Authorizer, event: dict[str, Any], headers: dict[str, str], method: str, path: str
    ) -> Refusal | None:
        identity = self._identity(authorizer, event, headers)
        if identity is None:
            return Refusal("UNAUTHORIZED", "Unauthorized", f"no {_identity_names(authorizer)}")
        if authorizer.validation_expression and not re.fullmatch(authorizer.validation_expression, identity):
            reason = f"the {_identity_names(authorizer)} does not match the authorizer's identityValidationExpression"
            return Refusal("UNAUTHORIZED", "Unauthorized", reason)
        arn = self.method_arn(method, path)
        key = (authorizer.function, identity)
        with self._lock:
            cached = self._cache.get(key)
        if cached is None or cached.expires < time.monotonic():
            if authorizer.type == "token":
                request: dict[str, Any] = {"type": "TOKEN", "authorizationToken": identity, "methodArn": arn}
            else:
                request = {**event, "type": "REQUEST", "methodArn": arn}
            outcome = self._pools[authorizer.function].invoke(request)
            if outcome.error is not None:
                if outcome.error.get("errorMessage") == "Unauthorized":
                    return Refusal("UNAUTHORIZED", "Unauthorized", f"authorizer {authorizer.function}: Unauthorized")
                failure = f"authorizer {authorizer.function} failed: {outcome.error.get('errorMessage')}"
                return Refusal("AUTHORIZER_CONFIGURATION_ERROR", None, failure)
            result = outcome.result or {}
            cached = _Cached(
                time.monotonic() + authorizer.ttl_seconds,
                result.get("policyDocument") or {},
                result.get("principalId"),
                result.get("context") or {},
            )
            if authorizer.ttl_seconds > 0:
                with self._lock:
                    self._cache[key] = cached
        verdict = policy_allows(cached.allowed_policy, arn)
        if verdict is False:
            message = "User is not authorized to access this resource with an explicit deny"
            return Refusal("ACCESS_DENIED", message, f"authorizer {authorizer.function} denied the token")
        if verdict is None:
            reason = f"authorizer {authorizer.function}'s policy does not allow this route"
            return Refusal("ACCESS_DENIED", "User is not authorized to access this resource", reason)
        event["requestContext"]["authorizer"] = {
            "principalId": cached.principal,
            **{
                name: value if isinstance(value, str | int | float | bool) else str(value)
                for name, value in cached.context.items()
            },
        }
        return None

    def _response(self, outcome: Invocation) -> Answer:
        if outcome.error is not None:
            if outcome.error.get("errorType") == "Sandbox.Timedout":
                return _json(504, {"message": "Endpoint request timed out"})
            return _json(502, {"message": "Internal server error"})
        result = outcome.result
        if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
            return _json(502, {"message": "Internal server error"})
        headers: dict[str, list[str]] = {}
        for name, value in (result.get("headers") or {}).items():
            headers[name] = [str(value)]
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name] = [str(value) for value in values]
        body = result.get("body") or ""
        raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
        return int(result["statusCode"]), headers, raw


# API Gateway's payload limit: a larger request is answered 413 before any function runs.
MAX_BODY_BYTES = 10 * 2**20
_CHUNK_LINE_BYTES = 1024


class GatewayServer(ThreadingHTTPServer):
    """The HTTP server of the local API Gateway."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], gateway: Gateway) -> None:
        self.gateway = gateway
        super().__init__(address, _GatewayHandler)


class _GatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: GatewayServer

    def _body(self) -> bytes | tuple[int, str]:
        """Read the request's body as its framing says (a length, or chunks); or the refusal to answer, when the
        framing is broken or the body beyond API Gateway's payload limit (the connection is then closed: what is
        left of the request on it is no next request)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = bytearray()
            while True:
                size_line = self.rfile.readline(_CHUNK_LINE_BYTES).split(b";")[0].strip()
                if not re.fullmatch(rb"[0-9A-Fa-f]{1,8}", size_line):
                    return 400, "Transfer-Encoding: a chunk's size is not a hexadecimal number"
                size = int(size_line, 16)
                if len(body) + size > MAX_BODY_BYTES:
                    return 413, "Request Too Long"
                if size == 0:
                    while self.rfile.readline(_CHUNK_LINE_BYTES).strip():  # trailers, up to the blank line
                        pass
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline(_CHUNK_LINE_BYTES)  # the CRLF after the chunk
        declared = self.headers.get("Content-Length") or "0"
        if not re.fullmatch(r"[0-9]+", declared.strip()):  # isdigit() takes "²", which int() refuses
            return 400, "Content-Length: is not a number"
        length = int(declared)
        if length > MAX_BODY_BYTES:
            return 413, "Request Too Long"
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        body = self._body()
        if isinstance(body, tuple):
            status, message = body
            self.close_connection = True
            self._answer(status, {"Content-Type": ["application/json"]}, json.dumps({"message": message}).encode())
            return
        status, headers, payload = self.server.gateway.handle(
            self.command, self.path, list(self.headers.items()), body, self.client_address[0]
        )
        self._answer(status, headers, payload)

    def _answer(self, status: int, headers: Mapping[str, list[str]], payload: bytes) -> None:
        self.send_response(status)
        for name, values in headers.items():
            if name.lower() in {"content-length", "connection", "transfer-encoding"}:
                continue
            for value in values:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, CONNECT, one made up) is the gateway's to refuse, in its words, as API Gateway does:
        # http.server answered it 501 with an HTML page.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are logged by the gateway, one line each."""
