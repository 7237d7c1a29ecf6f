"""The payment worker under moto, the real stripe SDK retrieving PaymentIntents from the local Stripe server over
HTTP, the Purchase events read back from a queue subscribed to the topic; the payments store's conditions under
DynamoDB's rules (moto)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from core import clients
from core.errors import NotFoundError, UpstreamError
from core.purchases.errors import PublicationBusyError
from core.purchases.models import PromotionRequest
from core.purchases.payments import INTENT_TIE_PREFIX, MAX_EVENTS, STATUS_SUCCEEDED, Payment, PaymentStore
from core.purchases.promotions import PromotionStore
from core.purchases.purchases import PurchaseStore
from core.purchases.settings import PaymentWorkerSettings
from core.purchases.webhooks import WebhookOutcome, process_webhook_event
from core.settings import load_settings
from tests.fakes.lambda_context import FakeLambdaContext
from tests.integration.subscribers.conftest import PURCHASE_TABLES, PurchaseTopic
from tests.integration.subscribers.purchases import sns_event
from tests.support.aws import AwsResources
from tests.support.aws import client as aws_client
from tests.support.events import load_event
from tests.support.stripe_webhooks import event_body, stripe_event

PAYMENTS_TABLE = PURCHASE_TABLES["PAYMENTS_TABLE"][0]


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    """The payments table alone under moto: the store's suites need nothing else."""
    from moto import mock_aws

    with mock_aws():
        client = aws_client("dynamodb")
        client.create_table(
            TableName=PAYMENTS_TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "payment_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "payment_id", "KeyType": "HASH"}],
        )
        yield client


@pytest.fixture
def customer_id(stripe_server: Any) -> str:
    """A customer of the local Stripe server."""
    found: str = stripe_server.client().v1.customers.create({"email": "ada@example.com"}).id
    return found


def _batch(intent_id: str, event_id: str = "evt_3PkHzK2eZvKYlo2C0n1kWq8a") -> dict[str, Any]:
    event = stripe_event("payment_intent_succeeded", id=event_id)
    # The event's copy is never trusted: the worker retrieves the intent.
    event["data"]["object"].update(id=intent_id, amount=1, currency="jpy", customer=None)
    batch = load_event("sqs_event.json")
    batch["Records"][0]["body"] = event_body(event)
    return batch


def _store(dynamodb: Any, now: float = 1_723_040_405.0) -> PaymentStore:
    return PaymentStore(dynamodb, PAYMENTS_TABLE, claim_seconds=300, clock=lambda: now)


@dataclass(frozen=True)
class PaymentWorker:
    """The payment worker's surroundings: the local Stripe server and its customer, the tables under moto, the
    Purchase topic and the Lambda context the handler is called with."""

    stripe: Any
    customer_id: str
    aws: AwsResources
    topic: PurchaseTopic
    context: FakeLambdaContext

    def succeeded_intent(self, metadata: dict[str, str]) -> str:
        """Create and confirm a PaymentIntent of the customer carrying ``metadata``; return its id."""
        client = self.stripe.client()
        params: dict[str, Any] = {
            "amount": 4999,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "metadata": metadata,
            "customer": self.customer_id,
        }
        intent = client.v1.payment_intents.create(params)
        intent_id: str = client.v1.payment_intents.confirm(intent.id).id
        return intent_id

    def work(self, batch: dict[str, Any]) -> Any:
        """Call the payment worker's handler with an SQS batch."""
        from subscribers.payments import handler

        return handler(batch, self.context)

    def published(self) -> list[dict[str, Any]]:
        """Return the SNS envelopes published on the Purchase topic since the last call."""
        return self.topic.published(self.aws.sqs)

    def store(self) -> PaymentStore:
        """Return the payments store on the worker's table."""
        return _store(self.aws.dynamodb)


@pytest.fixture
def worker(
    purchases_aws: AwsResources,
    purchase_topic: PurchaseTopic,
    stripe_server: Any,
    customer_id: str,
    lambda_context: FakeLambdaContext,
) -> PaymentWorker:
    """The payment worker with everything it talks to, its customer on the local Stripe server."""
    return PaymentWorker(stripe_server, customer_id, purchases_aws, purchase_topic, lambda_context)


def test_payment_worker_records_the_payment_and_publishes_the_purchase_on_the_topic(worker: PaymentWorker) -> None:
    metadata = {"payment_id": "order-A-1042", "promo_code": "summer24", "email": "ada@example.com"}
    intent_id = worker.succeeded_intent(metadata)

    result = worker.work(_batch(intent_id))

    assert result == {"batchItemFailures": []}
    (delivered,) = worker.published()
    purchase = json.loads(delivered["Message"])
    assert {key: value for key, value in purchase.items() if key != "purchased_at"} == {
        "purchase_id": "order-A-1042",
        "customer_id": worker.customer_id,
        "email": "ada@example.com",
        "amount": 4999,
        "currency": "eur",
        "promo_code": "SUMMER24",
    }
    assert delivered["MessageAttributes"]["has_promo_code"] == {"Type": "String", "Value": "true"}
    assert delivered["MessageAttributes"]["promo_code"] == {"Type": "String", "Value": "SUMMER24"}
    record = worker.store().get("order-A-1042")
    assert (record.payment_intent, record.status, record.purchase_published) == (intent_id, STATUS_SUCCEEDED, True)


def test_payment_worker_payment_refunded_in_full_before_its_event_is_handled_publishes_nothing(
    worker: PaymentWorker,
) -> None:
    # A PaymentIntent still says succeeded after a full refund: handled late (a backlog, a redrive, Stripe sending it
    # again), the payment was published and earned its promo credit, though the customer paid nothing in the end.
    intent_id = worker.succeeded_intent({"promo_code": "WELCOME10"})
    worker.stripe.client().v1.refunds.create({"payment_intent": intent_id})

    result = worker.work(_batch(intent_id))

    assert result == {"batchItemFailures": []}
    assert worker.published() == []


def test_payment_worker_payment_refunded_in_part_is_published(worker: PaymentWorker) -> None:
    intent_id = worker.succeeded_intent({"payment_id": "order-R-1"})
    worker.stripe.client().v1.refunds.create({"payment_intent": intent_id, "amount": 999})

    worker.work(_batch(intent_id))

    (delivered,) = worker.published()
    assert json.loads(delivered["Message"])["amount"] == 4999


def _captured_in_part(worker: PaymentWorker, payment_id: str, authorised: int, captured: int) -> str:
    """Authorise ``authorised`` on the customer's card (manual capture), capture ``captured`` of it; return the id."""
    client = worker.stripe.client()
    intent = client.v1.payment_intents.create(
        {
            "amount": authorised,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "customer": worker.customer_id,
            "capture_method": "manual",
            "metadata": {"payment_id": payment_id},
        }
    )
    client.v1.payment_intents.confirm(intent.id)
    client.v1.payment_intents.capture(intent.id, {"amount_to_capture": captured})
    return str(intent.id)


def test_payment_worker_payment_captured_in_part_is_published_with_what_was_taken(worker: PaymentWorker) -> None:
    """10.00 authorised, 4.00 captured: the Purchase event and the payment said 1000, the amount Stripe keeps as
    authorised, and the customer's notification told them they paid 10.00 EUR."""
    intent_id = _captured_in_part(worker, "order-PC-1", 1000, 400)
    intent = worker.stripe.client().v1.payment_intents.retrieve(intent_id)
    assert (intent.amount, intent.amount_received) == (1000, 400)

    assert worker.work(_batch(intent_id)) == {"batchItemFailures": []}

    (delivered,) = worker.published()
    assert json.loads(delivered["Message"])["amount"] == 400
    assert worker.store().get("order-PC-1").amount == 400


def test_payment_worker_payment_captured_in_part_then_refunded_in_full_publishes_nothing(
    worker: PaymentWorker,
) -> None:
    intent_id = _captured_in_part(worker, "order-PC-2", 1000, 400)
    worker.stripe.client().v1.refunds.create({"payment_intent": intent_id})

    assert worker.work(_batch(intent_id)) == {"batchItemFailures": []}
    assert worker.published() == []


def test_payment_worker_intent_without_promo_code_or_checkout_session_publishes_without_code(
    worker: PaymentWorker,
) -> None:
    # The worker looks the intent's Checkout Session up; localstripe answers 404 (no Checkout), which is "no session".
    intent_id = worker.succeeded_intent({"payment_id": "order-D-1"})

    result = worker.work(_batch(intent_id))

    assert result == {"batchItemFailures": []}
    (delivered,) = worker.published()
    assert "promo_code" not in json.loads(delivered["Message"])
    assert delivered["MessageAttributes"]["has_promo_code"] == {"Type": "String", "Value": "false"}
    assert worker.store().get("order-D-1").purchase_published is True


def test_payment_worker_session_lookup_500_fails_the_record_for_a_retry(worker: PaymentWorker) -> None:
    intent_id = worker.succeeded_intent({})
    worker.stripe.fail("/v1/checkout/sessions", status=500)
    batch = _batch(intent_id)

    result = worker.work(batch)

    assert result == {"batchItemFailures": [{"itemIdentifier": batch["Records"][0]["messageId"]}]}
    assert worker.published() == []


def test_payment_worker_replayed_event_records_nothing_twice_and_publishes_once(worker: PaymentWorker) -> None:
    intent_id = worker.succeeded_intent({})
    worker.work(_batch(intent_id))
    first = worker.store().get(intent_id)

    result = worker.work(_batch(intent_id))

    assert result == {"batchItemFailures": []}
    assert worker.store().get(intent_id) == first
    assert len(worker.published()) == 1


def test_payment_worker_two_events_of_one_payment_publish_one_purchase(worker: PaymentWorker) -> None:
    intent_id = worker.succeeded_intent({"payment_id": "order-B-7"})

    worker.work(_batch(intent_id, "evt_first"))
    worker.work(_batch(intent_id, "evt_second"))

    assert worker.store().get("order-B-7").events == ["evt_first", "evt_second"]
    assert len(worker.published()) == 1


class _Meanwhile:
    """The worker's publisher; while its first publish is under way (claimed, not yet marked), ``meanwhile`` runs
    (another worker) and what it returned or raised is kept; ``fail`` fails the first publish instead."""

    def __init__(self, publisher: Any, meanwhile: Callable[[], Any] | None = None, fail: bool = False) -> None:
        self._publisher, self._meanwhile, self._fail = publisher, meanwhile, fail
        self.concurrent: Any = None

    def publish(self, event: Any) -> str:
        meanwhile, self._meanwhile = self._meanwhile, None
        if meanwhile is not None:
            try:
                self.concurrent = meanwhile()
            except Exception as exc:
                self.concurrent = exc
        if self._fail:
            self._fail = False
            raise UpstreamError("publishing the purchase failed (InternalError)")
        message_id: str = self._publisher.publish(event)
        return message_id


def _worker_parts() -> tuple[Any, Any, Any]:
    config = load_settings(PaymentWorkerSettings)
    return clients.get_stripe_gateway(config), clients.get_payment_store(config), clients.get_purchase_publisher(config)


@pytest.mark.parametrize(
    "second_event_id",
    ["evt_3PkHzK2eZvKYlo2C0n1kWq8a", "evt_1PkI3c2eZvKYlo2Cq9RfV0xT"],
    ids=["same-event-twice", "second-event-of-the-payment"],
)
def test_payment_worker_events_of_one_payment_handled_at_once_publish_one_purchase_and_the_other_is_retried(
    worker: PaymentWorker, second_event_id: str
) -> None:
    # SQS hands one message over twice, or Stripe sends an event again when its first answer was late: a copy handled
    # while the first publishes is retried (the first may yet fail), never published a second time.
    intent_id = worker.succeeded_intent({"payment_id": "order-C-9"})
    gateway, store, publisher = _worker_parts()
    second = _batch(intent_id, second_event_id)["Records"][0]["body"]
    meanwhile = _Meanwhile(publisher, lambda: process_webhook_event(second, gateway, store, publisher))

    first = process_webhook_event(_batch(intent_id)["Records"][0]["body"], gateway, store, meanwhile)

    assert first.outcome == WebhookOutcome.PUBLISHED
    assert isinstance(meanwhile.concurrent, PublicationBusyError)
    assert process_webhook_event(second, gateway, store, publisher).outcome == WebhookOutcome.DUPLICATE
    assert len(worker.published()) == 1


def test_payment_worker_publish_failed_releases_its_claim_and_the_retry_publishes(worker: PaymentWorker) -> None:
    intent_id = worker.succeeded_intent({})
    gateway, store, publisher = _worker_parts()
    body = _batch(intent_id)["Records"][0]["body"]

    with pytest.raises(UpstreamError):
        process_webhook_event(body, gateway, store, _Meanwhile(publisher, fail=True))
    retried = process_webhook_event(body, gateway, store, publisher)

    assert retried.outcome == WebhookOutcome.PUBLISHED
    assert len(worker.published()) == 1


@pytest.mark.parametrize(
    "second_event_id",
    ["evt_3PkHzK2eZvKYlo2C0n1kWq8a", "evt_1PkI3c2eZvKYlo2Cq9RfV0xT"],
    ids=["same-event-replayed", "second-event-of-the-payment"],
)
def test_payment_worker_payment_id_set_after_payment_publishes_one_purchase_under_the_first_id(
    worker: PaymentWorker, second_event_id: str
) -> None:
    # A shop's backend commonly tags the intent with its order number on its own payment_intent.succeeded; the event
    # handled next (an SQS redelivery, a DLQ redrive, the payment's other event) must not make a second payment.
    intent_id = worker.succeeded_intent({"promo_code": "WELCOME10"})
    worker.work(_batch(intent_id))
    worker.stripe.client().v1.payment_intents.update(intent_id, {"metadata": {"payment_id": "order-77"}})

    result = worker.work(_batch(intent_id, second_event_id))

    assert result == {"batchItemFailures": []}
    (delivered,) = worker.published()
    assert json.loads(delivered["Message"])["purchase_id"] == intent_id
    with pytest.raises(NotFoundError):
        worker.store().get("order-77")


def test_payment_worker_payment_id_changed_between_its_two_events_publishes_one_purchase(
    worker: PaymentWorker,
) -> None:
    intent_id = worker.succeeded_intent({"payment_id": "order-B-8", "promo_code": "WELCOME10"})
    worker.work(_batch(intent_id, "evt_first"))
    worker.stripe.client().v1.payment_intents.update(intent_id, {"metadata": {"payment_id": "order-B-9"}})

    worker.work(_batch(intent_id, "evt_second"))

    (delivered,) = worker.published()
    assert json.loads(delivered["Message"])["purchase_id"] == "order-B-8"
    assert worker.store().get("order-B-8").events == ["evt_first", "evt_second"]


def _paid_a_second_after_it_was_created(worker: PaymentWorker, metadata: dict[str, str]) -> tuple[Any, Any]:
    """Create a PaymentIntent (a Payment Element makes it when the checkout page loads), then confirm it once a
    second of Stripe's clock has passed; return the intent as created and as paid (its charge expanded)."""
    client = worker.stripe.client()
    intent = client.v1.payment_intents.create(
        {
            "amount": 4999,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "metadata": metadata,
            "customer": worker.customer_id,
        }
    )
    while time.time() < intent.created + 1:
        time.sleep(0.05)
    paid = client.v1.payment_intents.confirm(intent.id, {"expand": ["latest_charge"]})
    return intent, paid


def test_payment_worker_purchase_dated_when_its_charge_was_made_not_when_its_intent_was(worker: PaymentWorker) -> None:
    intent, paid = _paid_a_second_after_it_was_created(worker, {"payment_id": "order-T-1"})
    assert paid.latest_charge.created > intent.created

    worker.work(_batch(intent.id))

    (delivered,) = worker.published()
    purchased_at = datetime.fromisoformat(json.loads(delivered["Message"])["purchased_at"])
    assert purchased_at == datetime.fromtimestamp(paid.latest_charge.created, UTC)


def test_payment_worker_intent_paid_after_its_promotion_expired_earns_no_credit(worker: PaymentWorker) -> None:
    from subscribers.credit import handler as credit

    intent, _ = _paid_a_second_after_it_was_created(worker, {"payment_id": "order-X-1", "promo_code": "LASTDAY"})
    # The promotion ended after the checkout page made the intent, before the customer paid.
    ended = datetime.fromtimestamp(intent.created + 1, UTC)
    request = {"credit": {"amount": 1000, "currency": "eur"}, "expires_at": ended.isoformat()}
    promotions = PromotionStore(worker.aws.dynamodb, PURCHASE_TABLES["PROMOTIONS_TABLE"][0])
    promotions.put("LASTDAY", PromotionRequest.model_validate(request), datetime.now(UTC))
    worker.work(_batch(intent.id))
    (delivered,) = worker.published()

    result = credit(sns_event(delivered["Message"]), worker.context)

    assert result == {"purchases": {"order-X-1": "refused"}}
    assert PurchaseStore(worker.aws.dynamodb, PURCHASE_TABLES["PURCHASES_TABLE"][0]).get("order-X-1").credit_error == (
        "expired_code"
    )
    assert list(worker.stripe.client().v1.customers.balance_transactions.list(worker.customer_id).data) == []


def test_payment_worker_stripe_500_fails_the_record_for_a_retry(worker: PaymentWorker) -> None:
    intent_id = worker.succeeded_intent({})
    worker.stripe.fail("/v1/payment_intents", status=500)
    batch = _batch(intent_id)

    result = worker.work(batch)

    assert result == {"batchItemFailures": [{"itemIdentifier": batch["Records"][0]["messageId"]}]}
    assert worker.published() == []
    assert worker.work(batch) == {"batchItemFailures": []}
    assert len(worker.published()) == 1


def test_payment_worker_intent_stripe_does_not_know_fails_the_record_for_a_retry(worker: PaymentWorker) -> None:
    """Stripe's 404 for a verified event's own intent (a wrong key) keeps the message for the alarmed DLQ."""
    batch = _batch("pi_3PkHzK2eZvKYlo2C0unknown")

    result = worker.work(batch)

    assert result == {"batchItemFailures": [{"itemIdentifier": batch["Records"][0]["messageId"]}]}
    assert worker.published() == []


def test_payment_store_same_event_twice_changes_nothing(dynamodb: Any) -> None:
    store = _store(dynamodb)
    store.record(Payment("order-1", "pi_1", 4999, "eur", "cus_A1"), "evt_1")

    write = _store(dynamodb, now=1_723_049_999.0).record(
        Payment("order-1", "pi_1", 4999, "eur", "cus_A1", "LATE"), "evt_1"
    )

    assert write.recorded is False
    assert (write.record.promo_code, write.record.updated_at.timestamp()) == (None, 1_723_040_405.0)


def test_payment_store_second_event_adds_what_was_missing_keeps_the_rest(dynamodb: Any) -> None:
    store = _store(dynamodb)
    store.record(Payment("order-1", "pi_1", 4999, "eur"), "evt_1")

    write = store.record(Payment("order-1", "pi_other", 1, "usd", "cus_A1", "WELCOME10"), "evt_2")

    record = write.record
    assert write.recorded is True
    assert (record.payment_intent, record.amount, record.currency) == ("pi_1", 4999, "eur")
    assert (record.customer_id, record.promo_code, record.status) == ("cus_A1", "WELCOME10", STATUS_SUCCEEDED)
    assert record.events == ["evt_1", "evt_2"]


def test_payment_store_event_ids_are_bounded(dynamodb: Any) -> None:
    store = _store(dynamodb)
    for index in range(MAX_EVENTS):
        store.record(Payment("order-1", "pi_1", 4999, "eur", "cus_A1"), f"evt_{index}")

    write = store.record(Payment("order-1", "pi_1", 4999, "eur", "cus_A1"), "evt_more")

    assert write.recorded is False
    assert len(write.record.events) == MAX_EVENTS


def test_payment_store_one_claimant_publishes(dynamodb: Any) -> None:
    store = _store(dynamodb)
    store.record(Payment("order-1", "pi_1", 4999, "eur", "cus_A1"), "evt_1")

    assert store.claim_publication("order-1", "evt_1") is True
    assert store.claim_publication("order-1", "evt_2") is False
    assert store.claim_publication("order-1", "evt_1") is True
    store.mark_published("order-1", "sns-1")
    assert store.claim_publication("order-1", "evt_1") is False
    assert store.get("order-1").purchase_published is True


def test_payment_store_release_drops_only_the_claimants_own_claim(dynamodb: Any) -> None:
    store = _store(dynamodb)
    store.record(Payment("order-1", "pi_1", 4999, "eur", "cus_A1"), "evt_1")
    store.claim_publication("order-1", "evt_1:a")

    store.release_publication("order-1", "evt_1:b")
    assert store.claim_publication("order-1", "evt_1:b") is False
    store.release_publication("order-1", "evt_1:a")
    assert store.claim_publication("order-1", "evt_1:b") is True


def test_payment_store_stale_claim_taken_over(dynamodb: Any) -> None:
    _store(dynamodb).record(Payment("order-1", "pi_1", 4999, "eur", "cus_A1"), "evt_1")
    _store(dynamodb).claim_publication("order-1", "evt_1")

    assert _store(dynamodb, now=1_723_040_405.0 + 301).claim_publication("order-1", "evt_2") is True


def test_payment_store_claim_of_an_unknown_payment_refused(dynamodb: Any) -> None:
    assert _store(dynamodb).claim_publication("order-404", "evt_1") is False


def test_payment_store_intent_recorded_again_under_another_payment_id_keeps_the_first(dynamodb: Any) -> None:
    store = _store(dynamodb)
    store.record(Payment("order-1", "pi_1", 4999, "eur", "cus_A1"), "evt_1")

    write = store.record(Payment("order-2", "pi_1", 4999, "eur", "cus_A1"), "evt_1")

    assert (write.recorded, write.record.payment_id, write.record.events) == (False, "order-1", ["evt_1"])
    with pytest.raises(NotFoundError):
        store.get("order-2")


def test_payment_store_intent_recorded_under_its_own_id_before_the_tie_keeps_it(dynamodb: Any) -> None:
    # Recorded by the worker of before the intent's tie to its payment id: the item alone, keyed by the intent's id.
    item = {
        "payment_id": {"S": "pi_1"},
        "payment_intent": {"S": "pi_1"},
        "customer_id": {"S": "cus_A1"},
        "amount": {"N": "4999"},
        "currency": {"S": "eur"},
        "status": {"S": STATUS_SUCCEEDED},
        "events": {"SS": ["evt_1"]},
        "purchase_published": {"BOOL": True},
        "created_at": {"S": "2024-08-07T14:20:05.000Z"},
        "updated_at": {"S": "2024-08-07T14:20:05.000Z"},
    }
    dynamodb.put_item(TableName=PAYMENTS_TABLE, Item=item)

    write = _store(dynamodb).record(Payment("order-1", "pi_1", 4999, "eur", "cus_A1"), "evt_2")

    assert (write.record.payment_id, write.record.events, write.record.purchase_published) == (
        "pi_1",
        ["evt_1", "evt_2"],
        True,
    )


def test_payment_store_two_intents_of_one_payment_id_share_the_payment(dynamodb: Any) -> None:
    store = _store(dynamodb)
    store.record(Payment("order-1", "pi_1", 4999, "eur", "cus_A1"), "evt_1")

    write = store.record(Payment("order-1", "pi_2", 4999, "eur", "cus_A1"), "evt_2")

    assert (write.record.payment_id, write.record.payment_intent, write.record.events) == (
        "order-1",
        "pi_1",
        ["evt_1", "evt_2"],
    )


def test_payment_store_tie_of_an_intent_is_no_payment(dynamodb: Any) -> None:
    store = _store(dynamodb)
    store.record(Payment("order-1", "pi_1", 4999, "eur", "cus_A1"), "evt_1")

    with pytest.raises(NotFoundError):
        store.get(f"{INTENT_TIE_PREFIX}pi_1")
