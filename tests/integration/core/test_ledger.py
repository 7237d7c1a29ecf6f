"""Integration tests of core/ledger.py's batch read (``get_entries``) on the ledger table under moto."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from core.clients import get_client
from core.errors import NotFoundError, UpstreamError
from core.ledger import REDRIVE_CLAIM_SECONDS, ROW_ABSENT, Delivery, DeliveryLedger, DeliveryRow, RedriveClaim
from core.models import DeliveryStatus
from tests.support.aws import NAMES, AwsResources
from tests.support.ledger import webhook_record

TABLE = NAMES["DELIVERIES_TABLE"]


class CountingClient:
    """Wraps a boto3 DynamoDB client, counts its ``batch_get_item`` calls and can answer some keys unprocessed."""

    def __init__(self, client: Any, unprocessed_answers: int = 0) -> None:
        self._client = client
        self.batch_gets: list[int] = []
        self.unprocessed_answers = unprocessed_answers

    def batch_get_item(self, RequestItems: dict[str, Any]) -> Any:
        """Count the call and make it; while ``unprocessed_answers`` lasts, hand the last key back unprocessed."""
        [(table, request)] = RequestItems.items()
        self.batch_gets.append(len(request["Keys"]))
        if self.unprocessed_answers:
            self.unprocessed_answers -= 1
            *asked, held = request["Keys"]
            response: dict[str, Any] = {"Responses": {table: []}}
            if asked:
                response = self._client.batch_get_item(RequestItems={table: {**request, "Keys": asked}})
            return {**response, "UnprocessedKeys": {table: {**request, "Keys": [held]}}}
        return self._client.batch_get_item(RequestItems=RequestItems)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _ledger(client: Any) -> DeliveryLedger:
    return DeliveryLedger(client, TABLE)


def _write_rows(ledger: DeliveryLedger, count: int) -> list[tuple[str, str]]:
    keys = [(f"n-{index // 3}", f"hook-{index % 3}") for index in range(count)]
    for index, (notification_id, delivery_key) in enumerate(keys):
        ledger.update(
            notification_id,
            delivery_key,
            DeliveryStatus.DELIVERED if index % 2 else DeliveryStatus.RETRYING,
            row=DeliveryRow(delivery_key, "webhook"),
            attempts=index + 1,
        )
    return keys


def test_get_entries_returns_each_row_and_none_for_a_key_with_no_row(aws: AwsResources) -> None:
    ledger = _ledger(get_client("dynamodb"))
    keys = _write_rows(ledger, 3)

    entries = ledger.get_entries([*keys, ("n-9", "hook-0")])

    assert {key: (entry.status, entry.attempts) if entry else None for key, entry in entries.items()} == {
        ("n-0", "hook-0"): (DeliveryStatus.RETRYING, 1),
        ("n-0", "hook-1"): (DeliveryStatus.DELIVERED, 2),
        ("n-0", "hook-2"): (DeliveryStatus.RETRYING, 3),
        ("n-9", "hook-0"): None,
    }


def test_get_entries_agrees_with_get_entry(aws: AwsResources) -> None:
    ledger = _ledger(get_client("dynamodb"))
    keys = _write_rows(ledger, 4)

    assert ledger.get_entries(keys) == {key: ledger.get_entry(*key) for key in keys}


def test_get_entries_reads_a_hundred_keys_a_call(aws: AwsResources) -> None:
    client = CountingClient(get_client("dynamodb"))
    ledger = _ledger(client)
    keys = _write_rows(ledger, 150)

    entries = ledger.get_entries(keys)

    assert (client.batch_gets, sum(entry is not None for entry in entries.values())) == ([100, 50], 150)


def test_get_entries_asks_once_for_a_key_named_twice(aws: AwsResources) -> None:
    client = CountingClient(get_client("dynamodb"))
    ledger = _ledger(client)
    [key] = _write_rows(ledger, 1)

    assert list(ledger.get_entries([key, key])) == [key]
    assert client.batch_gets == [1]


def test_get_entries_asks_again_for_unprocessed_keys(aws: AwsResources, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.ledger.time.sleep", lambda seconds: None)
    client = CountingClient(get_client("dynamodb"), unprocessed_answers=1)
    ledger = _ledger(client)
    keys = _write_rows(ledger, 3)

    entries = ledger.get_entries(keys)

    assert client.batch_gets == [3, 1]
    assert all(entries[key] is not None for key in keys)


def test_get_entries_keys_left_unprocessed_are_left_out_and_the_rest_kept(
    aws: AwsResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr("core.ledger.time.sleep", slept.append)
    client = CountingClient(get_client("dynamodb"), unprocessed_answers=99)
    ledger = _ledger(client)
    keys = _write_rows(ledger, 3)

    entries = ledger.get_entries(keys)

    assert list(entries) == keys[:2]
    assert all(entries[key] is not None for key in keys[:2])
    # Four calls, a back-off before each but the first: none after the last.
    assert (client.batch_gets, slept) == ([3, 1, 1, 1], [0.05, 0.1, 0.2])


@pytest.mark.parametrize(
    "error",
    [
        ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "-"}}, "BatchGetItem"),
        EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/"),
    ],
)
def test_get_entries_failure_raises_upstream_error(
    aws: AwsResources, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    client = CountingClient(get_client("dynamodb"))

    def failing(**kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(client, "batch_get_item", failing)

    with pytest.raises(UpstreamError, match=r"^reading the ledger failed \(") as raised:
        _ledger(client).get_entries([("n-1", "hook")])
    assert raised.value.__cause__ is error


def _row_with_redrives(redriven: int) -> None:
    _ledger(get_client("dynamodb")).update(
        "n-1", "k-1", DeliveryStatus.FAILED, attempts=3, redriven=redriven, last_error="HTTP 410"
    )


def test_update_before_run_writes_a_row_that_counts_fewer_redrives(aws: AwsResources) -> None:
    _row_with_redrives(0)

    written = _ledger(get_client("dynamodb")).update(
        "n-1", "k-1", DeliveryStatus.QUEUED, attempts=3, redriven=1, before_run=1
    )

    entry = _ledger(get_client("dynamodb")).get_entry("n-1", "k-1")
    assert entry is not None
    assert (written, entry.status, entry.redriven) == (True, DeliveryStatus.QUEUED, 1)


def test_update_before_run_writes_a_row_not_there_yet(aws: AwsResources) -> None:
    written = _ledger(get_client("dynamodb")).update(
        "n-1", "k-1", DeliveryStatus.QUEUED, attempts=3, redriven=1, before_run=1
    )

    assert written is True


@pytest.mark.parametrize("redriven", [1, 2])
def test_update_before_run_leaves_a_row_that_counts_as_many_redrives_or_more(aws: AwsResources, redriven: int) -> None:
    _row_with_redrives(redriven)

    written = _ledger(get_client("dynamodb")).update(
        "n-1", "k-1", DeliveryStatus.QUEUED, attempts=3, redriven=1, before_run=1
    )

    entry = _ledger(get_client("dynamodb")).get_entry("n-1", "k-1")
    assert entry is not None
    assert (written, entry.status, entry.redriven, entry.last_error) == (
        False,
        DeliveryStatus.FAILED,
        redriven,
        "HTTP 410",
    )


# --- record_failed: rows of deliveries not enqueued, never over a row the consumer wrote ------------------------------


def test_record_failed_writes_a_failed_row_without_attempts_per_delivery(aws: AwsResources) -> None:
    ledger = _ledger(get_client("dynamodb"))

    ledger.record_failed(
        "n-1", [(f"hook-{index}", DeliveryRow(f"hook-{index}", "webhook"), "Timeout") for index in (0, 1)]
    )

    entries = [ledger.get_entry("n-1", f"hook-{index}") for index in (0, 1)]
    assert [(e.status, e.attempts, e.last_error) for e in entries if e] == [(DeliveryStatus.FAILED, 0, "Timeout")] * 2


@pytest.mark.parametrize("status", [DeliveryStatus.DELIVERED, DeliveryStatus.RETRYING])
def test_record_failed_leaves_a_row_the_consumer_wrote(aws: AwsResources, status: DeliveryStatus) -> None:
    # SQS took the message after the publish gave up on its batch, and the consumer got to it first: what the consumer
    # wrote stands; the other delivery, with no row, is written.
    ledger = _ledger(get_client("dynamodb"))
    ledger.update("n-1", "hook-0", status, row=DeliveryRow("hook-0", "webhook"), attempts=1)

    ledger.record_failed(
        "n-1", [(f"hook-{index}", DeliveryRow(f"hook-{index}", "webhook"), "Timeout") for index in (0, 1)]
    )

    written, other = ledger.get_entry("n-1", "hook-0"), ledger.get_entry("n-1", "hook-1")
    assert written is not None
    assert other is not None
    assert (written.status, written.attempts, written.last_error) == (status, 1, None)
    assert (other.status, other.last_error) == (DeliveryStatus.FAILED, "Timeout")


def test_record_failed_table_gone_raises_upstream_error_after_trying_every_row(aws: AwsResources) -> None:
    client = get_client("dynamodb")
    client.delete_table(TableName=TABLE)
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb.PutItem", lambda **_: calls.append("put"))

    with pytest.raises(UpstreamError, match=r"^writing the ledger failed \(ResourceNotFoundException\)$"):
        _ledger(client).record_failed("n-1", [(key, DeliveryRow(key, "webhook"), "Timeout") for key in ("a", "b")])
    assert calls == ["put", "put"]


def _expires(client: Any, notification_id: str, delivery_key: str) -> int:
    item = client.get_item(
        TableName=TABLE, Key={"notification_id": {"S": notification_id}, "delivery_key": {"S": delivery_key}}
    ).get("Item")
    return int(item["expires_at"]["N"]) if item else 0


def test_update_unchanged_since_writes_only_over_the_row_as_read(aws: AwsResources) -> None:
    ledger = _ledger(get_client("dynamodb"))
    _row_with_redrives(0)
    read = ledger.get_entry("n-1", "k-1")
    assert read is not None
    time.sleep(0.002)  # updated_at counts milliseconds: the write below changes it

    assert ledger.update("n-1", "k-1", DeliveryStatus.QUEUED, unchanged_since=read.updated_at) is True
    assert ledger.update("n-1", "k-1", DeliveryStatus.DEAD, unchanged_since=read.updated_at) is False

    entry = ledger.get_entry("n-1", "k-1")
    assert entry is not None
    assert entry.status is DeliveryStatus.QUEUED


def test_update_unchanged_since_absent_writes_only_while_there_is_no_row(aws: AwsResources) -> None:
    ledger = _ledger(get_client("dynamodb"))

    assert ledger.update("n-1", "k-1", DeliveryStatus.QUEUED, unchanged_since=ROW_ABSENT) is True
    assert ledger.update("n-1", "k-1", DeliveryStatus.DEAD, unchanged_since=ROW_ABSENT) is False


def test_update_of_a_row_waiting_far_ahead_keeps_it_the_ledgers_days_past_its_next_attempt(aws: AwsResources) -> None:
    # A row paced 40 days ahead expired after 30 while its message still waited on the queue.
    client = get_client("dynamodb", "us-east-1")
    ledger = DeliveryLedger(client, TABLE, epoch=lambda: 1_800_000_000.0)

    ledger.update("n-1", "hook", DeliveryStatus.RETRYING, next_attempt_at="2027-02-24T00:00:00Z")

    assert _expires(client, "n-1", "hook") == 1_803_427_200 + 30 * 86400  # 2027-02-24 + 30 days


@pytest.mark.parametrize(("days", "status"), [(29, DeliveryStatus.QUEUED), (31, DeliveryStatus.EXPIRED)])
def test_page_delivery_without_a_row_is_queued_until_the_record_is_older_than_the_ledgers_days(
    aws: AwsResources, days: int, status: DeliveryStatus
) -> None:
    # A redrive on day 14 kept the record to day 44, while a sibling delivered on day 0 lost its row on day 30: the
    # status said that delivery was queued, never attempted.
    created = 1_795_291_200.0  # webhook_record's created_at, 2026-11-21T20:00Z
    client = get_client("dynamodb", "us-east-1")
    record = webhook_record("n-1")._replace(
        delivery_count=2,
        deliveries=(Delivery("a", "a", "webhook"), Delivery("b", "b", "webhook")),
    )
    DeliveryLedger(client, TABLE).record_notification(record)
    DeliveryLedger(client, TABLE).update("n-1", "b", DeliveryStatus.DELIVERED, row=DeliveryRow("b", "webhook"))

    page = DeliveryLedger(client, TABLE, epoch=lambda: created + days * 86400).page("n-1")

    assert [(entry.delivery_key, entry.status) for entry in page.entries] == [
        ("a", status),
        ("b", DeliveryStatus.DELIVERED),
    ]
    assert page.counts == {status.value: 1, "delivered": 1}
    assert (page.entries[0].last_error is not None) is (status is DeliveryStatus.EXPIRED)


def test_keep_record_moves_the_records_ttl_past_a_later_time_only(aws: AwsResources) -> None:
    client = get_client("dynamodb", "us-east-1")
    ledger = DeliveryLedger(client, TABLE, epoch=lambda: 1_800_000_000.0)
    ledger.record_notification(webhook_record("n-1"))

    ledger.keep_record("n-1", 1_803_000_000.0)
    ledger.keep_record("n-1", 1_801_000_000.0)  # sooner: left as it is
    ledger.keep_record("n-2", 1_803_000_000.0)  # no record: none made

    assert _expires(client, "n-1", "#") == 1_803_000_000 + 30 * 86400
    assert _expires(client, "n-2", "#") == 0


def test_count_deliveries_writes_the_count_and_error_only(aws: AwsResources) -> None:
    """The expansion worker put the whole record it read before its pages: the TTL a consumer raised for a delivery
    paced 40 days ahead went back to 30 days from the page, and the SQS ids the producer wrote meanwhile were undone."""
    client = get_client("dynamodb", "us-east-1")
    ledger = DeliveryLedger(client, TABLE, epoch=lambda: 1_800_000_000.0)
    ledger.record_notification(webhook_record("n-1"))
    ledger.set_enqueued("n-1", {"a": "message-1"})
    ledger.keep_record("n-1", 1_803_000_000.0)

    ledger.count_deliveries("n-1", 7)
    ledger.count_deliveries("n-1", 9, "the segment was deleted")
    ledger.count_deliveries("n-2", 3)  # no record: none made

    record = ledger.get_record("n-1")
    assert (record.delivery_count, record.error, record.enqueued) == (9, "the segment was deleted", {"a": "message-1"})
    assert _expires(client, "n-1", "#") == 1_803_000_000 + 30 * 86400
    assert _expires(client, "n-2", "#") == 0


def test_claim_redrive_one_claimant_per_run_until_the_claim_lapses_or_the_row_counts_the_run(
    aws: AwsResources,
) -> None:
    client = get_client("dynamodb", "us-east-1")
    clock = {"now": 1_800_000_000.0}
    ledger = DeliveryLedger(client, TABLE, epoch=lambda: clock["now"])
    ledger.update("n-1", "a", DeliveryStatus.DEAD, row=DeliveryRow("a", "webhook"), attempts=7, redriven=0)

    assert ledger.claim_redrive("n-2", "a", 1, "letter-1") is RedriveClaim.NO_ROW  # and no row made
    assert ledger.get_entry("n-2", "a") is None
    assert ledger.claim_redrive("n-1", "a", 1, "letter-1") is RedriveClaim.CLAIMED
    assert ledger.claim_redrive("n-1", "a", 1, "letter-2") is RedriveClaim.HELD
    assert ledger.claim_redrive("n-1", "a", 1, "letter-1") is RedriveClaim.CLAIMED  # its send failed: again
    clock["now"] += REDRIVE_CLAIM_SECONDS + 1  # the first claimant died before its send
    assert ledger.claim_redrive("n-1", "a", 1, "letter-2") is RedriveClaim.CLAIMED
    ledger.update("n-1", "a", DeliveryStatus.QUEUED, redriven=1, before_run=1)
    assert ledger.claim_redrive("n-1", "a", 1, "letter-3") is RedriveClaim.REDRIVEN
    assert ledger.claim_redrive("n-1", "a", 2, "letter-3") is RedriveClaim.CLAIMED  # buried again, redriven again
    entry = ledger.get_entry("n-1", "a")
    assert entry is not None
    assert (entry.status, entry.attempts, entry.redriven) == (DeliveryStatus.QUEUED, 7, 1)


@pytest.mark.parametrize("status", [DeliveryStatus.RETRYING, DeliveryStatus.FAILED, DeliveryStatus.DEAD])
def test_update_never_writes_over_a_delivered_row(aws: AwsResources, status: DeliveryStatus) -> None:
    """Two copies of one delivery in flight (SQS delivers at least once): the late outcome of the one that did not
    deliver must not turn the row back (a retrying row would have its retry copy send the message again). The
    consumer's tests held this rule on a fake ledger that has it itself."""
    ledger = _ledger(get_client("dynamodb"))
    ledger.update("n-1", "k-1", DeliveryStatus.DELIVERED, row=DeliveryRow("k-1", "webhook"), attempts=1)

    written = ledger.update("n-1", "k-1", status, attempts=2, last_error="HTTP 500", redriven=0, before_run=1)

    entry = ledger.get_entry("n-1", "k-1")
    assert entry is not None
    assert (written, entry.status, entry.attempts) == (False, DeliveryStatus.DELIVERED, 1)


def test_users_deleted_tells_when_each_deleted_user_was_deleted(aws: AwsResources) -> None:
    ledger = _ledger(get_client("dynamodb"))
    ledger.mark_user_deleted("ada", "2026-11-25T00:00:00.000Z")
    ledger.mark_user_deleted("ada", "2026-11-25T01:00:00.000Z")  # deleted again after being created again
    ledger.mark_user_deleted("bob", "2026-11-25T02:00:00.000Z")

    deleted = ledger.users_deleted(["ada", "cy", "ada"])

    assert deleted == {"ada": "2026-11-25T01:00:00.000Z"}


def test_users_deleted_item_is_never_read_as_a_notification(aws: AwsResources) -> None:
    ledger = _ledger(get_client("dynamodb"))
    ledger.mark_user_deleted("ada", "2026-11-25T00:00:00.000Z")

    with pytest.raises(NotFoundError):
        ledger.get_record("deleted-user#ada")


def test_users_deleted_keys_left_unprocessed_to_the_end_raise_upstream_error(aws: AwsResources) -> None:
    ledger = _ledger(CountingClient(get_client("dynamodb"), unprocessed_answers=10))

    with pytest.raises(UpstreamError):
        ledger.users_deleted(["ada", "bob"])
