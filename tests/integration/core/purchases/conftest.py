"""Fixtures of the purchases domain's store and gateway suites: the stores' tables alone under moto (lighter than
the whole ``aws`` fixture), and the local Stripe server of the subscriber suites."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.subscribers.conftest import PURCHASE_TABLES, stripe_server
from tests.support.aws import client as aws_client

__all__ = ["dynamodb", "stripe_server"]


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    """A DynamoDB client on moto holding the promotions, purchases and payments tables, empty."""
    from moto import mock_aws

    with mock_aws():
        # boto3's default session keeps the parsed service model, so a client per test costs little.
        client = aws_client("dynamodb")
        for name, key in PURCHASE_TABLES.values():
            client.create_table(
                TableName=name,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            )
        yield client
