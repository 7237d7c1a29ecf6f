"""Unit tests of the webhook channel (core/channels/webhook.py): body, signature, rendering and pacing; sending is
tested against a loopback receiver in tests/integration/core/channels/test_webhook.py."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from core.channels import ChannelResources, Limit, destination_key
from core.channels.webhook import WebhookChannel, sign, webhook_body
from core.errors import PermanentDeliveryError
from core.models import Content

URL = "https://erp.example/hooks/hunter2token"


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(b"secret-0123456789", b"1800000000.{}", hashlib.sha256).hexdigest()

    assert sign("secret-0123456789", "1800000000", b"{}") == f"v1={expected}"


def test_webhook_body_wraps_text() -> None:
    assert webhook_body(Content(text="hi")) == b'{"text":"hi"}'


def test_webhook_body_sends_data_as_is() -> None:
    assert webhook_body(Content(data=[1, {"a": "é"}])) == '[1,{"a":"é"}]'.encode()


def test_webhook_render_string_model_into_text_unescaped() -> None:
    assert WebhookChannel.render("x $v", {"v": "a<b>&c"}) == Content(text="x a<b>&c")


def test_webhook_render_object_model_into_data() -> None:
    content = WebhookChannel.render({"id": "$id", "n": 1, "l": ["$id"]}, {"id": "A1"})

    assert content == Content(data={"id": "A1", "n": 1, "l": ["A1"]})


def test_webhook_rate_limits_without_integration_rate_none(resources: ChannelResources) -> None:
    assert WebhookChannel(resources).rate_limits({"url": URL}, None, None) == []


def test_webhook_rate_limits_integration_rate_limits_its_url(resources: ChannelResources) -> None:
    limits = WebhookChannel(resources).rate_limits({"url": URL}, None, 3.0)

    assert limits == [Limit(destination_key("webhook", URL), 3.0)]


def test_webhook_rate_limits_key_holds_no_part_of_the_url(resources: ChannelResources) -> None:
    [limit] = WebhookChannel(resources).rate_limits({"url": URL}, None, 3.0)

    assert "hunter2token" not in limit.key
    assert "erp.example" not in limit.key


def test_webhook_rate_limits_invalid_url_is_permanent(resources: ChannelResources) -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        WebhookChannel(resources).rate_limits({"url": "ftp://x"}, None, 3.0)

    assert raised.value.reason == "invalid target: url"
