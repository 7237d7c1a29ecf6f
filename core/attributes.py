"""DynamoDB's typed attribute values, to and from plain Python values, by boto3's rules.

boto3's ``TypeSerializer`` and ``TypeDeserializer`` do this, but importing them runs boto3's package (its resources,
s3transfer and with it multiprocessing): about a tenth of ``import boto3`` more on the cold start of a function whose
clients are botocore's (``core.clients``). The rules are boto3's: numbers are ``int`` or ``Decimal`` and come back as
``Decimal`` (a float is refused, DynamoDB's numbers are exact decimals of at most 38 digits); ``None`` is NULL; a set
holds strings, numbers or bytes (SS, NS, BS) and is never empty; a mapping is M and a list or tuple is L. One
difference: binary comes back as ``bytes``, not boto3's ``Binary`` wrapper.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from decimal import Clamped, Context, Decimal, Inexact, Overflow, Rounded, Underflow
from typing import Any

# boto3's DYNAMODB_CONTEXT: a number DynamoDB cannot hold exactly is refused, never rounded.
_NUMBERS = Context(Emin=-128, Emax=126, prec=38, traps=[Clamped, Overflow, Inexact, Rounded, Underflow])


def _number(value: int | Decimal) -> str:
    text = str(_NUMBERS.create_decimal(value))
    if text in {"Infinity", "-Infinity", "NaN", "sNaN"}:
        raise TypeError(f"DynamoDB cannot hold the number {text}")
    return text


def _is_number(value: object) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def to_attribute(value: Any) -> dict[str, Any]:
    """Return ``value`` as a DynamoDB attribute value; raise ``TypeError`` for what DynamoDB cannot hold."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if _is_number(value):
        return {"N": _number(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes | bytearray):
        return {"B": bytes(value)}
    if isinstance(value, Set):
        return _set(value)
    if isinstance(value, Mapping):
        return {"M": {str(key): to_attribute(item) for key, item in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(item) for item in value]}
    raise TypeError(f"DynamoDB cannot hold a {type(value).__name__}")


def _set(value: Set[Any]) -> dict[str, Any]:
    if not value:
        raise TypeError("DynamoDB cannot hold an empty set")
    if all(isinstance(item, str) for item in value):
        return {"SS": list(value)}
    if all(_is_number(item) for item in value):
        return {"NS": [_number(item) for item in value]}
    if all(isinstance(item, bytes | bytearray) for item in value):
        return {"BS": [bytes(item) for item in value]}
    raise TypeError("a set DynamoDB holds is all strings, all numbers or all bytes")


def from_attribute(attribute: Mapping[str, Any]) -> Any:
    """Return the plain value of a DynamoDB attribute value (numbers as ``Decimal``)."""
    (kind, value), *rest = attribute.items()
    if rest:
        raise TypeError(f"an attribute value has one type, not {len(rest) + 1}")
    match kind:
        case "NULL":
            return None
        case "BOOL" | "S" | "B":
            return value
        case "N":
            return _NUMBERS.create_decimal(value)
        case "SS" | "BS":
            return set(value)
        case "NS":
            return {_NUMBERS.create_decimal(item) for item in value}
        case "M":
            return {key: from_attribute(item) for key, item in value.items()}
        case "L":
            return [from_attribute(item) for item in value]
    raise TypeError(f"unknown attribute type {kind!r}")


def from_item(item: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Return an item's attributes as plain values."""
    return {name: from_attribute(value) for name, value in item.items()}
