"""Telegram through the Bot API's ``sendMessage``; the bot token is the credential and sits in the URL path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import requests

from consumer.channels.base import Channel, DeliveryReceipt, parse_settings, post, retry_after_seconds, truncate
from core.errors import PermanentDeliveryError, RetryableDeliveryError
from core.integrations import TelegramCredentials, TelegramTarget
from core.models import Content


def _answer(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class TelegramChannel(Channel):
    """Sends text to a chat; errors are named by the Bot API's description, which never holds the token."""

    type: ClassVar[str] = "telegram"
    max_text_length: ClassVar[int] = 4096

    def send(
        self,
        content: Content,
        target: Mapping[str, Any],
        credentials: Mapping[str, Any] | None,
        *,
        notification_id: str,
    ) -> DeliveryReceipt:
        """Send the text; 429 waits ``parameters.retry_after``, 5xx retries, a missing or blocked chat is permanent."""
        chat = parse_settings(TelegramTarget, target, "target")
        if credentials is None:
            raise PermanentDeliveryError("telegram: credentials are missing")
        token = parse_settings(TelegramCredentials, credentials, "credentials").bot_token.get_secret_value()
        if not content.text:
            raise PermanentDeliveryError("telegram: no text to send")
        url = f"{self._resources.telegram_api_base.rstrip('/')}/bot{token}/sendMessage"
        payload = {"chat_id": chat.chat_id, "text": truncate(content.text, self.max_text_length)}
        response = post(self._resources.http, url, "telegram", json=payload)
        answer = _answer(response)
        if 200 <= response.status_code < 300 and answer.get("ok") is True:
            message_id = (answer.get("result") or {}).get("message_id")
            return DeliveryReceipt(str(message_id) if message_id is not None else None)
        description = " ".join(str(answer.get("description") or "").replace(token, "***").split())[:200]
        reason = f"telegram: HTTP {response.status_code}" + (f" {description}" if description else "")
        parameters = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
        if response.status_code == 429:
            delay = parameters.get("retry_after") if parameters else None
            if not isinstance(delay, int | float):
                delay = retry_after_seconds(response.headers.get("Retry-After"))
            raise RetryableDeliveryError(reason, float(delay) if delay is not None else None)
        if response.status_code >= 500:
            raise RetryableDeliveryError(reason)
        raise PermanentDeliveryError(reason)
