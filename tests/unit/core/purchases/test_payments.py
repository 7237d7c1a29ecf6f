"""Unit tests of the payments store (core/purchases/payments.py) on a scripted DynamoDB client: the requests it makes
and how it reads answers and failures. Its conditions run against DynamoDB's rules under moto in
tests/integration/subscribers/test_payments.py."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from core.errors import NotFoundError, UpstreamError
from core.purchases.payments import STATUS_NO_CUSTOMER, STATUS_SUCCEEDED, Payment, PaymentStore

TABLE = "notify-test-payments"
PAYMENT = Payment("order-1", "pi_1", 4999, "eur", "cus_A1", "SUMMER24")
ITEM = {
    "payment_id": {"S": "order-1"},
    "payment_intent": {"S": "pi_1"},
    "customer_id": {"S": "cus_A1"},
    "amount": {"N": "4999"},
    "currency": {"S": "eur"},
    "promo_code": {"S": "SUMMER24"},
    "status": {"S": STATUS_SUCCEEDED},
    "events": {"SS": ["evt_2", "evt_1"]},
    "created_at": {"S": "2024-08-07T14:20:05.000Z"},
    "updated_at": {"S": "2024-08-07T14:21:00.000Z"},
}


def _refused(code: str, operation: str = "UpdateItem") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "scripted"}}, operation)


class ScriptedDynamoDB:
    """Answers ``update_item`` and ``get_item`` with what a test scripted, and keeps the requests."""

    def __init__(self, update: Any = None, item: dict[str, Any] | None = None, get_error: Exception | None = None):
        self.update = update
        self.item = item
        self.get_error = get_error
        self.updates: list[dict[str, Any]] = []
        self.gets: list[dict[str, Any]] = []

    def update_item(self, **request: Any) -> dict[str, Any]:
        self.updates.append(request)
        if isinstance(self.update, Exception):
            raise self.update
        return {"Attributes": self.update or {}}

    def get_item(self, **request: Any) -> dict[str, Any]:
        self.gets.append(request)
        if self.get_error is not None:
            raise self.get_error
        return {"Item": self.item} if self.item else {}


def _store(client: ScriptedDynamoDB) -> PaymentStore:
    return PaymentStore(client, TABLE, claim_seconds=300, clock=lambda: 1_723_040_405.0)


def test_payment_store_record_is_one_write_conditional_on_the_event_id() -> None:
    client = ScriptedDynamoDB(update=ITEM)

    write = _store(client).record(PAYMENT, "evt_1")

    (request,) = client.updates
    assert request["Key"] == {"payment_id": {"S": "order-1"}}
    assert "NOT contains(#events, :event_id)" in request["ConditionExpression"]
    assert request["ExpressionAttributeValues"][":event"] == {"SS": ["evt_1"]}
    assert "promo_code = if_not_exists(promo_code, :promo)" in request["UpdateExpression"]
    assert write.recorded is True
    assert (write.record.events, write.record.amount, write.record.promo_code) == (["evt_1", "evt_2"], 4999, "SUMMER24")


def test_payment_store_record_without_customer_keeps_an_earlier_status() -> None:
    client = ScriptedDynamoDB(update={**ITEM, "status": {"S": STATUS_NO_CUSTOMER}})

    _store(client).record(Payment("order-1", "pi_1", 4999, "eur"), "evt_1")

    request = client.updates[0]
    assert "#status = if_not_exists(#status, :no_customer)" in request["UpdateExpression"]
    assert ":customer" not in request["ExpressionAttributeValues"]
    assert ":promo" not in request["ExpressionAttributeValues"]


def test_payment_store_record_seen_event_reads_the_payment_back() -> None:
    client = ScriptedDynamoDB(update=_refused("ConditionalCheckFailedException"), item=ITEM)

    write = _store(client).record(PAYMENT, "evt_1")

    assert write.recorded is False
    assert write.record.payment_id == "order-1"
    assert client.gets[0]["ConsistentRead"] is True


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (_refused("ProvisionedThroughputExceededException"), "ProvisionedThroughputExceededException"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "EndpointConnectionError"),
    ],
)
def test_payment_store_record_aws_failure_is_upstream(error: Exception, code: str) -> None:
    client = ScriptedDynamoDB(update=error)

    with pytest.raises(UpstreamError, match=rf"^recording the payment failed \({code}\)$"):
        _store(client).record(PAYMENT, "evt_1")


def test_payment_store_claim_taken() -> None:
    client = ScriptedDynamoDB()

    assert _store(client).claim_publication("order-1", "evt_1") is True
    values = client.updates[0]["ExpressionAttributeValues"]
    assert (values[":me"], values[":until"]) == ({"S": "evt_1"}, {"N": str(1_723_040_405 + 300)})


def test_payment_store_claim_held_or_published_refused() -> None:
    client = ScriptedDynamoDB(update=_refused("ConditionalCheckFailedException"))

    assert _store(client).claim_publication("order-1", "evt_1") is False


def test_payment_store_claim_aws_failure_is_upstream() -> None:
    client = ScriptedDynamoDB(update=EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))

    with pytest.raises(UpstreamError, match="claiming the purchase publication failed"):
        _store(client).claim_publication("order-1", "evt_1")


def test_payment_store_mark_published_sets_the_flag_and_drops_the_claim() -> None:
    client = ScriptedDynamoDB()

    _store(client).mark_published("order-1", "sns-1")

    request = client.updates[0]
    assert request["UpdateExpression"].startswith("SET purchase_published = :true")
    assert "REMOVE publish_claim, publish_claimed_until" in request["UpdateExpression"]


def test_payment_store_mark_published_failure_is_upstream() -> None:
    client = ScriptedDynamoDB(update=_refused("InternalServerError"))

    with pytest.raises(UpstreamError, match=r"marking the purchase published failed \(InternalServerError\)"):
        _store(client).mark_published("order-1", "sns-1")


def test_payment_store_get_missing_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="payment 'order-9' not found"):
        _store(ScriptedDynamoDB()).get("order-9")


def test_payment_store_get_failure_is_upstream() -> None:
    client = ScriptedDynamoDB(get_error=_refused("AccessDeniedException", "GetItem"))

    with pytest.raises(UpstreamError, match=r"reading the payment failed \(AccessDeniedException\)"):
        _store(client).get("order-1")
