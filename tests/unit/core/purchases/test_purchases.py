"""Unit tests of the purchases store (core/purchases/purchases.py): what it raises when DynamoDB cannot be reached.
Its conditional writes run under moto in tests/integration/core/purchases/test_purchases.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NoReturn

import pytest
from botocore.exceptions import EndpointConnectionError

from core.errors import UpstreamError
from core.purchases.models import CreditRecord, PurchaseEvent
from core.purchases.purchases import PurchaseStore

TABLE = "notify-test-purchases"
ENDPOINT = "https://dynamodb.us-east-1.amazonaws.com/"
NOW = datetime(2024, 8, 7, 14, 21, tzinfo=UTC)
EVENT = PurchaseEvent(
    purchase_id="order-1",
    customer_id="cus_A1",
    amount=4999,
    currency="EUR",
    purchased_at=datetime(2024, 8, 7, 14, 20, 5, tzinfo=UTC),
)


class UnreachableDynamoDB:
    """A DynamoDB client whose endpoint cannot be reached."""

    def get_item(self, **kwargs: object) -> NoReturn:
        """Fail as botocore does when the connection is refused."""
        raise EndpointConnectionError(endpoint_url=ENDPOINT)

    def update_item(self, **kwargs: object) -> NoReturn:
        """Fail as botocore does when the connection is refused."""
        raise EndpointConnectionError(endpoint_url=ENDPOINT)


def test_purchase_store_get_unreachable_dynamodb_raises_upstream_error_without_url() -> None:
    store = PurchaseStore(UnreachableDynamoDB(), TABLE)

    # The whole text is matched: botocore's message names the endpoint, the error's never does.
    with pytest.raises(UpstreamError, match=r"^reading purchase failed \(EndpointConnectionError\)$"):
        store.get("order-1")


def test_purchase_store_record_credit_unreachable_dynamodb_raises_upstream_error_not_false() -> None:
    store = PurchaseStore(UnreachableDynamoDB(), TABLE)
    credit = CreditRecord(balance_transaction="cbtxn_1", amount=500, currency="eur")

    with pytest.raises(UpstreamError, match=r"^recording credit failed \(EndpointConnectionError\)$"):
        store.record_credit(EVENT, credit, NOW)
