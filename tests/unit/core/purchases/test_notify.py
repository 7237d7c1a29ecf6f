"""Unit tests of core/purchases/notify.py: a purchase's variables, its one notification, what is recorded."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import EnqueueError, UpstreamError
from core.ledger import DeliveryLedger
from core.models import Integration, IntegrationType, Topic
from core.observability import metrics
from core.purchases.models import PurchaseEvent
from core.purchases.notify import (
    NotifyOutcome,
    PurchaseNotification,
    format_amount,
    notify_purchase,
    purchase_notification_id,
    purchase_variables,
)
from core.queue import DeliveryQueue
from core.topics import TopicRegistry
from tests.fakes.dynamodb import FakeDynamoDBClient
from tests.fakes.purchases import FakePurchaseStore
from tests.fakes.sqs import FakeSqsClient

NOW = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
URL = "https://sqs.us-east-1.amazonaws.com/123456789012/deliveries"
TARGET = PurchaseNotification("shop", "purchases")
TEMPLATE = "$purchase_id: $amount_display by $email (code: $promo_code)"


def _event(**changes: object) -> PurchaseEvent:
    fields: dict[str, object] = {
        "purchase_id": "pi_1",
        "customer_id": "cus_1",
        "user_id": "user-42",
        "email": "ada@example.com",
        "amount": 2500,
        "currency": "eur",
        "promo_code": "welcome10",
        "purchased_at": datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    }
    fields.update(changes)
    return PurchaseEvent.model_validate(fields)


class Service:
    """The registry, ledger and queue over in-memory clients, and the purchases record."""

    def __init__(self, model: Any = TEMPLATE) -> None:
        self.dynamodb = FakeDynamoDBClient(
            {"topics": ("channel", "topic"), "ledger": ("notification_id", "delivery_key")}
        )
        self.registry = TopicRegistry(self.dynamodb, "topics", cache_ttl_seconds=0)
        self.registry.create(
            Topic(
                channel="shop",
                topic="purchases",
                integrations=[Integration(name="ops", type=IntegrationType.SLACK, model=model, credentials_ref="/p/o")],
                hash_sha256="0" * 64,
                created_at="2026-01-01T00:00:00.000Z",
                updated_at="2026-01-01T00:00:00.000Z",
            )
        )
        self.ledger = DeliveryLedger(self.dynamodb, "ledger")
        self.sqs = FakeSqsClient()
        self.purchases = FakePurchaseStore()

    def notify(self, event: PurchaseEvent, target: PurchaseNotification = TARGET) -> Any:
        return notify_purchase(
            event, target, self.registry, self.ledger, DeliveryQueue(self.sqs, URL), self.purchases, NOW
        )

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body in self.sqs.sent.values()]


@pytest.fixture(autouse=True)
def _no_metrics() -> Iterator[None]:
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (2500, "eur", "25.00 EUR"),
        (5, "usd", "0.05 USD"),
        (1500, "jpy", "1500 JPY"),
        (1234, "kwd", "1.234 KWD"),
        (0, "eur", "0.00 EUR"),
    ],
)
def test_format_amount_minds_the_currency_decimals(amount: int, currency: str, shown: str) -> None:
    assert format_amount(amount, currency) == shown


@given(st.integers(min_value=0, max_value=100_000_000), st.sampled_from(["eur", "usd", "gbp"]))
def test_format_amount_two_decimal_currency_reads_back_as_minor_units(amount: int, currency: str) -> None:
    number, code = format_amount(amount, currency).split(" ")

    assert (int(number.replace(".", "")), code) == (amount, currency.upper())


def test_purchase_variables_hold_every_field_and_amount_display() -> None:
    assert purchase_variables(_event()) == {
        "purchase_id": "pi_1",
        "customer_id": "cus_1",
        "user_id": "user-42",
        "email": "ada@example.com",
        "amount": 2500,
        "currency": "eur",
        "amount_display": "25.00 EUR",
        "promo_code": "WELCOME10",
        "purchased_at": "2026-03-01T12:00:00+00:00",
    }


def test_purchase_variables_absent_optional_fields_are_empty() -> None:
    variables = purchase_variables(_event(user_id=None, email=None, promo_code=None))

    assert (variables["user_id"], variables["email"], variables["promo_code"]) == ("", "", "")


def test_purchase_notification_id_same_per_purchase_and_distinct_between_them() -> None:
    assert purchase_notification_id("pi_1") == purchase_notification_id("pi_1")
    assert purchase_notification_id("pi_1") != purchase_notification_id("pi_2")


def test_notify_purchase_enqueues_rendered_delivery_and_records_notification() -> None:
    service = Service()

    result = service.notify(_event())

    assert (result.outcome, result.notification_id) == (NotifyOutcome.PUBLISHED, purchase_notification_id("pi_1"))
    (body,) = service.bodies()
    assert body["notification_id"] == result.notification_id
    assert body["content"]["text"] == "pi_1: 25.00 EUR by ada@example.com (code: WELCOME10)"
    assert service.ledger.get_record(result.notification_id).source == "purchase"
    assert service.purchases.get("pi_1").notification_id == result.notification_id


def test_notify_purchase_same_purchase_twice_enqueues_once() -> None:
    service = Service()
    first = service.notify(_event())

    second = service.notify(_event())

    assert (second.outcome, second.notification_id) == (NotifyOutcome.ALREADY_NOTIFIED, first.notification_id)
    assert len(service.bodies()) == 1


@pytest.mark.parametrize(
    ("service", "target", "error"),
    [
        (Service(), PurchaseNotification("shop", "missing"), "does not exist"),
        (Service("$purchase_id for $nickname"), TARGET, "missing template variables: nickname"),
        (Service("$purchase_id for $"), TARGET, "invalid placeholder"),
    ],
)
def test_notify_purchase_unmakeable_notification_recorded_not_raised(
    service: Service, target: PurchaseNotification, error: str
) -> None:
    result = service.notify(_event(), target)

    assert result.outcome is NotifyOutcome.FAILED
    assert error in (service.purchases.get("pi_1").notification_error or "")
    assert service.bodies() == []
    assert metrics.metric_set["PurchaseNotificationsFailed"]["Value"] == [1.0]


def test_notify_purchase_earlier_failure_then_topic_fixed_publishes_and_clears_error() -> None:
    service = Service()
    service.notify(_event(), PurchaseNotification("shop", "missing"))

    result = service.notify(_event())

    assert result.outcome is NotifyOutcome.PUBLISHED
    assert service.purchases.get("pi_1").notification_error is None


def test_notify_purchase_queue_unavailable_raises_for_retry() -> None:
    service = Service()
    service.sqs.error_code = "ServiceUnavailable"

    with pytest.raises(EnqueueError):
        service.notify(_event())

    assert service.purchases.records == {}


def test_notify_purchase_failure_unrecordable_raises_for_retry() -> None:
    service = Service()
    service.purchases.fail_writes = True

    with pytest.raises(UpstreamError):
        service.notify(_event(), PurchaseNotification("shop", "missing"))


@pytest.mark.parametrize("failure", ["fail_writes", "crash_writes"])
def test_notify_purchase_record_failure_after_enqueue_never_raises_logs_and_counts(
    failure: str, logs: Callable[[], str]
) -> None:
    service = Service()
    setattr(service.purchases, failure, True)

    result = service.notify(_event())

    assert result.outcome is NotifyOutcome.PUBLISHED
    assert len(service.bodies()) == 1
    assert "recording the purchase notification failed" in logs()
    assert metrics.metric_set["PurchaseNotificationRecordFailed"]["Value"] == [1.0]
