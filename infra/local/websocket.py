"""The local WebSocket API: the definition's ``websocket`` routes played as API Gateway plays them, and its Management
API, which the unmodified boto3 ``apigatewaymanagementapi`` client calls.

moto has no WebSocket runtime, so this module is one:

- a WebSocket server (``websockets``) on ``ws://127.0.0.1:<port>/<stage>``: a valid WebSocket handshake (anything else
  is refused as the library refuses it, 426 for a plain GET, and invokes nothing) invokes the ``$connect`` function
  with an API Gateway-shaped event (``requestContext.routeKey``, ``eventType`` ``CONNECT``, ``connectionId``, the query
  string…) and is refused with the function's status when it answers anything but 2xx; each frame goes to
  the route its ``action`` selects (``$request.body.action``), else to ``$default``, and a route with a route response
  sends the function's ``body`` back; a close invokes ``$disconnect``;
- the Management API on ``http://127.0.0.1:<port>/<stage>``: ``POST /@connections/{id}`` sends the body as a frame,
  ``GET`` describes the connection, ``DELETE`` closes it, and an unknown id is ``410 GoneException``.

The functions find both through their environment: the definition's ``wss://``/``https://`` URLs of the WebSocket
API (``custom.realtime`` in serverless.yml) resolve here to the local servers' (``resolved``), so no code branches on
where it runs. ``RealtimeDemo`` is the demo page the local stack serves at ``/_realtime/``.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from infra.local.config import ACCOUNT_ID, HOST, ROOT, LocalConfig
from infra.local.definition import WEBSOCKET_API_LOGICAL_ID, ServiceDefinition, WebsocketEvent
from infra.local.gateway import Answer, Pool
from infra.local.logs import printable

CONNECT, DISCONNECT, DEFAULT = "$connect", "$disconnect", "$default"
# API Gateway's own limits that the local API keeps: a frame (message) of at most 128 KiB, 29 s per integration.
MAX_FRAME_BYTES = 128 * 1024
INTEGRATION_TIMEOUT_SECONDS = 29.0
_POST_TIMEOUT_SECONDS = 5.0
_LOCAL_API_ID = "websocketslocal"
DEMO_PREFIX = "/_realtime/"
DEMO_TOPIC = ("realtime", "demo")
CLIENT_SCRIPT = ROOT / "clients" / "browser" / "notify-realtime.js"
DEMO_ASSETS = Path(__file__).with_name("realtime_assets")


class WebsocketApiError(Exception):
    """The local WebSocket API could not start."""


# --- the definition's URLs of the WebSocket API, played locally -------------------------------------------------


def _evaluate(value: Any, region: str) -> str:
    """Evaluate a template value built of ``Fn::Join``, ``Fn::Sub`` and ``Ref`` as the URL AWS would make of it."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((key, argument),) = value.items()
        pseudo = {
            "AWS::Region": region,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::Partition": "aws",
            "AWS::AccountId": ACCOUNT_ID,
            WEBSOCKET_API_LOGICAL_ID: _LOCAL_API_ID,
        }
        if key == "Ref" and argument in pseudo:
            return pseudo[argument]
        if key == "Fn::Join":
            return str(argument[0]).join(_evaluate(part, region) for part in argument[1])
        if key == "Fn::Sub" and isinstance(argument, str):
            text = argument
            for name, replacement in pseudo.items():
                text = text.replace("${" + name + "}", replacement)
            return text
    raise WebsocketApiError(f"cannot evaluate {json.dumps(value)} locally")


def _refers_to_api(value: Any) -> bool:
    return WEBSOCKET_API_LOGICAL_ID in json.dumps(value)


def local_urls(service: ServiceDefinition, websocket_origin: str, management_origin: str) -> dict[str, str]:
    """Return what each function environment value naming the WebSocket API's URL resolves to here, keyed by the
    value's JSON (as ``infra.local.resources.substitute`` looks values up).

    A ``wss://`` URL of the API is the local WebSocket server's, an ``https://`` one the local Management API's; the
    path (the stage) is kept.
    """
    resolved: dict[str, str] = {}
    for spec in service.functions.values():
        for value in spec.environment.values():
            if not isinstance(value, dict) or not _refers_to_api(value):
                continue
            url = urlsplit(_evaluate(value, service.region))
            origin = websocket_origin if url.scheme in {"wss", "ws"} else management_origin
            resolved[json.dumps(value, sort_keys=True)] = origin.rstrip("/") + url.path
    return resolved


# --- connections ------------------------------------------------------------------------------------------------


@dataclass
class LocalConnection:
    """An open WebSocket connection, as the Management API describes it."""

    connection_id: str
    socket: ServerConnection
    connected_at: datetime
    source_ip: str
    user_agent: str | None
    last_active: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class ManagementStats:
    """What the Management API was asked, by operation and outcome (``post 200``, ``post 410``…)."""

    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, operation: str, status: int) -> None:
        """Count one call."""
        with self.lock:
            key = f"{operation} {status}"
            self.counts[key] = self.counts.get(key, 0) + 1

    def snapshot(self) -> dict[str, int]:
        """Return the counts so far."""
        with self.lock:
            return dict(self.counts)


def new_connection_id() -> str:
    """Return a connection id shaped like API Gateway's (16 characters, base64 ending in ``=``), URL-safe."""
    return base64.urlsafe_b64encode(secrets.token_bytes(11)).decode()


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WebsocketApi:
    """The local WebSocket API and its Management API, each on its own loopback port; ``start`` binds both.

    Parameters
    ----------
    service:
        The definition: its ``websocket`` routes, stage and region.
    pools:
        The functions' worker pools by key (filled by the stack as it starts them).
    log:
        Prints one line per connect, frame and disconnect.
    """

    # How long ``shutdown`` waits for the server to close its connections (their handlers ending) before it stops.
    CLOSE_SECONDS = 10.0

    def __init__(
        self,
        service: ServiceDefinition,
        pools: Mapping[str, Pool],
        log: Callable[[str], None],
        host: str = HOST,
        port: int = 0,
        management_port: int = 0,
    ) -> None:
        self.routes: dict[str, WebsocketEvent] = {event.route: event for event in service.websocket}
        self.stage = service.stage
        self.region = service.region
        self.selection = service.websocket_route_selection
        self.stats = ManagementStats()
        self._pools = pools
        self._say = log
        self._host = host
        self._port = port
        self._management_port = management_port
        self._connections: dict[str, LocalConnection] = {}
        # A handshake that $connect let in, until its session starts; weak, so that one whose handshake failed after
        # all (the server closing) leaves nothing behind.
        self._opening: weakref.WeakKeyDictionary[ServerConnection, tuple[str, dict[str, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._management: ThreadingHTTPServer | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None

    # --- addresses -------------------------------------------------------------------------------------------

    @property
    def websocket_origin(self) -> str:
        """Scheme, host and port of the WebSocket server (``ws://127.0.0.1:<port>``)."""
        return f"ws://{self._host}:{self._port}"

    @property
    def management_origin(self) -> str:
        """Scheme, host and port of the Management API (``http://127.0.0.1:<port>``)."""
        return f"http://{self._host}:{self._management_port}"

    @property
    def websocket_url(self) -> str:
        """The URL browsers connect to (``ws://127.0.0.1:<port>/<stage>``)."""
        return f"{self.websocket_origin}/{self.stage}"

    @property
    def management_url(self) -> str:
        """The Management API's endpoint (``http://127.0.0.1:<port>/<stage>``), as functions are given it."""
        return f"{self.management_origin}/{self.stage}"

    def open_connections(self) -> list[str]:
        """Return the ids of the open connections."""
        with self._lock:
            return list(self._connections)

    # --- start and stop --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and serve both servers in background threads; raise ``WebsocketApiError`` when a port is taken."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        loop = self._loop = asyncio.new_event_loop()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="websocket")

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(self._serve())
            except OSError as exc:
                ready.set_exception(WebsocketApiError(f"the WebSocket API cannot listen on port {self._port}: {exc}"))
                return
            ready.set_result(None)
            loop.run_forever()
            # Connections still being handled (a $disconnect waiting on its invocation, say) end inside the loop, not
            # when their coroutines are collected after it closed.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="websocket-api", daemon=True)
        self._thread.start()
        ready.result(30)
        try:
            self._management = _ManagementServer((self._host, self._management_port), self)
        except OSError as exc:
            self.shutdown()
            raise WebsocketApiError(f"the Management API cannot listen on port {self._management_port}: {exc}") from exc
        self._management_port = self._management.server_address[1]
        threading.Thread(target=self._management.serve_forever, name="websocket-management", daemon=True).start()

    async def _serve(self) -> Server:
        server = await serve(
            self._session,
            self._host,
            self._port,
            process_request=self._handshake,
            max_size=MAX_FRAME_BYTES,
            ping_interval=None,  # API Gateway pings nobody; idle connections close after 10 minutes there
            # API Gateway waits for $connect as long as for any integration; the library's 10 s would give up a
            # handshake whose function runs on and stores a connection that no $disconnect ever removes.
            open_timeout=INTEGRATION_TIMEOUT_SECONDS + 1,
        )
        self._port = next(iter(server.sockets)).getsockname()[1]
        return server

    def shutdown(self) -> None:
        """Close every connection and stop both servers (``$disconnect`` is not played for a stopping stack)."""
        if self._management is not None:
            self._management.shutdown()
            self._management.server_close()
            self._management = None
        server, self._server = self._server, None
        loop = self._loop
        if server is not None and loop is not None and loop.is_running():

            async def close() -> None:
                server.close()
                await server.wait_closed()

            future = asyncio.run_coroutine_threadsafe(close(), loop)
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                future.result(self.CLOSE_SECONDS)
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def server_close(self) -> None:
        """Nothing more to release: ``shutdown`` closed the sockets (the stack calls both, as for its HTTP servers)."""

    # --- events ----------------------------------------------------------------------------------------------

    def _context(self, route: str, event_type: str, connection_id: str, extra: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "routeKey": route,
            "eventType": event_type,
            "extendedRequestId": uuid.uuid4().hex[:16],
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "messageDirection": "IN",
            "stage": self.stage,
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": uuid.uuid4().hex[:16],
            "domainName": f"{self._host}:{self._port}",
            "connectionId": connection_id,
            "apiId": _LOCAL_API_ID,
            **extra,
        }

    def connect_event(self, connection_id: str, request: Request, source_ip: str) -> dict[str, Any]:
        """Return the ``$connect`` event of a handshake, as API Gateway builds it."""
        query_pairs = parse_qsl(urlsplit(request.path).query, keep_blank_values=True)
        headers: dict[str, str] = {}
        multi_headers: dict[str, list[str]] = {}
        for name, value in request.headers.raw_items():
            headers[name] = value
            multi_headers.setdefault(name, []).append(value)
        multi_query: dict[str, list[str]] = {}
        for name, value in query_pairs:
            multi_query.setdefault(name, []).append(value)
        identity = {"sourceIp": source_ip, "userAgent": request.headers.get("User-Agent")}
        context = self._context(
            CONNECT, "CONNECT", connection_id, {"connectedAt": int(time.time() * 1000), "identity": identity}
        )
        return {
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": dict(query_pairs) or None,
            "multiValueQueryStringParameters": multi_query or None,
            "requestContext": context,
            "isBase64Encoded": False,
        }

    def message_event(self, route: str, connection: LocalConnection, body: str) -> dict[str, Any]:
        """Return the event of a frame routed to ``route``."""
        extra = {
            "messageId": uuid.uuid4().hex[:16],
            "connectedAt": int(connection.connected_at.timestamp() * 1000),
            "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
        }
        return {
            "requestContext": self._context(route, "MESSAGE", connection.connection_id, extra),
            "body": body,
            "isBase64Encoded": False,
        }

    def disconnect_event(self, connection: LocalConnection, code: int | None, reason: str) -> dict[str, Any]:
        """Return the ``$disconnect`` event of a closed connection."""
        extra = {
            "disconnectStatusCode": code,
            "disconnectReason": reason,
            "connectedAt": int(connection.connected_at.timestamp() * 1000),
            "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
        }
        return {
            "headers": {"Host": f"{self._host}:{self._port}"},
            "requestContext": self._context(DISCONNECT, "DISCONNECT", connection.connection_id, extra),
            "isBase64Encoded": False,
        }

    def select_route(self, body: str) -> str | None:
        """Return the route a frame goes to: its selection expression's value when a route has it, else
        ``$default`` (``None`` when there is none)."""
        prefix = "$request.body."
        if self.selection.startswith(prefix):
            try:
                value: Any = json.loads(body)
                for part in self.selection[len(prefix) :].split("."):
                    value = value.get(part) if isinstance(value, dict) else None
            except ValueError:
                value = None
            if isinstance(value, str) and value in self.routes and not value.startswith("$"):
                return value
        return DEFAULT if DEFAULT in self.routes else None

    def _log(self, line: str) -> None:
        """Write one line about a connection, whatever its path or an error's text holds."""
        self._say(printable(line))

    async def _invoke(self, route: str, event: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        """Invoke a route's function; return its result, or ``None`` and the error's text."""
        spec = self.routes[route]
        pool = self._pools.get(spec.function)
        if pool is None:
            return None, f"function {spec.function} is not running"
        timeout = min(INTEGRATION_TIMEOUT_SECONDS, pool.spec.timeout)
        started = time.monotonic()
        outcome = await asyncio.get_running_loop().run_in_executor(self._executor, pool.invoke, event, timeout)
        took = (time.monotonic() - started) * 1000
        connection_id = event["requestContext"]["connectionId"]
        if outcome.error is not None:
            error = f"{outcome.error.get('errorType')}: {outcome.error.get('errorMessage')}"
            self._log(f"WS {route} {connection_id} → 502 ({spec.function}, {took:.0f} ms) {error}")
            return None, error
        result = outcome.result if isinstance(outcome.result, dict) else {}
        status = result.get("statusCode", 200)
        self._log(f"WS {route} {connection_id} → {status} ({spec.function}, {took:.0f} ms)")
        return result, None

    # --- the WebSocket server --------------------------------------------------------------------------------

    async def _handshake(self, socket: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path.rstrip("/")
        if path != f"/{self.stage}":
            self._log(f"WS handshake {path or '/'} → 403: connect to /{self.stage}")
            return socket.respond(HTTPStatus.FORBIDDEN, f"connect to ws://{self._host}:{self._port}/{self.stage}\n")
        # API Gateway invokes $connect for a WebSocket handshake only: a plain GET, a wrong key or version is answered
        # as the library would answer it (426, 400…) before anything runs. Accepting a valid request again after this
        # hook gives the same answer.
        checked = socket.protocol.accept(request)
        if checked.status_code != HTTPStatus.SWITCHING_PROTOCOLS:
            self._log(f"WS handshake → {checked.status_code}: not a WebSocket handshake")
            return checked
        connection_id = new_connection_id()
        source_ip = str(socket.remote_address[0]) if socket.remote_address else HOST
        if CONNECT in self.routes:
            result, _ = await self._invoke(CONNECT, self.connect_event(connection_id, request, source_ip))
            if result is None:
                return socket.respond(HTTPStatus.BAD_GATEWAY, "Internal server error\n")
            status = int(result.get("statusCode") or 200)
            if not 200 <= status < 300:
                body = str(result.get("body") or HTTPStatus(status).phrase)
                return socket.respond(status, body + "\n")
        self._opening[socket] = (connection_id, {"source_ip": source_ip})
        return None

    async def _session(self, socket: ServerConnection) -> None:
        connection_id, details = self._opening.pop(socket)
        request = socket.request
        connection = LocalConnection(
            connection_id,
            socket,
            datetime.now(UTC),
            details["source_ip"],
            request.headers.get("User-Agent") if request is not None else None,
        )
        with self._lock:
            self._connections[connection_id] = connection
        try:
            async for message in socket:
                connection.last_active = datetime.now(UTC)
                body = message if isinstance(message, str) else message.decode("utf-8", "replace")
                await self._frame(connection, body)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._connections.pop(connection_id, None)
            code = socket.close_code if socket.close_code is not None else 1006
            if DISCONNECT in self.routes:
                await self._invoke(DISCONNECT, self.disconnect_event(connection, code, socket.close_reason or ""))

    async def _frame(self, connection: LocalConnection, body: str) -> None:
        route = self.select_route(body)
        request_id = uuid.uuid4().hex[:16]
        if route is None:
            reply = {"message": "Forbidden", "connectionId": connection.connection_id, "requestId": request_id}
            await connection.socket.send(json.dumps(reply))
            return
        result, _ = await self._invoke(route, self.message_event(route, connection, body))
        if result is None:
            reply = {
                "message": "Internal server error",
                "connectionId": connection.connection_id,
                "requestId": request_id,
            }
            await connection.socket.send(json.dumps(reply))
        elif self.routes[route].route_response and result.get("body") is not None:
            await connection.socket.send(str(result["body"]))

    # --- the Management API ----------------------------------------------------------------------------------

    def _find(self, connection_id: str) -> LocalConnection | None:
        with self._lock:
            return self._connections.get(connection_id)

    def post(self, connection_id: str, data: bytes) -> int:
        """Send ``data`` to a connection as one frame (text when it is UTF-8); return the HTTP status."""
        connection = self._find(connection_id)
        if connection is None:
            return 410
        if len(data) > MAX_FRAME_BYTES:
            return 413
        try:
            message: str | bytes = data.decode("utf-8")
        except UnicodeDecodeError:
            message = data
        assert self._loop is not None  # a connection exists only once the server runs
        future = asyncio.run_coroutine_threadsafe(connection.socket.send(message), self._loop)
        try:
            future.result(_POST_TIMEOUT_SECONDS)
        except ConnectionClosed:
            return 410
        except concurrent.futures.TimeoutError:
            future.cancel()
            return 429  # the client's buffer is full: API Gateway's LimitExceededException
        return 200

    def describe(self, connection_id: str) -> dict[str, Any] | None:
        """Return what ``GET /@connections/{id}`` answers, or ``None`` for an unknown id."""
        connection = self._find(connection_id)
        if connection is None:
            return None
        return {
            "connectedAt": _iso(connection.connected_at),
            "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent or ""},
            "lastActiveAt": _iso(connection.last_active),
        }

    def close(self, connection_id: str) -> int:
        """Close a connection (its ``$disconnect`` follows); return the HTTP status."""
        connection = self._find(connection_id)
        if connection is None:
            return 410
        assert self._loop is not None  # a connection exists only once the server runs
        future = asyncio.run_coroutine_threadsafe(connection.socket.close(1000, "closed by the service"), self._loop)
        with contextlib.suppress(concurrent.futures.TimeoutError, ConnectionClosed):
            future.result(_POST_TIMEOUT_SECONDS)
        return 204


_ERROR_TYPES = {410: "GoneException", 413: "PayloadTooLargeException", 429: "LimitExceededException"}


class _ManagementServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: WebsocketApi) -> None:
        self.api = api
        super().__init__(address, _ManagementHandler)


class _ManagementHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ManagementServer

    def _connection_id(self) -> str | None:
        path = urlsplit(self.path).path
        stage = f"/{self.server.api.stage}"
        path = path.removeprefix(stage) if path.startswith(stage + "/") else path
        prefix = "/@connections/"
        if not path.startswith(prefix) or "/" in path[len(prefix) :] or len(path) == len(prefix):
            return None
        return unquote(path[len(prefix) :])

    def _reply(self, status: int, body: dict[str, Any] | None = None) -> None:
        payload = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if status in _ERROR_TYPES:
            self.send_header("x-amzn-ErrorType", _ERROR_TYPES[status])
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _answer(self, operation: str, status: int, body: dict[str, Any] | None = None) -> None:
        self.server.api.stats.add(operation, status)
        if status == 410:
            body = {"message": "The connection with the provided id no longer exists."}
        elif status in _ERROR_TYPES:
            body = {"message": _ERROR_TYPES[status]}
        self._reply(status, body)

    def do_POST(self) -> None:
        """``PostToConnection``."""
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        connection_id = self._connection_id()
        if connection_id is None:
            self._reply(404, {"message": "Not Found"})
            return
        self._answer("post", self.server.api.post(connection_id, data))

    def do_GET(self) -> None:
        """``GetConnection``, and ``/_stats``: the calls counted so far (for the benchmark)."""
        if urlsplit(self.path).path == "/_stats":
            self._reply(
                200, {"calls": self.server.api.stats.snapshot(), "open": len(self.server.api.open_connections())}
            )
            return
        connection_id = self._connection_id()
        if connection_id is None:
            self._reply(404, {"message": "Not Found"})
            return
        described = self.server.api.describe(connection_id)
        self._answer("get", 200 if described is not None else 410, described)

    def do_DELETE(self) -> None:
        """``DeleteConnection``."""
        connection_id = self._connection_id()
        if connection_id is None:
            self._reply(404, {"message": "Not Found"})
            return
        status = self.server.api.close(connection_id)
        self.server.api.stats.add("delete", status)
        if status == 204:
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._answer("delete", status)

    def log_message(self, format: str, *args: Any) -> None:
        """Management calls are counted, not logged: a fan-out makes thousands."""


# --- the demo page ----------------------------------------------------------------------------------------------


def _json_answer(status: int, body: Any) -> Answer:
    return status, {"Content-Type": ["application/json"], "Cache-Control": ["no-store"]}, json.dumps(body).encode()


def _call(method: str, url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None


class RealtimeDemo:
    """The demo page at ``/_realtime/``: it connects with the repository's browser client and shows each arriving
    notification as text. ``/_realtime/token`` plays the app's backend: it asks the token route for a token with the
    local API key; ``/_realtime/send`` publishes to the demo topic ``realtime/demo``, created on first use.
    """

    def __init__(self, api_url: str, api_key: str, admin_token: str, websocket_origin: str) -> None:
        self._api_url = api_url
        self._api_key = api_key
        self._admin_token = admin_token
        self._websocket_origin = websocket_origin
        self._topic_hash: str | None = None
        self._lock = threading.Lock()

    def _page(self, name: str, content_type: str) -> Answer:
        path = CLIENT_SCRIPT if name == "notify-realtime.js" else DEMO_ASSETS / name
        headers = {
            "Content-Type": [content_type],
            "Cache-Control": ["no-store"],
            # Scripts and styles from files only, nothing inline: a notification's text can never run as code.
            "Content-Security-Policy": [
                f"default-src 'self'; connect-src 'self' {self._websocket_origin}; object-src 'none'; base-uri 'none'"
            ],
            "X-Content-Type-Options": ["nosniff"],
        }
        return 200, headers, path.read_bytes()

    def demo_topic_hash(self) -> str:
        """Create the demo topic with a browser integration the first time; return its hash."""
        with self._lock:
            if self._topic_hash is not None:
                return self._topic_hash
            channel, topic = DEMO_TOPIC
            integrations = [{"name": "browser", "type": "browser", "target": {}, "model": "$text"}]
            base = f"{self._api_url}/v1/channels/{channel}/topics/{topic}"
            auth = {"Authorization": f"Bearer {self._admin_token}"}
            status, body = _call("PUT", base, {"integrations": integrations}, auth)
            if status == 200:  # it exists from an earlier run: a new hash, since the old one is shown only once
                status, body = _call("POST", f"{base}/rotate-hash", None, auth)
            if status not in (200, 201) or not isinstance(body, dict):
                raise WebsocketApiError(f"the demo topic could not be created ({status})")
            self._topic_hash = str(body["topic_hash"])
            return self._topic_hash

    def serve(self, path: str, query: dict[str, str], method: str) -> Answer:
        """Answer a request under ``/_realtime/``."""
        name = path.removeprefix(DEMO_PREFIX.rstrip("/")).strip("/")
        if name in ("", "index.html"):
            return self._page("demo.html", "text/html; charset=utf-8")
        if name in ("notify-realtime.js", "demo.js"):
            return self._page(name, "text/javascript; charset=utf-8")
        if name == "demo.css":
            return self._page(name, "text/css; charset=utf-8")
        if name == "token":
            return self._token(query)
        if name == "send" and method == "POST":
            return self._send(query)
        return _json_answer(404, {"message": f"no page {path}"})

    def _token(self, query: dict[str, str]) -> Answer:
        user_id = query.get("user_id") or "demo-user"
        topics = [topic for topic in (query.get("topics") or "/".join(DEMO_TOPIC)).split(",") if topic]
        request: dict[str, Any] = {"user_id": user_id, "topics": topics}
        # ASCII digits, a few: str.isdigit() takes "²", which int() refuses.
        if re.fullmatch(r"[0-9]{1,9}", query.get("ttl_seconds", "")):
            request["ttl_seconds"] = int(query["ttl_seconds"])
        try:
            if "/".join(DEMO_TOPIC) in topics:
                self.demo_topic_hash()
        except WebsocketApiError as exc:
            return _json_answer(502, {"message": str(exc)})
        status, body = _call("POST", f"{self._api_url}/v1/realtime/tokens", request, {"x-api-key": self._api_key})
        return _json_answer(status, body)

    def _send(self, query: dict[str, str]) -> Answer:
        try:
            topic_hash = self.demo_topic_hash()
        except WebsocketApiError as exc:
            return _json_answer(502, {"message": str(exc)})
        channel, topic = DEMO_TOPIC
        status, body = _call(
            "POST",
            f"{self._api_url}/v1/notifications/{channel}/{topic}",
            {"metadata": {"text": query.get("text") or "Hello from the demo page"}},
            {"x-api-key": self._api_key, "x-topic-hash-x": topic_hash},
        )
        return _json_answer(status, body)


# --- the stack's wiring -----------------------------------------------------------------------------------------


@dataclass
class LocalRealtime:
    """What ``start_websocket_api`` started: the servers (``shutdown``/``server_close``), the values the functions'
    environments resolve to, the demo page's handler, and the banner's lines."""

    api: WebsocketApi | None
    resolved: dict[str, str]
    demo: RealtimeDemo | None
    banner: list[str]

    def shutdown(self) -> None:
        """Stop the WebSocket API."""
        if self.api is not None:
            self.api.shutdown()

    def server_close(self) -> None:
        """Nothing more to release."""


def _signing_keys_parameters(service: ServiceDefinition) -> set[str]:
    return {
        str(spec.environment["REALTIME_KEYS_PARAMETER"])
        for spec in service.functions.values()
        if isinstance(spec.environment.get("REALTIME_KEYS_PARAMETER"), str)
    }


def start_websocket_api(
    service: ServiceDefinition,
    pools: Mapping[str, Pool],
    config: LocalConfig,
    log: Callable[[str], None],
    ssm: Any,
) -> LocalRealtime:
    """Start the WebSocket API of the definition's ``websocket`` events and create the signing keys in moto.

    Call it after the resources exist and before the function environments are resolved: ``resolved`` holds what
    the WebSocket API's URLs are here. ``pools`` may still be empty; the routes invoke them once browsers connect.
    """
    for parameter in sorted(_signing_keys_parameters(service)):
        from core.realtime.keys import ensure_keys

        ensure_keys(ssm, parameter)
    if not service.websocket:
        return LocalRealtime(None, {}, None, [])
    api = WebsocketApi(service, pools, log)
    api.start()
    resolved = local_urls(service, api.websocket_origin, api.management_origin)
    demo = RealtimeDemo(config.api_url, config.api_key, config.admin_token, api.websocket_origin)
    routes = ", ".join(sorted(api.routes))
    banner = [
        f"WebSocket API {api.websocket_url}  ({routes} → {', '.join(sorted({e.function for e in service.websocket}))})",
        f"  Management API {api.management_url}/@connections/{{id}}",
        f"  demo page {config.api_url}{DEMO_PREFIX}?user_id=demo-user&topics=realtime/demo",
    ]
    return LocalRealtime(api, resolved, demo, banner)
