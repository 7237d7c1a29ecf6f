"""The Stripe credit subscriber under moto, the real stripe SDK talking to the local Stripe server over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from core.purchases.credit import credit_idempotency_key
from core.purchases.errors import StripeUnavailableError
from core.purchases.models import PromotionRequest
from core.purchases.promotions import PromotionStore
from core.purchases.purchases import PurchaseStore
from tests.fakes.lambda_context import FakeLambdaContext
from tests.integration.subscribers.conftest import PURCHASE_TABLES, STRIPE_SECRET_KEY
from tests.integration.subscribers.purchases import purchase_message, sns_event
from tests.support.aws import AwsResources

pytestmark = pytest.mark.usefixtures("purchases_aws")


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
