"""Integration tests of the Telegram channel (core/channels/telegram.py) against a loopback Bot API."""

from __future__ import annotations

import pytest

from core.channels import ChannelResources, DeliveryReceipt
from core.channels.telegram import TelegramChannel
from core.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from core.models import Content
from tests.support.receivers import Answer, Receiver

TOKEN = "123456:telegram-secret-8c1d"


def _send(resources: ChannelResources, text: str = "hi") -> DeliveryReceipt:
    return TelegramChannel(resources).send(
        Content(text=text), {"chat_id": "-100"}, {"bot_token": TOKEN}, notification_id="n-1", delivery_key="k-1"
    )


def _error(code: int, description: str, **parameters: int) -> Answer:
    body = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Answer(code, body)


def test_telegram_ok_returns_message_id(resources: ChannelResources, receiver: Receiver) -> None:
    receiver.script(Answer(200, {"ok": True, "result": {"message_id": 99}}))

    receipt = _send(resources)

    [request] = receiver.requests
    assert (request.path, request.json()) == (f"/bot{TOKEN}/sendMessage", {"chat_id": "-100", "text": "hi"})
    assert receipt.provider_message_id == "99"


def test_telegram_ok_answer_longer_than_what_is_read_is_delivered(
    resources: ChannelResources, receiver: Receiver
) -> None:
    # The Bot API echoes the message and its entities: an answer past 64 KiB is cut, and no longer parses.
    entities = [{"type": "hashtag", "offset": index, "length": 2} for index in range(2000)]
    receiver.script(Answer(200, {"ok": True, "result": {"message_id": 7, "entities": entities}}))

    assert _send(resources).provider_message_id is None


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (_error(400, "Bad Request: chat not found"), PermanentDeliveryError),
        (_error(403, "Forbidden: bot was blocked by the user"), PermanentDeliveryError),
        (_error(401, "Unauthorized"), PermanentDeliveryError),
        (_error(429, "Too Many Requests: retry after 7", retry_after=7), RetryableDeliveryError),
        (_error(500, "Internal Server Error"), RetryableDeliveryError),
        (_error(502, "Bad Gateway"), RetryableDeliveryError),
        (Answer(delay=1.5), RetryableDeliveryError),
        (Answer(reset=True), RetryableDeliveryError),
        # A proxy in front of the Bot API: retried as every channel retries them (they ended the delivery for good).
        (Answer(408, b"<html><h1>408 Request Time-out</h1></html>"), RetryableDeliveryError),
        (Answer(425, b"Too Early"), RetryableDeliveryError),
        (Answer(200, {"ok": False, "description": "Bad Request"}), PermanentDeliveryError),
    ],
    ids=["400-chat-not-found", "403-blocked", "401", "429", "500", "502", "slow", "reset", "408", "425", "200-not-ok"],
)
def test_telegram_answer_is_classified(
    resources: ChannelResources, receiver: Receiver, answer: Answer, kind: type[DeliveryError]
) -> None:
    receiver.script(answer)

    with pytest.raises(DeliveryError) as raised:
        _send(resources)

    assert type(raised.value) is kind


def test_telegram_group_upgraded_to_a_supergroup_fails_naming_its_new_chat_id(
    resources: ChannelResources, receiver: Receiver
) -> None:
    """Telegram names the supergroup the group became; the reason dropped it, leaving nothing to fix the target by."""
    receiver.script(
        _error(400, "Bad Request: group chat was upgraded to a supergroup chat", migrate_to_chat_id=-1009876543210)
    )

    with pytest.raises(PermanentDeliveryError) as raised:
        _send(resources)

    assert "-1009876543210" in raised.value.reason


@pytest.mark.parametrize(("chat_id", "per_minute"), [("-1001234567890", 20), ("@news", 20), ("42", 60)])
def test_telegram_chat_limit_is_20_a_minute_in_a_group_or_channel(
    resources: ChannelResources, chat_id: str, per_minute: int
) -> None:
    """Telegram takes 20 a minute in one group (its Bots FAQ); groups were paced as private chats, at 60."""
    chat, bot = TelegramChannel(resources).rate_limits({"chat_id": chat_id}, {"bot_token": TOKEN}, None)

    assert chat.per_second == pytest.approx(per_minute / 60)
    assert bot.per_second == 30


@pytest.mark.parametrize(
    ("answer", "seconds"),
    [
        (_error(429, "Too Many Requests: retry after 7", retry_after=7), 7),
        # A proxy's 503 before the Bot API: its Retry-After was dropped.
        (Answer(503, b"<html>503 Service Temporarily Unavailable</html>", headers={"Retry-After": "120"}), 120),
    ],
    ids=["429-parameters", "503-header"],
)
def test_telegram_retry_after_is_carried(
    resources: ChannelResources, receiver: Receiver, answer: Answer, seconds: int
) -> None:
    receiver.script(answer)

    with pytest.raises(RetryableDeliveryError) as raised:
        _send(resources)

    assert raised.value.retry_after == seconds


def test_telegram_429_retry_after_true_falls_back_to_the_header(
    resources: ChannelResources, receiver: Receiver
) -> None:
    # JSON's true is a Python int: taken as the answer's delay, it is no delay at all, and the header's would be lost.
    body = {"ok": False, "error_code": 429, "description": "Too Many Requests", "parameters": {"retry_after": True}}
    receiver.script(Answer(429, body, headers={"Retry-After": "7"}))

    with pytest.raises(RetryableDeliveryError) as raised:
        _send(resources)

    assert raised.value.retry_after == 7


def test_telegram_chat_not_found_reason_names_description(resources: ChannelResources, receiver: Receiver) -> None:
    receiver.script(_error(400, "Bad Request: chat not found"))

    with pytest.raises(PermanentDeliveryError) as raised:
        _send(resources)

    assert raised.value.reason == "telegram: HTTP 400 Bad Request: chat not found"


@pytest.mark.parametrize(
    "description",
    [
        f"Not Found: /bot{TOKEN}/sendMessage",
        "Not Found: %2Fbot123456%3Atelegram-secret-8c1d%2FsendMessage",
        f"Not Found: /bot{TOKEN[:-4]}...",
        f"Not Found: invalid token {TOKEN.split(':')[1]}",
    ],
    ids=["plain", "quoted", "cut-short", "after-colon"],
)
def test_telegram_description_quoting_the_token_is_redacted(
    resources: ChannelResources, receiver: Receiver, description: str
) -> None:
    receiver.script(_error(404, description))

    with pytest.raises(PermanentDeliveryError) as raised:
        _send(resources)

    assert "telegram-secret" not in raised.value.reason
    assert raised.value.reason.startswith("telegram: HTTP 404 Not Found: ")


@pytest.mark.parametrize("answer", [Answer(delay=1.5), Answer(reset=True)], ids=["timeout", "reset"])
def test_telegram_transport_failure_hides_token(
    resources: ChannelResources, receiver: Receiver, answer: Answer
) -> None:
    receiver.script(answer)

    with pytest.raises(RetryableDeliveryError) as raised:
        _send(resources)

    assert TOKEN not in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_telegram_long_text_is_cut_to_limit(resources: ChannelResources, receiver: Receiver) -> None:
    receiver.script(Answer(200, {"ok": True, "result": {"message_id": 1}}))

    _send(resources, "x" * 5000)

    assert len(receiver.requests[0].json()["text"]) == TelegramChannel.max_text_length
