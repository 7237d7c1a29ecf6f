"""Segments against a real PostgreSQL: each operator's matches, injection attempts that stay data, the GIN index
serving ``eq``/``in``, and the compiled SQL agreeing with ``matches`` (the in-memory evaluator) on random trees."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.audience.segments import Condition, compile_where, matches, parse_where
from core.errors import InvalidRequestError
from tests.support.postgres import truncate_all
from tests.support.segments import segment_trees

# (id, time zone, data): every JSON type at the same paths, so that type mismatches, missing paths and nulls meet
# every operator.
PEOPLE: list[tuple[str, str, dict[str, Any]]] = [
    ("ada", "Europe/Paris", {"plan": "pro", "age": 36, "address": {"country": "FR"}, "nick": "Ada", "tags": ["x"]}),
    ("bob", "America/New_York", {"plan": "free", "age": "36", "address": {"country": "US", "zip": "10001"}}),
    ("cy", "Asia/Tokyo", {"plan": None, "age": 36.0, "flag": True, "nick": "émile", "address": "FR"}),
    ("dee", "UTC", {"age": 2.0**60, "flag": False, "nick": "Zoe", "tags": {"x": 1}}),
    ("eve", "Europe/Paris", {}),
    ("fay", "Australia/Lord_Howe", {"plan": "pro", "age": 1_152_921_504_606_846_980, "flag": 1, "nick": "zoe"}),
    ("gus", "Pacific/Kiritimati", {"plan": "'; DROP TABLE users; --", "age": -0.5, "nick": "", "address": {}}),
    ("hal", "UTC", {"plan": "%s", "age": True, "nick": "a\\b'c\"d", "address": {"country": None}}),
]
EVERYONE = {person for person, _, _ in PEOPLE}


@pytest.fixture(scope="module")
def population(postgres_url: str) -> Iterator[Any]:
    """A connection to the session's database holding the users of ``PEOPLE``, written once for the module."""
    import psycopg2

    connection = psycopg2.connect(postgres_url)
    truncate_all(connection)
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO users (id, timezone, data) VALUES (%s, %s, %s::jsonb)",
            [(person, zone, json.dumps(data)) for person, zone, data in PEOPLE],
        )
    connection.commit()
    try:
        yield connection
    finally:
        truncate_all(connection)
        connection.close()


@pytest.fixture
def people(population: Any) -> Iterator[Any]:
    """The users of ``PEOPLE``; what a test writes or sets is rolled back after it."""
    yield population
    population.rollback()


def _selected(db: Any, condition: Condition) -> set[str]:
    compiled = compile_where(condition)
    with db.cursor() as cursor:
        cursor.execute(f"SELECT u.id FROM users u WHERE {compiled.sql}", compiled.params)  # noqa: S608 - no values
        return {row[0] for row in cursor.fetchall()}


def _expected(condition: Condition) -> set[str]:
    return {person for person, zone, data in PEOPLE if matches(condition, zone, data)}


@pytest.mark.parametrize(
    ("where", "ids"),
    [
        pytest.param({"field": "plan", "eq": "pro"}, {"ada", "fay"}, id="eq-string"),
        pytest.param({"field": "age", "eq": 36}, {"ada", "cy"}, id="eq-number-by-value-not-text"),
        pytest.param({"field": "plan", "eq": None}, {"cy"}, id="eq-null-is-not-missing"),
        pytest.param({"field": "flag", "eq": True}, {"cy"}, id="eq-true-is-not-one"),
        pytest.param({"field": "tags", "eq": "x"}, set(), id="eq-does-not-look-into-arrays"),
        pytest.param({"field": "address.country", "eq": "FR"}, {"ada"}, id="eq-nested"),
        pytest.param({"field": "plan", "ne": "pro"}, EVERYONE - {"ada", "fay"}, id="ne-includes-missing"),
        pytest.param({"field": "plan", "in": ["free", None, 3]}, {"bob", "cy"}, id="in"),
        pytest.param({"field": "age", "gt": 36}, {"dee", "fay"}, id="gt-numbers-only"),
        pytest.param({"field": "age", "gte": 36}, {"ada", "cy", "dee", "fay"}, id="gte"),
        pytest.param({"field": "age", "lt": 0}, {"gus"}, id="lt-negative"),
        pytest.param({"field": "age", "lte": "36"}, {"bob"}, id="lte-strings-only"),
        pytest.param({"field": "age", "lt": 1_152_921_504_606_846_980}, {"ada", "cy", "gus"}, id="big-numbers-exact"),
        pytest.param({"field": "nick", "lt": "a"}, {"ada", "dee", "gus"}, id="strings-by-code-point"),
        pytest.param({"field": "nick", "gt": "z"}, {"cy", "fay"}, id="gt-string-unicode"),
        pytest.param({"field": "address.country", "exists": True}, {"ada", "bob", "hal"}, id="exists-null-too"),
        pytest.param({"field": "address.country", "exists": False}, EVERYONE - {"ada", "bob", "hal"}, id="absent"),
        pytest.param({"field": "tags.0", "exists": True}, set(), id="path-does-not-index-arrays"),
        pytest.param({"field": "tags.x", "exists": True}, {"dee"}, id="path-walks-objects"),
        pytest.param({"field": "timezone", "eq": "UTC"}, {"dee", "hal"}, id="timezone-eq"),
        pytest.param({"field": "timezone", "in": ["Asia/Tokyo", "Etc/None"]}, {"cy"}, id="timezone-in"),
        pytest.param({"field": "timezone", "ne": "UTC"}, EVERYONE - {"dee", "hal"}, id="timezone-ne"),
        pytest.param({"field": "timezone", "lt": "B"}, {"bob", "cy", "fay"}, id="timezone-lt"),
        pytest.param({"not": {"field": "age", "gt": 0}}, EVERYONE - {"ada", "cy", "dee", "fay"}, id="not-complement"),
        pytest.param(
            {"and": [{"field": "plan", "eq": "pro"}, {"not": {"field": "flag", "exists": True}}]}, {"ada"}, id="and"
        ),
        pytest.param({"or": [{"field": "flag", "eq": False}, {"field": "nick", "eq": ""}]}, {"dee", "gus"}, id="or"),
    ],
)
def test_compile_where_operator_selects_its_users(people: Any, where: Any, ids: set[str]) -> None:
    condition = parse_where(where)

    assert _selected(people, condition) == ids
    assert _expected(condition) == ids


_INJECTIONS = [
    "'; DROP TABLE users; --",
    "' OR '1'='1",
    "\\'; DROP TABLE users; --",
    "%s",
    "%(x)s",
    "'||(SELECT current_user)||'",
    "); DELETE FROM users WHERE (TRUE",
    "a\\b'c\"d",
]


@pytest.mark.parametrize("injection", _INJECTIONS)
def test_compile_where_injection_value_stays_data(people: Any, injection: str) -> None:
    equal = {person for person, _, data in PEOPLE if data.get("plan") == injection}
    condition = parse_where(
        {
            "or": [
                {"field": "plan", "eq": injection},
                {"field": "nick", "in": [injection]},
                {"field": "timezone", "eq": injection},
            ]
        }
    )

    assert _selected(people, condition) == equal | {p for p, _, data in PEOPLE if data.get("nick") == injection}
    assert _selected(people, parse_where({"field": "plan", "ne": injection})) == EVERYONE - equal
    assert _selected(people, parse_where({"field": "nick", "gte": injection})) == _expected(
        parse_where({"field": "nick", "gte": injection})
    )
    with people.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM users")
        assert cursor.fetchone()[0] == len(PEOPLE)


def test_compile_where_injection_in_a_path_is_refused() -> None:
    with pytest.raises(InvalidRequestError) as refused:
        parse_where({"field": "plan'; DROP TABLE users; --", "exists": True})

    assert refused.value.field == "where.field"


def test_compile_where_path_names_are_bound(people: Any) -> None:
    """A name that would mean something in SQL or jsonpath (``-1``, ``0``, ``_``) is only ever a key."""
    with people.cursor() as cursor:
        cursor.execute(
            "INSERT INTO users (id, timezone, data) VALUES ('odd', 'UTC', %s::jsonb)",
            (json.dumps({"-1": {"0": {"_": "yes"}}}),),
        )

    assert _selected(people, parse_where({"field": "-1.0._", "eq": "yes"})) == {"odd"}
    assert _selected(people, parse_where({"field": "-1.0._", "gte": "yes"})) == {"odd"}


@pytest.mark.parametrize(
    "where", [{"field": "plan", "eq": "pro"}, {"field": "plan", "in": ["pro", "free"]}], ids=["eq", "in"]
)
def test_compile_where_containment_can_use_the_data_index(people: Any, where: Any) -> None:
    compiled = compile_where(parse_where(where))
    with people.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN SELECT count(*) FROM users u WHERE {compiled.sql}", compiled.params)  # noqa: S608
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "users_data_idx" in plan


# Properties: PostgreSQL and ``matches`` agree.

_FIELDS = ["plan", "age", "flag", "nick", "tags", "tags.x", "address", "address.country", "address.zip", "timezone"]
_VALUES = st.sampled_from(
    [
        *(None, True, False, 0, 1, 36, 36.0, -0.5, 2.0**60, 1_152_921_504_606_846_980),
        *("", "36", "pro", "free", "FR", "a", "Zoe", "zoe", "émile", "UTC", "Europe/Paris", "%s"),
        "'; DROP TABLE users; --",
    ]
)
_STRINGS = st.sampled_from(["", "36", "pro", "FR", "Zoe", "zoe", "a", "émile", "UTC", "Europe/Paris", "B", "%s"])
_NUMBERS = st.sampled_from([0, 1, 36, 36.0, -0.5, 2.0**60, 1_152_921_504_606_846_980, 1e300, -1e-300])


_TREES = segment_trees(
    fields=st.sampled_from(_FIELDS),
    values=_VALUES,
    ordered=st.one_of(_STRINGS, _NUMBERS),
    zones=_STRINGS,
    max_in=4,
    max_leaves=8,
)

# The users are written once for the module and only read by the examples.
_READ_ONLY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_READ_ONLY
@given(_TREES)
def test_compile_where_agrees_with_matches(people: Any, tree: Any) -> None:
    condition = parse_where(tree)

    assert _selected(people, condition) == _expected(condition)


@_READ_ONLY
@given(st.text(max_size=20), st.sampled_from(["eq", "ne", "in", "gt", "lte"]), st.sampled_from(["nick", "timezone"]))
def test_compile_where_any_text_is_refused_or_runs(people: Any, text: str, op: str, field: str) -> None:
    raw = {"field": field, op: [text] if op == "in" else text}
    if "\x00" in text:
        with pytest.raises(InvalidRequestError):
            parse_where(raw)
        return
    condition = parse_where(raw)

    assert _selected(people, condition) == _expected(condition)
