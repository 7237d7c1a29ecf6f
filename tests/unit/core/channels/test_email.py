"""Unit tests of the email channel (core/channels/email.py) with a fake SES client: rendering, pacing, sending."""

from __future__ import annotations

import pytest

from core.channels import ChannelResources, Limit, destination_key
from core.channels.email import EmailChannel
from core.errors import DeliveryError, MissingTemplateVariablesError, PermanentDeliveryError, RetryableDeliveryError
from core.models import Content
from tests.fakes.delivery import FakeSendingClient

TARGET = {"to": ["ada@example.com"], "from": "Shop <noreply@example.com>"}


def _send(resources: ChannelResources, content: Content | None = None, target: dict | None = None) -> str | None:
    content = content or Content(subject="Shipped", text="Order 42", html="<p>Order &lt;42&gt;</p>")
    return (
        EmailChannel(resources)
        .send(content, target or TARGET, None, notification_id="n-1", delivery_key="k-1")
        .provider_message_id
    )


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
        ("AccountSendingPausedException", 400, RetryableDeliveryError),
        ("ConfigurationSetSendingPausedException", 400, RetryableDeliveryError),
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


@pytest.mark.parametrize("code", ["AccountSendingPausedException", "ConfigurationSetSendingPausedException"])
def test_email_ses_sending_paused_is_retried_without_slowing_the_pace(code: str) -> None:
    # Paused sending is sent once it resumes, within the retry window; it says nothing of the account's rate.
    client = FakeSendingClient(code, 400)
    resources = ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base="")  # type: ignore[arg-type]

    with pytest.raises(RetryableDeliveryError) as raised:
        _send(resources)

    assert raised.value.rate_limited is False


def test_email_invalid_target_is_permanent(resources: ChannelResources) -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        _send(resources, target={"to": ["not-an-address"], "from": "noreply@example.com"})

    assert raised.value.reason == "invalid target: to[0]"


def test_email_too_many_recipients_is_permanent(resources: ChannelResources) -> None:
    target = {"to": [f"user{index}@example.com" for index in range(51)], "from": "noreply@example.com"}

    with pytest.raises(PermanentDeliveryError):
        _send(resources, target=target)


# --- rendering ----------------------------------------------------------------------------------------------------


def test_email_render_escapes_values_in_html_only() -> None:
    model = {"subject": "$v", "text": "t $v", "html": "<p>$v</p>"}

    content = EmailChannel.render(model, {"v": "<A&B>"})

    assert content == Content(subject="<A&B>", text="t <A&B>", html="<p>&lt;A&amp;B&gt;</p>")


def test_email_render_without_html_has_no_html() -> None:
    assert EmailChannel.render({"subject": "s", "text": "t"}, {}).html is None


def test_email_render_missing_variable_raises_naming_it() -> None:
    with pytest.raises(MissingTemplateVariablesError) as raised:
        EmailChannel.render({"subject": "$who", "text": "t"}, {})

    assert raised.value.names == ["who"]


# --- pacing -------------------------------------------------------------------------------------------------------


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limits(channel: EmailChannel, target: dict | None = None, rate: float | None = None) -> list[Limit]:
    return channel.rate_limits(target or TARGET, None, rate)


def test_email_rate_limits_account_send_rate_costs_one_per_recipient(resources: ChannelResources) -> None:
    target = {"to": ["a@example.com", "b@example.com", "c@example.com"], "from": "noreply@example.com"}

    limits = _limits(EmailChannel(resources), target)

    assert limits == [Limit(destination_key("ses", "us-east-1"), 14.0, cost=3.0)]


def test_email_rate_limits_quota_read_once_an_hour(resources: ChannelResources, client: FakeSendingClient) -> None:
    clock = Clock()
    channel = EmailChannel(resources, clock=clock)

    _limits(channel)
    clock.now += 3599
    _limits(channel)

    assert client.quota_calls == 1


def test_email_rate_limits_quota_read_again_after_an_hour(
    resources: ChannelResources, client: FakeSendingClient
) -> None:
    clock = Clock()
    channel = EmailChannel(resources, clock=clock)
    _limits(channel)
    client.max_send_rate = 50.0
    clock.now += 3600

    [limit] = _limits(channel)

    assert (client.quota_calls, limit.per_second) == (2, 50.0)


def test_email_rate_limits_quota_error_falls_back_to_sandbox_rate() -> None:
    client = FakeSendingClient(quota_error="AccessDenied")
    channel = EmailChannel(ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base=""))  # type: ignore[arg-type]

    [limit] = _limits(channel)

    assert limit.per_second == 1.0


def test_email_rate_limits_quota_error_logs_warning_with_code(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeSendingClient(quota_error="AccessDenied")
    channel = EmailChannel(ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base=""))  # type: ignore[arg-type]

    _limits(channel)

    [record] = [record for record in caplog.records if record.message.startswith("SES send quota unreadable")]
    assert (record.levelname, record.reason) == ("WARNING", "AccessDenied")  # type: ignore[attr-defined]


def test_email_rate_limits_quota_error_read_again_after_a_minute() -> None:
    client = FakeSendingClient(quota_error="Throttling")
    clock = Clock()
    channel = EmailChannel(ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base=""), clock)  # type: ignore[arg-type]
    _limits(channel)
    client.quota_error = None
    clock.now += 60

    [limit] = _limits(channel)

    assert (client.quota_calls, limit.per_second) == (2, 14.0)


@pytest.mark.parametrize("rate", [0.0, -3.0, float("inf")])
def test_email_rate_limits_unusable_quota_falls_back_to_sandbox_rate(rate: float) -> None:
    client = FakeSendingClient(max_send_rate=rate)
    channel = EmailChannel(ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base=""))  # type: ignore[arg-type]

    [limit] = _limits(channel)

    assert limit.per_second == 1.0


def test_email_rate_limits_integration_rate_adds_limit_on_its_recipients(resources: ChannelResources) -> None:
    limits = _limits(EmailChannel(resources), rate=0.5)

    assert limits[1:] == [Limit(destination_key("email", "Shop <noreply@example.com>", "ada@example.com"), 0.5)]


def test_email_rate_limits_invalid_target_is_permanent(resources: ChannelResources) -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        _limits(EmailChannel(resources), {"to": [], "from": "noreply@example.com"})

    assert raised.value.reason == "invalid target: to"


# --- addresses --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "field"),
    [
        pytest.param({"to": ["ada@example.com\n"], "from": "noreply@example.com"}, "to[0]", id="to-trailing-lf"),
        pytest.param(
            {"to": ["ada@example.com\r\nBcc: x@evil.example"], "from": "noreply@example.com"}, "to[0]", id="to-crlf"
        ),
        pytest.param(
            {"to": ["ada@example.com", "ada@exa\x00mple.com"], "from": "noreply@example.com"}, "to[1]", id="to-nul"
        ),
        pytest.param({"to": ["ada@example.com"], "from": "noreply@example.com\n"}, "from", id="from-trailing-lf"),
        pytest.param(
            {"to": ["ada@example.com"], "from": "Shop\r\nBcc: x@evil.example <noreply@example.com>"},
            "from",
            id="from-header-injection",
        ),
        pytest.param({"to": ["ada@example.com"], "from": "Shop <noreply@example.com>\n"}, "from", id="from-name-lf"),
        pytest.param({"to": ["ada@example.com"], "from": "Shop\u2028<noreply@example.com>"}, "from", id="from-u2028"),
    ],
)
def test_email_address_with_control_characters_is_refused_naming_the_field(
    resources: ChannelResources, client: FakeSendingClient, target: dict, field: str
) -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        _send(resources, target=target)

    assert raised.value.reason == f"invalid target: {field}"
    assert client.calls == []


@pytest.mark.parametrize(
    "sender",
    ["noreply@example.com", "Shop <noreply@example.com>", '"Shop, Inc." <noreply@example.com>', "Café <a@b.co>"],
)
def test_email_usual_senders_are_accepted(resources: ChannelResources, client: FakeSendingClient, sender: str) -> None:
    _send(resources, target={"to": ["ada@example.com"], "from": sender})

    assert client.calls[0]["Source"] == sender
