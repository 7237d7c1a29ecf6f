"""Unit tests of core/ledger.py's reads over DynamoDB's pages (fake client with small pages)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from core.errors import UpstreamError
from core.ledger import DeliveryLedger, DeliveryRow, NotificationRecord
from core.models import DeliveryStatus
from tests.fakes.dynamodb import FakeDynamoDBClient

TABLE = "deliveries"


def _ledger(client: FakeDynamoDBClient, rows: int) -> DeliveryLedger:
    ledger = DeliveryLedger(client, TABLE, now=lambda: "2026-01-01T00:00:00.000Z", epoch=lambda: 1_700_000_000.0)
    ledger.record_notification(
        NotificationRecord(
            notification_id="n-1",
            source="publish",
            channel="orders",
            topic="shipped",
            created_at="2026-01-01T00:00:00.000Z",
            caller=None,
            delivery_count=rows,
        )
    )
    for index in range(rows):
        ledger.update("n-1", f"slack-{index}", DeliveryStatus.DELIVERED, row=DeliveryRow(f"slack-{index}", "slack"))
    return ledger


def test_ledger_page_rows_over_several_query_pages_are_all_read() -> None:
    client = FakeDynamoDBClient({TABLE: ("notification_id", "delivery_key")}, page_size=2)
    ledger = _ledger(client, rows=5)
    client.calls.clear()

    page = ledger.page("n-1")

    assert [entry.delivery_key for entry in page.entries] == [f"slack-{index}" for index in range(5)]
    assert page.counts == {"delivered": 5}
    assert client.count("query") > 2


def test_ledger_page_size_smaller_than_rows_gives_a_cursor_to_the_rest() -> None:
    client = FakeDynamoDBClient({TABLE: ("notification_id", "delivery_key")}, page_size=2)
    ledger = _ledger(client, rows=5)

    first = ledger.page("n-1", size=3)
    rest = ledger.page("n-1", first.next_cursor, size=3)

    assert [entry.delivery_key for entry in first.entries + rest.entries] == [f"slack-{index}" for index in range(5)]
    assert rest.next_cursor is None


@pytest.mark.parametrize(
    "error",
    [
        ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "-"}}, "Query"),
        EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/"),
    ],
)
def test_ledger_page_failure_on_a_later_query_page_raises_upstream_error(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    client = FakeDynamoDBClient({TABLE: ("notification_id", "delivery_key")}, page_size=2)
    ledger = _ledger(client, rows=5)
    query = client.query

    def failing_after_first_page(**kwargs: Any) -> dict[str, Any]:
        if "ExclusiveStartKey" in kwargs:
            raise error
        return query(**kwargs)

    monkeypatch.setattr(client, "query", failing_after_first_page)

    with pytest.raises(UpstreamError, match=r"^reading the ledger failed \(") as raised:
        ledger.page("n-1")
    assert raised.value.__cause__ is error
