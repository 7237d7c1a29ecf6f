"""What requests are checked with: the bases of request and response models, names and their pattern, the text a
delivery message can carry, and each pattern's rule in words (a 422 says it, never the regular expression).

Apart from ``core.models`` (stored topics, the delivery message, the publish request), so that a function that only
validates its own requests and names (the realtime, Stripe, purchase and audience functions) does not define the
delivery message's models at its cold start.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, NoReturn, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

# What a channel, topic, integration or audience name may be (here rather than in ``core.channels``, whose registry
# loads every channel: a function that checks names, such as the cron's, should not pay for them).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NAME_RULE = "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
_NAME = re.compile(NAME_PATTERN)


# A Telegram chat a bot writes to: its number (negative for groups and channels; Telegram's ids fit in 64 bits), or a
# public channel's @name. The topics' Telegram integrations and the users' telegram_chat_id take the same.
# ASCII digits only: Python's \d takes any script's ("١٢٣"), which Telegram resolves to no chat.
TELEGRAM_CHAT = re.compile(r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31}")
TELEGRAM_CHAT_RULE = "is not a Telegram chat id (a number, or @channelname)"


# What each pattern a request field must match allows, in words: a 422 says this, never the regular expression. Each
# domain adds its own patterns where it defines them (the channels' are in ``core.channels.registry``).
PATTERN_RULES: dict[str, str] = {NAME_PATTERN: f"is not a valid name: {NAME_RULE}"}


def is_name(value: str) -> bool:
    """Whether ``value`` is a valid channel, topic, integration or audience name (``NAME_PATTERN``)."""
    return _NAME.fullmatch(value) is not None  # match() would let "$" accept a trailing newline


# What a delivery message cannot carry. SQS takes only #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF;
# a message is JSON, whose escapes carry the other control characters, but U+FFFE and U+FFFF would reach SQS as they
# are, and a lone surrogate (which a JSON escape such as "\ud800" makes) cannot even be encoded as UTF-8.
Value = TypeVar("Value")
UNSENDABLE = re.compile("[\ud800-\udfff\ufffe\uffff]")
TEXT_RULE = "must hold only characters a message can carry: any but lone surrogates (U+D800-U+DFFF), U+FFFE and U+FFFF"
# What no UTF-8 text holds: text that does cannot be encoded, hashed or signed.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def text_matching(value: Any, pattern: re.Pattern[str]) -> tuple[str | int, ...] | None:
    """Return where in a JSON value a string (a value or an object's key) matches ``pattern``, as the keys and indexes
    leading to it (``()``: the value itself); ``None`` when none does. Walked without recursion."""
    pending: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            if pattern.search(item):
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and pattern.search(key):
                    return (*path, key)
                pending.append((child, (*path, key)))
        elif isinstance(item, list | tuple):
            pending.extend((child, (*path, index)) for index, child in enumerate(item))
    return None


def refuse_text(value: Value, pattern: re.Pattern[str], rule: str, title: str) -> Value:
    """Return ``value``, or raise a pydantic ``ValidationError`` located at its first string (a value or an object's
    key, at any depth) that ``pattern`` matches, saying ``rule``.

    Raised by a validator, the error is merged into the model's under the field validated: a 422 names the very place
    (``metadata.x``), which a ``ValueError`` could not.
    """
    path = text_matching(value, pattern)
    if path is None:
        return value
    refuse_at(path, "invalid_text", rule, value, title)


def refuse_at(loc: tuple[str | int, ...], kind: str, rule: str, value: Any, title: str) -> NoReturn:
    """Raise a pydantic ``ValidationError`` of ``kind`` saying ``rule`` at ``loc`` below the field a validator checks,
    which a ``ValueError`` could not name."""
    error = InitErrorDetails(type=PydanticCustomError(kind, rule), loc=loc, input=value)
    raise ValidationError.from_exception_data(title, [error])


# The widest offset a clock on Earth shows (Kiribati, UTC+14; UTC-12): one beyond is a typo, read as another day.
MAX_UTC_OFFSET = timedelta(hours=14)
_NUMBER = re.compile(r"\s*[-+]?\d+(\.\d*)?\s*")


def _date_time_text(value: Any) -> Any:
    # pydantic reads a number, or text of digits, as seconds (or milliseconds) since 1970: a promotion given
    # "expires_at": 0 expired in 1970, and refused every purchase after.
    if isinstance(value, datetime):
        return value  # made in code, not sent
    if not isinstance(value, str) or _NUMBER.fullmatch(value):
        raise ValueError("must be an ISO 8601 date and time as text (for example 2027-01-15T09:00:00+01:00)")
    return value


def _earthly_offset(value: datetime) -> datetime:
    offset = value.utcoffset()
    if offset is not None and abs(offset) > MAX_UTC_OFFSET:
        raise ValueError("must have a UTC offset from -14:00 to +14:00")
    return value


# A wall-clock date and time, without an offset (a local-time send's, read in each user's zone), as documented: JSON
# Schema's date-time format requires an offset.
_WALL_CLOCK = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
WallClockTime = Annotated[
    datetime,
    WithJsonSchema(
        {"type": "string", "pattern": f"^{_WALL_CLOCK}$", "description": "ISO 8601 date and time without an offset"}
    ),
]
# A date and time a request gives: ISO 8601 text only, its offset (when it has one) one a clock shows; without one, a
# wall-clock time.
DateTimeText = Annotated[
    datetime,
    BeforeValidator(_date_time_text),
    AfterValidator(_earthly_offset),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": f"^{_WALL_CLOCK}(Z|[+-]\\d{{2}}:\\d{{2}})?$",
            "description": "ISO 8601 date and time: with an offset, one instant; without, a wall-clock time",
        }
    ),
]
AwareDateTimeText = Annotated[AwareDatetime, BeforeValidator(_date_time_text), AfterValidator(_earthly_offset)]


class Strict(BaseModel):
    """Base of request models: unknown fields are an error, not silently dropped. Their numbers and flags are pydantic's
    strict types (``StrictInt``, ``StrictFloat``, ``StrictBool``): ``"5"`` is not read as a number nor ``true`` as
    one (it redrove a dead letter as ``max_messages``), nor ``"yes"`` as a flag.

    Their validators are built on first use (``defer_build``), so functions that never parse an admin request (the
    publish route, the consumer) do not pay for building them at cold start.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Reply(BaseModel):
    """Base of response models: they describe what a route returns for the OpenAPI document, built on first use."""

    model_config = ConfigDict(defer_build=True)
