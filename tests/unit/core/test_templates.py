"""Unit tests of core/templates.py: strict ``$name`` templates, html escaping, missing variables.

How each type renders and escapes is tested with its channel (tests/unit/core/channels/).
"""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import MissingTemplateVariablesError, TemplateError
from core.models import Integration, IntegrationType
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
        variables({"a": ["ok", "bad $"]}, "integrations.0.model")

    assert raised.value.field == "integrations.0.model.a.1"


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
