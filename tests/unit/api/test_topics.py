"""Unit tests of api/topics.py: name checks and the masked view of a topic."""

from __future__ import annotations

import pytest

from api.topics import MASK, check_names, topic_view
from core.errors import InvalidRequestError
from core.models import Integration, IntegrationType, Topic


@pytest.mark.parametrize("name", ["a", "orders", "Orders_2", "v1.2-beta", "9" * 64])
def test_check_names_valid_names_pass(name: str) -> None:
    check_names(name, name)


@pytest.mark.parametrize(
    ("channel", "topic", "field"),
    [
        ("", "shipped", "channel"),
        ("orders", "", "topic"),
        ("_orders", "shipped", "channel"),
        ("orders", "x" * 65, "topic"),
        ("orders", "ship ped", "topic"),
        ("orders", "a/b", "topic"),
        ("orders\n", "shipped", "channel"),
    ],
)
def test_check_names_invalid_name_raises_naming_the_field(channel: str, topic: str, field: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        check_names(channel, topic)

    assert raised.value.field == field


def test_check_names_invalid_name_message_says_what_is_allowed() -> None:
    with pytest.raises(InvalidRequestError) as raised:
        check_names("orders", "ship ped")

    assert str(raised.value) == (
        "topic: is not a valid name: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    )


def test_topic_view_masks_credentials_and_hides_their_reference_and_the_hash() -> None:
    topic = Topic(
        channel="orders",
        topic="shipped",
        integrations=[
            Integration(name="s", type=IntegrationType.SLACK, model="m", credentials_ref="/notify/x/s"),
            Integration(name="w", type=IntegrationType.WEBHOOK, model={"a": 1}, target={"url": "https://h/x"}),
        ],
        hash_sha256="f" * 64,
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-02T00:00:00.000Z",
    )

    view = topic_view(topic)

    assert view == {
        "channel": "orders",
        "topic": "shipped",
        "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-02T00:00:00.000Z",
        "integrations": [
            {"name": "s", "type": "slack", "model": "m", "target": {}, "credentials": {"webhook_url": MASK}},
            {"name": "w", "type": "webhook", "model": {"a": 1}, "target": {"url": "https://h/x"}},
        ],
    }


def _view(integration: Integration) -> dict:
    topic = Topic(
        channel="orders",
        topic="shipped",
        integrations=[integration],
        hash_sha256="f" * 64,
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
    )
    [view] = topic_view(topic)["integrations"]
    return view


def test_topic_view_integration_with_rate_shows_rate_per_second() -> None:
    integration = Integration(name="w", type=IntegrationType.WEBHOOK, model="m", rate_per_second=2.5)

    assert _view(integration)["rate_per_second"] == 2.5


def test_topic_view_integration_without_rate_shows_no_rate_per_second() -> None:
    integration = Integration(name="w", type=IntegrationType.WEBHOOK, model="m")

    assert "rate_per_second" not in _view(integration)
