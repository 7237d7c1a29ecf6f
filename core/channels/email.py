"""Email through SES ``send_email``: a subject, a text part and an optional HTML part."""

from __future__ import annotations

import math
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import AfterValidator, ConfigDict, Field, field_validator

from core.channels.base import (
    Channel,
    ChannelResources,
    DeliveryReceipt,
    IntegrationBase,
    Limit,
    aws_failure,
    destination_key,
    limit_at,
    parse_settings,
)
from core.errors import PermanentDeliveryError
from core.models import Content, IntegrationType
from core.observability import logger
from core.templates import escape_html, render
from core.validation import Strict

# Matched whole (``fullmatch``): ``match`` with ``$`` would let a trailing newline through.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# What ends or folds a header line (CR, LF, NEL, the Unicode line and paragraph separators) or has no place in an
# address (NUL, DEL, tabs, other C0 and C1 controls): refused in every address field, so none can add a header.
_CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def _has_control_character(value: str) -> bool:
    return any(unicodedata.category(char) in _CONTROL_CATEGORIES for char in value)


def _recipient(address: str) -> str:
    # The address is not quoted back: the message names the field (``to[1]``), and echoes no input.
    if _has_control_character(address):
        raise ValueError("must not contain line breaks, tabs or other control characters")
    if not _EMAIL.fullmatch(address):
        raise ValueError("is not an email address (write it as name@example.com)")
    return address


class EmailTarget(Strict):
    """Where an email goes: recipients and the verified sender."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    to: list[Annotated[str, AfterValidator(_recipient)]] = Field(min_length=1, max_length=50)
    sender: str = Field(alias="from")

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if _has_control_character(value):
            raise ValueError("must not contain line breaks, tabs or other control characters")
        # "Name <address>" or a bare address.
        if not _EMAIL.fullmatch(value.rsplit("<", 1)[-1].rstrip(">").strip()):
            raise ValueError("is not an email address (write it as name@example.com or Name <name@example.com>)")
        return value


class EmailModel(Strict):
    """The templates of an email."""

    subject: str = Field(min_length=1)
    text: str = Field(min_length=1)
    html: str | None = None


class EmailIntegration(IntegrationBase):
    """Email through SES."""

    type: Literal[IntegrationType.EMAIL]
    target: EmailTarget
    model: EmailModel


def _part(text: str) -> dict[str, str]:
    return {"Data": text, "Charset": "UTF-8"}


class EmailChannel(Channel):
    """Sends one email to the target's recipients; the HTML arrives escaped from the producer.

    SES limits the account's sends per second, each recipient counting as one; the rate is read from
    ``GetSendQuota`` and kept for an hour.
    """

    type: ClassVar[str] = IntegrationType.EMAIL.value
    integration_model = EmailIntegration
    max_recipients: ClassVar[int] = 50
    max_message_bytes: ClassVar[int] = 10 * 1024 * 1024
    sandbox_rate_per_second: ClassVar[float] = 1.0
    quota_cache_seconds: ClassVar[float] = 3600.0
    # A failed quota read is tried again sooner, so one SES hiccup does not hold email at the sandbox rate for an hour.
    quota_retry_seconds: ClassVar[float] = 60.0

    def __init__(self, resources: ChannelResources, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(resources)
        self._clock = clock
        self._quota_lock = threading.Lock()
        self._quota: tuple[float, float] | None = None  # (per second, good until)

    @classmethod
    def render(cls, model: Any, values: Mapping[str, Any]) -> Content:
        """Render subject, text and html; only values inserted into the html are escaped."""
        return Content(
            subject=render(model["subject"], values, path="model.subject"),
            text=render(model["text"], values, path="model.text"),
            html=render(model["html"], values, escape_html, "model.html") if model.get("html") else None,
        )

    def rate_limits(
        self, target: Mapping[str, Any], credentials: Mapping[str, Any] | None, rate_per_second: float | None
    ) -> list[Limit]:
        """Return the account's send rate, costing one per recipient, and the integration's own rate if it has one."""
        email = parse_settings(EmailTarget, target, "target")
        client = self._resources.aws_client("ses")
        region = getattr(getattr(client, "meta", None), "region_name", None) or "account"
        limits = [Limit(destination_key("ses", region), self._send_rate(client), cost=float(len(email.to)))]
        return limits + limit_at(destination_key("email", email.sender, *sorted(email.to)), None, rate_per_second)

    def _send_rate(self, client: Any) -> float:
        """Return the account's ``MaxSendRate``, read at most once an hour (once a minute after a failure)."""
        with self._quota_lock:
            now = self._clock()
            if self._quota is not None and now < self._quota[1]:
                return self._quota[0]
            try:
                rate = float(client.get_send_quota()["MaxSendRate"])
            except (ClientError, BotoCoreError, KeyError, TypeError, ValueError) as exc:
                rate = 0.0
                reason = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
                logger.warning(
                    "SES send quota unreadable: pacing email at the sandbox rate",
                    extra={"reason": reason or type(exc).__name__, "per_second": self.sandbox_rate_per_second},
                )
            if rate > 0 and math.isfinite(rate):
                self._quota = (rate, now + self.quota_cache_seconds)
            else:
                self._quota = (self.sandbox_rate_per_second, now + self.quota_retry_seconds)
            return self._quota[0]

    def send(
        self,
        content: Content,
        target: Mapping[str, Any],
        credentials: Mapping[str, Any] | None,
        *,
        notification_id: str,
        delivery_key: str,
    ) -> DeliveryReceipt:
        """Send the email; throttling and SES outages are retryable, rejected messages and senders permanent."""
        email = parse_settings(EmailTarget, target, "target")
        if len(email.to) > self.max_recipients:
            raise PermanentDeliveryError(f"email: more than {self.max_recipients} recipients")
        if not content.subject or not content.text:
            raise PermanentDeliveryError("email: subject or text is missing")
        body = {"Text": _part(content.text)}
        if content.html:
            body["Html"] = _part(content.html)
        if sum(len(part["Data"].encode()) for part in body.values()) > self.max_message_bytes:
            raise PermanentDeliveryError(f"email: message exceeds {self.max_message_bytes // (1024 * 1024)} MiB")
        try:
            response = self._resources.aws_client("ses").send_email(
                Source=email.sender,
                Destination={"ToAddresses": email.to},
                Message={"Subject": _part(content.subject), "Body": body},
            )
        except (ClientError, BotoCoreError) as exc:
            raise aws_failure(exc, "email") from exc
        return DeliveryReceipt(response.get("MessageId"))
