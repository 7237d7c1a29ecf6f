"""Unit tests of core/ledger.py: reads over DynamoDB's pages (fake client with small pages), and what a delivery row
keeps of its story (next attempt, redrives, history)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from core.errors import InvalidRequestError, UpstreamError
from core.ledger import (
    HISTORY_LIMIT,
    AttemptRecord,
    DeliveryLedger,
    DeliveryRow,
    LedgerEntry,
    NotificationRecord,
    decode_cursor,
    encode_cursor,
)
from core.models import DELIVERY_KEY_BYTES, DeliveryStatus
from tests.fakes.dynamodb import FakeDynamoDBClient

TABLE = "deliveries"
NEXT = "2026-01-01T00:00:07.500Z"
ROW = DeliveryRow("hook", "webhook")


def _record(attempt: int, status: str = "retrying", error: str | None = "webhook: HTTP 503") -> AttemptRecord:
    return AttemptRecord(at=f"2026-01-01T00:00:{attempt:02d}.000Z", attempt=attempt, status=status, error=error)


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


def test_ledger_page_counts_for_its_time_and_says_so_when_it_ran_out() -> None:
    # Every status read the notification's whole partition for its counts: a send to a million users took the route
    # about a minute at 256 MB, past its 10 s timeout, on every call. With no time, one Query page is counted.
    client = FakeDynamoDBClient({TABLE: ("notification_id", "delivery_key")}, page_size=2)
    ledger = _ledger(client, rows=9)

    first = ledger.page("n-1", size=3, summary_seconds=0.0)
    later = ledger.page("n-1", ledger.page("n-1", first.next_cursor, size=3).next_cursor, size=3, summary_seconds=0.0)

    assert (first.complete, first.counts) == (False, {"delivered": 3})  # a page (the record, a row), and this page's
    assert [entry.delivery_key for entry in later.entries] == ["slack-6", "slack-7", "slack-8"]
    assert later.next_cursor is None
    assert (later.complete, later.counts) == (False, {"delivered": 4})


def test_ledger_page_of_few_deliveries_counts_them_all() -> None:
    client = FakeDynamoDBClient({TABLE: ("notification_id", "delivery_key")}, page_size=2)

    page = _ledger(client, rows=3).page("n-1")

    assert (page.complete, page.counts) == (True, {"delivered": 3})


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


def _hook(ledger: DeliveryLedger) -> LedgerEntry:
    entry = ledger.get_entry("n-1", "hook")
    assert entry is not None
    return entry


def _empty_ledger() -> tuple[FakeDynamoDBClient, DeliveryLedger]:
    client = FakeDynamoDBClient({TABLE: ("notification_id", "delivery_key")})
    return client, _ledger(client, rows=0)


def test_ledger_update_retrying_keeps_next_attempt_at() -> None:
    _, ledger = _empty_ledger()

    ledger.update("n-1", "hook", DeliveryStatus.RETRYING, row=ROW, attempts=1, next_attempt_at=NEXT)

    entry = _hook(ledger)
    assert entry.next_attempt_at == NEXT


@pytest.mark.parametrize("status", [DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.DEAD])
def test_ledger_update_to_a_final_status_clears_next_attempt_at(status: DeliveryStatus) -> None:
    _, ledger = _empty_ledger()
    ledger.update("n-1", "hook", DeliveryStatus.RETRYING, row=ROW, attempts=1, next_attempt_at=NEXT)

    ledger.update("n-1", "hook", status, row=ROW, attempts=2)

    entry = _hook(ledger)
    assert (entry.status, entry.next_attempt_at) == (status, None)


def test_ledger_update_next_attempt_at_of_a_final_status_is_not_written() -> None:
    _, ledger = _empty_ledger()

    ledger.update("n-1", "hook", DeliveryStatus.FAILED, row=ROW, attempts=1, next_attempt_at=NEXT)

    entry = _hook(ledger)
    assert entry.next_attempt_at is None


def test_ledger_update_redriven_is_kept_by_a_later_update_without_it() -> None:
    _, ledger = _empty_ledger()
    ledger.update("n-1", "hook", DeliveryStatus.QUEUED, row=ROW, attempts=7, redriven=1)

    ledger.update("n-1", "hook", DeliveryStatus.RETRYING, row=ROW, attempts=8)

    entry = _hook(ledger)
    assert (entry.attempts, entry.redriven) == (8, 1)


def test_ledger_row_without_redriven_reads_zero() -> None:
    _, ledger = _empty_ledger()

    ledger.update("n-1", "hook", DeliveryStatus.DELIVERED, row=ROW, attempts=1)

    entry = _hook(ledger)
    assert (entry.redriven, entry.history) == (0, [])


def test_ledger_update_history_entries_are_appended_in_order() -> None:
    client, ledger = _empty_ledger()
    records = [_record(1), _record(2), _record(3, "delivered", None)]

    for record in records:
        ledger.update("n-1", "hook", DeliveryStatus(record["status"]), row=ROW, history=record)

    entry = _hook(ledger)
    assert entry.history == records
    stored = client.tables[TABLE][("n-1", "hook")]["history"]["L"][-1]["M"]
    assert stored["error"] == {"NULL": True}


def test_ledger_update_history_appends_in_the_same_write_as_the_outcome() -> None:
    client, ledger = _empty_ledger()
    client.calls.clear()

    ledger.update("n-1", "hook", DeliveryStatus.RETRYING, row=ROW, attempts=1, history=_record(1))

    [(operation, call)] = client.calls
    assert operation == "update_item"
    assert "#h = list_append(if_not_exists(#h, :empty), :h)" in call["UpdateExpression"]


def test_ledger_update_history_error_is_cut_like_last_error() -> None:
    _, ledger = _empty_ledger()

    ledger.update("n-1", "hook", DeliveryStatus.RETRYING, row=ROW, history=_record(1, error="x" * 5000))

    entry = _hook(ledger)
    assert len(entry.history[0]["error"] or "") == 1000


def test_ledger_update_history_at_its_limit_keeps_the_most_recent() -> None:
    _, ledger = _empty_ledger()
    earlier = [_record(index + 1) for index in range(HISTORY_LIMIT)]
    for record in earlier:
        ledger.update("n-1", "hook", DeliveryStatus.RETRYING, row=ROW, history=record)

    ledger.update(
        "n-1", "hook", DeliveryStatus.DELIVERED, row=ROW, history=_record(51, "delivered", None), earlier=earlier
    )

    entry = _hook(ledger)
    assert entry.history == [*earlier[1:], _record(51, "delivered", None)]


def test_ledger_page_entries_carry_next_attempt_redriven_and_history() -> None:
    _, ledger = _empty_ledger()
    ledger.update(
        "n-1",
        "hook",
        DeliveryStatus.RETRYING,
        row=ROW,
        attempts=8,
        redriven=1,
        next_attempt_at=NEXT,
        history=_record(8),
    )

    [entry] = ledger.page("n-1").entries

    assert (entry.next_attempt_at, entry.redriven, entry.history) == (NEXT, 1, [_record(8)])


@pytest.mark.parametrize(
    "key",
    ["x" * (DELIVERY_KEY_BYTES + 1), "é" * (DELIVERY_KEY_BYTES // 2 + 1), "hook\ud800"],
    ids=["too-long", "too-long-in-utf8", "lone-surrogate"],
)
def test_decode_cursor_of_a_key_dynamodb_cannot_compare_is_refused_naming_cursor(key: str) -> None:
    # DynamoDB refuses such a key in a Query's condition: the status route would answer 502.
    with pytest.raises(InvalidRequestError, match=r"^cursor: "):
        decode_cursor(encode_cursor(key))


def test_decode_cursor_of_the_longest_key_is_its_key() -> None:
    key = "é" * (DELIVERY_KEY_BYTES // 2)

    assert decode_cursor(encode_cursor(key)) == key


class _NoDynamoDB:
    """A client any call to which fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"DynamoDB was asked: {name}")


@pytest.mark.parametrize(
    ("notification_id", "delivery_key"),
    [("n-1", "k" * 1025), ("n" * 2049, "k"), ("n-1", "hook\ud800"), ("", "k"), ("n-1", "é" * 513)],
    ids=["sort-key-over-1024-bytes", "partition-key-over-2048-bytes", "lone-surrogate", "empty", "utf8-over-1024"],
)
def test_get_entry_of_ids_no_key_can_hold_is_none_without_asking_dynamodb(
    notification_id: str, delivery_key: str
) -> None:
    # A dead letter's body names any ids: DynamoDB refuses such a GetItem (ValidationException), and the listing and
    # every redrive of the dead-letter queue answered 502 for the one letter.
    assert DeliveryLedger(_NoDynamoDB(), TABLE).get_entry(notification_id, delivery_key) is None
