"""The delivery queue: delivery messages sent with SendMessageBatch (batches concurrently, entries that SQS reports
failed retried once, within the caller's time), and single messages sent later (a retry's copy) or to the dead-letter
queue."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.errors import AWS_ERRORS, MessageRefusedError, UpstreamError, aws_error, error_code
from core.observability import logger

Item = TypeVar("Item")

BATCH_LIMIT = 10
# SQS's limit on one message (its body and attributes) on a queue whose MaximumMessageSize is 256 KiB, and on the
# bodies of one SendMessageBatch request together.
MESSAGE_BYTES_LIMIT = 256 * 1024
BATCH_BYTES_LIMIT = MESSAGE_BYTES_LIMIT
# The longest error text, in characters, that the delivery path keeps: a dead letter's ``last_error`` attribute (as
# the ledger keeps a row's last error).
MAX_ERROR_LENGTH = 1000
# Room left in every delivery message for what the consumer's copies of it add, which SQS counts against the same
# limit: a retry's or a pacing wait's ``not_before``, ``attempt``, ``throttled``, ``slot_reserved``, ``slot_partial``;
# a redrive's ``window_start``, ``prior_attempts``, ``redriven``; a record-only copy's ``outcome`` (its content
# dropped, an error of MAX_ERROR_LENGTH characters is up to 6000 bytes of JSON, which escapes a control character in
# six); a dead letter's
# ``last_error`` attribute (up to 4000 bytes of UTF-8). Under 7 KiB in all, field names and a provider message id of
# 200 characters (``consumer.delivery.MAX_PROVIDER_ID_LENGTH``) included. Without this room a message near 256 KiB is
# accepted, but SQS refuses its retry copy and its dead letter: the delivery is received again and again and never
# ends ``dead``.
COPY_RESERVE_BYTES = 8 * 1024
# The largest delivery message the producer enqueues (``core/fanout.py``): the consumer's copies of it always fit.
DELIVERY_MESSAGE_BYTES_LIMIT = MESSAGE_BYTES_LIMIT - COPY_RESERVE_BYTES
# What SQS refuses in a message attribute's text (it takes XML's characters only): a receiver's answer quoted in an
# error may hold them, and the dead letter carrying it would be refused as if it could never be sent. Written as the
# characters refused (all but tab, LF, CR, U+0020-U+D7FF, U+E000-U+FFFD and U+10000 up): the negated class of those
# allowed compiles ten times slower (3 ms). Compiled by ``re`` (which keeps it) at its first use, a dead letter's.
_NOT_SQS_TEXT = "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]"
# SQS's error codes for a message it will never take as it is: larger than the queue's MaximumMessageSize
# (``InvalidParameterValue``: "Message must be shorter than …") or holding characters it does not carry.
_REFUSED_AS_IT_IS = frozenset({"InvalidParameterValue", "InvalidMessageContents"})
# SQS's limit on DelaySeconds.
MAX_DELAY_SECONDS = 900
# Batches of one publish sent at once; botocore's clients are thread-safe.
SEND_CONCURRENCY = 8
# Why an entry is reported failed when SQS had not answered its batch before the caller's time ran out, and when the
# caller had no time left to send it at all.
NO_ANSWER = "no answer from SQS in the time left (the message may still arrive)"
NO_TIME = "no time left to send it"
# The least time worth starting a pass of sends with: about one round trip to SQS. With less, a batch would almost
# surely be reported failed and still arrive.
MIN_SEND_SECONDS = 0.25


def send_error(exc: Any, action: str) -> UpstreamError:
    """Return the domain error of a failed send of one message: ``MessageRefusedError`` when SQS refuses the message
    for what it is, else what ``aws_error`` makes of it (the same text either way)."""
    error = aws_error(exc, action)
    return MessageRefusedError(str(error)) if error_code(exc) in _REFUSED_AS_IT_IS else error


@dataclass
class SendOutcome:
    """What happened to a set of messages: SQS message ids of those sent, reasons for those not sent."""

    sent: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _keys(chunks: Sequence[list[tuple[str, str]]]) -> list[str]:
    return [key for chunk in chunks for key, _ in chunk]


def bounded_groups(
    items: Iterable[Item], size_of: Callable[[Item], int], max_count: int, max_bytes: int, base: int = 0
) -> Iterator[list[Item]]:
    """Group ``items`` in order, each group at most ``max_count`` of them and ``base`` plus their ``size_of`` at most
    ``max_bytes`` (an item alone over it is a group of its own)."""
    group: list[Item] = []
    size = base
    for item in items:
        length = size_of(item)
        if group and (len(group) == max_count or size + length > max_bytes):
            yield group
            group, size = [], base
        group.append(item)
        size += length
    if group:
        yield group


def _chunks(entries: Sequence[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
    """Group entries by ten, and so that no group's bodies exceed what one request may carry."""
    return bounded_groups(entries, lambda entry: len(entry[1].encode()), BATCH_LIMIT, BATCH_BYTES_LIMIT)


class DeliveryQueue:
    """Sends delivery messages to one SQS queue.

    Parameters
    ----------
    client:
        A boto3 SQS client.
    queue_url:
        The delivery queue's URL.
    batch_client:
        Returns the client of the ``SendMessageBatch`` calls of a send bounded in time, one without botocore's
        retries, made at the first such batch (``client`` when not given): a call such a send left behind must not
        try again after the caller answered. A send without a bound uses ``client``, and botocore's retries with
        their backoff.
    """

    def __init__(self, client: Any, queue_url: str, *, batch_client: Callable[[], Any] | None = None) -> None:
        self._client = client
        self._url = queue_url
        self._batch_client = batch_client or (lambda: client)

    def send(self, messages: Sequence[tuple[str, str]], time_left: Callable[[], float] | None = None) -> SendOutcome:
        """Send ``(key, body)`` pairs, batches concurrently; entries SQS refused are tried once more, then reported.

        With ``time_left`` (seconds left to the caller), the sends are waited for only that long: the entries of a
        batch still unanswered are reported failed with ``NO_ANSWER`` (SQS may yet enqueue them; the consumer's
        ledger write then wins, see ``DeliveryLedger.record_failed``). With less than ``MIN_SEND_SECONDS`` left, nothing
        more is sent (``NO_TIME``), the second try included.
        """
        outcome = SendOutcome()
        refused = self._send_all(list(_chunks(messages)), outcome, time_left)
        if refused and (time_left is None or time_left() >= MIN_SEND_SECONDS):
            refused = self._send_all(list(_chunks(list(refused))), outcome, time_left)
        outcome.failed.update({key: reason for (key, _), reason in refused.items()})
        return outcome

    def _send_all(
        self, chunks: list[list[tuple[str, str]]], outcome: SendOutcome, time_left: Callable[[], float] | None
    ) -> dict[tuple[str, str], str]:
        """Send the chunks; record what SQS took in ``outcome`` and return the entries it refused, with reasons."""
        if not chunks:
            return {}
        if time_left is not None and time_left() < MIN_SEND_SECONDS:
            # Nothing is started that could land after the caller reported it failed.
            outcome.failed.update(dict.fromkeys(_keys(chunks), NO_TIME))
            return {}
        # Made here, once, not by several threads at once.
        client = self._client if time_left is None else self._batch_client()
        if time_left is None and len(chunks) == 1:
            answers = [self._send_chunk(client, chunk) for chunk in chunks]
        else:
            # A pool even for one chunk when time is short: a call botocore is still retrying cannot be cut off,
            # only left behind. The pool is not waited for, so a late answer is dropped with its thread.
            pool = ThreadPoolExecutor(max_workers=min(SEND_CONCURRENCY, len(chunks)))
            futures = [pool.submit(self._send_chunk, client, chunk) for chunk in chunks]
            wait(futures, timeout=None if time_left is None else max(0.0, time_left()))
            pool.shutdown(wait=False, cancel_futures=True)
            answers = []
            for chunk, future in zip(chunks, futures, strict=True):
                if future.cancelled():  # never started: more batches than threads, and the time ran out
                    outcome.failed.update(dict.fromkeys(_keys([chunk]), NO_TIME))
                elif future.done():
                    answers.append(future.result())
                else:
                    outcome.failed.update(dict.fromkeys(_keys([chunk]), NO_ANSWER))
        refused: dict[tuple[str, str], str] = {}
        for sent, failed in answers:
            outcome.sent.update(sent)
            refused.update(failed)
        return refused

    def send_later(self, body: str, delay_seconds: int) -> str:
        """Send one message that becomes visible after ``delay_seconds`` (0 to 900); return its SQS message id."""
        try:
            response = self._client.send_message(
                QueueUrl=self._url, MessageBody=body, DelaySeconds=max(0, min(MAX_DELAY_SECONDS, delay_seconds))
            )
        except AWS_ERRORS as exc:
            raise send_error(exc, "sending to the delivery queue") from exc
        return str(response["MessageId"])

    def _send_chunk(
        self, client: Any, chunk: list[tuple[str, str]]
    ) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
        """Send one batch; return the message id of each key SQS took and the reason of each entry it refused."""
        # Batch entry ids must be short and alphanumeric; integration names need not be, so index them.
        by_id = {f"m{index}": entry for index, entry in enumerate(chunk)}
        try:
            response = client.send_message_batch(
                QueueUrl=self._url,
                Entries=[{"Id": entry_id, "MessageBody": body} for entry_id, (_, body) in by_id.items()],
            )
        except AWS_ERRORS as exc:
            return {}, dict.fromkeys(chunk, error_code(exc))
        sent = {by_id[success["Id"]][0]: success["MessageId"] for success in response.get("Successful", [])}
        failed = {
            by_id[failure["Id"]]: failure.get("Code") or failure.get("Message") or "Failed"
            for failure in response.get("Failed", [])
        }
        return sent, failed


class DeadLetterQueue:
    """The delivery dead-letter queue, to which the consumer moves a delivery whose retries are exhausted.

    Parameters
    ----------
    client:
        A boto3 SQS client.
    queue_url:
        The dead-letter queue's URL.
    """

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def bury(self, body: str, last_error: str) -> None:
        """Put a message in the dead-letter queue with its last error as the ``last_error`` attribute."""
        try:
            self._client.send_message(
                QueueUrl=self._url,
                MessageBody=body,
                MessageAttributes={
                    "last_error": {
                        "DataType": "String",
                        "StringValue": re.sub(_NOT_SQS_TEXT, "\ufffd", last_error[:MAX_ERROR_LENGTH]) or "-",
                    }
                },
            )
        except AWS_ERRORS as exc:
            raise send_error(exc, "sending to the dead-letter queue") from exc


# SQS refuses a visibility timeout that ends more than 12 h after the message was received; the margin covers the
# time between the receive and this change (at most a Lambda's 15 minutes).
MAX_VISIBILITY_SECONDS = 12 * 3600 - 15 * 60


class VisibilityScheduler:
    """Sets the visibility timeout of received messages of one queue: the fallback when a copy cannot be sent.

    Parameters
    ----------
    client:
        A boto3 SQS client.
    queue_url:
        The queue's URL.
    """

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def postpone(self, receipt_handle: str, seconds: int) -> bool:
        """Hide a received message for ``seconds``; return ``False`` when SQS refused (it then keeps its own)."""
        seconds = max(0, min(MAX_VISIBILITY_SECONDS, seconds))
        try:
            self._client.change_message_visibility(
                QueueUrl=self._url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
            )
        except AWS_ERRORS as exc:
            logger.warning(
                "could not change the message visibility", extra={"error": error_code(exc), "seconds": seconds}
            )
            return False
        return True
