"""Event sources played as AWS plays them: SQS event source mappings, SNS subscriptions and schedules.

SQS: batches of up to ``batchSize`` gathered for at most ``maximumBatchingWindow``; with ``ReportBatchItemFailures``
only the records the function did not name are deleted, and a failed invocation deletes none; the queue's own
redrive policy (in moto) moves a message to its DLQ after ``maxReceiveCount`` receives.
SNS: each message is one invocation with an SNS-shaped event; a failed one is retried twice, as Lambda retries
asynchronous invocations. Schedules: EventBridge's ``Scheduled Event`` at every ``rate()``/``cron()`` firing.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from infra.local.schedules import Cron, Rate
from infra.local.workers import FunctionPool

_IDLE_WAIT_SECONDS = 2


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """Turn a ReceiveMessage message into the record of an SQS Lambda event."""
    attributes = {
        name: message.get("Attributes", {}).get(name)
        for name in (
            "ApproximateReceiveCount",
            "SentTimestamp",
            "SenderId",
            "ApproximateFirstReceiveTimestamp",
            "MessageGroupId",
            "MessageDeduplicationId",
            "SequenceNumber",
        )
        if message.get("Attributes", {}).get(name) is not None
    }
    message_attributes = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        message_attributes[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": value.get("BinaryListValues", []),
            "dataType": value.get("DataType"),
        }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def failed_ids(result: Any, ids: set[str]) -> set[str] | None:
    """Return the ids a ``ReportBatchItemFailures`` response names, or ``None`` when the response is invalid.

    Lambda treats an invalid response (an id missing, empty or not in the batch) as a failure of the whole batch.
    """
    if result is None:
        return set()
    if not isinstance(result, dict):
        return None
    failures = result.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    found: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in ids:
            return None
        found.add(identifier)
    return found


class SqsPoller(threading.Thread):
    """Polls one queue for one function."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        pool: FunctionPool,
        batch_size: int,
        window: float,
        report_failures: bool,
        region: str,
        stop: threading.Event,
        log: Callable[[str], None],
    ) -> None:
        super().__init__(name=f"sqs-{pool.spec.key}", daemon=True)
        self._sqs = sqs
        self._url = queue_url
        self._arn = queue_arn
        self._pool = pool
        self._batch_size = batch_size
        self._window = window
        self._report = report_failures
        self._region = region
        self._stop = stop
        self._log = log

    def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self._sqs.receive_message(
            QueueUrl=self._url,
            MaxNumberOfMessages=max(1, min(10, count)),
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        return messages

    def _gather(self) -> list[dict[str, Any]]:
        batch = self._receive(self._batch_size, _IDLE_WAIT_SECONDS)
        if not batch:
            return batch
        deadline = time.monotonic() + self._window
        while len(batch) < self._batch_size and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = self._receive(self._batch_size - len(batch), 0)
            if more:
                batch.extend(more)
            else:
                self._stop.wait(min(remaining, 0.05))
        return batch

    def run(self) -> None:
        """Poll until the stack stops."""
        while not self._stop.is_set():
            try:
                batch = self._gather()
                if batch:
                    self._process(batch)
            except Exception as exc:
                if self._stop.is_set():
                    return
                self._log(f"poller of {self._pool.spec.key} on {self._arn.rsplit(':', 1)[-1]}: {exc}")
                self._stop.wait(1)

    def _process(self, batch: list[dict[str, Any]]) -> None:
        records = [sqs_record(message, self._arn, self._region) for message in batch]
        outcome = self._pool.invoke({"Records": records})
        ids = {record["messageId"] for record in records}
        failed: set[str] | None
        if outcome.failed:
            failed = ids
        elif self._report:
            failed = failed_ids(outcome.result, ids)
            failed = ids if failed is None else failed
        else:
            failed = set()
        done = [message for message in batch if message["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]}
                for index, m in enumerate(done[start : start + 10])
            ]
            self._sqs.delete_message_batch(QueueUrl=self._url, Entries=entries)
        note = f" {outcome.error['errorType']}: {outcome.error['errorMessage']}" if outcome.error else ""
        self._log(
            f"{self._pool.spec.key} ← {len(records)} SQS record(s): {len(done)} done, {len(failed)} failed "
            f"({outcome.duration_ms:.0f} ms){note}"
        )


def sns_record(envelope: dict[str, Any], subscription_arn: str) -> dict[str, Any]:
    """Turn the SNS envelope SQS received into the record of an SNS Lambda event."""
    attributes = {
        name: {"Type": value.get("Type"), "Value": value.get("Value")}
        for name, value in (envelope.get("MessageAttributes") or {}).items()
    }
    return {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": subscription_arn,
        "Sns": {
            "Type": envelope.get("Type", "Notification"),
            "MessageId": envelope.get("MessageId"),
            "TopicArn": envelope.get("TopicArn"),
            "Subject": envelope.get("Subject"),
            "Message": envelope.get("Message"),
            "Timestamp": envelope.get("Timestamp"),
            "SignatureVersion": envelope.get("SignatureVersion", "1"),
            "Signature": envelope.get("Signature", "local"),
            "SigningCertUrl": envelope.get("SigningCertURL", ""),
            "UnsubscribeUrl": envelope.get("UnsubscribeURL", ""),
            "MessageAttributes": attributes,
        },
    }


class SnsPoller(threading.Thread):
    """Plays one SNS subscription of a function: moto delivers to a hidden queue, this invokes per message.

    As Lambda plays an asynchronous invoke: a failed one is tried again (the function's ``MaximumRetryAttempts``,
    a few seconds apart here rather than minutes), then the event goes to its on-failure destination (an SQS queue,
    with Lambda's invocation record around it), or is dropped when it has none.
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        subscription_arn: str,
        pool: FunctionPool,
        stop: threading.Event,
        log: Callable[[str], None],
        on_failure_url: str | None = None,
    ) -> None:
        super().__init__(name=f"sns-{pool.spec.key}", daemon=True)
        self._sqs = sqs
        self._url = queue_url
        self._subscription = subscription_arn
        self._pool = pool
        self._stop = stop
        self._log = log
        self._attempts = 1 + max(0, pool.spec.async_retries)
        self._on_failure_url = on_failure_url

    def _function_arn(self) -> str:
        """The function's ARN, in the region and account of its subscription."""
        fields = self._subscription.split(":")
        region, account = (fields[3], fields[4]) if len(fields) > 4 else ("", "")
        return f"arn:aws:lambda:{region}:{account}:function:{self._pool.spec.name}:$LATEST"

    def run(self) -> None:
        """Poll until the stack stops."""
        while not self._stop.is_set():
            try:
                messages = self._sqs.receive_message(
                    QueueUrl=self._url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=_IDLE_WAIT_SECONDS,
                    AttributeNames=["All"],
                ).get("Messages", [])
                for message in messages:
                    self._process(message)
            except Exception as exc:
                if self._stop.is_set():
                    return
                self._log(f"SNS delivery to {self._pool.spec.key}: {exc}")
                self._stop.wait(1)

    def _process(self, message: dict[str, Any]) -> None:
        envelope = json.loads(message["Body"])
        event = {"Records": [sns_record(envelope, self._subscription)]}
        outcome = self._pool.invoke(event)
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        topic = str(envelope.get("TopicArn", "")).rsplit(":", 1)[-1]
        if outcome.failed and attempt < self._attempts:
            self._sqs.change_message_visibility(
                QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=5 * attempt
            )
            self._log(
                f"{self._pool.spec.key} ← SNS {topic}: failed, retry {attempt}/{self._attempts - 1} ({outcome.error})"
            )
            return
        state = "done"
        if outcome.failed:
            state = f"dropped after {attempt} attempts ({outcome.error})"
            if self._on_failure_url is not None:
                record = invocation_record(event, self._function_arn(), attempt, outcome.error)
                self._sqs.send_message(QueueUrl=self._on_failure_url, MessageBody=json.dumps(record))
                state = f"failed {attempt} times, sent to its on-failure queue ({outcome.error})"
        self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])
        self._log(f"{self._pool.spec.key} ← SNS {topic}: {state} ({outcome.duration_ms:.0f} ms)")


def invocation_record(event: Any, function_arn: str, attempts: int, error: Any) -> dict[str, Any]:
    """Return what Lambda sends an on-failure destination: the request, the condition, and the function's error
    (``errorMessage``, ``errorType``, ``stackTrace``) as the response."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": error if isinstance(error, dict) else {"errorMessage": str(error)},
    }


def scheduled_event(rule_arn: str, region: str, account: str, moment: datetime) -> dict[str, Any]:
    """Return EventBridge's ``Scheduled Event``."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class ScheduleTimer(threading.Thread):
    """Invokes a function at every firing of its schedule (asynchronously: a slow run does not delay the next)."""

    def __init__(
        self,
        schedule: Rate | Cron,
        expression: str,
        pool: FunctionPool,
        event: Callable[[datetime], Any],
        stop: threading.Event,
        log: Callable[[str], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(name=f"schedule-{pool.spec.key}", daemon=True)
        self._schedule = schedule
        self._expression = expression
        self._pool = pool
        self._event = event
        self._stop = stop
        self._log = log
        self._clock = clock
        self.created = clock()

    def next_firing(self) -> datetime:
        """Return the next time the schedule fires."""
        return self._schedule.next_after(self._clock(), self.created)

    def run(self) -> None:
        """Wait for each firing until the stack stops."""
        while not self._stop.is_set():
            firing = self.next_firing()
            if self._stop.wait(max(0.0, (firing - self._clock()).total_seconds())):
                return
            threading.Thread(target=self._fire, args=(firing,), daemon=True).start()

    def _fire(self, firing: datetime) -> None:
        outcome = self._pool.invoke(self._event(firing))
        note = f" {outcome.error['errorType']}: {outcome.error['errorMessage']}" if outcome.error else ""
        self._log(f"{self._pool.spec.key} ← schedule {self._expression} ({outcome.duration_ms:.0f} ms){note}")
