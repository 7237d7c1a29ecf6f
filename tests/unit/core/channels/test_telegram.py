"""Unit tests of the Telegram channel (core/channels/telegram.py): rendering and pacing; sending is tested against a
loopback Bot API in tests/integration/core/channels/test_telegram.py."""

from __future__ import annotations

import pytest
import requests

from core.channels import ChannelResources, DeliveryReceipt, Limit, destination_key
from core.channels.telegram import TelegramChannel
from core.errors import MAX_RETRY_AFTER_SECONDS, PermanentDeliveryError, RetryableDeliveryError
from core.models import Content

TOKEN = "123456:telegram-secret-8c1d"
CREDENTIALS = {"bot_token": TOKEN}


def test_telegram_render_inserts_values_unescaped() -> None:
    assert TelegramChannel.render("x $v", {"v": "a<b>&c"}) == Content(text="x a<b>&c")


def test_telegram_rate_limits_one_per_second_per_chat_and_thirty_per_bot(resources: ChannelResources) -> None:
    limits = TelegramChannel(resources).rate_limits({"chat_id": "100"}, CREDENTIALS, None)

    assert limits == [
        Limit(destination_key("telegram-chat", TOKEN, "100"), 1.0),
        Limit(destination_key("telegram-bot", TOKEN), 30.0),
    ]


def test_telegram_rate_limits_keys_hold_no_token(resources: ChannelResources) -> None:
    limits = TelegramChannel(resources).rate_limits({"chat_id": "-100"}, CREDENTIALS, None)

    assert not any("telegram-secret" in limit.key or "123456" in limit.key for limit in limits)


def test_telegram_rate_limits_two_chats_of_one_bot_share_bot_key(resources: ChannelResources) -> None:
    channel = TelegramChannel(resources)

    first = channel.rate_limits({"chat_id": "-100"}, CREDENTIALS, None)
    second = channel.rate_limits({"chat_id": "-200"}, CREDENTIALS, None)

    assert (first[0].key != second[0].key, first[1].key == second[1].key) == (True, True)


def test_telegram_rate_limits_same_chat_of_two_bots_differ(resources: ChannelResources) -> None:
    channel = TelegramChannel(resources)

    first = channel.rate_limits({"chat_id": "-100"}, CREDENTIALS, None)
    second = channel.rate_limits({"chat_id": "-100"}, {"bot_token": "654321:other"}, None)

    assert first[0].key != second[0].key


def test_telegram_rate_limits_integration_rate_slows_chat_only(resources: ChannelResources) -> None:
    limits = TelegramChannel(resources).rate_limits({"chat_id": -100}, CREDENTIALS, 0.25)

    assert [limit.per_second for limit in limits] == [0.25, 30.0]


def test_telegram_rate_limits_invalid_target_is_permanent(resources: ChannelResources) -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        TelegramChannel(resources).rate_limits({}, CREDENTIALS, None)

    assert raised.value.reason == "invalid target: chat_id"


def test_telegram_target_chat_of_digits_of_another_script_refused(resources: ChannelResources) -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        TelegramChannel(resources).rate_limits({"chat_id": "\uff11\uff12\uff13"}, CREDENTIALS, None)

    assert raised.value.reason == "invalid target: chat_id"


def test_telegram_rate_limits_missing_credentials_is_permanent(resources: ChannelResources) -> None:
    with pytest.raises(PermanentDeliveryError):
        TelegramChannel(resources).rate_limits({"chat_id": "-100"}, None, None)


# --- answers after a message was sent -------------------------------------------------------------------------------


class _AnsweringSession:
    """An outbound session that answers every POST with ``status`` and a JSON ``body``, its body read."""

    def __init__(self, status: int, body: bytes) -> None:
        self._status = status
        self._body = body

    def post(self, url: str, **kwargs: object) -> requests.Response:
        response = requests.Response()
        response.status_code = self._status
        response._content = self._body
        response.headers["Content-Type"] = "application/json"
        return response


def _send_answered(status: int, body: bytes) -> DeliveryReceipt:
    resources = ChannelResources(
        http=_AnsweringSession(status, body),  # type: ignore[arg-type]
        aws_client=lambda _: None,
        telegram_api_base="https://api.telegram.example",
    )
    return TelegramChannel(resources).send(
        Content(text="hi"), {"chat_id": "-100"}, CREDENTIALS, notification_id="n-1", delivery_key="k"
    )


@pytest.mark.parametrize(
    "body",
    [b'{"ok": true, "result": true}', b"[" * 30_000 + b"]" * 30_000],
    ids=["result-not-an-object", "nested-30000-deep"],
)
def test_telegram_200_with_an_odd_answer_is_delivered_without_id(body: bytes) -> None:
    # Raised, the message sent would be retried: the chat would get it twice.
    assert _send_answered(200, body) == DeliveryReceipt(None)


def test_telegram_429_retry_after_beyond_any_float_waits_the_longest_delay() -> None:
    body = b'{"ok": false, "error_code": 429, "parameters": {"retry_after": ' + b"9" * 400 + b"}}"

    with pytest.raises(RetryableDeliveryError) as raised:
        _send_answered(429, body)

    assert (raised.value.rate_limited, raised.value.retry_after) == (True, MAX_RETRY_AFTER_SECONDS)


@pytest.mark.parametrize(
    ("seconds", "bounded"), [(10**400, MAX_RETRY_AFTER_SECONDS), (-(10**400), 0.0)], ids=["huge", "hugely-negative"]
)
def test_retryable_delivery_error_integer_beyond_any_float_is_bounded(seconds: int, bounded: float) -> None:
    assert RetryableDeliveryError("telegram: HTTP 429", seconds).retry_after == bounded
