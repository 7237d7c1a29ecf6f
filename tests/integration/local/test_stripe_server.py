"""The local Stripe server with the real stripe SDK over HTTP: customer balance transactions, idempotency keys, the
fault switch, PaymentIntents, signed webhooks, the checkout one-liner, and a clean stop."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe

from infra.local import checkout
from infra.local.stripe import DEFAULT_WEBHOOK_SECRET, StripeServer, deliver_event
from tests.support.stripe_server import server_threads, stripe_client, stripe_server, stripe_server_fixture

pytestmark = pytest.mark.timeout(30)

local_stripe = stripe_server_fixture("local_stripe")

CREDIT = {"amount": -500, "currency": "eur", "description": "Promo WELCOME", "metadata": {"purchase_id": "p-1"}}


@pytest.fixture
def client(local_stripe: StripeServer) -> Any:
    return stripe_client(local_stripe)


@pytest.fixture
def customer(client: Any) -> str:
    return str(client.v1.customers.create({"email": "ada@example.com"}).id)


@dataclass
class WebhookRoute:
    """A loopback stand-in for ``POST /v1/webhooks/stripe``: verifies ``Stripe-Signature`` as the route does."""

    url: str
    events: list[stripe.Event] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)


@contextmanager
def webhook_route(secret: str = DEFAULT_WEBHOOK_SECRET) -> Iterator[WebhookRoute]:
    route = WebhookRoute(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            payload = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body: dict[str, Any]
            try:
                event = stripe.Webhook.construct_event(payload, self.headers.get("Stripe-Signature"), secret)
            except (stripe.SignatureVerificationError, ValueError) as exc:
                route.refused.append(str(exc))
                status, body = 400, {"message": "invalid signature"}
            else:
                route.events.append(event)
                status, body = 200, {"received": True}
            encoded = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)
            route.received.set()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    route.url = f"http://127.0.0.1:{server.server_address[1]}/v1/webhooks/stripe"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield route
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- customer balance transactions -----------------------------------------------------------------------------


def test_balance_transaction_created_changes_customer_balance(client: Any, customer: str) -> None:
    transaction = client.v1.customers.balance_transactions.create(customer, CREDIT)

    assert transaction.id.startswith("cbtxn_")
    assert transaction.object == "customer_balance_transaction"
    assert (transaction.amount, transaction.currency, transaction.customer) == (-500, "eur", customer)
    assert (transaction.type, transaction.ending_balance) == ("adjustment", -500)
    assert transaction.metadata.to_dict() == {"purchase_id": "p-1"}
    assert transaction.description == "Promo WELCOME"
    assert client.v1.customers.retrieve(customer).balance == -500


def test_balance_transaction_list_and_retrieve_return_it_newest_first(client: Any, customer: str) -> None:
    first = client.v1.customers.balance_transactions.create(customer, CREDIT)
    second = client.v1.customers.balance_transactions.create(customer, {**CREDIT, "amount": -200})

    listed = client.v1.customers.balance_transactions.list(customer)

    assert [item.id for item in listed.data] == [second.id, first.id]
    assert second.ending_balance == -700
    assert client.v1.customers.balance_transactions.retrieve(customer, first.id).amount == -500


def test_balance_transaction_same_idempotency_key_twice_creates_one(client: Any, customer: str) -> None:
    options = {"idempotency_key": "purchase-p-1-WELCOME"}
    first = client.v1.customers.balance_transactions.create(customer, CREDIT, options)
    again = client.v1.customers.balance_transactions.create(customer, CREDIT, options)

    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(client.v1.customers.balance_transactions.list(customer).data) == 1
    assert client.v1.customers.retrieve(customer).balance == -500


def test_balance_transaction_same_key_other_params_raises_idempotency_error(client: Any, customer: str) -> None:
    options = {"idempotency_key": "purchase-p-1-WELCOME"}
    client.v1.customers.balance_transactions.create(customer, CREDIT, options)

    with pytest.raises(stripe.IdempotencyError) as raised:
        client.v1.customers.balance_transactions.create(customer, {**CREDIT, "amount": -900}, options)

    assert raised.value.http_status == 400
    assert len(client.v1.customers.balance_transactions.list(customer).data) == 1


def test_balance_transaction_unknown_customer_raises_resource_missing(client: Any) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.balance_transactions.create("cus_x", CREDIT)

    error = raised.value
    assert (error.http_status, error.code, error.param) == (404, "resource_missing", "customer")
    assert error.user_message == "No such customer: 'cus_x'"


# --- the fault switch ------------------------------------------------------------------------------------------


def test_fault_switch_500_raises_api_error_then_succeeds(
    local_stripe: StripeServer, client: Any, customer: str
) -> None:
    local_stripe.fail(f"/v1/customers/{customer}/balance_transactions", status=500, count=1)

    with pytest.raises(stripe.APIError) as raised:
        client.v1.customers.balance_transactions.create(customer, CREDIT)

    assert raised.value.http_status == 500
    assert client.v1.customers.balance_transactions.create(customer, CREDIT).amount == -500


def test_fault_switch_fault_keeps_no_idempotent_result(local_stripe: StripeServer, client: Any, customer: str) -> None:
    local_stripe.fail("/v1/customers", status=503, count=1)
    options = {"idempotency_key": "purchase-p-2-WELCOME"}
    with pytest.raises(stripe.APIError):
        client.v1.customers.balance_transactions.create(customer, CREDIT, options)

    retried = client.v1.customers.balance_transactions.create(customer, CREDIT, options)

    assert "Idempotent-Replayed" not in retried.last_response.headers
    assert len(client.v1.customers.balance_transactions.list(customer).data) == 1


def test_fault_switch_after_execution_credits_then_replays_the_500_for_the_key(
    local_stripe: StripeServer, client: Any, customer: str
) -> None:
    local_stripe.fail("/v1/customers", status=500, count=1, method="POST", after=True)
    options = {"idempotency_key": "purchase-p-3-WELCOME"}
    with pytest.raises(stripe.APIError):
        client.v1.customers.balance_transactions.create(customer, CREDIT, options)

    with pytest.raises(stripe.APIError) as replayed:
        client.v1.customers.balance_transactions.create(customer, CREDIT, options)

    assert replayed.value.http_status == 500
    assert (replayed.value.headers or {}).get("Idempotent-Replayed") == "true"
    assert len(client.v1.customers.balance_transactions.list(customer).data) == 1
    assert client.v1.customers.retrieve(customer).balance == -500


def test_fault_switch_after_execution_429_refused(local_stripe: StripeServer) -> None:
    with pytest.raises(ValueError, match="5xx"):
        local_stripe.fail("/v1/customers", status=429, after=True)


def test_fault_switch_over_http_429_raises_rate_limit_error(local_stripe: StripeServer, client: Any) -> None:
    import urllib.request

    request = urllib.request.Request(
        f"{local_stripe.url}/_faults",
        data=json.dumps({"path": "/v1/customers", "status": 429, "count": 1}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.load(response)["faults"][0]["status"] == 429

    with pytest.raises(stripe.RateLimitError):
        client.v1.customers.create()
    assert client.v1.customers.create().id.startswith("cus_")


# --- PaymentIntents and webhooks -------------------------------------------------------------------------------


def test_payment_intent_create_confirm_succeeds(client: Any, customer: str) -> None:
    intent = client.v1.payment_intents.create(
        {
            "amount": 2500,
            "currency": "eur",
            "customer": customer,
            "payment_method": "pm_card_visa",
            "metadata": {"promo_code": "WELCOME", "payment_id": "pay_1"},
        }
    )

    confirmed = client.v1.payment_intents.confirm(intent.id)

    assert confirmed.status == "succeeded"
    assert client.v1.payment_intents.retrieve(intent.id).metadata.to_dict() == {
        "promo_code": "WELCOME",
        "payment_id": "pay_1",
    }


def test_registered_webhook_payment_intent_succeeded_signature_verifies(
    local_stripe: StripeServer, client: Any
) -> None:
    with webhook_route() as route:
        local_stripe.register_webhook(route.url, DEFAULT_WEBHOOK_SECRET)
        intent = client.v1.payment_intents.create(
            {"amount": 900, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True}
        )

        delivery = local_stripe.wait_for_delivery("payment_intent.succeeded", intent.id)

    assert delivery.answer.status == 200
    assert [event.type for event in route.events] == ["payment_intent.succeeded"]
    assert route.events[0].data.object.id == intent.id
    assert route.refused == []


def test_deliver_event_other_secret_is_refused_by_signature_check() -> None:
    with webhook_route(secret="whsec_route") as route:
        answer = deliver_event(route.url, {"id": "evt_1", "type": "payment_intent.succeeded"}, "whsec_other")

    assert answer.status == 400
    assert route.events == []


def test_deliver_event_non_loopback_url_refused() -> None:
    with pytest.raises(ValueError, match="loopback"):
        deliver_event("http://192.0.2.1/v1/webhooks/stripe", {"id": "evt_1"}, DEFAULT_WEBHOOK_SECRET)


# --- the checkout one-liner ------------------------------------------------------------------------------------


def test_checkout_delivers_signed_event_with_promo_code(
    local_stripe: StripeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with webhook_route() as route:
        argv = ["--promo", "WELCOME", "--api-url", route.url.removesuffix("/v1/webhooks/stripe")]
        code = checkout.main([*argv, "--stripe-url", local_stripe.url], environ={})

    out = capsys.readouterr().out
    assert code == 0
    (event,) = route.events
    intent = event.data.object
    assert (event.type, intent.status, intent.amount, intent.currency) == (
        "payment_intent.succeeded",
        "succeeded",
        2500,
        "eur",
    )
    assert intent.metadata.promo_code == "WELCOME"
    payment_id = intent.metadata.payment_id
    assert f"payment id      {payment_id}" in out
    assert f"customer        {intent.customer}" in out
    assert '200 {"received": true}' in out
    assert f"/v1/purchases/{payment_id}" in out
    assert "Authorization: Bearer local-admin-token" in out


def test_checkout_route_refusing_signature_exits_1(
    local_stripe: StripeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with webhook_route(secret="whsec_route") as route:
        api_url = route.url.removesuffix("/v1/webhooks/stripe")
        code = checkout.main(["--api-url", api_url, "--stripe-url", local_stripe.url], environ={})

    assert code == 1
    assert route.events == []
    assert "400" in capsys.readouterr().out


def test_checkout_with_a_customer_the_server_does_not_hold_says_to_leave_it_out(
    local_stripe: StripeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # A customer printed before a restart (the local Stripe server starts empty): the answer was a bare "Not Found".
    with webhook_route() as route:
        argv = ["--customer", "cus_gone0000", "--api-url", route.url.removesuffix("/v1/webhooks/stripe")]
        code = checkout.main([*argv, "--stripe-url", local_stripe.url], environ={})

    captured = capsys.readouterr()
    assert code == 1
    assert route.events == []
    assert "customer cus_gone0000 is unknown to the local Stripe server" in captured.out + captured.err
    assert "run without --customer" in captured.out + captured.err


# --- the server's life -----------------------------------------------------------------------------------------


def test_stripe_server_stop_closes_port_and_joins_thread() -> None:
    with stripe_server() as server:
        port = server.port
        stripe_client(server).v1.customers.create()

    assert server_threads() == []
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


def test_stripe_server_last_stop_empties_store() -> None:
    with stripe_server() as server:
        customer_id = stripe_client(server).v1.customers.create().id

    with stripe_server() as server, pytest.raises(stripe.InvalidRequestError):
        stripe_client(server).v1.customers.retrieve(customer_id)
