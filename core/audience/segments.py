"""The segment language: which users a send or a named segment reaches, parsed, compiled to SQL, and evaluated.

A condition is ``{"field": "<path>", "<op>": value}`` with one operator of ``eq``, ``ne``, ``in``, ``gt``, ``gte``,
``lt``, ``lte``, ``exists``; ``{"and": [...]}``, ``{"or": [...]}`` and ``{"not": ...}`` combine conditions.

Fields
    ``timezone`` is the user's IANA time zone (its column); every other field is a dotted path into the user's
    ``data`` object (``plan``, ``address.country``). A path walks objects only: a name never indexes an array (a
    value that is an array, or an object reached through one, is not there), and ``timezone.<x>`` is refused (the time
    zone is a string). A top-level ``data`` key named ``timezone`` therefore cannot be matched.

Values and types
    Values are JSON scalars: strings, numbers, ``true``, ``false``, ``null``. A comparison matches only a value of the
    same JSON type: ``{"field": "age", "eq": "30"}`` does not match ``30``, and ``true`` is not ``1``.

    - ``eq`` matches a value equal to the one given (numbers by value: ``1`` equals ``1.0``; ``null`` matches a
      ``null`` that is there, not a missing field); ``in`` matches any of 1 to 100 values.
    - ``gt``, ``gte``, ``lt``, ``lte`` take a number or a string: numbers compare as numbers (exact decimals, as JSON
      writes them); strings compare by Unicode code point (PostgreSQL's ``"C"`` collation, never the database's
      locale), so ``"Z" < "a"``.
    - ``exists: true`` matches when the field is there, even holding ``null``; ``exists: false`` when it is not.
    - A missing field, or one of another type, matches none of ``eq``, ``in``, ``gt``, ``gte``, ``lt``, ``lte``.

Negation is the complement, never SQL's three-valued logic
    ``ne`` is exactly ``not eq``: a user without the field, or with a value of another type, *is* "not equal" and is
    matched. ``{"not": c}`` matches exactly the users ``c`` does not match. So a condition and its ``not`` always split
    the users in two; no row is dropped because a path was missing (compiled as ``(c) IS NOT TRUE``).

Refused with a 422 (``InvalidRequestError`` naming the place, ``where.and[1].field``): any other key or operator, a
condition that is not an object, an empty ``and``/``or``, more than 8 levels of nesting, more than 50 conditions, a
path of more than 8 names or a name outside ``[A-Za-z0-9_-]{1,64}``, more than 100 values in ``in``, a value that is
not a JSON scalar (or, for the ordering operators, not a number or a string), a number that is not finite, a string
holding NUL (PostgreSQL text cannot) or a lone surrogate (not UTF-8), and a ``timezone`` value that is not a string.

SQL (``compile_where``) binds every value *and every path name* as a parameter; the fragment is made of this module's
text alone and depends only on the tree's shape. What an index can serve:

- ``eq``/``in`` on data compile to containment, ``u.data @> %s::jsonb`` (``@> ANY(%s::jsonb[])``): a GIN index on
  ``data`` (``jsonb_path_ops`` suffices) serves them.
- Other operators on data read the path with ``->`` (``u.data -> %s::text -> %s::text``); psycopg2 binds on the
  client, so the server sees ``u.data -> 'age'::text`` and a btree expression index on that exact path
  (``CREATE INDEX ON users ((data -> 'age'))``) serves ``gt``/``lt``/… on it. Nothing else indexes them.
- ``timezone``: a btree index on the column serves ``eq``/``in``; its ordering operators compare under ``"C"``.
- ``ne`` and ``not`` select a complement: a scan, as a large part of the users match anyway.

``matches`` evaluates a tree over one user in memory, with the same semantics, for the in-memory repository.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, TypeAlias, cast, get_args

from core.errors import InvalidRequestError, field_path

Operator: TypeAlias = Literal["eq", "ne", "in", "gt", "gte", "lt", "lte", "exists"]
Scalar: TypeAlias = str | int | float | bool | None

OPERATORS: tuple[Operator, ...] = get_args(Operator)
COMBINATORS = ("and", "or", "not")
TIMEZONE = "timezone"

MAX_DEPTH = 8
MAX_CONDITIONS = 50
MAX_PATH_NAMES = 8
MAX_IN_VALUES = 100
_PATH_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ORDERING = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_OPERATOR_LIST = ", ".join(OPERATORS)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One condition on one field: ``field`` is ``timezone`` or a dotted data path; ``value`` a tuple for ``in``."""

    field: str
    op: Operator
    value: Scalar | tuple[Scalar, ...]

    @property
    def path(self) -> tuple[str, ...]:
        """The names of the data path (the field split on dots)."""
        return tuple(self.field.split("."))


@dataclass(frozen=True, slots=True)
class And:
    """Matches when every one of its conditions does."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Matches when any one of its conditions does."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """Matches exactly when its condition does not."""

    condition: Condition


Condition: TypeAlias = Comparison | And | Or | Not


@dataclass(frozen=True, slots=True)
class SqlCondition:
    """A boolean SQL expression over ``users u`` with psycopg2 ``%s`` placeholders, and the values they bind.

    ``sql`` holds no value of the request; use it as ``f"... FROM users u WHERE {sql}"`` with ``params``. It may
    evaluate to NULL for a user that does not match (a WHERE treats that as false). ``condition`` is the tree it was
    compiled from, for an in-memory repository to evaluate with ``matches``.
    """

    sql: str
    params: tuple[Any, ...]
    condition: Condition | None = field(default=None, compare=False, repr=False)


# Parsing


class _Budget:
    """Counts the conditions of one tree, so a wide tree is refused before it is all read."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.left = MAX_CONDITIONS

    def take(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise InvalidRequestError(self.base, f"has more than {MAX_CONDITIONS} conditions")


def parse_where(raw: Any, base: str = "where") -> Condition:
    """Return the condition tree of a segment definition; raise ``InvalidRequestError`` naming what is wrong.

    ``base`` is the request's name of ``raw``; errors name places under it (``where.or[2].in[0]``).
    """
    return _parse(raw, base, 1, _Budget(base))


def _parse(raw: Any, at: str, depth: int, budget: _Budget) -> Condition:
    if not isinstance(raw, dict):
        raise InvalidRequestError(
            at,
            'must be a condition object: {"field": ..., "<operator>": value}, {"and": [...]}, {"or": [...]} or '
            '{"not": ...}',
        )
    if depth > MAX_DEPTH:
        raise InvalidRequestError(at, f"is nested too deeply (at most {MAX_DEPTH} levels)")
    combinator = next((key for key in COMBINATORS if key in raw), None)
    if combinator is None:
        budget.take()
        return _parse_comparison(raw, at)
    if len(raw) != 1:
        other = next(str(key) for key in raw if key != combinator)
        raise InvalidRequestError(
            field_path([other], at), f'is not allowed beside "{combinator}" (a combining object has one key)'
        )
    inner = raw[combinator]
    where = field_path([combinator], at)
    if combinator == "not":
        return Not(_parse(inner, where, depth + 1, budget))
    if not isinstance(inner, list) or not inner:
        raise InvalidRequestError(where, f"must be a list of 1 to {MAX_CONDITIONS} conditions")
    if len(inner) > MAX_CONDITIONS:
        raise InvalidRequestError(where, f"must be a list of 1 to {MAX_CONDITIONS} conditions")
    parts = tuple(_parse(item, field_path([index], where), depth + 1, budget) for index, item in enumerate(inner))
    return And(parts) if combinator == "and" else Or(parts)


def _parse_comparison(raw: dict[Any, Any], at: str) -> Comparison:
    operators = [key for key in raw if key in OPERATORS]
    for key in raw:
        if key != "field" and key not in OPERATORS:
            raise InvalidRequestError(
                field_path([str(key)], at), f"is not an operator (one of {_OPERATOR_LIST}, or and, or, not)"
            )
    if not operators:
        raise InvalidRequestError(at, f"must have an operator: one of {_OPERATOR_LIST}")
    if len(operators) > 1:
        raise InvalidRequestError(at, f"must have one operator, not {len(operators)} ({', '.join(operators)})")
    if "field" not in raw:
        raise InvalidRequestError(field_path(["field"], at), "is required: timezone or a dotted path into data")
    name = _parse_field(raw["field"], field_path(["field"], at))
    op = cast(Operator, operators[0])
    value = _parse_value(op, raw[op], field_path([op], at), name == TIMEZONE)
    return Comparison(name, op, value)


def _parse_field(raw: Any, at: str) -> str:
    if not isinstance(raw, str):
        raise InvalidRequestError(at, "must be a string: timezone or a dotted path into data")
    names = raw.split(".")
    if len(names) > MAX_PATH_NAMES:
        raise InvalidRequestError(at, f"must be a path of at most {MAX_PATH_NAMES} names")
    if not all(_PATH_NAME.fullmatch(name) for name in names):
        raise InvalidRequestError(
            at, "must be a dotted path of names of 1 to 64 letters, digits, '_' or '-' (address.country)"
        )
    if names[0] == TIMEZONE and len(names) > 1:
        raise InvalidRequestError(at, "timezone is the user's time zone, a string: it has no fields")
    return raw


def _parse_value(op: Operator, raw: Any, at: str, timezone: bool) -> Scalar | tuple[Scalar, ...]:
    if op == "exists":
        if not isinstance(raw, bool):
            raise InvalidRequestError(at, "must be true or false")
        return raw
    if op == "in":
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_IN_VALUES:
            raise InvalidRequestError(at, f"must be a list of 1 to {MAX_IN_VALUES} values")
        return tuple(_parse_scalar(item, field_path([index], at), timezone) for index, item in enumerate(raw))
    value = _parse_scalar(raw, at, timezone)
    if op in _ORDERING and (value is None or isinstance(value, bool)):
        raise InvalidRequestError(at, "must be a number or a string")
    return value


def _parse_scalar(raw: Any, at: str, timezone: bool) -> Scalar:
    if timezone and not isinstance(raw, str):
        raise InvalidRequestError(at, "must be a string: timezone is an IANA time zone name")
    if raw is None or isinstance(raw, bool | int):
        return cast(Scalar, raw)
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise InvalidRequestError(at, "must be a finite number")
        return raw
    if isinstance(raw, str):
        if "\x00" in raw:
            raise InvalidRequestError(at, "must not contain the NUL character")
        try:
            raw.encode()
        except UnicodeEncodeError:
            raise InvalidRequestError(at, "must be valid Unicode text (it holds a lone surrogate)") from None
        return raw
    raise InvalidRequestError(at, "must be a string, a number, true, false or null")


# Compiling


def compile_where(condition: Condition) -> SqlCondition:
    """Return the SQL of a condition tree over ``users u``: every value and path name bound as a parameter."""
    params: list[Any] = []
    sql = _compile(condition, params)
    return SqlCondition(sql, tuple(params), condition)


def _compile(condition: Condition, params: list[Any]) -> str:
    if isinstance(condition, And | Or):
        joiner = " AND " if isinstance(condition, And) else " OR "
        return "(" + joiner.join(_compile(part, params) for part in condition.conditions) + ")"
    if isinstance(condition, Not):
        # NOT of a NULL is NULL, and would drop the user from both a condition and its negation.
        return f"({_compile(condition.condition, params)}) IS NOT TRUE"
    if condition.field == TIMEZONE:
        return _compile_timezone(condition, params)
    return _compile_data(condition, params)


def _compile_timezone(condition: Comparison, params: list[Any]) -> str:
    op, value = condition.op, condition.value
    if op == "exists":
        return "u.timezone IS NOT NULL" if value else "u.timezone IS NULL"
    if op == "in":
        params.append(list(cast(tuple[str, ...], value)))
        return "u.timezone = ANY(%s::text[])"
    params.append(value)
    if op == "eq":
        return "u.timezone = %s"
    if op == "ne":
        return "u.timezone IS DISTINCT FROM %s"
    return f'u.timezone COLLATE "C" {_ORDERING[op]} %s'


def _containing(path: tuple[str, ...], value: Scalar) -> str:
    """The JSON of the object that holds ``value`` at ``path``, for ``@>``."""
    document: Any = value
    for name in reversed(path):
        document = {name: document}
    return json.dumps(document, ensure_ascii=False, allow_nan=False)


def _read(path: tuple[str, ...], params: list[Any], *, text: bool = False) -> str:
    """SQL reading the value at ``path`` (jsonb, or the text of the last step): NULL when any step is missing."""
    params.extend(path)
    steps = ["->"] * len(path)
    if text:
        steps[-1] = "->>"
    return "(u.data" + "".join(f" {step} %s::text" for step in steps) + ")"


def _compile_data(condition: Comparison, params: list[Any]) -> str:
    op, value, path = condition.op, condition.value, condition.path
    if op == "exists":
        return f"{_read(path, params)} IS {'NOT ' if value else ''}NULL"
    if op == "eq":
        params.append(_containing(path, cast(Scalar, value)))
        return "u.data @> %s::jsonb"
    if op == "ne":
        params.append(_containing(path, cast(Scalar, value)))
        return "(u.data @> %s::jsonb) IS NOT TRUE"
    if op == "in":
        params.append([_containing(path, item) for item in cast(tuple[Scalar, ...], value)])
        return "u.data @> ANY(%s::jsonb[])"
    symbol = _ORDERING[op]
    # jsonb orders values of different types among themselves (any number above any string): the type is checked too.
    if isinstance(value, str):
        typed = f"jsonb_typeof{_read(path, params)} = 'string'"
        text = _read(path, params, text=True)
        params.append(value)
        return f'({typed} AND {text} COLLATE "C" {symbol} %s)'
    typed = f"jsonb_typeof{_read(path, params)} = 'number'"
    number = _read(path, params)
    params.append(json.dumps(value, allow_nan=False))
    return f"({typed} AND {number} {symbol} %s::jsonb)"


# Evaluating


def matches(condition: Condition, timezone: str | None, data: Any) -> bool:
    """Tell whether a user (time zone, ``data`` object) is in the segment, with the semantics of ``compile_where``."""
    if isinstance(condition, And):
        return all(matches(part, timezone, data) for part in condition.conditions)
    if isinstance(condition, Or):
        return any(matches(part, timezone, data) for part in condition.conditions)
    if isinstance(condition, Not):
        return not matches(condition.condition, timezone, data)
    if condition.field == TIMEZONE:
        return _compare(condition.op, condition.value, timezone is not None, timezone)
    found, value = _lookup(data, condition.path)
    return _compare(condition.op, condition.value, found, value)


def _lookup(data: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for name in path:
        if not isinstance(data, dict) or name not in data:
            return False, None
        data = data[name]
    return True, data


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else "array"


def _comparable(value: Any) -> Any:
    # PostgreSQL keeps a JSON number as the decimal written (Python writes a float's shortest repr), so compare those.
    if _json_type(value) == "number":
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return value


def _equal(found: Any, wanted: Scalar) -> bool:
    return _json_type(found) == _json_type(wanted) and _comparable(found) == _comparable(wanted)


def _compare(op: Operator, wanted: Scalar | tuple[Scalar, ...], found: bool, value: Any) -> bool:
    if op == "exists":
        return found is wanted
    if op == "ne":
        return not (found and _equal(value, cast(Scalar, wanted)))
    if not found:
        return False
    if op == "eq":
        return _equal(value, cast(Scalar, wanted))
    if op == "in":
        return any(_equal(value, item) for item in cast(tuple[Scalar, ...], wanted))
    if _json_type(value) != _json_type(wanted):
        return False
    left, right = _comparable(value), _comparable(wanted)
    if op == "gt":
        return bool(left > right)
    if op == "gte":
        return bool(left >= right)
    if op == "lt":
        return bool(left < right)
    return bool(left <= right)
