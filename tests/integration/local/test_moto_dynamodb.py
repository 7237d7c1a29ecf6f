"""infra/local/moto_dynamodb.py under moto: two conditional writes of one item sent at the same moment, one of them
refused, as DynamoDB refuses it. moto's check of a condition is widened here (a pause after it), so that without the
lock both writes pass it every time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.local.moto_dynamodb import METHODS, serialize_writes

TABLE = "pacing"


@pytest.fixture
def table() -> Iterator[Any]:
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "destination", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "destination", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


@pytest.fixture
def slow_conditions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pause 50 ms after moto evaluates a condition: another thread's write fits between its check and its write."""
    from moto.dynamodb import models

    create = models.create_condition_expression_parser

    def widened(*args: Any, **kwargs: Any) -> Any:
        parser = create(*args, **kwargs)
        parse = parser.parse

        def parse_then_widen() -> Any:
            op = parse()
            expr = op.expr

            def slow_expr(item: Any) -> Any:
                held = expr(item)
                time.sleep(0.05)
                return held

            op.expr = slow_expr  # type: ignore[method-assign]
            return op

        parser.parse = parse_then_widen  # type: ignore[method-assign]
        return parser

    monkeypatch.setattr(models, "create_condition_expression_parser", widened)


def _take_at_once(client: Any, writers: int = 2) -> list[bool | str]:
    """Send ``writers`` conditional updates creating the same item at one moment; return which were accepted (an
    error other than the condition's, by its code)."""
    barrier = threading.Barrier(writers)
    held: list[bool | str] = []
    lock = threading.Lock()

    def take(index: int) -> None:
        barrier.wait()
        try:
            client.update_item(
                TableName=TABLE,
                Key={"destination": {"S": "hook"}},
                UpdateExpression="SET tat = :tat",
                ConditionExpression="attribute_not_exists(tat)",
                ExpressionAttributeValues={":tat": {"N": str(index)}},
            )
            outcome: bool | str = True
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            outcome = False if code == "ConditionalCheckFailedException" else code
        with lock:
            held.append(outcome)

    threads = [threading.Thread(target=take, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return held


@pytest.mark.usefixtures("slow_conditions")
def test_moto_dynamodb_conditional_writes_at_once_one_is_refused(table: Any) -> None:
    serialize_writes()

    assert sorted(_take_at_once(table, writers=3)) == [False, False, True]


@pytest.mark.usefixtures("slow_conditions")
def test_moto_dynamodb_unserialized_both_writes_pass_the_condition(table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.models import DynamoDBBackend

    for name in METHODS:
        monkeypatch.setattr(DynamoDBBackend, name, getattr(DynamoDBBackend, name).__wrapped__)

    assert _take_at_once(table) == [True, True]


def test_moto_dynamodb_serialize_writes_wraps_each_method_once() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    serialize_writes()
    wrapped = {name: getattr(DynamoDBBackend, name) for name in METHODS}
    serialize_writes()

    assert {name: getattr(DynamoDBBackend, name) for name in METHODS} == wrapped
    assert all(not hasattr(method.__wrapped__, "__wrapped__") for method in wrapped.values())
