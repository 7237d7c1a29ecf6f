"""Unit tests of the Slack channel (core/channels/slack.py): escaping, rendering and pacing; sending is tested against
a loopback receiver in tests/integration/core/channels/test_slack.py."""

from __future__ import annotations

import pytest

from core.channels import ChannelResources, Limit, destination_key
from core.channels.slack import SlackChannel, escape_slack
from core.errors import PermanentDeliveryError
from core.models import Content

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
