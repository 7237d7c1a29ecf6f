"""Integration tests of the Slack channel (core/channels/slack.py) against a loopback receiver."""

from __future__ import annotations

import pytest

from core.channels import ChannelResources
from core.channels.slack import SlackChannel
from core.errors import BlockedTargetError, DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from core.models import Content
from tests.support.receivers import Answer, Receiver


def _send(resources: ChannelResources, receiver: Receiver, text: str = "hi") -> None:
    credentials = {"webhook_url": f"{receiver.url}/services/T0/B0/secret"}
    SlackChannel(resources).send(Content(text=text), {}, credentials, notification_id="n-1", delivery_key="k-1")


def test_slack_ok_posts_text_to_webhook(resources: ChannelResources, receiver: Receiver) -> None:
    _send(resources, receiver, "a &amp; b &lt;c&gt;")

    [request] = receiver.requests
    assert (request.path, request.json()) == ("/services/T0/B0/secret", {"text": "a &amp; b &lt;c&gt;"})


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (Answer(500, b"rollup_error"), RetryableDeliveryError),
        (Answer(503, b""), RetryableDeliveryError),
        (Answer(429, b"rate_limited"), RetryableDeliveryError),
        (Answer(400, b"invalid_payload"), PermanentDeliveryError),
        (Answer(403, b"invalid_token"), PermanentDeliveryError),
        (Answer(404, b"no_service"), PermanentDeliveryError),
        (Answer(410, b"channel_is_archived"), PermanentDeliveryError),
        (Answer(200, b"channel_is_archived"), PermanentDeliveryError),
        (Answer(delay=1.5), RetryableDeliveryError),
        (Answer(reset=True), RetryableDeliveryError),
    ],
    ids=["500", "503", "429", "400", "403-invalid-token", "404", "410", "200-archived", "slow", "reset"],
)
def test_slack_answer_is_classified(
    resources: ChannelResources, receiver: Receiver, answer: Answer, kind: type[DeliveryError]
) -> None:
    receiver.script(answer)

    with pytest.raises(DeliveryError) as raised:
        _send(resources, receiver)

    assert type(raised.value) is kind


def test_slack_429_carries_retry_after(resources: ChannelResources, receiver: Receiver) -> None:
    receiver.script(Answer(429, b"rate_limited", headers={"Retry-After": "42"}))

    with pytest.raises(RetryableDeliveryError) as raised:
        _send(resources, receiver)

    assert raised.value.retry_after == 42


def test_slack_5xx_answering_a_permanent_word_is_retryable(resources: ChannelResources, receiver: Receiver) -> None:
    # A proxy or Slack itself down may answer 503 "no_service": a passing outage, which must not end the delivery.
    receiver.script(Answer(503, b"no_service"))

    with pytest.raises(RetryableDeliveryError):
        _send(resources, receiver)


def test_slack_failure_reason_hides_webhook_path(resources: ChannelResources, receiver: Receiver) -> None:
    receiver.script(Answer(reset=True))

    with pytest.raises(RetryableDeliveryError) as raised:
        _send(resources, receiver)

    assert "secret" not in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


@pytest.mark.parametrize(
    "echo",
    [
        "Cannot POST {path}",
        "no route for {url}",
        "Not Found: %2Fservices%2Ft0%2Fb0%2Fwebhook-secret-4f2a",
        "unknown hook webhook-secret-4f2a",
        "Not Found: %252Fservices%252Ft0%252Fb0%252Fwebhook-secret-4f2a",
    ],
    ids=["path", "url", "quoted-path", "last-part", "quoted-twice"],
)
def test_slack_answer_quoting_the_webhook_is_redacted_in_the_reason(
    resources: ChannelResources, receiver: Receiver, echo: str
) -> None:
    # The webhook URL is the secret, and a reason is shown to publishers (GET /v1/notifications/{id}) and logged.
    url = f"{receiver.url}/services/T0/B0/webhook-secret-4f2a"
    receiver.script(Answer(404, echo.format(path="/services/T0/B0/webhook-secret-4f2a", url=url).encode()))

    with pytest.raises(PermanentDeliveryError) as raised:
        SlackChannel(resources).send(
            Content(text="hi"), {}, {"webhook_url": url}, notification_id="n-1", delivery_key="k-1"
        )

    assert raised.value.reason.startswith("slack: HTTP 404 ")
    assert "***" in raised.value.reason
    assert "webhook-secret" not in raised.value.reason


def test_slack_answer_quoting_a_secret_of_the_webhooks_query_is_redacted(
    resources: ChannelResources, receiver: Receiver
) -> None:
    # A Slack-compatible hook may carry its secret in the query rather than the path.
    receiver.script(Answer(403, b"invalid token query-secret-9876"))

    with pytest.raises(PermanentDeliveryError) as raised:
        SlackChannel(resources).send(
            Content(text="hi"),
            {},
            {"webhook_url": f"{receiver.url}/hooks?token=query-secret-9876"},
            notification_id="n-1",
            delivery_key="k-1",
        )

    assert raised.value.reason == "slack: HTTP 403 invalid token ***"


def test_slack_blocked_target_reason_names_the_channel(resources: ChannelResources) -> None:
    credentials = {"webhook_url": "https://hooks.invalid/services/T0/B0/webhook-secret-4f2a"}

    with pytest.raises(BlockedTargetError) as raised:
        SlackChannel(resources).send(Content(text="hi"), {}, credentials, notification_id="n-1", delivery_key="k-1")

    assert raised.value.reason == "slack: target host does not resolve"


def test_slack_missing_credentials_is_permanent(resources: ChannelResources) -> None:
    with pytest.raises(PermanentDeliveryError):
        SlackChannel(resources).send(Content(text="hi"), {}, None, notification_id="n-1", delivery_key="k-1")


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.example\uff0fservices\uff0fT0\uff0fB0\uff0furl-secret",
        "http://[::1/services/T0/B0/url-secret",
        "http://a..example/services/T0/B0/url-secret",
        "http://hooks.slack.example:99999/services/T0/B0/url-secret",
    ],
    ids=["nfkc-whole-path", "unclosed-ipv6", "empty-label", "port-out-of-range"],
)
def test_slack_stored_url_that_does_not_parse_is_permanent_without_the_url(
    resources: ChannelResources, url: str
) -> None:
    channel = SlackChannel(resources)

    with pytest.raises(PermanentDeliveryError) as raised:
        channel.send(Content(text="hi"), {}, {"webhook_url": url}, notification_id="n-1", delivery_key="k-1")

    assert "url-secret" not in raised.value.reason
    assert "example" not in raised.value.reason
    assert raised.value.__cause__ is None
