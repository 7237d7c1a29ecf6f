"""core/purchases/purchases.py on moto: two subscribers write one item without overwriting each other; a recorded
credit and a recorded notification are final."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.errors import NotFoundError
from core.purchases.models import CreditRecord, CreditTerms, PurchaseEvent
from core.purchases.purchases import PurchaseStore
from tests.integration.subscribers.conftest import PURCHASE_TABLES

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EVENT = PurchaseEvent(
    purchase_id="pi_1", customer_id="cus_1", amount=2500, currency="eur", promo_code="welcome10", purchased_at=NOW
)
CREDIT = CreditRecord(balance_transaction="cbtxn_1", amount=1000, currency="eur")
TERMS = CreditTerms(
    amount=999_999_999_999, currency="eur", description="Welcome", idempotency_key="credit:k", first_attempt_at=NOW
)


@pytest.fixture
def store(dynamodb: Any) -> PurchaseStore:
    return PurchaseStore(dynamodb, PURCHASE_TABLES["PURCHASES_TABLE"][0])


def test_purchase_store_credit_and_notification_both_kept(store: PurchaseStore) -> None:
    store.record_notification(EVENT, "n-1", NOW)

    store.record_credit(EVENT, CREDIT, NOW + timedelta(seconds=1))

    record = store.get("pi_1")
    assert (record.credit, record.notification_id) == (CREDIT, "n-1")
    assert (record.customer_id, record.promo_code, record.updated_at) == (
        "cus_1",
        "WELCOME10",
        NOW + timedelta(1 / 86400),
    )


def test_purchase_store_recorded_credit_never_replaced(store: PurchaseStore) -> None:
    store.record_credit(EVENT, CREDIT, NOW)

    again = store.record_credit(EVENT, CREDIT.model_copy(update={"balance_transaction": "cbtxn_2"}), NOW)
    error = store.record_credit_error(EVENT, "unknown_code", NOW)

    assert (again, error) == (False, False)
    record = store.get("pi_1")
    assert (record.credit, record.credit_error) == (CREDIT, None)


def test_purchase_store_credit_clears_earlier_error(store: PurchaseStore) -> None:
    store.record_credit_error(EVENT, "unknown_code", NOW)

    store.record_credit(EVENT, CREDIT, NOW)

    assert store.get("pi_1").credit_error is None


def test_purchase_store_notification_id_final_error_cleared(store: PurchaseStore) -> None:
    store.record_notification_error(EVENT, "topic missing", NOW)

    assert store.record_notification(EVENT, "n-1", NOW) is True
    assert store.record_notification(EVENT, "n-1", NOW) is True
    assert store.record_notification(EVENT, "n-2", NOW) is False
    assert store.record_notification_error(EVENT, "late", NOW) is False
    record = store.get("pi_1")
    assert (record.notification_id, record.notification_error) == ("n-1", None)


def test_purchase_store_unknown_purchase_not_found(store: PurchaseStore) -> None:
    with pytest.raises(NotFoundError):
        store.get("pi_unknown")


def test_purchase_store_credit_terms_first_writer_wins(store: PurchaseStore) -> None:
    first = store.save_credit_terms(EVENT, TERMS, NOW)

    second = store.save_credit_terms(
        EVENT, TERMS.model_copy(update={"amount": 5, "first_attempt_at": NOW + timedelta(hours=1)}), NOW
    )

    assert first == second == TERMS
    assert store.get("pi_1").credit_terms == TERMS


def test_purchase_store_credit_terms_kept_with_the_credit_and_never_shown(store: PurchaseStore) -> None:
    store.save_credit_terms(EVENT, TERMS, NOW)
    store.record_credit(EVENT, CREDIT, NOW)

    record = store.get("pi_1")
    assert (record.credit, record.credit_terms) == (CREDIT, TERMS)
    assert "credit_terms" not in record.model_dump(mode="json")
