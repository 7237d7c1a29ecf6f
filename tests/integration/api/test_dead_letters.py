"""Integration tests of the dead-letter routes (api/handler.py → api/dead_letters.py) on moto."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

import api.dead_letters
from api.dead_letters import list_dead_letters, redrive
from core.clients import get_client, get_ledger
from core.errors import UpstreamError
from core.ledger import DeliveryRow
from core.models import DeliveryStatus
from core.ports import RedriveLedgerPort
from tests.integration.api.conftest import AdminApi
from tests.support.aws import NAMES, AwsResources, receive_all
from tests.support.events import response_json
from tests.support.ledger import webhook_record

LIST = "/v1/dead-letters"
REDRIVE = "/v1/dead-letters/redrive"


def _message(notification_id: str, integration: str) -> dict[str, Any]:
    return {
        "v": 2,
        "notification_id": notification_id,
        "delivery_key": integration,
        "channel": "orders",
        "topic": "shipped",
        "created_at": "2026-11-21T20:00:00.000Z",
        "integration": {"name": integration, "type": "webhook", "target": {"url": "https://example.com/hook"}},
        "content": {"text": "hi"},
        "attempt": 7,
        "not_before": "2026-11-21T21:00:00.000Z",
    }


def _dead(aws: AwsResources, notification_id: str, integration: str = "erp-webhook", **changes: Any) -> dict[str, Any]:
    """Put a delivery in the DLQ as the consumer buries it: last error as attribute, ledger row ``dead``."""
    message = {**_message(notification_id, integration), **changes}
    row = DeliveryRow(integration=integration, type="webhook")
    attempts = message.get("prior_attempts", 0) + message["attempt"]
    get_ledger().update(
        notification_id,
        integration,
        DeliveryStatus.DEAD,
        row=row,
        attempts=attempts,
        redriven=message.get("redriven", 0),
        last_error="webhook: HTTP 503",
    )
    aws.sqs.send_message(
        QueueUrl=aws.dead_letter_queue_url,
        MessageBody=json.dumps(message),
        MessageAttributes={"last_error": {"DataType": "String", "StringValue": "webhook: HTTP 503"}},
    )
    return message


def _crashed(aws: AwsResources, notification_id: str, integration: str = "erp-webhook") -> None:
    """Put a version 1 message in the DLQ as SQS moves one a consumer crashed on: the ledger holds the error."""
    message = _message(notification_id, integration)
    for field in ("delivery_key", "attempt", "not_before"):
        del message[field]
    message["v"] = 1
    row = DeliveryRow(integration=integration, type="webhook")
    get_ledger().update(
        notification_id, integration, DeliveryStatus.RETRYING, row=row, attempts=3, last_error="internal error"
    )
    aws.sqs.send_message(QueueUrl=aws.dead_letter_queue_url, MessageBody=json.dumps(message))


def test_list_dead_letters_shows_id_integration_error_and_count(admin: AdminApi, aws: AwsResources) -> None:
    _dead(aws, "n-1")

    response = admin.call("GET", LIST)

    assert response["statusCode"] == 200
    [listed] = response_json(response)["messages"]
    assert {
        key: listed[key]
        for key in ("notification_id", "delivery_key", "integration", "type", "last_error", "receive_count")
    } == {
        "notification_id": "n-1",
        "delivery_key": "erp-webhook",
        "integration": "erp-webhook",
        "type": "webhook",
        "last_error": "webhook: HTTP 503",
        "receive_count": 0,
    }


def test_list_dead_letters_crashed_message_error_comes_from_ledger(admin: AdminApi, aws: AwsResources) -> None:
    _crashed(aws, "n-9")

    [listed] = response_json(admin.call("GET", LIST))["messages"]

    assert (listed["delivery_key"], listed["last_error"]) == ("erp-webhook", "internal error")


def test_list_dead_letters_leaves_messages_visible(admin: AdminApi, aws: AwsResources) -> None:
    _dead(aws, "n-1")
    _dead(aws, "n-2")

    admin.call("GET", LIST)

    assert len(receive_all(aws.sqs, aws.dead_letter_queue_url)) == 2


def test_list_dead_letters_empty_queue_lists_nothing(admin: AdminApi) -> None:
    response = admin.call("GET", LIST)

    assert response_json(response) == {"messages": [], "more": False}


def test_list_dead_letters_says_more_when_it_stops_at_its_limit(admin: AdminApi, aws: AwsResources) -> None:
    # 150 letters listed as 100 with no sign of the other 50.
    for start in range(0, 110, 10):
        entries = [{"Id": str(i), "MessageBody": json.dumps(_message(f"n-{start + i}", "hook"))} for i in range(10)]
        aws.sqs.send_message_batch(QueueUrl=aws.dead_letter_queue_url, Entries=entries)

    body = response_json(admin.call("GET", LIST))

    assert (len(body["messages"]), body["more"]) == (100, True)


class _SamplingSqs:
    """SQS whose first short-poll receive samples servers that hold no letter, as SQS's short polls may."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self.missed = False

    def receive_message(self, **request: Any) -> dict[str, Any]:
        if request.get("WaitTimeSeconds", 0) == 0 and not self.missed:
            self.missed = True
            return {"Messages": []}
        answer: dict[str, Any] = self._sqs.receive_message(**request)
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)


def test_list_dead_letters_short_poll_finding_none_is_tried_again_with_a_long_poll(aws: AwsResources) -> None:
    # An empty short poll ended the listing: three letters in the queue, none listed.
    for index in range(3):
        _dead(aws, f"n-{index}")

    listed = list_dead_letters(_SamplingSqs(aws.sqs), aws.dead_letter_queue_url, get_ledger())

    assert sorted(letter["notification_id"] for letter in listed["messages"]) == ["n-0", "n-1", "n-2"]
    assert listed["more"] is False


def test_redrive_moves_messages_to_delivery_queue(admin: AdminApi, aws: AwsResources) -> None:
    sent = [_dead(aws, f"n-{index}") for index in range(3)]

    response = admin.call("POST", REDRIVE)

    assert response_json(response) == {"redriven": 3, "more": False}
    moved = receive_all(aws.sqs, aws.delivery_queue_url)
    assert sorted(json.loads(message["Body"])["notification_id"] for message in moved) == [
        message["notification_id"] for message in sent
    ]
    assert receive_all(aws.sqs, aws.dead_letter_queue_url) == []


def test_redrive_keeps_the_notifications_record_as_long_as_the_new_run_needs_it(aws: AwsResources) -> None:
    # The record's TTL was set at publish and never moved: redriven 29 days later, the new run's status was a 404
    # the next day (the record gone), while its row and message lived on.
    ledger = get_ledger()
    ledger.record_notification(webhook_record("n-1", "erp-webhook"))
    key = {"notification_id": {"S": "n-1"}, "delivery_key": {"S": "#"}}
    table = NAMES["DELIVERIES_TABLE"]
    aws.dynamodb.update_item(
        TableName=table, Key=key, UpdateExpression="SET expires_at = :x", ExpressionAttributeValues={":x": {"N": "1"}}
    )
    _dead(aws, "n-1")

    redrive(aws.sqs, aws.dead_letter_queue_url, aws.delivery_queue_url, ledger, 10)

    expires = int(aws.dynamodb.get_item(TableName=table, Key=key)["Item"]["expires_at"]["N"])
    assert expires >= time.time() + 29 * 86400


def _moved(aws: AwsResources) -> list[dict[str, Any]]:
    return [json.loads(message["Body"]) for message in receive_all(aws.sqs, aws.delivery_queue_url)]


def test_redrive_starts_a_new_run_of_attempts(admin: AdminApi, aws: AwsResources) -> None:
    _dead(aws, "n-1")

    admin.call("POST", REDRIVE)

    [moved] = _moved(aws)
    assert (moved["attempt"], moved["slot_reserved"], "not_before" in moved) == (0, False, False)
    assert moved["window_start"] > moved["created_at"]


def test_redrive_message_carries_the_attempts_before_and_the_redrive(admin: AdminApi, aws: AwsResources) -> None:
    _dead(aws, "n-1")

    admin.call("POST", REDRIVE)

    [moved] = _moved(aws)
    assert (moved["prior_attempts"], moved["redriven"]) == (7, 1)


def test_redrive_of_a_delivery_redriven_before_adds_its_last_run(admin: AdminApi, aws: AwsResources) -> None:
    _dead(aws, "n-1", prior_attempts=3, redriven=1)

    admin.call("POST", REDRIVE)

    [moved] = _moved(aws)
    entry = get_ledger().get_entry("n-1", "erp-webhook")
    assert (moved["prior_attempts"], moved["redriven"]) == (10, 2)
    assert entry is not None
    assert (entry.attempts, entry.redriven) == (10, 2)


def test_redrive_version_1_body_goes_back_as_version_2_with_the_ledgers_attempts(
    admin: AdminApi, aws: AwsResources
) -> None:
    _crashed(aws, "n-9")

    admin.call("POST", REDRIVE)

    [moved] = _moved(aws)
    assert (moved["v"], moved["delivery_key"], moved["attempt"]) == (2, "erp-webhook", 0)
    assert (moved["prior_attempts"], moved["redriven"]) == (3, 1)


def test_redrive_sets_ledger_rows_queued_keeping_attempts_and_counting_the_redrive(
    admin: AdminApi, aws: AwsResources
) -> None:
    _dead(aws, "n-1")

    admin.call("POST", REDRIVE)

    entry = get_ledger().get_entry("n-1", "erp-webhook")
    assert entry is not None
    assert (entry.status, entry.last_error, entry.attempts, entry.redriven, entry.next_attempt_at) == (
        DeliveryStatus.QUEUED,
        None,
        7,
        1,
        None,
    )


class _DeleteLost:
    """An SQS client whose deletes are lost and whose receives hide nothing, as if each delete had come too late."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs

    def receive_message(self, **kwargs: Any) -> Any:
        return self._sqs.receive_message(**{**kwargs, "VisibilityTimeout": 0})

    def delete_message(self, **kwargs: Any) -> None:
        pass

    def send_message(self, **kwargs: Any) -> Any:
        return self._sqs.send_message(**kwargs)


def test_redrive_same_letter_twice_goes_back_once_and_counts_one_redrive(aws: AwsResources) -> None:
    # Its delete lost (a 502 the caller retries), the letter went back twice: two copies of one run, both sent.
    _dead(aws, "n-1")
    sqs = _DeleteLost(get_client("sqs"))

    for _ in range(2):
        redrive(sqs, aws.dead_letter_queue_url, aws.delivery_queue_url, get_ledger(), max_messages=1)

    moved = _moved(aws)
    entry = get_ledger().get_entry("n-1", "erp-webhook")
    assert [(body["attempt"], body["prior_attempts"], body["redriven"]) for body in moved] == [(0, 7, 1)]
    assert entry is not None
    assert (entry.attempts, entry.redriven) == (7, 1)


class _LedgerWritesFail:
    """The ledger, whose writes fail (DynamoDB throttled) while its reads answer."""

    def __init__(self, ledger: Any) -> None:
        self._ledger = ledger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def update(self, *args: Any, **kwargs: Any) -> bool:
        raise UpstreamError("writing the ledger failed (ProvisionedThroughputExceededException)")


def test_redrive_whose_row_write_fails_after_the_send_deletes_the_letter_and_sends_one_copy(aws: AwsResources) -> None:
    # It raised after the send: the answer was a 502, the letter stayed, and the redrive retried sent a second copy of
    # the same run (two copies in one batch were both sent).
    _dead(aws, "n-1")
    ledger = _LedgerWritesFail(get_ledger())

    for _ in range(2):
        redrive(get_client("sqs"), aws.dead_letter_queue_url, aws.delivery_queue_url, ledger, max_messages=1)

    assert len(_moved(aws)) == 1
    assert receive_all(aws.sqs, aws.dead_letter_queue_url) == []


class _RunWritesFirst:
    """An SQS client under which a redriven message's run ends before the redrive marks its row ``queued``: a consumer
    took the message at once and its delivery failed."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    def send_message(self, **kwargs: Any) -> Any:
        sent = self._sqs.send_message(**kwargs)
        body = json.loads(kwargs["MessageBody"])
        get_ledger().update(
            body["notification_id"],
            body["delivery_key"],
            DeliveryStatus.FAILED,
            attempts=8,
            redriven=body["redriven"],
            last_error="webhook: HTTP 410",
        )
        return sent


def test_redrive_leaves_the_row_to_the_run_that_wrote_it_first(aws: AwsResources) -> None:
    _dead(aws, "n-1")

    redrive(_RunWritesFirst(get_client("sqs")), aws.dead_letter_queue_url, aws.delivery_queue_url, get_ledger(), 1)

    entry = get_ledger().get_entry("n-1", "erp-webhook")
    assert entry is not None
    assert (entry.status, entry.attempts, entry.redriven, entry.last_error) == (
        DeliveryStatus.FAILED,
        8,
        1,
        "webhook: HTTP 410",
    )


class _BuriedAgainFirst(_RunWritesFirst):
    """An SQS client under which a redriven letter this code cannot read is taken by a consumer and buried again (its
    row ``dead``) before the redrive marks the row: the two functions run at once."""

    def send_message(self, **kwargs: Any) -> Any:
        sent = self._sqs.send_message(**kwargs)
        body = json.loads(kwargs["MessageBody"])
        get_ledger().update(
            body["notification_id"], body["delivery_key"], DeliveryStatus.DEAD, last_error="malformed message"
        )
        return sent


def test_redrive_of_an_unreadable_letter_leaves_the_row_a_consumer_wrote_meanwhile(aws: AwsResources) -> None:
    # A newer producer's body (a field this code does not know) names its delivery, but carries no run to guard the
    # write with: ``queued`` landed over the consumer's ``dead`` and erased its reason, the letter back in the DLQ.
    _dead(aws, "n-1", priority="high")

    redrive(_BuriedAgainFirst(get_client("sqs")), aws.dead_letter_queue_url, aws.delivery_queue_url, get_ledger(), 1)

    entry = get_ledger().get_entry("n-1", "erp-webhook")
    assert entry is not None
    assert (entry.status, entry.last_error) == (DeliveryStatus.DEAD, "malformed message")


def test_redrive_of_an_unreadable_letter_marks_its_row_queued(aws: AwsResources) -> None:
    _dead(aws, "n-1", priority="high")

    redrive(get_client("sqs"), aws.dead_letter_queue_url, aws.delivery_queue_url, get_ledger(), 1)

    entry = get_ledger().get_entry("n-1", "erp-webhook")
    assert entry is not None
    assert (entry.status, entry.last_error) == (DeliveryStatus.QUEUED, None)
    assert len(_moved(aws)) == 1


def test_redrive_of_a_record_only_copy_sends_it_back_as_it_is_and_leaves_the_row(
    admin: AdminApi, aws: AwsResources
) -> None:
    # A copy that only writes its run's outcome (a consumer from before it buried it as malformed, say) starts no run:
    # counting a redrive on it would let it end the new run the same redrive starts.
    outcome = {"status": "delivered", "attempts": 3, "at": "2026-11-21T20:30:00.000Z", "tries": 1}
    sent = _dead(aws, "n-1", outcome=outcome, prior_attempts=2, redriven=1, content={})
    before = get_ledger().get_entry("n-1", "erp-webhook")

    admin.call("POST", REDRIVE)

    [moved] = _moved(aws)
    assert moved == {**{key: value for key, value in sent.items() if key != "not_before"}, "slot_reserved": False}
    assert get_ledger().get_entry("n-1", "erp-webhook") == before


def test_redrive_max_messages_limits_the_move(admin: AdminApi, aws: AwsResources) -> None:
    for index in range(3):
        _dead(aws, f"n-{index}")

    response = admin.call("POST", REDRIVE, body={"max_messages": 2})

    assert response_json(response) == {"redriven": 2, "more": False}
    assert len(receive_all(aws.sqs, aws.delivery_queue_url)) == 2


def _clock_running_out(after: int) -> Callable[[], float]:
    """Return a time-left reading 30 s for its first ``after`` reads, then 1 s."""
    reads = itertools.count()
    return lambda: 30.0 if next(reads) < after else 1.0


def test_redrive_stops_when_the_function_time_runs_out_saying_more(aws: AwsResources) -> None:
    for index in range(12):  # more than one receive takes
        _dead(aws, f"n-{index}")

    # Read once before the first receive and before each of its ten letters: time runs out before the second receive.
    moved = redrive(
        get_client("sqs"), aws.dead_letter_queue_url, aws.delivery_queue_url, get_ledger(), 100, _clock_running_out(11)
    )

    assert moved == {"redriven": 10, "more": True}
    assert len(receive_all(aws.sqs, aws.delivery_queue_url)) == 10


def test_redrive_stops_between_the_letters_of_one_receive_and_hands_the_rest_back(aws: AwsResources) -> None:
    for index in range(5):
        _dead(aws, f"n-{index}")

    # Read once before the receive, then before each letter: time runs out before the fourth.
    moved = redrive(
        get_client("sqs"), aws.dead_letter_queue_url, aws.delivery_queue_url, get_ledger(), 100, _clock_running_out(4)
    )

    assert moved == {"redriven": 3, "more": True}
    assert len(receive_all(aws.sqs, aws.delivery_queue_url)) == 3
    # The two not sent back are visible again at once, not held for the receive's hold time.
    assert len(receive_all(aws.sqs, aws.dead_letter_queue_url)) == 2


def test_redrive_takes_letters_a_listing_holds_when_it_begins(aws: AwsResources) -> None:
    _dead(aws, "n-1")
    [held] = aws.sqs.receive_message(QueueUrl=aws.dead_letter_queue_url, VisibilityTimeout=30)["Messages"]
    # The listing reads what it holds and hands it back a moment later, while the redrive's first receive finds none.
    release = threading.Timer(
        0.5,
        aws.sqs.change_message_visibility,
        kwargs={
            "QueueUrl": aws.dead_letter_queue_url,
            "ReceiptHandle": held["ReceiptHandle"],
            "VisibilityTimeout": 0,
        },
    )
    release.start()
    try:
        moved = redrive(get_client("sqs"), aws.dead_letter_queue_url, aws.delivery_queue_url, get_ledger(), 100)
    finally:
        release.join()

    assert moved == {"redriven": 1, "more": False}
    assert [body["notification_id"] for body in _moved(aws)] == ["n-1"]


def _buried_again(aws: AwsResources, monkeypatch: pytest.MonkeyPatch) -> Counter[str | None]:
    """Have every letter a redrive sends back taken from the delivery queue and buried again at once, as a consumer
    whose delivery fails at once does; return how often each notification was sent back."""
    send_back = api.dead_letters._send_back
    sent: Counter[str | None] = Counter()

    def send_back_then_buried_again(sqs: Any, queue_url: str, ledger: RedriveLedgerPort, letter: Any) -> Any:
        was_sent = send_back(sqs, queue_url, ledger, letter)
        sent[letter.notification_id] += 1
        [moved] = aws.sqs.receive_message(QueueUrl=aws.delivery_queue_url, MaxNumberOfMessages=1)["Messages"]
        aws.sqs.delete_message(QueueUrl=aws.delivery_queue_url, ReceiptHandle=moved["ReceiptHandle"])
        body = json.loads(moved["Body"])
        changes = {key: value for key, value in body.items() if key not in ("notification_id", "integration")}
        _dead(aws, body["notification_id"], body["integration"]["name"], **{**changes, "attempt": 1})
        return was_sent

    monkeypatch.setattr(api.dead_letters, "_send_back", send_back_then_buried_again)
    return sent


@pytest.mark.parametrize("sqs_behind", [0.0, 60.0], ids=["one-clock", "sqs-clock-behind"])
def test_redrive_letter_buried_again_during_the_call_is_redriven_once_and_left_for_the_next(
    admin: AdminApi, aws: AwsResources, monkeypatch: pytest.MonkeyPatch, sqs_behind: float
) -> None:
    # The call received the letters the consumer buried again meanwhile and sent them back too, up to max_messages:
    # one call sent one delivery to its destination many times. With SQS's clock behind the function's, a letter
    # buried again seems sent before the call began: its delivery tells it.
    for index in range(3):
        _dead(aws, f"n-{index}")
    sent = _buried_again(aws, monkeypatch)
    monkeypatch.setattr(api.dead_letters, "time", SimpleNamespace(time=lambda: time.time() + sqs_behind))

    response = admin.call("POST", REDRIVE)

    assert response_json(response) == {"redriven": 3, "more": False}
    assert sent == {"n-0": 1, "n-1": 1, "n-2": 1}
    # Held while the call ran, visible again once it ended.
    left = [json.loads(message["Body"]) for message in receive_all(aws.sqs, aws.dead_letter_queue_url)]
    assert sorted((body["notification_id"], body["redriven"]) for body in left) == [("n-0", 1), ("n-1", 1), ("n-2", 1)]


def test_redrive_letter_that_reached_the_queue_after_the_call_began_is_left_there(
    aws: AwsResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(2):
        _dead(aws, f"n-{index}")
    send_back = api.dead_letters._send_back

    def send_back_while_another_is_buried(sqs: Any, queue_url: str, ledger: RedriveLedgerPort, letter: Any) -> Any:
        was_sent = send_back(sqs, queue_url, ledger, letter)
        if letter.notification_id == "n-0":
            _dead(aws, "n-new")
        return was_sent

    monkeypatch.setattr(api.dead_letters, "_send_back", send_back_while_another_is_buried)

    moved = redrive(get_client("sqs"), aws.dead_letter_queue_url, aws.delivery_queue_url, get_ledger(), 100)

    assert moved == {"redriven": 2, "more": False}
    assert sorted(body["notification_id"] for body in _moved(aws)) == ["n-0", "n-1"]
    [left] = receive_all(aws.sqs, aws.dead_letter_queue_url)
    assert json.loads(left["Body"])["notification_id"] == "n-new"


def test_redrive_invalid_max_messages_is_422(admin: AdminApi, aws: AwsResources) -> None:
    response = admin.call("POST", REDRIVE, body={"max_messages": 0})

    assert response["statusCode"] == 422


def test_redrive_unknown_field_is_422(admin: AdminApi, aws: AwsResources) -> None:
    response = admin.call("POST", REDRIVE, body={"queue": "other"})

    assert response["statusCode"] == 422


def test_redrive_older_copy_of_a_run_deleted_unsent_does_not_hold_back_the_deliverys_letter(aws: AwsResources) -> None:
    # A letter of run 0 left in the DLQ (an earlier redrive's delete failed) was deleted unsent, yet it marked its
    # delivery as redriven by the call: run 1's letter was held back, and the answer said redriven with nothing sent.
    _dead(aws, "n-1", redriven=0)
    _dead(aws, "n-1", redriven=1)

    moved = redrive(get_client("sqs"), aws.dead_letter_queue_url, aws.delivery_queue_url, get_ledger(), 10)

    assert moved == {"redriven": 2, "more": False}
    assert [(body["notification_id"], body["redriven"]) for body in _moved(aws)] == [("n-1", 2)]
    assert receive_all(aws.sqs, aws.dead_letter_queue_url) == []


class _DeleteFailsOnce:
    """SQS whose second DeleteMessage cannot be reached."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self.deletes = 0

    def delete_message(self, **request: Any) -> Any:
        self.deletes += 1
        if self.deletes == 2:
            raise EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.com/")
        return self._sqs.delete_message(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)


def test_redrive_that_fails_shows_every_letter_it_held_again_at_once_and_a_retry_sends_each_once(
    aws: AwsResources,
) -> None:
    # Letters held back by the call (a second copy of a run it redrove), and those of its receive it had not got to,
    # stayed hidden 30 s after a failure: the retry a 502 invites found an empty queue and said it was done.
    _dead(aws, "n-1")
    _dead(aws, "n-1")
    for index in range(2, 6):
        _dead(aws, f"n-{index}")

    with pytest.raises(UpstreamError):
        redrive(
            _DeleteFailsOnce(get_client("sqs")), aws.dead_letter_queue_url, aws.delivery_queue_url, get_ledger(), 10
        )
    attributes = aws.sqs.get_queue_attributes(
        QueueUrl=aws.dead_letter_queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    retried = redrive(get_client("sqs"), aws.dead_letter_queue_url, aws.delivery_queue_url, get_ledger(), 10)

    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert retried["more"] is False
    assert receive_all(aws.sqs, aws.dead_letter_queue_url) == []
    sent = Counter(body["notification_id"] for body in _moved(aws))
    assert sent == {f"n-{index}": 1 for index in range(1, 6)}


class _ReadTogether:
    """The ledger, whose row reads by two redrive calls happen at the same moment: two admins (or a script and an
    admin) redriving at once."""

    def __init__(self, ledger: Any, barrier: threading.Barrier) -> None:
        self._ledger = ledger
        self._barrier = barrier

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def get_entry(self, *args: Any) -> Any:
        found = self._ledger.get_entry(*args)
        self._barrier.wait(timeout=10)
        return found


def test_redrive_two_calls_at_once_each_holding_a_letter_of_one_run_send_it_back_once(aws: AwsResources) -> None:
    """Two letters of one run (a consumer killed between a bury and its write buries it again), taken by two calls at
    once: both read a row not yet redriven, and both sent it back, two runs of one delivery."""
    letter = _dead(aws, "n-1")
    aws.sqs.send_message(QueueUrl=aws.dead_letter_queue_url, MessageBody=json.dumps(letter))
    ledger = _ReadTogether(get_ledger(), threading.Barrier(2))
    answers: list[Any] = []

    def call() -> None:
        answers.append(redrive(get_client("sqs"), aws.dead_letter_queue_url, aws.delivery_queue_url, ledger, 1))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert [(body["notification_id"], body["redriven"]) for body in _moved(aws)] == [("n-1", 1)]
    assert sorted(answer["redriven"] for answer in answers) == [0, 1]
    # The letter left behind is a copy of the run sent back: the next call deletes it, unsent.
    assert redrive(get_client("sqs"), aws.dead_letter_queue_url, aws.delivery_queue_url, get_ledger(), 10) == {
        "redriven": 1,
        "more": False,
    }
    assert _moved(aws) == []
    assert receive_all(aws.sqs, aws.dead_letter_queue_url) == []
