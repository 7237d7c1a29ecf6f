"""Unit tests of the payments store (core/purchases/payments.py) on a scripted DynamoDB client: the requests it makes
and how it reads answers and failures. Its conditions run against DynamoDB's rules under moto in
tests/integration/subscribers/test_payments.py."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from core.errors import NotFoundError, UpstreamError
from core.purchases.payments import INTENT_TIE_PREFIX, STATUS_NO_CUSTOMER, STATUS_SUCCEEDED, Payment, PaymentStore

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
    """Answers ``update_item`` and ``get_item`` with what a test scripted, and keeps the requests.

    A payment's requests answer ``update``/``item`` (``item`` for its own key only) and go to ``updates``/``gets``;
    an intent's tie is read as ``tie`` (the payment id it is tied to, ``None``: untied) and written as ``tie_race``
    (the id a concurrent worker tied it to first) or the id proposed, its requests kept in ``tie_requests``.
    """

    def __init__(
        self,
        update: Any = None,
        item: dict[str, Any] | None = None,
        get_error: Exception | None = None,
        tie: str | None = None,
        tie_race: str | None = None,
        tie_error: Exception | None = None,
    ):
        self.update = update
        self.item = item
        self.get_error = get_error
        self.tie = tie
        self.tie_race = tie_race
        self.tie_error = tie_error
        self.updates: list[dict[str, Any]] = []
        self.gets: list[dict[str, Any]] = []
        self.tie_requests: list[dict[str, Any]] = []

    @staticmethod
    def _is_tie(request: dict[str, Any]) -> bool:
        return str(request["Key"]["payment_id"]["S"]).startswith(INTENT_TIE_PREFIX)

    def update_item(self, **request: Any) -> dict[str, Any]:
        if self._is_tie(request):
            self.tie_requests.append(request)
            if self.tie_error is not None:
                raise self.tie_error
            tied = self.tie_race or request["ExpressionAttributeValues"][":payment"]["S"]
            return {"Attributes": {"tied_payment_id": {"S": tied}}}
        self.updates.append(request)
        if isinstance(self.update, Exception):
            raise self.update
        return {"Attributes": self.update or {}}

    def get_item(self, **request: Any) -> dict[str, Any]:
        if self._is_tie(request):
            self.tie_requests.append(request)
            if self.tie_error is not None:
                raise self.tie_error
            return {"Item": {"tied_payment_id": {"S": self.tie}}} if self.tie else {}
        self.gets.append(request)
        if self.get_error is not None:
            raise self.get_error
        found = self.item and self.item["payment_id"] == request["Key"]["payment_id"]
        return {"Item": self.item} if found else {}


def _store(client: ScriptedDynamoDB) -> PaymentStore:
    return PaymentStore(client, TABLE, claim_seconds=300, clock=lambda: 1_723_040_405.0)


def test_payment_store_record_of_a_tied_intent_is_one_write_conditional_on_the_event_id() -> None:
    client = ScriptedDynamoDB(update=ITEM, tie="order-1")

    write = _store(client).record(PAYMENT, "evt_1")

    (request,) = client.updates
    assert request["Key"] == {"payment_id": {"S": "order-1"}}
    assert "NOT contains(#events, :event_id)" in request["ConditionExpression"]
    assert request["ExpressionAttributeValues"][":event"] == {"SS": ["evt_1"]}
    assert "promo_code = if_not_exists(promo_code, :promo)" in request["UpdateExpression"]
    assert write.recorded is True
    assert (write.record.events, write.record.amount, write.record.promo_code) == (["evt_1", "evt_2"], 4999, "SUMMER24")


def test_payment_store_record_without_customer_keeps_an_earlier_status() -> None:
    client = ScriptedDynamoDB(update={**ITEM, "status": {"S": STATUS_NO_CUSTOMER}}, tie="order-1")

    _store(client).record(Payment("order-1", "pi_1", 4999, "eur"), "evt_1")

    request = client.updates[0]
    assert "#status = if_not_exists(#status, :no_customer)" in request["UpdateExpression"]
    assert ":customer" not in request["ExpressionAttributeValues"]
    assert ":promo" not in request["ExpressionAttributeValues"]


def test_payment_store_record_seen_event_reads_the_payment_back() -> None:
    client = ScriptedDynamoDB(update=_refused("ConditionalCheckFailedException"), item=ITEM, tie="order-1")

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
    client = ScriptedDynamoDB(update=error, tie="order-1")

    with pytest.raises(UpstreamError, match=rf"^recording the payment failed \({code}\)$"):
        _store(client).record(PAYMENT, "evt_1")


def test_payment_store_record_of_an_untied_intent_ties_it_to_its_payment_id_first() -> None:
    client = ScriptedDynamoDB(update=ITEM)

    _store(client).record(PAYMENT, "evt_1")

    read, tie = client.tie_requests
    assert read["Key"] == tie["Key"] == {"payment_id": {"S": f"{INTENT_TIE_PREFIX}pi_1"}}
    assert read["ConsistentRead"] is True
    assert "tied_payment_id = if_not_exists(tied_payment_id, :payment)" in tie["UpdateExpression"]
    assert tie["ExpressionAttributeValues"][":payment"] == {"S": "order-1"}
    assert client.updates[0]["Key"] == {"payment_id": {"S": "order-1"}}


def test_payment_store_record_intent_tied_to_another_payment_id_records_under_that_one() -> None:
    client = ScriptedDynamoDB(update=ITEM, tie="order-0")

    _store(client).record(PAYMENT, "evt_1")

    assert len(client.tie_requests) == 1
    assert client.updates[0]["Key"] == {"payment_id": {"S": "order-0"}}


def test_payment_store_record_intent_tied_concurrently_records_under_the_first_tie() -> None:
    client = ScriptedDynamoDB(update=ITEM, tie_race="order-0")

    _store(client).record(PAYMENT, "evt_1")

    assert client.updates[0]["Key"] == {"payment_id": {"S": "order-0"}}


def test_payment_store_record_intent_recorded_under_its_own_id_before_ties_is_tied_to_it() -> None:
    legacy = {**ITEM, "payment_id": {"S": "pi_1"}}
    client = ScriptedDynamoDB(update=legacy, item=legacy)

    write = _store(client).record(PAYMENT, "evt_3")

    assert client.gets[0]["Key"] == {"payment_id": {"S": "pi_1"}}
    assert client.tie_requests[1]["ExpressionAttributeValues"][":payment"] == {"S": "pi_1"}
    assert client.updates[0]["Key"] == {"payment_id": {"S": "pi_1"}}
    assert write.record.payment_id == "pi_1"


def test_payment_store_record_intent_without_payment_id_is_tied_to_its_own_id_without_a_look() -> None:
    client = ScriptedDynamoDB(update={**ITEM, "payment_id": {"S": "pi_1"}})

    _store(client).record(Payment("pi_1", "pi_1", 4999, "eur", "cus_A1"), "evt_1")

    assert client.gets == []
    assert client.tie_requests[1]["ExpressionAttributeValues"][":payment"] == {"S": "pi_1"}


@pytest.mark.parametrize(
    "error",
    [_refused("ProvisionedThroughputExceededException", "GetItem"), EndpointConnectionError(endpoint_url="http://x")],
)
def test_payment_store_record_tie_failure_is_upstream_before_the_payment_is_written(error: Exception) -> None:
    client = ScriptedDynamoDB(update=ITEM, tie_error=error)

    with pytest.raises(UpstreamError, match=r"^reading the payment of the PaymentIntent failed"):
        _store(client).record(PAYMENT, "evt_1")

    assert client.updates == []


def test_payment_store_get_of_an_intent_tie_is_not_found_without_a_read() -> None:
    client = ScriptedDynamoDB(tie="order-1")

    with pytest.raises(NotFoundError):
        _store(client).get(f"{INTENT_TIE_PREFIX}pi_1")

    assert client.tie_requests == []


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
