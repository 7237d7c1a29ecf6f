"""The local Stripe API server (``infra/local/stripe.py``) for tests: the stripe SDK over real HTTP, never a mock.

API
---
``stripe_server(*, webhook_url=None, webhook_secret=DEFAULT_WEBHOOK_SECRET, events=WEBHOOK_EVENTS)``
    Context manager: starts a server on a free loopback port in a background thread (well under a second; the first
    start of a process imports aiohttp and localstripe) and yields its ``StripeServer`` handle; on exit it stops the
    server, closes the port and joins its thread. With ``webhook_url``, the server sends the ``events`` it makes
    (``payment_intent.succeeded`` when a PaymentIntent succeeds…) to that loopback URL, signed with
    ``webhook_secret`` as Stripe signs them.

``stripe_server_fixture(name="stripe_server", scope="function")``
    Returns a pytest fixture of that name yielding a started server, e.g. in a ``conftest.py``::

        from tests.support.stripe_server import stripe_server_fixture

        local_stripe = stripe_server_fixture("local_stripe")

``stripe_client(server, max_network_retries=0)``
    A ``stripe.StripeClient`` on the server (``base_addresses={"api": server.url}``), no retries unless asked.

The handle (``infra.local.stripe.StripeServer``)
    ``.url`` (``http://127.0.0.1:<port>``, what the code under test gets as the Stripe API base), ``.port``,
    ``.stop()``, ``.client()``;
    ``.fail(path_prefix, status=500, count=1, method=None, should_retry=None, after=False)``: the next ``count``
    requests under the prefix (``/v1/customers``) answer a Stripe-shaped 5xx (``stripe.APIError``) or 429
    (``stripe.RateLimitError``), before idempotency, so a retry with the same ``Idempotency-Key`` runs for real;
    ``should_retry=False`` sends ``Stripe-Should-Retry: false`` so an SDK with retries gives up at once; ``after=True``
    (5xx only) runs the request first (a credit is made) and answers the 5xx instead, which the key then replays, as
    Stripe replays a 500 once execution began; ``.clear_faults()``;
    ``.register_webhook(url, secret, events)``, ``.deliveries`` (each with its ``answer``), ``.wait_for_delivery(
    event_type, object_id, timeout)``.

What the server does: customers, PaymentMethods (``pm_card_visa``…), PaymentIntents (create with ``payment_method``,
then ``confirm`` without parameters), customer balance transactions, ``Idempotency-Key`` as Stripe honours it, and
Stripe's error shapes. The SDK's own retries sleep between attempts: clients here default to none.

Objects live in one store per process (localstripe's): servers running at the same time share customers; the store
is emptied when the last server stops, so each test that starts its own server starts empty.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from infra.local.stripe import API_KEY, DEFAULT_WEBHOOK_SECRET, WEBHOOK_EVENTS, StripeServer, start_stripe_server


@contextmanager
def stripe_server(
    *,
    webhook_url: str | None = None,
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
    events: Iterable[str] | None = WEBHOOK_EVENTS,
) -> Iterator[StripeServer]:
    """Run a local Stripe server for the block and yield it; stop it (port closed, thread joined) after."""
    server = start_stripe_server()
    try:
        if webhook_url is not None:
            server.register_webhook(webhook_url, webhook_secret, events)
        yield server
    finally:
        server.stop()


def stripe_server_fixture(name: str = "stripe_server", scope: Any = "function") -> Callable[..., Any]:
    """Return a pytest fixture called ``name`` that yields a started local Stripe server for its ``scope``."""

    @pytest.fixture(name=name, scope=scope)
    def fixture() -> Iterator[StripeServer]:
        with stripe_server() as server:
            yield server

    return fixture


def stripe_client(server: StripeServer, max_network_retries: int = 0, api_key: str = API_KEY) -> Any:
    """Return a ``stripe.StripeClient`` on ``server``."""
    return server.client(api_key=api_key, max_network_retries=max_network_retries)


def server_threads() -> list[threading.Thread]:
    """Return the threads of local Stripe servers still alive (none once every server stopped)."""
    return [thread for thread in threading.enumerate() if thread.name.startswith("stripe-server-")]
