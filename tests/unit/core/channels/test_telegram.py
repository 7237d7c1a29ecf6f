"""Unit tests of the Telegram channel (core/channels/telegram.py): rendering and pacing; sending is tested against a
loopback Bot API in tests/integration/core/channels/test_telegram.py."""

from __future__ import annotations

import pytest

from core.channels import ChannelResources, Limit, destination_key
from core.channels.telegram import TelegramChannel
from core.errors import PermanentDeliveryError
from core.models import Content

TOKEN = "123456:telegram-secret-8c1d"
CREDENTIALS = {"bot_token": TOKEN}


def test_telegram_render_inserts_values_unescaped() -> None:
    assert TelegramChannel.render("x $v", {"v": "a<b>&c"}) == Content(text="x a<b>&c")


def test_telegram_rate_limits_one_per_second_per_chat_and_thirty_per_bot(resources: ChannelResources) -> None:
    limits = TelegramChannel(resources).rate_limits({"chat_id": "-100"}, CREDENTIALS, None)

    assert limits == [
        Limit(destination_key("telegram-chat", TOKEN, "-100"), 1.0),
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


def test_telegram_rate_limits_missing_credentials_is_permanent(resources: ChannelResources) -> None:
    with pytest.raises(PermanentDeliveryError):
        TelegramChannel(resources).rate_limits({"chat_id": "-100"}, None, None)
