"""core/purchases/promotions.py on moto: codes in upper case, create versus replace, not-found, a paged scan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.errors import NotFoundError
from core.purchases.models import PromotionRequest
from core.purchases.promotions import PromotionStore
from tests.integration.subscribers.conftest import PURCHASE_TABLES

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _request(**changes: object) -> PromotionRequest:
    fields: dict[str, object] = {"credit": {"amount": 1000, "currency": "EUR"}, "description": "Welcome"}
    fields.update(changes)
    return PromotionRequest.model_validate(fields)


@pytest.fixture
def store(dynamodb: Any) -> PromotionStore:
    return PromotionStore(dynamodb, PURCHASE_TABLES["PROMOTIONS_TABLE"][0])


def test_promotion_store_put_then_replace_keeps_created_at_and_removes_absent_fields(store: PromotionStore) -> None:
    expires = NOW + timedelta(days=30)
    created, was_created = store.put("welcome10", _request(expires_at=expires), NOW)

    replaced, replaced_created = store.put("WELCOME10", _request(description=None, active=False), NOW + timedelta(1))

    assert (was_created, replaced_created) == (True, False)
    assert (created.code, created.credit.currency, created.expires_at) == ("WELCOME10", "eur", expires)
    stored = store.get("Welcome10")
    assert stored == replaced
    assert (stored.created_at, stored.updated_at) == (NOW, NOW + timedelta(1))
    assert (stored.description, stored.expires_at, stored.active) == (None, None, False)


def test_promotion_store_get_and_delete_unknown_raise_not_found(store: PromotionStore) -> None:
    with pytest.raises(NotFoundError):
        store.get("NOPE")
    with pytest.raises(NotFoundError):
        store.delete("NOPE")


def test_promotion_store_delete_then_page_lists_the_rest(store: PromotionStore) -> None:
    for code in ("zeta", "alpha", "mid"):
        store.put(code, _request(), NOW)

    store.delete("mid")

    promotions, more = store.page(None, 10)
    assert (sorted(promotion.code for promotion in promotions), more) == (["ALPHA", "ZETA"], False)


def test_promotion_store_pages_walk_every_promotion_once(store: PromotionStore) -> None:
    codes = {f"CODE-{index:03}" for index in range(25)}
    for code in codes:
        store.put(code, _request(), NOW)

    seen: list[str] = []
    after = None
    while True:
        promotions, more = store.page(after, 10)
        seen += [promotion.code for promotion in promotions]
        if not more:
            break
        after = promotions[-1].code

    assert sorted(seen) == sorted(codes)
