"""Unit tests of the email channel (consumer/channels/email.py) with a fake SES client."""

from __future__ import annotations

import pytest

from consumer.channels import ChannelResources
from consumer.channels.email import EmailChannel
from core.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from core.models import Content
from tests.fakes.delivery import FakeSendingClient

TARGET = {"to": ["ada@example.com"], "from": "Shop <noreply@example.com>"}


def _send(resources: ChannelResources, content: Content | None = None, target: dict | None = None) -> str | None:
    content = content or Content(subject="Shipped", text="Order 42", html="<p>Order &lt;42&gt;</p>")
    return EmailChannel(resources).send(content, target or TARGET, None, notification_id="n-1").provider_message_id


def test_email_sends_subject_text_and_html(resources: ChannelResources, client: FakeSendingClient) -> None:
    _send(resources)

    [call] = client.calls
    assert call == {
        "Source": "Shop <noreply@example.com>",
        "Destination": {"ToAddresses": ["ada@example.com"]},
        "Message": {
            "Subject": {"Data": "Shipped", "Charset": "UTF-8"},
            "Body": {
                "Text": {"Data": "Order 42", "Charset": "UTF-8"},
                "Html": {"Data": "<p>Order &lt;42&gt;</p>", "Charset": "UTF-8"},
            },
        },
    }


def test_email_without_html_sends_text_only(resources: ChannelResources, client: FakeSendingClient) -> None:
    _send(resources, Content(subject="Shipped", text="Order 42"))

    assert set(client.calls[0]["Message"]["Body"]) == {"Text"}


def test_email_returns_ses_message_id(resources: ChannelResources) -> None:
    assert _send(resources) == "provider-1"


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("MessageRejected", 400, PermanentDeliveryError),
        ("MailFromDomainNotVerifiedException", 400, PermanentDeliveryError),
        ("AccountSendingPausedException", 400, PermanentDeliveryError),
        ("Throttling", 400, RetryableDeliveryError),
        ("ServiceUnavailable", 503, RetryableDeliveryError),
        ("InternalFailure", 500, RetryableDeliveryError),
    ],
)
def test_email_ses_error_is_classified(code: str, status: int, kind: type[DeliveryError]) -> None:
    client = FakeSendingClient(code, status)
    resources = ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base="")  # type: ignore[arg-type]

    with pytest.raises(DeliveryError) as raised:
        _send(resources)

    assert (type(raised.value), raised.value.reason) == (kind, f"email: {code}")  # type: ignore[attr-defined]


def test_email_invalid_target_is_permanent(resources: ChannelResources) -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        _send(resources, target={"to": ["not-an-address"], "from": "noreply@example.com"})

    assert raised.value.reason == "invalid target: to"


def test_email_too_many_recipients_is_permanent(resources: ChannelResources) -> None:
    target = {"to": [f"user{index}@example.com" for index in range(51)], "from": "noreply@example.com"}

    with pytest.raises(PermanentDeliveryError):
        _send(resources, target=target)
