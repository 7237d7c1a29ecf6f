"""Unit tests of subscribers/sns.py: SNS records as Lambda receives them, parsed into purchases; a message that is no
purchase fails the invocation after the others, naming fields, never values."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from subscribers.sns import InvalidPurchaseEventError, purchase_events
from tests.support.events import load_event


def _with_messages(*messages: str) -> dict[str, Any]:
    event = load_event("sns_purchase.json")
    (record,) = event["Records"]
    event["Records"] = [{**record, "Sns": {**record["Sns"], "Message": message}} for message in messages]
    return event


def test_purchase_events_sample_event_parsed() -> None:
    (purchase,) = purchase_events(load_event("sns_purchase.json"))

    assert (purchase.purchase_id, purchase.amount, purchase.currency, purchase.promo_code) == (
        "pi_3PxSample0001",
        2500,
        "eur",
        "WELCOME10",
    )


def test_purchase_events_every_record_of_a_list() -> None:
    message = json.loads(load_event("sns_purchase.json")["Records"][0]["Sns"]["Message"])
    second = json.dumps({**message, "purchase_id": "pi_2"})

    purchases = list(purchase_events(_with_messages(json.dumps(message), second)))

    assert [purchase.purchase_id for purchase in purchases] == ["pi_3PxSample0001", "pi_2"]


def test_purchase_events_invalid_message_raises_after_the_others_naming_fields_not_values(
    logs: Callable[[], str],
) -> None:
    """Dropped, the message would be lost with nothing to redrive: raising has Lambda retry it, then keep it in the
    purchase failures queue; the valid purchases of the same event are yielded first."""
    message = json.loads(load_event("sns_purchase.json")["Records"][0]["Sns"]["Message"])
    bad = json.dumps({"purchase_id": "pi_1", "customer_id": "not-a-customer", "email": "ada@example.com"})
    purchases = purchase_events(_with_messages(bad, json.dumps(message)))

    assert next(purchases).purchase_id == "pi_3PxSample0001"
    with pytest.raises(InvalidPurchaseEventError) as raised:
        next(purchases)

    text = str(raised.value)
    assert "95df01b4-ee98-5cb9-9903-4c221d41eb5e" in text
    assert "customer_id" in text
    assert "not-a-customer" not in text
    assert "ada@example.com" not in text
    output = logs()
    assert "message is not a purchase event" in output
    assert "customer_id" in output
    assert "not-a-customer" not in output
    assert "ada@example.com" not in output


@pytest.mark.parametrize(
    "changes",
    [{"amount": 1998.9999999999998}, {"purchase_id": "order#1001"}, {"customer_id": None}, {"currency": "euro"}],
    ids=["fractional-amount", "purchase-id", "no-customer", "currency"],
)
def test_purchase_events_required_field_unusable_raises(changes: dict[str, Any]) -> None:
    message = json.loads(load_event("sns_purchase.json")["Records"][0]["Sns"]["Message"])

    with pytest.raises(InvalidPurchaseEventError, match=next(iter(changes))):
        list(purchase_events(_with_messages(json.dumps({**message, **changes}))))


@pytest.mark.parametrize(
    ("changes", "left_out"),
    [
        ({"email": "a" * 309 + "@example.com"}, ("email",)),
        ({"user_id": "u" * 257}, ("user_id",)),
        ({"email": 42, "user_id": ["u"]}, ("email", "user_id")),
        # What a delivery message cannot carry: SQS refused the notification, and with a lone surrogate (the JSON
        # escape json.dumps writes) pydantic's parser refused the whole message, credit and all.
        ({"email": "ada\ud800@example.com"}, ("email",)),
        ({"email": "ada\uffff@example.com", "user_id": "u\ufffe"}, ("email", "user_id")),
    ],
    ids=["email-too-long", "user-id-too-long", "not-text", "lone-surrogate", "noncharacters"],
)
def test_purchase_events_unusable_email_or_user_id_left_out_the_purchase_kept(
    changes: dict[str, Any], left_out: tuple[str, ...], logs: Callable[[], str]
) -> None:
    """Fields the credit never reads must not cost the purchase its credit, nor the notification its purchase."""
    message = json.loads(load_event("sns_purchase.json")["Records"][0]["Sns"]["Message"])

    (purchase,) = purchase_events(_with_messages(json.dumps({**message, **changes})))

    assert (purchase.purchase_id, purchase.promo_code, purchase.fields_left_out) == (
        "pi_3PxSample0001",
        "WELCOME10",
        left_out,
    )
    assert all(getattr(purchase, name) is None for name in left_out)
    assert "fields_left_out" not in purchase.model_dump()
    output = logs()
    assert "optional fields of a purchase are not usable: left out" in output
    assert "example.com" not in output
    assert "uuu" not in output


def test_purchase_events_email_within_its_length_kept() -> None:
    message = json.loads(load_event("sns_purchase.json")["Records"][0]["Sns"]["Message"])
    email = "a" * 308 + "@example.com"

    (purchase,) = purchase_events(_with_messages(json.dumps({**message, "email": email})))

    assert (purchase.email, purchase.fields_left_out) == (email, ())


@pytest.mark.parametrize(("code", "invalid"), [("", False), ("SUMMER SALE", True)])
def test_purchase_events_empty_or_invalid_promo_code_keeps_the_purchase_without_it(code: str, invalid: bool) -> None:
    """An unusable code (a publisher's "" for none, a typo) costs the purchase its credit only, never the event."""
    message = json.loads(load_event("sns_purchase.json")["Records"][0]["Sns"]["Message"])

    (purchase,) = purchase_events(_with_messages(json.dumps({**message, "promo_code": code})))

    assert (purchase.purchase_id, purchase.promo_code, purchase.promo_code_invalid) == (
        "pi_3PxSample0001",
        None,
        invalid,
    )


def test_purchase_events_invalid_promo_code_logged_without_its_value(logs: Callable[[], str]) -> None:
    message = json.loads(load_event("sns_purchase.json")["Records"][0]["Sns"]["Message"])

    list(purchase_events(_with_messages(json.dumps({**message, "promo_code": "SUMMER SALE"}))))

    output = logs()
    assert "promo code of a purchase is not a valid code: left out" in output
    assert "SUMMER SALE" not in output


def test_purchase_events_message_not_json_raises(logs: Callable[[], str]) -> None:
    with pytest.raises(InvalidPurchaseEventError, match="invalid: message"):
        list(purchase_events(_with_messages("hello")))
    assert "95df01b4-ee98-5cb9-9903-4c221d41eb5e" in logs()


def test_purchase_events_no_records_yields_nothing() -> None:
    assert list(purchase_events({})) == []
