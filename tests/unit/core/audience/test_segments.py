"""Unit tests of core/audience/segments.py: parsing and its 422s, the SQL of each operator, in-memory matching, and
property tests that no value or path name ever reaches the SQL text.

The SQL's results against PostgreSQL are tested in tests/integration/core/audience/test_segments.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.audience.segments import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_PATH_NAMES,
    And,
    Comparison,
    Condition,
    Not,
    Or,
    SqlCondition,
    compile_where,
    matches,
    parse_where,
)
from core.errors import InvalidRequestError
from tests.support.segments import segment_trees

INJECTIONS = [
    "'; DROP TABLE users; --",
    "' OR '1'='1",
    '" OR ""="',
    "\\'; SELECT pg_sleep(10); --",
    "%(x)s",
    "%%s",
    "E'\\x27'",
    "); DELETE FROM users WHERE (TRUE",
    "'||(SELECT current_user)||'",
]
# Too short to be absent from any SQL text (``%s`` is a placeholder, ``"`` quotes a collation): their test is that the
# SQL does not change with them.
_QUOTING = ["%s", "\\", "'", '"', "$1", "--", ";"]


def _leaf(op: str, value: Any, field: str = "plan") -> dict[str, Any]:
    return {"field": field, op: value}


def _nested(depth: int) -> dict[str, Any]:
    """A tree ``depth`` levels deep: ``not`` around ``not``… around one condition."""
    tree: dict[str, Any] = _leaf("eq", 1)
    for _ in range(depth - 1):
        tree = {"not": tree}
    return tree


def _outcome(raw: Any) -> Condition | InvalidRequestError:
    """The tree of a definition, or the refusal of it: for properties where either is right."""
    try:
        return parse_where(raw)
    except InvalidRequestError as refused:
        return refused


def _refusal(raw: Any, base: str = "where") -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        parse_where(raw, base)
    return caught.value


# Parsing


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(_leaf("eq", "pro"), Comparison("plan", "eq", "pro"), id="eq"),
        pytest.param(_leaf("ne", None), Comparison("plan", "ne", None), id="ne-null"),
        pytest.param(_leaf("in", ["a", 1, True, None]), Comparison("plan", "in", ("a", 1, True, None)), id="in"),
        pytest.param(_leaf("gte", 2.5, "a.b-c.d_e"), Comparison("a.b-c.d_e", "gte", 2.5), id="nested-path"),
        pytest.param(_leaf("exists", False), Comparison("plan", "exists", False), id="exists"),
        pytest.param(_leaf("eq", 1, "a" * 64), Comparison("a" * 64, "eq", 1), id="longest-name"),
        pytest.param(_leaf("eq", 1, ".".join("a" * 8)), Comparison(".".join("a" * 8), "eq", 1), id="longest-path"),
        pytest.param(_leaf("lt", "Europe/M", "timezone"), Comparison("timezone", "lt", "Europe/M"), id="timezone"),
        pytest.param(
            {"and": [_leaf("eq", 1), {"or": [_leaf("gt", 2), {"not": _leaf("lte", "x")}]}]},
            And((Comparison("plan", "eq", 1), Or((Comparison("plan", "gt", 2), Not(Comparison("plan", "lte", "x")))))),
            id="combined",
        ),
    ],
)
def test_parse_where_valid_definition_returns_its_tree(raw: Any, expected: Condition) -> None:
    assert parse_where(raw) == expected


@pytest.mark.parametrize(
    ("raw", "field", "problem"),
    [
        pytest.param([_leaf("eq", 1)], "where", "must be a condition object", id="not-an-object"),
        pytest.param({}, "where", "must have an operator", id="empty-object"),
        pytest.param(
            {"and": [_leaf("eq", 1), {"field": "a", "like": "x"}]}, "where.and[1].like", "is not an operator", id="op"
        ),
        pytest.param({"field": "a", "$x": 1}, 'where["$x"]', "is not an operator", id="odd-key-quoted"),
        pytest.param({"field": "a"}, "where", "must have an operator", id="no-operator"),
        pytest.param({"field": "a", "eq": 1, "gt": 0}, "where", "must have one operator", id="two-operators"),
        pytest.param({"eq": 1}, "where.field", "is required", id="no-field"),
        pytest.param({"field": 3, "eq": 1}, "where.field", "must be a string", id="field-not-a-string"),
        pytest.param({"field": "a..b", "eq": 1}, "where.field", "dotted path of names", id="empty-name"),
        pytest.param({"field": "a b", "eq": 1}, "where.field", "dotted path of names", id="space"),
        pytest.param({"field": "pläne", "eq": 1}, "where.field", "dotted path of names", id="non-ascii"),
        pytest.param({"field": "a" * 65, "eq": 1}, "where.field", "dotted path of names", id="name-too-long"),
        pytest.param({"field": "a.", "eq": 1}, "where.field", "dotted path of names", id="trailing-dot"),
        pytest.param({"field": ".".join("a" * 9), "eq": 1}, "where.field", "at most 8 names", id="path-too-long"),
        pytest.param({"field": "timezone.name", "eq": 1}, "where.field", "has no fields", id="timezone-has-no-fields"),
        pytest.param({"and": []}, "where.and", "list of 1 to 50", id="empty-and"),
        pytest.param({"or": _leaf("eq", 1)}, "where.or", "list of 1 to 50", id="or-not-a-list"),
        pytest.param({"not": [_leaf("eq", 1)]}, "where.not", "must be a condition object", id="not-of-a-list"),
        pytest.param({"and": [_leaf("eq", 1)], "field": "a"}, "where.field", 'beside "and"', id="combinator-and-key"),
        pytest.param({"not": {"or": [{}]}}, "where.not.or[0]", "must have an operator", id="deep-place"),
        pytest.param(_leaf("in", []), "where.in", "list of 1 to 100", id="in-empty"),
        pytest.param(_leaf("in", "pro"), "where.in", "list of 1 to 100", id="in-not-a-list"),
        pytest.param(_leaf("in", list(range(101))), "where.in", "list of 1 to 100", id="in-too-long"),
        pytest.param(_leaf("in", [1, 2, {"a": 1}]), "where.in[2]", "must be a string, a number", id="in-item"),
        pytest.param(_leaf("eq", [1]), "where.eq", "must be a string, a number", id="eq-list"),
        pytest.param(_leaf("ne", {"a": 1}), "where.ne", "must be a string, a number", id="ne-object"),
        pytest.param(_leaf("gt", None), "where.gt", "must be a number or a string", id="gt-null"),
        pytest.param(_leaf("lte", True), "where.lte", "must be a number or a string", id="lte-bool"),
        pytest.param(_leaf("exists", "yes"), "where.exists", "true or false", id="exists-not-bool"),
        pytest.param(_leaf("exists", 1), "where.exists", "true or false", id="exists-one"),
        pytest.param(_leaf("eq", float("nan")), "where.eq", "finite", id="nan"),
        pytest.param(_leaf("gt", float("inf")), "where.gt", "finite", id="infinity"),
        pytest.param(_leaf("eq", "a\x00b"), "where.eq", "NUL", id="nul"),
        pytest.param(_leaf("in", ["\x00"]), "where.in[0]", "NUL", id="nul-in-list"),
        pytest.param(_leaf("eq", "\ud800"), "where.eq", "lone surrogate", id="lone-surrogate"),
        pytest.param(_leaf("eq", 5, "timezone"), "where.eq", "must be a string", id="timezone-number"),
        pytest.param(_leaf("in", ["UTC", None], "timezone"), "where.in[1]", "must be a string", id="timezone-in-null"),
    ],
)
def test_parse_where_invalid_definition_names_the_place(raw: Any, field: str, problem: str) -> None:
    refused = _refusal(raw)

    assert refused.field == field
    assert problem in refused.problem


def test_parse_where_base_prefixes_every_place() -> None:
    refused = _refusal({"or": [{"field": "a b", "eq": 1}]}, base="to.where")

    assert refused.field == "to.where.or[0].field"


def test_parse_where_refusal_never_echoes_the_value() -> None:
    refused = _refusal(_leaf("eq", "secret\x00value"))

    assert "secret" not in str(refused)


def test_parse_where_depth_at_the_limit_is_accepted() -> None:
    assert isinstance(parse_where(_nested(MAX_DEPTH)), Not)


def test_parse_where_depth_over_the_limit_is_refused() -> None:
    refused = _refusal(_nested(MAX_DEPTH + 1))

    assert refused.field == "where" + ".not" * MAX_DEPTH
    assert "nested too deeply" in refused.problem


def test_parse_where_conditions_at_the_limit_are_accepted() -> None:
    tree = parse_where({"and": [_leaf("eq", n) for n in range(MAX_CONDITIONS)]})

    assert isinstance(tree, And)
    assert len(tree.conditions) == MAX_CONDITIONS


def test_parse_where_conditions_over_the_limit_across_levels_are_refused() -> None:
    half = [_leaf("eq", n) for n in range(MAX_CONDITIONS // 2 + 1)]
    refused = _refusal({"or": [{"and": half}, {"not": {"and": half}}]})

    assert refused.field == "where"
    assert "more than 50 conditions" in refused.problem


def test_parse_where_wide_list_is_refused_before_it_is_read() -> None:
    refused = _refusal({"and": [[]] * 10_000})

    assert refused.field == "where.and"


# Compiling: the SQL of each operator


@pytest.mark.parametrize(
    ("raw", "sql", "params"),
    [
        pytest.param(_leaf("eq", "pro"), "u.data @> %s::jsonb", ('{"plan": "pro"}',), id="eq"),
        pytest.param(_leaf("eq", 1.5, "a.b"), "u.data @> %s::jsonb", ('{"a": {"b": 1.5}}',), id="eq-nested-number"),
        pytest.param(_leaf("eq", None), "u.data @> %s::jsonb", ('{"plan": null}',), id="eq-null"),
        pytest.param(_leaf("ne", True), "(u.data @> %s::jsonb) IS NOT TRUE", ('{"plan": true}',), id="ne"),
        pytest.param(_leaf("in", ["a", 2]), "u.data @> ANY(%s::jsonb[])", (['{"plan": "a"}', '{"plan": 2}'],), id="in"),
        pytest.param(
            _leaf("gt", 30, "age"),
            "(jsonb_typeof(u.data -> %s::text) = 'number' AND (u.data -> %s::text) > %s::jsonb)",
            ("age", "age", "30"),
            id="gt-number",
        ),
        pytest.param(
            _leaf("gte", -2.5, "a.b"),
            "(jsonb_typeof(u.data -> %s::text -> %s::text) = 'number' "
            "AND (u.data -> %s::text -> %s::text) >= %s::jsonb)",
            ("a", "b", "a", "b", "-2.5"),
            id="gte-number-nested",
        ),
        pytest.param(
            _leaf("lt", "m", "a.b"),
            "(jsonb_typeof(u.data -> %s::text -> %s::text) = 'string' "
            'AND (u.data -> %s::text ->> %s::text) COLLATE "C" < %s)',
            ("a", "b", "a", "b", "m"),
            id="lt-string",
        ),
        pytest.param(
            _leaf("lte", "m"),
            "(jsonb_typeof(u.data -> %s::text) = 'string' AND (u.data ->> %s::text) COLLATE \"C\" <= %s)",
            ("plan", "plan", "m"),
            id="lte-string",
        ),
        pytest.param(_leaf("exists", True, "a.b"), "(u.data -> %s::text -> %s::text) IS NOT NULL", ("a", "b"), id="e"),
        pytest.param(_leaf("exists", False), "(u.data -> %s::text) IS NULL", ("plan",), id="not-exists"),
        pytest.param(_leaf("eq", "UTC", "timezone"), "u.timezone = %s", ("UTC",), id="timezone-eq"),
        pytest.param(_leaf("ne", "UTC", "timezone"), "u.timezone IS DISTINCT FROM %s", ("UTC",), id="timezone-ne"),
        pytest.param(
            _leaf("in", ["UTC", "Asia/Tokyo"], "timezone"),
            "u.timezone = ANY(%s::text[])",
            (["UTC", "Asia/Tokyo"],),
            id="timezone-in",
        ),
        pytest.param(_leaf("gt", "Europe", "timezone"), 'u.timezone COLLATE "C" > %s', ("Europe",), id="timezone-gt"),
        pytest.param(_leaf("exists", True, "timezone"), "u.timezone IS NOT NULL", (), id="timezone-exists"),
    ],
)
def test_compile_where_operator_has_its_sql_and_params(raw: Any, sql: str, params: tuple[Any, ...]) -> None:
    assert compile_where(parse_where(raw)) == SqlCondition(sql, params)


def test_compile_where_combinators_join_in_order() -> None:
    compiled = compile_where(
        parse_where({"or": [_leaf("eq", 1), {"and": [_leaf("exists", True, "a"), {"not": _leaf("eq", 2)}]}]})
    )

    assert compiled.sql == (
        "(u.data @> %s::jsonb OR ((u.data -> %s::text) IS NOT NULL AND (u.data @> %s::jsonb) IS NOT TRUE))"
    )
    assert compiled.params == ('{"plan": 1}', "a", '{"plan": 2}')


def test_compile_where_not_is_two_valued() -> None:
    compiled = compile_where(parse_where({"not": _leaf("gt", 1, "age")}))

    assert compiled.sql.endswith(") IS NOT TRUE")


def test_compile_where_params_carry_every_value() -> None:
    values = ["x'y", 7, 2.25, True, None, "é"]
    tree = {"and": [_leaf("in", values, "k")] + [_leaf("ne", value, f"f{n}") for n, value in enumerate(values)]}

    compiled = compile_where(parse_where(tree))

    in_values = [json.loads(item)["k"] for item in compiled.params[0]]
    ne_values = [next(iter(json.loads(param).values())) for param in compiled.params[1:]]
    assert in_values == values
    assert ne_values == values


# Matching in memory


_USER = {"plan": "pro", "age": 30, "score": 1.0, "flag": True, "gone": None, "tags": ["x"], "address": {"zip": "75"}}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(_leaf("eq", "pro"), True, id="eq-string"),
        pytest.param(_leaf("eq", 30.0, "age"), True, id="eq-number-by-value"),
        pytest.param(_leaf("eq", "30", "age"), False, id="eq-other-type"),
        pytest.param(_leaf("eq", 1, "flag"), False, id="true-is-not-one"),
        pytest.param(_leaf("eq", 1, "score"), True, id="one-is-one-point-zero"),
        pytest.param(_leaf("eq", None, "gone"), True, id="eq-null-present"),
        pytest.param(_leaf("eq", None, "missing"), False, id="eq-null-missing"),
        pytest.param(_leaf("eq", "x", "tags"), False, id="eq-does-not-look-into-arrays"),
        pytest.param(_leaf("exists", True, "tags.0"), False, id="path-does-not-index-arrays"),
        pytest.param(_leaf("eq", "75", "address.zip"), True, id="nested"),
        pytest.param(_leaf("ne", "free"), True, id="ne-other-value"),
        pytest.param(_leaf("ne", "free", "missing"), True, id="ne-includes-missing"),
        pytest.param(_leaf("ne", "30", "age"), True, id="ne-includes-other-type"),
        pytest.param(_leaf("ne", "pro"), False, id="ne-equal"),
        pytest.param(_leaf("in", ["free", "pro"]), True, id="in"),
        pytest.param(_leaf("in", ["free"], "missing"), False, id="in-missing"),
        pytest.param(_leaf("gt", 29.5, "age"), True, id="gt-number"),
        pytest.param(_leaf("gt", "29", "age"), False, id="gt-other-type"),
        pytest.param(_leaf("gte", 30, "age"), True, id="gte-equal"),
        pytest.param(_leaf("lt", "q"), True, id="lt-string"),
        pytest.param(_leaf("lt", "Z"), False, id="strings-by-code-point"),
        pytest.param(_leaf("lte", 1, "missing"), False, id="lte-missing"),
        pytest.param(_leaf("exists", True, "gone"), True, id="exists-null"),
        pytest.param(_leaf("exists", False, "missing"), True, id="not-exists"),
        pytest.param(_leaf("eq", "Europe/Paris", "timezone"), True, id="timezone"),
        pytest.param(_leaf("gt", "Europe/Z", "timezone"), False, id="timezone-gt"),
        pytest.param({"not": _leaf("gt", 100, "missing")}, True, id="not-of-missing"),
        pytest.param({"and": [_leaf("eq", "pro"), _leaf("lt", 18, "age")]}, False, id="and"),
        pytest.param({"or": [_leaf("eq", "free"), _leaf("gte", 18, "age")]}, True, id="or"),
    ],
)
def test_matches_user_follows_the_documented_semantics(raw: Any, expected: bool) -> None:
    assert matches(parse_where(raw), "Europe/Paris", _USER) is expected


def test_matches_float_beyond_exact_integers_compares_as_its_json_decimal() -> None:
    """PostgreSQL keeps 2.0**60 as written (1.152921504606847e+18), not as the float's exact integer."""
    condition = parse_where(_leaf("lt", 1_152_921_504_606_846_980, "n"))

    assert not matches(condition, "UTC", {"n": 2.0**60})


# Properties

_NAMES = st.text(st.sampled_from("abcXYZ019_-"), min_size=1, max_size=8)
_FIELDS = st.one_of(st.just("timezone"), st.lists(_NAMES, min_size=1, max_size=8).map(".".join))
_STRINGS = st.text(max_size=12)
_FLOATS = st.floats(allow_nan=False, allow_infinity=False)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), _FLOATS, _STRINGS)


_TREES = segment_trees(
    fields=_FIELDS,
    values=_SCALARS,
    ordered=st.one_of(st.integers(), _FLOATS, _STRINGS),
    zones=_STRINGS,
    max_in=5,
    max_leaves=12,
)


def _skeleton(tree: Any) -> Any:
    """The same tree with every path name ``p`` and every value a fixed one of its kind: what the SQL may depend on."""
    if "and" in tree or "or" in tree:
        key = next(iter(tree))
        return {key: [_skeleton(item) for item in tree[key]]}
    if "not" in tree:
        return {"not": _skeleton(tree["not"])}
    op = next(key for key in tree if key != "field")
    field = tree["field"] if tree["field"] == "timezone" else ".".join("p" for _ in tree["field"].split("."))
    value = tree[op]
    if op == "in":
        value = [_fixed(item) for item in value]
    elif op != "exists":
        value = _fixed(value)
    return {"field": field, op: value}


def _fixed(value: Any) -> Any:
    if isinstance(value, str):
        return "v"
    if isinstance(value, bool) or value is None:
        return value
    return 0


def _valid(tree: Any) -> Condition | None:
    """Parse a generated tree; ``None`` when it went over a limit or drew a NUL, which a test then skips."""
    outcome = _outcome(tree)
    if isinstance(outcome, InvalidRequestError):
        assert re.search("NUL|more than 50|nested too deeply", outcome.problem), outcome
        return None
    return outcome


@settings(max_examples=100)
@given(_TREES)
def test_compile_where_any_valid_tree_binds_one_param_per_placeholder(tree: Any) -> None:
    condition = _valid(tree)
    if condition is None:
        return

    compiled = compile_where(condition)

    assert compiled.sql.count("%s") == len(compiled.params)
    assert "%" not in compiled.sql.replace("%s", "")


@settings(max_examples=100)
@given(_TREES)
def test_compile_where_sql_depends_only_on_the_shape_of_the_tree(tree: Any) -> None:
    condition = _valid(tree)
    if condition is None:
        return

    assert compile_where(condition).sql == compile_where(parse_where(_skeleton(tree))).sql


_HOSTILE = st.one_of(st.sampled_from(INJECTIONS + _QUOTING), st.text(), st.text(st.sampled_from("'\"\\%()s;-\x00 $Eu")))


def _bound(compiled: SqlCondition, op: str) -> Any:
    """The value a one-condition SQL on ``plan`` binds, decoded from the JSON object it is bound in for ``@>``."""
    last = compiled.params[-1]
    if op == "in":
        return json.loads(last[0])["plan"]
    return json.loads(last)["plan"] if op in {"eq", "ne"} else last


@given(_HOSTILE, st.sampled_from(["eq", "ne", "in", "gt", "lte"]))
def test_compile_where_hostile_value_is_refused_or_stays_data(value: str, op: str) -> None:
    outcome = _outcome(_leaf(op, [value] if op == "in" else value))
    if isinstance(outcome, InvalidRequestError):
        assert outcome.field in {f"where.{op}", f"where.{op}[0]"}
        assert "\x00" in value
        return

    compiled = compile_where(outcome)
    assert compiled.sql == compile_where(parse_where(_leaf(op, ["v"] if op == "in" else "v"))).sql
    assert _bound(compiled, op) == value


@given(_HOSTILE)
def test_compile_where_hostile_path_name_is_refused_or_stays_data(name: str) -> None:
    outcome = _outcome({"field": f"a.{name}", "gt": 1})
    # A name with dots is a path of several names ("0.0" is two).
    names = name.split(".")
    if isinstance(outcome, InvalidRequestError):
        assert outcome.field == "where.field"
        assert len(names) >= MAX_PATH_NAMES or not all(re.fullmatch("[A-Za-z0-9_-]{1,64}", part) for part in names)
        return

    compiled = compile_where(outcome)
    assert compiled.sql == compile_where(parse_where({"field": ".".join(["a"] + ["p"] * len(names)), "gt": 1})).sql
    assert all(part in compiled.params for part in names)


@pytest.mark.parametrize("injection", INJECTIONS)
def test_compile_where_injection_never_appears_in_sql(injection: str) -> None:
    compiled = compile_where(parse_where({"or": [_leaf("eq", injection), _leaf("lt", injection, "timezone")]}))

    assert injection not in compiled.sql
    assert injection in compiled.params


_JSON = st.recursive(
    st.one_of(_SCALARS, st.sampled_from(["eq", "and", "or", "not", "in", "field", "timezone"])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["field", "eq", "gt", "in", "exists", "and", "or", "not", "x"]), inner),
    ),
    max_leaves=20,
)


@settings(max_examples=100)
@given(_JSON)
def test_parse_where_any_json_is_a_condition_or_a_refusal(raw: Any) -> None:
    outcome = _outcome(raw)
    if isinstance(outcome, InvalidRequestError):
        assert outcome.field.startswith("where")
        return

    compiled = compile_where(outcome)
    assert compiled.sql.count("%s") == len(compiled.params)


def test_compile_where_keeps_its_tree_for_an_in_memory_repository() -> None:
    condition = parse_where({"field": "plan", "ne": "pro"})

    compiled = compile_where(condition)

    assert compiled.condition == condition
    assert matches(compiled.condition, "UTC", {})
