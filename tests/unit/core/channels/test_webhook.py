"""Unit tests of the webhook channel (core/channels/webhook.py): body, signature, rendering and pacing; sending is
tested against a loopback receiver in tests/integration/core/channels/test_webhook.py."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from core.channels import ChannelResources, DeliveryReceipt, Limit, destination_key
from core.channels.webhook import WebhookChannel, signature_v1, signature_v2, webhook_body
from core.errors import PermanentDeliveryError
from core.models import Content
from tests.fakes.delivery import AnsweringSession, answering_resources

URL = "https://erp.example/hooks/hunter2token"


def test_signature_v1_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(b"secret-0123456789", b"1800000000.{}", hashlib.sha256).hexdigest()

    assert signature_v1("secret-0123456789", "1800000000", b"{}") == f"v1={expected}"


def test_signature_v2_is_hmac_sha256_over_timestamp_id_key_and_body_on_lines() -> None:
    expected = hmac.new(b"secret-0123456789", b"1800000000\nn-1\nerp\n{}", hashlib.sha256).hexdigest()

    assert signature_v2("secret-0123456789", "1800000000", "n-1", "erp", b"{}") == f"v2={expected}"


def test_signature_v2_other_notification_id_other_signature() -> None:
    first = signature_v2("secret-0123456789", "1800000000", "n-1", "erp", b"{}")

    assert signature_v2("secret-0123456789", "1800000000", "n-2", "erp", b"{}") != first


def test_signature_v2_dots_cannot_move_between_id_and_key() -> None:
    # Integration names may hold dots, so a "." separator would let "n-1" + "erp.v2" be replayed as "n-1.erp" + "v2".
    first = signature_v2("secret-0123456789", "1800000000", "n-1", "erp.v2", b"{}")

    assert signature_v2("secret-0123456789", "1800000000", "n-1.erp", "v2", b"{}") != first


@pytest.mark.parametrize(
    ("notification_id", "delivery_key"),
    [("n-1\n", "erp"), ("n-1", "erp\r"), ("n-1", "erp\nx")],
    ids=["id", "key-cr", "key"],
)
def test_signature_v2_refuses_a_line_break_in_what_it_signs(notification_id: str, delivery_key: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        signature_v2("secret-0123456789", "1800000000", notification_id, delivery_key, b"{}")


def test_webhook_body_wraps_text() -> None:
    assert webhook_body(Content(text="hi")) == b'{"text":"hi"}'


def test_webhook_body_sends_data_as_is() -> None:
    assert webhook_body(Content(data=[1, {"a": "é"}])) == '[1,{"a":"é"}]'.encode()


def test_webhook_body_lone_surrogate_is_sent_as_its_json_escape() -> None:
    body = webhook_body(Content(data={"a": "x\ud800é"}))

    assert body == '{"a":"x\\ud800é"}'.encode()
    assert json.loads(body) == {"a": "x\ud800é"}


def test_webhook_render_string_model_into_text_unescaped() -> None:
    assert WebhookChannel.render("x $v", {"v": "a<b>&c"}) == Content(text="x a<b>&c")


def test_webhook_render_object_model_into_data() -> None:
    content = WebhookChannel.render({"id": "$id", "n": 1, "l": ["$id"]}, {"id": "A1"})

    assert content == Content(data={"id": "A1", "n": 1, "l": ["A1"]})


def test_webhook_render_object_model_one_variable_keeps_its_type() -> None:
    content = WebhookChannel.render({"total": "$total", "label": "Total: $total"}, {"total": 42.5})

    assert content == Content(data={"total": 42.5, "label": "Total: 42.5"})


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


# --- answers in a charset that is no text encoding ------------------------------------------------------------------


def _send_answered(status: int, body: bytes, content_type: str) -> DeliveryReceipt:
    resources = answering_resources(status, body, content_type)
    return WebhookChannel(resources).send(
        Content(text="hi"), {"url": URL}, None, notification_id="n-1", delivery_key="k"
    )


@pytest.mark.parametrize("charset", ["idna", "undefined", "punycode"])
def test_webhook_200_in_a_charset_that_is_no_text_encoding_is_delivered(charset: str) -> None:
    # Raised, the send that happened would be retried: the receiver would get it twice.
    receipt = _send_answered(200, "reçu".encode(), f"text/plain; charset={charset}")

    assert receipt == DeliveryReceipt(None)


def test_webhook_400_in_a_charset_that_is_no_text_encoding_is_permanent_with_its_text() -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        _send_answered(400, "refusé: schéma".encode(), "text/plain; charset=idna")

    assert raised.value.reason == "webhook: HTTP 400 refusé: schéma"


# --- a body the receiver would refuse -------------------------------------------------------------------------------


class _CountingSession(AnsweringSession):
    """Answers every POST with 200 and counts the POSTs made."""

    def __init__(self) -> None:
        super().__init__(200, b"ok", "text/plain")
        self.posts = 0

    def post(self, url: str, **kwargs: object) -> Any:
        self.posts += 1
        return super().post(url, **kwargs)


def test_webhook_body_over_256_kib_is_permanent_before_any_request() -> None:
    # Receivers are promised bodies of at most 256 KiB (README): a larger one fails for good, and is never posted.
    session = _CountingSession()
    resources = ChannelResources(http=session, aws_client=lambda _: None, telegram_api_base="")  # type: ignore[arg-type]

    with pytest.raises(PermanentDeliveryError, match="exceeds 256 KiB"):
        WebhookChannel(resources).send(
            Content(text="x" * 256 * 1024), {"url": URL}, None, notification_id="n-1", delivery_key="k"
        )

    assert session.posts == 0
