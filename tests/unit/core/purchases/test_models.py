"""Unit tests of core/purchases/models.py: what a promotion request and a Purchase event accept."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from core.purchases.models import PromotionRequest, PurchaseEvent

CREDIT = {"amount": 1000, "currency": "eur"}


def test_promotion_request_expires_at_without_offset_refused_naming_it() -> None:
    with pytest.raises(ValidationError) as refused:
        PromotionRequest.model_validate({"credit": CREDIT, "expires_at": "2026-03-01T12:00:00"})

    assert [error["loc"] for error in refused.value.errors()] == [("expires_at",)]


@pytest.mark.parametrize("expires_at", [0, "0", 4_102_444_800, "9999-12-31T23:59:59-23:59"])
def test_promotion_request_expires_at_no_iso_text_with_an_earthly_offset_refused_naming_it(expires_at: object) -> None:
    """0 was read as seconds since 1970: the promotion stored as expired in 1970 refused every purchase after."""
    with pytest.raises(ValidationError) as refused:
        PromotionRequest.model_validate({"credit": CREDIT, "expires_at": expires_at})

    assert [error["loc"] for error in refused.value.errors()] == [("expires_at",)]


def test_promotion_request_expires_at_with_offset_kept() -> None:
    request = PromotionRequest.model_validate({"credit": CREDIT, "expires_at": "2026-03-01T14:00:00+02:00"})

    assert request.expires_at == datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))


def _purchase(amount: object) -> str:
    return json.dumps(
        {
            "purchase_id": "pi_1",
            "customer_id": "cus_1",
            "amount": amount,
            "currency": "idr",
            "purchased_at": "2026-03-01T12:00:00Z",
        }
    )


@pytest.mark.parametrize("amount", [100_000_001, 999_999_999_999])
def test_purchase_event_amount_up_to_twelve_digits_accepted(amount: int) -> None:
    assert PurchaseEvent.model_validate_json(_purchase(amount)).amount == amount


@pytest.mark.parametrize("amount", [1_000_000_000_000, True, "100", 100.0, -1])
def test_purchase_event_amount_not_a_strict_twelve_digit_int_refused(amount: object) -> None:
    with pytest.raises(ValidationError) as refused:
        PurchaseEvent.model_validate_json(_purchase(amount))

    assert [error["loc"] for error in refused.value.errors()] == [("amount",)]


@pytest.mark.parametrize("amount", [100_000_001, 999_999_999_999])
def test_promotion_request_credit_up_to_twelve_digits_accepted(amount: int) -> None:
    request = PromotionRequest.model_validate_json(json.dumps({"credit": {"amount": amount, "currency": "idr"}}))

    assert request.credit.amount == amount


@pytest.mark.parametrize("amount", [True, "100", 100.0, 1_000_000_000_000])
def test_promotion_request_credit_amount_not_a_strict_int_refused_naming_it(amount: object) -> None:
    with pytest.raises(ValidationError) as refused:
        PromotionRequest.model_validate_json(json.dumps({"credit": {"amount": amount, "currency": "eur"}}))

    assert [error["loc"] for error in refused.value.errors()] == [("credit", "amount")]


def test_promotion_request_credit_unknown_key_refused_naming_it() -> None:
    with pytest.raises(ValidationError) as refused:
        PromotionRequest.model_validate_json(json.dumps({"credit": {**CREDIT, "amount_off": 5}}))

    assert [error["loc"] for error in refused.value.errors()] == [("credit", "amount_off")]


def _with_code(code: object) -> str:
    return json.dumps({**json.loads(_purchase(2500)), "promo_code": code})


@pytest.mark.parametrize("code", ["", "  "])
def test_purchase_event_empty_promo_code_read_as_none(code: str) -> None:
    purchase = PurchaseEvent.model_validate_json(_with_code(code))

    assert (purchase.promo_code, purchase.promo_code_invalid) == (None, False)


@pytest.mark.parametrize("code", ["SUMMER SALE", "WELCOME10!", "x" * 65, 10, {"code": "WELCOME10"}])
def test_purchase_event_invalid_promo_code_left_out_and_marked(code: object) -> None:
    purchase = PurchaseEvent.model_validate_json(_with_code(code))

    assert (purchase.promo_code, purchase.promo_code_invalid) == (None, True)
    assert "promo_code" not in purchase.model_dump(exclude_none=True)


def test_purchase_event_valid_promo_code_kept_in_upper_case() -> None:
    purchase = PurchaseEvent.model_validate_json(_with_code(" welcome10 "))

    assert (purchase.promo_code, purchase.promo_code_invalid) == ("WELCOME10", False)


def test_purchase_event_promo_code_invalid_never_read_from_the_message() -> None:
    message = json.dumps({**json.loads(_with_code("WELCOME10")), "promo_code_invalid": True})

    purchase = PurchaseEvent.model_validate_json(message)

    assert (purchase.promo_code, purchase.promo_code_invalid) == ("WELCOME10", False)
