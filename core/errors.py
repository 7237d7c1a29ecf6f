"""One error hierarchy for the service; domain errors know nothing of HTTP (see ``core.http`` for the mapping)."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

if TYPE_CHECKING:
    from pydantic import ValidationError

# What a boto3 call raises when AWS refuses (ClientError), cannot be reached (BotoCoreError: connection, timeout,
# credentials…) or answers what botocore cannot read (ResponseParserError: a proxy's page, a broken answer); stores
# catch them and translate them with ``aws_error``.
AWS_ERRORS = (ClientError, BotoCoreError, ResponseParserError)


# A key of a request body goes into an error's field name as written only when it reads as a name; others are quoted,
# and cut, since a caller chose them (an unknown field) and messages never echo long input. Compiled at its first use.
_PLAIN_KEY = r"[A-Za-z_][A-Za-z0-9_]*"
MAX_KEY_CHARS = 32


def field_path(parts: Iterable[str | int], base: str = "") -> str:
    """Return a field's name as a caller writes it: ``integrations[0].target.url``, odd keys quoted (``model["$x"]``).

    ``base`` is the name of the field the parts are under.
    """
    path = base
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif re.fullmatch(_PLAIN_KEY, part) and len(part) <= MAX_KEY_CHARS:
            path += f".{part}" if path else part
        else:
            key = part if len(part) <= MAX_KEY_CHARS else part[: MAX_KEY_CHARS - 3] + "..."
            # "; " separates one field's problem from the next in a message: a key never writes it (JSON's escape).
            path += f"[{json.dumps(key).replace(';', chr(92) + 'u003b')}]"
    return path


class NotificationError(Exception):
    """Base of every error the service raises on purpose; its text is safe to show to a caller."""


class MalformedRequestError(NotificationError):
    """The request body is not JSON, or not the JSON shape that was expected."""


class InvalidRequestError(NotificationError):
    """A field of the request is invalid; ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


class TemplateError(InvalidRequestError):
    """A template cannot be parsed, or cannot be rendered with the metadata given."""


class MissingTemplateVariablesError(TemplateError):
    """Rendering needs variables that the metadata does not hold; ``names`` lists them all."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(set(names))
        super().__init__("metadata", f"missing template variables: {', '.join(self.names)}")


class PayloadTooLargeError(NotificationError):
    """The request body is larger than the service accepts."""


class ContentTooLongError(PayloadTooLargeError):
    """A rendered text is longer than its channel sends; the text names the field, the caller the integration."""


class UnsendableContentError(NotificationError):
    """A rendered content its channel can never send (no text, a payload its platform refuses): the publish refuses it
    (422) rather than accept a notification no attempt could deliver. The text names the field, the caller the
    integration."""


class AuthenticationError(NotificationError):
    """No credential, or a credential that is not valid, was presented."""


class ForbiddenError(NotificationError):
    """The credential presented does not open this resource (for example a wrong topic hash)."""


class NotFoundError(NotificationError):
    """The named resource does not exist."""


class ConflictError(NotificationError):
    """The request conflicts with the state of the resource (for example a reused idempotency key)."""


class UpstreamError(NotificationError):
    """An AWS service or another dependency failed; the request may be retried."""


class MessageRefusedError(UpstreamError):
    """SQS refused a message for what it is (larger than the queue's MaximumMessageSize, or holding characters it
    does not carry), not for now: sent again, it is refused again."""


class InvalidTokenError(AuthenticationError):
    """A realtime connection token is missing, malformed, forged, or expired; the text says which, never the token."""


class TokenScopeError(ForbiddenError):
    """A valid realtime token does not open what was asked of it (a topic it does not name)."""


class SigningKeysError(UpstreamError):
    """The realtime signing keys cannot be read, or the parameter holding them is not set up."""


class SnsMessageError(NotificationError):
    """An SNS delivery is not a message SNS sent: not JSON, a field missing, an unknown type, a URL off SNS's hosts."""


class SnsSignatureError(SnsMessageError):
    """An SNS message's signature does not verify with its certificate, or that certificate cannot be trusted."""


class SnsEndpointError(UpstreamError):
    """SNS could not be reached, or failed, fetching a signing certificate or confirming a subscription; SNS retries
    a delivery answered with a 5xx."""


def invalid_fields(exc: ValidationError, whole: str) -> str:
    """Return the dotted names of the fields a pydantic error found invalid, never their values (``whole`` for the
    object itself); for messages about stored or queued data, whose values may be secrets."""
    return ", ".join(sorted({field_path(error["loc"]) or whole for error in exc.errors()}))


def error_code(exc: ClientError | BotoCoreError | ResponseParserError) -> str:
    """Return AWS's error code of a refused call, or the exception's class name when AWS was not reached."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "Unknown")
    return type(exc).__name__


def aws_error(exc: ClientError | BotoCoreError | ResponseParserError, action: str) -> UpstreamError:
    """Return the domain error of a failed AWS call: ``"<action> failed (<code>)"``, never the request's details."""
    return UpstreamError(f"{action} failed ({error_code(exc)})")


class EnqueueError(UpstreamError):
    """Some delivery messages could not be put on the delivery queue; ``failed`` maps integration to reason."""

    def __init__(self, notification_id: str, failed: dict[str, str]) -> None:
        self.notification_id = notification_id
        self.failed = dict(failed)
        names = ", ".join(sorted(self.failed))
        super().__init__(f"notification {notification_id}: could not enqueue deliveries for {names}")


class DeliveryError(NotificationError):
    """Base of the errors a channel raises when a delivery did not succeed."""


# The longest a provider's Retry-After is taken as: the longest retry window (RETRY_WINDOW_HOURS, 14 days). A
# receiver's answer, not a setting: 1e12 s is past any date a delivery could be due at.
MAX_RETRY_AFTER_SECONDS = 14 * 86400.0


class RetryableDeliveryError(DeliveryError):
    """The delivery may succeed later: a timeout, a connection error, a 5xx or a 429.

    ``retry_after`` is the provider's own delay in seconds when it gave one (``Retry-After``), bounded to 0 to
    ``MAX_RETRY_AFTER_SECONDS`` (``None`` when it is not a finite number); ``rate_limited`` says the provider refused
    for its rate (429, throttling): that is not counted as an attempt, and slows the pace.
    """

    def __init__(self, reason: str, retry_after: float | None = None, *, rate_limited: bool = False) -> None:
        self.reason = reason
        self.retry_after = _bounded_delay(retry_after)
        self.rate_limited = rate_limited
        super().__init__(reason)


def _bounded_delay(seconds: float | None) -> float | None:
    if seconds is None or isinstance(seconds, bool):
        return None
    if isinstance(seconds, int):
        # An answer's integer may be beyond any float (a 400-digit retry_after): bounded before it is converted.
        return float(min(MAX_RETRY_AFTER_SECONDS, max(0, seconds)))
    if not math.isfinite(seconds):
        return None
    return min(MAX_RETRY_AFTER_SECONDS, max(0.0, float(seconds)))


class PermanentDeliveryError(DeliveryError):
    """The delivery will never succeed as configured: other 4xx, invalid settings, missing credentials."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class BlockedTargetError(PermanentDeliveryError):
    """A delivery URL resolves to an address the service must not reach (loopback, private, metadata)."""


class EndpointDisabledError(PermanentDeliveryError):
    """SNS answered ``EndpointDisabled`` for a device's platform endpoint: the device is to be disabled."""

    def __init__(self, reason: str, endpoint_arn: str, observed_at: float | None = None) -> None:
        self.endpoint_arn = endpoint_arn
        # When SNS was asked (Unix time; the answer came after): a device registered again since stays enabled.
        self.observed_at = time.time() if observed_at is None else observed_at
        super().__init__(reason)


class DeliveryDeferredError(DeliveryError):
    """A delivery failed for now and was scheduled again; the batch reports its record as failed."""

    def __init__(self, notification_id: str, delay_seconds: int) -> None:
        self.notification_id = notification_id
        self.delay_seconds = delay_seconds
        super().__init__(f"delivery of {notification_id} deferred by {delay_seconds} s")
