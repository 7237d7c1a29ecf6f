"""The Stripe credit subscriber under moto, the real stripe SDK talking to the local Stripe server over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.purchases.credit import credit_idempotency_key
from core.purchases.errors import StripeUnavailableError
from core.purchases.models import PromotionRequest
from core.purchases.promotions import PromotionStore
from core.purchases.purchases import PurchaseStore
from subscribers.sns import InvalidPurchaseEventError
from tests.fakes.lambda_context import FakeLambdaContext
from tests.integration.subscribers.conftest import PURCHASE_TABLES, STRIPE_SECRET_KEY
from tests.integration.subscribers.purchases import purchase_message, sns_event
from tests.support.aws import AwsResources, receive_all
from tests.support.aws import client as aws_client

pytestmark = pytest.mark.usefixtures("purchases_aws")
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def customer_id(stripe_server: Any) -> str:
    """A customer of the local Stripe server."""
    customer_id: str = stripe_server.client().v1.customers.create({"email": "ada@example.com"}).id
    return customer_id


@pytest.fixture
def promotion(purchases_aws: AwsResources) -> None:
    """WELCOME10: 10.00 EUR of credit."""
    request = PromotionRequest.model_validate({"credit": {"amount": 1000, "currency": "eur"}, "description": "Welcome"})
    PromotionStore(purchases_aws.dynamodb, PURCHASE_TABLES["PROMOTIONS_TABLE"][0]).put(
        "welcome10", request, datetime.now(UTC)
    )


def _credit(event: dict[str, Any], context: FakeLambdaContext) -> Any:
    from subscribers.credit import handler

    return handler(event, context)


def _transactions(server: Any, customer_id: str) -> list[Any]:
    return list(server.client().v1.customers.balance_transactions.list(customer_id).data)


def _purchases(aws: AwsResources) -> PurchaseStore:
    return PurchaseStore(aws.dynamodb, PURCHASE_TABLES["PURCHASES_TABLE"][0])


@pytest.mark.usefixtures("promotion")
def test_credit_handler_credits_amount_currency_description_metadata_with_key(
    stripe_server: Any, customer_id: str, purchases_aws: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    result = _credit(sns_event(purchase_message(customer_id=customer_id)), lambda_context)

    assert result == {"purchases": {"pi_3PxSample0001": "credited"}}
    (transaction,) = _transactions(stripe_server, customer_id)
    assert (transaction.amount, transaction.currency, transaction.description) == (-1000, "eur", "Welcome")
    assert transaction.metadata.to_dict() == {"purchase_id": "pi_3PxSample0001", "promo_code": "WELCOME10"}
    key = credit_idempotency_key("pi_3PxSample0001", "WELCOME10")
    assert stripe_server.idempotency.get((STRIPE_SECRET_KEY, key)) is not None
    record = _purchases(purchases_aws).get("pi_3PxSample0001")
    assert record.credit is not None
    assert (record.credit.balance_transaction, record.credit.amount, record.credit.currency) == (
        transaction.id,
        1000,
        "eur",
    )


@pytest.mark.usefixtures("promotion")
def test_credit_handler_same_event_twice_one_balance_transaction(
    stripe_server: Any, customer_id: str, lambda_context: FakeLambdaContext
) -> None:
    event = sns_event(purchase_message(customer_id=customer_id))
    _credit(event, lambda_context)

    result = _credit(event, lambda_context)

    assert result == {"purchases": {"pi_3PxSample0001": "already_credited"}}
    assert len(_transactions(stripe_server, customer_id)) == 1


@pytest.mark.usefixtures("promotion")
def test_credit_handler_record_lost_after_credit_stripe_replays_same_transaction(
    stripe_server: Any, customer_id: str, purchases_aws: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    event = sns_event(purchase_message(customer_id=customer_id))
    _credit(event, lambda_context)
    first = _purchases(purchases_aws).get("pi_3PxSample0001").credit
    purchases_aws.dynamodb.delete_item(
        TableName=PURCHASE_TABLES["PURCHASES_TABLE"][0], Key={"purchase_id": {"S": "pi_3PxSample0001"}}
    )

    result = _credit(event, lambda_context)

    assert result == {"purchases": {"pi_3PxSample0001": "credited"}}
    assert len(_transactions(stripe_server, customer_id)) == 1
    assert _purchases(purchases_aws).get("pi_3PxSample0001").credit == first


@pytest.mark.usefixtures("promotion", "stripe_server")
def test_credit_handler_unknown_customer_recorded_not_raised(
    purchases_aws: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    result = _credit(sns_event(purchase_message(customer_id="cus_Unknown0000")), lambda_context)

    assert result == {"purchases": {"pi_3PxSample0001": "refused"}}
    record = _purchases(purchases_aws).get("pi_3PxSample0001")
    assert (record.credit, record.credit_error) == (None, "unknown_customer")


def _credit_subscription_attributes() -> dict[str, str]:
    """The stripeCredit subscription's attributes as serverless.yml declares them and the local stack subscribes."""

    class Loader(yaml.SafeLoader):
        """Keeps CloudFormation's short tags (``!Ref``…) as plain values."""

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    definition = yaml.load((ROOT / "serverless.yml").read_text(), Loader=Loader)  # noqa: S506
    (sns,) = [event["sns"] for event in definition["functions"]["stripeCredit"]["events"] if "sns" in event]
    attributes = {"FilterPolicy": json.dumps(sns["filterPolicy"])}
    if "filterPolicyScope" in sns:
        attributes["FilterPolicyScope"] = sns["filterPolicyScope"]
    return attributes


@pytest.mark.usefixtures("promotion")
def test_credit_subscription_promo_code_event_without_attributes_is_delivered_and_credited(
    stripe_server: Any, customer_id: str, purchases_aws: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    """A publisher following the contract (the JSON body, no attribute) was filtered out: never credited, no trace."""
    sns = aws_client("sns")
    topic = sns.create_topic(Name="notify-test-purchase")["TopicArn"]
    queue_url = purchases_aws.sqs.create_queue(QueueName="notify-test-stripe-credit")["QueueUrl"]
    queue_arn = purchases_aws.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn["Attributes"]["QueueArn"],
        Attributes=_credit_subscription_attributes(),
    )
    without_code = {key: value for key, value in purchase_message(purchase_id="ord-2").items() if key != "promo_code"}
    sns.publish(TopicArn=topic, Message=json.dumps(purchase_message(customer_id=customer_id)))
    sns.publish(TopicArn=topic, Message=json.dumps(without_code))

    (delivered,) = [json.loads(message["Body"])["Message"] for message in receive_all(purchases_aws.sqs, queue_url)]
    result = _credit(sns_event(delivered), lambda_context)

    assert result == {"purchases": {"pi_3PxSample0001": "credited"}}
    assert len(_transactions(stripe_server, customer_id)) == 1


@pytest.mark.usefixtures("promotion", "stripe_server")
def test_credit_handler_invalid_code_recorded_as_invalid_code_not_dropped(
    purchases_aws: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    result = _credit(sns_event(purchase_message(promo_code="SUMMER SALE")), lambda_context)

    assert result == {"purchases": {"pi_3PxSample0001": "refused"}}
    record = _purchases(purchases_aws).get("pi_3PxSample0001")
    assert (record.credit, record.credit_error, record.promo_code) == (None, "invalid_code", None)


@pytest.mark.usefixtures("promotion")
@pytest.mark.parametrize("changes", [{"email": "a" * 309 + "@example.com"}, {"user_id": "u" * 257}])
def test_credit_handler_unusable_email_or_user_id_still_credits(
    changes: dict[str, Any],
    stripe_server: Any,
    customer_id: str,
    purchases_aws: AwsResources,
    lambda_context: FakeLambdaContext,
) -> None:
    """Fields the credit never reads once dropped the whole purchase: no credit, nothing kept to redrive."""
    result = _credit(sns_event(purchase_message(customer_id=customer_id, **changes)), lambda_context)

    assert result == {"purchases": {"pi_3PxSample0001": "credited"}}
    assert len(_transactions(stripe_server, customer_id)) == 1


@pytest.mark.usefixtures("promotion")
def test_credit_handler_message_no_purchase_fails_the_invocation_after_crediting_the_others(
    stripe_server: Any, customer_id: str, purchases_aws: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    """Lambda then retries the event (the credited purchase is found, not credited again) and keeps it in the purchase
    failures queue: the message that is no purchase is never silently lost."""
    event = sns_event(
        purchase_message(purchase_id="order#1001", customer_id=customer_id),
        purchase_message(customer_id=customer_id),
    )

    with pytest.raises(InvalidPurchaseEventError, match="purchase_id"):
        _credit(event, lambda_context)
    with pytest.raises(InvalidPurchaseEventError):
        _credit(event, lambda_context)

    assert len(_transactions(stripe_server, customer_id)) == 1
    assert _purchases(purchases_aws).get("pi_3PxSample0001").credit is not None


@pytest.mark.usefixtures("promotion")
def test_credit_handler_stripe_500_raises_then_retry_credits_once(
    stripe_server: Any,
    customer_id: str,
    purchases_aws: AwsResources,
    lambda_context: FakeLambdaContext,
    logs: Callable[[], str],
) -> None:
    event = sns_event(purchase_message(customer_id=customer_id))
    stripe_server.fail("/v1/customers", status=500, count=1)

    with pytest.raises(StripeUnavailableError) as raised:
        _credit(event, lambda_context)

    assert STRIPE_SECRET_KEY not in logs() + str(raised.value)

    assert _transactions(stripe_server, customer_id) == []
    record = _purchases(purchases_aws).get("pi_3PxSample0001")
    assert (record.credit, record.credit_error) == (None, None)
    assert _credit(event, lambda_context) == {"purchases": {"pi_3PxSample0001": "credited"}}
    assert len(_transactions(stripe_server, customer_id)) == 1


@pytest.mark.usefixtures("promotion")
def test_credit_handler_stripe_500_after_crediting_then_promotion_changed_retry_finds_the_credit_once(
    stripe_server: Any, customer_id: str, purchases_aws: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    event = sns_event(purchase_message(customer_id=customer_id))
    stripe_server.fail("/v1/customers", status=500, count=1, method="POST", after=True)
    with pytest.raises(StripeUnavailableError):
        _credit(event, lambda_context)
    # The promotion changes before the retry: the retry must neither send other terms nor refuse.
    PromotionStore(purchases_aws.dynamodb, PURCHASE_TABLES["PROMOTIONS_TABLE"][0]).put(
        "welcome10",
        PromotionRequest.model_validate({"credit": {"amount": 2000, "currency": "eur"}, "active": False}),
        datetime.now(UTC),
    )

    result = _credit(event, lambda_context)

    assert result == {"purchases": {"pi_3PxSample0001": "credited"}}
    (transaction,) = _transactions(stripe_server, customer_id)
    record = _purchases(purchases_aws).get("pi_3PxSample0001")
    assert record.credit is not None
    assert (record.credit.balance_transaction, record.credit.amount, record.credit_error) == (
        transaction.id,
        1000,
        None,
    )
    assert stripe_server.client().v1.customers.retrieve(customer_id).balance == -1000


@pytest.mark.usefixtures("promotion")
@pytest.mark.parametrize("failures", [1, 2], ids=["one-attempt", "two-attempts"])
def test_credit_handler_stripe_500_without_crediting_replayed_for_its_key_retry_credits_once(
    stripe_server: Any,
    customer_id: str,
    purchases_aws: AwsResources,
    lambda_context: FakeLambdaContext,
    failures: int,
) -> None:
    # Stripe began the request, made no credit and answered 500; it replays that 500 for the key for 24 hours.
    event = sns_event(purchase_message(customer_id=customer_id))
    stripe_server.fail("/v1/customers", status=500, count=failures, method="POST", during=True)
    for _ in range(failures):
        with pytest.raises(StripeUnavailableError):
            _credit(event, lambda_context)

    result = _credit(event, lambda_context)

    assert result == {"purchases": {"pi_3PxSample0001": "credited"}}
    (transaction,) = _transactions(stripe_server, customer_id)
    record = _purchases(purchases_aws).get("pi_3PxSample0001")
    assert record.credit is not None
    assert (record.credit.balance_transaction, transaction.amount) == (transaction.id, -1000)
    assert stripe_server.client().v1.customers.retrieve(customer_id).balance == -1000


@pytest.mark.usefixtures("promotion")
def test_credit_handler_stripe_500_after_crediting_replayed_for_its_key_retry_credits_nothing_more(
    stripe_server: Any, customer_id: str, purchases_aws: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    event = sns_event(purchase_message(customer_id=customer_id))
    stripe_server.fail("/v1/customers", status=500, count=1, method="POST", after=True)
    with pytest.raises(StripeUnavailableError):
        _credit(event, lambda_context)

    for _ in range(2):
        _credit(event, lambda_context)

    (transaction,) = _transactions(stripe_server, customer_id)
    record = _purchases(purchases_aws).get("pi_3PxSample0001")
    assert record.credit is not None
    assert record.credit.balance_transaction == transaction.id
