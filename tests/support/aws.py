"""The service's AWS resources created under moto, with the key schemas and queue settings of ``infra/``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import boto3

REGION = "us-east-1"
STAGE = "test"
ACCOUNT = "123456789012"
ADMIN_TOKEN = "test-admin-token-0123456789"

NAMES = {
    "TOPICS_TABLE": "notify-test-topics",
    "DELIVERIES_TABLE": "notify-test-ledger",
    "PACING_TABLE": "notify-test-pacing",
    "IDEMPOTENCY_TABLE": "notify-test-idempotency",
    "PARAMETER_PREFIX": "/notify/test",
    "PUSH_TOPIC_PREFIX": "notify-test-push-",
    "ADMIN_TOKEN_HASH_PARAMETER": "/notify/test/admin-token-hash",
    # The purchases domain's tables, named for the api function; created by the suites that use them.
    "PROMOTIONS_TABLE": "notify-test-promotions",
    "PURCHASES_TABLE": "notify-test-purchases",
    "PAYMENTS_TABLE": "notify-test-payments",
}


@dataclass
class AwsResources:
    """Handles on what was created, for tests to act and assert through."""

    dynamodb: Any
    sqs: Any
    ssm: Any
    delivery_queue_url: str
    dead_letter_queue_url: str
    env: dict[str, str]


# The ledger's key (serverless.yml's deliveries table).
LEDGER_KEYS = [("notification_id", "HASH"), ("delivery_key", "RANGE")]


def create_table(client: Any, name: str, keys: list[tuple[str, str]], ttl_attribute: str | None) -> None:
    """Create an on-demand table keyed by ``keys`` (string attributes), with a TTL attribute when one is named."""
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key, _ in keys],
        KeySchema=[{"AttributeName": key, "KeyType": kind} for key, kind in keys],
    )
    if ttl_attribute:
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
        )


# One session for the suite's own clients: moto drops boto3's default session at each mock's start, and a new session
# parses botocore's data files again (most of a test's setup).
_SESSION = boto3.session.Session()


def client(service: str) -> Any:
    """Return a new client of the suite's session in the test region (moto answers it inside ``mock_aws``)."""
    return _SESSION.client(service, region_name=REGION)


def create_resources(max_receive_count: int = 5) -> AwsResources:
    """Create tables, the delivery queue with its DLQ, and the admin token hash; call inside ``mock_aws``."""
    dynamodb = client("dynamodb")
    sqs = client("sqs")
    ssm = client("ssm")
    create_table(dynamodb, NAMES["TOPICS_TABLE"], [("channel", "HASH"), ("topic", "RANGE")], None)
    create_table(dynamodb, NAMES["DELIVERIES_TABLE"], LEDGER_KEYS, "expires_at")
    create_table(dynamodb, NAMES["PACING_TABLE"], [("destination", "HASH")], "expires_at")
    create_table(dynamodb, NAMES["IDEMPOTENCY_TABLE"], [("id", "HASH")], "expiration")
    dlq_url = sqs.create_queue(QueueName="notify-test-deliveries-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName="notify-test-deliveries",
        Attributes={
            "VisibilityTimeout": "180",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
        },
    )["QueueUrl"]
    # The expansion worker's queue (sends handed over by the audience function and the cron; disabled endpoints).
    expansion_url = sqs.create_queue(QueueName="notify-test-expansion", Attributes={"VisibilityTimeout": "900"})[
        "QueueUrl"
    ]
    ssm.put_parameter(
        Name=NAMES["ADMIN_TOKEN_HASH_PARAMETER"],
        Value=hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest(),
        Type="SecureString",
    )
    # Everything a function of the test stage needs (core/settings.py), also to scripts that set the env from it.
    env = {
        "STAGE": STAGE,
        "AWS_REGION": REGION,
        **NAMES,
        "DELIVERY_QUEUE_URL": queue_url,
        "DEAD_LETTER_QUEUE_URL": dlq_url,
        "EXPANSION_QUEUE_URL": expansion_url,
    }
    return AwsResources(dynamodb, sqs, ssm, queue_url, dlq_url, env)


def receive_all(sqs: Any, queue_url: str, limit: int = 100) -> list[dict[str, Any]]:
    """Drain up to ``limit`` messages from a queue (they stay invisible for the queue's visibility timeout)."""
    messages: list[dict[str, Any]] = []
    while len(messages) < limit:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not batch:
            break
        messages.extend(batch)
    return messages
