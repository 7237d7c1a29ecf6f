"""Telegram through the Bot API's ``sendMessage``; the bot token is the credential and sits in the URL path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

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
    redact,
    render_text_or_data,
    require_text,
    retry_after_seconds,
    truncate,
)
from core.errors import PermanentDeliveryError, RetryableDeliveryError
from core.models import Content, IntegrationType
from core.validation import TELEGRAM_CHAT, TELEGRAM_CHAT_RULE, Strict

if TYPE_CHECKING:
    import requests

# The pacing key of a bot's own limit (30 a second over all its chats).
_BOT_KEY_KIND = "telegram-bot"


class TelegramTarget(Strict):
    """The chat a Telegram bot writes to."""

    chat_id: str = Field(min_length=1, max_length=64)

    @field_validator("chat_id", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("chat_id")
    @classmethod
    def _chat(cls, value: str) -> str:
        # As a user's telegram_chat_id: any other text (a 31-digit number, a name with spaces) was saved, then
        # refused by Telegram at every delivery.
        if not TELEGRAM_CHAT.fullmatch(value):
            raise ValueError(TELEGRAM_CHAT_RULE)
        return value


class TelegramCredentials(Strict):
    """Secret of a Telegram bot: its token."""

    bot_token: SecretStr = Field(min_length=1)


class TelegramIntegration(IntegrationBase):
    """A Telegram chat, written to by a bot."""

    type: Literal[IntegrationType.TELEGRAM]
    target: TelegramTarget
    credentials: TelegramCredentials
    model: str = Field(min_length=1)


def _answer(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (ValueError, RecursionError):  # RecursionError: an answer of brackets nested thousands deep
        return {}
    return body if isinstance(body, dict) else {}


class TelegramChannel(Channel):
    """Sends text to a chat; errors are named by the Bot API's description, which never holds the token."""

    type: ClassVar[str] = IntegrationType.TELEGRAM.value
    integration_model = TelegramIntegration
    credentials_model = TelegramCredentials
    max_text_length: ClassVar[int] = 4096
    chat_rate_per_second: ClassVar[float] = 1.0
    # A group (a negative chat id) or a channel (``@name``, or a negative id too): 20 a minute (Telegram's Bots FAQ).
    group_rate_per_second: ClassVar[float] = 20 / 60
    bot_rate_per_second: ClassVar[float] = 30.0

    @classmethod
    def render(cls, model: Any, values: Mapping[str, Any]) -> Content:
        """Render the text; Telegram gets plain text (no parse mode), so nothing is escaped. One that renders no text is
        refused (Telegram answers "message text is empty")."""
        content = render_text_or_data(model, values)
        require_text(content.text)
        return content

    def _settings(self, target: Mapping[str, Any], credentials: Mapping[str, Any] | None) -> tuple[str, str]:
        chat = parse_settings(TelegramTarget, target, "target")
        if credentials is None:
            raise PermanentDeliveryError("telegram: credentials are missing")
        token = parse_settings(TelegramCredentials, credentials, "credentials").bot_token.get_secret_value()
        return chat.chat_id, token

    def rate_limits(
        self, target: Mapping[str, Any], credentials: Mapping[str, Any] | None, rate_per_second: float | None
    ) -> list[Limit]:
        """Return the chat's limit (1 per second, 20 a minute in a group or channel, or the integration's stricter
        rate) and the bot's (30 per second)."""
        chat_id, token = self._settings(target, credentials)
        declared = self.group_rate_per_second if chat_id.startswith(("-", "@")) else self.chat_rate_per_second
        chat = limit_at(destination_key("telegram-chat", token, chat_id), declared, rate_per_second)
        return [*chat, Limit(destination_key(_BOT_KEY_KIND, token), self.bot_rate_per_second)]

    def throttled(self, limits: list[Limit]) -> list[Limit]:
        """Return the chat's limits only: a chat's flood wait (a busy group's 20 a minute, a retry_after of minutes or
        hours) holds that chat, never the bot's other chats. A flood of the whole bot shows as 429s in each chat,
        and each chat then holds itself."""
        return [limit for limit in limits if not limit.key.startswith(_BOT_KEY_KIND + ":")]

    def send(
        self,
        content: Content,
        target: Mapping[str, Any],
        credentials: Mapping[str, Any] | None,
        *,
        notification_id: str,
        delivery_key: str,
    ) -> DeliveryReceipt:
        """Send the text; 429 waits ``parameters.retry_after``, 5xx retries, a missing or blocked chat is permanent."""
        chat_id, token = self._settings(target, credentials)
        if content.text is None or not content.text.strip():
            raise PermanentDeliveryError("telegram: no text to send")
        url = f"{self._resources.telegram_api_base.rstrip('/')}/bot{token}/sendMessage"
        payload = {"chat_id": chat_id, "text": truncate(content.text, self.max_text_length)}
        response = post(self._resources.http, url, "telegram", json=payload)
        answer = _answer(response)
        if 200 <= response.status_code < 300 and answer.get("ok") is not False:
            # A 2xx is a message sent; its answer, echoing the text, may be cut at MAX_ANSWER_BYTES (no id then).
            result = answer.get("result")
            message_id = result.get("message_id") if isinstance(result, dict) else None
            return DeliveryReceipt(str(message_id) if message_id is not None else None)
        description = " ".join(redact(str(answer.get("description") or ""), (token,)).split())[:200]
        reason = f"telegram: HTTP {response.status_code}" + (f" {description}" if description else "")
        parameters = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
        if response.status_code == 429:
            delay = parameters.get("retry_after") if parameters else None
            if not isinstance(delay, int | float) or isinstance(delay, bool):
                delay = retry_after_seconds(response.headers.get("Retry-After"))
            raise RetryableDeliveryError(reason, delay, rate_limited=True)
        migrated = parameters.get("migrate_to_chat_id") if parameters else None
        if isinstance(migrated, int) and not isinstance(migrated, bool):
            # The group became a supergroup: its new id is what the target must say now.
            raise PermanentDeliveryError(f"{reason} (the chat's id is now {migrated}: set it as the target's chat_id)")
        if not 200 <= response.status_code < 300:
            # The service's rules for the rest: 1xx, 408, 425 and 5xx retried (a Retry-After honoured), others for good.
            classify_status(response, "telegram", description)
        raise PermanentDeliveryError(reason)  # a 2xx whose answer says it is not ok
