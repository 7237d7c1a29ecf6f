"""The Stripe webhook function under moto: API Gateway proxy events carrying bodies signed as Stripe signs them, the
endpoint secret in SSM, the verified events on the webhook queue."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes.lambda_context import FakeLambdaContext
from tests.support.aws import AwsResources, receive_all
from tests.support.events import api_event, response_json
from tests.support.stripe_webhooks import WEBHOOK_SECRET, event_body, sign, stripe_event

SECRET_PARAMETER = "/notify/test/stripe/webhook-secret"
EVENT = stripe_event("checkout_session_completed")
PAYLOAD = event_body(EVENT)


@pytest.fixture
def webhook_queue(aws: AwsResources, monkeypatch: pytest.MonkeyPatch) -> str:
    """The webhook queue and the endpoint secret's SecureString, named in the environment."""
    from core import clients

    url: str = aws.sqs.create_queue(QueueName="notify-test-stripe-webhooks")["QueueUrl"]
    aws.ssm.put_parameter(Name=SECRET_PARAMETER, Value=WEBHOOK_SECRET, Type="SecureString")
    monkeypatch.setenv("STRIPE_WEBHOOK_QUEUE_URL", url)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET_PARAMETER", SECRET_PARAMETER)
    clients.reset()
    return url


def _post(context: FakeLambdaContext, body: str, signature: str | None, base64_encoded: bool = False) -> Any:
    from api.stripe_webhook import WEBHOOK_PATH, handler

    headers = {"Stripe-Signature": signature} if signature is not None else {}
    event = api_event("POST", WEBHOOK_PATH, body=body, headers=headers, api_key=None, api_key_id=None)
    if base64_encoded:
        event["body"] = base64.b64encode(body.encode()).decode()
        event["isBase64Encoded"] = True
    return handler(event, context)


def test_stripe_webhook_signed_event_envelope_is_queued_with_its_type(
    aws: AwsResources, webhook_queue: str, lambda_context: FakeLambdaContext
) -> None:
    response = _post(lambda_context, PAYLOAD, sign(PAYLOAD), base64_encoded=True)

    assert (response["statusCode"], response_json(response)) == (200, {"received": True})
    (message,) = aws.sqs.receive_message(QueueUrl=webhook_queue, MessageAttributeNames=["All"])["Messages"]
    assert json.loads(message["Body"])["data"] == {
        "object": {"id": EVENT["data"]["object"]["id"], "object": "checkout.session"}
    }
    assert "client_secret" not in message["Body"]
    assert message["MessageAttributes"]["stripe_event_type"]["StringValue"] == "checkout.session.completed"
    assert message["MessageAttributes"]["stripe_event_id"]["StringValue"] == "evt_1PkI3c2eZvKYlo2Cq9RfV0xT"


def test_stripe_webhook_secret_stored_with_a_trailing_newline_still_verifies(
    aws: AwsResources, webhook_queue: str, lambda_context: FakeLambdaContext
) -> None:
    # As `aws ssm put-parameter --value file://whsec.txt` stores a file that ends in a newline; Stripe signs with the
    # secret itself.
    aws.ssm.put_parameter(Name=SECRET_PARAMETER, Value=WEBHOOK_SECRET + "\n", Type="SecureString", Overwrite=True)

    response = _post(lambda_context, PAYLOAD, sign(PAYLOAD))

    assert (response["statusCode"], response_json(response)) == (200, {"received": True})
    assert len(receive_all(aws.sqs, webhook_queue)) == 1


def test_stripe_webhook_unhandled_type_without_object_id_answers_200_nothing_queued(
    aws: AwsResources, webhook_queue: str, lambda_context: FakeLambdaContext
) -> None:
    event = stripe_event("checkout_session_completed", type="balance.available")
    event["data"] = {"object": {"object": "balance", "available": [{"amount": 4999, "currency": "eur"}]}}
    payload = event_body(event)

    response = _post(lambda_context, payload, sign(payload))

    assert (response["statusCode"], response_json(response)) == (200, {"received": True})
    assert receive_all(aws.sqs, webhook_queue) == []


@pytest.mark.parametrize(
    ("signature", "problem"),
    [
        (lambda: None, "header is missing"),
        (lambda: f"t={int(time.time())},v1={'f' * 64}", "does not match"),
        (lambda: sign(PAYLOAD, "whsec_not_the_endpoint_secret"), "does not match"),
        (lambda: sign(PAYLOAD, timestamp=int(time.time()) - 301), "outside the tolerance"),
    ],
    ids=["missing", "forged", "wrong-secret", "stale"],
)
def test_stripe_webhook_refused_400_nothing_queued(
    aws: AwsResources,
    webhook_queue: str,
    lambda_context: FakeLambdaContext,
    signature: Callable[[], str | None],
    problem: str,
) -> None:
    # Signed when the test runs, not when it is collected: a long suite would otherwise make every one stale.
    response = _post(lambda_context, PAYLOAD, signature())

    assert response["statusCode"] == 400
    assert problem in response_json(response)["message"]
    assert receive_all(aws.sqs, webhook_queue) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("é" + base64.b64encode(PAYLOAD.encode()).decode(), "the body is not valid base64"),
        ("not base64!", "the body is not valid base64"),
        (base64.b64encode(b"\xff\xfe").decode(), "the body is not UTF-8 text, which Stripe signs"),
    ],
    ids=["non-ascii", "not-base64", "not-utf8"],
)
def test_stripe_webhook_base64_flagged_body_that_decodes_to_no_text_is_400(
    aws: AwsResources, webhook_queue: str, lambda_context: FakeLambdaContext, body: str, problem: str
) -> None:
    # b64decode raises a plain ValueError (not binascii.Error) for a text holding non-ASCII characters: it was a 500.
    from api.stripe_webhook import WEBHOOK_PATH, handler

    event = api_event(
        "POST", WEBHOOK_PATH, body=body, headers={"Stripe-Signature": sign(PAYLOAD)}, api_key=None, api_key_id=None
    )
    event["isBase64Encoded"] = True

    response = handler(event, lambda_context)

    assert (response["statusCode"], response_json(response)) == (400, {"message": problem})
    assert receive_all(aws.sqs, webhook_queue) == []


def test_stripe_webhook_signed_body_nested_past_the_parser_is_400(
    aws: AwsResources, webhook_queue: str, lambda_context: FakeLambdaContext
) -> None:
    # The SDK checks the signature, then parses: a RecursionError, which was a 500. Only the secret's holder can sign.
    body = "[" * 100_000 + "]" * 100_000

    response = _post(lambda_context, body, sign(body))

    assert (response["statusCode"], response_json(response)) == (
        400,
        {"message": "the body is not a Stripe event (JSON object)"},
    )
    assert receive_all(aws.sqs, webhook_queue) == []


def test_stripe_webhook_queue_failure_answers_502_so_stripe_retries(
    aws: AwsResources, webhook_queue: str, lambda_context: FakeLambdaContext
) -> None:
    aws.sqs.delete_queue(QueueUrl=webhook_queue)

    response = _post(lambda_context, PAYLOAD, sign(PAYLOAD))

    assert response["statusCode"] == 502
    assert "enqueuing the Stripe event failed" in response_json(response)["message"]


def test_stripe_webhook_secret_missing_answers_502(
    aws: AwsResources, webhook_queue: str, lambda_context: FakeLambdaContext
) -> None:
    aws.ssm.delete_parameter(Name=SECRET_PARAMETER)

    response = _post(lambda_context, PAYLOAD, sign(PAYLOAD))

    assert response["statusCode"] == 502
    assert "reading the Stripe webhook secret failed (ParameterNotFound)" in response_json(response)["message"]
