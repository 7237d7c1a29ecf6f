"""Unit tests of core/attributes.py: DynamoDB's typed values written and read as boto3's serializer does them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from hypothesis import given
from hypothesis import strategies as st

from core.attributes import from_attribute, from_item, to_attribute

_NUMBERS = st.integers(min_value=-(10**37), max_value=10**37) | st.decimals(
    allow_nan=False, allow_infinity=False, places=6, min_value=-(10**20), max_value=10**20
)
_SCALARS = st.none() | st.booleans() | _NUMBERS | st.text(max_size=8) | st.binary(min_size=1, max_size=8)
_SETS = (
    st.frozensets(st.text(max_size=4), min_size=1, max_size=4)
    | st.frozensets(st.integers(-1000, 1000), min_size=1, max_size=4)
    | st.frozensets(st.binary(min_size=1, max_size=4), min_size=1, max_size=4)
)
_VALUES = st.recursive(
    _SCALARS | _SETS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=10,
)


def _sorted_sets(attribute: Any) -> Any:
    """Sets' members in one order (a set's order is not kept), boto3's ``Binary`` as bytes."""
    if isinstance(attribute, dict):
        return {
            kind: sorted(value) if kind in {"SS", "NS", "BS"} else _sorted_sets(value)
            for kind, value in attribute.items()
        }
    if isinstance(attribute, list):
        return [_sorted_sets(item) for item in attribute]
    return bytes(attribute) if isinstance(attribute, Binary) else attribute


def _plain(value: Any) -> Any:
    """boto3's reading with ``Binary`` as bytes, and a set's members as bytes too."""
    if isinstance(value, Binary):
        return bytes(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, set):
        return {_plain(item) for item in value}
    return value


@given(_VALUES)
def test_to_attribute_writes_what_boto3_writes(value: Any) -> None:
    assert _sorted_sets(to_attribute(value)) == _sorted_sets(TypeSerializer().serialize(value))


@given(_VALUES)
def test_from_attribute_reads_what_boto3_reads(value: Any) -> None:
    attribute = TypeSerializer().serialize(value)

    assert from_attribute(attribute) == _plain(TypeDeserializer().deserialize(attribute))


def test_numbers_come_back_as_decimals_and_an_item_reads_whole() -> None:
    item: dict[str, Any] = {"id": {"S": "p_1"}, "amount": {"N": "500"}, "terms": {"M": {"rate": {"N": "0.25"}}}}

    assert from_item(item) == {"id": "p_1", "amount": Decimal(500), "terms": {"rate": Decimal("0.25")}}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1.5, "cannot hold a float"),
        (set(), "cannot hold an empty set"),
        ({"a", 1}, "all strings, all numbers or all bytes"),
        (Decimal("NaN"), "cannot hold the number NaN"),
        (Decimal("Infinity"), "cannot hold the number Infinity"),
        (object(), "cannot hold a object"),
    ],
)
def test_what_dynamodb_cannot_hold_is_refused(value: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        to_attribute(value)


def test_a_number_past_38_digits_is_refused_not_rounded() -> None:
    with pytest.raises(ArithmeticError):
        to_attribute(10**38 + 1)
    with pytest.raises(ArithmeticError):
        TypeSerializer().serialize(10**38 + 1)


@pytest.mark.parametrize("attribute", [{}, {"S": "a", "N": "1"}, {"X": "a"}])
def test_a_malformed_attribute_is_refused(attribute: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        from_attribute(attribute)
