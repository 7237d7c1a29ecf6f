"""An SQS client that records SendMessageBatch calls and fails the entries or calls a test chooses."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError


class FakeSqsClient:
    """Stands in for a boto3 SQS client in unit tests; only ``send_message_batch`` is implemented.

    Parameters
    ----------
    fail_bodies:
        Key of a message → how many sends of it SQS reports ``Failed`` before accepting it.
    error_code:
        When set, every call raises a ``ClientError`` with this code.
    key:
        What a message is known by in ``fail_bodies``; the body itself by default.
    """

    def __init__(
        self,
        fail_bodies: dict[str, int] | None = None,
        error_code: str | None = None,
        key: Callable[[str], str] = str,
    ) -> None:
        self.fail_bodies: Counter[str] = Counter(fail_bodies or {})
        self.error_code = error_code
        self._key = key
        self.batches: list[list[dict[str, Any]]] = []
        self.sent: dict[str, str] = {}
        # The delivery queue sends the batches of one publish from several threads.
        self._lock = threading.Lock()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        """Accept or fail each entry, as SQS does."""
        with self._lock:
            return self._send_batch(Entries)

    def _send_batch(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.batches.append(list(Entries))
        if self.error_code:
            raise ClientError({"Error": {"Code": self.error_code, "Message": "fake"}}, "SendMessageBatch")
        successful, failed = [], []
        for entry in Entries:
            body = entry["MessageBody"]
            if self.fail_bodies[self._key(body)] > 0:
                self.fail_bodies[self._key(body)] -= 1
                failed.append({"Id": entry["Id"], "SenderFault": False, "Code": "InternalError", "Message": "fake"})
                continue
            message_id = f"msg-{len(self.sent) + 1}"
            self.sent[message_id] = body
            successful.append({"Id": entry["Id"], "MessageId": message_id, "MD5OfMessageBody": "-"})
        return {"Successful": successful, "Failed": failed}
