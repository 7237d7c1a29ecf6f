"""Unit tests of the Stripe webhook route (api/stripe_webhook.py) with API Gateway REST events, the secret and the
queue faked; the handler runs under moto in tests/integration/api/test_stripe_webhook.py."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api import stripe_webhook
from api.openapi import build_document, routers
from core import clients
from core.errors import UpstreamError
from tests.fakes.payments import FakeWebhookQueue
from tests.support.events import api_event, response_json
from tests.support.stripe_webhooks import WEBHOOK_SECRET, event_body, sign, stripe_event

ROOT = Path(__file__).resolve().parents[3]
PAYLOAD = event_body(stripe_event("payment_intent_succeeded"))
NON_ASCII = "\u00e9"


class FakeSecret:
    """The endpoint secret, counting its reads."""

    def __init__(self, value: str = WEBHOOK_SECRET) -> None:
        self.value = value
        self.reads = 0

    def get(self) -> str:
        self.reads += 1
        return self.value


@pytest.fixture
def queue() -> FakeWebhookQueue:
    return FakeWebhookQueue()


@pytest.fixture
def secret() -> FakeSecret:
    return FakeSecret()


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, queue: FakeWebhookQueue, secret: FakeSecret) -> Iterator[None]:
    for name, value in {
        "STAGE": "prod",
        "AWS_REGION": "eu-west-1",
        "STRIPE_WEBHOOK_SECRET_PARAMETER": "/notify/prod/stripe/webhook-secret",
        "STRIPE_WEBHOOK_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/notify-prod-stripe-webhooks",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(stripe_webhook, "get_stripe_webhook_secret", lambda settings: secret)
    monkeypatch.setattr(stripe_webhook, "get_stripe_webhook_queue", lambda settings: queue)
    clients.reset()
    yield
    clients.reset()


def _post(body: str, signature: str | None, base64_encoded: bool = False) -> dict[str, Any]:
    headers = {"Stripe-Signature": signature} if signature is not None else {}
    event = api_event("POST", stripe_webhook.WEBHOOK_PATH, body=body, headers=headers, api_key=None, api_key_id=None)
    if base64_encoded:
        event["body"] = base64.b64encode(body.encode()).decode()
        event["isBase64Encoded"] = True
    result: dict[str, Any] = stripe_webhook.app.resolve(event)
    return result


def test_stripe_webhook_signed_event_answers_received_and_is_queued(queue: FakeWebhookQueue) -> None:
    response = _post(PAYLOAD, sign(PAYLOAD))

    assert (response["statusCode"], response_json(response)) == (200, {"received": True})
    assert [(json.loads(payload)["id"], event.event_id) for payload, event in queue.sent] == [
        ("evt_3PkHzK2eZvKYlo2C0n1kWq8a", "evt_3PkHzK2eZvKYlo2C0n1kWq8a")
    ]


def test_stripe_webhook_queued_message_holds_no_client_secret(queue: FakeWebhookQueue) -> None:
    assert "client_secret" in PAYLOAD

    _post(PAYLOAD, sign(PAYLOAD))

    assert "client_secret" not in queue.sent[0][0]


def test_stripe_webhook_base64_body_verified_on_the_decoded_text(queue: FakeWebhookQueue) -> None:
    response = _post(PAYLOAD, sign(PAYLOAD), base64_encoded=True)

    assert response["statusCode"] == 200
    assert json.loads(queue.sent[0][0])["id"] == "evt_3PkHzK2eZvKYlo2C0n1kWq8a"


def test_stripe_webhook_header_name_is_case_insensitive(queue: FakeWebhookQueue) -> None:
    event = api_event("POST", stripe_webhook.WEBHOOK_PATH, body=PAYLOAD, headers={"stripe-signature": sign(PAYLOAD)})

    assert stripe_webhook.app.resolve(event)["statusCode"] == 200


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        (lambda: None, "Stripe-Signature header is missing"),
        (lambda: "v1=abc", "Stripe-Signature header is malformed: expected t=<timestamp>,v1=<signature>"),
        (lambda: sign(PAYLOAD, "whsec_wrong"), "Stripe-Signature does not match the body and the endpoint secret"),
        (
            lambda: f"t={int(time.time())},v1={'a' * 64}",
            "Stripe-Signature does not match the body and the endpoint secret",
        ),
        (lambda: "t=\u00b2,v1=abc", "Stripe-Signature header is malformed: it is not ASCII"),
        (
            lambda: f"t={'1' * 5000},v1={'a' * 64}",
            "Stripe-Signature header is malformed: expected t=<timestamp>,v1=<signature>",
        ),
        (lambda: f"t={int(time.time())},v1={NON_ASCII * 64}", "Stripe-Signature header is malformed: it is not ASCII"),
        (
            lambda: sign(PAYLOAD, timestamp=int(time.time()) - 3600),
            "Stripe-Signature timestamp is outside the tolerance of 300 s",
        ),
    ],
    ids=["missing", "malformed", "wrong-secret", "forged", "superscript-t", "5000-digit-t", "non-ascii", "stale"],
)
def test_stripe_webhook_refused_400_naming_the_problem_nothing_queued(
    signature: Callable[[], str | None], message: str, queue: FakeWebhookQueue
) -> None:
    # Signed when the test runs, not when it is collected: a long suite would otherwise make every one stale.
    response = _post(PAYLOAD, signature())

    assert (response["statusCode"], response_json(response)) == (400, {"message": message})
    assert queue.sent == []


def test_stripe_webhook_unhandled_type_without_object_id_answers_received_not_queued(queue: FakeWebhookQueue) -> None:
    """``balance.available`` (a Balance has no id) was answered 400, so Stripe retried it and could disable us."""
    event = stripe_event("payment_intent_succeeded", type="balance.available")
    event["data"] = {"object": {"object": "balance", "available": [{"amount": 4999, "currency": "eur"}]}}
    payload = event_body(event)

    response = _post(payload, sign(payload))

    assert (response["statusCode"], response_json(response)) == (200, {"received": True})
    assert queue.sent == []


def test_stripe_webhook_refusal_never_logs_the_secret_or_header(logs: Any) -> None:
    signature = sign(PAYLOAD, "whsec_wrong")

    _post(PAYLOAD, signature)

    output = logs()
    assert "Stripe webhook refused" in output
    assert WEBHOOK_SECRET not in output
    assert signature.split("v1=")[1] not in output


def test_stripe_webhook_missing_header_does_not_read_the_secret(secret: FakeSecret) -> None:
    _post(PAYLOAD, None)

    assert secret.reads == 0


def test_stripe_webhook_queue_failure_answers_502(queue: FakeWebhookQueue) -> None:
    queue.error = UpstreamError("enqueuing the Stripe event failed (ServiceUnavailable)")

    response = _post(PAYLOAD, sign(PAYLOAD))

    assert response["statusCode"] == 502
    assert "enqueuing the Stripe event failed" in response_json(response)["message"]


def test_stripe_webhook_route_in_the_openapi_document_without_a_key() -> None:
    operation = build_document(routers())["paths"]["/v1/webhooks/stripe"]["post"]

    assert operation["security"] == []
    assert set(operation["responses"]) == {"200", "400", "502"}
    assert {"name": "Stripe-Signature", "in": "header", "required": False, "schema": {"type": "string"}} in operation[
        "parameters"
    ]


def test_stripe_webhook_import_does_not_load_the_stripe_sdk() -> None:
    code = "import sys, api.stripe_webhook; print('stripe' in sys.modules)"

    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "False"


def test_stripe_webhook_import_does_not_load_the_channels() -> None:
    code = "import sys, api.stripe_webhook; print('core.channels' in sys.modules)"

    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "False"
