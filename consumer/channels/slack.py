"""Slack through an incoming webhook: the webhook URL is the credential."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from consumer.channels.base import Channel, DeliveryReceipt, classify_status, parse_settings, post, short_text, truncate
from core.errors import PermanentDeliveryError
from core.integrations import SlackCredentials
from core.models import Content

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


class SlackChannel(Channel):
    """Posts text to a Slack incoming webhook; the text arrives escaped (``&``, ``<``, ``>``) from the producer."""

    type: ClassVar[str] = "slack"
    max_text_length: ClassVar[int] = 40000

    def send(
        self,
        content: Content,
        target: Mapping[str, Any],
        credentials: Mapping[str, Any] | None,
        *,
        notification_id: str,
    ) -> DeliveryReceipt:
        """Post the text; 429 and 5xx are retryable, other 4xx and revoked or archived hooks permanent."""
        if credentials is None:
            raise PermanentDeliveryError("slack: credentials are missing")
        url = parse_settings(SlackCredentials, credentials, "credentials").webhook_url.get_secret_value()
        if not content.text:
            raise PermanentDeliveryError("slack: no text to send")
        response = post(self._resources.http, url, "slack", json={"text": truncate(content.text, self.max_text_length)})
        answer = short_text(response, 100)
        if response.status_code < 500 and answer in PERMANENT_ANSWERS:
            raise PermanentDeliveryError(f"slack: HTTP {response.status_code} {answer}")
        classify_status(response, "slack", answer)
        return DeliveryReceipt()
