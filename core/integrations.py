"""Integrations as an admin writes them: per-type targets, credentials and models, validated and discriminated by
``type``; channels parse their stored settings with the same target and credential models."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from core.models import IntegrationType, Strict

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SNS_ARN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:.+$"


# --- targets, credentials and models per type -------------------------------------------------------------------


class EmailTarget(Strict):
    """Where an email goes: recipients and the verified sender."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    to: list[str] = Field(min_length=1, max_length=50)
    sender: str = Field(alias="from")

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _EMAIL.match(address):
                raise ValueError(f"not an email address: {address!r}")
        return value

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if not _EMAIL.search(value.rsplit("<", 1)[-1].rstrip(">").strip()):
            raise ValueError("not an email address")
        return value


class EmailModel(Strict):
    """The templates of an email."""

    subject: str = Field(min_length=1)
    text: str = Field(min_length=1)
    html: str | None = None


class EmptyTarget(Strict):
    """A target with no settings (the Slack webhook URL is a credential)."""


class SlackCredentials(Strict):
    """Secret of a Slack incoming webhook: its URL."""

    webhook_url: SecretStr

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value


class TelegramTarget(Strict):
    """The chat a Telegram bot writes to."""

    chat_id: str = Field(min_length=1, max_length=64)

    @field_validator("chat_id", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class TelegramCredentials(Strict):
    """Secret of a Telegram bot: its token."""

    bot_token: SecretStr = Field(min_length=1)


class WebhookTarget(Strict):
    """The URL a signed webhook is posted to."""

    url: str = Field(pattern=r"^https?://[^\s/$.?#].[^\s]*$", max_length=2048)


class WebhookCredentials(Strict):
    """Secret a webhook receiver uses to verify the signature."""

    signing_secret: SecretStr = Field(min_length=16)


class PushTarget(Strict):
    """An SNS platform endpoint or an SNS topic: exactly one of the two."""

    endpoint_arn: str | None = Field(default=None, pattern=_SNS_ARN)
    topic_arn: str | None = Field(default=None, pattern=_SNS_ARN)

    @model_validator(mode="after")
    def _exactly_one(self) -> PushTarget:
        if (self.endpoint_arn is None) == (self.topic_arn is None):
            raise ValueError("give exactly one of endpoint_arn and topic_arn")
        return self


# --- integrations as an admin writes them -----------------------------------------------------------------------


class IntegrationBase(Strict):
    """Fields every integration has."""

    name: str = Field(pattern=NAME_PATTERN)

    secret_fields: ClassVar[tuple[str, ...]] = ()

    def credentials_dict(self) -> dict[str, str] | None:
        """Return the secret values to store, or ``None`` when this integration has none."""
        credentials = getattr(self, "credentials", None)
        if credentials is None:
            return None
        return {
            key: value.get_secret_value() if isinstance(value, SecretStr) else str(value) for key, value in credentials
        }


class EmailIntegration(IntegrationBase):
    """Email through SES."""

    type: Literal[IntegrationType.EMAIL]
    target: EmailTarget
    model: EmailModel


class SlackIntegration(IntegrationBase):
    """A Slack incoming webhook."""

    type: Literal[IntegrationType.SLACK]
    target: EmptyTarget = Field(default_factory=EmptyTarget)
    credentials: SlackCredentials
    model: str = Field(min_length=1)


class TelegramIntegration(IntegrationBase):
    """A Telegram chat, written to by a bot."""

    type: Literal[IntegrationType.TELEGRAM]
    target: TelegramTarget
    credentials: TelegramCredentials
    model: str = Field(min_length=1)


class WebhookIntegration(IntegrationBase):
    """A signed HTTP POST to a URL."""

    type: Literal[IntegrationType.WEBHOOK]
    target: WebhookTarget
    credentials: WebhookCredentials | None = None
    model: str | dict[str, Any] | list[Any]


class PushIntegration(IntegrationBase):
    """Mobile push through SNS: one platform endpoint or a topic."""

    type: Literal[IntegrationType.PUSH]
    target: PushTarget
    model: str | dict[str, Any]


IntegrationSpec = Annotated[
    EmailIntegration | SlackIntegration | TelegramIntegration | WebhookIntegration | PushIntegration,
    Field(discriminator="type"),
]


class TopicRequest(Strict):
    """Body of ``PUT /v1/channels/{channel}/topics/{topic}``."""

    integrations: list[IntegrationSpec] = Field(min_length=1, max_length=100)

    @field_validator("integrations")
    @classmethod
    def _unique_names(cls, value: list[IntegrationSpec]) -> list[IntegrationSpec]:
        seen: set[str] = set()
        for integration in value:
            if integration.name in seen:
                raise ValueError(f"two integrations are named {integration.name!r}")
            seen.add(integration.name)
        return value


CREDENTIAL_FIELDS: dict[IntegrationType, tuple[str, ...]] = {
    IntegrationType.SLACK: tuple(SlackCredentials.model_fields),
    IntegrationType.TELEGRAM: tuple(TelegramCredentials.model_fields),
    IntegrationType.WEBHOOK: tuple(WebhookCredentials.model_fields),
}
