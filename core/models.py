"""Domain models: stored integrations and topics, the delivery message, ledger statuses, the publish request.

Every model's validator is built on first use (``defer_build``): a function builds the few it parses, at its first
invocation, not all of them at import.

The schema an admin writes integrations in is built from the channels' own models in ``core.channels``; the bases of
request and response models, names and the text a message can carry are ``core.validation``'s.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from core.validation import TEXT_RULE, UNSENDABLE, Strict, refuse_text


class IntegrationType(StrEnum):
    """The channels a topic can deliver to."""

    EMAIL = "email"
    SLACK = "slack"
    TELEGRAM = "telegram"
    WEBHOOK = "webhook"
    PUSH = "push"
    BROWSER = "browser"
    SUBSCRIBERS = "subscribers"


# --- what is stored and what travels --------------------------------------------------------------------------


class Integration(BaseModel):
    """An integration as stored: secrets replaced by the name of the parameter holding them."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str
    type: IntegrationType
    model: Any
    target: dict[str, Any] = Field(default_factory=dict)
    credentials_ref: str | None = None
    rate_per_second: float | None = None


class Topic(BaseModel):
    """A channel/topic and its integrations, as the registry holds it."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    channel: str
    topic: str
    integrations: list[Integration]
    hash_sha256: str
    created_at: str
    updated_at: str


class Content(BaseModel):
    """What a channel sends: rendered text, and for some types a subject, html or a structured payload."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    text: str | None = None
    subject: str | None = None
    html: str | None = None
    data: Any = None


class MessageIntegration(BaseModel):
    """The part of an integration a delivery message carries: never a secret, only its reference."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str
    type: IntegrationType
    target: dict[str, Any] = Field(default_factory=dict)
    credentials_ref: str | None = None
    rate_per_second: float | None = Field(default=None, gt=0)


class Recipient(BaseModel):
    """Whom an audience delivery is for; absent on topic integrations. ``address`` is never a secret."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    user_id: str = Field(min_length=1)
    device_id: str | None = None
    address: str | None = None


def _is_zero(count: int) -> bool:
    """Whether a count is 0 (then a body leaves it out)."""
    return count == 0


# DynamoDB's limits on the ledger's key, in bytes of UTF-8: its partition key (the notification id) and its sort key
# (the delivery key). A message naming a longer id could never have a row: the consumer buries it as malformed.
NOTIFICATION_ID_BYTES = 2048
DELIVERY_KEY_BYTES = 1024
# Where the times of a delivery message lie: every time the service writes does, and adding a retry window to one or
# formatting it in UTC again stays within what ``datetime`` holds (a year past 9999 once UTC, a year 0, would not).
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(3000, 1, 1, tzinfo=UTC)


def _utf8_within(limit: int) -> AfterValidator:
    """Return a validator of a string of at most ``limit`` bytes of UTF-8 (pydantic refuses lone surrogates first)."""

    def check(value: str) -> str:
        if len(value.encode()) > limit:
            raise PydanticCustomError("too_long_bytes", "must be at most {limit} bytes of UTF-8", {"limit": limit})
        return value

    return AfterValidator(check)


def _checked_time(value: str) -> str:
    """Return an ISO 8601 time (UTC when it names no offset) that lies from ``EARLIEST_TIME`` to ``LATEST_TIME``."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("iso_time", "must be an ISO 8601 time") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if not EARLIEST_TIME <= moment < LATEST_TIME:
        raise PydanticCustomError(
            "time_range",
            "must lie from {earliest} to {latest}",
            {"earliest": EARLIEST_TIME.isoformat(), "latest": LATEST_TIME.isoformat()},
        )
    return value


NotificationId = Annotated[str, Field(min_length=1), _utf8_within(NOTIFICATION_ID_BYTES)]
DeliveryKey = Annotated[str, Field(min_length=1), _utf8_within(DELIVERY_KEY_BYTES)]
MessageTime = Annotated[str, AfterValidator(_checked_time)]


class RecordedOutcome(BaseModel):
    """An outcome the consumer could not write to the ledger when it happened (DynamoDB failed after the send), carried
    by a copy of its message that only writes it: no send. ``attempts`` counts the run's attempts as the message's
    ``attempt`` does; ``at`` is when the outcome happened (ISO 8601 UTC); ``tries`` how often writing it failed."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    status: Literal["delivered", "failed", "dead"]
    attempts: int = Field(ge=0)
    at: MessageTime
    last_error: str | None = None
    provider_message_id: str | None = None
    tries: int = Field(default=1, ge=1)


class DeliveryMessage(BaseModel):
    """The body of a message on the delivery queue (version 2 of the contract in DESIGN.md).

    ``attempt`` counts the attempts made before this copy; ``not_before`` is when the next one may start. The consumer
    sends a new copy for each retry, so these two, not SQS's receive count, decide retries. ``slot_reserved`` says that
    ``not_before`` is a send slot already taken from the destination's pace (``slot_partial``: from its strictest limit
    only, the broader ones taken when it comes back); ``window_start`` (default ``created_at``) is when the retry
    window opened, moved by a redrive.

    A redrive starts a new run of attempts: ``attempt`` goes back to 0 and the window reopens, so the retry policy
    gets a fresh budget, while ``prior_attempts`` keeps the attempts of the runs before and ``redriven`` counts the
    redrives. The ledger's count is ``prior_attempts`` + the attempts of this run; both fields default to 0, so a body
    written before them still parses.

    ``throttled`` counts the rate-limited answers (429, throttling) in a row before this copy: they are no attempts,
    but each waits longer than the one before (``RetryPolicy.decide``).

    ``outcome``, absent on every message but one kind, makes the message a record-only copy: the consumer writes that
    outcome to the delivery's row and sends nothing (``RecordedOutcome``).

    The ids fit the ledger's key (``NOTIFICATION_ID_BYTES``, ``DELIVERY_KEY_BYTES``) and the times are ISO 8601 within
    ``EARLIEST_TIME`` and ``LATEST_TIME``: a body naming others is malformed, buried with the fields named, rather
    than a delivery the ledger refuses or a time the consumer cannot compute with.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    v: Literal[2] = 2
    notification_id: NotificationId
    delivery_key: DeliveryKey
    channel: str
    topic: str
    created_at: MessageTime
    integration: MessageIntegration
    recipient: Recipient | None = None
    content: Content
    attempt: int = Field(default=0, ge=0)
    not_before: MessageTime | None = None
    slot_reserved: bool = False
    # Left out while false: a body of an older consumer holds every limit's slot.
    slot_partial: bool = Field(default=False, exclude_if=_is_zero)
    window_start: MessageTime | None = None
    # When an audience delivery's audience was read (its page's read, set by the expansion; a message of an older
    # expansion has none, and its first redrive sets its ``window_start``), kept by a redrive, which moves
    # ``window_start``: a user deleted after it is not sent to.
    expanded_at: MessageTime | None = None
    # Left out of a body while 0: a delivery never redriven travels as it did before these fields.
    prior_attempts: int = Field(default=0, ge=0, exclude_if=_is_zero)
    redriven: int = Field(default=0, ge=0, exclude_if=_is_zero)
    throttled: int = Field(default=0, ge=0, exclude_if=_is_zero)
    outcome: RecordedOutcome | None = None

    @property
    def audience_read_at(self) -> str:
        """When an audience delivery's audience was read: ``expanded_at`` once redriven, else when its run began."""
        return self.expanded_at or self.window_start or self.created_at


class DeliveryMessageV1(BaseModel):
    """A version 1 body, still read when it is on the queue as version 2 is deployed."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    v: Literal[1] = 1
    notification_id: NotificationId
    channel: str
    topic: str
    created_at: MessageTime
    integration: MessageIntegration
    content: Content

    def upgraded(self, attempts_made: int) -> DeliveryMessage:
        """Return the same delivery as version 2: its key is the integration name."""
        return DeliveryMessage(
            notification_id=self.notification_id,
            delivery_key=self.integration.name,
            channel=self.channel,
            topic=self.topic,
            created_at=self.created_at,
            integration=self.integration,
            content=self.content,
            attempt=attempts_made,
        )


class DeliveryStatus(StrEnum):
    """Where a delivery stands in the ledger."""

    QUEUED = "queued"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"
    DEAD = "dead"
    SKIPPED = "skipped"
    # Not written, only read: a delivery the record expects whose row is gone (rows are kept the ledger's days after
    # their last change) while the record was kept longer for another delivery of it (a redrive, a far pacing wait).
    EXPIRED = "expired"


class PublishRequest(Strict):
    """Body of ``POST /v1/notifications/{channel}/{topic}``."""

    # Metadata is rendered, serialised and hashed by code that recurses once per level; no template needs more.
    max_metadata_depth: ClassVar[int] = 32

    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _check_depth(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        """Refuse metadata nested deeper than ``max_metadata_depth`` levels (its own object is the first)."""
        pending: list[tuple[Any, int]] = [(metadata, 1)]
        while pending:
            value, depth = pending.pop()
            if depth > cls.max_metadata_depth:
                raise PydanticCustomError(
                    "too_deep",
                    "must not be nested deeper than {limit} levels",
                    {"limit": cls.max_metadata_depth},
                )
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
        return metadata

    @field_validator("metadata")
    @classmethod
    def _check_text(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        """Refuse a string, value or key, that a delivery message could not carry, naming where it is."""
        return refuse_text(metadata, UNSENDABLE, TEXT_RULE, cls.__name__)


# The two bodies that are a JSON object of any keys are models whose extra keys are the body (the JSON schema of
# ``RootModel[dict[...]]``, with an empty ``properties`` added): a RootModel would load pydantic's root_model and
# generics, about 1 ms of every cold start importing this module, to describe two routes in the OpenAPI document.
class PublishResponse(BaseModel):
    """Body of a publish's 200: integration name → SQS message id."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    __pydantic_extra__: dict[str, str] = Field(init=False)
