"""The local Stripe API server: localstripe's aiohttp routes, plus what the service needs and localstripe lacks.

The stripe SDK talks to it over plain HTTP (``stripe.StripeClient("sk_test_local", base_addresses={"api": url})``);
any ``sk_…`` key is accepted, as localstripe accepts them. On top of localstripe's customers, PaymentMethods,
PaymentIntents and the rest, this server adds:

- Stripe's ``amount_captured`` on charges and ``amount_received`` on PaymentIntents (what a capture took, which a
  partial capture makes less than ``amount``);
- customer balance transactions: ``POST``/``GET /v1/customers/{id}/balance_transactions`` and
  ``GET /v1/customers/{id}/balance_transactions/{txn}``, answering ``customer_balance_transaction`` objects and keeping
  the customer's ``balance`` (negative: credit) as Stripe does;
- ``Idempotency-Key`` on every ``POST``, as Stripe honours it: the same key with the same path and parameters replays
  the first response (``Idempotent-Replayed: true``), with other parameters it is a 400 ``idempotency_error``; keys are
  kept 24 hours, in memory; a request refused before it ran (400, 401, 404, 409, 429) keeps no result;
- Stripe's error shape for localstripe's errors (``resource_missing`` on a 404, ``card_error`` on a 402) and for
  unknown URLs, and a ``Request-Id`` on every answer;
- webhooks: the events localstripe makes (``payment_intent.succeeded`` when a PaymentIntent succeeds…) are sent at
  once to the endpoints registered on this server (``register_webhook``), signed as Stripe signs them
  (``Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<payload>")>``), and each answer is recorded;
- a fault switch, for tests and only on this local server: ``fail(path_prefix, status=500, count=1)`` (or
  ``POST /_faults``) answers the next ``count`` requests under a path prefix with a Stripe-shaped 5xx or 429, before
  authentication and idempotency, as an outage of Stripe's front would; with ``after=True`` (a 5xx only) the request
  runs first (a credit is made) and its answer is replaced by the 500, which the idempotency layer keeps and replays
  for the key, as Stripe does with a 500 once execution began; with ``during=True`` (a 5xx only) the request begins
  (inside idempotency) and fails before it makes anything, and the key keeps and replays that 500 all the same, as
  Stripe does.

localstripe keeps its objects in one store per process: every server of a process sees the same customers and
PaymentIntents; the store is emptied when the last server of the process stops. Its own webhook sender (one registry
per process, a fixed 1 s delay, answers not kept) and its writes of the store to ``/tmp`` are switched off here.
Nothing here connects anywhere but to loopback addresses.

Run alone with ``python -m infra.local.stripe --port 3004``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import string
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from infra.local.config import LOCAL_STRIPE_SECRET_KEY as API_KEY
from infra.local.config import LOCAL_STRIPE_WEBHOOK_SECRET as DEFAULT_WEBHOOK_SECRET

HOST = "127.0.0.1"
# The local stack's environment: the Stripe server's port (default: the API's port + 4) and the webhook secret.
PORT_ENV = "LOCAL_STRIPE_PORT"
PORT_OFFSET = 4
WEBHOOK_SECRET_ENV = "LOCAL_STRIPE_WEBHOOK_SECRET"  # noqa: S105 - a variable's name
# Any key starting with ``sk_`` works; API_KEY (infra/local/config.py) is what the local stack and the tests hand the
# SDK, DEFAULT_WEBHOOK_SECRET what the local stage's webhook route checks signatures with.
WEBHOOK_PATH = "/v1/webhooks/stripe"
# The events the service's webhook route handles; an endpoint registered without a list receives these.
WEBHOOK_EVENTS = ("payment_intent.succeeded", "checkout.session.completed")
IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60
FAULTS_PATH = "/_faults"
WEBHOOK_TIMEOUT_SECONDS = 5.0
_STOP_TIMEOUT_SECONDS = 10.0
_ID_ALPHABET = string.ascii_letters + string.digits

logger = logging.getLogger(__name__)


class StripeServerError(Exception):
    """The local Stripe server could not start."""


def stripe_port(environ: Mapping[str, str], api_port: int) -> int:
    """Return the local Stripe server's port: ``LOCAL_STRIPE_PORT``, else the API's port + 4."""
    raw = environ.get(PORT_ENV, "")
    if not raw:
        return api_port + PORT_OFFSET
    try:
        port = int(raw)
    except ValueError:
        raise StripeServerError(f"{PORT_ENV}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise StripeServerError(f"{PORT_ENV}={raw!r} is not a port number")
    return port


def webhook_secret(environ: Mapping[str, str]) -> str:
    """Return the local stage's Stripe webhook secret: ``LOCAL_STRIPE_WEBHOOK_SECRET``, else the embedded default."""
    return environ.get(WEBHOOK_SECRET_ENV) or DEFAULT_WEBHOOK_SECRET


def new_id(prefix: str, length: int = 24) -> str:
    """Return an id shaped like Stripe's (``cbtxn_`` and 24 letters or digits)."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


# --- webhook signatures and events, as Stripe makes them ---------------------------------------------------------


def sign_payload(payload: bytes, secret: str, timestamp: int) -> str:
    """Return the hex ``v1`` signature of a webhook payload: HMAC-SHA256 of ``"<timestamp>.<payload>"``."""
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Return the ``Stripe-Signature`` header of a payload: ``t=<timestamp>,v1=<signature>`` (now when not given)."""
    moment = int(time.time()) if timestamp is None else timestamp
    return f"t={moment},v1={sign_payload(payload, secret, moment)}"


def build_event(
    event_type: str,
    data_object: Mapping[str, Any],
    *,
    event_id: str | None = None,
    created: int | None = None,
    api_version: str | None = None,
) -> dict[str, Any]:
    """Return a v1 (snapshot) event as Stripe sends it to a webhook endpoint, about ``data_object``."""
    if api_version is None:
        import stripe

        api_version = stripe.api_version
    return {
        "id": event_id or new_id("evt_"),
        "object": "event",
        "api_version": api_version,
        "created": int(time.time()) if created is None else created,
        "data": {"object": dict(data_object)},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def encode_event(event: Mapping[str, Any]) -> bytes:
    """Return an event's payload bytes, indented as Stripe sends them."""
    return json.dumps(event, indent=2).encode()


@dataclass(frozen=True)
class WebhookAnswer:
    """What a webhook endpoint answered: its status (0: no answer) and body, or the error that stopped the request."""

    status: int
    body: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the endpoint took the event (a 2xx status)."""
        return 200 <= self.status < 300


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` is plain HTTP(S) to a loopback host (``127.0.0.0/8``, ``::1`` or ``localhost``)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def deliver_event(
    url: str,
    event: Mapping[str, Any],
    secret: str,
    timeout: float = WEBHOOK_TIMEOUT_SECONDS,
    timestamp: int | None = None,
) -> WebhookAnswer:
    """POST ``event`` to a loopback webhook endpoint, signed with ``secret`` as Stripe signs it, and return the answer.

    Refuses (``ValueError``) any URL that is not on a loopback address: this is a local tool.
    """
    if not is_loopback_url(url):
        raise ValueError(f"webhooks go to loopback addresses only, not {url!r}")
    payload = encode_event(event)
    request = urllib.request.Request(
        url,
        data=payload,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+local)",
            "Stripe-Signature": signature_header(payload, secret, timestamp),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return WebhookAnswer(response.status, response.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return WebhookAnswer(exc.code, exc.read().decode(errors="replace"))
    except (OSError, TimeoutError) as exc:
        return WebhookAnswer(0, "", error=f"{type(exc).__name__}: {exc}")


# --- Stripe's errors ---------------------------------------------------------------------------------------------


class StripeApiError(Exception):
    """An error this server answers in Stripe's shape: ``{"error": {"type", "message", "code"?, "param"?}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        """Return the error as Stripe answers it."""
        error: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
        if self.param is not None:
            error["param"] = self.param
        return _json({"error": error}, status=self.status, headers=self.headers)


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, indent=2, sort_keys=True).encode() + b"\n",
        status=status,
        content_type="application/json",
        headers=dict(headers or {}),
    )


def no_such(kind: str, object_id: str, param: str) -> StripeApiError:
    """Return Stripe's 404 for an unknown object (``No such customer: 'cus_x'``)."""
    return StripeApiError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def _from_localstripe(exc: Any, path: str) -> StripeApiError:
    """Turn localstripe's ``UserError`` into Stripe's shape: 404s name the missing object, 402s are card errors."""
    error = dict(exc.body.get("error", {}))
    message = str(error.get("message") or "Bad request")
    code = error.get("code")
    error_type = str(error.get("type") or "invalid_request_error")
    param = error.get("param")
    if exc.code == 404 and code is None:
        code = "resource_missing"
        parts = path.strip("/").split("/")
        if message == "Not Found" and len(parts) >= 3 and parts[0] == "v1":
            kind = parts[1].removesuffix("s")
            message, param = f"No such {kind}: '{parts[2]}'", "id"
    if exc.code == 402:
        error_type = "card_error"
    return StripeApiError(int(exc.code), message, error_type=error_type, code=code, param=param)


# --- localstripe, adapted once per process -------------------------------------------------------------------------

_CURRENT_SERVER: contextvars.ContextVar[StripeServer | None] = contextvars.ContextVar("stripe_server", default=None)
# localstripe's store is one dict per process; requests of every server in the process take turns on it.
_STORE_LOCK = threading.Lock()
_PROCESS_LOCK = threading.Lock()
_RUNNING: set[StripeServer] = set()


def _schedule_webhook(event: Any) -> None:
    """Stand in for localstripe's sender: hand the event to the server whose request made it."""
    server = _CURRENT_SERVER.get()
    if server is not None:
        server._on_event(event)


@functools.cache
def _localstripe() -> tuple[Any, Any]:
    """Import localstripe's server and resources, adapted for this process (once); return both modules."""
    with warnings.catch_warnings():
        # localstripe registers plain functions as handlers, which aiohttp deprecates; this app wraps them.
        warnings.simplefilter("ignore", DeprecationWarning)
        from localstripe import resources, server
    # The store would pickle itself to /tmp on every write; here it lives in memory only.
    resources.store.dump_to_disk = lambda: None
    resources.schedule_webhook = _schedule_webhook
    # Stripe's ``balance`` (negative: credit); localstripe keeps only the old ``account_balance``, negated.
    resources.Customer.balance = property(
        lambda customer: -int(customer.account_balance or 0),
        lambda customer, value: setattr(customer, "account_balance", -int(value)),
    )
    _amounts_taken(resources)
    return server, resources


def _amounts_taken(resources: Any) -> None:
    """Give charges Stripe's ``amount_captured`` and PaymentIntents its ``amount_received``, which localstripe lacks.

    localstripe, as Stripe, releases what a partial capture leaves as a refund of the charge: ``amount`` stays what was
    authorised, and ``amount_refunded`` counts the release with any refund made since, so what was taken is kept
    at the capture.
    """
    capture = resources.Charge._capture

    def capture_amount(charge: Any, amount: Any, on_success: Any = None) -> Any:
        def taken() -> None:
            charge._amount_captured = int(charge.amount if amount is None else amount)
            if on_success:
                on_success()

        return capture(charge, amount, on_success=taken)

    def amount_captured(charge: Any) -> int:
        if not charge.captured or charge.status != "succeeded":
            return 0
        return int(getattr(charge, "_amount_captured", charge.amount))

    def amount_received(intent: Any) -> int:
        charge = intent.latest_charge
        return amount_captured(charge) if charge is not None and intent.status == "succeeded" else 0

    resources.Charge._capture = capture_amount
    resources.Charge.amount_captured = property(amount_captured)
    resources.PaymentIntent.amount_received = property(amount_received)


# --- customer balance transactions ---------------------------------------------------------------------------------


@dataclass
class BalanceLedger:
    """Customer balance transactions by customer, newest last; one per process, as localstripe's store is."""

    by_customer: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    currencies: dict[str, str] = field(default_factory=dict)

    def clear(self) -> None:
        """Forget every transaction."""
        self.by_customer.clear()
        self.currencies.clear()


_LEDGER = BalanceLedger()
_CREATE_PARAMS = {"amount", "currency", "description", "metadata", "expand"}
_LIST_PARAMS = {"limit", "starting_after", "ending_before", "expand"}


def _customer(resources: Any, customer_id: str) -> Any:
    customer = resources.store.get(f"customer:{customer_id}")
    if customer is None:
        raise no_such("customer", customer_id, "customer")
    return customer


def _unknown(params: Mapping[str, Any], allowed: set[str]) -> None:
    for name in params:
        if name not in allowed:
            raise StripeApiError(400, f"Received unknown parameter: {name}", param=name)


def _amount(params: Mapping[str, Any]) -> int:
    raw = params.get("amount")
    if raw is None or raw == "":
        raise StripeApiError(400, "Missing required param: amount.", code="parameter_missing", param="amount")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise StripeApiError(400, f"Invalid integer: {raw}", code="parameter_invalid_integer", param="amount") from None


def _currency(params: Mapping[str, Any]) -> str:
    raw = params.get("currency")
    if raw is None or raw == "":
        raise StripeApiError(400, "Missing required param: currency.", code="parameter_missing", param="currency")
    currency = str(raw).lower()
    if len(currency) != 3 or not currency.isalpha():
        raise StripeApiError(400, f"Invalid currency: {raw}", code="parameter_invalid_string", param="currency")
    return currency


def _metadata(params: Mapping[str, Any]) -> dict[str, str]:
    raw = params.get("metadata")
    if raw in (None, ""):
        return {}
    if not isinstance(raw, dict):
        raise StripeApiError(400, "Invalid object", code="parameter_invalid_object", param="metadata")
    return {str(key): str(value) for key, value in raw.items() if value != ""}


async def _create_balance_transaction(request: web.Request) -> web.Response:
    server_module, resources = _localstripe()
    customer_id = request.match_info["customer"]
    params = await server_module.get_post_data(request) or {}
    customer = _customer(resources, customer_id)
    _unknown(params, _CREATE_PARAMS)
    amount, currency, metadata = _amount(params), _currency(params), _metadata(params)
    description = params.get("description")
    if description is not None and not isinstance(description, str):
        raise StripeApiError(400, "Invalid string", code="parameter_invalid_string", param="description")
    known = _LEDGER.currencies.get(customer_id)
    if known is not None and known != currency:
        raise StripeApiError(
            400,
            f"The currency {currency} does not match the customer's currency ({known}).",
            param="currency",
        )
    customer.balance = customer.balance + amount
    _LEDGER.currencies[customer_id] = currency
    transaction = {
        "id": new_id("cbtxn_"),
        "object": "customer_balance_transaction",
        "amount": amount,
        "checkout_session": None,
        "created": int(time.time()),
        "credit_note": None,
        "currency": currency,
        "customer": customer_id,
        "description": description or None,
        "ending_balance": customer.balance,
        "invoice": None,
        "livemode": False,
        "metadata": metadata,
        "type": "adjustment",
    }
    _LEDGER.by_customer.setdefault(customer_id, []).append(transaction)
    return _json(transaction)


async def _list_balance_transactions(request: web.Request) -> web.Response:
    server_module, resources = _localstripe()
    customer_id = request.match_info["customer"]
    params = server_module.unflatten_data(request.query) or {}
    _customer(resources, customer_id)
    _unknown(params, _LIST_PARAMS)
    try:
        limit = int(params.get("limit", 10))
    except (TypeError, ValueError):
        raise StripeApiError(400, "Invalid integer", code="parameter_invalid_integer", param="limit") from None
    if not 1 <= limit <= 100:
        raise StripeApiError(400, "Limit must be between 1 and 100", param="limit")
    newest_first = list(reversed(_LEDGER.by_customer.get(customer_id, [])))
    ids = [transaction["id"] for transaction in newest_first]
    start, stop = 0, len(newest_first)
    if after := params.get("starting_after"):
        if after not in ids:
            raise no_such("customer balance transaction", str(after), "starting_after")
        start = ids.index(after) + 1
    if before := params.get("ending_before"):
        if before not in ids:
            raise no_such("customer balance transaction", str(before), "ending_before")
        stop = ids.index(before)
        start = max(start, stop - limit)
    page = newest_first[start:stop][:limit]
    return _json(
        {
            "object": "list",
            "data": page,
            "has_more": start + len(page) < stop,
            "url": f"/v1/customers/{customer_id}/balance_transactions",
        }
    )


async def _retrieve_balance_transaction(request: web.Request) -> web.Response:
    _, resources = _localstripe()
    customer_id, transaction_id = request.match_info["customer"], request.match_info["transaction"]
    _customer(resources, customer_id)
    for transaction in _LEDGER.by_customer.get(customer_id, []):
        if transaction["id"] == transaction_id:
            return _json(transaction)
    raise no_such("customer balance transaction", transaction_id, "id")


# --- idempotency ---------------------------------------------------------------------------------------------------


@dataclass
class SavedResponse:
    """The first response to an idempotency key, and what the request was (its fingerprint)."""

    fingerprint: str
    saved_at: float
    status: int = 0
    body: bytes = b""
    content_type: str = "application/json"
    done: bool = False


# A request refused before Stripe ran it keeps no result: the same key may be used again.
_NOT_SAVED = {400, 401, 404, 409, 429}


class IdempotencyCache:
    """Responses by (API key, Idempotency-Key), kept ``ttl`` seconds; used from one event loop only."""

    def __init__(self, ttl: float = IDEMPOTENCY_TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._saved: dict[tuple[str, str], SavedResponse] = {}
        self._next_prune = 0.0

    def get(self, key: tuple[str, str]) -> SavedResponse | None:
        """Return the live entry of ``key``, if any."""
        now = self._clock()
        if now >= self._next_prune:
            self._saved = {k: v for k, v in self._saved.items() if now - v.saved_at < self.ttl}
            self._next_prune = now + 60
        entry = self._saved.get(key)
        if entry is not None and now - entry.saved_at >= self.ttl:
            del self._saved[key]
            return None
        return entry

    def begin(self, key: tuple[str, str], fingerprint: str) -> SavedResponse:
        """Record that a request with ``key`` is running."""
        entry = self._saved[key] = SavedResponse(fingerprint, self._clock())
        return entry

    def drop(self, key: tuple[str, str]) -> None:
        """Forget ``key`` (its request was refused before it ran)."""
        self._saved.pop(key, None)

    def __len__(self) -> int:
        return len(self._saved)


def _fingerprint(request: web.Request, body: bytes) -> str:
    """Return what identifies a request's intent: method, path and parameters, in any order."""
    params: Any
    try:
        params = json.loads(body) if body.strip() else None
    except ValueError:
        params = sorted(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
    query = sorted(parse_qsl(request.query_string, keep_blank_values=True))
    canonical = json.dumps([request.method, request.path, query, params], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _api_key(request: web.Request) -> str:
    return request.headers.get("Authorization", "").split(" ")[-1]


# --- faults --------------------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """The next ``remaining`` requests under ``prefix`` (and of ``method``, when set) answer ``status``."""

    prefix: str
    status: int
    remaining: int
    method: str | None = None
    should_retry: bool | None = None
    after: bool = False
    during: bool = False

    def describe(self) -> dict[str, Any]:
        """Return the fault as ``GET /_faults`` shows it."""
        return {
            "path": self.prefix,
            "status": self.status,
            "count": self.remaining,
            "method": self.method,
            "should_retry": self.should_retry,
            "after": self.after,
            "during": self.during,
        }


class FaultSwitch:
    """Faults to play, first added first; thread-safe (tests add faults from their own thread)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        """Play ``fault`` on the next matching requests."""
        if not (fault.status == 429 or 500 <= fault.status <= 599):
            raise ValueError(f"a fault answers 429 or 5xx, not {fault.status}")
        if fault.remaining < 1:
            raise ValueError("a fault needs a count of at least 1")
        if not fault.prefix.startswith("/v1/"):
            raise ValueError(f"a fault's path starts with /v1/, not {fault.prefix!r}")
        if (fault.after or fault.during) and fault.status == 429:
            raise ValueError("a fault after execution began answers a 5xx, not 429")
        if fault.after and fault.during:
            raise ValueError("a fault is played during or after the request, not both")
        with self._lock:
            self._faults.append(fault)

    def take(self, method: str, path: str, *, after: bool = False, during: bool = False) -> Fault | None:
        """Return the fault that answers this request before it runs (``after`` and ``during`` false), once it began
        (``during``) or after it ran (``after``), counting it."""
        with self._lock:
            for fault in self._faults:
                if (
                    path.startswith(fault.prefix)
                    and fault.method in (None, method)
                    and (fault.after, fault.during) == (after, during)
                ):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        """Play no more faults."""
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        """Return the faults still to play."""
        with self._lock:
            return [fault.describe() for fault in self._faults]


def _fault_error(fault: Fault) -> StripeApiError:
    headers = {} if fault.should_retry is None else {"Stripe-Should-Retry": str(fault.should_retry).lower()}
    if fault.status == 429:
        return StripeApiError(
            429,
            "Too many requests hit the API too quickly. (local fault)",
            code="rate_limit",
            headers=headers,
        )
    return StripeApiError(
        fault.status,
        "An unknown error occurred. (local fault)",
        error_type="api_error",
        headers=headers,
    )


def _flag(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    return str(value).lower() in {"1", "true", "yes"}


# --- webhooks ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookEndpoint:
    """A registered endpoint: where, the signing secret, and the event types it receives."""

    url: str
    secret: str
    events: frozenset[str]


@dataclass(frozen=True)
class WebhookDelivery:
    """One event sent to one endpoint, and its answer."""

    event_id: str
    event_type: str
    object_id: str | None
    url: str
    answer: WebhookAnswer


# --- the server ----------------------------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StripeServer:
    """The local Stripe API on ``url``, served by its own event loop in a background thread.

    Parameters
    ----------
    host, port:
        Where to listen; port 0 takes a free port (``port`` tells which once started).
    """

    def __init__(self, host: str = HOST, port: int = 0) -> None:
        self.host = host
        self._port = port
        self.faults = FaultSwitch()
        self.idempotency = IdempotencyCache()
        self._endpoints: dict[str, WebhookEndpoint] = {}
        self._deliveries: list[WebhookDelivery] = []
        self._delivered = threading.Condition()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # --- addresses -------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL for the SDK (``http://127.0.0.1:<port>``), as ``base_addresses={"api": url}``."""
        return f"http://{self.host}:{self._port}"

    def client(self, api_key: str = API_KEY, max_network_retries: int = 0) -> Any:
        """Return a ``stripe.StripeClient`` on this server (no retries unless asked, so tests see every answer)."""
        import stripe

        return stripe.StripeClient(api_key, base_addresses={"api": self.url}, max_network_retries=max_network_retries)

    # --- start and stop --------------------------------------------------------------------------------------

    def start(self) -> StripeServer:
        """Listen and serve in a background thread; raise ``StripeServerError`` when the port is taken."""
        if self._thread is not None:
            raise StripeServerError("the local Stripe server is already started")
        app = self._app()
        loop = self._loop = asyncio.new_event_loop()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen(app))
            except OSError as exc:
                ready.set_exception(StripeServerError(f"the local Stripe server cannot listen on {self._port}: {exc}"))
                loop.run_until_complete(self._close())
                loop.close()
                return
            ready.set_result(None)
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"stripe-server-{id(self):x}", daemon=True)
        self._thread.start()
        try:
            ready.result(30)
        except BaseException:
            self._thread.join(_STOP_TIMEOUT_SECONDS)
            self._thread = None
            raise
        with _PROCESS_LOCK:
            _RUNNING.add(self)
        return self

    async def _listen(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port, reuse_address=True)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def _close(self) -> None:
        pending = [task for task in self._tasks if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await asyncio.get_running_loop().shutdown_default_executor()

    def stop(self) -> None:
        """Stop serving, close the port and join the thread; the last server of the process empties the store."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(_STOP_TIMEOUT_SECONDS)
        self._thread = None
        with _PROCESS_LOCK:
            _RUNNING.discard(self)
            last = not _RUNNING
        if last:
            _, resources = _localstripe()
            with _STORE_LOCK:
                resources.store.clear()
                _LEDGER.clear()

    def __enter__(self) -> StripeServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- faults ----------------------------------------------------------------------------------------------

    def fail(
        self,
        path_prefix: str,
        *,
        status: int = 500,
        count: int = 1,
        method: str | None = None,
        should_retry: bool | None = None,
        after: bool = False,
        during: bool = False,
    ) -> None:
        """Answer the next ``count`` requests under ``path_prefix`` (e.g. ``/v1/customers``) with ``status``.

        ``status`` is 429 (``stripe.RateLimitError``) or a 5xx (``stripe.APIError``); ``should_retry`` sets
        ``Stripe-Should-Retry``, which the SDK obeys before its own rule (it retries 5xx itself when it may retry).
        With ``after``, the request runs first (what it makes stays made) and the 5xx replaces its answer; a POST's
        ``Idempotency-Key`` then keeps that 5xx and replays it, as Stripe does. With ``during``, the request begins and
        fails before it makes anything: the key keeps and replays that 5xx too (Stripe saves the result of any request
        that began executing), though nothing was made.
        """
        self.faults.add(
            Fault(
                path_prefix,
                status,
                count,
                method.upper() if method else None,
                should_retry,
                after=after,
                during=during,
            )
        )

    def clear_faults(self) -> None:
        """Play no more faults."""
        self.faults.clear()

    # --- webhooks --------------------------------------------------------------------------------------------

    def register_webhook(
        self,
        url: str,
        secret: str,
        events: Iterable[str] | None = WEBHOOK_EVENTS,
        endpoint_id: str | None = None,
    ) -> str:
        """Send the events of ``events`` (every type when ``None``) to ``url``, a loopback address, signed with
        ``secret``, as soon as they happen; return the endpoint's id (the same id again replaces it)."""
        if not is_loopback_url(url):
            raise ValueError(f"webhooks go to loopback addresses only, not {url!r}")
        if not secret:
            raise ValueError("a webhook endpoint needs a signing secret")
        endpoint_id = endpoint_id or new_id("we_")
        self._endpoints[endpoint_id] = WebhookEndpoint(url, secret, frozenset(events or ()))
        return endpoint_id

    def unregister_webhook(self, endpoint_id: str) -> None:
        """Send nothing more to the endpoint ``endpoint_id``."""
        self._endpoints.pop(endpoint_id, None)

    @property
    def deliveries(self) -> list[WebhookDelivery]:
        """The webhooks sent so far, in order."""
        with self._delivered:
            return list(self._deliveries)

    def wait_for_delivery(
        self, event_type: str | None = None, object_id: str | None = None, timeout: float = 5.0
    ) -> WebhookDelivery:
        """Return the first delivery of ``event_type`` about ``object_id`` (any, when ``None``), waiting for it."""
        deadline = time.monotonic() + timeout

        def match() -> WebhookDelivery | None:
            for delivery in self._deliveries:
                if event_type in (None, delivery.event_type) and object_id in (None, delivery.object_id):
                    return delivery
            return None

        with self._delivered:
            while (found := match()) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {event_type or 'webhook'} delivered within {timeout} s")
                self._delivered.wait(left)
            return found

    def _on_event(self, event: Any) -> None:
        """Send a localstripe event to the endpoints that take its type (called in this server's loop)."""
        endpoints = [e for e in list(self._endpoints.values()) if not e.events or event.type in e.events]
        if not endpoints:
            return
        exported = event._export()
        data_object = exported.get("data", {}).get("object", {})
        payload = build_event(
            event.type,
            data_object,
            event_id=event.id,
            created=event.created,
            api_version=exported.get("api_version"),
        )
        loop = asyncio.get_running_loop()
        for endpoint in endpoints:
            task = loop.create_task(self._send(endpoint, payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, endpoint: WebhookEndpoint, event: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(None, deliver_event, endpoint.url, event, endpoint.secret)
        object_id = event["data"]["object"].get("id")
        delivery = WebhookDelivery(event["id"], event["type"], object_id, endpoint.url, answer)
        with self._delivered:
            self._deliveries.append(delivery)
            self._delivered.notify_all()

    # --- the app ---------------------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        server_module, _ = _localstripe()
        app = web.Application(
            middlewares=[
                self._errors,
                self._faults,
                self._auth,
                self._idempotent,
                self._faults_inside,
                self._serialized,
            ],
        )
        app.on_response_prepare.append(_request_id)
        app.router.add_get(FAULTS_PATH, self._list_faults)
        app.router.add_post(FAULTS_PATH, self._add_fault)
        app.router.add_delete(FAULTS_PATH, self._clear_faults_route)
        app.router.add_post("/v1/customers/{customer}/balance_transactions", _create_balance_transaction)
        app.router.add_get("/v1/customers/{customer}/balance_transactions", _list_balance_transactions)
        app.router.add_get("/v1/customers/{customer}/balance_transactions/{transaction}", _retrieve_balance_transaction)
        app.router.add_delete("/_config/data", _flush)
        app.router.add_post("/_config/webhooks/{id}", self._config_webhook)
        for route in server_module.app.router.routes():
            if route.resource is None or route.resource.canonical.startswith("/_config/"):
                continue
            app.router.add_route(route.method, route.resource.canonical, _async(route.handler))
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Answer every error in Stripe's shape, whatever raised it."""
        server_module, _ = _localstripe()
        try:
            return await handler(request)
        except StripeApiError as exc:
            return exc.response()
        except server_module.UserError as exc:
            return _from_localstripe(exc, request.path).response()
        except web.HTTPException as exc:
            if exc.status in {404, 405}:
                message = f"Unrecognized request URL ({request.method}: {request.path})."
                return StripeApiError(404, message).response()
            raise
        except Exception:
            logger.exception("local Stripe server error", extra={"path": request.path})
            return StripeApiError(500, "An unknown error occurred.", error_type="api_error").response()

    @web.middleware
    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Play a fault before Stripe looks at the request, so a fault leaves no idempotent result."""
        if not request.path.startswith("/_"):
            fault = self.faults.take(request.method, request.path)
            if fault is not None:
                return _fault_error(fault).response()
        return await handler(request)

    @web.middleware
    async def _faults_inside(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Play a fault once the request began (instead of running it) or after it ran, inside idempotency, so the key
        keeps the fault's answer."""
        if not request.path.startswith("/_"):
            fault = self.faults.take(request.method, request.path, during=True)
            if fault is not None:
                return _fault_error(fault).response()
        response = await handler(request)
        if not request.path.startswith("/_") and response.status < 400:
            fault = self.faults.take(request.method, request.path, after=True)
            if fault is not None:
                return _fault_error(fault).response()
        return response

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """localstripe's check (any ``sk_…`` key), except on this server's own ``/_`` routes."""
        if request.path.startswith("/_"):
            return await handler(request)
        server_module, _ = _localstripe()
        await request.read()
        result: web.StreamResponse = await server_module.auth_middleware(request, handler)
        return result

    @web.middleware
    async def _idempotent(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Honour ``Idempotency-Key`` on POSTs as Stripe does."""
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key or request.path.startswith("/_"):
            return await handler(request)
        scope = (_api_key(request), key)
        fingerprint = _fingerprint(request, await request.read())
        saved = self.idempotency.get(scope)
        if saved is not None:
            if saved.fingerprint != fingerprint:
                raise StripeApiError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters they were first used "
                    f"with. Try using a key other than '{key}' if you meant to execute a different request.",
                    error_type="idempotency_error",
                )
            if not saved.done:
                raise StripeApiError(
                    409,
                    "There is currently another in-progress request using this Stripe-Idempotency key "
                    "(that probably means you submitted twice, and that's okay). Please try again later.",
                    code="idempotency_key_in_use",
                )
            return web.Response(
                body=saved.body,
                status=saved.status,
                content_type=saved.content_type,
                headers={"Idempotency-Key": key, "Idempotent-Replayed": "true"},
            )
        entry = self.idempotency.begin(scope, fingerprint)
        try:
            response = await handler(request)
        except BaseException:
            self.idempotency.drop(scope)
            raise
        if response.status in _NOT_SAVED or not isinstance(response, web.Response):
            self.idempotency.drop(scope)
            return response
        entry.status, entry.content_type, entry.done = response.status, response.content_type, True
        entry.body = bytes(response.body) if isinstance(response.body, bytes | bytearray) else b""
        response.headers["Idempotency-Key"] = key
        return response

    @web.middleware
    async def _serialized(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Run the request on localstripe's store alone (every server of the process shares it), as this server."""
        server_module, _ = _localstripe()
        await request.read()
        if not _STORE_LOCK.acquire(blocking=False):
            # Another server's thread holds it for a moment: wait off this loop, so no request of this one stalls.
            await asyncio.get_running_loop().run_in_executor(None, _STORE_LOCK.acquire)
        token = _CURRENT_SERVER.set(self)
        try:
            return await handler(request)
        except StripeApiError as exc:
            return exc.response()
        except server_module.UserError as exc:
            return _from_localstripe(exc, request.path).response()
        finally:
            _CURRENT_SERVER.reset(token)
            _STORE_LOCK.release()

    async def _list_faults(self, request: web.Request) -> web.Response:
        return _json({"faults": self.faults.pending()})

    async def _add_fault(self, request: web.Request) -> web.Response:
        server_module, _ = _localstripe()
        data = await server_module.get_post_data(request) or {}
        try:
            self.fail(
                str(data.get("path", "")),
                status=int(data.get("status", 500)),
                count=int(data.get("count", 1)),
                method=data.get("method") or None,
                should_retry=_flag(data.get("should_retry")),
                after=bool(_flag(data.get("after"))),
                during=bool(_flag(data.get("during"))),
            )
        except (TypeError, ValueError) as exc:
            raise StripeApiError(400, str(exc)) from None
        return _json({"faults": self.faults.pending()})

    async def _clear_faults_route(self, request: web.Request) -> web.Response:
        self.clear_faults()
        return _json({"faults": []})

    async def _config_webhook(self, request: web.Request) -> web.Response:
        """``POST /_config/webhooks/{id}`` (``url``, ``secret``, ``events[]``): localstripe's registration call."""
        server_module, _ = _localstripe()
        data = await server_module.get_post_data(request) or {}
        events = data.get("events")
        if events is not None and not isinstance(events, list):
            events = [events]
        try:
            self.register_webhook(
                str(data.get("url", "")), str(data.get("secret", "")), events, endpoint_id=request.match_info["id"]
            )
        except ValueError as exc:
            raise StripeApiError(400, str(exc)) from None
        return web.Response()


async def _flush(request: web.Request) -> web.Response:
    """``DELETE /_config/data``: localstripe's reset, which also forgets the balance transactions."""
    _, resources = _localstripe()
    resources.store.clear()
    _LEDGER.clear()
    return web.Response()


async def _request_id(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Request-Id", new_id("req_", 14))


def _async(handler: Callable[[web.Request], Any]) -> Handler:
    """Wrap one of localstripe's handlers (some are plain functions) as a coroutine."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        result = handler(request)
        if asyncio.iscoroutine(result):
            result = await result
        response: web.StreamResponse = result
        return response

    return wrapped


def start_stripe_server(host: str = HOST, port: int = 0) -> StripeServer:
    """Start a local Stripe server in a background thread and return it (``.url``, ``.port``, ``.stop()``)."""
    return StripeServer(host, port).start()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the local Stripe server alone until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.stripe", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, help=f"default: ${PORT_ENV}, else $PORT + {PORT_OFFSET} (3004)")
    parser.add_argument("--webhook", metavar="URL", help=f"send signed events to URL (e.g. the API's {WEBHOOK_PATH})")
    parser.add_argument("--secret", default=webhook_secret(os.environ), help="the webhook signing secret")
    args = parser.parse_args(argv)
    try:
        port = args.port if args.port is not None else stripe_port(os.environ, int(os.environ.get("PORT") or 3000))
        server = start_stripe_server(args.host, port)
    except StripeServerError as exc:
        print(exc)
        return 1
    print(f"local Stripe API on {server.url} (any sk_… key, e.g. {API_KEY})")
    print(f'  stripe.StripeClient("{API_KEY}", base_addresses={{"api": "{server.url}"}})')
    if args.webhook:
        server.register_webhook(args.webhook, args.secret)
        print(f"  webhooks {', '.join(WEBHOOK_EVENTS)} → {args.webhook} (secret {args.secret})")
    print("Ctrl-C stops it.")
    stopped = threading.Event()
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
