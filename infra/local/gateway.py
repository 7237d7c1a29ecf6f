"""The local API Gateway (REST, Lambda proxy): routes from the http events, API keys, Lambda authorizers.

Answers as API Gateway does where the service relies on it: ``403 Forbidden`` without a valid API key on a private
route, ``401 Unauthorized`` / ``403`` from the authorizer, ``403 Missing Authentication Token`` for an unknown route,
``502`` when the function fails, ``504`` past the 29 s integration timeout.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from infra.local.definition import Authorizer, HttpEvent
from infra.local.workers import FunctionPool, Invocation

INTEGRATION_TIMEOUT_SECONDS = 29.0
_PARAM = re.compile(r"\{([^}]+)\}")


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
        """Return the route and its path parameters, or ``None`` (API Gateway's "Missing Authentication Token")."""
        for route in self.routes:
            if route.event.method not in {method, "ANY"}:
                continue
            found = route.pattern.match(path)
            if found:
                names = route.names()
                return route, {names[key]: unquote(value) for key, value in found.groupdict().items()}
        return None


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


def _json(status: int, body: dict[str, Any]) -> tuple[int, dict[str, list[str]], bytes]:
    return status, {"Content-Type": ["application/json"]}, json.dumps(body).encode()


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
        pools: dict[str, FunctionPool],
        api_keys: Callable[[], dict[str, str]],
        stage: str,
        region: str,
        account: str,
        log: Callable[[str], None],
    ) -> None:
        self.table = RouteTable(events)
        self._pools = pools
        self._api_keys = api_keys
        self._stage = stage
        self._region = region
        self._account = account
        self._api_id = "local"
        self._log = log
        self._cache: dict[tuple[str, str], _Cached] = {}
        self._lock = threading.Lock()
        self.local_routes: dict[str, Callable[[str, dict[str, str]], tuple[int, dict[str, list[str]], bytes]]] = {}

    def method_arn(self, method: str, path: str) -> str:
        """Return the ``methodArn`` an authorizer receives."""
        return f"arn:aws:execute-api:{self._region}:{self._account}:{self._api_id}/{self._stage}/{method}{path}"

    def handle(
        self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> tuple[int, dict[str, list[str]], bytes]:
        """Answer one request."""
        split = urlsplit(raw_path)
        path = unquote(split.path) or "/"
        for prefix, local in self.local_routes.items():
            if path == prefix.rstrip("/") or path.startswith(prefix):
                return local(path, dict(parse_qsl(split.query)))
        found = self.table.match(method, path)
        if found is None:
            if method == "GET" and path == "/":
                return 302, {"Location": ["/_local/"]}, b""
            return _json(403, {"message": "Missing Authentication Token"})
        route, params = found
        started = time.monotonic()
        event = self._event(route, params, method, path, split.query, headers, body, source_ip)
        lowered = {name.lower(): value for name, value in headers}
        if route.event.authorizer is not None:
            denied = self._authorize(route.event.authorizer, event, lowered, method, path)
            if denied is not None:
                self._log(f"{method} {path} → {denied[0]} (authorizer)")
                return denied
        if route.event.private:
            key = lowered.get("x-api-key", "")
            key_id = self._api_keys().get(key) if key else None
            if key_id is None:
                self._log(f"{method} {path} → 403 (API key)")
                return _json(403, {"message": "Forbidden"})
            event["requestContext"]["identity"].update({"apiKey": key, "apiKeyId": key_id})
        outcome = self._pools[route.event.function].invoke(
            event, min(INTEGRATION_TIMEOUT_SECONDS, self._pools[route.event.function].spec.timeout)
        )
        response = self._response(outcome)
        took = (time.monotonic() - started) * 1000
        note = f" {outcome.error['errorType']}: {outcome.error['errorMessage']}" if outcome.error else ""
        self._log(f"{method} {path} → {response[0]} ({route.event.function}, {took:.0f} ms){note}")
        return response

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
    ) -> tuple[int, dict[str, list[str]], bytes] | None:
        identity = self._identity(authorizer, event, headers)
        if identity is None:
            return _json(401, {"message": "Unauthorized"})
        if authorizer.validation_expression and not re.fullmatch(authorizer.validation_expression, identity):
            return _json(401, {"message": "Unauthorized"})
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
                    return _json(401, {"message": "Unauthorized"})
                self._log(f"authorizer {authorizer.function} failed: {outcome.error.get('errorMessage')}")
                return _json(500, {"message": None})
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
            return _json(403, {"Message": "User is not authorized to access this resource with an explicit deny"})
        if verdict is None:
            return _json(403, {"Message": "User is not authorized to access this resource"})
        event["requestContext"]["authorizer"] = {
            "principalId": cached.principal,
            **{
                name: value if isinstance(value, str | int | float | bool) else str(value)
                for name, value in cached.context.items()
            },
        }
        return None

    def _response(self, outcome: Invocation) -> tuple[int, dict[str, list[str]], bytes]:
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

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, payload = self.server.gateway.handle(
            self.command, self.path, list(self.headers.items()), body, self.client_address[0]
        )
        self.send_response(status)
        for name, values in headers.items():
            if name.lower() in {"content-length", "connection", "transfer-encoding"}:
                continue
            for value in values:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are logged by the gateway, one line each."""
