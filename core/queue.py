"""The delivery queue: delivery messages sent with SendMessageBatch, entries that SQS reports failed retried once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

BATCH_LIMIT = 10
BATCH_BYTES_LIMIT = 256 * 1024


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
        """Send ``(key, body)`` pairs; entries that fail are tried once more, then reported in ``failed``."""
        outcome = SendOutcome()
        retry: list[tuple[str, str]] = []
        for chunk in _chunks(messages):
            retry.extend(self._send_chunk(chunk, outcome, final=False))
        for chunk in _chunks(retry):
            self._send_chunk(chunk, outcome, final=True)
        return outcome

    def _send_chunk(self, chunk: list[tuple[str, str]], outcome: SendOutcome, final: bool) -> list[tuple[str, str]]:
        # Batch entry ids must be short and alphanumeric; integration names need not be, so index them.
        by_id = {f"m{index}": entry for index, entry in enumerate(chunk)}
        failed: dict[str, str] = {}
        try:
            response = self._client.send_message_batch(
                QueueUrl=self._url,
                Entries=[{"Id": entry_id, "MessageBody": body} for entry_id, (_, body) in by_id.items()],
            )
        except ClientError as exc:
            failed = dict.fromkeys(by_id, exc.response["Error"]["Code"])
        except BotoCoreError as exc:
            failed = {entry_id: type(exc).__name__ for entry_id in by_id}
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
