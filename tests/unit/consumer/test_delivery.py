"""Unit tests of one delivery attempt (consumer/delivery.py) on fakes: channel, ledger, queues, SSM, pacing, clock.

The clock stands still at ``NOW`` unless a test or a sleep moves it, and jitter is fixed at ``RAND`` = 0.5, so with the
default policy (base 10 s) the backoff after one attempt is 5 + 0.5 * 5 = 7.5 s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import pytest
from botocore.exceptions import ClientError

from consumer.credentials import CredentialSource
from consumer.delivery import (
    MAX_PROVIDER_ID_LENGTH,
    MISSING_CREDENTIALS_GRACE_SECONDS,
    Attempt,
    Deliverer,
    Outcome,
    parse_message,
)
from consumer.retry import RetryPolicy
from core.channels import DeliveryReceipt
from core.errors import (
    DeliveryDeferredError,
    EndpointDisabledError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    UpstreamError,
)
from core.ledger import HISTORY_LIMIT, AttemptRecord, LedgerEntry
from core.models import DeliveryMessage, DeliveryStatus
from core.pacing import Limit, Pacer, PaceStore
from core.queue import VisibilityScheduler, send_error
from core.times import iso_time
from tests.fakes.delivery import (
    FakeChannel,
    FakeClock,
    FakeDeadLetterQueue,
    FakeDeliveryQueue,
    FakeLedger,
    FakeSqsVisibility,
    FakeSsmParameters,
    MetricCounter,
    UnreachablePaceStore,
)
from tests.fakes.pacing import InMemoryPaceStore

NOW = 1_700_000_000.0
RAND = 0.5
MAX_ATTEMPTS = 5
MAX_WAIT = 5.0
LEAD = 2.0
ID = "n-1"
KEY = "k-1"
ROW_KEY = (ID, KEY)
REF = "/notify/test/integrations/orders/shipped/hook"
DESTINATION = "webhook:destination"
# One send a second: a slot every 1.1 s with the safety margin. One every ten seconds: every 11 s.
ONE_PER_SECOND = [Limit(DESTINATION, 1.0)]
ONE_PER_TEN_SECONDS = [Limit(DESTINATION, 0.1)]
BACKOFF_1 = 7.5
MAX_RECEIVES = 5


# --- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    """Unix time ``NOW`` until a test or a sleep advances it."""
    return FakeClock(NOW)


@pytest.fixture
def sleep(clock: FakeClock) -> Callable[[float], None]:
    """Sleeping that advances ``clock`` and records each sleep in ``clock.slept``."""
    return clock.sleep


@pytest.fixture
def rand() -> Callable[[], float]:
    """Jitter fixed at ``RAND``."""
    return lambda: RAND


@pytest.fixture
def count() -> MetricCounter:
    """Records the metrics counted."""
    return MetricCounter()


class Rig:
    """A deliverer built on fakes with explicit collaborators, and the fakes to assert on."""

    def __init__(
        self,
        clock: FakeClock,
        sleep: Callable[[float], None],
        rand: Callable[[], float],
        count: MetricCounter,
        store: PaceStore | None = None,
        max_receive_count: int | None = None,
    ) -> None:
        self.clock = clock
        self.count = count
        self.channel = FakeChannel(clock=clock)
        self.ledger = FakeLedger()
        self.queue = FakeDeliveryQueue()
        self.dead_letters = FakeDeadLetterQueue()
        self.sqs = FakeSqsVisibility()
        self.store = InMemoryPaceStore()
        self.parameters = FakeSsmParameters({REF: {"signing_secret": "s" * 16}})
        # Given only when set: the other tests run on the deliverer's own default (no count known).
        options: dict[str, Any] = {} if max_receive_count is None else {"max_receive_count": max_receive_count}
        self.deliverer = Deliverer(
            channels={"webhook": self.channel},
            ledger=self.ledger,
            credentials=CredentialSource(self.parameters, max_age=300),
            queue=self.queue,  # type: ignore[arg-type]
            dead_letters=self.dead_letters,  # type: ignore[arg-type]
            scheduler=VisibilityScheduler(self.sqs, "https://queue"),
            pacer=Pacer(store if store is not None else self.store),
            policy=RetryPolicy(max_attempts=MAX_ATTEMPTS),
            count=count,
            max_wait_seconds=MAX_WAIT,
            lead_seconds=LEAD,
            clock=clock,
            sleep=sleep,
            rand=rand,
            **options,
        )

    def process(self, body: str | None = None, receive_count: int = 1, latest_start: float | None = None) -> Outcome:
        """Process one received message (``_body()`` by default)."""
        return self.deliverer.process(
            Attempt(message_id="m-1", receipt_handle="rh-1", receive_count=receive_count, body=body or _body()),
            latest_start,
        )

    def row(self) -> LedgerEntry:
        """Return the delivery's ledger row."""
        return self.ledger.rows[ROW_KEY]

    def copies(self) -> list[tuple[DeliveryMessage, int]]:
        """Return the delayed copies sent, parsed, with their delays."""
        return [(DeliveryMessage.model_validate_json(body), delay) for body, delay in self.queue.sent]

    def copy(self) -> tuple[DeliveryMessage, int]:
        """Return the one delayed copy sent."""
        [copy] = self.copies()
        return copy

    def occupy(self, limits: list[Limit]) -> None:
        """Take the destination's free slot, as another consumer's send just did."""
        Pacer(self.store).reserve([Limit(limit.key, limit.per_second, limit.cost) for limit in limits], self.clock())


@pytest.fixture
def rig(clock: FakeClock, sleep: Callable[[float], None], rand: Callable[[], float], count: MetricCounter) -> Rig:
    """A deliverer on fakes; the channel accepts every send and its destination has no limits."""
    return Rig(clock, sleep, rand, count)


@pytest.fixture
def counted_rig(
    clock: FakeClock, sleep: Callable[[float], None], rand: Callable[[], float], count: MetricCounter
) -> Rig:
    """A deliverer on fakes told the delivery queue's maxReceiveCount, ``MAX_RECEIVES``."""
    return Rig(clock, sleep, rand, count, max_receive_count=MAX_RECEIVES)


def _too_large(action: str) -> UpstreamError:
    """Return the error a queue raises when SQS refuses a message over the queue's MaximumMessageSize: the domain
    error, raised from boto3's, as the queues raise it."""
    cause = ClientError(
        {
            "Error": {
                "Code": "InvalidParameterValue",
                "Message": "One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.",
            }
        },
        "SendMessage",
    )
    try:
        raise send_error(cause, action) from cause
    except UpstreamError as exc:
        return exc


def _refusing_as_too_large(action: str) -> Callable[..., Any]:
    """Return a ``send_later`` or ``bury`` that SQS refuses as too large."""

    def refuse(*args: Any) -> Any:
        raise _too_large(action)

    return refuse


def _message(**changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "v": 2,
        "notification_id": ID,
        "delivery_key": KEY,
        "channel": "orders",
        "topic": "shipped",
        "created_at": iso_time(NOW - 60),
        "integration": {"name": "hook", "type": "webhook", "target": {"url": "https://example.com/hook"}},
        "content": {"text": "hi"},
    }
    message.update(changes)
    return message


def _body(**changes: Any) -> str:
    return json.dumps(_message(**changes))


def _with_credentials(ref: str = REF, age: float = 60.0) -> str:
    """A webhook delivery naming credentials, of a notification published ``age`` seconds before ``NOW``."""
    message = _message(created_at=iso_time(NOW - age))
    message["integration"]["credentials_ref"] = ref
    return json.dumps(message)


def _v1_body() -> str:
    message = _message(v=1)
    del message["delivery_key"]
    return json.dumps(message)


def _ssm_error(code: str) -> ClientError:
    """Return the error SSM's GetParameter raises with ``code``."""
    return ClientError({"Error": {"Code": code, "Message": "fake"}}, "GetParameter")


def _server_error(retry_after: float | None = None) -> RetryableDeliveryError:
    return RetryableDeliveryError("webhook: HTTP 503", retry_after)


def _too_many_requests(retry_after: float | None) -> RetryableDeliveryError:
    return RetryableDeliveryError("webhook: HTTP 429", retry_after, rate_limited=True)


# --- delivered ----------------------------------------------------------------------------------------------------


def test_process_send_accepted_is_delivered(rig: Rig) -> None:
    assert rig.process() is Outcome.DELIVERED


def test_process_due_message_sends_once_with_its_delivery_key(rig: Rig) -> None:
    rig.process()

    assert rig.channel.delivery_keys == [KEY]


def test_process_due_message_sends_content_target_and_notification_id(rig: Rig) -> None:
    rig.process()

    [(content, target, credentials, notification_id)] = rig.channel.sent
    assert (content.text, dict(target), credentials, notification_id) == (
        "hi",
        {"url": "https://example.com/hook"},
        None,
        ID,
    )


def test_process_send_accepted_records_delivered_row_with_attempt_and_provider_id(rig: Rig) -> None:
    rig.process(_body(attempt=2))

    row = rig.row()
    assert (row.status, row.attempts, row.provider_message_id, row.last_error) == (
        DeliveryStatus.DELIVERED,
        3,
        "provider-1",
        None,
    )


def test_process_send_accepted_keeps_a_provider_id_of_200_characters(rig: Rig) -> None:
    # A receiver's X-Request-Id of any length went in the row and in a record-only copy, past the room kept for it.
    rig.channel.result = DeliveryReceipt("r" * 5000)

    rig.process()

    assert rig.row().provider_message_id == "r" * MAX_PROVIDER_ID_LENGTH


def test_process_send_accepted_writes_integration_and_type_to_row(rig: Rig) -> None:
    rig.process()

    assert (rig.row().integration, rig.row().type, rig.row().recipient) == ("hook", "webhook", None)


def test_process_recipient_present_is_written_to_row(rig: Rig) -> None:
    rig.process(_body(recipient={"user_id": "u-1", "address": "u1@example.com"}))

    assert rig.row().recipient == {"user_id": "u-1", "address": "u1@example.com"}


def test_process_send_accepted_counts_delivered(rig: Rig) -> None:
    rig.process()

    assert rig.count.calls == [("webhook", "delivered")]


def test_process_send_accepted_sends_no_copy(rig: Rig) -> None:
    rig.process()

    assert (rig.queue.sent, rig.dead_letters.buried, rig.sqs.changes) == ([], [], [])


# --- already delivered --------------------------------------------------------------------------------------------


def test_process_row_delivered_already_is_skipped(rig: Rig) -> None:
    rig.ledger.put(ID, KEY, DeliveryStatus.DELIVERED, attempts=1)

    assert rig.process() is Outcome.SKIPPED


def test_process_row_delivered_already_sends_nothing(rig: Rig) -> None:
    rig.ledger.put(ID, KEY, DeliveryStatus.DELIVERED, attempts=1)

    rig.process()

    assert (rig.channel.sent, rig.ledger.updates, rig.queue.sent) == ([], [], [])


# --- a run that ended failed or dead ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [DeliveryStatus.FAILED, DeliveryStatus.DEAD])
def test_process_copy_of_a_run_ended_failed_or_dead_is_skipped_without_a_send(rig: Rig, status: DeliveryStatus) -> None:
    rig.ledger.put(ID, KEY, status, attempts=3, last_error="HTTP 410")

    outcome = rig.process(_body(attempt=2))

    assert (outcome, rig.channel.sent, rig.ledger.updates, rig.queue.sent) == (Outcome.SKIPPED, [], [], [])


def test_process_buried_message_received_again_is_not_buried_twice(rig: Rig) -> None:
    # The bury and the dead row were written, then the worker died before SQS deleted the message.
    rig.channel.result = _server_error()
    body = _body(attempt=MAX_ATTEMPTS - 1)
    assert rig.process(body) is Outcome.DEAD

    outcome = rig.process(body, receive_count=2)

    assert (outcome, len(rig.channel.sent), len(rig.dead_letters.buried)) == (Outcome.SKIPPED, 1, 1)
    assert (rig.row().status, rig.row().attempts) == (DeliveryStatus.DEAD, MAX_ATTEMPTS)


def test_process_redriven_message_whose_row_still_says_dead_is_sent(rig: Rig) -> None:
    # The redrive sends the message, then sets the row queued: the message may come first.
    rig.ledger.put(ID, KEY, DeliveryStatus.DEAD, attempts=7, redriven=0)

    outcome = rig.process(_body(prior_attempts=7, redriven=1, window_start=iso_time(NOW - 1)))

    assert (outcome, len(rig.channel.sent), rig.row().status) == (Outcome.DELIVERED, 1, DeliveryStatus.DELIVERED)


def test_process_copy_of_an_earlier_run_after_a_redriven_run_ended_is_skipped(rig: Rig) -> None:
    rig.ledger.put(ID, KEY, DeliveryStatus.DEAD, attempts=14, redriven=1)

    assert rig.process(_body(attempt=3)) is Outcome.SKIPPED
    assert rig.channel.sent == []


def test_process_dead_letter_redriven_again_after_its_first_redrive_ended_is_sent(rig: Rig) -> None:
    # A letter redriven once stayed in the DLQ (its delete failed); that run ended failed. Redriven again later, its
    # copy counts the row's redrives, not more, but its window opens after the row's last write: a newer run.
    rig.ledger.put(ID, KEY, DeliveryStatus.FAILED, attempts=5, redriven=1, last_error="HTTP 410")
    rig.clock.advance(600)

    outcome = rig.process(_body(prior_attempts=5, redriven=1, window_start=iso_time(NOW + 590)))

    assert (outcome, len(rig.channel.sent), rig.row().status) == (Outcome.DELIVERED, 1, DeliveryStatus.DELIVERED)


def test_process_dead_row_without_an_attempt_still_ends_the_run(rig: Rig) -> None:
    # A 429 counts no attempt: a delivery whose window closed on 429s is buried with 0 attempts, and its copy is final.
    rig.ledger.put(ID, KEY, DeliveryStatus.DEAD, attempts=0, last_error="HTTP 429")

    assert rig.process() is Outcome.SKIPPED
    assert (rig.channel.sent, rig.dead_letters.buried) == ([], [])


def test_process_failed_row_without_an_attempt_is_the_producers_and_is_sent(rig: Rig) -> None:
    # The producer writes a failed row with no attempt for a delivery SQS refused; an idempotent retry of the publish
    # clears it before it enqueues again, but a copy that went through anyway must still be delivered.
    rig.ledger.put(ID, KEY, DeliveryStatus.FAILED, attempts=0, last_error="not enqueued")

    assert rig.process() is Outcome.DELIVERED
    assert len(rig.channel.sent) == 1


# --- permanent failure --------------------------------------------------------------------------------------------


def test_process_permanent_error_is_failed(rig: Rig) -> None:
    rig.channel.result = PermanentDeliveryError("webhook: HTTP 404")

    assert rig.process() is Outcome.FAILED


def test_process_permanent_error_records_failed_row_with_reason(rig: Rig) -> None:
    rig.channel.result = PermanentDeliveryError("webhook: HTTP 404")

    rig.process()

    assert (rig.row().status, rig.row().attempts, rig.row().last_error) == (
        DeliveryStatus.FAILED,
        1,
        "webhook: HTTP 404",
    )


def test_process_permanent_error_sends_no_copy(rig: Rig) -> None:
    rig.channel.result = PermanentDeliveryError("webhook: HTTP 404")

    rig.process()

    assert (rig.queue.sent, rig.dead_letters.buried, rig.sqs.changes) == ([], [], [])


def test_process_no_channel_for_type_is_failed_naming_it(rig: Rig) -> None:
    message = _message()
    message["integration"]["type"] = "slack"

    outcome = rig.process(json.dumps(message))

    assert (outcome, rig.row().last_error) == (Outcome.FAILED, "no channel delivers type 'slack'")


# --- retryable failure --------------------------------------------------------------------------------------------


def test_process_server_error_is_retried_without_raising(rig: Rig) -> None:
    rig.channel.result = _server_error()

    assert rig.process() is Outcome.RETRIED


def test_process_server_error_sends_one_copy_with_next_attempt_after_backoff(rig: Rig) -> None:
    rig.channel.result = _server_error()

    rig.process()

    message, delay = rig.copy()
    assert (message.attempt, message.not_before, message.slot_reserved, delay) == (
        1,
        iso_time(NOW + BACKOFF_1),
        False,
        7,
    )


def test_process_server_error_copy_keeps_the_delivery(rig: Rig) -> None:
    rig.channel.result = _server_error()
    original = DeliveryMessage.model_validate_json(_body(recipient={"user_id": "u-1"}))

    rig.process(original.model_dump_json())

    message, _ = rig.copy()
    assert message.model_copy(update={"attempt": 0, "not_before": None}) == original


def test_process_server_error_on_reserved_slot_sends_copy_without_reservation(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_SECOND
    rig.channel.result = _server_error()

    rig.process(_body(slot_reserved=True, not_before=iso_time(NOW)))

    assert rig.copy()[0].slot_reserved is False


def test_process_server_error_records_retrying_with_attempts_and_error(rig: Rig) -> None:
    rig.channel.result = _server_error()

    rig.process(_body(attempt=1))

    assert (rig.row().status, rig.row().attempts, rig.row().last_error) == (
        DeliveryStatus.RETRYING,
        2,
        "webhook: HTTP 503",
    )


def test_process_server_error_leaves_received_message_alone(rig: Rig) -> None:
    rig.channel.result = _server_error()

    rig.process()

    assert rig.sqs.changes == []


def test_process_server_error_counts_retried(rig: Rig) -> None:
    rig.channel.result = _server_error()

    rig.process()

    assert rig.count.calls == [("webhook", "retried")]


def test_process_server_error_retry_after_longer_than_backoff_is_honoured(rig: Rig) -> None:
    rig.channel.result = _server_error(retry_after=60)

    rig.process()

    message, delay = rig.copy()
    assert (message.not_before, delay) == (iso_time(NOW + 60), 60)


def test_process_retry_due_beyond_sqs_delay_limit_is_delayed_900_seconds(rig: Rig) -> None:
    rig.channel.result = _server_error(retry_after=3600)

    rig.process()

    message, delay = rig.copy()
    assert (message.not_before, delay) == (iso_time(NOW + 3600), 900)


def test_process_unexpected_channel_error_is_retried_as_internal_error(rig: Rig) -> None:
    rig.channel.result = TypeError("a bug")

    outcome = rig.process()

    assert (outcome, rig.row().last_error, rig.copy()[0].attempt) == (
        Outcome.RETRIED,
        "internal error (TypeError)",
        1,
    )


# --- rate limited -------------------------------------------------------------------------------------------------


def test_process_rate_limited_copy_keeps_attempt_and_waits_retry_after_with_jitter(rig: Rig) -> None:
    rig.channel.result = _too_many_requests(retry_after=30)

    outcome = rig.process(_body(attempt=2))

    # Jitter: RAND * max(1, 20 % of 30 s) = 3 s, never less than the Retry-After.
    message, delay = rig.copy()
    assert (outcome, message.attempt, message.not_before, delay) == (Outcome.RETRIED, 2, iso_time(NOW + 33), 33)


def test_process_rate_limited_copy_counts_the_rate_limited_answers_in_a_row(rig: Rig) -> None:
    rig.channel.result = _too_many_requests(retry_after=0)

    rig.process(_body(throttled=2))

    # Two before it in a row: it waits a backoff step of the third (RAND * …), never the Retry-After of 0.
    message, delay = rig.copy()
    assert (message.throttled, message.attempt) == (3, 0)
    assert delay >= 10


def test_process_other_failure_after_rate_limited_answers_starts_the_row_again(rig: Rig) -> None:
    rig.channel.result = _server_error()

    rig.process(_body(throttled=4))

    message, _ = rig.copy()
    assert (message.throttled, message.attempt) == (0, 1)


def test_process_provider_retry_after_past_any_date_waits_the_longest_retry_window(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_SECOND
    rig.channel.result = _too_many_requests(retry_after=1e12)

    outcome = rig.process()

    # Bounded to 14 days: past the 24 h window, so the delivery is dead, with its reason (no ValueError on the way).
    assert (outcome, rig.row().status) == (Outcome.DEAD, DeliveryStatus.DEAD)
    assert rig.row().last_error == "retry window of 24 h ended: webhook: HTTP 429"


def test_process_rate_limited_retry_after_of_days_holds_the_destination_an_hour_at_most(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_SECOND
    rig.channel.result = _too_many_requests(retry_after=2 * 86400)

    rig.process()

    # Held for days, every later delivery there would wait in paced copies, past its own retry window.
    assert NOW + 3600 <= (rig.store.tat(DESTINATION) or 0.0) < NOW + 3600 + 60


def test_process_rate_limited_records_retrying_without_counting_an_attempt(rig: Rig) -> None:
    rig.channel.result = _too_many_requests(retry_after=30)

    rig.process(_body(attempt=2))

    assert (rig.row().status, rig.row().attempts, rig.row().last_error) == (
        DeliveryStatus.RETRYING,
        2,
        "webhook: HTTP 429",
    )


def test_process_rate_limited_with_limits_holds_destination_past_retry_after(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_SECOND
    rig.channel.result = _too_many_requests(retry_after=30)

    rig.process()

    assert (rig.store.tat(DESTINATION) or 0.0) >= NOW + 30


def test_process_rate_limited_without_limits_touches_no_pacing_state(rig: Rig) -> None:
    rig.channel.result = _too_many_requests(retry_after=30)

    rig.process()

    assert rig.store.calls == []


def test_process_rate_limited_with_pacing_state_unreachable_is_still_retried(
    clock: FakeClock, sleep: Callable[[float], None], rand: Callable[[], float], count: MetricCounter
) -> None:
    rig = Rig(clock, sleep, rand, count, store=UnreachablePaceStore())
    rig.channel.limits = ONE_PER_SECOND
    rig.channel.result = _too_many_requests(retry_after=30)

    outcome = rig.process()

    assert (outcome, len(rig.copies())) == (Outcome.RETRIED, 1)


def _early_copy(rig: Rig) -> str:
    """Answer a 429 with a Retry-After of 3 h, then return its copy as it arrives after SQS's longest delay."""
    rig.channel.result = _too_many_requests(retry_after=3 * 3600)
    rig.process(_body(attempt=2))
    body, delay = rig.queue.sent.pop()
    rig.clock.advance(delay)
    rig.channel.result = DeliveryReceipt("provider-1")
    rig.channel.sent.clear()
    rig.ledger.updates.clear()
    return body


def test_process_retry_after_beyond_sqs_delay_limit_sends_copy_due_at_provider_time(rig: Rig) -> None:
    rig.channel.result = _too_many_requests(retry_after=3 * 3600)

    rig.process()

    # Jitter: RAND * 20 % of 3 h = 1080 s.
    message, delay = rig.copy()
    assert (message.not_before, delay) == (iso_time(NOW + 3 * 3600 + 1080), 900)


def test_process_copy_arriving_before_its_time_is_waiting(rig: Rig) -> None:
    body = _early_copy(rig)

    assert rig.process(body) is Outcome.WAITING


def test_process_copy_arriving_before_its_time_is_sent_on_unchanged(rig: Rig) -> None:
    body = _early_copy(rig)

    rig.process(body)

    message, delay = rig.copy()
    assert (message, delay) == (DeliveryMessage.model_validate_json(body), 900)


def test_process_copy_arriving_before_its_time_counts_no_attempt(rig: Rig) -> None:
    body = _early_copy(rig)

    rig.process(body)

    assert rig.copy()[0].attempt == 2


def test_process_copy_arriving_before_its_time_writes_no_ledger_row(rig: Rig) -> None:
    body = _early_copy(rig)

    rig.process(body)

    assert rig.ledger.updates == []


def test_process_copy_arriving_before_its_time_is_not_sent(rig: Rig) -> None:
    body = _early_copy(rig)

    rig.process(body)

    assert rig.channel.sent == []


def test_process_copy_arriving_within_a_second_of_its_time_is_sent(rig: Rig) -> None:
    outcome = rig.process(_body(not_before=iso_time(NOW + 0.9)))

    assert (outcome, len(rig.channel.sent)) == (Outcome.DELIVERED, 1)


def test_process_early_copy_refused_keeps_message_until_due(rig: Rig) -> None:
    rig.queue.fail = True

    with pytest.raises(DeliveryDeferredError):
        rig.process(_body(not_before=iso_time(NOW + 100)))

    assert rig.sqs.changes == [("rh-1", 100)]


# --- retries spent ------------------------------------------------------------------------------------------------


def test_process_last_attempt_failing_is_dead(rig: Rig) -> None:
    rig.channel.result = _server_error()

    assert rig.process(_body(attempt=MAX_ATTEMPTS - 1)) is Outcome.DEAD


def test_process_last_attempt_failing_buries_message_with_reason(rig: Rig) -> None:
    rig.channel.result = _server_error()

    rig.process(_body(attempt=MAX_ATTEMPTS - 1))

    [(body, reason)] = rig.dead_letters.buried
    dead = DeliveryMessage.model_validate_json(body)
    assert (dead.delivery_key, dead.attempt, dead.not_before, reason) == (
        KEY,
        MAX_ATTEMPTS,
        None,
        f"{MAX_ATTEMPTS} attempts made: webhook: HTTP 503",
    )


def test_process_last_attempt_failing_records_dead_row(rig: Rig) -> None:
    rig.channel.result = _server_error()

    rig.process(_body(attempt=MAX_ATTEMPTS - 1))

    assert (rig.row().status, rig.row().attempts, rig.row().last_error) == (
        DeliveryStatus.DEAD,
        MAX_ATTEMPTS,
        f"{MAX_ATTEMPTS} attempts made: webhook: HTTP 503",
    )


def test_process_last_attempt_failing_sends_no_copy(rig: Rig) -> None:
    rig.channel.result = _server_error()

    rig.process(_body(attempt=MAX_ATTEMPTS - 1))

    assert (rig.queue.sent, rig.sqs.changes) == ([], [])


def test_process_last_attempt_failing_counts_dead(rig: Rig) -> None:
    rig.channel.result = _server_error()

    rig.process(_body(attempt=MAX_ATTEMPTS - 1))

    assert rig.count.calls == [("webhook", "dead")]


def test_process_retry_after_window_end_is_dead_naming_the_window(rig: Rig) -> None:
    rig.channel.result = _server_error()

    outcome = rig.process(_body(created_at=iso_time(NOW - 24 * 3600 + 5)))

    [(_, reason)] = rig.dead_letters.buried
    assert (outcome, reason, rig.row().status) == (
        Outcome.DEAD,
        "retry window of 24 h ended: webhook: HTTP 503",
        DeliveryStatus.DEAD,
    )


def test_process_redriven_window_start_reopens_the_window(rig: Rig) -> None:
    rig.channel.result = _server_error()

    outcome = rig.process(_body(created_at=iso_time(NOW - 48 * 3600), window_start=iso_time(NOW - 60)))

    assert (outcome, rig.dead_letters.buried) == (Outcome.RETRIED, [])


def test_process_bury_refused_keeps_message_deferred(rig: Rig) -> None:
    rig.channel.result = _server_error()
    rig.dead_letters.fail = True

    with pytest.raises(DeliveryDeferredError):
        rig.process(_body(attempt=MAX_ATTEMPTS - 1))

    assert rig.sqs.changes == [("rh-1", 8)]


def test_process_bury_refused_records_dead_with_attempts_but_no_give_up_in_history(rig: Rig) -> None:
    # Dead whatever becomes of the letter: should SQS move the kept message itself, the row is final all the same.
    rig.channel.result = _server_error()
    rig.dead_letters.fail = True

    with pytest.raises(DeliveryDeferredError):
        rig.process(_body(attempt=MAX_ATTEMPTS - 1))

    row = rig.row()
    assert (row.status, row.attempts, row.last_error, [record["status"] for record in row.history]) == (
        DeliveryStatus.DEAD,
        MAX_ATTEMPTS,
        f"{MAX_ATTEMPTS} attempts made: webhook: HTTP 503",
        [],
    )


def test_process_bury_refused_with_the_ledger_failing_leaves_no_record_only_copy(rig: Rig) -> None:
    # The first dead write comes before the letter is buried: carried on in a record-only copy, it would put the
    # give-up in the history, which says the letter is in the dead-letter queue, and the kept message, come back,
    # would be skipped instead of buried: the delivery lost.
    rig.channel.result = _server_error()
    rig.ledger.fail_updates = True
    rig.dead_letters.fail = True

    with pytest.raises(DeliveryDeferredError):
        rig.process(_body(attempt=MAX_ATTEMPTS - 1))

    assert [copy for copy, _ in rig.copies() if copy.outcome is not None] == []


def _bury_refused(rig: Rig) -> str:
    """Spend a delivery's last attempt while the dead-letter queue refuses its letter; return the message kept."""
    rig.channel.result = _server_error()
    rig.dead_letters.fail = True
    body = _body(attempt=MAX_ATTEMPTS - 1)
    with pytest.raises(DeliveryDeferredError):
        rig.process(body)
    return body


def test_process_bury_refused_message_received_again_is_buried_and_not_sent(rig: Rig) -> None:
    body = _bury_refused(rig)
    rig.dead_letters.fail = False

    outcome = rig.process(body, receive_count=2)

    [(letter, reason)] = rig.dead_letters.buried
    assert (outcome, len(rig.channel.sent), json.loads(letter)["attempt"], reason) == (
        Outcome.DEAD,
        1,
        MAX_ATTEMPTS,
        f"{MAX_ATTEMPTS} attempts made: webhook: HTTP 503",
    )
    assert [(record["attempt"], record["status"]) for record in rig.row().history] == [(MAX_ATTEMPTS, "dead")]


def test_process_bury_refused_again_keeps_the_message_without_sending(rig: Rig) -> None:
    body = _bury_refused(rig)

    with pytest.raises(DeliveryDeferredError):
        rig.process(body, receive_count=2)

    assert (len(rig.channel.sent), rig.row().status, len(rig.sqs.changes)) == (1, DeliveryStatus.DEAD, 2)


def test_process_redriven_run_kept_for_its_bury_is_buried_though_the_history_ends_with_the_last_runs_dead(
    rig: Rig,
) -> None:
    # The redriven run ended dead and its letter was refused: the row's history still ends with the give-up of the run
    # before the redrive, written before this run's window opened. Taken for this run's, the kept message would be
    # skipped and its letter never sent.
    reason = f"{MAX_ATTEMPTS} attempts made: webhook: HTTP 503"
    earlier = AttemptRecord(at=iso_time(NOW - 86400), attempt=7, status="dead", error="7 attempts made: HTTP 503")
    rig.ledger.put(
        ID, KEY, DeliveryStatus.DEAD, attempts=7 + MAX_ATTEMPTS, last_error=reason, redriven=1, history=[earlier]
    )
    body = _body(attempt=MAX_ATTEMPTS - 1, prior_attempts=7, redriven=1, window_start=iso_time(NOW - 3600))

    outcome = rig.process(body, receive_count=2)

    assert (outcome, rig.channel.sent, [why for _, why in rig.dead_letters.buried]) == (Outcome.DEAD, [], [reason])


def test_process_dead_row_of_a_letter_never_sent_on_a_first_receive_is_skipped(rig: Rig) -> None:
    # A first receive is no message kept for its bury: a duplicate SQS handed over, whose run's own message buries.
    rig.ledger.put(ID, KEY, DeliveryStatus.DEAD, attempts=MAX_ATTEMPTS, last_error="HTTP 503")

    outcome = rig.process(_body(attempt=MAX_ATTEMPTS - 1))

    assert (outcome, rig.channel.sent, rig.dead_letters.buried) == (Outcome.SKIPPED, [], [])


def test_process_bury_refused_on_the_last_receive_names_the_receives_and_the_refusal(counted_rig: Rig) -> None:
    rig = counted_rig
    rig.channel.result = _server_error()
    rig.dead_letters.fail = True

    with pytest.raises(DeliveryDeferredError):
        rig.process(_body(attempt=MAX_ATTEMPTS - 1), receive_count=MAX_RECEIVES)

    assert (rig.row().status, rig.row().last_error) == (
        DeliveryStatus.DEAD,
        f"moved to the dead-letter queue after {MAX_RECEIVES} receives: {MAX_ATTEMPTS} attempts made: webhook: HTTP "
        "503 (the dead-letter queue refused it: sending to the dead-letter queue failed (fake))",
    )


def test_process_dead_letter_too_large_ends_failed_and_is_not_kept(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig.channel.result = _server_error()
    monkeypatch.setattr(rig.dead_letters, "bury", _refusing_as_too_large("sending to the dead-letter queue"))

    outcome = rig.process(_body(attempt=MAX_ATTEMPTS - 1))

    assert (outcome, rig.row().status, rig.row().attempts, rig.sqs.changes) == (
        Outcome.FAILED,
        DeliveryStatus.FAILED,
        MAX_ATTEMPTS,
        [],
    )
    assert rig.row().last_error == (
        f"{MAX_ATTEMPTS} attempts made: webhook: HTTP 503; not buried: SQS refuses its letter as too large or not "
        "sendable (sending to the dead-letter queue failed (InvalidParameterValue))"
    )


# --- kept on its last receive: SQS moves it to the dead-letter queue itself -----------------------------------------


def test_process_retry_copy_refused_on_the_last_receive_records_dead_naming_what_failed(counted_rig: Rig) -> None:
    rig = counted_rig
    rig.channel.result = _server_error()
    rig.queue.fail = True

    with pytest.raises(DeliveryDeferredError):
        rig.process(_body(attempt=2), receive_count=MAX_RECEIVES)

    row = rig.row()
    assert (row.status, row.attempts, row.next_attempt_at, row.last_error) == (
        DeliveryStatus.DEAD,
        3,
        None,
        f"moved to the dead-letter queue after {MAX_RECEIVES} receives: webhook: HTTP 503 (its retry could not be "
        "queued: sending to the delivery queue failed (fake))",
    )


def test_process_retry_copy_refused_before_the_last_receive_records_retrying(counted_rig: Rig) -> None:
    rig = counted_rig
    rig.channel.result = _server_error()
    rig.queue.fail = True

    with pytest.raises(DeliveryDeferredError):
        rig.process(receive_count=MAX_RECEIVES - 1)

    assert rig.row().status is DeliveryStatus.RETRYING


def test_process_retry_copy_refused_on_the_last_receive_counts_dead(counted_rig: Rig) -> None:
    counted_rig.channel.result = _server_error()
    counted_rig.queue.fail = True

    with pytest.raises(DeliveryDeferredError):
        counted_rig.process(receive_count=MAX_RECEIVES)

    assert counted_rig.count.calls == [("webhook", "dead")]


def test_process_early_copy_refused_on_the_last_receive_records_dead_without_a_send(counted_rig: Rig) -> None:
    rig = counted_rig
    rig.queue.fail = True

    with pytest.raises(DeliveryDeferredError):
        rig.process(_body(not_before=iso_time(NOW + 100)), receive_count=MAX_RECEIVES)

    assert (rig.channel.sent, rig.row().status, rig.row().last_error) == (
        [],
        DeliveryStatus.DEAD,
        f"moved to the dead-letter queue after {MAX_RECEIVES} receives: sending to the delivery queue failed (fake)",
    )


@pytest.mark.parametrize("later", [0.0, BACKOFF_1], ids=["early", "due"])
def test_process_record_only_copy_kept_on_the_last_receive_writes_no_dead(counted_rig: Rig, later: float) -> None:
    # The copy carries an outcome of its own (delivered here): SQS keeps it in the dead-letter queue, and a redrive
    # writes it; a dead written now would say the opposite of what happened.
    rig = counted_rig
    rig.ledger.fail_updates = True
    rig.process()
    [(copy, _)] = rig.queue.sent
    rig.queue.fail = True
    rig.clock.advance(later)

    with pytest.raises(DeliveryDeferredError):
        rig.process(copy, receive_count=MAX_RECEIVES)

    assert DeliveryStatus.DEAD not in [status for _, _, status in rig.ledger.updates]


def test_process_receive_count_unknown_writes_no_dead_on_a_kept_message(rig: Rig) -> None:
    rig.channel.result = _server_error()
    rig.queue.fail = True

    with pytest.raises(DeliveryDeferredError):
        rig.process(receive_count=1000)

    assert rig.row().status is DeliveryStatus.RETRYING


# --- a copy SQS refuses for what it is (too large): the delivery ends, never sent again ----------------------------


def test_process_retry_copy_too_large_ends_failed_naming_it(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig.channel.result = _server_error()
    monkeypatch.setattr(rig.queue, "send_later", _refusing_as_too_large("sending to the delivery queue"))

    outcome = rig.process(_body(attempt=1))

    row = rig.row()
    assert (outcome, row.status, row.attempts, row.next_attempt_at) == (Outcome.FAILED, DeliveryStatus.FAILED, 2, None)
    assert row.last_error == (
        "webhook: HTTP 503; not retried: SQS refuses its retry as too large or not sendable (sending to the delivery "
        "queue failed (InvalidParameterValue))"
    )


def test_process_retry_copy_too_large_is_not_kept_on_the_queue(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig.channel.result = _server_error()
    monkeypatch.setattr(rig.queue, "send_later", _refusing_as_too_large("sending to the delivery queue"))

    rig.process()

    assert (rig.sqs.changes, rig.count.calls) == ([], [("webhook", "failed")])


def test_process_pacing_copy_too_large_ends_failed_without_a_send(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig.channel.limits = ONE_PER_TEN_SECONDS
    rig.occupy(ONE_PER_TEN_SECONDS)
    monkeypatch.setattr(rig.queue, "send_later", _refusing_as_too_large("sending to the delivery queue"))

    outcome = rig.process()

    assert (outcome, rig.channel.sent, rig.sqs.changes, rig.row().status) == (
        Outcome.FAILED,
        [],
        [],
        DeliveryStatus.FAILED,
    )
    assert rig.row().last_error.startswith("paced, and SQS refuses its copy as too large")  # type: ignore[union-attr]


# --- a retry's row is written before its copy: a copy taken at once never has its final status overwritten ---------


def _copies_taken_at_once(rig: Rig, monkeypatch: pytest.MonkeyPatch, then: Exception, advance: float = 0.0) -> None:
    """Make the first copy sent be received and processed by another consumer at once (``advance`` seconds later),
    its send answered with ``then``, before the sender goes on."""
    send_later = rig.queue.send_later

    def send_and_take(body: str, delay_seconds: int) -> str:
        message_id = send_later(body, delay_seconds)
        if len(rig.queue.sent) == 1:
            rig.clock.advance(advance)
            rig.channel.result = then
            rig.deliverer.process(Attempt("m-2", "rh-2", 1, body))
        return message_id

    monkeypatch.setattr(rig.queue, "send_later", send_and_take)


def test_process_retry_copy_ending_failed_at_once_is_not_overwritten_by_retrying(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.channel.result = _too_many_requests(retry_after=0)
    _copies_taken_at_once(rig, monkeypatch, PermanentDeliveryError("webhook: HTTP 410"))

    outcome = rig.process()

    assert (outcome, rig.row().status, rig.row().last_error, rig.row().next_attempt_at) == (
        Outcome.RETRIED,
        DeliveryStatus.FAILED,
        "webhook: HTTP 410",
        None,
    )


def test_process_pacing_copy_ending_failed_at_its_slot_is_not_overwritten_by_retrying(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.channel.limits = ONE_PER_TEN_SECONDS
    rig.occupy(ONE_PER_TEN_SECONDS)
    # The copy comes back at its slot (a slow ledger write held the sender that long) and fails for good.
    _copies_taken_at_once(rig, monkeypatch, PermanentDeliveryError("webhook: HTTP 410"), advance=11)

    outcome = rig.process()

    assert (outcome, rig.row().status, rig.row().last_error) == (
        Outcome.WAITING,
        DeliveryStatus.FAILED,
        "webhook: HTTP 410",
    )


# --- attempts counted ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("message_attempt", "row_attempts"), [(1, 3), (3, 1)], ids=["ledger-ahead", "message-ahead"])
def test_process_attempts_counted_from_the_larger_of_message_and_ledger(
    rig: Rig, message_attempt: int, row_attempts: int
) -> None:
    rig.ledger.put(ID, KEY, DeliveryStatus.RETRYING, attempts=row_attempts)

    rig.process(_body(attempt=message_attempt))

    assert rig.row().attempts == 4


def test_process_retry_after_kept_message_counts_from_ledger(rig: Rig) -> None:
    rig.channel.result = _server_error()
    rig.ledger.put(ID, KEY, DeliveryStatus.RETRYING, attempts=MAX_ATTEMPTS - 1)

    assert rig.process(_body(attempt=0)) is Outcome.DEAD


# --- version 1 and malformed bodies -------------------------------------------------------------------------------


def test_process_v1_body_is_delivered_with_integration_name_as_key(rig: Rig) -> None:
    outcome = rig.process(_v1_body())

    assert (outcome, rig.channel.delivery_keys, list(rig.ledger.rows)) == (
        Outcome.DELIVERED,
        ["hook"],
        [(ID, "hook")],
    )


def test_process_v1_body_counts_attempts_from_receive_count(rig: Rig) -> None:
    rig.process(_v1_body(), receive_count=3)

    assert rig.ledger.rows[(ID, "hook")].attempts == 3


@pytest.mark.parametrize(
    "body", ["not json", "[]", '{"v": 2, "notification_id": "n-1"}', _body(v=3), "[" * 100_000 + "]" * 100_000]
)
def test_process_malformed_body_goes_to_the_dead_letter_queue_as_it_came(rig: Rig, body: str) -> None:
    outcome = rig.process(body)

    assert (outcome, rig.channel.sent, rig.queue.sent, rig.sqs.changes) == (Outcome.DEAD, [], [], [])
    [(buried, reason)] = rig.dead_letters.buried
    assert buried == body
    assert reason.startswith("malformed delivery message")


def test_process_malformed_body_naming_its_row_marks_it_dead_with_the_reason(rig: Rig) -> None:
    outcome = rig.process(_body(v=3))

    row = rig.row()
    assert (outcome, row.status, row.last_error) == (
        Outcome.DEAD,
        DeliveryStatus.DEAD,
        "malformed delivery message: v",
    )


def test_process_malformed_v1_body_marks_its_row_keyed_by_the_integration_name_dead(rig: Rig) -> None:
    """A version 1 body has no delivery key: its row is its integration's, which stayed `queued` when it was buried."""
    message = _message(v=1, created_at="2024-13-01T00:00:00Z")
    del message["delivery_key"]

    outcome = rig.process(json.dumps(message))

    row = rig.ledger.rows[(ID, "hook")]
    assert (outcome, row.status, row.last_error) == (
        Outcome.DEAD,
        DeliveryStatus.DEAD,
        "malformed delivery message: created_at",
    )
    assert ROW_KEY not in rig.ledger.rows


def test_process_malformed_body_naming_no_row_writes_none(rig: Rig) -> None:
    rig.process('{"v": 2, "notification_id": "n-1"}')

    assert rig.ledger.updates == []


def test_process_malformed_body_never_overwrites_a_delivered_row(rig: Rig) -> None:
    rig.ledger.put(ID, KEY, DeliveryStatus.DELIVERED, attempts=1)

    rig.process(_body(v=3))

    assert rig.row().status is DeliveryStatus.DELIVERED


def test_process_malformed_body_stays_on_the_queue_when_the_dead_letter_queue_fails(rig: Rig) -> None:
    rig.dead_letters.fail = True

    with pytest.raises(DeliveryDeferredError):
        rig.process("not json")

    assert (rig.dead_letters.buried, len(rig.sqs.changes), rig.ledger.updates) == ([], 1, [])


def test_process_malformed_body_counts_dead_of_unknown_type(rig: Rig) -> None:
    rig.process("not json")

    assert rig.count.calls == [("unknown", "dead")]


def test_process_malformed_body_is_logged_with_its_ids(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        rig.process('{"v": 2, "notification_id": "n-9", "delivery_key": "k-9"}')

    [record] = [
        record for record in caplog.records if record.message == "malformed delivery message: in the dead-letter queue"
    ]
    assert (record.message_id, record.notification_id, record.delivery_key) == ("m-1", "n-9", "k-9")  # type: ignore[attr-defined]


def test_parse_message_unknown_version_is_permanent_naming_v() -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        parse_message(_body(v=3))

    assert raised.value.reason == "malformed delivery message: v"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"not_before": "9999-12-31T23:59:59-05:00"}, "not_before", id="past-year-9999-in-utc"),
        pytest.param({"not_before": "9999-12-31T23:59:59Z"}, "not_before", id="year-9999"),
        pytest.param({"created_at": "0001-01-01T00:00:00+14:00"}, "created_at", id="before-year-1-in-utc"),
        pytest.param({"window_start": "soon"}, "window_start", id="not-a-time"),
        pytest.param({"notification_id": "n" * 2049}, "notification_id", id="id-over-the-hash-key"),
        pytest.param({"delivery_key": "é" * 513}, "delivery_key", id="key-over-the-sort-key-in-bytes"),
    ],
)
def test_process_impossible_value_is_buried_as_malformed_naming_it(
    rig: Rig, changes: dict[str, Any], field: str
) -> None:
    body = _body(**changes)

    outcome = rig.process(body)

    assert (outcome, rig.channel.sent, rig.queue.sent, rig.dead_letters.buried) == (
        Outcome.DEAD,
        [],
        [],
        [(body, f"malformed delivery message: {field}")],
    )


def test_process_not_before_more_than_30_days_ahead_is_buried_as_malformed(rig: Rig) -> None:
    outcome = rig.process(_body(not_before=iso_time(NOW + 30 * 86400 + 1)))

    [(_, reason)] = rig.dead_letters.buried
    assert (outcome, rig.queue.sent, reason) == (
        Outcome.DEAD,
        [],
        "malformed delivery message: not_before is more than 30 days ahead",
    )


def test_process_send_slot_copy_more_than_30_days_ahead_is_waited_for(rig: Rig) -> None:
    # A destination paced at one a day puts the 31st send of a burst 31 days ahead: the consumer's own copy of that
    # slot was buried as malformed, its row dead, never attempted.
    outcome = rig.process(_body(not_before=iso_time(NOW + 31 * 86400), slot_reserved=True))

    assert (outcome, rig.dead_letters.buried, rig.copy()[1]) == (Outcome.WAITING, [], 900)


def test_process_not_before_30_days_ahead_is_waited_for(rig: Rig) -> None:
    outcome = rig.process(_body(not_before=iso_time(NOW + 30 * 86400)))

    assert (outcome, rig.dead_letters.buried, rig.copy()[1]) == (Outcome.WAITING, [], 900)


def test_process_v1_body_whose_integration_name_is_over_the_sort_key_is_buried_as_malformed(rig: Rig) -> None:
    message = _message(v=1)
    del message["delivery_key"]
    message["integration"]["name"] = "h" * 1025

    assert rig.process(json.dumps(message)) is Outcome.DEAD


def test_read_entries_skips_a_message_due_too_far_ahead(rig: Rig) -> None:
    far = Attempt("m-1", "rh-1", 1, _body(not_before=iso_time(NOW + 31 * 86400)))

    assert (rig.deliverer.read_entries([far]), rig.ledger.batch_reads) == ({}, [])


# --- pacing -------------------------------------------------------------------------------------------------------


def test_process_paced_messages_at_one_instant_are_sent_a_step_apart(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_SECOND

    outcomes = [rig.process(_body(delivery_key=f"k-{index}")) for index in range(3)]

    assert outcomes == [Outcome.DELIVERED] * 3
    assert rig.channel.sent_at == pytest.approx([NOW, NOW + 1.1, NOW + 2.2])


def test_process_paced_message_sleeps_until_its_slot(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_SECOND
    rig.occupy(ONE_PER_SECOND)

    rig.process()

    assert rig.clock.slept == pytest.approx([1.1])


def test_process_slot_beyond_max_wait_is_waiting(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_TEN_SECONDS
    rig.occupy(ONE_PER_TEN_SECONDS)

    assert rig.process() is Outcome.WAITING


def test_process_slot_beyond_max_wait_sends_reserved_copy_due_lead_before_slot(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_TEN_SECONDS
    rig.occupy(ONE_PER_TEN_SECONDS)

    rig.process(_body(attempt=1))

    # The slot is 11 s away; the copy is due LEAD (2 s) before it: 9 s.
    message, delay = rig.copy()
    assert (message.attempt, message.slot_reserved, message.not_before, delay) == (
        1,
        True,
        iso_time(NOW + 11),
        9,
    )


def test_process_slot_beyond_max_wait_is_not_sent_and_not_slept(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_TEN_SECONDS
    rig.occupy(ONE_PER_TEN_SECONDS)

    rig.process()

    assert (rig.channel.sent, rig.clock.slept) == ([], [])


def test_process_slot_beyond_max_wait_records_paced_retrying_without_attempt(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_TEN_SECONDS
    rig.occupy(ONE_PER_TEN_SECONDS)

    rig.process(_body(attempt=1))

    assert (rig.row().status, rig.row().attempts, rig.row().last_error) == (
        DeliveryStatus.RETRYING,
        0,
        "paced: next send slot in 11 s",
    )


def test_process_slot_beyond_max_wait_counts_waiting(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_TEN_SECONDS
    rig.occupy(ONE_PER_TEN_SECONDS)

    rig.process()

    assert rig.count.calls == [("webhook", "waiting")]


def test_process_reserved_copy_in_time_sleeps_to_its_slot_without_a_new_reservation(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_TEN_SECONDS
    rig.occupy(ONE_PER_TEN_SECONDS)
    rig.process()
    body, delay = rig.queue.sent.pop()
    rig.clock.advance(delay)
    store_calls = len(rig.store.calls)

    outcome = rig.process(body)

    assert (outcome, rig.channel.sent_at, len(rig.store.calls)) == (Outcome.DELIVERED, [NOW + 11], store_calls)


def test_process_reserved_copy_slightly_late_sends_at_once_without_a_new_reservation(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_TEN_SECONDS

    # The margin between two slots is 1 s; a copy late by less than half of it keeps its slot.
    rig.process(_body(slot_reserved=True, not_before=iso_time(NOW - 0.4)))

    assert (rig.channel.sent_at, rig.store.calls) == ([NOW], [])


def test_process_reserved_copy_late_past_half_the_margin_takes_a_new_slot(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_TEN_SECONDS
    rig.occupy(ONE_PER_TEN_SECONDS)
    store_calls = len(rig.store.calls)

    # Half the margin of 1 s is 0.5 s: a copy 0.6 s late queues behind the slot taken since, 11 s away.
    outcome = rig.process(_body(slot_reserved=True, not_before=iso_time(NOW - 0.6)))

    assert (outcome, len(rig.store.calls), rig.copy()[0].not_before) == (
        Outcome.WAITING,
        store_calls + 1,
        iso_time(NOW + 11),
    )


def test_process_reserved_copy_far_before_its_slot_is_sent_on_to_lead_before_it(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_SECOND

    outcome = rig.process(_body(slot_reserved=True, not_before=iso_time(NOW + 100)))

    message, delay = rig.copy()
    assert (outcome, message.slot_reserved, message.not_before, delay, rig.ledger.updates) == (
        Outcome.WAITING,
        True,
        iso_time(NOW + 100),
        98,
        [],
    )


def test_process_reserved_copy_with_a_lead_over_the_longest_wait_comes_back_within_the_wait(rig: Rig) -> None:
    # PACING_LEAD_SECONDS over PACING_MAX_WAIT_SECONDS: the copy came back the lead before its slot, early again by
    # more than the wait, and was sent on again, for ever.
    rig.channel.limits = ONE_PER_SECOND
    rig.deliverer._lead = MAX_WAIT + 10

    rig.process(_body(slot_reserved=True, not_before=iso_time(NOW + 100)))

    _, delay = rig.copy()
    assert delay == 100 - MAX_WAIT


def test_process_slot_after_latest_start_is_waiting_instead_of_sleeping(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_SECOND
    rig.occupy(ONE_PER_SECOND)

    outcome = rig.process(latest_start=NOW + 0.5)

    message, _ = rig.copy()
    assert (outcome, rig.clock.slept, message.slot_reserved, message.not_before) == (
        Outcome.WAITING,
        [],
        True,
        iso_time(NOW + 1.1),
    )


class _SlowUnreachablePaceStore(UnreachablePaceStore):
    """A pacing table that times out: each call takes ``seconds`` of the clock (botocore's tries), then fails."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        super().__init__()
        self._clock, self._seconds = clock, seconds

    def _fail(self) -> NoReturn:
        self._clock.advance(self._seconds)
        super()._fail()


def test_process_pacing_call_that_outlasts_latest_start_sends_on_instead_of_sending(
    clock: FakeClock, sleep: Callable[[float], None], rand: Callable[[], float], count: MetricCounter
) -> None:
    """The budget was taken before the pacing call: after one that timed out for 21 s, the send still started, past
    the invocation's last moment to start one, and Lambda cut it off with the whole batch."""
    rig = Rig(clock, sleep, rand, count, store=_SlowUnreachablePaceStore(clock, 21.0))
    rig.channel.limits = ONE_PER_SECOND

    outcome = rig.process(latest_start=NOW + 15)

    message, delay = rig.copy()
    assert (outcome, rig.channel.sent, message.attempt, delay) == (Outcome.WAITING, [], 0, 0)


def test_process_own_row_read_after_latest_start_sends_on_without_reading(rig: Rig) -> None:
    """A batch whose reads took the time (the ledger timing out): each message's own read, as slow, outlasted the
    function, and every receive of the batch was spent towards the dead-letter queue."""
    rig.clock.advance(20)

    outcome = rig.process(latest_start=NOW + 15)

    message, delay = rig.copy()
    assert (outcome, rig.ledger.reads, rig.channel.sent, delay) == (Outcome.WAITING, [], [], 0)
    assert message.attempt == 0


def test_process_pacing_state_unreachable_sends_unpaced(
    clock: FakeClock, sleep: Callable[[float], None], rand: Callable[[], float], count: MetricCounter
) -> None:
    rig = Rig(clock, sleep, rand, count, store=UnreachablePaceStore())
    rig.channel.limits = ONE_PER_SECOND

    outcome = rig.process()

    assert (outcome, rig.channel.sent_at) == (Outcome.DELIVERED, [NOW])


def test_process_pacing_state_unreachable_counts_pacing_unavailable(
    clock: FakeClock, sleep: Callable[[float], None], rand: Callable[[], float], count: MetricCounter
) -> None:
    rig = Rig(clock, sleep, rand, count, store=UnreachablePaceStore())
    rig.channel.limits = ONE_PER_SECOND

    rig.process()

    assert count.of("pacing_unavailable") == 1


def test_process_unpaced_message_after_latest_start_is_sent_on_not_sent(rig: Rig) -> None:
    outcome = rig.process(_body(attempt=1), latest_start=NOW - 1)

    [(copy, delay)] = rig.copies()
    assert (outcome, rig.channel.sent, delay, copy.attempt, copy.not_before) == (
        Outcome.WAITING,
        [],
        0,
        1,
        iso_time(NOW),
    )
    assert rig.ledger.updates == []


def test_process_unpaced_message_before_latest_start_is_sent(rig: Rig) -> None:
    assert rig.process(latest_start=NOW + 1) is Outcome.DELIVERED


def test_process_unpaced_message_after_latest_start_with_the_queue_refusing_stays(rig: Rig) -> None:
    rig.queue.fail = True

    with pytest.raises(DeliveryDeferredError):
        rig.process(latest_start=NOW - 1)

    assert (rig.channel.sent, rig.sqs.changes) == ([], [("rh-1", 1)])


def test_process_copy_refused_while_waiting_for_a_slot_keeps_message_until_the_slot(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_TEN_SECONDS
    rig.occupy(ONE_PER_TEN_SECONDS)
    rig.queue.fail = True

    with pytest.raises(DeliveryDeferredError) as raised:
        rig.process()

    # Hidden until LEAD before the slot 11 s away: 9 s, set once.
    assert (raised.value.delay_seconds, rig.sqs.changes) == (9, [("rh-1", 9)])


def test_process_copy_refused_while_waiting_for_a_slot_counts_no_attempt(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_TEN_SECONDS
    rig.occupy(ONE_PER_TEN_SECONDS)
    rig.queue.fail = True

    with pytest.raises(DeliveryDeferredError):
        rig.process()

    # The paced row is written before its copy is sent, so it is there though the copy was refused.
    row = rig.row()
    assert (row.status, row.attempts, row.history, row.last_error) == (
        DeliveryStatus.RETRYING,
        0,
        [],
        "paced: next send slot in 11 s",
    )


# --- bookkeeping failures -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fail_updates", "unreachable_updates"])
def test_process_ledger_write_failing_after_send_is_delivered_once(rig: Rig, mode: str) -> None:
    setattr(rig.ledger, mode, True)

    outcome = rig.process()

    assert (outcome, len(rig.channel.sent), rig.sqs.changes) == (Outcome.DELIVERED, 1, [])


@pytest.mark.parametrize("mode", ["fail_updates", "unreachable_updates"])
def test_process_ledger_write_failing_after_send_counts_ledger_write_failed(rig: Rig, mode: str) -> None:
    setattr(rig.ledger, mode, True)

    rig.process()

    assert rig.count.calls == [("webhook", "ledger_write_failed"), ("webhook", "delivered")]


# --- an outcome the ledger refused: a record-only copy writes it later, and sends nothing -------------------------


def _refused_outcome(rig: Rig, body: str | None = None) -> DeliveryMessage:
    """Process a message while the ledger refuses writes; return the record-only copy it left."""
    rig.ledger.fail_updates = True
    rig.process(body)
    rig.ledger.fail_updates = False
    [(copy, _)] = [(message, delay) for message, delay in rig.copies() if message.outcome is not None]
    rig.queue.sent.clear()
    return copy


def test_process_ledger_write_failing_after_send_leaves_a_record_only_copy_one_backoff_later(rig: Rig) -> None:
    rig.ledger.fail_updates = True
    rig.channel.result = DeliveryReceipt("provider-7")

    rig.process(_body(attempt=2))

    copy, delay = rig.copy()
    assert copy.outcome is not None
    assert copy.outcome.model_dump() == {
        "status": "delivered",
        "attempts": 3,
        "at": iso_time(NOW),
        "last_error": None,
        "provider_message_id": "provider-7",
        "tries": 1,
    }
    assert (delay, copy.not_before) == (int(BACKOFF_1), iso_time(NOW + BACKOFF_1))


def test_process_record_only_copy_writes_the_outcome_and_sends_nothing(rig: Rig) -> None:
    rig.channel.result = DeliveryReceipt("provider-7")
    copy = _refused_outcome(rig, _body(attempt=2))
    rig.clock.advance(BACKOFF_1)

    outcome = rig.process(copy.model_dump_json(exclude_none=True))

    row = rig.row()
    assert (outcome, len(rig.channel.sent), rig.queue.sent) == (Outcome.RECORDED, 1, [])
    assert (row.status, row.attempts, row.provider_message_id) == (DeliveryStatus.DELIVERED, 3, "provider-7")
    assert row.history == [{"at": iso_time(NOW), "attempt": 3, "status": "delivered", "error": None}]


def test_process_record_only_copy_of_a_permanent_failure_writes_failed_with_its_reason(rig: Rig) -> None:
    rig.channel.result = PermanentDeliveryError("webhook: HTTP 404")
    copy = _refused_outcome(rig)
    rig.clock.advance(BACKOFF_1)

    rig.process(copy.model_dump_json(exclude_none=True))

    assert (rig.row().status, rig.row().last_error, rig.row().attempts) == (
        DeliveryStatus.FAILED,
        "webhook: HTTP 404",
        1,
    )


def test_process_record_only_copy_refused_again_goes_on_in_a_later_copy(rig: Rig) -> None:
    copy = _refused_outcome(rig)
    rig.clock.advance(BACKOFF_1)
    rig.ledger.fail_updates = True

    outcome = rig.process(copy.model_dump_json(exclude_none=True))

    again, delay = rig.copy()
    assert (outcome, len(rig.channel.sent)) == (Outcome.WAITING, 1)
    assert again.outcome is not None
    assert (again.outcome.tries, again.outcome.status) == (2, "delivered")
    assert delay > BACKOFF_1  # the next backoff step


def test_process_record_only_copy_leaves_a_delivered_row_as_it_is(rig: Rig) -> None:
    rig.channel.result = PermanentDeliveryError("webhook: HTTP 404")
    copy = _refused_outcome(rig)
    rig.ledger.put(ID, KEY, DeliveryStatus.DELIVERED, attempts=1)
    rig.clock.advance(BACKOFF_1)

    rig.process(copy.model_dump_json(exclude_none=True))

    assert rig.row().status is DeliveryStatus.DELIVERED


def test_process_record_only_copy_refused_by_sqs_too_is_logged_and_the_send_not_repeated(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.ledger.fail_updates = True
    rig.queue.fail = True

    outcome = rig.process()

    assert (outcome, len(rig.channel.sent), rig.sqs.changes) == (Outcome.DELIVERED, 1, [])
    assert "outcome not recorded: the ledger and the queue both failed" in caplog.text


def test_process_ledger_write_failing_while_retrying_leaves_no_record_only_copy(rig: Rig) -> None:
    # The retry's own copy writes the row when it comes: only an outcome that ends the row is carried on.
    rig.ledger.fail_updates = True
    rig.channel.result = RetryableDeliveryError("webhook: HTTP 503")

    rig.process()

    copy, _ = rig.copy()
    assert (copy.outcome, copy.attempt) == (None, 1)


def test_process_record_only_copy_carries_no_content(rig: Rig) -> None:
    # It sends nothing: without the content it is never larger than the message SQS took.
    copy = _refused_outcome(rig)

    assert copy.content.model_dump(exclude_none=True) == {}


def test_process_record_only_copy_never_overwrites_a_newer_runs_row(rig: Rig) -> None:
    # The run ended dead and its write failed; a redrive began a newer run, which ended failed: the late copy of the
    # old run leaves that row (and its redrive count, which guards the newer run's copies) as it is.
    rig.channel.result = PermanentDeliveryError("webhook: HTTP 404")
    copy = _refused_outcome(rig)
    rig.ledger.put(ID, KEY, DeliveryStatus.FAILED, attempts=6, last_error="webhook: HTTP 410", redriven=1)
    rig.clock.advance(BACKOFF_1)

    outcome = rig.process(copy.model_dump_json(exclude_none=True))

    assert outcome is Outcome.SKIPPED
    assert (rig.row().status, rig.row().attempts, rig.row().redriven, rig.row().last_error) == (
        DeliveryStatus.FAILED,
        6,
        1,
        "webhook: HTTP 410",
    )


def test_process_record_only_copy_seen_twice_writes_its_attempt_once(rig: Rig) -> None:
    rig.channel.result = PermanentDeliveryError("webhook: HTTP 404")
    copy = _refused_outcome(rig)
    rig.clock.advance(BACKOFF_1)
    body = copy.model_dump_json(exclude_none=True)

    outcomes = [rig.process(body), rig.process(body)]

    assert outcomes == [Outcome.RECORDED, Outcome.SKIPPED]
    assert len(rig.row().history) == 1


def test_process_record_only_copy_stays_on_the_queue_when_ledger_and_queue_both_fail(rig: Rig) -> None:
    copy = _refused_outcome(rig)
    rig.clock.advance(BACKOFF_1)
    rig.ledger.fail_updates = True
    rig.queue.fail = True

    with pytest.raises(DeliveryDeferredError):
        rig.process(copy.model_dump_json(exclude_none=True))

    assert len(rig.sqs.changes) == 1
    assert len(rig.channel.sent) == 1


def test_process_record_only_copy_gives_up_after_a_whole_retry_window(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    copy = _refused_outcome(rig)
    rig.clock.advance(RetryPolicy().window_seconds + 1)
    rig.ledger.fail_updates = True

    outcome = rig.process(copy.model_dump_json(exclude_none=True))

    assert (outcome, rig.queue.sent) == (Outcome.SKIPPED, [])
    assert "the ledger refused it for a whole retry window" in caplog.text


def test_process_outcome_copy_that_cannot_be_written_never_makes_the_send_repeat(rig: Rig) -> None:
    # A provider's error text with a lone surrogate: the copy cannot be serialized. The send happened once, and the
    # message must not come back for another.
    rig.ledger.fail_updates = True
    rig.channel.result = PermanentDeliveryError("telegram: Bad Request: \ud83d")

    outcome = rig.process()

    assert (outcome, len(rig.channel.sent), rig.sqs.changes) == (Outcome.FAILED, 1, [])


def test_read_entries_leaves_out_record_only_copies(rig: Rig) -> None:
    copy = _refused_outcome(rig)
    rig.clock.advance(BACKOFF_1)

    rig.deliverer.read_entries(
        [_attempt(copy.model_dump_json(exclude_none=True), 1), _attempt(_body(delivery_key="k-2"), 2)]
    )

    assert rig.ledger.batch_reads == [[(ID, "k-2")]]


def test_process_ledger_unreadable_sends_the_message_on_unchanged_one_backoff_later(rig: Rig) -> None:
    rig.ledger.fail_reads = True

    outcome = rig.process(_body(attempt=2))

    # A fresh copy, due one backoff step (7.5 s) later (SQS's delay in whole seconds, not past it): it starts a new
    # receive count, so an outage longer than maxReceiveCount receives never dead-letters it. Its attempt count is
    # the message's own.
    [(body, delay)] = rig.queue.sent
    copy = json.loads(body)
    assert (outcome, delay, copy["attempt"], copy["not_before"], rig.sqs.changes) == (
        Outcome.WAITING,
        7,
        2,
        iso_time(NOW + 7.5),
        [],
    )


def test_process_ledger_unreadable_and_queue_refusing_keeps_message_deferred(rig: Rig) -> None:
    rig.ledger.fail_reads = True
    rig.queue.fail = True

    with pytest.raises(DeliveryDeferredError) as raised:
        rig.process()

    # Hidden for one backoff step: ceil(7.5) s.
    assert (raised.value.delay_seconds, rig.sqs.changes) == (8, [("rh-1", 8)])


def test_process_ledger_unreadable_does_not_send(rig: Rig) -> None:
    rig.ledger.fail_reads = True

    rig.process()

    assert (rig.channel.sent, rig.ledger.updates) == ([], [])


def test_process_copy_refused_on_retry_keeps_message_until_retry_due(rig: Rig) -> None:
    rig.channel.result = _server_error()
    rig.queue.fail = True

    with pytest.raises(DeliveryDeferredError) as raised:
        rig.process()

    assert (raised.value.delay_seconds, rig.sqs.changes) == (8, [("rh-1", 8)])


def test_process_copy_refused_on_retry_records_retrying_with_attempts(rig: Rig) -> None:
    rig.channel.result = _server_error()
    rig.queue.fail = True

    with pytest.raises(DeliveryDeferredError):
        rig.process(_body(attempt=2))

    assert (rig.row().status, rig.row().attempts, rig.row().last_error) == (
        DeliveryStatus.RETRYING,
        3,
        "webhook: HTTP 503",
    )


# --- credentials --------------------------------------------------------------------------------------------------


def test_process_without_credentials_ref_reads_no_parameter(rig: Rig) -> None:
    outcome = rig.process()

    assert (outcome, rig.parameters.calls, rig.channel.sent[0][2]) == (Outcome.DELIVERED, [], None)


def test_process_credentials_ref_passes_credentials_to_channel(rig: Rig) -> None:
    rig.process(_with_credentials())

    assert rig.channel.sent[0][2] == {"signing_secret": "s" * 16}


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (_ssm_error("ParameterNotFound"), Outcome.FAILED),
        (_ssm_error("AccessDeniedException"), Outcome.FAILED),
        (_ssm_error("ThrottlingException"), Outcome.RETRIED),
        (_ssm_error("InternalServerError"), Outcome.RETRIED),
    ],
    ids=["missing", "denied", "throttled", "ssm-down"],
)
def test_process_credentials_error_is_failed_or_retried_by_kind(rig: Rig, error: Exception, outcome: Outcome) -> None:
    rig.parameters.error = error
    # Past the time a missing parameter may be one SSM does not show yet.
    body = _with_credentials(age=MISSING_CREDENTIALS_GRACE_SECONDS + 1)

    assert (rig.process(body), rig.channel.sent) == (outcome, [])


def test_process_credentials_not_json_fails(rig: Rig) -> None:
    rig.parameters.values[REF] = "not {json"

    assert (rig.process(_with_credentials()), rig.channel.sent, rig.row().last_error) == (
        Outcome.FAILED,
        [],
        "credentials are not a JSON object",
    )


def test_process_credentials_missing_records_reason(rig: Rig) -> None:
    rig.parameters.error = _ssm_error("ParameterNotFound")

    outcome = rig.process(_with_credentials(age=MISSING_CREDENTIALS_GRACE_SECONDS + 1))

    assert (outcome, rig.row().status, rig.row().last_error) == (
        Outcome.FAILED,
        DeliveryStatus.FAILED,
        "credentials are missing",
    )


@pytest.mark.parametrize("status", [DeliveryStatus.FAILED, DeliveryStatus.DEAD])
def test_process_copy_enqueued_again_by_a_publish_retry_after_its_run_ended_is_skipped(
    rig: Rig, status: DeliveryStatus
) -> None:
    # The first attempt of a keyed publish enqueued the delivery and died before its record listed it; the copy's run
    # ended. The publish's retry enqueues it again, its retry window opening then (window_start): the same run, not a
    # redrive's newer one, and not to be sent twice.
    rig.ledger.put(ID, KEY, status, attempts=1, last_error="HTTP 410")
    rig.clock.advance(60)

    outcome = rig.process(_body(created_at=iso_time(NOW - 60), window_start=iso_time(NOW + 30)))

    assert (outcome, rig.channel.sent) == (Outcome.SKIPPED, [])


@pytest.mark.parametrize(
    ("redriven", "outcome"), [(0, Outcome.RETRIED), (1, Outcome.FAILED)], ids=["run-read-them-now", "redriven"]
)
def test_process_credentials_missing_counts_the_grace_from_the_runs_read_of_its_topic(
    rig: Rig, redriven: int, outcome: Outcome
) -> None:
    # An audience run (a local-time send's later zone) or a publish finished by a retry reads its topic, the
    # credentials' name with it, long after the notification's record was made: its window_start says when. A
    # redrive moves window_start too, but its credentials are the ones its publish read.
    rig.parameters.error = _ssm_error("ParameterNotFound")
    message = _message(created_at=iso_time(NOW - 86400), window_start=iso_time(NOW - 5), redriven=redriven)
    message["integration"]["credentials_ref"] = REF

    assert rig.process(json.dumps(message)) == outcome


class _LaggingParameters:
    """SSM whose first read of a parameter a topic change just wrote answers ParameterNotFound, as a read right after
    PutParameter may; the reads after see it."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.reads = inner, 0

    def get_parameter(self, **request: Any) -> dict[str, Any]:
        self.reads += 1
        if self.reads == 1:
            raise _ssm_error("ParameterNotFound")
        return self.inner.get_parameter(**request)


def test_process_credentials_not_visible_yet_to_a_young_delivery_are_retried_then_read(rig: Rig) -> None:
    # Failed for good, a delivery published right after its topic changed was lost to a read SSM answered too early.
    rig.deliverer._credentials._client = _LaggingParameters(rig.parameters)

    first = rig.process(_with_credentials(age=5))

    assert (first, rig.row().status, rig.channel.sent) == (Outcome.RETRIED, DeliveryStatus.RETRYING, [])
    assert "credentials are missing" in (rig.row().last_error or "")
    assert rig.process(_with_credentials(age=5)) == Outcome.DELIVERED


# --- next attempt -------------------------------------------------------------------------------------------------


def _retried_then(rig: Rig, result: DeliveryReceipt | Exception) -> None:
    """Answer 503, then let the retry's copy arrive at its time and answer it with ``result``."""
    rig.channel.result = _server_error()
    rig.process()
    body, _ = rig.queue.sent.pop()
    rig.clock.advance(BACKOFF_1)
    rig.channel.result = result
    rig.process(body)


def test_process_server_error_records_next_attempt_at_the_retry_time(rig: Rig) -> None:
    rig.channel.result = _server_error()

    rig.process()

    assert rig.row().next_attempt_at == iso_time(NOW + BACKOFF_1) == rig.copy()[0].not_before


def test_process_rate_limited_records_next_attempt_at_after_retry_after(rig: Rig) -> None:
    rig.channel.result = _too_many_requests(retry_after=30)

    rig.process()

    assert rig.row().next_attempt_at == iso_time(NOW + 33)


def test_process_slot_beyond_max_wait_records_next_attempt_at_the_slot(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_TEN_SECONDS
    rig.occupy(ONE_PER_TEN_SECONDS)

    rig.process()

    assert rig.row().next_attempt_at == iso_time(NOW + 11)


def test_process_copy_refused_on_retry_records_next_attempt_at_the_retry_time(rig: Rig) -> None:
    rig.channel.result = _server_error()
    rig.queue.fail = True

    with pytest.raises(DeliveryDeferredError):
        rig.process()

    assert rig.row().next_attempt_at == iso_time(NOW + BACKOFF_1)


@pytest.mark.parametrize(
    ("result", "status"),
    [
        (DeliveryReceipt("provider-1"), DeliveryStatus.DELIVERED),
        (PermanentDeliveryError("webhook: HTTP 404"), DeliveryStatus.FAILED),
    ],
    ids=["delivered", "failed"],
)
def test_process_final_outcome_after_retrying_clears_next_attempt_at(
    rig: Rig, result: Exception | DeliveryReceipt, status: DeliveryStatus
) -> None:
    _retried_then(rig, result)

    assert (rig.row().status, rig.row().next_attempt_at) == (status, None)


def test_process_dead_after_retrying_clears_next_attempt_at(rig: Rig) -> None:
    rig.channel.result = _server_error()
    rig.process(_body(attempt=MAX_ATTEMPTS - 2))
    body, delay = rig.queue.sent.pop()
    rig.clock.advance(delay)

    rig.process(body)

    assert (rig.row().status, rig.row().next_attempt_at) == (DeliveryStatus.DEAD, None)


# --- redriven deliveries ------------------------------------------------------------------------------------------


def _redriven(rig: Rig, prior_attempts: int = 7, redriven: int = 1, **changes: Any) -> str:
    """Return a redriven message's body with its ledger row as the redrive left it: ``queued``, attempts kept."""
    rig.ledger.put(ID, KEY, DeliveryStatus.QUEUED, attempts=prior_attempts, redriven=redriven)
    return _body(prior_attempts=prior_attempts, redriven=redriven, window_start=iso_time(NOW - 1), **changes)


def test_process_redriven_message_delivered_counts_attempts_over_every_run(rig: Rig) -> None:
    rig.process(_redriven(rig))

    assert (rig.row().status, rig.row().attempts, rig.row().redriven) == (DeliveryStatus.DELIVERED, 8, 1)


def test_process_redriven_message_failing_gets_a_fresh_attempt_budget(rig: Rig) -> None:
    rig.channel.result = _server_error()

    # Seven attempts before the redrive, more than the five allowed: the new run still has its own five.
    outcome = rig.process(_redriven(rig))

    message, _ = rig.copy()
    assert (outcome, message.attempt, message.prior_attempts, message.redriven) == (Outcome.RETRIED, 1, 7, 1)
    assert (rig.row().status, rig.row().attempts) == (DeliveryStatus.RETRYING, 8)


def test_process_redriven_message_spending_its_run_is_dead_with_every_attempt_counted(rig: Rig) -> None:
    rig.channel.result = _server_error()

    outcome = rig.process(_redriven(rig, attempt=MAX_ATTEMPTS - 1))

    [(body, reason)] = rig.dead_letters.buried
    dead = DeliveryMessage.model_validate_json(body)
    assert (outcome, reason) == (Outcome.DEAD, f"{MAX_ATTEMPTS} attempts made: webhook: HTTP 503")
    assert (dead.attempt, dead.prior_attempts, dead.redriven) == (MAX_ATTEMPTS, 7, 1)
    assert (rig.row().status, rig.row().attempts) == (DeliveryStatus.DEAD, 7 + MAX_ATTEMPTS)


def test_process_redriven_message_received_twice_sets_redriven_once(rig: Rig) -> None:
    rig.channel.result = _server_error()
    body = _redriven(rig, redriven=2)

    # SQS delivers at least once: the same copy again is a second attempt, but the same redrive.
    rig.process(body)
    rig.process(body)

    assert (rig.row().attempts, rig.row().redriven) == (9, 2)


def test_process_redriven_message_received_again_after_success_is_skipped(rig: Rig) -> None:
    body = _redriven(rig)
    rig.process(body)

    outcome = rig.process(body)

    assert (outcome, len(rig.channel.sent), rig.row().attempts, rig.row().redriven) == (Outcome.SKIPPED, 1, 8, 1)


def test_process_redriven_message_with_ledger_ahead_counts_from_the_ledger(rig: Rig) -> None:
    rig.channel.result = _server_error()
    body = _redriven(rig)
    # The run's first attempt was recorded but its copy refused: the same message comes back after it.
    rig.ledger.put(ID, KEY, DeliveryStatus.RETRYING, attempts=8, redriven=1)

    rig.process(body)

    assert (rig.row().attempts, rig.copy()[0].attempt) == (9, 2)


@pytest.mark.parametrize("status", [DeliveryStatus.QUEUED, DeliveryStatus.RETRYING])
def test_process_copy_of_a_run_before_a_redrive_still_going_is_skipped_without_a_send(
    rig: Rig, status: DeliveryStatus
) -> None:
    # Buried, its delete lost: the old run's message came back while the run a redrive began was still going, and was
    # sent beside it, then wrote its own outcome over the newer run's row.
    rig.ledger.put(ID, KEY, status, attempts=6, redriven=1, last_error="webhook: HTTP 503")

    outcome = rig.process(_body(attempt=MAX_ATTEMPTS - 1), receive_count=2)

    assert (outcome, rig.channel.sent, rig.ledger.updates) == (Outcome.SKIPPED, [], [])
    assert (rig.queue.sent, rig.dead_letters.buried) == ([], [])


def test_process_redrive_between_the_bury_and_the_dead_write_leaves_the_redriven_runs_row(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An administrator redrove the letter the moment it reached the dead-letter queue: the give-up written after the
    # bury set the row back to dead with the older run's count, while the redriven run was on the delivery queue.
    rig.channel.result = _server_error()
    bury = rig.dead_letters.bury

    def bury_then_redrive(body: str, last_error: str) -> None:
        bury(body, last_error)
        rig.ledger.put(ID, KEY, DeliveryStatus.QUEUED, attempts=MAX_ATTEMPTS, redriven=1)

    monkeypatch.setattr(rig.dead_letters, "bury", bury_then_redrive)

    outcome = rig.process(_body(attempt=MAX_ATTEMPTS - 1))

    assert (outcome, len(rig.dead_letters.buried)) == (Outcome.DEAD, 1)
    assert (rig.row().status, rig.row().attempts, rig.row().redriven, rig.row().last_error) == (
        DeliveryStatus.QUEUED,
        MAX_ATTEMPTS,
        1,
        None,
    )


def test_parse_message_body_without_redrive_fields_defaults_them_to_zero() -> None:
    message = parse_message(_body(attempt=2))

    assert (message.prior_attempts, message.redriven) == (0, 0)


def test_process_body_without_redrive_fields_records_its_attempts_and_redriven_zero(rig: Rig) -> None:
    rig.process(_body(attempt=2))

    assert (rig.row().attempts, rig.row().redriven) == (3, 0)


def test_process_copy_of_a_delivery_never_redriven_carries_no_redrive_fields(rig: Rig) -> None:
    rig.channel.result = _server_error()

    rig.process()

    [(body, _)] = rig.queue.sent
    assert {"prior_attempts", "redriven"} & set(json.loads(body)) == set()


# --- history ------------------------------------------------------------------------------------------------------


def _history(rig: Rig) -> list[tuple[str, int, str, str | None]]:
    return [(record["at"], record["attempt"], record["status"], record["error"]) for record in rig.row().history]


def test_process_attempts_append_history_in_order(rig: Rig) -> None:
    _retried_then(rig, DeliveryReceipt("provider-1"))

    assert _history(rig) == [
        (iso_time(NOW), 1, "retrying", "webhook: HTTP 503"),
        (iso_time(NOW + BACKOFF_1), 2, "delivered", None),
    ]


def test_process_permanent_error_appends_failed_to_history(rig: Rig) -> None:
    rig.channel.result = PermanentDeliveryError("webhook: HTTP 404")

    rig.process()

    assert _history(rig) == [(iso_time(NOW), 1, "failed", "webhook: HTTP 404")]


def test_process_last_attempt_failing_appends_dead_to_history(rig: Rig) -> None:
    rig.channel.result = _server_error()

    rig.process(_body(attempt=MAX_ATTEMPTS - 1))

    assert _history(rig) == [
        (iso_time(NOW), MAX_ATTEMPTS, "dead", f"{MAX_ATTEMPTS} attempts made: webhook: HTTP 503"),
    ]


def test_process_redriven_history_entry_counts_attempts_over_every_run(rig: Rig) -> None:
    rig.process(_redriven(rig))

    assert [record["attempt"] for record in rig.row().history] == [8]


def test_process_slot_beyond_max_wait_appends_no_history(rig: Rig) -> None:
    rig.channel.limits = ONE_PER_TEN_SECONDS
    rig.occupy(ONE_PER_TEN_SECONDS)

    rig.process()

    assert rig.row().history == []


def test_process_rate_limited_appends_no_history(rig: Rig) -> None:
    rig.channel.result = _too_many_requests(retry_after=30)

    rig.process()

    assert rig.row().history == []


def test_process_history_at_its_limit_keeps_the_most_recent_attempts(rig: Rig) -> None:
    earlier = [
        AttemptRecord(at=iso_time(NOW - 1000 + index), attempt=index + 1, status="retrying", error="webhook: HTTP 503")
        for index in range(HISTORY_LIMIT)
    ]
    rig.ledger.put(ID, KEY, DeliveryStatus.RETRYING, attempts=HISTORY_LIMIT, history=earlier)

    rig.process(_body(attempt=HISTORY_LIMIT))

    history = rig.row().history
    assert len(history) == HISTORY_LIMIT
    assert history[:-1] == earlier[1:]
    assert (history[-1]["attempt"], history[-1]["status"]) == (HISTORY_LIMIT + 1, "delivered")


# --- EndpointDisabled: the device's endpoint is reported --------------------------------------------------------

DISABLED_ENDPOINT = "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/1"


def _reporting(rig: Rig, reported: list[str], fail: bool = False, times: list[float] | None = None) -> None:
    def report(endpoint_arn: str, observed_at: float) -> None:
        if fail:
            raise RuntimeError("queue down")
        reported.append(endpoint_arn)
        if times is not None:
            times.append(observed_at)

    rig.deliverer._on_endpoint_disabled = report  # the rig builds its deliverer without the hook


def test_process_endpoint_disabled_failed_with_the_reason_and_reported(rig: Rig) -> None:
    reported: list[str] = []
    _reporting(rig, reported)
    rig.channel.result = EndpointDisabledError("push: EndpointDisabled", DISABLED_ENDPOINT)

    assert rig.process() is Outcome.FAILED
    assert (rig.row().status, rig.row().last_error, reported) == (
        DeliveryStatus.FAILED,
        "push: EndpointDisabled",
        [DISABLED_ENDPOINT],
    )


def test_process_endpoint_disabled_reports_when_sns_was_asked_not_when_the_row_was_written(rig: Rig) -> None:
    # The report's time was taken after the ledger write: a device the app registered again meanwhile (its endpoint
    # enabled again) was disabled by it.
    times: list[float] = []
    _reporting(rig, [], times=times)
    rig.channel.result = EndpointDisabledError("push: EndpointDisabled", DISABLED_ENDPOINT, observed_at=1_800_000_000.0)

    rig.process()

    assert times == [1_800_000_000.0]


def test_process_other_permanent_error_not_reported(rig: Rig) -> None:
    reported: list[str] = []
    _reporting(rig, reported)
    rig.channel.result = PermanentDeliveryError("webhook: HTTP 404")

    rig.process()

    assert reported == []


def test_process_endpoint_disabled_report_failure_still_failed(rig: Rig) -> None:
    _reporting(rig, [], fail=True)
    rig.channel.result = EndpointDisabledError("push: EndpointDisabled", DISABLED_ENDPOINT)

    assert rig.process() is Outcome.FAILED
    assert rig.row().status is DeliveryStatus.FAILED


# --- the batch's ledger rows read in one go -----------------------------------------------------------------------


def _attempt(body: str, index: int = 1) -> Attempt:
    return Attempt(message_id=f"m-{index}", receipt_handle=f"rh-{index}", receive_count=1, body=body)


def test_read_entries_reads_the_batch_in_one_call(rig: Rig) -> None:
    rig.ledger.put(ID, KEY, DeliveryStatus.RETRYING, attempts=2)
    attempts = [_attempt(_body(delivery_key=f"k-{index}"), index) for index in range(1, 4)]

    entries = rig.deliverer.read_entries(attempts)

    assert rig.ledger.batch_reads == [[(ID, "k-1"), (ID, "k-2"), (ID, "k-3")]]
    entry = entries[ROW_KEY]
    assert entry is not None
    assert (entry.attempts, entries[(ID, "k-2")]) == (2, None)


def test_read_entries_leaves_out_malformed_and_not_yet_due_messages(rig: Rig) -> None:
    attempts = [
        _attempt("not json", 1),
        _attempt(_body(delivery_key="k-later", not_before=iso_time(NOW + 60)), 2),
        _attempt(_body(), 3),
    ]

    rig.deliverer.read_entries(attempts)

    assert rig.ledger.batch_reads == [[ROW_KEY]]


def test_read_entries_leaves_out_a_delivery_that_comes_twice_so_its_copies_read_their_own_rows(rig: Rig) -> None:
    attempts = [_attempt(_body(), 1), _attempt(_body(delivery_key="k-2"), 2), _attempt(_body(), 3)]

    entries = rig.deliverer.read_entries(attempts)

    assert (rig.ledger.batch_reads, list(entries)) == ([[(ID, "k-2")]], [(ID, "k-2")])


def test_process_second_copy_in_one_batch_sees_the_first_delivered(rig: Rig) -> None:
    attempts = [_attempt(_body(), 1), _attempt(_body(), 2)]
    entries = rig.deliverer.read_entries(attempts)

    outcomes = [rig.deliverer.process(attempt, None, entries) for attempt in attempts]

    assert (outcomes, len(rig.channel.sent)) == ([Outcome.DELIVERED, Outcome.SKIPPED], 1)


def test_read_entries_reads_only_the_messages_that_start_at_once(rig: Rig) -> None:
    attempts = [_attempt(_body(delivery_key=f"k-{index}"), index) for index in range(1, 4)]

    rig.deliverer.read_entries(attempts, 2)

    assert rig.ledger.batch_reads == [[(ID, "k-1"), (ID, "k-2")]]


def test_read_entries_leaves_out_a_delivery_whose_copy_waits_for_a_thread(rig: Rig) -> None:
    # Two threads: the third message waits for one. It is a copy of the first, so the first's row is not read ahead:
    # the copy must see what the first did, not the row as it was before the batch.
    attempts = [_attempt(_body(), 1), _attempt(_body(delivery_key="k-2"), 2), _attempt(_body(), 3)]

    entries = rig.deliverer.read_entries(attempts, 2)

    assert (rig.ledger.batch_reads, list(entries)) == ([[(ID, "k-2")]], [(ID, "k-2")])


def test_process_copy_that_waited_for_a_thread_sees_the_first_delivered(rig: Rig) -> None:
    attempts = [_attempt(_body(), 1), _attempt(_body(delivery_key="k-2"), 2), _attempt(_body(), 3)]
    entries = rig.deliverer.read_entries(attempts, 2)

    outcomes = [rig.deliverer.process(attempt, None, entries) for attempt in attempts]

    assert outcomes == [Outcome.DELIVERED, Outcome.DELIVERED, Outcome.SKIPPED]
    assert len(rig.channel.sent) == 2


def test_read_entries_body_nested_beyond_the_parser_is_malformed_and_the_others_are_read(rig: Rig) -> None:
    attempts = [_attempt("[" * 100_000, 1), _attempt(_body(), 2)]

    assert set(rig.deliverer.read_entries(attempts)) == {(ID, KEY)}


def test_read_entries_breaking_on_a_body_returns_nothing(rig: Rig) -> None:
    attempts = [_attempt(None, 1), _attempt(_body(), 2)]  # type: ignore[arg-type]

    assert rig.deliverer.read_entries(attempts) == {}


def test_read_entries_of_nothing_readable_makes_no_call(rig: Rig) -> None:
    assert (rig.deliverer.read_entries([_attempt("not json")]), rig.ledger.batch_reads) == ({}, [])


def test_read_entries_failing_returns_nothing_so_each_message_reads_its_own_row(rig: Rig) -> None:
    rig.ledger.fail_reads = True

    assert rig.deliverer.read_entries([_attempt(_body())]) == {}


def test_read_entries_failing_unexpectedly_returns_nothing_and_logs_it(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(keys: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(rig.ledger, "get_entries", broken)

    with caplog.at_level(logging.ERROR):
        assert rig.deliverer.read_entries([_attempt(_body())]) == {}
    assert "ledger batch read failed unexpectedly" in caplog.text


def test_process_with_the_batch_read_reads_no_row_of_its_own(rig: Rig) -> None:
    entries = rig.deliverer.read_entries([_attempt(_body())])

    outcome = rig.deliverer.process(_attempt(_body()), None, entries)

    assert (outcome, rig.ledger.reads, rig.row().status) == (Outcome.DELIVERED, [], DeliveryStatus.DELIVERED)


def test_process_with_the_batch_read_skips_a_row_delivered_already(rig: Rig) -> None:
    rig.ledger.put(ID, KEY, DeliveryStatus.DELIVERED, attempts=1)
    entries = rig.deliverer.read_entries([_attempt(_body())])

    assert rig.deliverer.process(_attempt(_body()), None, entries) is Outcome.SKIPPED
    assert (rig.channel.sent, rig.ledger.reads) == ([], [])


def test_process_with_the_batch_read_counts_the_attempts_read(rig: Rig) -> None:
    rig.ledger.put(ID, KEY, DeliveryStatus.RETRYING, attempts=3)
    entries = rig.deliverer.read_entries([_attempt(_body())])

    rig.deliverer.process(_attempt(_body()), None, entries)

    assert rig.row().attempts == 4


def test_process_key_missing_from_the_batch_read_reads_its_own_row(rig: Rig) -> None:
    rig.ledger.put(ID, KEY, DeliveryStatus.DELIVERED, attempts=1)

    assert rig.deliverer.process(_attempt(_body()), None, {}) is Outcome.SKIPPED
    assert rig.ledger.reads == [ROW_KEY]


def test_process_to_a_user_deleted_after_the_expansion_fails_saying_so_and_sends_nothing(rig: Rig) -> None:
    rig.ledger.deleted_users["u-1"] = iso_time(NOW - 30)  # after the delivery was expanded (NOW - 60)

    outcome = rig.process(_body(recipient={"user_id": "u-1", "address": "u1@example.com"}))

    assert outcome is Outcome.FAILED
    assert rig.channel.sent == []
    assert (rig.row().status, rig.row().attempts) == (DeliveryStatus.FAILED, 0)
    assert rig.row().last_error == f"the user was deleted ({iso_time(NOW - 30)}) before this was sent"


def test_process_to_a_user_deleted_before_the_expansion_is_sent(rig: Rig) -> None:
    # Deleted, then created again: what is expanded for them after is theirs.
    rig.ledger.deleted_users["u-1"] = iso_time(NOW - 90)

    outcome = rig.process(_body(recipient={"user_id": "u-1"}))

    assert outcome is Outcome.DELIVERED
    assert len(rig.channel.sent) == 1


def test_process_to_a_user_the_ledger_cannot_tell_about_is_sent_on_without_an_attempt(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(user_ids: Sequence[str]) -> dict[str, str]:
        raise UpstreamError("reading the ledger failed (ProvisionedThroughputExceededException)")

    monkeypatch.setattr(rig.ledger, "users_deleted", unreadable)

    outcome = rig.process(_body(recipient={"user_id": "u-1"}))

    assert rig.channel.sent == []
    assert outcome is not Outcome.DELIVERED
    assert [copy.attempt for copy, _ in rig.copies()] == [0]


def test_read_entries_reads_the_batch_users_deletions_in_one_call(rig: Rig) -> None:
    rig.ledger.deleted_users["u-2"] = iso_time(NOW)
    attempts = [_attempt(_body(delivery_key=f"k-{n}", recipient={"user_id": f"u-{n}"}), n) for n in (1, 2)]
    rig.deliverer.read_entries(attempts)
    rig.ledger.deleted_users.clear()  # what the batch read is what counts

    outcomes = [rig.deliverer.process(attempt) for attempt in attempts]

    assert outcomes == [Outcome.DELIVERED, Outcome.FAILED]
