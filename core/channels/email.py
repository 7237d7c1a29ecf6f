"""Email through SES ``send_email``: a subject, a text part and an optional HTML part."""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from email.charset import Charset
from email.utils import formataddr
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

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
    require_text,
)
from core.errors import AWS_ERRORS, DeliveryError, PermanentDeliveryError, RetryableDeliveryError, error_code
from core.mail import ATEXT, CONTROL_RULE, ascii_address, has_control_character
from core.models import Content, IntegrationType
from core.observability import logger
from core.templates import escape_html, render
from core.validation import Strict

# One word of a display name: an atom (``atext``, and any non-ASCII character, RFC 6532, sent encoded), a quoted
# string with its quoted pairs, or a lone dot (RFC 5322's obsolete phrase: "John Q. Public", which mail writes often);
# with the spaces before it. Controls are refused before.
_NAME_WORD = re.compile(f'( *)(?:([\u0080-\U0010ffff{ATEXT}]+)|"((?:[^"\\\\]|\\\\.)*)"|(\\.))')
_QUOTED_PAIR = re.compile(r"\\(.)")
# RFC 2047: an encoded-word is at most 75 characters; "=?utf-8?b?" + base64 of 45 bytes (60) + "?=" is 72.
_ENCODED_WORD_BYTES = 45
_UTF8 = Charset("utf-8")
# What a person is told; none quotes the value (a 422 names the field: ``to[1]``, ``from``).
_SENDER_RULE = "is not an email address (write it as name@example.com or Name <name@example.com>)"
_ANGLE_RULE = "must be an address, or a name and one address in angle brackets: write it as Name <name@example.com>"
_QUOTE_RULE = (
    "has a name with punctuation outside double quotes: a name may hold letters, digits, spaces, dots and "
    '!#$%&\'*+-/=?^_`{|}~ as they are; quote any other, as in "Doe, John" <john@example.com>'
)


def _display_name(text: str) -> str:
    """Return a display name as meant (quotes and quoted pairs undone, spaces between words kept as one); raise
    ``ValueError`` when punctuation RFC 5322 wants quoted is not."""
    words: list[str] = []
    position, end = 0, len(text.rstrip(" "))
    while position < end:
        word = _NAME_WORD.match(text, position)
        # A name starts with a word, not a dot; anything the pattern does not take is punctuation outside quotes.
        if word is None or (not words and word.group(4)):
            raise ValueError(_QUOTE_RULE)
        spaces, atom, quoted, dot = word.groups()
        value = atom or dot or _QUOTED_PAIR.sub(r"\1", quoted or "")
        words.append((" " if spaces and words else "") + value)
        position = word.end()
    return "".join(words)


def _sender_parts(value: str) -> tuple[str, str]:
    """Return a sender's display name (``""`` when none) and its address as SES takes it; raise ``ValueError``.

    The syntax is RFC 5322's ``mailbox`` without comments: ``addr-spec`` or ``[display-name] <addr-spec>``. SES
    reads ``Source`` as a header's value, so an unquoted comma makes two addresses ("Doe, John <…>") and every send
    is rejected; refused here, when the topic is saved.
    """
    if has_control_character(value):
        raise ValueError(CONTROL_RULE)
    text = value.strip(" ")
    if not text.endswith(">"):
        if "<" in text or ">" in text:
            raise ValueError(_ANGLE_RULE)
        return "", ascii_address(text, _SENDER_RULE)
    # An address holds no "<": the last one opens it, and a name's own stand quoted before it.
    opening = text.rfind("<")
    if opening == -1:
        raise ValueError(_ANGLE_RULE)
    return _display_name(text[:opening]), ascii_address(text[opening + 1 : -1].strip(" "), _SENDER_RULE)


def _encoded_words(name: str) -> str:
    """Return a non-ASCII name as RFC 2047 encoded-words of at most 75 characters (each whole characters of UTF-8),
    separated by spaces, which readers drop between encoded-words."""
    chunks = [""]
    for char in name:
        if len((chunks[-1] + char).encode()) > _ENCODED_WORD_BYTES:
            chunks.append("")
        chunks[-1] += char
    return " ".join(_UTF8.header_encode(chunk) for chunk in chunks)


def _source(sender: str) -> str:
    """Return ``Source`` as SES takes it, 7-bit ASCII: the name encoded (RFC 2047) when it is not ASCII, else quoted
    when its punctuation needs it (``formataddr``), and the domain in punycode."""
    name, address = _sender_parts(sender)
    if name.isascii():
        return formataddr((name, address))
    return f"{_encoded_words(name)} <{address}>"


def _recipient(address: str) -> str:
    ascii_address(address)
    return address


class EmailTarget(Strict):
    """Where an email goes: recipients and the verified sender, stored as written and encoded when sent."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    to: list[Annotated[str, AfterValidator(_recipient)]] = Field(min_length=1, max_length=50)
    sender: str = Field(alias="from")

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        _sender_parts(value)
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


# Line breaks (and the other characters Python splits lines at) in a subject: a header is one line.
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")


def _subject(text: str) -> str:
    """The subject as one line: a line break a value brought in (``Hi\\r\\nBcc: …``) becomes a space, so that it can
    neither fold the header nor start another."""
    return _LINE_BREAKS.sub(" ", text)


class _Quota(NamedTuple):
    """What a container knows of the account's send rate: the rate to pace at (``None``: none could be read yet),
    when to read it again, and why it could not be read (a send meets that failure until then)."""

    per_second: float | None
    read_after: float
    reason: str = ""
    rate_limited: bool = False


class EmailChannel(Channel):
    """Sends one email to the target's recipients; the HTML arrives escaped from the producer.

    SES limits the account's sends per second, each recipient counting as one; the rate is read from
    ``GetSendQuota`` and kept for an hour. A read SES fails is tried again at once with a short backoff; while it
    keeps failing the last rate read is kept, and with none read yet a send is retried a moment later rather than
    paced at a guessed rate: a slot taken at a guess outlives the guess, as the slots of every send behind it.
    """

    type: ClassVar[str] = IntegrationType.EMAIL.value
    integration_model = EmailIntegration
    max_recipients: ClassVar[int] = 50
    max_message_bytes: ClassVar[int] = 10 * 1024 * 1024
    sandbox_rate_per_second: ClassVar[float] = 1.0
    quota_cache_seconds: ClassVar[float] = 3600.0
    # After a failed read the quota is read again this soon, pacing meanwhile at the last rate read, or at the sandbox
    # rate every account has when SES refuses the read itself (AccessDenied: a role without ses:GetSendQuota).
    quota_retry_seconds: ClassVar[float] = 60.0
    # SES answers GetSendQuota about once a second per account, and throttles it when many containers start at once:
    # a first read that SES throttles (or fails for now) is tried this many times in all, 0.5 s then 1 s apart (half
    # of each random); the lock holds the container's other sends meanwhile, so that they make no reads of their own.
    quota_read_tries: ClassVar[int] = 3
    quota_backoff_seconds: ClassVar[float] = 0.5
    # With no rate read yet and SES failing the read for now, sends wait this long (unpaced, taking no slot) and the
    # read is tried again then: a burst paced at the sandbox's 1/s in that while was queued for hours behind its slots.
    quota_wait_seconds: ClassVar[float] = 2.0

    def __init__(
        self,
        resources: ChannelResources,
        clock: Callable[[], float] = time.monotonic,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(resources)
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._quota_lock = threading.Lock()
        self._quota = _Quota(per_second=None, read_after=-math.inf)
        self._last_read: float | None = None

    @classmethod
    def render(cls, model: Any, values: Mapping[str, Any]) -> Content:
        """Render subject, text and html; only values inserted into the html are escaped. A subject or text that renders
        empty is refused: SES takes no email without them."""
        return Content(
            subject=require_text(render(model["subject"], values, path="model.subject"), "model.subject", spaces=True),
            text=require_text(render(model["text"], values, path="model.text"), "model.text", spaces=True),
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
        """Return the account's ``MaxSendRate``, read at most once an hour; raise ``RetryableDeliveryError`` (due when
        the next read is) while no rate could be read yet and SES fails the read for now."""
        with self._quota_lock:
            if self._clock() >= self._quota.read_after:
                self._quota = self._read_quota(client)
            quota = self._quota
            if quota.per_second is not None:
                return quota.per_second
            wait = max(0.0, quota.read_after - self._clock())
            raise RetryableDeliveryError(quota.reason, wait, rate_limited=quota.rate_limited)

    def _read_quota(self, client: Any) -> _Quota:
        """Read the quota, again after a short backoff while SES fails the read in a way it may not repeat (throttling,
        5xx, no connection) and no rate was read before; return what to pace at until the next read."""
        failure: DeliveryError = PermanentDeliveryError("email: SES send quota: unusable MaxSendRate")
        code = "unusable MaxSendRate"
        # With a rate read before, the container's sends go on at it rather than wait for a backoff.
        tries = self.quota_read_tries if self._last_read is None else 1
        for attempt in range(tries):
            if attempt:
                ceiling = self.quota_backoff_seconds * 2.0 ** (attempt - 1)
                self._sleep(ceiling / 2 + self._rand() * ceiling / 2)
            try:
                rate = float(client.get_send_quota()["MaxSendRate"])
            except AWS_ERRORS as exc:
                failure, code = aws_failure(exc, "email: SES send quota"), error_code(exc)
                if isinstance(failure, RetryableDeliveryError):
                    continue
                break
            except (KeyError, TypeError, ValueError) as exc:
                code = type(exc).__name__
                break
            if rate > 0 and math.isfinite(rate):
                self._last_read = rate
                return _Quota(rate, self._clock() + self.quota_cache_seconds)
            break
        now = self._clock()
        if self._last_read is not None:
            logger.warning(
                "SES send quota unreadable: pacing email at the last rate read",
                extra={"reason": code, "per_second": self._last_read},
            )
            return _Quota(self._last_read, now + self.quota_retry_seconds)
        if isinstance(failure, RetryableDeliveryError):
            logger.warning(
                "SES send quota unreadable for now: email waits for it, taking no send slot",
                extra={"reason": code, "retry_in_seconds": self.quota_wait_seconds},
            )
            return _Quota(None, now + self.quota_wait_seconds, failure.reason, failure.rate_limited)
        logger.warning(
            "SES send quota unreadable: pacing email at the sandbox rate",
            extra={"reason": code, "per_second": self.sandbox_rate_per_second},
        )
        return _Quota(self.sandbox_rate_per_second, now + self.quota_retry_seconds)

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
            # SES takes 7-bit ASCII addresses only; the target stays as its admin wrote it (its pacing key too).
            response = self._resources.aws_client("ses").send_email(
                Source=_source(email.sender),
                Destination={"ToAddresses": [ascii_address(address) for address in email.to]},
                Message={"Subject": _part(_subject(content.subject)), "Body": body},
            )
        except AWS_ERRORS as exc:
            raise aws_failure(exc, "email") from exc
        return DeliveryReceipt(response.get("MessageId"))
