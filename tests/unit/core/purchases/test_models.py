"""Unit tests of core/purchases/models.py: what a promotion request accepts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from core.purchases.models import PromotionRequest

CREDIT = {"amount": 1000, "currency": "eur"}


def test_promotion_request_expires_at_without_offset_refused_naming_it() -> None:
    with pytest.raises(ValidationError) as refused:
        PromotionRequest.model_validate({"credit": CREDIT, "expires_at": "2026-03-01T12:00:00"})

    assert [error["loc"] for error in refused.value.errors()] == [("expires_at",)]


def test_promotion_request_expires_at_with_offset_kept() -> None:
    request = PromotionRequest.model_validate({"credit": CREDIT, "expires_at": "2026-03-01T14:00:00+02:00"})

    assert request.expires_at == datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
