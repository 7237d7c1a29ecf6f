"""The one interface every channel implements, the admin fields every integration has, and the helpers channels share.

The publish Lambda imports channels to render content, so nothing here loads ``requests`` at import time: ``post``
imports it where it is used, and annotations name it only for type checkers.
"""

from __future__ import annotations

import builtins
import hashlib
import ipaddress
import math
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar
from urllib.parse import unquote, urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, BeforeValidator, Field, SecretStr, StrictFloat, ValidationError, field_validator

from core.errors import (
    BlockedTargetError,
    DeliveryError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    UnsendableContentError,
    invalid_fields,
)
from core.models import Content, IntegrationType
from core.pacing import Limit
from core.templates import render
from core.validation import LONE_SURROGATE, NAME_PATTERN, TEXT_RULE, UNSENDABLE, Strict, refuse_text

if TYPE_CHECKING:
    import requests

    from core.outbound import OutboundSession

Model = TypeVar("Model", bound=BaseModel)
CREDENTIAL_TEXT_RULE = "must be text UTF-8 can encode: no lone surrogates (U+D800-U+DFFF)"


# AWS error codes that say the account's rate was exceeded: like a 429, not counted as an attempt.
THROTTLING_AWS_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "Throttled",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "KMSThrottlingException",
        "KMSThrottling",
    }
)
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
        "KMSThrottling",  # SNS's code for it
        # SES while sending is paused (by an admin, or by AWS during a review): sent once it resumes, within the
        # retry window, and dead with this reason if it does not.
        "AccountSendingPausedException",
        "ConfigurationSetSendingPausedException",
    }
)


# --- the admin schema every type shares -------------------------------------------------------------------------


# The slowest pace an integration may set: one send every 1,000 s.
MIN_RATE_PER_SECOND = 0.001


class IntegrationBase(Strict):
    """Fields every integration has, as an admin writes them; each channel narrows ``type``, ``target``, ``model``."""

    name: str = Field(pattern=NAME_PATTERN)
    type: IntegrationType
    target: Any
    model: Any
    # At least one send every 1,000 s: a slower pace puts a destination's second slot past any retry window (and
    # at 1e-12 past the times a message can carry).
    rate_per_second: StrictFloat | None = Field(default=None, ge=MIN_RATE_PER_SECOND, le=1000)

    @field_validator("target", "model", mode="before")
    @classmethod
    def _check_text(cls, value: Any) -> Any:
        """Refuse a string, value or key, that a delivery message could not carry, naming where it is: stored, it
        would fail every publish to the topic."""
        return refuse_text(value, UNSENDABLE, TEXT_RULE, cls.__name__)

    @field_validator("credentials", mode="before", check_fields=False)
    @classmethod
    def _check_secrets(cls, value: Any) -> Any:
        """Refuse a credential that is no UTF-8 text (a lone surrogate), naming it, never its value: stored, it could
        not be encoded to sign, to name its destination or to reach it, and every delivery would fail."""
        return refuse_text(value, LONE_SURROGATE, CREDENTIAL_TEXT_RULE, cls.__name__)

    def credentials_dict(self) -> dict[str, str] | None:
        """Return the secret values to store, or ``None`` when this integration has none."""
        credentials = getattr(self, "credentials", None)
        if credentials is None:
            return None
        return {
            key: value.get_secret_value() if isinstance(value, SecretStr) else str(value) for key, value in credentials
        }


# --- what a send needs and gives back -----------------------------------------------------------------------------


class DeliveryReceipt(NamedTuple):
    """What a provider said when it accepted a delivery: its message id, when it gives one."""

    provider_message_id: str | None = None


@dataclass(frozen=True)
class ChannelResources:
    """What channels send through: the outbound HTTP session, AWS clients by service name, channel settings.

    ``aws_client`` is a cached getter, so a client is created on a channel's first send and reused after.
    ``handoff``, where the stage has an audience, hands a notification's subscribers to the expansion worker
    (``notification_id``, content, the channels to reach them on) and returns the job's message id.
    """

    http: OutboundSession
    aws_client: Callable[[str], Any]
    telegram_api_base: str
    handoff: Callable[[str, Content, Sequence[str]], str] | None = field(default=None, kw_only=True)


def destination_key(kind: str, *parts: str) -> str:
    """Return a stable, non-secret key: kind + ':' + first 32 hex of sha256 over the parts joined by '\\n'.

    Destinations are named by secrets (a Slack webhook URL, a bot token), and pacing state is stored and logged, so
    a key carries a digest of them only.
    """
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
    return f"{kind}:{digest}"


def limit_at(key: str, declared: float | None, rate_per_second: float | None) -> list[Limit]:
    """Return the one limit on a destination: the stricter of the declared rate and the integration's own, if any."""
    rates = [rate for rate in (declared, rate_per_second) if rate is not None]
    return [Limit(key, min(rates))] if rates else []


# --- the interface ------------------------------------------------------------------------------------------------


class Channel(ABC):
    """A way to deliver content; subclasses declare their ``type``, schema and limits as class attributes.

    ``integration_model`` is the admin schema of an integration of this type; ``credentials_model`` the secret it
    needs, or ``None``.
    """

    type: ClassVar[str]
    integration_model: ClassVar[builtins.type[IntegrationBase]]
    credentials_model: ClassVar[builtins.type[BaseModel] | None] = None

    def __init__(self, resources: ChannelResources) -> None:
        self._resources = resources

    @classmethod
    @abstractmethod
    def render(cls, model: Any, values: Mapping[str, Any]) -> Content:
        """Render an integration's stored model with ``values`` into the content this channel sends."""

    @abstractmethod
    def rate_limits(
        self, target: Mapping[str, Any], credentials: Mapping[str, Any] | None, rate_per_second: float | None
    ) -> list[Limit]:
        """Return the limits a send to this destination must respect; invalid settings are permanent errors.

        ``rate_per_second`` is the integration's own optional limit, set by an admin; it applies on top of the
        provider's declared limits.
        """

    def throttled(self, limits: list[Limit]) -> list[Limit]:
        """Return which of a send's ``limits`` a rate-limit refusal of it holds and slows: all of them, as a provider's
        429 does not say which of its limits it counts."""
        return limits

    @abstractmethod
    def send(
        self,
        content: Content,
        target: Mapping[str, Any],
        credentials: Mapping[str, Any] | None,
        *,
        notification_id: str,
        delivery_key: str,
    ) -> DeliveryReceipt:
        """Deliver ``content``; raise ``RetryableDeliveryError`` or ``PermanentDeliveryError`` when it fails."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --- helpers ------------------------------------------------------------------------------------------------------


def render_text_or_data(model: Any, values: Mapping[str, Any]) -> Content:
    """Render a string model into ``text`` and an object or list model into ``data``, inserting values as they are."""
    if isinstance(model, str):
        return Content(text=render(model, values))
    return Content(data=render(model, values))


def json_shape(kinds: tuple[builtins.type, ...], words: str) -> BeforeValidator:
    """Refuse a value that is none of ``kinds`` with one message (``must be <words>``), rather than one per member
    of the union that follows."""

    def check(value: Any) -> Any:
        if not isinstance(value, kinds):
            raise ValueError(f"must be {words}")  # noqa: TRY004 (pydantic reports ValueError, not TypeError)
        return value

    return BeforeValidator(check)


def parse_settings(model: type[Model], value: Any, what: str) -> Model:
    """Validate a target or credentials object; an invalid one is permanent, named without its values."""
    try:
        return model.model_validate(value or {})
    except ValidationError as exc:
        raise PermanentDeliveryError(f"invalid {what}: {invalid_fields(exc, what)}") from None


def _host_is_valid(host: str, bracketed: bool) -> bool:
    """Whether a URL's host is a name or address a request can be sent to, encoded as requests and sockets do."""
    if bracketed:
        try:
            return ipaddress.ip_address(host.split("%", 1)[0]).version == 6
        except ValueError:
            return False
    try:
        if not host.isascii():
            import idna  # what requests encodes a non-ASCII host with; loaded only for one

            host = idna.encode(host, uts46=True).decode("ascii")
        host.encode("idna")  # what the resolver does: an empty or over-long label fails here
    except UnicodeError:  # idna.IDNAError is one
        return False
    return True


def url_problem(url: str) -> str | None:
    """Return what makes ``url`` unusable as an http(s) delivery target, or ``None``; the text never quotes the URL.

    These are the checks a request would fail later, made when a topic is saved: a URL that passes them parses,
    has a host that can be encoded and resolved, and a port in range.
    """
    if any(char.isspace() or unicodedata.category(char) in ("Cc", "Cs") for char in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        host, user, password = parts.hostname, parts.username, parts.password
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "must be an http(s) URL with a host"
    if user is not None or password is not None:
        return "must not carry user information"
    try:
        valid_port = parts.port is None or parts.port > 0  # no connection is ever made to port 0
    except ValueError:  # not a number, or out of range
        valid_port = False
    if not valid_port:
        return "has an invalid port"
    if not _host_is_valid(host, "[" in parts.netloc):
        return "has an invalid host name"
    import requests

    try:
        # What the send does with it first: a host IDNA cannot encode (full-width digits), a bracket too many.
        requests.PreparedRequest().prepare_url(url, None)
    except (requests.RequestException, ValueError, UnicodeError):
        return "is not a URL an HTTP request can be made to"
    return None


def require_text(text: str | None, field: str = "model", *, spaces: bool = False) -> str:
    """Return ``text`` when it has something to send; raise ``UnsendableContentError`` naming ``field`` when it is
    empty, or only spaces unless ``spaces`` (Slack answers no_text, Telegram "message text is empty": the delivery
    failed for good; SES and SNS take spaces, an HTML email's text part is often one)."""
    if not text or (not spaces and not text.strip()):
        what = "nothing" if spaces else "nothing, or only spaces"
        raise UnsendableContentError(f"{field} renders no text with this metadata ({what})")
    return text


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
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - now()).total_seconds()
        except (TypeError, ValueError, IndexError, OverflowError):
            # OverflowError: a year beyond what the platform's time can hold (the 429 it came with is still one).
            return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def post(session: OutboundSession, url: str, what: str, **kwargs: Any) -> requests.Response:
    """POST through the outbound session; transport failures become retryable errors that never show the URL.

    A requests exception's text carries the URL, and URLs carry secrets (a Telegram bot token, a Slack webhook
    path), so the original exception is dropped (``from None``) rather than chained into logs and the ledger. A URL
    that does not parse is a blocked target: permanent, never retried. The whole send (connecting, the request, every
    redirect, the status line and headers, the answer's body) ends within the connect plus the read timeout
    (``core.outbound.send_deadline``); past it the send is a timeout, retryable. The answer's body is at most
    ``core.outbound.MAX_ANSWER_BYTES``, read until that deadline (``response.content`` holds what was read).
    """
    import requests

    from core.outbound import NameResolutionError, read_answer, send_deadline

    with send_deadline(kwargs.get("timeout", getattr(session, "timeout", None))) as deadline:
        try:
            response = session.post(url, stream=True, **kwargs)
        except requests.Timeout:
            raise RetryableDeliveryError(f"{what}: timed out") from None
        except NameResolutionError:
            raise RetryableDeliveryError(f"{what}: the host's name could not be resolved now") from None
        except BlockedTargetError as exc:
            # The guard's own words ("target host does not resolve", a refused address), said of this channel.
            raise BlockedTargetError(f"{what}: {exc.reason}") from None
        except requests.exceptions.SSLError as exc:
            # A ConnectionError too: said apart, since only the receiver's certificate (or TLS setup) can fix it.
            raise RetryableDeliveryError(f"{what}: TLS handshake failed ({_tls_problem(exc)})") from None
        except requests.ConnectionError:
            raise RetryableDeliveryError(f"{what}: connection failed") from None
        except requests.TooManyRedirects:
            raise PermanentDeliveryError(f"{what}: too many redirects") from None
        except requests.RequestException as exc:
            raise PermanentDeliveryError(f"{what}: request failed ({type(exc).__name__})") from None
        except ValueError:
            # A URL that does not parse on the way (urllib, urllib3 or the resolver: UnicodeError is a ValueError
            # too); its text names the host or more.
            raise BlockedTargetError(f"{what}: invalid target URL") from None
        read_answer(response, deadline)
    return response


def _tls_problem(exc: BaseException) -> str:
    """Name what a TLS failure was, from the ``ssl`` error in its chain: the certificate check's words (``self-signed
    certificate``, ``certificate has expired``, a host mismatch), else OpenSSL's reason (``WRONG_VERSION_NUMBER``: the
    URL says https and the receiver speaks HTTP), else ``no TLS connection``. Never the URL, and never raises: it runs
    while the request's exception, whose text holds the URL, is being handled."""
    import ssl

    try:
        seen: set[int] = set()
        pending: list[BaseException] = [exc]
        reason = None
        while pending:
            error = pending.pop()
            if id(error) in seen:
                continue
            seen.add(id(error))
            if isinstance(error, ssl.SSLCertVerificationError):
                said = error.verify_message
                return f"certificate not trusted: {said}" if said else "certificate not trusted"
            if (
                isinstance(error, ssl.SSLError)
                and isinstance(error.reason, str)
                and _OPENSSL_REASON.fullmatch(error.reason)
            ):
                reason = reason or error.reason
            # urllib3's MaxRetryError keeps the exception as ``reason``; an ssl.SSLError's ``reason`` is a string.
            linked = (error.__cause__, error.__context__, getattr(error, "reason", None), *error.args)
            pending.extend(item for item in linked if isinstance(item, BaseException))
    except Exception:  # naming a failure must not fail with the URL in its context
        return "no TLS connection"
    return f"no TLS connection: {reason}" if reason else "no TLS connection"


# OpenSSL's reason codes (``WRONG_VERSION_NUMBER``, ``SSLV3_ALERT_HANDSHAKE_FAILURE``): said as they are, nothing else.
_OPENSSL_REASON = re.compile(r"[A-Z0-9_]{1,64}")


# Answers that say "not now" rather than "never": the receiver timed the request out (408), or will not take it
# before a replay risk passes (425, Too Early); like 429 and 5xx, with a Retry-After when they give one.
_RETRYABLE_4XX = frozenset({408, 425, 429})


def classify_status(response: requests.Response, what: str, detail: str = "") -> None:
    """Raise for a non-2xx answer: 1xx, 408, 425, 429 and 5xx retryable (with Retry-After), anything else permanent."""
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = f"{what}: HTTP {status}" + (f" {detail}" if detail else "")
    if status < 200:
        # An interim answer (102 Processing, 103 Early Hints) that the HTTP client took for the final one: the
        # receiver's real answer was not read, so the outcome is unknown, and tried again.
        raise RetryableDeliveryError(f"{reason} (an interim answer: the outcome is unknown)")
    if status in _RETRYABLE_4XX or status >= 500:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        raise RetryableDeliveryError(reason, retry_after, rate_limited=status == 429)
    raise PermanentDeliveryError(reason)


# A word of an answer holding this many characters of a secret in a row is hidden whole: a page quoting a secret cut
# short, or only the part after a token's ``:``. Shorter runs are left, or common words would go.
SECRET_RUN = 8
_SECRET_PARTS = re.compile(r"[/?&=#:@.]")
_WORDS = re.compile(r"[^\s\"'<>()\[\]{},;]+")


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with each secret written ``***``, in any case, however an error page quoted the request's URL or
    path: the text is percent-decoded twice (a page may quote a URL it got encoded), and each secret is looked for
    as it is and decoded once and twice (a URL's secret part may be written encoded), before and after decoding.
    Then any word holding ``SECRET_RUN`` characters in a row of a secret's part (between a URL's or a token's
    separators) is written ``***`` too: a part of a secret quoted is a secret quoted."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            once = unquote(secret)
            forms |= {secret, once, unquote(once)}
    ordered = sorted(forms, key=len, reverse=True)
    if not ordered:
        return text  # nothing to hide: the answer's words as they came
    runs = {
        part[start : start + SECRET_RUN].lower()
        for form in forms
        for part in _SECRET_PARTS.split(form)
        for start in range(len(part) - SECRET_RUN + 1)
    }

    def hidden(value: str) -> str:
        for form in ordered:
            value = re.sub(re.escape(form), "***", value, flags=re.IGNORECASE)
        return value

    def word(match: re.Match[str]) -> str:
        lowered = match[0].lower()
        if any(lowered[start : start + SECRET_RUN] in runs for start in range(len(lowered) - SECRET_RUN + 1)):
            return "***"
        return match[0]

    return _WORDS.sub(word, hidden(unquote(unquote(hidden(text)))))


def short_text(response: requests.Response, limit: int = 200, hide: Iterable[str] = ()) -> str:
    """Return the start of an answer's body as one line, for an error reason, with the secrets in ``hide`` redacted
    (in the whole answer, before it is cut, so that no part of one is left at the cut).

    Decoded in the charset its ``Content-Type`` names, else UTF-8, never guessed: ``response.text`` would run charset
    detection over the body of every answer (a sixth of a webhook send's CPU).
    """
    hide = tuple(hide)
    # With secrets to hide, the whole answer (bounded by core.outbound.MAX_ANSWER_BYTES): one cut at the head could
    # split a secret, and its rest, no longer matched, move into the text once earlier copies shrank to ***.
    head = response.content if hide else response.content[: limit * 4]
    try:
        text = head.decode(response.encoding or "utf-8", errors="replace")
    except (LookupError, ValueError):
        # A charset Python does not know, or a codec that is not a text encoding (idna, punycode, undefined: they
        # raise UnicodeError whatever the errors handler). Never raised: this reads answers to sends that happened.
        text = head.decode("utf-8", errors="replace")
    return " ".join(redact(text, hide)[:limit].split())


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


AWS_MESSAGE_CHARS = 160


def aws_failure(exc: BaseException, what: str) -> DeliveryError:
    """Return the delivery error an AWS failure (one of ``AWS_ERRORS``) means: throttling, 5xx, transport and an
    answer botocore cannot read retryable, others permanent. The reason is the error's code and, for a refusal, AWS's
    message on one line (which identity SES found unverified, which quota was exceeded: the code alone does not say);
    AWS's messages name the request's addresses and ARNs, never credentials."""
    if not isinstance(exc, ClientError):
        if isinstance(exc, BotoCoreError):
            return RetryableDeliveryError(f"{what}: {type(exc).__name__}")
        # ResponseParserError: an answer that is not AWS's (a front end's plain-text 503, say).
        return RetryableDeliveryError(f"{what}: an answer from AWS that could not be read")
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    message = " ".join(str(error.get("Message") or "").split())
    said = f"{what}: {code}" + (f" ({truncate(message, AWS_MESSAGE_CHARS)})" if message and status < 500 else "")
    if code in RETRYABLE_AWS_CODES or status >= 500:
        return RetryableDeliveryError(said, rate_limited=code in THROTTLING_AWS_CODES)
    return PermanentDeliveryError(said)
