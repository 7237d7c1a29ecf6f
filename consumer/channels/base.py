"""The one interface every channel implements, and the HTTP helpers the URL-based channels share."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, TypeVar

import requests
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ValidationError

from core.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from core.models import Content
from core.outbound import OutboundSession

Model = TypeVar("Model", bound=BaseModel)

# AWS error codes that mean "not now" rather than "never"; boto3 has already retried them a few times.
RETRYABLE_AWS_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "Throttled",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "InternalErrorException",
        "RequestTimeout",
        "KMSThrottlingException",
    }
)


@dataclass(frozen=True)
class DeliveryReceipt:
    """What a provider said when it accepted a delivery: its message id, when it gives one."""

    provider_message_id: str | None = None


@dataclass(frozen=True)
class ChannelResources:
    """What channels send through: the outbound HTTP session, AWS clients by service name, channel settings.

    ``aws_client`` is a cached getter, so a client is created on a channel's first send and reused after.
    """

    http: OutboundSession
    aws_client: Callable[[str], Any]
    telegram_api_base: str


class Channel(ABC):
    """A way to deliver content; subclasses name their ``type`` and their limits as class attributes."""

    type: ClassVar[str]

    def __init__(self, resources: ChannelResources) -> None:
        self._resources = resources

    @abstractmethod
    def send(
        self,
        content: Content,
        target: Mapping[str, Any],
        credentials: Mapping[str, Any] | None,
        *,
        notification_id: str,
    ) -> DeliveryReceipt:
        """Deliver ``content``; raise ``RetryableDeliveryError`` or ``PermanentDeliveryError`` when it fails."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def parse_settings(model: type[Model], value: Any, what: str) -> Model:
    """Validate a target or credentials object; an invalid one is permanent, named without its values."""
    try:
        return model.model_validate(value or {})
    except ValidationError as exc:
        fields = sorted({".".join(str(part) for part in error["loc"]) or what for error in exc.errors()})
        raise PermanentDeliveryError(f"invalid {what}: {', '.join(fields)}") from None


def retry_after_seconds(value: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """Return a ``Retry-After`` header's delay in seconds (delta-seconds or an HTTP date), or ``None``."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now()).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def post(session: OutboundSession, url: str, what: str, **kwargs: Any) -> requests.Response:
    """POST through the outbound session; transport failures become retryable errors that never show the URL.

    A requests exception's text carries the URL, and URLs carry secrets (a Telegram bot token, a Slack webhook
    path), so the original exception is dropped (``from None``) rather than chained into logs and the ledger.
    """
    try:
        return session.post(url, **kwargs)
    except requests.Timeout:
        raise RetryableDeliveryError(f"{what}: timed out") from None
    except requests.ConnectionError:
        raise RetryableDeliveryError(f"{what}: connection failed") from None
    except requests.TooManyRedirects:
        raise PermanentDeliveryError(f"{what}: too many redirects") from None
    except requests.RequestException as exc:
        raise PermanentDeliveryError(f"{what}: request failed ({type(exc).__name__})") from None


def classify_status(response: requests.Response, what: str, detail: str = "") -> None:
    """Raise for a non-2xx answer: 429 and 5xx retryable (with Retry-After), anything else permanent."""
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = f"{what}: HTTP {status}" + (f" {detail}" if detail else "")
    if status == 429 or status >= 500:
        raise RetryableDeliveryError(reason, retry_after_seconds(response.headers.get("Retry-After")))
    raise PermanentDeliveryError(reason)


def short_text(response: requests.Response, limit: int = 200) -> str:
    """Return the start of an answer's body as one line, for an error reason."""
    text = response.text[:limit] if response.content else ""
    return " ".join(text.split())


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def aws_failure(exc: ClientError | BotoCoreError, what: str) -> DeliveryError:
    """Return the delivery error an AWS failure means: throttling, 5xx and transport retryable, others permanent."""
    if isinstance(exc, BotoCoreError):
        return RetryableDeliveryError(f"{what}: {type(exc).__name__}")
    code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in RETRYABLE_AWS_CODES or status >= 500:
        return RetryableDeliveryError(f"{what}: {code}")
    return PermanentDeliveryError(f"{what}: {code}")
