"""A checkout played end to end on the local stack, as README "Play a checkout" does it.

``python -m infra.local.checkout`` makes a PaymentIntent with the demo promo code in the local Stripe server and posts
its signed ``payment_intent.succeeded`` webhook to the route; the payment worker records the payment and publishes
the Purchase event; the credit subscriber credits the customer's balance once, and the purchase notification is
delivered to the receiver once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
import stripe

from infra.local.seed import DEMO_PROMO_CODE
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def _wait_for(stack: Stack, path: str, done: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        reply = stack.admin("GET", path)
        if reply.status == 200 and done(reply.body):
            return reply.body
        if time.monotonic() > deadline:
            pytest.fail(f"GET {path} after {timeout} s: {reply.status} {reply.body}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def checkout(stack: Stack) -> dict[str, Any]:
    """Play one checkout with the demo promo code; return the purchase once credited and notified."""
    payment_id = f"pay_e2e_{uuid.uuid4().hex[:12]}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.local.checkout",
            "--promo",
            DEMO_PROMO_CODE.lower(),
            "--payment-id",
            payment_id,
            "--api-url",
            stack.api,
            "--stripe-url",
            stack.stripe,
        ],
        env={**os.environ, "LOCAL_ADMIN_TOKEN": stack.admin_token},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    purchase = _wait_for(
        stack,
        f"/v1/purchases/{payment_id}",
        lambda body: body.get("credit") is not None and body.get("notification_id") is not None,
    )
    return {"payment_id": payment_id, "purchase": purchase, "output": done.stdout}


def test_checkout_records_the_payment_with_its_promo_code(stack: Stack, checkout: dict[str, Any]) -> None:
    payment = stack.admin("GET", f"/v1/payments/{checkout['payment_id']}").body

    assert (payment["promo_code"], payment["amount"], payment["purchase_published"]) == (DEMO_PROMO_CODE, 2500, True)


def test_checkout_credits_the_customer_balance_once(stack: Stack, checkout: dict[str, Any]) -> None:
    credit = checkout["purchase"]["credit"]
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": stack.stripe})

    transactions = client.v1.customers.balance_transactions.list(checkout["purchase"]["customer_id"]).data

    assert (credit["amount"], credit["currency"]) == (1000, "eur")
    assert [(txn.id, txn.amount) for txn in transactions] == [(credit["balance_transaction"], -1000)]


def test_checkout_notification_is_delivered_once(stack: Stack, checkout: dict[str, Any]) -> None:
    notification_id = checkout["purchase"]["notification_id"]
    stack.wait_for_status(notification_id, lambda ds: all(d["status"] == "delivered" for d in ds), timeout=60)

    records = [r for r in stack.records() if (r.get("body") or {}).get("purchase_id") == checkout["payment_id"]]

    assert len(records) == 1
    assert records[0]["body"]["event"] == "purchase.completed"


def test_checkout_credit_and_notification_show_on_the_local_page(stack: Stack, checkout: dict[str, Any]) -> None:
    state = stack.call("GET", "/_local/api/state").body
    shown = {purchase["purchase_id"]: purchase for purchase in state["purchases"]}[checkout["payment_id"]]

    assert shown["balance_transaction"] == checkout["purchase"]["credit"]["balance_transaction"]
    assert shown["notification_id"] == checkout["purchase"]["notification_id"]
