"""Unit tests of the payment worker's handler (subscribers/payments.py): SQS batches of one record, partial batch
failures, with fakes of Stripe, the payments table and the publisher; it runs on moto and the real stripe SDK in
tests/integration/subscribers/test_payments.py."""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core import clients
from core.purchases.errors import StripeUnavailableError
from core.purchases.ports import PaymentIntentView
from subscribers import payments
from tests.fakes.lambda_context import FakeLambdaContext
from tests.fakes.payments import FakePaymentGateway, FakePaymentStore, FakePurchasePublisher
from tests.support.events import load_event
from tests.support.stripe_webhooks import event_body, stripe_event

ROOT = Path(__file__).resolve().parents[3]
INTENT = PaymentIntentView(
    id="pi_3PkHzK2eZvKYlo2C0u8QJm3x",
    status="succeeded",
    amount=4999,
    currency="eur",
    customer_id="cus_QbVp7Ws3mZkR1T",
    metadata={"payment_id": "order-A-1042"},
    created=1_723_040_405,
)


class Fakes:
    """The worker's collaborators."""

    def __init__(self) -> None:
        self.gateway = FakePaymentGateway({INTENT.id: INTENT})
        self.store = FakePaymentStore()
        self.publisher = FakePurchasePublisher()


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    found = Fakes()
    for name, value in {
        "STAGE": "prod",
        "AWS_REGION": "eu-west-1",
        "STRIPE_SECRET_KEY_PARAMETER": "/notify/prod/stripe/secret-key",
        "PAYMENTS_TABLE": "notify-prod-payments",
        "PURCHASE_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:notify-prod-purchase",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(payments, "get_stripe_gateway", lambda settings: found.gateway)
    monkeypatch.setattr(payments, "get_payment_store", lambda settings: found.store)
    monkeypatch.setattr(payments, "get_purchase_publisher", lambda settings: found.publisher)
    clients.reset()
    yield found
    clients.reset()


# Below powertools' decorators: the tracer's X-Ray emitter opens a UDP socket, which unit tests forbid. The decorated
# handler runs in the integration suite.
handler = inspect.unwrap(payments.handler)


def _batch(body: str) -> dict[str, Any]:
    event = load_event("sqs_event.json")
    event["Records"][0]["body"] = body
    return event


def test_payment_worker_event_published_batch_acknowledged(fakes: Fakes) -> None:
    result = handler(_batch(event_body(stripe_event("payment_intent_succeeded"))), FakeLambdaContext())

    assert result == {"batchItemFailures": []}
    assert [event.purchase_id for event in fakes.publisher.events] == ["order-A-1042"]


def test_payment_worker_stripe_unavailable_reports_the_record_failed(fakes: Fakes) -> None:
    fakes.gateway.error = StripeUnavailableError("Stripe failed (503)")
    batch = _batch(event_body(stripe_event("payment_intent_succeeded")))

    result = handler(batch, FakeLambdaContext())

    assert result == {"batchItemFailures": [{"itemIdentifier": batch["Records"][0]["messageId"]}]}
    assert fakes.store.records == {}


def test_payment_worker_session_lookup_unavailable_reports_the_record_failed(fakes: Fakes) -> None:
    # INTENT has no promo code: the worker asks Stripe for its Checkout Session, and must not publish without it.
    fakes.gateway.lookup_error = StripeUnavailableError("Stripe failed (503)")
    batch = _batch(event_body(stripe_event("payment_intent_succeeded")))

    result = handler(batch, FakeLambdaContext())

    assert result == {"batchItemFailures": [{"itemIdentifier": batch["Records"][0]["messageId"]}]}
    assert fakes.gateway.calls == [INTENT.id, f"session_for:{INTENT.id}"]
    assert fakes.publisher.events == []


def test_payment_worker_intent_stripe_does_not_know_reports_the_record_failed(fakes: Fakes) -> None:
    """A verified event whose intent Stripe refuses to return goes back to the queue (then the DLQ), never deleted."""
    fakes.gateway.intents.clear()
    batch = _batch(event_body(stripe_event("payment_intent_succeeded")))

    result = handler(batch, FakeLambdaContext())

    assert result == {"batchItemFailures": [{"itemIdentifier": batch["Records"][0]["messageId"]}]}
    assert (fakes.store.records, fakes.publisher.events) == ({}, [])


def test_payment_worker_unexpected_error_reports_the_record_failed(fakes: Fakes) -> None:
    fakes.gateway.error = RuntimeError("bug")
    batch = _batch(event_body(stripe_event("payment_intent_succeeded")))

    result = handler(batch, FakeLambdaContext())

    assert len(result["batchItemFailures"]) == 1


def test_payment_worker_malformed_body_acknowledged_not_retried(fakes: Fakes) -> None:
    result = handler(_batch("{not json"), FakeLambdaContext())

    assert result == {"batchItemFailures": []}
    assert fakes.publisher.events == []


def test_payment_worker_import_does_not_load_the_batch_utility() -> None:
    code = "import sys, subscribers.payments; print('aws_lambda_powertools.utilities.batch' in sys.modules)"

    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "False"
