"""Small pure pieces: LOCAL_PARAMS, scripted receiver answers, batch item failures, SQS records."""

from __future__ import annotations

import subprocess
import sys

import pytest

from infra.local.config import ROOT, ConfigError, LocalConfig, parse_params
from infra.local.peers import scripted_status
from infra.local.pollers import failed_ids, invocation_record, sqs_record
from infra.local.stack import redacted


def test_parse_params_reads_pairs_separated_by_commas_or_spaces() -> None:
    assert parse_params("a=1, b=x=y c=") == {"a": "1", "b": "x=y", "c": ""}


def test_parse_params_refuses_an_item_without_value() -> None:
    with pytest.raises(ConfigError):
        parse_params("oops")


def test_config_ports_follow_port_by_default() -> None:
    config = LocalConfig.from_env({"PORT": "4000"})

    ports = (config.port, config.receiver_port, config.aws_port, config.postgres_port, config.stripe_port)

    assert ports == (4000, 4001, 4002, 4003, 4004)


def test_config_bad_port_is_an_error() -> None:
    with pytest.raises(ConfigError):
        LocalConfig.from_env({"PORT": "http"})


def test_config_rate_seconds_is_none_by_default_and_a_whole_number_when_set() -> None:
    assert LocalConfig.from_env({}).rate_seconds is None
    assert LocalConfig.from_env({"LOCAL_RATE_SECONDS": "5"}).rate_seconds == 5


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "\u00b2", "five", "1" * 6])
def test_config_rate_seconds_not_a_whole_number_of_seconds_is_an_error(value: str) -> None:
    with pytest.raises(ConfigError, match="LOCAL_RATE_SECONDS"):
        LocalConfig.from_env({"LOCAL_RATE_SECONDS": value})


def test_config_package_params_point_telegram_and_stripe_at_local_servers_and_keep_overrides() -> None:
    config = LocalConfig.from_env({"PORT": "4000", "LOCAL_PARAMS": "maxReceiveCount=2"})

    assert config.package_params() == {
        "telegramApiBase": "http://127.0.0.1:4001/telegram",
        "stripeApiBase": "http://127.0.0.1:4004",
        "maxReceiveCount": "2",
    }


@pytest.mark.parametrize(
    ("query", "count", "expected"),
    [
        ("status=500,200", 0, 500),
        ("status=500,200", 1, 200),
        ("status=500,200", 5, 200),
        ("status=503", 9, 503),
        ("", 0, None),
    ],
)
def test_scripted_status_follows_the_sequence_then_repeats_the_last(
    query: str, count: int, expected: int | None
) -> None:
    assert scripted_status(query, count) == expected


def test_failed_ids_reads_batch_item_failures() -> None:
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"a", "b"}) == {"b"}


def test_failed_ids_none_result_fails_nothing() -> None:
    assert failed_ids(None, {"a"}) == set()


@pytest.mark.parametrize(
    "result",
    [
        {"batchItemFailures": [{"itemIdentifier": "zzz"}]},
        {"batchItemFailures": [{}]},
        {"batchItemFailures": {"itemIdentifier": "a"}},  # not a list: Lambda fails the whole batch
        "nope",
    ],
)
def test_failed_ids_invalid_response_fails_the_whole_batch(result: object) -> None:
    assert failed_ids(result, {"a"}) is None


def test_sqs_record_has_the_lambda_event_shape() -> None:
    message = {
        "MessageId": "m1",
        "ReceiptHandle": "r1",
        "Body": "{}",
        "Attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1"},
        "MessageAttributes": {"k": {"StringValue": "v", "DataType": "String"}},
    }

    record = sqs_record(message, "arn:aws:sqs:us-east-1:123456789012:q", "us-east-1")

    assert record["attributes"] == {"ApproximateReceiveCount": "2", "SentTimestamp": "1"}
    assert record["messageAttributes"]["k"]["stringValue"] == "v"
    assert (record["eventSource"], record["eventSourceARN"]) == ("aws:sqs", "arn:aws:sqs:us-east-1:123456789012:q")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://notify:Pr0d-Secret!@db:5432/notify", "dbname=notify host=db password=*** port=5432 user=notify"),
        ("postgresql://notify@db/notify", "dbname=notify host=db user=notify"),
        ("postgresql://notify:Pr0d?Se#c@db/notify", "dbname=notify host=db password=*** user=notify"),
        ("postgresql://db:5432/notify?application_name=a@b", "application_name=a@b dbname=notify host=db port=5432"),
        ("postgresql://db/notify?password=Pr0d&sslmode=require", "dbname=notify host=db password=*** sslmode=require"),
        ("postgresql://notify@db/notify?pass%77ord=Pr0d", "dbname=notify host=db password=*** user=notify"),
        ("host=db user=u password=Pr0d dbname=d", "dbname=d host=db password=*** user=u"),
        ("host=db password='Pr0d \\' x' dbname=d", "dbname=d host=db password=***"),
        ("host=db password = Pr0d sslpassword=K3y", "host=db password=*** sslpassword=***"),
        ("postgresql://notify:Pr0d%Secret!@db:5432/notify", "(set, but libpq cannot read it)"),
    ],
)
def test_the_banner_shows_a_database_url_without_its_password(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_invocation_record_carries_the_function_error_as_lambda_does() -> None:
    error = {"errorType": "StripeUnavailableError", "errorMessage": "Stripe could not be reached", "stackTrace": []}
    arn = "arn:aws:lambda:us-east-1:123456789012:function:notify-local-stripeCredit:$LATEST"

    record = invocation_record({"Records": []}, arn, 3, error)

    assert record["responsePayload"] == error
    assert record["requestContext"]["functionArn"] == arn
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert invocation_record({}, arn, 1, "gone")["responsePayload"] == {"errorMessage": "gone"}


def test_wait_for_stop_ends_when_sigterm_is_handed_to_another_thread() -> None:
    # The kernel may hand a process's SIGTERM to any of its threads: the stack's main thread must still stop.
    code = (
        "import signal, sys, threading, time\n"
        "from infra.local.stack import wait_for_stop\n"
        "stop = threading.Event()\n"
        "signal.signal(signal.SIGTERM, lambda number, frame: stop.set())\n"
        "def worker():\n"
        "    time.sleep(0.2)\n"
        "    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "threading.Thread(target=worker, daemon=True).start()\n"
        "wait_for_stop(stop, 0.1)\n"
        "print('stopped')\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
    )

    assert result.stdout.strip() == "stopped"
