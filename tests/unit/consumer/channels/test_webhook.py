"""Unit tests of the webhook body and signature (consumer/channels/webhook.py)."""

from __future__ import annotations

import hashlib
import hmac

from consumer.channels.webhook import sign, webhook_body
from core.models import Content


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(b"secret-0123456789", b"1800000000.{}", hashlib.sha256).hexdigest()

    assert sign("secret-0123456789", "1800000000", b"{}") == f"v1={expected}"


def test_webhook_body_wraps_text() -> None:
    assert webhook_body(Content(text="hi")) == b'{"text":"hi"}'


def test_webhook_body_sends_data_as_is() -> None:
    assert webhook_body(Content(data=[1, {"a": "é"}])) == '[1,{"a":"é"}]'.encode()
