"""Fixtures of the subscriber suites (the Purchase topic's subscribers, the payment worker): the purchases domain's
tables and the Stripe key parameter under moto, and the local Stripe server the real stripe SDK talks to.

Shared by several suites: add fixtures, keep each one generic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from core import clients
from tests.support.aws import AwsResources, receive_all
from tests.support.aws import client as aws_client

PURCHASE_TABLES = {
    "PROMOTIONS_TABLE": ("notify-test-promotions", "code"),
    "PURCHASES_TABLE": ("notify-test-purchases", "purchase_id"),
    "PAYMENTS_TABLE": ("notify-test-payments", "payment_id"),
}
STRIPE_SECRET_KEY_PARAMETER = "/notify/test/stripe/secret-key"
STRIPE_SECRET_KEY = "sk_test_subscribers_0123456789"


@pytest.fixture
def purchases_aws(aws: AwsResources, monkeypatch: pytest.MonkeyPatch) -> AwsResources:
    """``aws`` plus the promotions, purchases and payments tables and the Stripe secret key parameter, named in the
    environment as the functions read them (STRIPE_API_BASE is the ``stripe_server`` fixture's)."""
    for variable, (name, key) in PURCHASE_TABLES.items():
        aws.dynamodb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        )
        monkeypatch.setenv(variable, name)
        aws.env[variable] = name
    aws.ssm.put_parameter(Name=STRIPE_SECRET_KEY_PARAMETER, Value=STRIPE_SECRET_KEY, Type="SecureString")
    monkeypatch.setenv("STRIPE_SECRET_KEY_PARAMETER", STRIPE_SECRET_KEY_PARAMETER)
    aws.env["STRIPE_SECRET_KEY_PARAMETER"] = STRIPE_SECRET_KEY_PARAMETER
    clients.reset()
    return aws


@pytest.fixture
def stripe_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The local Stripe server (tests/support/stripe_server.py) on a loopback port, empty; STRIPE_API_BASE points at
    it, so the functions' Stripe gateway talks to it with the real stripe SDK."""
    from tests.support.stripe_server import stripe_server as running_stripe_server

    with running_stripe_server() as server:
        monkeypatch.setenv("STRIPE_API_BASE", server.url)
        clients.reset()
        yield server


@dataclass(frozen=True)
class PurchaseTopic:
    """The SNS ``Purchase`` topic under moto, and an SQS queue subscribed to it that shows what was published."""

    arn: str
    queue_url: str

    def published(self, sqs: Any) -> list[dict[str, Any]]:
        """Return the SNS envelopes delivered to the queue (``Message``, ``MessageAttributes``…), draining it."""
        return [json.loads(message["Body"]) for message in receive_all(sqs, self.queue_url)]


@pytest.fixture
def purchase_topic(aws: AwsResources, monkeypatch: pytest.MonkeyPatch) -> PurchaseTopic:
    """The ``Purchase`` topic with a queue subscribed to it; PURCHASE_TOPIC_ARN names it."""

    sns = aws_client("sns")
    arn = sns.create_topic(Name="notify-test-purchase")["TopicArn"]
    queue_url = aws.sqs.create_queue(QueueName="notify-test-purchase-observer")["QueueUrl"]
    queue_arn = aws.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv("PURCHASE_TOPIC_ARN", arn)
    aws.env["PURCHASE_TOPIC_ARN"] = arn
    clients.reset()
    return PurchaseTopic(arn, queue_url)
