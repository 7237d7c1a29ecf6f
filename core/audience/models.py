"""Models of the audience: what the store returns (users, apps, devices, subscriptions, segments) and the requests
that write them."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    computed_field,
    model_validator,
)

from core.mail import ascii_address
from core.validation import TELEGRAM_CHAT, TELEGRAM_CHAT_RULE, Reply, Strict, refuse_text

Platform = Literal["APNS", "APNS_SANDBOX", "GCM"]
PLATFORMS: tuple[Platform, ...] = ("APNS", "APNS_SANDBOX", "GCM")
# arn:<partition>:sns:<region>:<account>:app/<platform>/<name>, the ARN SNS gives a platform application.
_PLATFORM_APPLICATION_ARN = re.compile(
    r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:app/(?P<platform>APNS|APNS_SANDBOX|GCM)/[A-Za-z0-9_.-]{1,256}"
)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_DATA_BYTES = 16 * 1024
# What one user holds is bounded, so that a user (``GET /v1/users/{id}``, with both) stays far under a Lambda answer's
# 6 MB and a publish reaches a bounded number of devices. Subscriptions: FCM's bound of topics per app instance; a
# subscription more is refused (409). Devices: a registration more removes the user's least recently seen devices
# (disabled ones first) with their endpoints, since tokens rotate and a refused registration would end the user's push.
MAX_SUBSCRIPTIONS_PER_USER = 2000
MAX_DEVICES_PER_USER = 100
SUBSCRIPTIONS_FULL = (
    f"a user has at most {MAX_SUBSCRIPTIONS_PER_USER} subscriptions: delete one (DELETE"
    " /v1/users/{user_id}/subscriptions/{channel}/{topic}) before adding another"
)
# A user id is in each of the user's delivery keys (``push:<user id>:<device id>``, ``email:<user id>``…), the
# ledger's DynamoDB sort key, which holds at most 1024 bytes: the longest prefix and suffix (``push:`` and ``:`` with a
# device id, a UUID) take 42, so the id is bounded in UTF-8 bytes as well as in characters. 768 bytes take any 256
# characters of the Basic Multilingual Plane; only ids with many 4-byte characters (emoji) reach it first.
MAX_USER_ID_BYTES = 768
USER_ID_BYTES_RULE = f"must be at most {MAX_USER_ID_BYTES} bytes of UTF-8 (it is part of each delivery's key)"
# What text the audience keeps cannot hold. PostgreSQL's UTF-8 takes any character, U+FFFE and U+FFFF too, but not
# NUL (text and jsonb refuse it: error 22P05, which names no field) and not a lone surrogate, which is no UTF-8 at all
# (psycopg2 cannot encode it, and jsonb refuses its JSON escape).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
STORED_TEXT_RULE = (
    "must be text the audience can keep: any character but NUL (U+0000) and lone surrogates (U+D800-U+DFFF)"
)
# Text that is kept and also sent (a send's content, an email address, a user id) refuses both sets: what cannot be kept
# and what a delivery message cannot carry (``core.validation.UNSENDABLE``).
UNSENDABLE_OR_UNSTORABLE = re.compile("[\x00\ud800-\udfff\ufffe\uffff]")
SENT_TEXT_RULE = (
    "must hold only characters a message can carry and the audience can keep: any but NUL (U+0000), lone surrogates "
    "(U+D800-U+DFFF), U+FFFE and U+FFFF"
)


class AudienceRequest(Strict):
    """Base of the audience's request models: a body holding a string its text cannot hold is refused, naming where.

    ``refused_text`` and ``text_rule`` say what that is, as class attributes: by default what the store cannot keep; a
    model whose text is sent declares ``UNSENDABLE_OR_UNSTORABLE`` and ``SENT_TEXT_RULE``. The whole body is read
    before any field, so no field's own check (a length, a pattern) answers first in other words.
    """

    refused_text: ClassVar[re.Pattern[str]] = UNSTORABLE
    text_rule: ClassVar[str] = STORED_TEXT_RULE

    @model_validator(mode="before")
    @classmethod
    def _check_text(cls, data: Any) -> Any:
        """Refuse a string, value or key, that the model's text cannot hold."""
        if not isinstance(data, dict):
            return data
        return refuse_text(data, cls.refused_text, cls.text_rule, cls.__name__)


def user_id_bytes(user_id: str) -> str:
    """Return ``user_id``; raise ``ValueError`` when it is longer than ``MAX_USER_ID_BYTES`` in UTF-8."""
    if len(user_id.encode("utf-8", "surrogatepass")) > MAX_USER_ID_BYTES:
        raise ValueError(USER_ID_BYTES_RULE)
    return user_id


# A push token is one key of the devices' unique index on (app, token), whose entries PostgreSQL holds to about
# 2.7 kB: a longer token failed the write (54000) after its SNS endpoint was made. Real tokens are far shorter (APNs 64
# hex characters, FCM about 160).
MAX_TOKEN_BYTES = 2048


def _token_bytes(token: str) -> str:
    # Every platform's token is printable ASCII (APNs hex, FCM's letters, digits and ":_-", a WNS channel URL); a
    # control character or U+FFFF reached SNS, whose answer (XML) could not then carry it back: a 500.
    if not token.isascii() or not token.isprintable() or " " in token:
        raise ValueError("must be a push token: printable ASCII, without spaces")
    if len(token) > MAX_TOKEN_BYTES:
        raise ValueError(f"must be at most {MAX_TOKEN_BYTES} bytes")
    return token


def _time_zone(name: str) -> str:
    # ZoneInfo alone would also take a path-like key that happens to name a file ("posixrules", "Factory"…) or load
    # files on every call; the set of IANA names the machine knows (less those files) is the reference.
    if name not in _zone_names():
        raise ValueError("is not an IANA time zone name (for example Europe/Paris)")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("is not an IANA time zone name (for example Europe/Paris)") from None
    return name


_ZONES: set[str] = set()


# Files of a system's zoneinfo that are no IANA zone: "localtime" is the host's own zone (a link to /etc/localtime),
# so a user's sends would fire at whatever zone the machine reading it runs in; "Factory" is no place's.
_NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})


def _zone_names() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones() - _NOT_ZONES)
    return _ZONES


def _email(value: str) -> str:
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        raise ValueError("is not an email address (write it as name@example.com)")
    # SES sends no SMTPUTF8: a non-ASCII domain goes as punycode, a non-ASCII part before the @ cannot go at all.
    if not value.rpartition("@")[0].isascii():
        raise ValueError("must have an ASCII part before the @ (SES sends to no other); the domain may be any script")
    # What the email channel sends to, no looser: an address it refuses (a 65-character local part, a 64-character
    # label, two dots in a row) was stored, and every email delivery to the user then failed.
    ascii_address(value)
    # The address travels in each of the user's email deliveries (their recipient and target).
    if UNSENDABLE_OR_UNSTORABLE.search(value):
        raise ValueError(SENT_TEXT_RULE)
    return value


def _telegram_chat(value: Any) -> Any:
    # Telegram's numeric ids come as JSON numbers from most callers; they are stored as text.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _chat_id(value: str) -> str:
    if not TELEGRAM_CHAT.fullmatch(value):
        raise ValueError(TELEGRAM_CHAT_RULE)
    return value


def _data(value: dict[str, Any]) -> dict[str, Any]:
    # Bytes of UTF-8, as stored and sent: json's default escapes counted "é" as 6 and an emoji as 12.
    encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_DATA_BYTES:
        raise ValueError(f"is larger than {MAX_DATA_BYTES} bytes of JSON")
    return value


TimeZoneName = Annotated[str, AfterValidator(_time_zone)]
Email = Annotated[str, AfterValidator(_email)]
TelegramChatId = Annotated[str, BeforeValidator(_telegram_chat), AfterValidator(_chat_id)]
UserData = Annotated[dict[str, Any], AfterValidator(_data)]


def platform_of(arn: str) -> Platform:
    """Return the platform named in an SNS platform application ARN; raise ``ValueError`` when it is not one."""
    found = _PLATFORM_APPLICATION_ARN.fullmatch(arn)
    if found is None:
        raise ValueError(
            "is not an SNS platform application ARN (arn:aws:sns:<region>:<account>:app/APNS|APNS_SANDBOX|GCM/<name>)"
        )
    platform: Platform = found["platform"]  # type: ignore[assignment]
    return platform


def _platform_application_arn(arn: str) -> str:
    platform_of(arn)
    return arn


class UserRequest(AudienceRequest):
    """The body of ``PUT /v1/users/{user_id}``: the user's time zone, addresses and the data segments match on."""

    timezone: TimeZoneName = Field(max_length=64)
    email: Email | None = None
    telegram_chat_id: TelegramChatId | None = None
    data: UserData = Field(default_factory=dict)


class DeviceRequest(AudienceRequest):
    """The body of ``POST /v1/users/{user_id}/devices``: the app and the push token the device got from it."""

    app: str = Field(min_length=1, max_length=128)
    token: Annotated[str, AfterValidator(_token_bytes)] = Field(min_length=1, max_length=MAX_TOKEN_BYTES)


class AppRequest(AudienceRequest):
    """The body of ``PUT /v1/apps/{app}``: the SNS platform application, whose ARN names the platform."""

    platform_application_arn: Annotated[str, AfterValidator(_platform_application_arn)]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def platform(self) -> Platform:
        """The platform named in the ARN."""
        return platform_of(self.platform_application_arn)


class App(Reply):
    """A mobile app: the SNS platform application its devices' endpoints are created on."""

    model_config = ConfigDict(frozen=True)

    name: str
    platform: Platform
    platform_application_arn: str
    created_at: datetime
    updated_at: datetime


class Device(Reply):
    """A device of a user: the push token of one app and its SNS endpoint."""

    model_config = ConfigDict(frozen=True)

    device_id: str
    user_id: str
    app: str
    platform: Platform
    token: str
    endpoint_arn: str
    enabled: bool
    last_seen: datetime
    created_at: datetime


class Subscription(Reply):
    """A user's subscription to a channel/topic: a publish there reaches the user too."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    channel: str
    topic: str
    created_at: datetime


class User(Reply):
    """A user of the team's product, with its devices and subscriptions when read alone (``get_user``)."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    timezone: str
    email: str | None = None
    telegram_chat_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    devices: list[Device] = Field(default_factory=list)
    subscriptions: list[Subscription] = Field(default_factory=list)


class UserPage(BaseModel):
    """One page of users in id order; ``next_after`` is the id to continue after, ``None`` on the last page."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    users: list[User]
    next_after: str | None


class Segment(Reply):
    """A named segment: its definition as the request gave it (``{"where": …}``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    definition: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class Registration(BaseModel):
    """What registering a device did: the device, and whether the token was new to the app (``created``).

    ``previous_user_id`` names the user the device was moved from, when it belonged to another; ``removed`` holds the
    user's devices removed to keep it at ``MAX_DEVICES_PER_USER`` (their endpoints are to be deleted too).
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    device: Device
    created: bool
    previous_user_id: str | None = None
    removed: tuple[Device, ...] = ()
