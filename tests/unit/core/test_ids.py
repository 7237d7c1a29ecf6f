"""core/ids.py: notification ids, fresh or derived from an idempotency scope."""

from __future__ import annotations

import uuid

import pytest

from core.ids import idempotent_notification_id, new_notification_id


def test_idempotent_notification_id_is_the_same_for_the_same_scope() -> None:
    assert idempotent_notification_id(["k1", "orders", "shipped", "A-1"]) == idempotent_notification_id(
        ["k1", "orders", "shipped", "A-1"]
    )


@pytest.mark.parametrize(
    "other",
    [
        ["k2", "orders", "shipped", "A-1"],
        ["k1", "orders", "cancelled", "A-1"],
        ["k1", "orders", "shipped", "A-2"],
        ["k1", "orders", "shippedA-1", ""],
    ],
)
def test_idempotent_notification_id_differs_for_another_scope(other: list[str]) -> None:
    assert idempotent_notification_id(["k1", "orders", "shipped", "A-1"]) != idempotent_notification_id(other)


def test_idempotent_notification_id_is_a_version_8_uuid_never_a_random_one() -> None:
    value = uuid.UUID(idempotent_notification_id(["k1", "orders", "shipped", "A-1"]))

    assert (value.version, value.variant) == (8, uuid.RFC_4122)
    assert uuid.UUID(new_notification_id()).version == 4
