"""Unit tests of the Stripe webhook logic (core/purchases/webhooks.py): the signature check with the real stripe SDK
and headers signed by hand, and the payment worker's handling with fakes of the store, the publisher and Stripe."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import UpstreamError
from core.purchases.errors import (
    PermanentPurchaseError,
    PublicationBusyError,
    StripeEventObjectRefusedError,
    StripeSignatureError,
    StripeUnavailableError,
)
from core.purchases.payments import STATUS_NO_CUSTOMER, STATUS_SUCCEEDED
from core.purchases.ports import CheckoutSessionView, PaymentIntentView
from core.purchases.webhooks import (
    VerifiedEvent,
    WebhookOutcome,
    process_webhook_event,
    receive_webhook,
    webhook_payload,
)
from tests.fakes.payments import FakePaymentGateway, FakePaymentStore, FakePurchasePublisher, FakeWebhookQueue
from tests.support.stripe_webhooks import WEBHOOK_SECRET, event_body, sign, stripe_event

TOLERANCE = 300
INTENT_ID = "pi_3PkHzK2eZvKYlo2C0u8QJm3x"
SESSION_ID = "cs_test_a1Xq9kP2mW7rT4vB8nL3cZ6yH0sD5fG1jK"
SESSION_INTENT_ID = "pi_3PkI3a2eZvKYlo2C1s0dJw4E"


def _secret() -> str:
    return WEBHOOK_SECRET


def _now() -> int:
    """The current Unix time: the SDK checks the tolerance against the real clock."""
    return int(time.time())


def _receive(
    payload: str, signature: str | None, queue: FakeWebhookQueue, secret: Callable[[], str] = _secret
) -> VerifiedEvent:
    return receive_webhook(payload, signature, secret, TOLERANCE, queue, time.time)


# The route: signature first, then the queue.


def test_receive_webhook_signed_event_queues_its_envelope_only() -> None:
    queue = FakeWebhookQueue()
    payload = event_body(stripe_event("payment_intent_succeeded"))

    event = _receive(payload, sign(payload, timestamp=_now()), queue)

    assert event == VerifiedEvent("evt_3PkHzK2eZvKYlo2C0n1kWq8a", "payment_intent.succeeded")
    ((queued, queued_event),) = queue.sent
    assert queued_event == event
    assert json.loads(queued) == {
        "id": "evt_3PkHzK2eZvKYlo2C0n1kWq8a",
        "type": "payment_intent.succeeded",
        "created": 1723040410,
        "livemode": False,
        "api_version": "2024-06-20",
        "data": {"object": {"id": INTENT_ID, "object": "payment_intent"}},
    }


@pytest.mark.parametrize("name", ["payment_intent_succeeded", "checkout_session_completed"])
def test_receive_webhook_queued_body_has_no_client_secret(name: str) -> None:
    queue = FakeWebhookQueue()
    payload = event_body(stripe_event(name))
    assert "client_secret" in payload

    _receive(payload, sign(payload, timestamp=_now()), queue)

    assert "client_secret" not in queue.sent[0][0]
    assert "_secret_" not in queue.sent[0][0]


def test_receive_webhook_forged_signature_refused_nothing_queued() -> None:
    queue = FakeWebhookQueue()
    payload = event_body(stripe_event("payment_intent_succeeded"))

    with pytest.raises(StripeSignatureError, match="does not match"):
        _receive(payload, f"t={_now()},v1={'0' * 64}", queue)

    assert queue.sent == []


def test_receive_webhook_wrong_secret_refused() -> None:
    queue = FakeWebhookQueue()
    payload = event_body(stripe_event("payment_intent_succeeded"))

    with pytest.raises(StripeSignatureError, match="does not match the body and the endpoint secret"):
        _receive(payload, sign(payload, "whsec_another_secret", _now()), queue)

    assert queue.sent == []


def test_receive_webhook_tampered_body_refused() -> None:
    queue = FakeWebhookQueue()
    payload = event_body(stripe_event("payment_intent_succeeded"))
    signature = sign(payload, timestamp=_now())

    with pytest.raises(StripeSignatureError, match="does not match"):
        _receive(payload.replace("4999", "1"), signature, queue)

    assert queue.sent == []


def test_receive_webhook_stale_timestamp_refused() -> None:
    queue = FakeWebhookQueue()
    payload = event_body(stripe_event("payment_intent_succeeded"))

    with pytest.raises(StripeSignatureError, match="outside the tolerance of 300 s"):
        _receive(payload, sign(payload, timestamp=int(time.time()) - TOLERANCE - 60), queue)

    assert queue.sent == []


def test_receive_webhook_within_tolerance_accepted() -> None:
    queue = FakeWebhookQueue()
    payload = event_body(stripe_event("payment_intent_succeeded"))

    _receive(payload, sign(payload, timestamp=int(time.time()) - TOLERANCE + 30), queue)

    assert len(queue.sent) == 1


@pytest.mark.parametrize("header", [None, "", "  "])
def test_receive_webhook_missing_header_refused_without_reading_the_secret(header: str | None) -> None:
    queue = FakeWebhookQueue()

    def secret() -> str:
        raise AssertionError("the secret was read")

    with pytest.raises(StripeSignatureError, match="Stripe-Signature header is missing"):
        _receive(event_body(stripe_event("payment_intent_succeeded")), header, queue, secret)

    assert queue.sent == []


SIGNATURE = "a" * 64


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        f"t=abc,v1={SIGNATURE}",
        f"v1={SIGNATURE}",
        "t=123",
        f"t=1,t=2,v1={SIGNATURE}",
        f"t=123,v0={SIGNATURE}",
        "t=123,v1=00",
        "t=123,v1=abc",
        f"t=123,v1={'A' * 64}",
        f"t=123,v1={SIGNATURE},v1=abc",
        f"t=\u00b2,v1={SIGNATURE}",
        f"t=\u0663,v1={SIGNATURE}",
        f"t={'9' * 5000},v1={SIGNATURE}",
        f"t=12345678901,v1={SIGNATURE}",
        f"t=-1,v1={SIGNATURE}",
    ],
    ids=lambda header: header[:24],
)
def test_receive_webhook_malformed_header_refused(header: str) -> None:
    queue = FakeWebhookQueue()

    with pytest.raises(StripeSignatureError, match="header is malformed"):
        _receive(event_body(stripe_event("payment_intent_succeeded")), header, queue)

    assert queue.sent == []


def test_receive_webhook_several_signatures_one_matching_accepted() -> None:
    queue = FakeWebhookQueue()
    payload = event_body(stripe_event("payment_intent_succeeded"))
    # While an endpoint secret is rolled, Stripe signs with the old and the new one.
    other = sign(payload, "whsec_old_secret", _now()).split(",")[1]

    _receive(payload, f"{sign(payload, timestamp=_now())},{other}", queue)

    assert len(queue.sent) == 1


@pytest.mark.parametrize("payload", ["not json", "[1, 2]", '{"object": "event"}', '{"id": "x", "type": "y"}'])
def test_receive_webhook_signed_body_not_an_event_refused(payload: str) -> None:
    queue = FakeWebhookQueue()

    with pytest.raises(StripeSignatureError, match="not a Stripe event"):
        _receive(payload, sign(payload, timestamp=_now()), queue)

    assert queue.sent == []


def _balance_available() -> str:
    """A ``balance.available`` event as Stripe sends it: its object, a Balance, has no id."""
    event = stripe_event("payment_intent_succeeded", type="balance.available")
    event["data"] = {"object": {"object": "balance", "available": [{"amount": 4999, "currency": "eur"}]}}
    return event_body(event)


def test_receive_webhook_unhandled_type_without_object_id_acknowledged_not_queued() -> None:
    """A signed event the worker ignores was refused 400 for its object's missing id, and Stripe retried it for days."""
    queue = FakeWebhookQueue()
    payload = _balance_available()

    event = _receive(payload, sign(payload, timestamp=_now()), queue)

    assert (event.event_type, event.handled) == ("balance.available", False)
    assert queue.sent == []


def test_receive_webhook_handled_type_without_object_id_refused_naming_it() -> None:
    queue = FakeWebhookQueue()
    event = stripe_event("payment_intent_succeeded")
    del event["data"]["object"]["id"]
    payload = event_body(event)

    with pytest.raises(StripeSignatureError, match=r"not a Stripe event \(data\.object\.id\)"):
        _receive(payload, sign(payload, timestamp=_now()), queue)

    assert queue.sent == []


def test_receive_webhook_non_ascii_header_refused_naming_the_header() -> None:
    queue = FakeWebhookQueue()
    payload = event_body(stripe_event("payment_intent_succeeded"))

    with pytest.raises(StripeSignatureError, match="Stripe-Signature header is malformed"):
        _receive(payload, f"{sign(payload, timestamp=_now())},v0=\u00e9", queue)

    assert queue.sent == []


def test_receive_webhook_event_over_the_queue_limit_queues_its_envelope() -> None:
    queue = FakeWebhookQueue()
    event = stripe_event("payment_intent_succeeded")
    event["data"]["object"]["description"] = "x" * 300 * 1024
    payload = event_body(event)

    _receive(payload, sign(payload, timestamp=_now()), queue)

    assert len(queue.sent[0][0]) < 1024


def test_receive_webhook_queue_failure_is_upstream() -> None:
    queue = FakeWebhookQueue(UpstreamError("enqueuing the Stripe event failed (ServiceUnavailable)"))
    payload = event_body(stripe_event("payment_intent_succeeded"))

    with pytest.raises(UpstreamError):
        _receive(payload, sign(payload, timestamp=_now()), queue)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200), other=st.text(min_size=1, max_size=40))
def test_receive_webhook_signature_holds_for_its_body_and_secret_only(text: str, other: str) -> None:
    event = stripe_event("payment_intent_succeeded")
    event["data"]["object"]["description"] = text
    payload = event_body(event)
    secret = "whsec_" + other

    _receive(payload, sign(payload, secret, _now()), FakeWebhookQueue(), lambda: secret)
    with pytest.raises(StripeSignatureError):
        _receive(payload, sign(payload, secret + "x", _now()), FakeWebhookQueue(), lambda: secret)


def test_webhook_payload_base64_body_is_decoded() -> None:
    payload = event_body(stripe_event("payment_intent_succeeded"))

    assert webhook_payload(base64.b64encode(payload.encode()).decode(), base64_encoded=True) == payload


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("%%%not base64%%%", "not valid base64"),
        ("é" + base64.b64encode(b"{}").decode(), "not valid base64"),
        (base64.b64encode(b"\xff\xfe").decode(), "not UTF-8 text"),
    ],
)
def test_webhook_payload_undecodable_body_refused(body: str, problem: str) -> None:
    with pytest.raises(StripeSignatureError, match=problem):
        webhook_payload(body, base64_encoded=True)


# The worker: retrieve, record once, publish once.


def _intent(**changes: Any) -> PaymentIntentView:
    fields: dict[str, Any] = {
        "id": INTENT_ID,
        "status": "succeeded",
        "amount": 4999,
        "currency": "eur",
        "customer_id": "cus_QbVp7Ws3mZkR1T",
        "metadata": {"payment_id": "order-A-1042", "promo_code": "summer24", "user_id": "u-1042"},
        # Made when the checkout page loaded, paid (charged) five minutes later.
        "created": 1_723_040_105,
        "charge_created": 1_723_040_405,
    }
    return PaymentIntentView(**(fields | changes))


def _session_intent(**changes: Any) -> PaymentIntentView:
    fields: dict[str, Any] = {"id": SESSION_INTENT_ID, "customer_id": "cus_QbW2nHs8TqLm4P", "metadata": {}}
    return _intent(**(fields | changes))


def _session(**changes: Any) -> CheckoutSessionView:
    fields: dict[str, Any] = {
        "id": SESSION_ID,
        "payment_intent": SESSION_INTENT_ID,
        "customer_id": "cus_QbW2nHs8TqLm4P",
        "promo_codes": ("WELCOME10",),
        "metadata": {"user_id": "u-2001"},
    }
    return CheckoutSessionView(**(fields | changes))


class Worker:
    """The worker's logic with fakes of its collaborators."""

    def __init__(self, *intents: PaymentIntentView, session: CheckoutSessionView | None = None) -> None:
        self.gateway = FakePaymentGateway(
            {intent.id: intent for intent in intents}, {SESSION_ID: session or _session()}
        )
        self.store = FakePaymentStore()
        self.publisher = FakePurchasePublisher()

    def process(self, body: str) -> Any:
        return process_webhook_event(body, self.gateway, self.store, self.publisher)


def _intent_event(event_id: str = "evt_3PkHzK2eZvKYlo2C0n1kWq8a", intent_id: str = INTENT_ID) -> str:
    event = stripe_event("payment_intent_succeeded", id=event_id)
    event["data"]["object"]["id"] = intent_id
    return event_body(event)


def _session_event(event_id: str = "evt_1PkI3c2eZvKYlo2Cq9RfV0xT", kind: str = "checkout.session.completed") -> str:
    return event_body(stripe_event("checkout_session_completed", id=event_id, type=kind))


@pytest.mark.parametrize(
    ("payload", "intent"),
    [(_intent_event(), _intent()), (_session_event(), _session_intent())],
    ids=["payment_intent", "checkout_session"],
)
def test_process_queued_envelope_records_and_publishes_the_purchase(payload: str, intent: PaymentIntentView) -> None:
    queue, worker = FakeWebhookQueue(), Worker(intent)
    _receive(payload, sign(payload, timestamp=_now()), queue)

    result = worker.process(queue.sent[0][0])

    assert result.outcome is WebhookOutcome.PUBLISHED
    assert [event.customer_id for event in worker.publisher.events] == [intent.customer_id]


def test_process_payment_intent_succeeded_records_and_publishes_the_purchase() -> None:
    worker = Worker(_intent())

    result = worker.process(_intent_event())

    assert (result.outcome, result.payment_id) == (WebhookOutcome.PUBLISHED, "order-A-1042")
    (event,) = worker.publisher.events
    assert event.model_dump(mode="json", exclude_none=True) == {
        "purchase_id": "order-A-1042",
        "customer_id": "cus_QbVp7Ws3mZkR1T",
        "user_id": "u-1042",
        "amount": 4999,
        "currency": "eur",
        "promo_code": "SUMMER24",
        "purchased_at": "2024-08-07T14:20:05Z",
    }
    record = worker.store.get("order-A-1042")
    assert (record.status, record.events, record.purchase_published) == (
        STATUS_SUCCEEDED,
        ["evt_3PkHzK2eZvKYlo2C0n1kWq8a"],
        True,
    )


def test_process_purchase_dated_when_its_charge_was_made_not_when_its_intent_was() -> None:
    worker = Worker(_intent(created=1_723_000_000, charge_created=1_723_040_405))

    worker.process(_intent_event())

    assert worker.publisher.events[0].purchased_at == datetime(2024, 8, 7, 14, 20, 5, tzinfo=UTC)


def test_process_purchase_without_its_charge_dated_when_stripe_sent_the_event() -> None:
    worker = Worker(_intent(created=1_723_000_000, charge_created=None))

    worker.process(_intent_event())

    assert worker.publisher.events[0].purchased_at == datetime(2024, 8, 7, 14, 20, 10, tzinfo=UTC)


def test_process_purchase_without_charge_or_event_time_dated_when_its_intent_was_made() -> None:
    worker = Worker(_intent(created=1_723_000_000, charge_created=None))
    event = stripe_event("payment_intent_succeeded")
    del event["created"]

    worker.process(event_body(event))

    assert worker.publisher.events[0].purchased_at == datetime.fromtimestamp(1_723_000_000, UTC)


def test_process_amount_comes_from_the_retrieved_intent_not_the_event_copy() -> None:
    worker = Worker(_intent(amount=1200, currency="usd"))
    event = stripe_event("payment_intent_succeeded")
    event["data"]["object"].update(amount=1, currency="jpy")

    worker.process(event_body(event))

    assert (worker.publisher.events[0].amount, worker.publisher.events[0].currency) == (1200, "usd")
    assert worker.gateway.calls == [INTENT_ID, f"session_for:{INTENT_ID}"]


def test_process_publishes_the_promo_code_attributes() -> None:
    worker = Worker(_intent())

    worker.process(_intent_event())

    assert worker.publisher.attributes[0]["has_promo_code"] == {"DataType": "String", "StringValue": "true"}
    assert worker.publisher.attributes[0]["promo_code"] == {"DataType": "String", "StringValue": "SUMMER24"}


def test_process_payment_id_defaults_to_the_intent_id() -> None:
    worker = Worker(_intent(metadata={}))

    result = worker.process(_intent_event())

    assert result.payment_id == INTENT_ID
    assert worker.publisher.events[0].promo_code is None
    assert worker.publisher.attributes[0]["has_promo_code"]["StringValue"] == "false"


def test_process_invalid_metadata_payment_id_falls_back_to_the_intent_id() -> None:
    worker = Worker(_intent(metadata={"payment_id": "not an id!"}))

    assert worker.process(_intent_event()).payment_id == INTENT_ID


def test_process_invalid_promo_code_left_out() -> None:
    worker = Worker(_intent(metadata={"promo_code": "no spaces allowed"}))

    worker.process(_intent_event())

    assert worker.publisher.events[0].promo_code is None


def test_process_checkout_session_completed_takes_the_promo_code_of_its_discounts() -> None:
    worker = Worker(_session_intent())

    result = worker.process(_session_event())

    assert (result.outcome, result.payment_id) == (WebhookOutcome.PUBLISHED, SESSION_INTENT_ID)
    (event,) = worker.publisher.events
    assert (event.customer_id, event.promo_code, event.user_id) == ("cus_QbW2nHs8TqLm4P", "WELCOME10", "u-2001")
    assert worker.gateway.calls == [SESSION_ID, SESSION_INTENT_ID]


def test_process_checkout_session_promo_code_from_metadata_without_discounts() -> None:
    worker = Worker(_session_intent(), session=_session(promo_codes=(), metadata={"promo_code": "spring"}))

    worker.process(_session_event())

    assert worker.publisher.events[0].promo_code == "SPRING"


def test_process_intent_metadata_promo_code_comes_before_the_session_discounts() -> None:
    worker = Worker(_session_intent(metadata={"promo_code": "FROMINTENT"}))

    worker.process(_session_event())

    assert worker.publisher.events[0].promo_code == "FROMINTENT"


def test_process_checkout_session_customer_when_the_intent_names_none() -> None:
    worker = Worker(_session_intent(customer_id=None))

    worker.process(_session_event())

    assert worker.publisher.events[0].customer_id == "cus_QbW2nHs8TqLm4P"


def test_process_async_payment_succeeded_session_is_handled() -> None:
    worker = Worker(_session_intent())

    result = worker.process(_session_event(kind="checkout.session.async_payment_succeeded"))

    assert result.outcome == WebhookOutcome.PUBLISHED


def test_process_intent_event_first_takes_the_promo_code_of_its_checkout_session() -> None:
    # Stripe sends payment_intent.succeeded and checkout.session.completed together; the intent's may come first.
    worker = Worker(_session_intent())

    result = worker.process(_intent_event("evt_intent_1", SESSION_INTENT_ID))

    assert result.outcome == WebhookOutcome.PUBLISHED
    (event,) = worker.publisher.events
    assert (event.promo_code, event.user_id) == ("WELCOME10", "u-2001")
    assert worker.publisher.attributes[0]["promo_code"] == {"DataType": "String", "StringValue": "WELCOME10"}
    assert worker.gateway.calls == [SESSION_INTENT_ID, f"session_for:{SESSION_INTENT_ID}"]


def test_process_intent_event_takes_the_checkout_session_metadata_promo_code() -> None:
    worker = Worker(_session_intent(), session=_session(promo_codes=(), metadata={"promo_code": "spring"}))

    worker.process(_intent_event("evt_intent_1", SESSION_INTENT_ID))

    assert worker.publisher.events[0].promo_code == "SPRING"


def test_process_intent_event_with_an_invalid_promo_code_takes_the_session_code() -> None:
    worker = Worker(_session_intent(metadata={"promo_code": "no spaces allowed"}))

    worker.process(_intent_event("evt_intent_1", SESSION_INTENT_ID))

    assert worker.publisher.events[0].promo_code == "WELCOME10"


@pytest.mark.parametrize("first", ["intent", "session"])
def test_process_checkout_payment_publishes_the_same_purchase_whichever_event_comes_first(first: str) -> None:
    # A Checkout whose intent carries a promo code of its own (payment_intent_data.metadata), the shop's user and the
    # customer's email on the session's metadata: the intent's event, handled first, publishes them too.
    worker = Worker(
        _session_intent(metadata={"promo_code": "summer24"}),
        session=_session(metadata={"user_id": "u-2001", "email": "ada@example.com"}),
    )
    events = [_intent_event("evt_intent_1", SESSION_INTENT_ID), _session_event("evt_session_1")]

    for body in events if first == "intent" else reversed(events):
        worker.process(body)

    (event,) = worker.publisher.events
    assert (event.promo_code, event.user_id, event.email) == ("SUMMER24", "u-2001", "ada@example.com")


def test_process_intent_event_without_checkout_session_published_without_code() -> None:
    worker = Worker(_intent(metadata={"payment_id": "order-A-1042"}))

    result = worker.process(_intent_event())

    assert result.outcome == WebhookOutcome.PUBLISHED
    assert worker.publisher.events[0].promo_code is None
    assert worker.gateway.calls == [INTENT_ID, f"session_for:{INTENT_ID}"]


def test_process_session_lookup_unavailable_raises_and_publishes_nothing() -> None:
    worker = Worker(_session_intent())
    worker.gateway.lookup_error = StripeUnavailableError("Stripe failed (503)")

    with pytest.raises(StripeUnavailableError):
        worker.process(_intent_event("evt_intent_1", SESSION_INTENT_ID))

    assert worker.store.records == {}
    assert worker.publisher.events == []


def test_process_session_lookup_refused_publishes_without_code() -> None:
    worker = Worker(_session_intent())
    worker.gateway.lookup_error = PermanentPurchaseError("stripe_refused", "Stripe refused the request (400)")

    result = worker.process(_intent_event("evt_intent_1", SESSION_INTENT_ID))

    assert result.outcome == WebhookOutcome.PUBLISHED
    assert worker.publisher.events[0].promo_code is None


def test_process_replayed_event_records_nothing_twice_and_publishes_once() -> None:
    worker = Worker(_intent())

    first = worker.process(_intent_event())
    again = worker.process(_intent_event())

    assert (first.outcome, again.outcome) == (WebhookOutcome.PUBLISHED, WebhookOutcome.DUPLICATE)
    assert worker.store.writes == 1
    assert len(worker.publisher.events) == 1
    assert worker.store.get("order-A-1042").events == ["evt_3PkHzK2eZvKYlo2C0n1kWq8a"]


def test_process_two_events_of_one_payment_make_one_payment_and_one_purchase() -> None:
    intent = _session_intent(metadata={"payment_id": "order-B-7"})
    worker = Worker(intent)

    first = worker.process(_intent_event("evt_intent_1", SESSION_INTENT_ID))
    second = worker.process(_session_event("evt_session_1"))

    assert (first.outcome, second.outcome) == (WebhookOutcome.PUBLISHED, WebhookOutcome.DUPLICATE)
    assert len(worker.publisher.events) == 1
    assert list(worker.store.records) == ["order-B-7"]
    assert worker.store.get("order-B-7").events == ["evt_intent_1", "evt_session_1"]


def test_process_purchase_claimed_by_another_attempt_is_retried_not_acknowledged() -> None:
    # The attempt holding the claim may fail, and the message it came from may be this one: acknowledged, the
    # Purchase event would never be published.
    worker = Worker(_intent())
    worker.store.claims["order-A-1042"] = "evt_other_worker:1"

    with pytest.raises(PublicationBusyError):
        worker.process(_intent_event())
    assert worker.publisher.events == []
    worker.store.claims.clear()  # the other attempt's publish failed: it released its claim

    assert worker.process(_intent_event()).outcome == WebhookOutcome.PUBLISHED
    assert len(worker.publisher.events) == 1


def test_process_publish_failure_raises_and_the_retry_publishes() -> None:
    worker = Worker(_intent())
    worker.publisher.error = UpstreamError("publishing the purchase failed (Throttling)")

    with pytest.raises(UpstreamError):
        worker.process(_intent_event())
    assert worker.store.get("order-A-1042").purchase_published is False
    worker.publisher.error = None
    retried = worker.process(_intent_event())

    assert retried.outcome == WebhookOutcome.PUBLISHED
    assert len(worker.publisher.events) == 1
    assert worker.store.writes == 1


def test_process_mark_failure_after_publish_is_only_reported() -> None:
    worker = Worker(_intent())
    worker.store.fail_mark = True

    result = worker.process(_intent_event())

    assert (result.outcome, result.mark_failed) == (WebhookOutcome.PUBLISHED, True)
    assert len(worker.publisher.events) == 1


def test_process_intent_without_customer_recorded_not_published() -> None:
    worker = Worker(_intent(customer_id=None))

    result = worker.process(_intent_event())

    assert result.outcome == WebhookOutcome.NO_CUSTOMER
    assert worker.store.get("order-A-1042").status == STATUS_NO_CUSTOMER
    assert worker.publisher.events == []


def test_process_later_event_naming_the_customer_publishes() -> None:
    worker = Worker(_session_intent(customer_id=None, metadata={"payment_id": "order-C-1"}))
    worker.gateway.sessions[SESSION_ID] = _session(customer_id=None)
    worker.process(_intent_event("evt_intent_2", SESSION_INTENT_ID))
    worker.gateway.sessions[SESSION_ID] = _session()

    result = worker.process(_session_event("evt_session_2"))

    assert result.outcome == WebhookOutcome.PUBLISHED
    assert worker.store.get("order-C-1").status == STATUS_SUCCEEDED


def test_process_intent_not_succeeded_records_nothing() -> None:
    worker = Worker(_session_intent(status="processing"))

    result = worker.process(_session_event())

    assert result.outcome == WebhookOutcome.UNPAID
    assert worker.store.records == {}


def test_process_session_without_payment_intent_records_nothing() -> None:
    worker = Worker(session=_session(payment_intent=None))

    assert worker.process(_session_event()).outcome == WebhookOutcome.UNPAID
    assert worker.store.records == {}


def test_process_other_event_type_ignored_and_logged_with_its_type_only(logs: Callable[[], str]) -> None:
    worker = Worker(_intent())
    body = _intent_event().replace('"payment_intent.succeeded"', '"customer.created"')

    result = worker.process(body)

    assert result.outcome == WebhookOutcome.IGNORED
    assert worker.gateway.calls == []
    output = logs()
    assert '"event_type":"customer.created"' in output
    assert "pi_3PkHzK2eZvKYlo2C0u8QJm3x" not in output


def test_process_handled_type_without_object_id_dropped_as_malformed() -> None:
    worker = Worker(_intent())
    event = stripe_event("payment_intent_succeeded")
    del event["data"]["object"]["id"]

    assert worker.process(event_body(event)).outcome == WebhookOutcome.MALFORMED
    assert worker.gateway.calls == []


@pytest.mark.parametrize("body", ["not json", "{}", '{"id": "evt_1", "type": "payment_intent.succeeded"}', "[]"])
def test_process_malformed_body_dropped(body: str) -> None:
    worker = Worker(_intent())

    assert worker.process(body).outcome == WebhookOutcome.MALFORMED
    assert worker.store.records == {}


def test_process_stripe_unavailable_raises_for_a_retry() -> None:
    worker = Worker(_intent())
    worker.gateway.error = StripeUnavailableError("Stripe failed (503)")

    with pytest.raises(StripeUnavailableError):
        worker.process(_intent_event())
    assert worker.store.records == {}


def test_process_intent_stripe_does_not_know_raises_for_a_retry() -> None:
    """A verified event's intent that Stripe says is missing (a key of the other mode or account) is never dropped."""
    worker = Worker()

    with pytest.raises(StripeEventObjectRefusedError) as raised:
        worker.process(_intent_event())

    assert isinstance(raised.value, StripeUnavailableError)
    assert raised.value.reason == "unknown_payment_intent"
    assert worker.store.records == {}
    assert worker.publisher.events == []


def test_process_session_stripe_refuses_raises_for_a_retry() -> None:
    """A 400 on the event's own Checkout Session (a request of ours Stripe refuses) is retried, not acknowledged."""
    worker = Worker(_session_intent())
    worker.gateway.error = PermanentPurchaseError("stripe_refused", "Stripe refused the request (400)")

    with pytest.raises(StripeEventObjectRefusedError, match="Stripe refused the request"):
        worker.process(_session_event())

    assert worker.store.records == {}
    assert worker.publisher.events == []
