"""Unit tests of the promotions store (core/purchases/promotions.py): what it raises when DynamoDB cannot be reached.
Its reads and writes run under moto in tests/integration/core/purchases/test_promotions.py."""

from __future__ import annotations

import pytest

from core.errors import UpstreamError
from core.purchases.promotions import PromotionStore
from tests.fakes.unreachable import UnreachableClient

TABLE = "notify-test-promotions"


def test_promotion_store_get_unreachable_dynamodb_raises_upstream_error_without_url() -> None:
    store = PromotionStore(UnreachableClient("dynamodb"), TABLE)

    # The whole text is matched: botocore's message names the endpoint, the error's never does.
    with pytest.raises(UpstreamError, match=r"^reading promotion failed \(EndpointConnectionError\)$"):
        store.get("SUMMER24")
