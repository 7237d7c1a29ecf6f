"""Integration tests of the admin routes of promotions, purchases and payments (api/handler.py) on moto."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from core.purchases.models import CreditRecord, PurchaseEvent
from core.purchases.purchases import PurchaseStore
from tests.fakes.lambda_context import FakeLambdaContext
from tests.integration.api.conftest import AdminApi
from tests.support.aws import ADMIN_TOKEN, NAMES, AwsResources
from tests.support.events import admin_event, response_json

PROMOTION = "/v1/promotions/{code}"
CREDIT = {"credit": {"amount": 1000, "currency": "EUR"}, "description": "Welcome", "active": True}


@pytest.fixture
def tables(aws: AwsResources) -> AwsResources:
    """The promotions, purchases and payments tables, as infra/purchases.yml keys them."""
    for variable, key in (
        ("PROMOTIONS_TABLE", "code"),
        ("PURCHASES_TABLE", "purchase_id"),
        ("PAYMENTS_TABLE", "payment_id"),
    ):
        aws.dynamodb.create_table(
            TableName=NAMES[variable],
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        )
    return aws


def _put(admin: AdminApi, code: str, body: Any) -> dict[str, Any]:
    return admin.call("PUT", PROMOTION, {"code": code}, body)


def test_put_promotion_new_code_returns_201_in_upper_case(admin: AdminApi, tables: AwsResources) -> None:
    result = _put(admin, "welcome10", CREDIT)

    assert result["statusCode"] == 201
    body = response_json(result)
    assert (body["code"], body["credit"], body["active"]) == ("WELCOME10", {"amount": 1000, "currency": "eur"}, True)


def test_put_promotion_again_returns_200_and_keeps_created_at(admin: AdminApi, tables: AwsResources) -> None:
    first = response_json(_put(admin, "WELCOME10", CREDIT))

    again = _put(admin, "WELCOME10", {**CREDIT, "active": False})

    assert again["statusCode"] == 200
    assert response_json(again)["created_at"] == first["created_at"]
    assert response_json(again)["active"] is False


def test_get_and_list_promotions_show_what_was_put(admin: AdminApi, tables: AwsResources) -> None:
    _put(admin, "B-CODE", CREDIT)
    _put(admin, "A-CODE", {"credit": {"amount": 500, "currency": "usd"}})

    got = response_json(admin.call("GET", PROMOTION, {"code": "a-code"}))
    listed = response_json(admin.call("GET", "/v1/promotions"))

    assert got["credit"] == {"amount": 500, "currency": "usd"}
    assert sorted(item["code"] for item in listed["promotions"]) == ["A-CODE", "B-CODE"]
    assert "next" not in listed


def test_list_promotions_pages_walk_every_promotion_once(admin: AdminApi, tables: AwsResources) -> None:
    # Codes made per customer make a catalogue: listed whole, 9,400 of them passed a Lambda answer's 6 MB (a 502).
    codes = {f"CODE-{index:03}" for index in range(25)}
    for code in codes:
        _put(admin, code, CREDIT)

    seen: list[str] = []
    query = {"limit": "10"}
    while True:
        page = response_json(admin.call("GET", "/v1/promotions", query=query))
        assert len(page["promotions"]) <= 10
        seen += [item["code"] for item in page["promotions"]]
        if "next" not in page:
            break
        query = {"limit": "10", "cursor": page["next"]}

    assert sorted(seen) == sorted(codes)
    assert len(response_json(admin.call("GET", "/v1/promotions"))["promotions"]) == 25


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": "0"}, "limit: must be a whole number from 1 to 100"),
        ({"limit": "101"}, "limit: must be a whole number from 1 to 100"),
        ({"limit": "9" * 4301}, "limit: must be a whole number from 1 to 100"),  # more digits than Python reads
        ({"cursor": "bm90LWpzb24"}, "cursor: not a cursor this API gave; use the 'next' value of a previous page"),
        ({"cursor": "eyJjIjogIiEhIn0"}, "cursor: not a cursor this API gave; use the 'next' value of a previous page"),
    ],
    ids=["limit-0", "limit-101", "limit-4301-digits", "cursor-not-json", "cursor-not-a-code"],
)
def test_list_promotions_bad_query_answers_422_naming_it(
    admin: AdminApi, tables: AwsResources, query: dict[str, str], message: str
) -> None:
    response = admin.call("GET", "/v1/promotions", query=query)

    assert (response["statusCode"], response_json(response)) == (422, {"message": message})


def test_delete_promotion_returns_204_then_404(admin: AdminApi, tables: AwsResources) -> None:
    _put(admin, "GONE", CREDIT)

    assert admin.call("DELETE", PROMOTION, {"code": "GONE"})["statusCode"] == 204
    assert admin.call("DELETE", PROMOTION, {"code": "GONE"})["statusCode"] == 404
    assert admin.call("GET", PROMOTION, {"code": "GONE"})["statusCode"] == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"credit": {"amount": 0, "currency": "eur"}}, "credit.amount"),
        ({"credit": {"amount": 100, "currency": "euro"}}, "credit.currency"),
        ({"credit": {"amount": 100, "currency": "eur"}, "active": "maybe"}, "active"),
        ({"credit": {"amount": 100, "currency": "eur"}, "active": "yes"}, "active"),
        ({"credit": {"amount": 100, "currency": "eur"}, "active": 1}, "active"),
        ({"credit": {"amount": 100, "currency": "eur"}, "expires_at": "soon"}, "expires_at"),
        ({"credit": {"amount": 100, "currency": "eur"}, "extra": 1}, "extra"),
        ({}, "credit"),
        ({"credit": {"amount": True, "currency": "eur"}}, "credit.amount"),
        ({"credit": {"amount": "100", "currency": "eur"}}, "credit.amount"),
        ({"credit": {"amount": 1_000_000_000_000, "currency": "idr"}}, "credit.amount"),
        ({"credit": {"amount": 100, "currency": "eur", "extra": 1}}, "credit.extra"),
    ],
)
def test_put_promotion_invalid_body_is_422_naming_the_field(
    admin: AdminApi, tables: AwsResources, body: dict[str, Any], field: str
) -> None:
    result = _put(admin, "BAD", body)

    assert result["statusCode"] == 422
    assert field in response_json(result)["message"]


def test_put_promotion_currency_not_a_code_is_told_in_words_not_by_its_pattern(
    admin: AdminApi, tables: AwsResources
) -> None:
    result = _put(admin, "BAD", {"credit": {"amount": 100, "currency": "euro"}})

    assert response_json(result) == {
        "message": "credit.currency: must be a three-letter ISO 4217 currency code, such as eur or usd"
    }


def test_put_promotion_twelve_digit_credit_is_stored(admin: AdminApi, tables: AwsResources) -> None:
    result = _put(admin, "IDR-BIG", {"credit": {"amount": 999_999_999_999, "currency": "idr"}})

    assert result["statusCode"] == 201
    assert response_json(result)["credit"] == {"amount": 999_999_999_999, "currency": "idr"}


@pytest.mark.parametrize(
    ("body", "message"),
    [("!!!notb64", "body: is not valid base64"), ("//4=", "body: is not UTF-8")],
    ids=["not-base64", "not-utf8"],
)
def test_put_promotion_undecodable_base64_body_is_400_naming_the_body(
    tables: AwsResources, lambda_context: FakeLambdaContext, body: str, message: str
) -> None:
    from api.handler import handler

    event = admin_event("PUT", PROMOTION, {"code": "X"}, None, ADMIN_TOKEN)
    event.update(body=body, isBase64Encoded=True)

    result = handler(event, lambda_context)

    assert (result["statusCode"], response_json(result)) == (400, {"message": message})


def test_put_promotion_invalid_code_is_422_naming_code(admin: AdminApi, tables: AwsResources) -> None:
    result = _put(admin, "no spaces!", CREDIT)

    assert result["statusCode"] == 422
    assert response_json(result)["message"].startswith("code:")


def test_get_purchase_shows_the_recorded_credit(admin: AdminApi, tables: AwsResources) -> None:
    event = PurchaseEvent(
        purchase_id="pay_1",
        customer_id="cus_A1",
        amount=2500,
        currency="eur",
        promo_code="WELCOME10",
        purchased_at=datetime(2026, 11, 22, tzinfo=UTC),
    )
    store = PurchaseStore(tables.dynamodb, NAMES["PURCHASES_TABLE"])
    store.record_credit(
        event, CreditRecord(balance_transaction="cbtxn_1", amount=1000, currency="eur"), datetime.now(UTC)
    )

    body = response_json(admin.call("GET", "/v1/purchases/{purchase_id}", {"purchase_id": "pay_1"}))

    assert body["credit"] == {"balance_transaction": "cbtxn_1", "amount": 1000, "currency": "eur"}
    assert body["promo_code"] == "WELCOME10"


@pytest.mark.parametrize(
    ("resource", "name"), [("/v1/purchases/{purchase_id}", "purchase_id"), ("/v1/payments/{payment_id}", "payment_id")]
)
def test_get_unknown_purchase_or_payment_is_404(
    admin: AdminApi, tables: AwsResources, resource: str, name: str
) -> None:
    assert admin.call("GET", resource, {name: "nothing-here"})["statusCode"] == 404


def test_get_purchase_invalid_id_is_422(admin: AdminApi, tables: AwsResources) -> None:
    result = admin.call("GET", "/v1/purchases/{purchase_id}", {"purchase_id": "bad id"})

    assert result["statusCode"] == 422
    assert "purchase_id" in response_json(result)["message"]
