"""A topic's subscribed users (``PUT /v1/users/{id}/subscriptions/{channel}/{topic}``) as one of its integrations.

A publish reaches them through this integration: it is rendered like any other (``model.text`` and ``model.subject``
are templates of the publish's metadata), and its delivery hands the notification's subscribers to the audience
expansion worker (a ``subscribers`` job on the expansion queue), which pages them and enqueues one delivery per
recipient and channel under the same notification (``push:<user id>:<device id>``…), as ``POST /v1/sends`` to
``{"topic": …}`` does. This integration's own row says ``delivered`` once the job is on the queue; the recipients'
rows follow. A stage without an audience (no expansion queue) fails it, permanently, saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from core.channels.base import Channel, DeliveryReceipt, IntegrationBase, Limit, require_text
from core.errors import (
    ContentTooLongError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    UnsendableContentError,
    UpstreamError,
)
from core.models import Content, IntegrationType
from core.templates import render
from core.validation import Strict

AudienceChannel = Literal["push", "email", "telegram", "browser"]
# A text and a subject, rendered or not, as POST /v1/sends takes them (core/audience/sends.py's SendContent).
MAX_TEXT = 4096
MAX_SUBJECT = 998


class SubscribersTarget(Strict):
    """The channels the subscribers are reached on: ``push`` (every enabled device) unless told otherwise."""

    channels: list[AudienceChannel] = Field(default=["push"], min_length=1, max_length=4)

    @field_validator("channels")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("must not repeat a channel")
        return value


class SubscribersModel(Strict):
    """What the subscribers are sent: a text (a push's body) and a subject (its title, an email's subject)."""

    text: str = Field(min_length=1, max_length=MAX_TEXT)
    subject: str | None = Field(default=None, min_length=1, max_length=MAX_SUBJECT)


class SubscribersIntegration(IntegrationBase):
    """The users subscribed to this channel/topic."""

    type: Literal[IntegrationType.SUBSCRIBERS]
    target: SubscribersTarget = Field(default_factory=SubscribersTarget)
    model: SubscribersModel

    @field_validator("model")
    @classmethod
    def _subject_for_email(cls, value: SubscribersModel, info: ValidationInfo) -> SubscribersModel:
        # Told when the topic is saved, not by every subscriber's email failing at each publish.
        target = info.data.get("target")
        if target is not None and "email" in target.channels and value.subject is None:
            raise ValueError("subject is required when the subscribers are reached by email (target.channels)")
        return value


class SubscribersChannel(Channel):
    """Hands a notification's subscribers to the expansion worker; it paces the recipients' own deliveries."""

    type: ClassVar[str] = IntegrationType.SUBSCRIBERS.value
    integration_model = SubscribersIntegration

    @classmethod
    def render(cls, model: Any, values: Mapping[str, Any]) -> Content:
        """Render the text and the subject; nothing is escaped (the recipients' channels escape what they need)."""
        subject = model.get("subject")
        content = Content(
            text=render(model["text"], values, path="model.text"),
            subject=render(subject, values, path="model.subject") if subject else None,
        )
        # Refused as every recipient's channel would refuse it: no text; a subject the model names (its email needs one)
        # rendering empty; NUL, which the audience's database cannot keep (the send failed at once, or at expansion).
        require_text(content.text, "model.text")
        if subject:
            require_text(content.subject, "model.subject")
        for field, text in (("text", content.text), ("subject", content.subject)):
            if text is not None and "\x00" in text:
                raise UnsendableContentError(f"model.{field} renders NUL (U+0000), which the audience cannot keep")
        # Bounded as POST /v1/sends bounds them: each recipient's push carries the text five times (its text and each
        # platform's payload), and a text longer than a message takes would fail the whole send at its expansion.
        for field, text, limit in (("text", content.text, MAX_TEXT), ("subject", content.subject, MAX_SUBJECT)):
            if text is not None and len(text) > limit:
                raise ContentTooLongError(
                    f"model.{field} renders to {len(text)} characters with this metadata; a subscribers integration "
                    f"sends at most {limit}"
                )
        return content

    def rate_limits(
        self, target: Mapping[str, Any], credentials: Mapping[str, Any] | None, rate_per_second: float | None
    ) -> list[Limit]:
        """Return no limit: one job per notification; the recipients' deliveries are paced by their own channels."""
        return []

    def send(
        self,
        content: Content,
        target: Mapping[str, Any],
        credentials: Mapping[str, Any] | None,
        *,
        notification_id: str,
        delivery_key: str,
    ) -> DeliveryReceipt:
        """Put the notification's subscribers job on the expansion queue; return its message id."""
        handoff = self._resources.handoff
        if handoff is None:
            raise PermanentDeliveryError("subscribers: this stage has no audience (no expansion queue)")
        if not content.text:
            raise PermanentDeliveryError("subscribers: no text to send")
        if "\x00" in content.text or "\x00" in (content.subject or ""):
            # The send is recorded in the audience's database, whose text cannot hold NUL: its expansion would fail
            # on every try. A publish may carry NUL to other channels; here it is a permanent failure, told at once.
            raise PermanentDeliveryError("subscribers: the text holds NUL (U+0000), which the audience cannot keep")
        channels = target.get("channels") or ["push"]
        try:
            return DeliveryReceipt(handoff(notification_id, content, list(channels)))
        except UpstreamError as exc:
            raise RetryableDeliveryError(f"subscribers: {exc}") from None
