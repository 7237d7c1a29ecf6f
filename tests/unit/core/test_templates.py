"""Unit tests of core/templates.py: strict ``$name`` templates, html escaping, missing variables.

How each type renders and escapes is tested with its channel (tests/unit/core/channels/).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import MissingTemplateVariablesError, PayloadTooLargeError, TemplateError
from core.models import Integration, IntegrationType
from core.queue import DELIVERY_MESSAGE_BYTES_LIMIT
from core.templates import escape_html, missing_variables, render, variables


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        pytest.param("costs $$5", {}, "costs $5", id="double-dollar-is-a-dollar"),
        pytest.param("$$name", {"name": "x"}, "$name", id="double-dollar-before-identifier-not-a-placeholder"),
        pytest.param("hi ${name}!", {"name": "Ada"}, "hi Ada!", id="braced"),
        pytest.param("${name}s", {"name": "cat"}, "cats", id="braced-followed-by-identifier-characters"),
        pytest.param("hi $name.", {"name": "Ada"}, "hi Ada.", id="bare"),
        pytest.param(
            "$name / $name_full",
            {"name": "Ada", "name_full": "Ada Lovelace"},
            "Ada / Ada Lovelace",
            id="no-prefix-collision",
        ),
        pytest.param("$a", {"a": "$b", "b": "no"}, "$b", id="inserted-value-not-expanded-again"),
        pytest.param("$a", {"a": "${b} $$"}, "${b} $$", id="inserted-braces-and-dollars-kept-verbatim"),
        pytest.param("n=$n", {"n": 42}, "n=42", id="int-as-json"),
        pytest.param("x=$x", {"x": 1.5}, "x=1.5", id="float-as-json"),
        pytest.param("b=$b", {"b": True}, "b=true", id="bool-as-json"),
        pytest.param("v=$v", {"v": None}, "v=null", id="null-as-json"),
        pytest.param("o=$o", {"o": {"k": [1, "é"]}}, 'o={"k":[1,"é"]}', id="object-as-compact-json"),
        pytest.param("l=$l", {"l": [1, "two", None]}, 'l=[1,"two",null]', id="list-as-compact-json"),
        pytest.param("$Name $name", {"Name": "A", "name": "b"}, "A b", id="case-sensitive"),
        pytest.param("plain text", {"unused": 1}, "plain text", id="no-placeholders"),
    ],
)
def test_render_string_template_produces_expected_text(template: str, values: dict[str, Any], expected: str) -> None:
    assert render(template, values) == expected


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        pytest.param(
            {"event": "$kind", "amount": 5, "tags": ["$a", "fixed"], "user": {"$name": "${name}"}},
            {"kind": "order", "a": "x", "name": "Ada"},
            {"event": "order", "amount": 5, "tags": ["x", "fixed"], "user": {"$name": "Ada"}},
            id="webhook-object-keys-untouched-non-strings-kept",
        ),
        pytest.param(
            [{"text": "$t"}, 3, None, True],
            {"t": "hi"},
            [{"text": "hi"}, 3, None, True],
            id="list-model",
        ),
        pytest.param(
            {"default": "$msg", "APNS": {"aps": {"alert": "$msg", "badge": 1}}},
            {"msg": "hello"},
            {"default": "hello", "APNS": {"aps": {"alert": "hello", "badge": 1}}},
            id="push-per-platform-object",
        ),
    ],
)
def test_render_structure_renders_every_nested_string(template: Any, values: dict[str, Any], expected: Any) -> None:
    assert render(template, values) == expected


# --- typed values in JSON models ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        pytest.param({"total": "$total"}, {"total": 42.5}, {"total": 42.5}, id="float"),
        pytest.param({"total": "${total}"}, {"total": 42.5}, {"total": 42.5}, id="braced-float"),
        pytest.param({"count": "$n"}, {"n": 3}, {"count": 3}, id="int"),
        pytest.param({"paid": "$paid"}, {"paid": False}, {"paid": False}, id="bool"),
        pytest.param({"coupon": "$coupon"}, {"coupon": None}, {"coupon": None}, id="null"),
        pytest.param(
            {"buyer": "$buyer"},
            {"buyer": {"name": "Ada", "vip": True}},
            {"buyer": {"name": "Ada", "vip": True}},
            id="object",
        ),
        pytest.param({"items": "$items"}, {"items": [1, "two", None]}, {"items": [1, "two", None]}, id="array"),
        pytest.param({"name": "$name"}, {"name": "Ada"}, {"name": "Ada"}, id="string-stays-a-string"),
        pytest.param({"id": "$id"}, {"id": "42"}, {"id": "42"}, id="numeric-string-stays-a-string"),
        pytest.param(["$n", {"deep": ["$n"]}], {"n": 1.5}, [1.5, {"deep": [1.5]}], id="nested-in-arrays"),
        pytest.param(
            {"default": "$msg", "GCM": {"data": {"badge": "$badge"}}},
            {"msg": "hi", "badge": 3},
            {"default": "hi", "GCM": {"data": {"badge": 3}}},
            id="push-per-platform-object",
        ),
        pytest.param({"label": "Total: $total"}, {"total": 42.5}, {"label": "Total: 42.5"}, id="with-text-is-text"),
        pytest.param({"pair": "$a$b"}, {"a": 1, "b": 2}, {"pair": "12"}, id="two-placeholders-is-text"),
        pytest.param({"padded": " $n"}, {"n": 1}, {"padded": " 1"}, id="space-before-is-text"),
        pytest.param({"padded": "$n\n"}, {"n": 1}, {"padded": "1\n"}, id="newline-after-is-text"),
        pytest.param({"price": "$$total"}, {"total": 42.5}, {"price": "$total"}, id="escaped-dollar-is-text"),
        pytest.param({"price": "$$"}, {}, {"price": "$"}, id="lone-escaped-dollar"),
        pytest.param({"a": "$a"}, {"a": "$b", "b": 1}, {"a": "$b"}, id="value-not-expanded-again"),
        pytest.param({"a": "$a"}, {"a": ["$b"], "b": 1}, {"a": ["$b"]}, id="array-value-not-expanded-again"),
        pytest.param({"$total": "x"}, {"total": 1}, {"$total": "x"}, id="keys-are-not-templates"),
    ],
)
def test_render_json_model_string_that_is_one_variable_takes_its_type(
    template: Any, values: dict[str, Any], expected: Any
) -> None:
    assert render(template, values) == expected


def test_render_string_model_that_is_one_variable_stays_text() -> None:
    assert render("$total", {"total": 42.5}) == "42.5"


def test_render_json_model_one_variable_missing_raises_naming_it() -> None:
    with pytest.raises(MissingTemplateVariablesError) as raised:
        render({"total": "$total", "count": "${count}"}, {})

    assert raised.value.names == ["count", "total"]


def test_render_json_model_with_escape_inserts_text() -> None:
    assert render({"n": "$n"}, {"n": 1}, escape_html) == {"n": "1"}


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(value=_json_values, braced=st.booleans())
def test_render_json_model_one_variable_is_the_value_itself(value: Any, braced: bool) -> None:
    assert render({"v": "${v}" if braced else "$v"}, {"v": value}) == {"v": value}


@given(value=_json_values, before=st.text(alphabet="ab .", max_size=4))
def test_render_json_model_variable_with_text_is_the_text_of_the_value(value: Any, before: str) -> None:
    rendered = render({"v": f"{before}${{v}}!"}, {"v": value})

    assert rendered == {"v": f"{before}{render('${v}', {'v': value})}!"}


@pytest.mark.parametrize(
    ("template", "values", "missing"),
    [
        pytest.param("$b $a ${c}", {}, ["a", "b", "c"], id="all-missing-sorted"),
        pytest.param("$a $b", {"a": 1}, ["b"], id="only-the-missing-one"),
        pytest.param({"x": ["$z"], "y": "$y"}, {}, ["y", "z"], id="nested-structure"),
        pytest.param("$name_full", {"name": "Ada"}, ["name_full"], id="prefix-does-not-satisfy"),
        pytest.param("$Name", {"name": "Ada"}, ["Name"], id="case-matters"),
    ],
)
def test_render_missing_variables_raises_naming_all_sorted(
    template: Any, values: dict[str, Any], missing: list[str]
) -> None:
    with pytest.raises(MissingTemplateVariablesError) as raised:
        render(template, values)

    assert raised.value.names == missing
    assert raised.value.field == "metadata"
    assert ", ".join(missing) in str(raised.value)


@pytest.mark.parametrize(
    ("template", "column"),
    [
        pytest.param("costs $", 7, id="lone-dollar-at-end"),
        pytest.param("costs $ 5", 7, id="lone-dollar-before-space"),
        pytest.param("$5 off", 1, id="dollar-before-digit"),
        pytest.param("hi ${name", 4, id="unclosed-brace"),
        pytest.param("hi ${}", 4, id="empty-braces"),
        pytest.param("${na-me}", 1, id="invalid-identifier-in-braces"),
    ],
)
def test_render_invalid_placeholder_raises_template_error_with_position(template: str, column: int) -> None:
    with pytest.raises(TemplateError) as raised:
        render(template, {"name": "x"}, path="model.text")

    assert raised.value.field == "model.text"
    assert f"character {column}" in str(raised.value)
    assert not isinstance(raised.value, MissingTemplateVariablesError)


def test_variables_nested_invalid_placeholder_names_its_path() -> None:
    with pytest.raises(TemplateError) as raised:
        variables({"a": ["ok", "bad $"], "$b": "fine"}, "integrations[0].model")

    assert raised.value.field == "integrations[0].model.a[1]"


def test_variables_invalid_placeholder_under_an_odd_key_quotes_the_key() -> None:
    with pytest.raises(TemplateError) as raised:
        variables({"$total": "costs $"}, "model")

    assert raised.value.field == 'model["$total"]'


def test_render_invalid_placeholder_says_what_to_write() -> None:
    with pytest.raises(TemplateError) as raised:
        render("costs $", {}, path="model.text")

    assert str(raised.value) == (
        "model.text: has an invalid placeholder at character 7 (write $name or ${name} for a variable, "
        "$$ for a dollar sign)"
    )


def test_variables_structure_returns_every_name() -> None:
    assert variables({"k": "$a ${b}", "l": ["$c", 1], "$key": "$$"}) == {"a", "b", "c"}


def test_escape_html_escapes_markup_and_quotes() -> None:
    assert escape_html("<b>\"x\" & 'y'</b>") == "&lt;b&gt;&quot;x&quot; &amp; &#x27;y&#x27;&lt;/b&gt;"


def test_render_with_escape_escapes_values_not_template_text() -> None:
    assert render("<p>$v</p>", {"v": "<b>&"}, escape_html) == "<p>&lt;b&gt;&amp;</p>"


def _integration(kind: IntegrationType, model: Any) -> Integration:
    return Integration(name="i", type=kind, model=model, target={})


def test_missing_variables_collects_across_integrations() -> None:
    integrations = [
        _integration(IntegrationType.SLACK, "$a $shared"),
        _integration(IntegrationType.EMAIL, {"subject": "$b", "text": "$shared", "html": "$c"}),
    ]

    assert missing_variables(integrations, {"shared": 1}) == {"a", "b", "c"}


# --- output size ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("$v " * 600, id="string-template"),
        pytest.param(["$v"] * 600, id="json-model-of-whole-placeholders"),
        pytest.param({f"k{index}": "${v}" for index in range(600)}, id="json-object-of-braced-placeholders"),
    ],
)
def test_render_large_value_repeated_raises_payload_too_large_before_building_it(template: Any) -> None:
    # Built whole, 600 copies of 200 KB are 120 MB: the message's size would be checked only after.
    with pytest.raises(PayloadTooLargeError) as raised:
        render(template, {"v": "x" * 200_000}, path="integrations[0].model")

    assert str(raised.value).startswith("integrations[0].model renders to more than 248 KiB")


def test_render_escaped_value_over_the_limit_raises_payload_too_large() -> None:
    # Escaping "<" makes it four characters: the escaped text is what is counted.
    with pytest.raises(PayloadTooLargeError):
        render("<p>$v</p>", {"v": "<" * (DELIVERY_MESSAGE_BYTES_LIMIT // 4)}, escape_html)


def test_render_output_of_the_delivery_message_limit_renders() -> None:
    value = "x" * (DELIVERY_MESSAGE_BYTES_LIMIT - len("a  b"))

    assert render("a $v b", {"v": value}) == f"a {value} b"


def test_render_output_one_character_over_the_delivery_message_limit_raises_payload_too_large() -> None:
    with pytest.raises(PayloadTooLargeError):
        render("a $v b", {"v": "x" * (DELIVERY_MESSAGE_BYTES_LIMIT - len("a  b") + 1)})


def test_render_100_kb_value_used_twice_renders() -> None:
    value = "x" * 100_000

    assert render({"a": "$v", "b": "<$v>"}, {"v": value}) == {"a": value, "b": f"<{value}>"}
