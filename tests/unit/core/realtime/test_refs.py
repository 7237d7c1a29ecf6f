"""Unit tests of core/realtime/refs.py: how tokens and the connections table name users and channel/topics."""

from __future__ import annotations

import re

import pytest

from core.realtime.refs import TOPIC_REF, USER_ID_PATTERN, topic_ref


def test_topic_ref_joins_channel_and_topic_with_a_slash() -> None:
    assert topic_ref("orders", "shipped") == "orders/shipped"


@pytest.mark.parametrize("ref", ["orders/shipped", "a/b", "shop.eu/order_created-v2"])
def test_topic_ref_pattern_accepts_two_names(ref: str) -> None:
    assert TOPIC_REF.fullmatch(ref)


@pytest.mark.parametrize("ref", ["orders", "orders/", "/shipped", "orders/shipped/extra", "-orders/shipped", "a b/c"])
def test_topic_ref_pattern_refuses_anything_but_two_names(ref: str) -> None:
    assert not TOPIC_REF.fullmatch(ref)


@pytest.mark.parametrize(("user_id", "valid"), [("alice", True), ("u" * 128, True), ("u" * 129, False), ("a b", False)])
def test_user_id_pattern_allows_128_characters_without_spaces(user_id: str, valid: bool) -> None:
    assert bool(re.fullmatch(USER_ID_PATTERN, user_id)) is valid
