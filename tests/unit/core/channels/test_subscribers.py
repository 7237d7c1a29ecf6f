"""Unit tests of the subscribers channel (core/channels/subscribers.py): its schema, rendering and hand-off."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import ValidationError

from core.channels import ChannelResources
from core.channels.registry import TopicRequest
from core.channels.subscribers import SubscribersChannel
from core.errors import (
    ContentTooLongError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    UnsendableContentError,
    UpstreamError,
)
from core.models import Content

FOLLOWERS = {"name": "followers", "type": "subscribers", "model": {"text": "Order $order shipped", "subject": "$shop"}}


class _Handoff:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.jobs: list[tuple[str, Content, list[str]]] = []

    def __call__(self, notification_id: str, content: Content, channels: Sequence[str]) -> str:
        if self.fail:
            raise UpstreamError("An error occurs while sending to the expansion queue (Message: SQS: Throttling)")
        self.jobs.append((notification_id, content, list(channels)))
        return f"m-{len(self.jobs)}"


def _channel(handoff: Any) -> SubscribersChannel:
    return SubscribersChannel(
        ChannelResources(http=None, aws_client=lambda _: None, telegram_api_base="", handoff=handoff)  # type: ignore[arg-type]
    )


def _send(channel: SubscribersChannel, target: dict[str, Any]) -> str | None:
    content = SubscribersChannel.render(FOLLOWERS["model"], {"order": "A-1", "shop": "Shop"})
    return channel.send(content, target, None, notification_id="n-1", delivery_key="followers").provider_message_id


def test_subscribers_integration_defaults_to_push() -> None:
    [integration] = TopicRequest.model_validate({"integrations": [FOLLOWERS]}).integrations

    assert integration.model_dump(mode="json")["target"] == {"channels": ["push"]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"target": {"channels": ["push", "push"]}}, "channels"),
        ({"target": {"channels": ["sms"]}}, "channels"),
        ({"target": {"channels": []}}, "channels"),
        ({"model": {"subject": "no text"}}, "text"),
        ({"model": "a string"}, "model"),
        ({"target": {"channels": ["push", "email"]}, "model": {"text": "no subject"}}, "model"),
    ],
)
def test_subscribers_integration_invalid_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        TopicRequest.model_validate({"integrations": [{**FOLLOWERS, **change}]})

    assert any(field in map(str, error["loc"]) for error in raised.value.errors())


def test_subscribers_integration_by_email_with_a_subject_is_accepted() -> None:
    followers = {**FOLLOWERS, "target": {"channels": ["email"]}}

    [integration] = TopicRequest.model_validate({"integrations": [followers]}).integrations

    assert integration.model_dump(mode="json")["model"]["subject"] == "$shop"


def test_topic_with_two_subscribers_integrations_is_refused() -> None:
    second = {**FOLLOWERS, "name": "fans"}

    with pytest.raises(ValidationError, match="both of type 'subscribers'"):
        TopicRequest.model_validate({"integrations": [FOLLOWERS, second]})


def test_subscribers_render_fills_text_and_subject() -> None:
    content = SubscribersChannel.render(FOLLOWERS["model"], {"order": "A-1", "shop": "<Shop>"})

    assert content == Content(text="Order A-1 shipped", subject="<Shop>")


@pytest.mark.parametrize(
    ("values", "field", "length"),
    [
        pytest.param({"order": "x" * 4090, "shop": "Shop"}, "text", 4104, id="text"),
        pytest.param({"order": "A-1", "shop": "s" * 999}, "subject", 999, id="subject"),
    ],
)
def test_subscribers_render_longer_than_a_send_takes_is_refused_naming_the_field(
    values: dict[str, str], field: str, length: int
) -> None:
    # Accepted, it would fail the whole send at its expansion: each push carries the text five times.
    with pytest.raises(ContentTooLongError) as raised:
        SubscribersChannel.render(FOLLOWERS["model"], values)

    assert str(raised.value) == (
        f"model.{field} renders to {length} characters with this metadata; a subscribers integration sends at most "
        f"{4096 if field == 'text' else 998}"
    )


def test_subscribers_render_of_the_longest_text_is_kept() -> None:
    content = SubscribersChannel.render(FOLLOWERS["model"], {"order": "x" * 4082, "shop": "s" * 998})

    assert (len(content.text or ""), len(content.subject or "")) == (4096, 998)


def test_subscribers_send_hands_the_notification_to_the_expansion_worker() -> None:
    handoff = _Handoff()

    message_id = _send(_channel(handoff), {"channels": ["push", "email"]})

    assert message_id == "m-1"
    assert handoff.jobs == [("n-1", Content(text="Order A-1 shipped", subject="Shop"), ["push", "email"])]
    assert _channel(handoff).rate_limits({}, None, None) == []


def test_subscribers_send_without_an_audience_fails_for_good() -> None:
    with pytest.raises(PermanentDeliveryError, match="no audience"):
        _send(_channel(None), {"channels": ["push"]})


def test_subscribers_send_queue_failure_is_retried() -> None:
    with pytest.raises(RetryableDeliveryError, match="expansion queue"):
        _send(_channel(_Handoff(fail=True)), {"channels": ["push"]})


@pytest.mark.parametrize(
    ("values", "field"),
    [({"order": "A\x001", "shop": "Shop"}, "text"), ({"order": "A-1", "shop": "Sh\x00p"}, "subject")],
)
def test_subscribers_render_holding_nul_is_refused_naming_the_field(values: dict[str, str], field: str) -> None:
    # The audience's database cannot keep the send: accepted, the notification failed at once (or every expansion).
    with pytest.raises(UnsendableContentError, match=rf"^model\.{field} renders NUL"):
        SubscribersChannel.render(FOLLOWERS["model"], values)


def test_subscribers_send_text_holding_nul_fails_for_good_and_hands_nothing_off() -> None:
    # A message rendered before the publish refused it (an older producer's): its expansion would fail on every try.
    handoff = _Handoff()
    content = Content(text="Order A\x001 shipped", subject="Shop")

    with pytest.raises(PermanentDeliveryError, match=r"NUL \(U\+0000\)"):
        _channel(handoff).send(content, {"channels": ["push"]}, None, notification_id="n-1", delivery_key="followers")
    assert handoff.jobs == []
