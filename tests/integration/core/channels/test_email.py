"""Integration tests of the email channel (core/channels/email.py) on moto: senders checked when a topic is saved,
addresses sent to SES as 7-bit ASCII, and the account's send rate read through SES throttling."""

from __future__ import annotations

import time
from email.header import decode_header, make_header
from email.utils import parseaddr
from typing import Any

import pytest
from moto.ses.models import ses_backends

from core.channels import ChannelResources
from core.channels.email import EmailChannel
from core.models import Content, DeliveryStatus
from core.pacing import DynamoPaceStore, Pacer
from tests.fakes.lambda_context import FakeLambdaContext
from tests.integration.api.conftest import TOPIC, AdminApi
from tests.integration.consumer.conftest import consumer_aws
from tests.integration.consumer.flow import consume_once, delivery_message, enqueue, entry
from tests.support.aws import ACCOUNT, NAMES, REGION, AwsResources
from tests.support.aws import client as aws_client
from tests.support.events import response_json

__all__ = ["consumer_aws"]

CONTENT = {"subject": "Shipped", "text": "Order 42"}


def _topic(target: dict[str, Any]) -> dict[str, Any]:
    return {"integrations": [{"name": "mail", "type": "email", "model": CONTENT, "target": target}]}


# --- senders checked when saved -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sender",
    ["Doe, John <john@example.com>", "x <y> <john@example.com>", "Shop <john@example.com", "Shop <zoë@example.com>"],
)
def test_email_topic_with_malformed_from_is_refused_naming_the_field(aws: AwsResources, sender: str) -> None:
    saved = AdminApi(FakeLambdaContext()).put_topic(_topic({"to": ["ada@example.com"], "from": sender}))

    assert saved["statusCode"] == 422
    assert response_json(saved)["message"].startswith("integrations[0].target.from: ")


@pytest.mark.parametrize("sender", ['"Doe, John" <john@example.com>', "Zoë Café <notify@bücher.example>"])
def test_email_topic_with_quoted_or_non_ascii_from_is_saved_as_written(aws: AwsResources, sender: str) -> None:
    admin = AdminApi(FakeLambdaContext())
    assert admin.put_topic(_topic({"to": ["ada@bücher.example"], "from": sender}))["statusCode"] == 201

    got = admin.call("GET", TOPIC, {"channel": "orders", "topic": "shipped"})

    assert response_json(got)["integrations"][0]["target"] == {"to": ["ada@bücher.example"], "from": sender}


# --- what SES gets ------------------------------------------------------------------------------------------------


def test_email_non_ascii_sender_and_domains_reach_ses_as_ascii(consumer_aws: AwsResources) -> None:
    aws_client("ses").verify_domain_identity(Domain="xn--bcher-kva.example")
    target = {"to": ["ada@bücher.example"], "from": "Zoë Café <notify@bücher.example>"}
    message = delivery_message("email", CONTENT, target)
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    [sent] = ses_backends[ACCOUNT][REGION].sent_messages
    name, address = parseaddr(sent.source)
    assert entry(message).status is DeliveryStatus.DELIVERED
    assert (sent.source.isascii(), str(make_header(decode_header(name))), address) == (
        True,
        "Zoë Café",
        "notify@xn--bcher-kva.example",
    )
    assert sent.destinations["ToAddresses"] == ["ada@xn--bcher-kva.example"]


# --- the account's send rate --------------------------------------------------------------------------------------


class _Answer:
    """What botocore takes from a ``before-call`` handler as the HTTP answer."""

    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers: dict[str, str] = {}
        self.content = b""


def _quota_answers(ses: Any, throttled: int, rate: float = 100.0) -> list[int]:
    """Answer the client's first ``throttled`` GetSendQuota calls ``Throttling``, then ``rate``; return the calls."""
    calls = [0]

    def answer(**_: Any) -> tuple[_Answer, dict[str, Any]]:
        calls[0] += 1
        if calls[0] <= throttled:
            error = {"Code": "Throttling", "Message": "Rate exceeded"}
            return _Answer(400), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
        quota = {"Max24HourSend": 1e6, "MaxSendRate": rate, "SentLast24Hours": 0.0}
        return _Answer(200), {**quota, "ResponseMetadata": {"HTTPStatusCode": 200}}

    ses.meta.events.register("before-call.ses.GetSendQuota", answer)
    return calls


def test_email_quota_throttled_once_paces_a_burst_at_the_account_rate(aws: AwsResources) -> None:
    ses = aws_client("ses")
    calls = _quota_answers(ses, throttled=1)
    channel = EmailChannel(ChannelResources(http=None, aws_client=lambda _: ses, telegram_api_base=""))  # type: ignore[arg-type]
    pacer = Pacer(DynamoPaceStore(aws.dynamodb, NAMES["PACING_TABLE"]))
    target = {"to": ["ada@example.com"], "from": "noreply@example.com"}
    start = time.time()

    slots = [pacer.reserve(channel.rate_limits(target, None, None), time.time()) for _ in range(30)]

    # At 100 a second (10 % wider) 30 sends take 0.33 s; at the sandbox's 1 a second they took 33.
    assert max(slots) - start < 3.0
    assert calls[0] == 2


def test_email_quota_unreadable_sends_the_delivery_on_soon_without_an_attempt_or_a_slot(
    consumer_aws: AwsResources,
) -> None:
    from core import clients

    aws_client("ses").verify_email_identity(EmailAddress="noreply@example.com")
    _quota_answers(clients.get_client("ses", sends=True), throttled=1000)
    message = delivery_message("email", CONTENT, {"to": ["ada@example.com"], "from": "noreply@example.com"})
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    row = entry(message)
    assert (row.status, row.attempts, row.last_error) == (
        DeliveryStatus.RETRYING,
        0,
        "email: SES send quota: Throttling (Rate exceeded)",
    )
    assert consumer_aws.dynamodb.scan(TableName=NAMES["PACING_TABLE"])["Items"] == []
    assert ses_backends[ACCOUNT][REGION].sent_messages == []


# --- what a refusal says --------------------------------------------------------------------------------------------


def test_email_from_a_sender_ses_never_verified_fails_saying_which(consumer_aws: AwsResources) -> None:
    # The reason was the bare code, "email: MessageRejected": nothing told which identity to verify.
    message = delivery_message("email", CONTENT, {"to": ["ada@example.com"], "from": "nobody@unverified.example"})
    enqueue(consumer_aws, message)

    consume_once(consumer_aws)

    row = entry(message)
    assert (row.status, row.last_error) == (
        DeliveryStatus.FAILED,
        "email: MessageRejected (Email address not verified nobody@unverified.example)",
    )


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def test_email_answer_botocore_cannot_read_is_retried_not_an_internal_error(aws: AwsResources) -> None:
    """A front end's 503 in plain text: botocore raises ResponseParserError (no BotoCoreError), which escaped the
    channel, and the consumer recorded "internal error (ResponseParserError)" and logged a crash."""
    from botocore.awsrequest import AWSResponse

    from core.errors import RetryableDeliveryError

    aws_client("ses").verify_email_identity(EmailAddress="noreply@example.com")
    ses = aws_client("ses")
    ses.meta.events.register(
        "before-send.ses.SendEmail",
        lambda request, **_: AWSResponse(request.url, 503, {"Content-Type": "text/plain"}, _Raw(b"Unavailable")),
    )
    channel = EmailChannel(ChannelResources(http=None, aws_client=lambda _: ses, telegram_api_base=""))  # type: ignore[arg-type]

    with pytest.raises(RetryableDeliveryError) as raised:
        channel.send(
            Content(subject="Shipped", text="Order 42"),
            {"to": ["ada@example.com"], "from": "noreply@example.com"},
            None,
            notification_id="n",
            delivery_key="k",
        )

    assert raised.value.reason == "email: an answer from AWS that could not be read"
