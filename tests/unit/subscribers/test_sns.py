"""Unit tests of subscribers/sns.py: SNS records as Lambda receives them, parsed into purchases or dropped."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from subscribers.sns import purchase_events
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


def test_purchase_events_invalid_message_dropped_logging_fields_not_values(logs: Callable[[], str]) -> None:
    bad = json.dumps({"purchase_id": "pi_1", "customer_id": "not-a-customer", "email": "ada@example.com"})

    assert list(purchase_events(_with_messages(bad))) == []

    output = logs()
    assert "message is not a purchase event: dropped" in output
    assert "customer_id" in output
    assert "not-a-customer" not in output
    assert "ada@example.com" not in output


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


def test_purchase_events_message_not_json_dropped(logs: Callable[[], str]) -> None:
    assert list(purchase_events(_with_messages("hello"))) == []
    assert "95df01b4-ee98-5cb9-9903-4c221d41eb5e" in logs()


def test_purchase_events_no_records_yields_nothing() -> None:
    assert list(purchase_events({})) == []
