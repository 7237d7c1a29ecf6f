"""The delivery queue: delivery messages sent with SendMessageBatch (batches concurrently, entries that SQS reports
failed retried once), and single messages sent later (a retry's copy) or to the dead-letter queue."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import AWS_ERRORS, aws_error, error_code

BATCH_LIMIT = 10
BATCH_BYTES_LIMIT = 256 * 1024
# SQS's limit on DelaySeconds.
MAX_DELAY_SECONDS = 900
# Batches of one publish sent at once; boto3 clients are thread-safe.
SEND_CONCURRENCY = 8


@dataclass
class SendOutcome:
    """What happened to a set of messages: SQS message ids of those sent, reasons for those not sent."""

    sent: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _chunks(entries: Sequence[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
    """Group entries by ten, and so that no group's bodies exceed what one request may carry."""
    chunk: list[tuple[str, str]] = []
    size = 0
    for key, body in entries:
        length = len(body.encode())
        if chunk and (len(chunk) == BATCH_LIMIT or size + length > BATCH_BYTES_LIMIT):
            yield chunk
            chunk, size = [], 0
        chunk.append((key, body))
        size += length
    if chunk:
        yield chunk


class DeliveryQueue:
    """Sends delivery messages to one SQS queue.

    Parameters
    ----------
    client:
        A boto3 SQS client.
    queue_url:
        The delivery queue's URL.
    """

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def send(self, messages: Sequence[tuple[str, str]]) -> SendOutcome:
        """Send ``(key, body)`` pairs, batches concurrently; failed entries are tried once more, then reported."""
        outcome = SendOutcome()
        retry = self._send_all(list(_chunks(messages)), outcome, final=False)
        self._send_all(list(_chunks(retry)), outcome, final=True)
        return outcome

    def _send_all(
        self, chunks: list[list[tuple[str, str]]], outcome: SendOutcome, final: bool
    ) -> list[tuple[str, str]]:
        if len(chunks) <= 1:
            return [entry for chunk in chunks for entry in self._send_chunk(chunk, outcome, final)]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(SEND_CONCURRENCY, len(chunks))) as pool:
            results = list(pool.map(lambda chunk: self._send_chunk(chunk, outcome, final), chunks))
        return [entry for result in results for entry in result]

    def send_later(self, body: str, delay_seconds: int) -> str:
        """Send one message that becomes visible after ``delay_seconds`` (0 to 900); return its SQS message id."""
        try:
            response = self._client.send_message(
                QueueUrl=self._url, MessageBody=body, DelaySeconds=max(0, min(MAX_DELAY_SECONDS, delay_seconds))
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "sending to the delivery queue") from exc
        return str(response["MessageId"])

    def _send_chunk(self, chunk: list[tuple[str, str]], outcome: SendOutcome, final: bool) -> list[tuple[str, str]]:
        # Batch entry ids must be short and alphanumeric; integration names need not be, so index them.
        by_id = {f"m{index}": entry for index, entry in enumerate(chunk)}
        failed: dict[str, str] = {}
        try:
            response = self._client.send_message_batch(
                QueueUrl=self._url,
                Entries=[{"Id": entry_id, "MessageBody": body} for entry_id, (_, body) in by_id.items()],
            )
        except AWS_ERRORS as exc:
            failed = dict.fromkeys(by_id, error_code(exc))
        else:
            for success in response.get("Successful", []):
                outcome.sent[by_id[success["Id"]][0]] = success["MessageId"]
            for failure in response.get("Failed", []):
                failed[failure["Id"]] = failure.get("Code") or failure.get("Message") or "Failed"
        if final:
            for entry_id, reason in failed.items():
                outcome.failed[by_id[entry_id][0]] = reason
            return []
        return [by_id[entry_id] for entry_id in failed]


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
                MessageAttributes={"last_error": {"DataType": "String", "StringValue": last_error[:1000] or "-"}},
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "sending to the dead-letter queue") from exc
