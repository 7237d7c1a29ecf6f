"""Stripe webhooks: the route's signature check and enqueue, and the payment worker's handling of queued events.

The route (``receive_webhook``) checks ``Stripe-Signature`` with the endpoint secret and Stripe's tolerance before
anything else, with the stripe SDK's ``Webhook.construct_event`` on the body exactly as received; only a verified
event goes on the webhook queue, and only its envelope (``queued_event``: id, type, created, livemode, api_version and
the id and kind of its object): the worker reads no more, an event's object may carry a secret (the ``client_secret``
of a PaymentIntent or a Checkout Session) that no queue message may hold, and a real event may be larger than a queue
message.

The worker (``process_webhook_event``) handles ``payment_intent.succeeded``, ``checkout.session.completed`` and
``checkout.session.async_payment_succeeded``; other types are acknowledged and ignored. It never trusts the event's
copy of an object: it retrieves the PaymentIntent (and the Checkout Session) from Stripe, records the payment once per
Stripe event id, and publishes one Purchase event per payment:

- one payment per PaymentIntent: the payment id (the intent's ``metadata.payment_id``, else its id) is the one the
  intent had when it was first recorded (``core.purchases.payments``). Its metadata is read fresh from Stripe for
  every event, and a shop's backend may tag the intent with its order number after the payment: keyed on the new id, a
  replayed event or the payment's other event would publish a second Purchase event, credited and notified again.
- publish, then mark: a crash between the two publishes the Purchase event again on the message's retry, so a
  payment's Purchase event is published twice at most; its subscribers are idempotent on ``purchase_id``.
- a promo code comes from the PaymentIntent's ``metadata.promo_code``, else from the Checkout Session's discounts
  (their promotion codes) or its ``metadata.promo_code``. For ``payment_intent.succeeded``, the session is looked up
  by the intent (``checkout_session_for_intent``): Stripe sends that event and ``checkout.session.completed`` at
  nearly the same time, and whichever is handled first publishes, so the intent's event must publish a Checkout's
  purchase as the session's would: with the code its discounts carry, and the user and email of its metadata (an
  intent with a code of its own too).
- the Purchase event's ``purchased_at`` is when the customer paid: the time of the intent's charge (``_paid_at``),
  not the intent's creation, which a Payment Element makes when the checkout page loads; the credit checks a
  promotion's expiry against it.
- a payment whose PaymentIntent names no customer is recorded with status ``no_customer`` and not published (a
  Purchase event needs ``customer_id``: nothing could be credited); a later event of the payment naming one publishes.
- Stripe unavailable, DynamoDB or SNS failing: the error propagates and the queue retries the message (DLQ after 5
  receives). So does Stripe refusing to return the event's own PaymentIntent or Checkout Session
  (``StripeEventObjectRefusedError``): the event is verified, so the refusal is a wrong key or request of ours, and the
  event must wait in the alarmed DLQ for the fix rather than be lost. A body that is not a Stripe event is logged and
  dropped.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import AWS_ERRORS, UpstreamError, aws_error, error_code, invalid_fields
from core.observability import logger
from core.purchases.errors import (
    PermanentPurchaseError,
    PublicationBusyError,
    StripeEventObjectRefusedError,
    StripeSignatureError,
)
from core.purchases.models import ID_PATTERN, PROMO_CODE_PATTERN, PaymentRecord, PurchaseEvent
from core.purchases.payments import Payment, PaymentStorePort, PaymentWrite
from core.purchases.ports import CheckoutSessionView, PaymentIntentView, PurchasePublisherPort, StripeGateway

SIGNATURE_HEADER = "Stripe-Signature"
# A Unix time in seconds: ten digits until 2286; more would only feed ``int`` a number it may refuse to read.
_TIMESTAMP = re.compile(r"[0-9]{1,10}")
# Stripe's v1 scheme: the hex HMAC-SHA256 of "<t>.<body>".
_V1_SIGNATURE = re.compile(r"[0-9a-f]{64}")
PAYMENT_INTENT_SUCCEEDED = "payment_intent.succeeded"
CHECKOUT_SESSION_COMPLETED = "checkout.session.completed"
# A Checkout paid with a delayed method (bank debits) completes unpaid; this event tells when it is paid.
CHECKOUT_SESSION_ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
HANDLED_TYPES = (PAYMENT_INTENT_SUCCEEDED, CHECKOUT_SESSION_COMPLETED, CHECKOUT_SESSION_ASYNC_SUCCEEDED)
EVENT_TYPE_ATTRIBUTE = "stripe_event_type"
EVENT_ID_ATTRIBUTE = "stripe_event_id"
_MAX_USER_ID = 256
_MAX_EMAIL = 320
_PROMO_CODE = re.compile(PROMO_CODE_PATTERN)
_ID = re.compile(ID_PATTERN)


class StripeObjectRef(BaseModel):
    """The object a Stripe event is about, by id (and its kind, ``payment_intent``…).

    The id is required of the handled types only (``verify_event``): some objects have none (the Balance of
    ``balance.available``), and a signed event of a type not handled is acknowledged whatever its object.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    id: str | None = Field(default=None, min_length=1, max_length=255)
    object: str | None = Field(default=None, max_length=100)


class StripeEventData(BaseModel):
    """A Stripe event's ``data``."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    object: StripeObjectRef


class StripeEventEnvelope(BaseModel):
    """What is queued of a Stripe event, and all the worker reads: its id, type, time, mode and API version, and its
    object's id and kind (never the object's copy, which may hold a secret)."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    id: str = Field(pattern=r"^evt_[A-Za-z0-9_]{1,255}$")
    type: str = Field(pattern=r"^[a-z0-9_.]{1,100}$")
    created: int | None = None
    livemode: bool | None = None
    api_version: str | None = Field(default=None, max_length=100)
    data: StripeEventData


@dataclass(frozen=True)
class VerifiedEvent:
    """A Stripe event whose signature was verified: its id and type, and the queue message's body (its envelope)."""

    event_id: str
    event_type: str
    queued: str = field(default="", compare=False, repr=False)

    @property
    def handled(self) -> bool:
        """Whether the worker handles the event's type: only those are queued, the others acknowledged."""
        return self.event_type in HANDLED_TYPES


@runtime_checkable
class WebhookQueuePort(Protocol):
    """The queue verified Stripe events wait in for the payment worker."""

    def send(self, payload: str, event: VerifiedEvent) -> str:
        """Enqueue a verified event's envelope (``payload``); return the SQS message id. Raise ``UpstreamError``."""
        ...


class WebhookQueue:
    """Sends verified Stripe events to the webhook queue; implements ``WebhookQueuePort``.

    Parameters
    ----------
    client:
        A boto3 SQS client.
    queue_url:
        The webhook queue's URL.
    """

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def send(self, payload: str, event: VerifiedEvent) -> str:
        """Enqueue the event's envelope with its type and id as message attributes."""
        try:
            answer = self._client.send_message(
                QueueUrl=self._url,
                MessageBody=payload,
                MessageAttributes={
                    EVENT_TYPE_ATTRIBUTE: {"DataType": "String", "StringValue": event.event_type},
                    EVENT_ID_ATTRIBUTE: {"DataType": "String", "StringValue": event.event_id},
                },
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "enqueuing the Stripe event") from exc
        return str(answer["MessageId"])


class WebhookSecret:
    """The webhook endpoint's signing secret, read from an SSM SecureString (cached ``max_age``).

    Parameters
    ----------
    provider:
        A ``core.secrets.SecureParameters``.
    parameter:
        The parameter's name.
    max_age:
        Seconds a value is reused, so a rolled secret takes effect within that time.
    """

    def __init__(self, provider: Any, parameter: str, max_age: int) -> None:
        self._provider = provider
        self._parameter = parameter
        self._max_age = max_age

    def __repr__(self) -> str:
        return f"WebhookSecret(parameter={self._parameter!r})"

    def get(self) -> str:
        """Return the secret; raise ``UpstreamError`` (a 502, so Stripe retries) when it cannot be read."""
        try:
            value = self._provider.get(self._parameter, decrypt=True, max_age=self._max_age)
        except AWS_ERRORS as exc:
            raise UpstreamError(f"reading the Stripe webhook secret failed ({error_code(exc)})") from None
        if not isinstance(value, str) or not value.strip():
            raise UpstreamError("the Stripe webhook secret is empty")
        # Stored from a file (``--value file://whsec.txt``) it may end in a newline, which would be part of the HMAC's
        # key and refuse every genuine webhook; Stripe's secrets hold no whitespace, as with the API key.
        return value.strip()


def webhook_payload(body: str | None, base64_encoded: bool) -> str:
    """Return the request body as Stripe signed it: the UTF-8 text, decoded from base64 when API Gateway encoded it."""
    if not body:
        return ""
    if not base64_encoded:
        return body
    try:
        # ValueError: binascii.Error, and what b64decode raises for a text holding non-ASCII characters.
        data = base64.b64decode(body, validate=True)
    except ValueError:
        raise StripeSignatureError("the body is not valid base64") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise StripeSignatureError("the body is not UTF-8 text, which Stripe signs") from None


def _signature_timestamp(signature: str | None) -> int:
    """Return the timestamp of a ``Stripe-Signature`` header (``t=<unix time>,v1=<64 hex>[,…]``), refusing others.

    Patterns, not ``str.isdigit`` and ``int``: those take digits of any script (``²``) and numbers of any length,
    which ``int`` then refuses with an error no caller expects.
    """
    if not signature or not signature.strip():
        raise StripeSignatureError(f"{SIGNATURE_HEADER} header is missing")
    if not signature.isascii():
        raise StripeSignatureError(f"{SIGNATURE_HEADER} header is malformed: it is not ASCII")
    pairs = [item.split("=", 1) for item in signature.split(",")]
    fields = [(pair[0].strip(), pair[1].strip()) for pair in pairs if len(pair) == 2]
    timestamps = [value for key, value in fields if key == "t"]
    signatures = [value for key, value in fields if key == "v1"]
    if (
        len(timestamps) != 1
        or not _TIMESTAMP.fullmatch(timestamps[0])
        or not signatures
        or not all(_V1_SIGNATURE.fullmatch(value) for value in signatures)
    ):
        raise StripeSignatureError(f"{SIGNATURE_HEADER} header is malformed: expected t=<timestamp>,v1=<signature>")
    return int(timestamps[0])


def verify_event(
    payload: str, signature: str | None, secret: Callable[[], str], tolerance: int, now: Callable[[], float]
) -> VerifiedEvent:
    """Verify a webhook with the stripe SDK (``Webhook.construct_event``); raise ``StripeSignatureError`` naming what
    was wrong: no header, a malformed one, a timestamp outside ``tolerance`` seconds, a signature that does not match,
    or a body that is not a Stripe event. The secret is read only for a well-formed header."""
    timestamp = _signature_timestamp(signature)
    import stripe  # loaded here: the route's only use of the SDK, so nothing else pays for its import

    try:
        stripe.Webhook.construct_event(payload, signature, secret(), tolerance=tolerance)
    except stripe.SignatureVerificationError:
        # The SDK checks the signature, then the age; a stale timestamp is named as such whatever the signature.
        if timestamp < now() - tolerance:
            raise StripeSignatureError(
                f"{SIGNATURE_HEADER} timestamp is outside the tolerance of {tolerance} s"
            ) from None
        raise StripeSignatureError(f"{SIGNATURE_HEADER} does not match the body and the endpoint secret") from None
    except (ValueError, TypeError, AttributeError, RecursionError):
        # RecursionError: the SDK's json.loads of a signed body nested past the parser's depth.
        raise StripeSignatureError("the body is not a Stripe event (JSON object)") from None
    try:
        envelope = StripeEventEnvelope.model_validate_json(payload)
    except ValidationError as exc:
        raise StripeSignatureError(f"the body is not a Stripe event ({invalid_fields(exc, 'body')})") from None
    if envelope.type in HANDLED_TYPES and envelope.data.object.id is None:
        raise StripeSignatureError("the body is not a Stripe event (data.object.id)")
    return VerifiedEvent(envelope.id, envelope.type, queued_event(envelope))


def queued_event(envelope: StripeEventEnvelope) -> str:
    """Return the queue message of a verified event: its envelope's JSON, which ``process_webhook_event`` reads."""
    return envelope.model_dump_json()


def receive_webhook(
    payload: str,
    signature: str | None,
    secret: Callable[[], str],
    tolerance: int,
    queue: WebhookQueuePort,
    now: Callable[[], float],
) -> VerifiedEvent:
    """Verify a Stripe webhook, then enqueue its envelope; nothing is enqueued unless it is verified, nor an event of
    a type the worker does not handle (acknowledged: a refusal would have Stripe retry it for days and disable the
    endpoint).

    The envelope is bounded (its fields' limits make it under 1 KiB), so any event Stripe sends fits in a message.
    """
    event = verify_event(payload, signature, secret, tolerance, now)
    if event.handled:
        queue.send(event.queued, event)
    return event


class WebhookOutcome(StrEnum):
    """What the worker did with a queued Stripe event; each is a metric of the payment worker."""

    PUBLISHED = "published"  # the payment is recorded and its Purchase event published by this attempt
    DUPLICATE = "duplicate"  # the Purchase event was published already
    NO_CUSTOMER = "no_customer"  # recorded; the PaymentIntent names no customer, so no Purchase event
    INVALID = "invalid"  # recorded; its facts make no valid Purchase event (logged with the fields)
    UNPAID = "unpaid"  # the PaymentIntent has not succeeded, or the session has none: nothing to record
    IGNORED = "ignored"  # an event type the worker does not handle
    MALFORMED = "malformed"  # not a Stripe event: dropped


@dataclass(frozen=True)
class WebhookResult:
    """The outcome of one Stripe event; ``mark_failed`` tells that the publication could not be recorded after it."""

    outcome: WebhookOutcome
    payment_id: str | None = None
    mark_failed: bool = False


@dataclass(frozen=True)
class _Purchase:
    payment: Payment
    intent: PaymentIntentView
    metadata: Mapping[str, str]


def _promo_code(*candidates: str | None) -> str | None:
    for candidate in candidates:
        code = (candidate or "").strip()
        if not code:
            continue
        if _PROMO_CODE.fullmatch(code):
            return code.upper()
        logger.warning("promo code of a payment is not a valid code: left out")
    return None


def _payment_id(intent: PaymentIntentView) -> str:
    given = (intent.metadata.get("payment_id") or "").strip()
    if _ID.fullmatch(given):
        return given
    if given:
        logger.warning(
            "metadata.payment_id is not a valid id: the PaymentIntent id is used", extra={"intent": intent.id}
        )
    return intent.id


def _purchase(intent: PaymentIntentView, session: CheckoutSessionView | None) -> _Purchase:
    session_metadata: Mapping[str, str] = session.metadata if session else {}
    promo = _promo_code(
        intent.metadata.get("promo_code"),
        *(session.promo_codes if session else ()),
        session_metadata.get("promo_code"),
    )
    payment = Payment(
        payment_id=_payment_id(intent),
        payment_intent=intent.id,
        # What the customer paid: a partial capture takes less than was authorised (``amount``).
        amount=intent.amount if intent.amount_received is None else intent.amount_received,
        currency=intent.currency.lower(),
        customer_id=intent.customer_id or (session.customer_id if session else None),
        promo_code=promo,
    )
    return _Purchase(payment, intent, {**session_metadata, **intent.metadata})


def _retrieve(envelope: StripeEventEnvelope, object_id: str, gateway: StripeGateway) -> _Purchase | None:
    """Retrieve what the event is about (``object_id``) from Stripe; ``None`` when there is no succeeded payment to
    record."""
    session: CheckoutSessionView | None = None
    intent_id: str | None = object_id
    if envelope.type != PAYMENT_INTENT_SUCCEEDED:
        session = gateway.checkout_session(object_id)
        intent_id = session.payment_intent
    if intent_id is None:
        logger.info("checkout session has no PaymentIntent: nothing to record", extra={"event_type": envelope.type})
        return None
    intent = gateway.payment_intent(intent_id)
    if intent.status != "succeeded":
        logger.info(
            "PaymentIntent has not succeeded: nothing to record",
            extra={"event_type": envelope.type, "intent": intent.id, "status": intent.status},
        )
        return None
    if intent.amount > 0 and intent.amount_refunded >= intent.amount:
        # Refunded in full before its event was handled (a backlog, a redrive, Stripe sending it again): published,
        # it would still earn its promo credit.
        logger.warning(
            "PaymentIntent refunded in full before it was recorded: nothing published",
            extra={"event_type": envelope.type, "intent": intent.id},
        )
        return None
    if session is None:
        session = _session_of(intent, gateway)
    return _purchase(intent, session)


def _session_of(intent: PaymentIntentView, gateway: StripeGateway) -> CheckoutSessionView | None:
    """The Checkout Session that made ``intent``, for its promo code and metadata; ``None`` when there is none or Stripe
    refuses.

    ``StripeUnavailableError`` propagates: the message is retried rather than published without a code the session
    may hold. A refusal would be refused again on every retry, and the payment itself is known: it is published
    without the session (an error is logged).
    """
    try:
        return gateway.checkout_session_for_intent(intent.id)
    except PermanentPurchaseError as exc:
        logger.error(
            "Checkout Session lookup refused: the payment is published without its promo code",
            extra={"intent": intent.id, "reason": exc.reason},
        )
        return None


def _paid_at(intent: PaymentIntentView, event_created: int | None) -> datetime:
    """When the purchase was made: its charge's time; without the charge, the event's (Stripe sends it when the
    payment succeeds); without either, the intent's creation.

    Never the intent's creation when better is known: a Payment Element makes the intent when the checkout page loads,
    maybe long before the customer pays, and the credit checks the promotion's expiry against this time.
    """
    moment = intent.charge_created or event_created or intent.created
    return datetime.fromtimestamp(moment, UTC)


def _purchase_event(record: PaymentRecord, purchase: _Purchase, event_created: int | None) -> PurchaseEvent | None:
    metadata = purchase.metadata
    user_id = (metadata.get("user_id") or "").strip()
    email = (metadata.get("email") or "").strip()
    try:
        return PurchaseEvent(
            purchase_id=record.payment_id,
            customer_id=record.customer_id or "",
            user_id=user_id if 0 < len(user_id) <= _MAX_USER_ID else None,
            email=email if 0 < len(email) <= _MAX_EMAIL else None,
            amount=record.amount,
            currency=record.currency,
            promo_code=record.promo_code,
            purchased_at=_paid_at(purchase.intent, event_created),
        )
    except ValidationError as exc:
        logger.error(
            "payment makes no valid Purchase event: not published",
            extra={"payment_id": record.payment_id, "fields": invalid_fields(exc, "purchase")},
        )
        return None


def _release(payments: PaymentStorePort, payment_id: str, claimant: str) -> None:
    """Release the claim of an attempt whose publish failed, so that its retry need not wait for the lease to end;
    a failure to is logged (the lease ends on its own)."""
    try:
        payments.release_publication(payment_id, claimant)
    except UpstreamError as exc:
        logger.warning("publication claim not released: it lapses", extra={"error": str(exc)})


def _log_write(write: PaymentWrite, payment: Payment) -> None:
    """Log what the store kept of the payment when it differs from what this event told."""
    record = write.record
    logger.append_keys(payment_id=record.payment_id)
    if record.payment_intent != payment.payment_intent:
        logger.warning("payment_id is used by another PaymentIntent: the first one's facts are kept")
    if record.payment_id != payment.payment_id:
        logger.info(
            "PaymentIntent's payment_id changed since it was first recorded: the first one is kept",
            extra={"metadata_payment_id": payment.payment_id},
        )
    if not write.recorded:
        logger.info("Stripe event was recorded before: nothing recorded again")


def process_webhook_event(
    body: str, gateway: StripeGateway, payments: PaymentStorePort, publisher: PurchasePublisherPort
) -> WebhookResult:
    """Handle one queued Stripe event: record its payment once and publish the payment's Purchase event once.

    Raises
    ------
    StripeUnavailableError
        Stripe could not answer now; the message is retried.
    StripeEventObjectRefusedError
        Stripe refused to return the event's own object (a ``StripeUnavailableError``); the message is retried, then
        parked in the alarmed DLQ.
    UpstreamError
        DynamoDB or SNS failed; the message is retried.
    """
    try:
        envelope = StripeEventEnvelope.model_validate_json(body)
    except ValidationError as exc:
        logger.error("queued Stripe event is malformed: dropped", extra={"fields": invalid_fields(exc, "event")})
        return WebhookResult(WebhookOutcome.MALFORMED)
    if envelope.type not in HANDLED_TYPES:
        logger.info("Stripe event type not handled: ignored", extra={"event_type": envelope.type})
        return WebhookResult(WebhookOutcome.IGNORED)
    object_id = envelope.data.object.id
    if object_id is None:
        logger.error("queued Stripe event is malformed: dropped", extra={"fields": "data.object.id"})
        return WebhookResult(WebhookOutcome.MALFORMED)
    logger.append_keys(stripe_event_id=envelope.id, stripe_event_type=envelope.type)
    try:
        purchase = _retrieve(envelope, object_id, gateway)
    except PermanentPurchaseError as exc:
        # Stripe answered 2xx to its own signed event's delivery and will not send it again: acknowledging the refusal
        # would lose the payment, so it waits in the DLQ (alarmed) until the key or request is fixed.
        logger.error("Stripe refused to return the event's object: retried", extra={"reason": exc.reason})
        raise StripeEventObjectRefusedError(
            exc.reason, f"Stripe refused to return the object of a verified event: {exc}"
        ) from exc
    if purchase is None:
        return WebhookResult(WebhookOutcome.UNPAID)
    write = payments.record(purchase.payment, envelope.id)
    record = write.record
    _log_write(write, purchase.payment)
    if record.purchase_published:
        return WebhookResult(WebhookOutcome.DUPLICATE, record.payment_id)
    if record.customer_id is None:
        logger.warning("PaymentIntent names no customer: recorded, no Purchase event published")
        return WebhookResult(WebhookOutcome.NO_CUSTOMER, record.payment_id)
    event = _purchase_event(record, purchase, envelope.created)
    if event is None:
        return WebhookResult(WebhookOutcome.INVALID, record.payment_id)
    # The claim is this attempt's alone: a copy of this event handled at the same time is another attempt.
    claimant = f"{envelope.id}:{uuid.uuid4().hex}"
    if not payments.claim_publication(record.payment_id, claimant):
        logger.info("Purchase event published or being published by another attempt: retried")
        raise PublicationBusyError(f"the Purchase event of payment {record.payment_id} is being published")
    try:
        message_id = publisher.publish(event)
    except Exception:
        _release(payments, record.payment_id, claimant)
        raise
    try:
        payments.mark_published(record.payment_id, message_id)
    except UpstreamError as exc:
        # The Purchase event is out: a retry would publish it again, so the failure is only logged.
        logger.warning("publication could not be recorded", extra={"error": str(exc)})
        return WebhookResult(WebhookOutcome.PUBLISHED, record.payment_id, mark_failed=True)
    logger.info("Purchase event published", extra={"message_id": message_id})
    return WebhookResult(WebhookOutcome.PUBLISHED, record.payment_id)
