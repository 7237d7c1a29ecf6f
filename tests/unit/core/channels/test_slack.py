"""Unit tests of the Slack channel (core/channels/slack.py): escaping, rendering and pacing; sending is tested against
a loopback receiver in tests/integration/core/channels/test_slack.py."""

from __future__ import annotations

import pytest

from core.channels import ChannelResources, DeliveryReceipt, Limit, destination_key
from core.channels.slack import SlackChannel, escape_slack
from core.errors import PermanentDeliveryError
from core.models import Content
from tests.fakes.delivery import answering_resources

WEBHOOK = "https://hooks.slack.example/services/T0/B0/hunter2secret"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("a & b <c> d", "a &amp; b &lt;c&gt; d", id="amp-lt-gt"),
        pytest.param("&amp;", "&amp;amp;", id="amp-escaped-first"),
        pytest.param("*bold* \"q\" 'q'", "*bold* \"q\" 'q'", id="leaves-others"),
    ],
)
def test_escape_slack_escapes_only_its_special_characters(value: str, expected: str) -> None:
    assert escape_slack(value) == expected


def test_slack_render_escapes_inserted_values_not_template_text() -> None:
    content = SlackChannel.render("<!channel> $v", {"v": "a<b>&c"})

    assert content == Content(text="<!channel> a&lt;b&gt;&amp;c")


def test_slack_rate_limits_one_per_second_per_webhook(resources: ChannelResources) -> None:
    limits = SlackChannel(resources).rate_limits({}, {"webhook_url": WEBHOOK}, None)

    assert limits == [Limit(destination_key("slack", WEBHOOK), 1.0)]


def test_slack_rate_limits_key_holds_no_part_of_the_url(resources: ChannelResources) -> None:
    [limit] = SlackChannel(resources).rate_limits({}, {"webhook_url": WEBHOOK}, None)

    assert not any(part in limit.key for part in WEBHOOK.split("/") if part and part != "https:")


def test_slack_rate_limits_other_webhook_other_key(resources: ChannelResources) -> None:
    channel = SlackChannel(resources)

    [first] = channel.rate_limits({}, {"webhook_url": WEBHOOK}, None)
    [second] = channel.rate_limits({}, {"webhook_url": WEBHOOK + "2"}, None)

    assert first.key != second.key


@pytest.mark.parametrize(("given", "expected"), [(0.2, 0.2), (5.0, 1.0)], ids=["stricter-wins", "looser-ignored"])
def test_slack_rate_limits_integration_rate_merged_into_webhook_limit(
    resources: ChannelResources, given: float, expected: float
) -> None:
    [limit] = SlackChannel(resources).rate_limits({}, {"webhook_url": WEBHOOK}, given)

    assert limit.per_second == expected


def test_slack_rate_limits_missing_credentials_is_permanent(resources: ChannelResources) -> None:
    with pytest.raises(PermanentDeliveryError):
        SlackChannel(resources).rate_limits({}, None, None)


def test_slack_rate_limits_invalid_credentials_is_permanent_without_value(resources: ChannelResources) -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        SlackChannel(resources).rate_limits({}, {"webhook_url": "ftp://hunter2"}, None)

    assert raised.value.reason == "invalid credentials: webhook_url"


# --- answers in a charset that is no text encoding ------------------------------------------------------------------


def _send_answered(status: int, body: bytes, content_type: str) -> DeliveryReceipt:
    resources = answering_resources(status, body, content_type)
    return SlackChannel(resources).send(
        Content(text="hi"), {}, {"webhook_url": WEBHOOK}, notification_id="n-1", delivery_key="k"
    )


@pytest.mark.parametrize(
    ("charset", "body"),
    [("undefined", b"ok"), ("idna", "ok ✓".encode()), ("punycode", "ok ✓".encode())],
    ids=["undefined", "idna", "punycode"],
)
def test_slack_200_in_a_charset_that_is_no_text_encoding_is_delivered(charset: str, body: bytes) -> None:
    # Raised, the message posted would be retried: the channel would show it twice.
    assert _send_answered(200, body, f"text/plain; charset={charset}") == DeliveryReceipt()


def test_slack_permanent_answer_in_a_charset_that_is_no_text_encoding_is_permanent() -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        _send_answered(404, b"no_service", "text/plain; charset=undefined")

    assert raised.value.reason == "slack: HTTP 404 no_service"
