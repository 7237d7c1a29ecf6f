"""Slack through an incoming webhook: the webhook URL is the credential."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, SecretStr, field_validator

from core.channels.base import (
    Channel,
    DeliveryReceipt,
    IntegrationBase,
    Limit,
    classify_status,
    destination_key,
    limit_at,
    parse_settings,
    post,
    require_text,
    short_text,
    truncate,
    url_problem,
)
from core.errors import PermanentDeliveryError
from core.models import Content, IntegrationType
from core.templates import render
from core.validation import Strict

# Answers Slack gives for a webhook that will never work again (a revoked app, an archived channel, …).
PERMANENT_ANSWERS = frozenset(
    {
        "invalid_token",
        "channel_is_archived",
        "channel_not_found",
        "no_service",
        "no_service_id",
        "no_team",
        "team_disabled",
        "no_active_hooks",
        "action_prohibited",
        "posting_to_general_channel_denied",
        "user_not_found",
        "invalid_payload",
    }
)


class EmptyTarget(Strict):
    """A target with no settings (the Slack webhook URL is a credential)."""


class SlackCredentials(Strict):
    """Secret of a Slack incoming webhook: its URL."""

    webhook_url: SecretStr

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        # The problem is named, never the URL: its path is the secret.
        problem = url_problem(value.get_secret_value())
        if problem:
            raise ValueError(problem)
        return value


class SlackIntegration(IntegrationBase):
    """A Slack incoming webhook."""

    type: Literal[IntegrationType.SLACK]
    target: EmptyTarget = Field(default_factory=EmptyTarget)
    credentials: SlackCredentials
    model: str = Field(min_length=1)


def escape_slack(text: str) -> str:
    """Escape the three characters Slack's mrkdwn gives meaning to."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel(Channel):
    """Posts text to a Slack incoming webhook; the text arrives escaped (``&``, ``<``, ``>``) from the producer."""

    type: ClassVar[str] = IntegrationType.SLACK.value
    integration_model = SlackIntegration
    credentials_model = SlackCredentials
    max_text_length: ClassVar[int] = 40000
    rate_per_second: ClassVar[float] = 1.0  # per incoming webhook

    @classmethod
    def render(cls, model: Any, values: Mapping[str, Any]) -> Content:
        """Render the text, escaping inserted values (``&``, ``<``, ``>``) so they cannot mention or make links (mrkdwn
        has no escape for ``*``, ``_``, ``~`` or backticks: a value may still format); one that renders no text is
        refused."""
        return Content(text=require_text(render(model, values, escape_slack)))

    def _webhook_url(self, credentials: Mapping[str, Any] | None) -> str:
        if credentials is None:
            raise PermanentDeliveryError("slack: credentials are missing")
        return parse_settings(SlackCredentials, credentials, "credentials").webhook_url.get_secret_value()

    def rate_limits(
        self, target: Mapping[str, Any], credentials: Mapping[str, Any] | None, rate_per_second: float | None
    ) -> list[Limit]:
        """Return one limit per webhook: Slack's 1 per second, or the integration's rate when it is stricter."""
        key = destination_key("slack", self._webhook_url(credentials))
        return limit_at(key, self.rate_per_second, rate_per_second)

    def send(
        self,
        content: Content,
        target: Mapping[str, Any],
        credentials: Mapping[str, Any] | None,
        *,
        notification_id: str,
        delivery_key: str,
    ) -> DeliveryReceipt:
        """Post the text; 429 and 5xx are retryable, other 4xx and revoked or archived hooks permanent."""
        url = self._webhook_url(credentials)
        if content.text is None or not content.text.strip():
            raise PermanentDeliveryError("slack: no text to send")
        response = post(self._resources.http, url, "slack", json={"text": truncate(content.text, self.max_text_length)})
        # The webhook URL is the secret: an error page quoting the request's path or query would put it in the reason.
        parts = urlsplit(url)
        pieces = [*parts.path.split("/"), parts.query, *(value for _, value in parse_qsl(parts.query))]
        answer = short_text(response, 100, hide=(url, parts.path, *(piece for piece in pieces if len(piece) >= 8)))
        if response.status_code < 500 and answer in PERMANENT_ANSWERS:
            raise PermanentDeliveryError(f"slack: HTTP {response.status_code} {answer}")
        classify_status(response, "slack", answer)
        return DeliveryReceipt()
