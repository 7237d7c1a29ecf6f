"""The dead-letter queue seen by an administrator: what is there, and moving it back to the delivery queue.

SQS's own StartMessageMoveTask is not used, so the same code runs on moto and the local stack: messages are received
from the DLQ, sent to the delivery queue, and only then deleted from the DLQ (a failure in between leaves a copy
rather than losing one; the consumer skips a notification the ledger already says is delivered). A redriven delivery
starts a new run of attempts: the retry policy's budget and window start afresh at the redrive, while its history is
kept: the attempts of the runs before (``prior_attempts``) and how often it was redriven (``redriven``) travel in the
message, and its ledger row goes on counting from them.

Two ways lead here: the consumer moves a delivery whose retries are spent (with a ``last_error`` message attribute),
and SQS moves a message a consumer crashed on ``maxReceiveCount`` times (its ledger row holds the last error seen).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import Field, StrictInt, ValidationError

from api.handler import ADMIN_ERRORS, settings
from core.clients import get_client, get_ledger
from core.errors import AWS_ERRORS, UpstreamError, aws_error, error_code
from core.http import Response, RouteDoc, Router, json_response, parse_body
from core.ledger import ROW_ABSENT, DeliveryRow, LedgerEntry, RedriveClaim
from core.models import DeliveryMessage, DeliveryMessageV1, DeliveryStatus
from core.observability import logger
from core.ports import LedgerPort, RedriveLedgerPort
from core.times import utc_now
from core.validation import Reply, Strict

RECEIVE_LIMIT = 10
# Long enough to list or move a batch; a listing hands its messages back at once after reading them.
HOLD_SECONDS = 30
LIST_LIMIT = 100

# An empty receive while the queue still counts letters (held by a listing for the moment it reads them, or missed by a
# short poll, which samples SQS's servers) is tried once more with a long poll of this many seconds.
REDRIVE_WAIT_SECONDS = 2
# A receive (with that wait) of ten letters and their moves take well under this; the api function's timeout is 10 s.
REDRIVE_MARGIN_SECONDS = 4.0


class RedriveRequest(Strict):
    """Body of ``POST /v1/dead-letters/redrive``; all optional."""

    max_messages: StrictInt = Field(default=100, ge=1, le=1000)


class DeadLetterView(Reply):
    """One message of the dead-letter queue as the listing shows it."""

    notification_id: str | None
    delivery_key: str | None
    integration: str | None
    type: str | None
    last_error: str | None
    receive_count: int
    message_id: str


class DeadLettersResponse(Reply):
    """Body of ``GET /v1/dead-letters``: up to 100 letters, and ``more`` when the queue may hold others."""

    messages: list[DeadLetterView]
    more: bool = False


class RedriveResponse(Reply):
    """Body of ``POST /v1/dead-letters/redrive``: how many messages went back, and whether the function's time ran
    out first (``more``: call it again for the rest)."""

    redriven: int
    more: bool = False


@dataclass(frozen=True)
class _Letter:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_at_ms: int
    notification_id: str | None
    delivery_key: str | None
    integration: str | None
    type: str | None
    last_error: str | None


def _letter(message: dict[str, Any]) -> _Letter:
    body = message["Body"]
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: a body nested deeper than the parser goes
        data = None
    fields: dict[str, Any] = data if isinstance(data, dict) else {}
    integration: dict[str, Any] = fields["integration"] if isinstance(fields.get("integration"), dict) else {}

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    attribute = (message.get("MessageAttributes") or {}).get("last_error") or {}
    return _Letter(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=body,
        receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", "0")),
        sent_at_ms=int(message.get("Attributes", {}).get("SentTimestamp", "0")),
        notification_id=text(fields.get("notification_id")),
        # Version 1 bodies have no delivery key: theirs is the integration name.
        delivery_key=text(fields.get("delivery_key")) or text(integration.get("name")),
        integration=text(integration.get("name")),
        type=text(integration.get("type")),
        last_error=text(attribute.get("StringValue")),
    )


def revived(body: str, now: str, recorded_attempts: int = 0) -> DeliveryMessage | None:
    """Return the message a dead letter goes back as, or ``None`` when its body is none (it goes back unchanged).

    The new run has no attempt made and no due time, and its retry window opens ``now``. The runs before are kept:
    ``prior_attempts`` adds the body's attempts (or the ledger's ``recorded_attempts`` when it counted more: a message
    SQS moved after a consumer crashed on it carries the count of its last copy only), ``redriven`` grows by one. Both
    follow from the body, so a letter redriven twice (its delete from the DLQ failed) goes back the same. A version 1
    body goes back as version 2, which can carry them.

    A record-only copy (``outcome``: it writes an outcome its run had, and sends nothing) starts no run: it goes back
    as it is, due at once, and writes its row only while no newer run has.
    """
    try:
        version = json.loads(body).get("v")
    except (ValueError, AttributeError, RecursionError):
        return None
    try:
        if version == 1:
            message = DeliveryMessageV1.model_validate_json(body).upgraded(0)
        else:
            message = DeliveryMessage.model_validate_json(body)
    except ValidationError:
        return None
    if message.outcome is not None:
        return message.model_copy(update={"not_before": None})
    return message.model_copy(
        update={
            "attempt": 0,
            "not_before": None,
            "slot_reserved": False,
            "slot_partial": False,
            "window_start": now,
            # The deletion check of an audience delivery keeps comparing with when its audience was read.
            "expanded_at": message.audience_read_at if message.recipient is not None else None,
            "prior_attempts": max(message.prior_attempts + message.attempt, recorded_attempts),
            "redriven": message.redriven + 1,
            "throttled": 0,
        }
    )


def _receive(sqs: Any, queue_url: str, count: int, wait: int = 0) -> list[_Letter]:
    try:
        response = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(RECEIVE_LIMIT, count),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            VisibilityTimeout=HOLD_SECONDS,
            WaitTimeSeconds=wait,
        )
    except AWS_ERRORS as exc:
        raise aws_error(exc, "reading the dead-letter queue") from exc
    return [_letter(message) for message in response.get("Messages", [])]


def _counts_letters(sqs: Any, queue_url: str, held: bool = True) -> bool:
    """Whether SQS counts any message in the queue, visible (or, with ``held``, held by a receive)."""
    names = ["ApproximateNumberOfMessages", *(["ApproximateNumberOfMessagesNotVisible"] if held else [])]
    try:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    except AWS_ERRORS as exc:
        raise aws_error(exc, "reading the dead-letter queue") from exc
    return any(int(attributes.get(name, "0")) for name in names)


def _release(sqs: Any, queue_url: str, letters: list[_Letter]) -> None:
    """Make messages visible again at once."""
    for start in range(0, len(letters), RECEIVE_LIMIT):
        chunk = letters[start : start + RECEIVE_LIMIT]
        entries = [
            {"Id": str(index), "ReceiptHandle": letter.receipt_handle, "VisibilityTimeout": 0}
            for index, letter in enumerate(chunk)
        ]
        try:
            sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
        except AWS_ERRORS as exc:
            # They come back by themselves after HOLD_SECONDS; the listing is still right.
            logger.warning("could not release listed dead letters", extra={"error": error_code(exc)})


def list_dead_letters(sqs: Any, dlq_url: str, ledger: LedgerPort, limit: int = LIST_LIMIT) -> dict[str, Any]:
    """Return up to ``limit`` messages of the dead-letter queue with their ledger's last error, leaving them there;
    ``more`` when the queue may hold others (the limit reached). An empty receive while SQS counts visible letters
    (a short poll samples SQS's servers, and may find none) is tried once more with a long poll."""
    letters: dict[str, _Letter] = {}
    waited = False
    while len(letters) < limit:
        batch = [letter for letter in _receive(sqs, dlq_url, limit - len(letters)) if letter.message_id not in letters]
        if not batch and not waited and _counts_letters(sqs, dlq_url, held=False):
            waited = True
            batch = [
                letter
                for letter in _receive(sqs, dlq_url, limit - len(letters), REDRIVE_WAIT_SECONDS)
                if letter.message_id not in letters
            ]
        if not batch:
            break
        letters.update((letter.message_id, letter) for letter in batch)
    _release(sqs, dlq_url, list(letters.values()))
    messages = []
    for letter in letters.values():
        last_error = letter.last_error
        if last_error is None and letter.notification_id and letter.delivery_key:
            entry = ledger.get_entry(letter.notification_id, letter.delivery_key)
            last_error = entry.last_error if entry else None
        messages.append(
            {
                "notification_id": letter.notification_id,
                "delivery_key": letter.delivery_key,
                "integration": letter.integration,
                "type": letter.type,
                "last_error": last_error,
                # SQS counted this listing's own receive too.
                "receive_count": max(0, letter.receive_count - 1),
                "message_id": letter.message_id,
            }
        )
    return {"messages": messages, "more": len(letters) >= limit}


def _row(message: DeliveryMessage) -> DeliveryRow:
    recipient = message.recipient.model_dump(exclude_none=True) if message.recipient else None
    return DeliveryRow(message.integration.name, message.integration.type.value, recipient)


class _Fate(Enum):
    """What became of one dead letter in a redrive."""

    SENT = "sent"  # sent back as a new run, then deleted
    DELETED = "deleted"  # a copy of a run redriven already: deleted unsent
    LEFT = "left"  # another call is sending its run back: left in the DLQ, for a later call to judge


def _send_back(sqs: Any, queue_url: str, ledger: RedriveLedgerPort, letter: _Letter) -> _Fate:
    """Send one dead letter to the delivery queue as a new run; its ledger row says ``queued``, its history kept.
    A letter whose run was redriven already is only deleted; one whose run another call is sending back is left."""
    entry = None
    if letter.notification_id and letter.delivery_key:
        entry = ledger.get_entry(letter.notification_id, letter.delivery_key)
    message = revived(letter.body, utc_now(), entry.attempts if entry is not None else 0)
    if message is not None and message.outcome is None and entry is not None:
        # Claimed before the send: two calls at once, each holding a letter of the same run, both found the row not
        # redriven yet. (A record-only copy starts no run, and keeps its count.)
        claim = ledger.claim_redrive(message.notification_id, message.delivery_key, message.redriven, letter.message_id)
        if claim is RedriveClaim.REDRIVEN:
            # The letter is a second copy of a run redriven already (a redrive whose delete from the DLQ failed, then
            # was asked again), or older still. Sent again, it would run beside the run it started.
            logger.info(
                "dead letter redriven before: deleted, not sent again",
                extra={"notification_id": letter.notification_id, "delivery_key": letter.delivery_key},
            )
            return _Fate.DELETED
        if claim is RedriveClaim.HELD:
            logger.info(
                "dead letter's run is being redriven by another call: left for later",
                extra={"notification_id": letter.notification_id, "delivery_key": letter.delivery_key},
            )
            return _Fate.LEFT
    body = message.model_dump_json(exclude_none=True) if message is not None else letter.body
    try:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    except AWS_ERRORS as exc:
        raise aws_error(exc, "sending to the delivery queue") from exc
    notification_id, delivery_key = letter.notification_id, letter.delivery_key
    if not (notification_id and delivery_key):
        return _Fate.SENT
    if message is not None and message.outcome is not None:
        return _Fate.SENT  # a record-only copy writes its row itself, and only while its run is the row's
    try:
        _mark_queued(ledger, notification_id, delivery_key, letter, message, entry)
    except UpstreamError as exc:
        # The copy is on its way, and its run writes the row: raising here would keep the letter, and the redrive a
        # caller retries (a 502 invites it) would send a second copy of the same run.
        logger.warning(
            "redriven letter's row not marked queued",
            extra={"notification_id": notification_id, "delivery_key": delivery_key, "reason": str(exc)},
        )
    return _Fate.SENT


def _mark_queued(
    ledger: LedgerPort,
    notification_id: str,
    delivery_key: str,
    letter: _Letter,
    message: DeliveryMessage | None,
    entry: LedgerEntry | None,
) -> None:
    """Write a redriven letter's row ``queued``: a new run, its count of attempts and redrives kept. ``entry``: the
    row as it was read before the letter was sent."""
    if message is not None:
        # After the send: the new run may have begun, even ended; it wrote its own count, and the row is left to it.
        ledger.update(
            notification_id,
            delivery_key,
            DeliveryStatus.QUEUED,
            row=_row(message),
            attempts=message.prior_attempts,
            redriven=message.redriven,
            before_run=message.redriven,
        )
    else:
        # A letter this code cannot read (a newer producer's, mid-deploy) carries no run to guard the write with: it is
        # written only while the row is the one read before the send. The consumer may have taken the copy and buried
        # it again meanwhile (its row ``dead``, the letter back in the dead-letter queue): ``queued`` must not land
        # over that, and erase its reason.
        row = DeliveryRow(letter.integration, letter.type) if letter.integration and letter.type else None
        was = entry.updated_at if entry is not None else ROW_ABSENT
        ledger.update(notification_id, delivery_key, DeliveryStatus.QUEUED, row=row, unchanged_since=was)
    # The new run opens a retry window now: the record, its TTL set at publish, is kept as long as the row.
    ledger.keep_record(notification_id, time.time())


def redrive(
    sqs: Any,
    dlq_url: str,
    queue_url: str,
    ledger: RedriveLedgerPort,
    max_messages: int,
    time_left: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Move up to ``max_messages`` dead letters to the delivery queue; their ledger rows say ``queued`` again.

    A row keeps its count of attempts and counts the redrive; its next attempt is the new run's first. With
    ``time_left`` (seconds), it stops between receives when fewer than ``REDRIVE_MARGIN_SECONDS`` are left, so a
    large queue is never cut off by the function's timeout in the middle of a message: ``more`` says so. An empty
    receive ends it only once a long poll finds nothing either, or SQS counts no letter: a listing holds the letters it
    reads for a moment, and the redrive must not miss them.

    Each letter is redriven once a call: a letter that reached the dead-letter queue after the call began (sent there
    since, or of a delivery this call redrove already: the consumer buried it again meanwhile) is left there, held
    until the call ends, and the next call takes it. So is a letter of a run another call is sending back: that call's
    claim on the delivery's row (``claim_redrive``) tells the next call it is a copy.
    """
    moved = 0
    started_ms = int(time.time() * 1000)
    redriven: set[tuple[str, str]] = set()
    later: list[_Letter] = []
    unprocessed: list[_Letter] = []

    def short_of(seconds: float) -> bool:
        return time_left is not None and time_left() < seconds

    def since(letter: _Letter) -> bool:
        key = (letter.notification_id, letter.delivery_key)
        return letter.sent_at_ms > started_ms or (None not in key and key in redriven)

    def run() -> bool:
        """Redrive until done; return whether the time ran out first."""
        nonlocal moved
        while moved < max_messages:
            if short_of(REDRIVE_MARGIN_SECONDS):
                return True
            letters = _receive(sqs, dlq_url, max_messages - moved)
            if not letters and _counts_letters(sqs, dlq_url):
                if short_of(REDRIVE_MARGIN_SECONDS + REDRIVE_WAIT_SECONDS):
                    return True
                letters = _receive(sqs, dlq_url, max_messages - moved, REDRIVE_WAIT_SECONDS)
            if not letters:
                return False
            unprocessed[:] = letters
            for letter in letters:
                # Checked for each letter: under load, ten of them can take longer than the margin.
                if short_of(REDRIVE_MARGIN_SECONDS):
                    return True
                unprocessed.pop(0)
                if since(letter):
                    later.append(letter)  # held by this receive (HOLD_SECONDS) so that the call does not read it again
                    continue
                unprocessed.insert(0, letter)  # until it is deleted: a failure shows it again
                fate = _send_back(sqs, queue_url, ledger, letter)
                if fate is _Fate.LEFT:
                    unprocessed.pop(0)
                    later.append(letter)
                    continue
                # Only a letter sent back marks its delivery: an older copy of its run, deleted unsent, must not hold
                # back the letter that is the delivery's now.
                if fate is _Fate.SENT and letter.notification_id and letter.delivery_key:
                    redriven.add((letter.notification_id, letter.delivery_key))
                try:
                    sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=letter.receipt_handle)
                except AWS_ERRORS as exc:
                    raise aws_error(exc, "deleting from the dead-letter queue") from exc
                unprocessed.pop(0)
                moved += 1
                logger.info(
                    "dead letter redriven",
                    extra={"notification_id": letter.notification_id, "integration": letter.integration},
                )
        return False

    try:
        more = run()
    finally:
        # Whatever ended the call (a failure too), the letters it held or did not get to show again at once, for the
        # next call (one sent whose delete failed is known by its row's count of redrives, and not sent twice).
        _release(sqs, dlq_url, later + unprocessed)
    return {"redriven": moved, "more": more}


# --- routes: served by the management API function (api/handler.py), which imports this module at their first request

router = Router()


@router.get("/v1/dead-letters", RouteDoc({200: DeadLettersResponse}, errors=ADMIN_ERRORS, security="admin"))
def get_dead_letters() -> Response:
    """List what is in the dead-letter queue, leaving it there."""
    config = settings()
    sqs = get_client("sqs", config.aws_region)
    return json_response(200, list_dead_letters(sqs, config.dead_letter_queue_url, get_ledger(config)))


@router.post(
    "/v1/dead-letters/redrive",
    RouteDoc(
        {200: RedriveResponse},
        errors=(400, 413, 422, *ADMIN_ERRORS),
        security="admin",
        request=RedriveRequest,
        request_required=False,
    ),
)
def redrive_dead_letters() -> Response:
    """Move dead letters back to the delivery queue; their ledger rows say ``queued`` again."""
    body = router.current_event.decoded_body
    request = parse_body(body, RedriveRequest) if body and body.strip() else RedriveRequest()
    config = settings()
    moved = redrive(
        get_client("sqs", config.aws_region),
        config.dead_letter_queue_url,
        config.delivery_queue_url,
        get_ledger(config),
        request.max_messages,
        time_left=router.time_left(),
    )
    return json_response(200, moved)
