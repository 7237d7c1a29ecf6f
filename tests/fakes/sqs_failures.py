"""Makes moto's SQS report chosen SendMessageBatch entries as ``Failed``, for real, through a botocore hook.

moto fails a batch entry (and only that entry) when its ``DelaySeconds`` is over 900, so the hook sets that on the
entries of the integrations a test names; everything else goes through moto untouched.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

_INVALID_DELAY = 901


class SqsEntryFailures:
    """Registered on a boto3 SQS client; fails the deliveries of chosen integrations a chosen number of times."""

    def __init__(self, client: Any) -> None:
        self._remaining: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        client.meta.events.register("before-parameter-build.sqs.SendMessageBatch", self._before_send)

    def fail(self, integration: str, times: int = 1) -> None:
        """Have the next ``times`` sends of ``integration``'s delivery message fail."""
        self._remaining[integration] = times

    def _before_send(self, params: dict[str, Any], **_: Any) -> None:
        for entry in params["Entries"]:
            name = json.loads(entry["MessageBody"])["integration"]["name"]
            self.attempts[name] += 1
            if self._remaining[name] > 0:
                self._remaining[name] -= 1
                entry["DelaySeconds"] = _INVALID_DELAY
