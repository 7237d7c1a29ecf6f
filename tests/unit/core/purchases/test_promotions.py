"""Unit tests of the promotions store (core/purchases/promotions.py): what it raises when DynamoDB cannot be reached.
Its reads and writes run under moto in tests/integration/core/purchases/test_promotions.py."""

from __future__ import annotations

from typing import NoReturn

import pytest
from botocore.exceptions import EndpointConnectionError

from core.errors import UpstreamError
from core.purchases.promotions import PromotionStore

TABLE = "notify-test-promotions"
ENDPOINT = "https://dynamodb.us-east-1.amazonaws.com/"


class UnreachableDynamoDB:
    """A DynamoDB client whose endpoint cannot be reached."""

    def get_item(self, **kwargs: object) -> NoReturn:
        """Fail as botocore does when the connection is refused."""
        raise EndpointConnectionError(endpoint_url=ENDPOINT)


def test_promotion_store_get_unreachable_dynamodb_raises_upstream_error_without_url() -> None:
    store = PromotionStore(UnreachableDynamoDB(), TABLE)

    # The whole text is matched: botocore's message names the endpoint, the error's never does.
    with pytest.raises(UpstreamError, match=r"^reading promotion failed \(EndpointConnectionError\)$"):
        store.get("SUMMER24")
