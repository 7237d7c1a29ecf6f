"""Play a checkout on the running local stack, end to end, as ``stripe trigger payment_intent.succeeded`` does.

``python -m infra.local.checkout [--promo CODE] [--customer cus_…] [--amount 2500] [--currency eur]``

In the local Stripe server (``http://127.0.0.1:$LOCAL_STRIPE_PORT``, default ``$PORT + 4``) it creates a customer
(unless given), then a PaymentIntent with ``metadata[payment_id]`` and ``metadata[promo_code]``, and confirms it
(test card ``pm_card_visa``) so it succeeds. It then sends the ``payment_intent.succeeded`` event, signed with the
local webhook secret (``LOCAL_STRIPE_WEBHOOK_SECRET``, default ``whsec_local_notify``), to the API's
``POST /v1/webhooks/stripe`` (``http://127.0.0.1:$PORT``, default 3000), and prints the ids, the route's answer and
the commands that show the payment and the purchase (``LOCAL_ADMIN_TOKEN``, default ``local-admin-token``).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from infra.local.stripe import (
    API_KEY,
    HOST,
    WEBHOOK_PATH,
    StripeServerError,
    WebhookAnswer,
    build_event,
    deliver_event,
    stripe_port,
    webhook_secret,
)

DEFAULT_API_PORT = 3000
DEFAULT_ADMIN_TOKEN = "local-admin-token"  # noqa: S105 - the documented local default
# Stripe's test PaymentMethod whose charges succeed.
TEST_PAYMENT_METHOD = "pm_card_visa"


class CheckoutError(Exception):
    """A step of the checkout failed; the message says which and what to check."""


def _parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    api_port = int(environ.get("PORT") or DEFAULT_API_PORT)
    parser = argparse.ArgumentParser(prog="python -m infra.local.checkout", description=__doc__.split("\n")[0])
    parser.add_argument("--promo", metavar="CODE", help="promo code, put in the PaymentIntent's metadata")
    parser.add_argument("--customer", metavar="cus_…", help="an existing customer of the local Stripe server")
    parser.add_argument("--amount", type=int, default=2500, help="in minor units (default 2500)")
    parser.add_argument("--currency", default="eur", help="default eur")
    parser.add_argument("--payment-id", help="the payment (and purchase) id; default: a new one")
    parser.add_argument("--api-url", default=f"http://{HOST}:{api_port}", help="the local API (default $PORT)")
    parser.add_argument(
        "--stripe-url",
        default=f"http://{HOST}:{stripe_port(environ, api_port)}",
        help="the local Stripe server (default $LOCAL_STRIPE_PORT, else $PORT + 4)",
    )
    return parser


def run_checkout(
    client: Any,
    *,
    api_url: str,
    secret: str,
    amount: int,
    currency: str,
    promo: str | None = None,
    customer_id: str | None = None,
    payment_id: str | None = None,
) -> tuple[str, Any, dict[str, Any], WebhookAnswer]:
    """Create (or take) a customer, make a PaymentIntent succeed and deliver its signed event to the webhook route.

    Returns the customer id, the PaymentIntent, the event sent and the route's answer.
    """
    import stripe

    payment_id = payment_id or f"pay_{secrets.token_hex(8)}"
    metadata = {"payment_id": payment_id, **({"promo_code": promo} if promo else {})}
    given = customer_id
    try:
        if customer_id is None:
            customer_id = client.v1.customers.create({"name": "Local checkout", "email": "checkout@example.com"}).id
        intent = client.v1.payment_intents.create(
            {
                "amount": amount,
                "currency": currency,
                "customer": customer_id,
                "payment_method": TEST_PAYMENT_METHOD,
                "metadata": metadata,
            }
        )
        intent = client.v1.payment_intents.confirm(intent.id)
    except stripe.APIConnectionError:
        raise CheckoutError("the local Stripe server does not answer; is `make run` running?") from None
    except stripe.InvalidRequestError as exc:
        if given is not None and exc.http_status == 404:
            raise CheckoutError(
                f"customer {given} is unknown to the local Stripe server (it starts empty at every `make run`):"
                " run without --customer to create one"
            ) from None
        raise CheckoutError(f"the local Stripe server refused the checkout: {exc.user_message or exc}") from None
    except stripe.StripeError as exc:
        raise CheckoutError(f"the local Stripe server refused the checkout: {exc.user_message or exc}") from None
    if intent.status != "succeeded":
        raise CheckoutError(f"the PaymentIntent {intent.id} is {intent.status}, not succeeded")
    response = intent.last_response
    data_object = response.data if response is not None else intent.to_dict()
    event = build_event("payment_intent.succeeded", data_object)
    answer = deliver_event(api_url.rstrip("/") + WEBHOOK_PATH, event, secret)
    return customer_id, intent, event, answer


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    """Play the checkout and print what it made; 0 when the webhook route took the event."""
    try:
        args = _parser(environ).parse_args(argv)
    except (StripeServerError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    import stripe

    client = stripe.StripeClient(API_KEY, base_addresses={"api": args.stripe_url}, max_network_retries=2)
    try:
        customer_id, intent, event, answer = run_checkout(
            client,
            api_url=args.api_url,
            secret=webhook_secret(environ),
            amount=args.amount,
            currency=args.currency.lower(),
            promo=args.promo,
            customer_id=args.customer,
            payment_id=args.payment_id,
        )
    except CheckoutError as exc:
        print(f"checkout failed: {exc}", file=sys.stderr)
        return 1
    payment_id = intent.metadata["payment_id"]
    api_url = args.api_url.rstrip("/")
    route = api_url + WEBHOOK_PATH
    promo = f"promo {args.promo}" if args.promo else "no promo code"
    print(f"customer        {customer_id}")
    print(f"payment intent  {intent.id} {intent.status}, {intent.amount} {intent.currency} (minor units), {promo}")
    print(f"payment id      {payment_id} (the purchase id)")
    if answer.error is not None:
        print(f"webhook         {event['type']} {event['id']} → POST {route}: no answer ({answer.error})")
        print("is `make run` running?", file=sys.stderr)
        return 1
    print(f"webhook         {event['type']} {event['id']} → POST {route}: {answer.status} {_compact(answer.body)}")
    token = environ.get("LOCAL_ADMIN_TOKEN") or DEFAULT_ADMIN_TOKEN
    header = shlex.quote(f"Authorization: Bearer {token}")
    print()
    print("The worker records the payment and publishes the purchase; the credit and the notification follow:")
    for resource in ("payments", "purchases"):
        print(f"  curl -s -H {header} {shlex.quote(f'{api_url}/v1/{resource}/{payment_id}')}")
    return 0 if answer.ok else 1


def _compact(body: str) -> str:
    try:
        return json.dumps(json.loads(body))
    except ValueError:
        return body.strip()[:200]


if __name__ == "__main__":
    raise SystemExit(main())
