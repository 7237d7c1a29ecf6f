"""Unit tests of the purchases store (core/purchases/purchases.py): what it raises when DynamoDB cannot be reached.
Its conditional writes run under moto in tests/integration/core/purchases/test_purchases.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.errors import UpstreamError
from core.purchases.models import CreditRecord, PurchaseEvent
from core.purchases.purchases import PurchaseStore
from tests.fakes.unreachable import UnreachableClient

TABLE = "notify-test-purchases"
NOW = datetime(2024, 8, 7, 14, 21, tzinfo=UTC)
EVENT = PurchaseEvent(
    purchase_id="order-1",
    customer_id="cus_A1",
    amount=4999,
    currency="EUR",
    purchased_at=datetime(2024, 8, 7, 14, 20, 5, tzinfo=UTC),
)


def test_purchase_store_get_unreachable_dynamodb_raises_upstream_error_without_url() -> None:
    store = PurchaseStore(UnreachableClient("dynamodb"), TABLE)

    # The whole text is matched: botocore's message names the endpoint, the error's never does.
    with pytest.raises(UpstreamError, match=r"^reading purchase failed \(EndpointConnectionError\)$"):
        store.get("order-1")


def test_purchase_store_record_credit_unreachable_dynamodb_raises_upstream_error_not_false() -> None:
    store = PurchaseStore(UnreachableClient("dynamodb"), TABLE)
    credit = CreditRecord(balance_transaction="cbtxn_1", amount=500, currency="eur")

    with pytest.raises(UpstreamError, match=r"^recording credit failed \(EndpointConnectionError\)$"):
        store.record_credit(EVENT, credit, NOW)
