"""Drive the consumer as Lambda's SQS poller does: enqueue delivery messages, receive them, call the handler, and
delete what the handler did not report failed."""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.clients import get_ledger
from core.ledger import Delivery, LedgerEntry, NotificationRecord
from core.models import DeliveryStatus
from core.times import utc_now
from tests.fakes.lambda_context import FakeLambdaContext
from tests.support.aws import ACCOUNT, REGION, AwsResources
from tests.support.events import load_event

CREDENTIALS_PREFIX = "/notify/test/integrations/orders/shipped"


def delivery_message(
    kind: str,
    content: dict[str, Any],
    target: dict[str, Any] | None = None,
    name: str | None = None,
    credentials_ref: str | None = None,
    notification_id: str | None = None,
    rate_per_second: float | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """Return a delivery message body (version 2) for one integration, created now unless told otherwise."""
    integration: dict[str, Any] = {"name": name or f"{kind}-1", "type": kind, "target": target or {}}
    if credentials_ref:
        integration["credentials_ref"] = credentials_ref
    if rate_per_second:
        integration["rate_per_second"] = rate_per_second
    return {
        "v": 2,
        "notification_id": notification_id or str(uuid.uuid4()),
        "delivery_key": integration["name"],
        "channel": "orders",
        "topic": "shipped",
        "created_at": created_at or utc_now(),
        "integration": integration,
        "content": content,
        "attempt": 0,
    }


def version_1(message: dict[str, Any]) -> dict[str, Any]:
    """Return the same delivery as a version 1 body, as the producer wrote them before version 2."""
    old = {key: value for key, value in message.items() if key not in ("delivery_key", "attempt")}
    return {**old, "v": 1}


def put_credentials(aws: AwsResources, name: str, secret: dict[str, str]) -> str:
    """Store credentials as the admin API does (a SecureString JSON object) and return their reference."""
    ref = f"{CREDENTIALS_PREFIX}/{name}"
    aws.ssm.put_parameter(Name=ref, Value=json.dumps(secret), Type="SecureString", Overwrite=True)
    return ref


def enqueue(aws: AwsResources, *messages: dict[str, Any] | str) -> list[str]:
    """Write the notification record of the well-formed messages, as the producer does, queue every body, and return
    their SQS message ids."""
    ids: list[str] = []
    for message in messages:
        if isinstance(message, dict):
            integration = message["integration"]
            key = message.get("delivery_key", integration["name"])
            get_ledger().record_notification(
                NotificationRecord(
                    notification_id=message["notification_id"],
                    source="publish",
                    channel=message["channel"],
                    topic=message["topic"],
                    created_at=message["created_at"],
                    caller="k1a2b3c4d5",
                    delivery_count=1,
                    deliveries=(Delivery(key=key, integration=integration["name"], type=integration["type"]),),
                )
            )
        body = message if isinstance(message, str) else json.dumps(message)
        ids.append(aws.sqs.send_message(QueueUrl=aws.delivery_queue_url, MessageBody=body)["MessageId"])
    return ids


def receive(aws: AwsResources, limit: int = 10, visibility_timeout: int | None = None) -> list[dict[str, Any]]:
    """Receive up to ``limit`` visible messages from the delivery queue, as the poller does.

    They stay hidden for the queue's visibility timeout, or for ``visibility_timeout`` seconds when given.
    """
    options: dict[str, Any] = {} if visibility_timeout is None else {"VisibilityTimeout": visibility_timeout}
    response = aws.sqs.receive_message(
        QueueUrl=aws.delivery_queue_url,
        MaxNumberOfMessages=limit,
        AttributeNames=["All"],
        WaitTimeSeconds=0,
        **options,
    )
    messages: list[dict[str, Any]] = response.get("Messages", [])
    return messages


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the event Lambda passes for received SQS messages, shaped like ``tests/events/sqs_event.json``."""
    template = load_event("sqs_event.json")["Records"][0]
    records = []
    for message in messages:
        record = copy.deepcopy(template)
        record.update(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "md5OfBody": message["MD5OfBody"],
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:notify-test-deliveries",
            }
        )
        record["attributes"].update({key: str(value) for key, value in message.get("Attributes", {}).items()})
        records.append(record)
    return {"Records": records}


def consume(messages: list[dict[str, Any]], aws: AwsResources | None = None) -> dict[str, Any]:
    """Call the consumer handler with an event of ``messages`` and return its answer.

    Given ``aws``, then delete the messages it did not report failed, as Lambda's event source mapping does; a handler
    that raises deletes nothing (the whole batch comes back after its visibility timeout).
    """
    from consumer.handler import handler

    result: dict[str, Any] = handler(sqs_event(messages), FakeLambdaContext())
    if aws is not None:
        failed = failed_ids(result)
        for message in messages:
            if message["MessageId"] not in failed:
                # Another poller may have received the message since (moto's ReceiveMessage can hand one message to
                # two pollers at once): the handle is stale, and the message comes back and is skipped as delivered.
                # Lambda's event source mapping does not fail on it either.
                with contextlib.suppress(aws.sqs.exceptions.ReceiptHandleIsInvalid):
                    aws.sqs.delete_message(QueueUrl=aws.delivery_queue_url, ReceiptHandle=message["ReceiptHandle"])
    return result


def consume_once(aws: AwsResources) -> dict[str, Any]:
    """Receive what is visible on the delivery queue, hand it to the consumer and delete what it did not fail.

    Something must be visible: Lambda makes no invocation for an empty receive.
    """
    messages = receive(aws)
    assert messages, "nothing visible on the delivery queue"
    return consume(messages, aws)


def failed_ids(result: dict[str, Any]) -> set[str]:
    """Return the message ids a batch response reports failed."""
    return {failure["itemIdentifier"] for failure in result["batchItemFailures"]}


def entry(message: dict[str, Any]) -> LedgerEntry:
    """Return the ledger row of a delivery message."""
    key = message.get("delivery_key", message["integration"]["name"])
    found = get_ledger().get_entry(message["notification_id"], key)
    assert found is not None
    return found


def is_final(status: DeliveryStatus | None) -> bool:
    """Whether a delivery's status will not change by itself any more."""
    return status in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.DEAD)


def statuses(messages: list[dict[str, Any]]) -> list[DeliveryStatus | None]:
    """Return the ledger status of each delivery message, ``None`` for one without a row yet."""
    ledger = get_ledger()
    found = [
        ledger.get_entry(message["notification_id"], message.get("delivery_key", message["integration"]["name"]))
        for message in messages
    ]
    return [row.status if row is not None else None for row in found]


@dataclass(frozen=True)
class Queued:
    """A message on a queue as moto holds it, received or not: its body, in how many seconds it can be received, and
    when (``due_at``, epoch seconds: bounds on it hold however long a test took to look; on ``due_in`` they do not)."""

    message_id: str
    body: dict[str, Any]
    due_in: float
    receive_count: int
    due_at: float = 0.0


def on_queue(queue_name: str = "notify-test-deliveries") -> list[Queued]:
    """Return every message of a queue from moto's own state, hidden and delayed ones too (no receive counted)."""
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[ACCOUNT][REGION].queues[queue_name]
    now = unix_time_millis()
    return [
        Queued(
            message_id=message.id,
            body=json.loads(message.body),
            due_in=float(max(message.visible_at, message.delayed_until) - now) / 1000,
            receive_count=message.approximate_receive_count,
            due_at=float(max(message.visible_at, message.delayed_until)) / 1000,
        )
        for message in list(queue._messages)
    ]


def dead_letters(aws: AwsResources) -> list[dict[str, Any]]:
    """Receive what the dead-letter queue holds, with its message attributes (hidden again for 30 s)."""
    response = aws.sqs.receive_message(
        QueueUrl=aws.dead_letter_queue_url,
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        VisibilityTimeout=30,
        WaitTimeSeconds=0,
    )
    messages: list[dict[str, Any]] = response.get("Messages", [])
    return messages


@dataclass
class PollerRun:
    """What a run of pollers did: invocations made, messages handed over, errors raised, and whether it finished."""

    invocations: int = 0
    records: int = 0
    finished: bool = False
    errors: list[BaseException] = field(default_factory=list)


class ProcessorPerThread:
    """Stands in for the handler's module-level batch processor with one per thread.

    Lambda runs concurrent invocations in separate containers, each with its own processor; pollers that are threads
    of one process must not share one.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._local = threading.local()

    def _own(self) -> Any:
        if not hasattr(self._local, "processor"):
            self._local.processor = self._make()
        return self._local.processor

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Enter a batch on this thread's processor."""
        return self._own()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._own(), name)


def poll(
    aws: AwsResources,
    done: Callable[[], bool],
    timeout: float,
    pollers: int = 2,
    batch: int = 10,
    idle_seconds: float = 0.05,
) -> PollerRun:
    """Play Lambda's SQS pollers until ``done()`` says so or ``timeout`` seconds have passed.

    Each poller receives up to ``batch`` messages, hands them to the handler and deletes those it did not report
    failed; pollers invoke the handler concurrently, as concurrent containers do. A poller that finds nothing waits
    ``idle_seconds`` (moto's long polling does not wake when a delayed message becomes visible; SQS's does).
    """
    from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType

    import consumer.handler

    run = PollerRun()
    stop = threading.Event()
    counts = threading.Lock()
    deadline = time.monotonic() + timeout

    def work() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                messages = receive(aws, batch)
                if not messages:
                    stop.wait(idle_seconds)
                    continue
                consume(messages, aws)
                with counts:
                    run.invocations += 1
                    run.records += len(messages)
            except BaseException as exc:
                # Handed to the test, which fails on it; the other pollers stop too.
                run.errors.append(exc)
                stop.set()

    shared = consumer.handler.processor
    consumer.handler.processor = ProcessorPerThread(  # type: ignore[assignment]
        lambda: AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    )
    threads = [threading.Thread(target=work, name=f"poller-{index}", daemon=True) for index in range(pollers)]
    try:
        for thread in threads:
            thread.start()
        while time.monotonic() < deadline and not stop.is_set():
            if done():
                run.finished = True
                break
            stop.wait(0.25)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=timeout)
        consumer.handler.processor = shared
    run.finished = run.finished or (not run.errors and done())
    return run
