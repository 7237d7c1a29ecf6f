"""Snapshots against moto's server: save, start a fresh moto with the resources created again, restore, read back."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infra.local.snapshot import FILE_NAME, LocalAwsState, SavedParameter, Snapshots, encode, write_private
from tests.integration.local.conftest import ACCOUNT, REGION, Clients, reset_moto

TOPICS = "notify-local-topics"
LEDGER = "notify-local-ledger"
QUEUE = "notify-local-deliveries"
DLQ = "notify-local-deliveries-dlq"
CREDENTIALS = "/notify/local/credentials/demo/welcome/slack"


def create_resources(client: Clients) -> dict[str, str]:
    """Create what the template creates at each start: two tables, the delivery queue and its DLQ; return the URLs."""
    dynamodb = client("dynamodb")
    for name, keys in ((TOPICS, ("channel", "topic")), (LEDGER, ("notification_id", "delivery_key"))):
        dynamodb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key in keys],
            KeySchema=[{"AttributeName": keys[0], "KeyType": "HASH"}, {"AttributeName": keys[1], "KeyType": "RANGE"}],
        )
    sqs = client("sqs")
    dlq = sqs.create_queue(QueueName=DLQ)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName=QUEUE,
        Attributes={
            "VisibilityTimeout": "180",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    return {"queue": queue, "dlq": dlq}


def restart(moto_url: str, client: Clients, snapshots: Snapshots) -> tuple[dict[str, str], str]:
    """Save, empty moto, create the resources again and restore; return the queue URLs and the restore's line."""
    snapshots.save()
    reset_moto(moto_url)
    urls = create_resources(client)
    fresh = Snapshots(snapshots.directory, client, ACCOUNT, REGION)
    return urls, fresh.restore()


@pytest.fixture
def snapshots(tmp_path: Path, clients: Clients) -> Snapshots:
    """Snapshots of a moto holding the resources, restored (from nothing) so that saves are allowed."""
    create_resources(clients)
    store = Snapshots(tmp_path / "aws", clients, ACCOUNT, REGION)
    assert store.restore() == f"nothing saved yet in {tmp_path / 'aws'}"
    store.capture()  # moto's SSM, SNS and SES load on first use: a restart in a test then takes a blink
    return store


def scan(client: Clients, table: str) -> list[dict[str, Any]]:
    """Return every item of a table."""
    return [
        item for page in client("dynamodb").get_paginator("scan").paginate(TableName=table) for item in page["Items"]
    ]


def receive(client: Clients, url: str, visibility: int = 30) -> list[dict[str, Any]]:
    """Receive what is visible now, with every attribute."""
    messages: list[dict[str, Any]] = (
        client("sqs")
        .receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            VisibilityTimeout=visibility,
            WaitTimeSeconds=0,
        )
        .get("Messages", [])
    )
    return messages


def test_snapshots_restart_brings_back_every_table_item_binary_included(
    moto_url: str, clients: Clients, snapshots: Snapshots
) -> None:
    dynamodb = clients("dynamodb")
    topic = {
        "channel": {"S": "demo"},
        "topic": {"S": "welcome"},
        "hash_sha256": {"S": "ab" * 32},
        "integrations": {"L": [{"M": {"name": {"S": "slack"}, "raw": {"B": b"\x00\xff"}, "on": {"BOOL": True}}}]},
        "version": {"N": "3"},
        "tags": {"SS": ["a", "b"]},
        "blobs": {"BS": [b"\x01", b"\x02"]},
        "signature": {"B": b"\x10\x20"},
        "nothing": {"NULL": True},
    }
    record = {"notification_id": {"S": "n-1"}, "delivery_key": {"S": "#notification"}, "status": {"S": "delivered"}}
    dynamodb.put_item(TableName=TOPICS, Item=topic)
    dynamodb.put_item(TableName=LEDGER, Item=record)

    _, line = restart(moto_url, clients, snapshots)

    assert scan(clients, TOPICS) == [topic]
    assert scan(clients, LEDGER) == [record]
    assert line.startswith("restored 2 tables (2 items), 0 parameters, 0 queued messages from ")


def test_snapshots_restart_brings_back_secure_parameters_with_their_values(
    moto_url: str, clients: Clients, snapshots: Snapshots
) -> None:
    ssm = clients("ssm")
    ssm.put_parameter(Name=CREDENTIALS, Value='{"webhook_url": "http://x"}', Type="SecureString", Description="slack")
    ssm.put_parameter(Name="/notify/local/outputs/api-url", Value="http://127.0.0.1:3000", Type="String")

    restart(moto_url, clients, snapshots)

    found = ssm.get_parameter(Name=CREDENTIALS, WithDecryption=True)["Parameter"]
    assert (found["Type"], found["Value"]) == ("SecureString", '{"webhook_url": "http://x"}')
    assert ssm.get_parameter(Name="/notify/local/outputs/api-url")["Parameter"]["Value"] == "http://127.0.0.1:3000"


def test_snapshots_restore_keeps_a_parameter_this_run_wrote_already(
    moto_url: str, clients: Clients, snapshots: Snapshots
) -> None:
    clients("ssm").put_parameter(Name="/notify/local/outputs/queue-url", Value="old port", Type="String")
    snapshots.save()
    reset_moto(moto_url)
    create_resources(clients)
    clients("ssm").put_parameter(Name="/notify/local/outputs/queue-url", Value="this run's port", Type="String")

    Snapshots(snapshots.directory, clients, ACCOUNT, REGION).restore()

    assert (
        clients("ssm").get_parameter(Name="/notify/local/outputs/queue-url")["Parameter"]["Value"] == "this run's port"
    )


def test_snapshots_restart_brings_back_queued_messages_with_ids_and_receive_counts(
    moto_url: str, clients: Clients, snapshots: Snapshots
) -> None:
    sqs = clients("sqs")
    urls = {"queue": sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]}
    sent = sqs.send_message(QueueUrl=urls["queue"], MessageBody='{"v": 2, "n": 1}')["MessageId"]
    receive(clients, urls["queue"], visibility=0)  # received once, back at once

    urls, line = restart(moto_url, clients, snapshots)

    [message] = receive(clients, urls["queue"])
    assert (message["MessageId"], message["Body"]) == (sent, '{"v": 2, "n": 1}')
    assert message["Attributes"]["ApproximateReceiveCount"] == "2"
    assert "1 queued message from" in line


def test_snapshots_restart_makes_in_flight_messages_visible(
    moto_url: str, clients: Clients, snapshots: Snapshots
) -> None:
    sqs = clients("sqs")
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    sent = sqs.send_message(QueueUrl=url, MessageBody="in flight")["MessageId"]
    assert [message["MessageId"] for message in receive(clients, url, visibility=600)] == [sent]
    assert receive(clients, url) == []

    urls, _ = restart(moto_url, clients, snapshots)

    assert [message["MessageId"] for message in receive(clients, urls["queue"])] == [sent]


def test_snapshots_restart_keeps_what_is_left_of_a_delay(moto_url: str, clients: Clients, snapshots: Snapshots) -> None:
    sqs = clients("sqs")
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=600)
    sqs.send_message(QueueUrl=url, MessageBody="soon", DelaySeconds=3)

    urls, line = restart(moto_url, clients, snapshots)

    assert receive(clients, urls["queue"]) == []
    attributes = sqs.get_queue_attributes(QueueUrl=urls["queue"], AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "2"
    deadline = time.monotonic() + 10
    bodies: list[str] = []
    while not bodies and time.monotonic() < deadline:
        bodies = [message["Body"] for message in receive(clients, urls["queue"])]
        time.sleep(0.2)
    assert bodies == ["soon"]
    assert "2 queued messages" in line


def test_snapshots_restart_keeps_a_dead_letters_last_error_attribute(
    moto_url: str, clients: Clients, snapshots: Snapshots
) -> None:
    sqs = clients("sqs")
    dlq = sqs.get_queue_url(QueueName=DLQ)["QueueUrl"]
    attributes = {
        "last_error": {"DataType": "String", "StringValue": "slack answered 500"},
        "attempts": {"DataType": "Number", "StringValue": "12"},
        "raw": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe"},
    }
    sqs.send_message(QueueUrl=dlq, MessageBody='{"notification_id": "n-1"}', MessageAttributes=attributes)

    urls, _ = restart(moto_url, clients, snapshots)

    [letter] = receive(clients, urls["dlq"])
    assert letter["MessageAttributes"] == attributes
    assert letter["Body"] == '{"notification_id": "n-1"}'


def test_snapshots_restart_keeps_a_push_endpoint_under_its_arn(
    moto_url: str, clients: Clients, snapshots: Snapshots
) -> None:
    sns = clients("sns")
    application = sns.create_platform_application(
        Name="notify-local-demo", Platform="GCM", Attributes={"PlatformCredential": "local-demo"}
    )["PlatformApplicationArn"]
    endpoint = sns.create_platform_endpoint(PlatformApplicationArn=application, Token="device-1", CustomUserData="ada")[
        "EndpointArn"
    ]
    disabled = sns.create_platform_endpoint(
        PlatformApplicationArn=application, Token="device-2", Attributes={"Enabled": "false"}
    )["EndpointArn"]

    _, line = restart(moto_url, clients, snapshots)

    assert sns.get_endpoint_attributes(EndpointArn=endpoint)["Attributes"]["Token"] == "device-1"
    assert sns.publish(TargetArn=endpoint, Message="hello")["MessageId"]
    assert sns.get_endpoint_attributes(EndpointArn=disabled)["Attributes"]["Enabled"] == "false"
    assert "2 push endpoints" in line
    # The same device registered again (as the seed does at every start) is the same endpoint: its data came back.
    again = sns.create_platform_endpoint(PlatformApplicationArn=application, Token="device-1", CustomUserData="ada")
    assert again["EndpointArn"] == endpoint


def test_snapshots_restart_keeps_verified_email_identities(
    moto_url: str, clients: Clients, snapshots: Snapshots
) -> None:
    clients("ses").verify_email_identity(EmailAddress="shop@example.com")
    clients("ses").verify_domain_identity(Domain="example.org")

    restart(moto_url, clients, snapshots)

    assert sorted(clients("ses").list_identities()["Identities"]) == ["example.org", "shop@example.com"]


def test_snapshots_restore_leaves_out_a_table_no_longer_defined(
    moto_url: str, clients: Clients, snapshots: Snapshots
) -> None:
    clients("dynamodb").create_table(
        TableName="notify-local-gone",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    clients("dynamodb").put_item(TableName="notify-local-gone", Item={"id": {"S": "x"}})

    _, line = restart(moto_url, clients, snapshots)

    assert line.endswith("; left out, no longer defined: table notify-local-gone" + line[line.index(" (saved ") :])
    assert "notify-local-gone" not in clients("dynamodb").list_tables()["TableNames"]


def test_snapshots_save_skips_writing_when_nothing_changed(clients: Clients, snapshots: Snapshots) -> None:
    clients("dynamodb").put_item(TableName=LEDGER, Item={"notification_id": {"S": "n"}, "delivery_key": {"S": "k"}})
    snapshots.save()
    first = (snapshots.directory / FILE_NAME).stat().st_ino

    snapshots.save()
    unchanged = (snapshots.directory / FILE_NAME).stat().st_ino
    clients("dynamodb").put_item(TableName=LEDGER, Item={"notification_id": {"S": "m"}, "delivery_key": {"S": "k"}})
    snapshots.save()

    assert unchanged == first
    assert (snapshots.directory / FILE_NAME).stat().st_ino != first


def test_snapshots_file_is_private_to_its_owner(clients: Clients, snapshots: Snapshots) -> None:
    snapshots.save()

    assert (snapshots.directory / FILE_NAME).stat().st_mode & 0o777 == 0o600
    assert snapshots.directory.stat().st_mode & 0o777 == 0o700


def _run_until_saved(snapshots: Snapshots, stop: threading.Event) -> threading.Thread:
    """Save every 50 ms until the file is written (10 s at most), then stop; return the stopped thread."""
    thread = snapshots.run_periodic(stop, every=0.05)
    deadline = time.monotonic() + 10
    while not snapshots.path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(5)
    return thread


def test_snapshots_run_periodic_saves_until_stopped(clients: Clients, snapshots: Snapshots) -> None:
    stop = threading.Event()
    clients("dynamodb").put_item(TableName=TOPICS, Item={"channel": {"S": "c"}, "topic": {"S": "t"}})

    thread = _run_until_saved(snapshots, stop)

    assert not thread.is_alive()
    saved = json.loads(snapshots.path.read_text())
    assert saved["state"]["tables"][TOPICS] == [{"channel": {"S": "c"}, "topic": {"S": "t"}}]


def test_snapshots_run_periodic_goes_on_after_a_save_fails_unexpectedly(
    clients: Clients, snapshots: Snapshots, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error no save expected (botocore unable to parse moto's answer) killed the thread: nothing was saved after."""
    stop = threading.Event()
    real, calls = snapshots.capture, []

    def capture() -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("unexpected")
        return real()

    monkeypatch.setattr(snapshots, "capture", capture)
    _run_until_saved(snapshots, stop)

    assert snapshots.path.exists()
    assert len(calls) >= 2


def test_snapshots_restore_refused_by_moto_sets_the_file_aside(tmp_path: Path, clients: Clients) -> None:
    create_resources(clients)
    state = LocalAwsState(parameters=[SavedParameter(name="/notify/local/x", type="NoSuchType", value="v")])
    write_private(tmp_path / "aws" / FILE_NAME, encode(state, ACCOUNT, REGION, datetime.now(UTC)))
    snapshots = Snapshots(tmp_path / "aws", clients, ACCOUNT, REGION)

    line = snapshots.restore()

    assert line.startswith(f"restoring {tmp_path / 'aws' / FILE_NAME} failed midway (")
    assert line.endswith("; kept as snapshot.json.unreadable, starting without it")
    assert snapshots.set_aside
    assert (tmp_path / "aws" / "snapshot.json.unreadable").exists()
