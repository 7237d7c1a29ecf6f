"""Unit tests of core/templates.py: strict ``$name`` templates, escaping per channel, missing variables."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import MissingTemplateVariablesError, TemplateError
from core.models import Content, Integration, IntegrationType
from core.templates import escape_html, escape_slack, missing_variables, render, render_content, variables


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


@pytest.mark.parametrize(
    ("escape", "value", "expected"),
    [
        pytest.param(escape_slack, "a & b <c> d", "a &amp; b &lt;c&gt; d", id="slack-amp-lt-gt"),
        pytest.param(escape_slack, "&amp;", "&amp;amp;", id="slack-amp-escaped-first"),
        pytest.param(escape_slack, "*bold* \"q\" 'q'", "*bold* \"q\" 'q'", id="slack-leaves-others"),
        pytest.param(
            escape_html, "<b>\"x\" & 'y'</b>", "&lt;b&gt;&quot;x&quot; &amp; &#x27;y&#x27;&lt;/b&gt;", id="html"
        ),
    ],
)
def test_escape_function_escapes_only_its_special_characters(escape: Any, value: str, expected: str) -> None:
    assert escape(value) == expected


def test_render_with_escape_escapes_values_not_template_text() -> None:
    assert render("<@here> $v", {"v": "<b>&"}, escape_slack) == "<@here> &lt;b&gt;&amp;"


def _integration(kind: IntegrationType, model: Any) -> Integration:
    return Integration(name="i", type=kind, model=model, target={})


def test_render_content_slack_escapes_inserted_values() -> None:
    content = render_content(_integration(IntegrationType.SLACK, "<!channel> $v"), {"v": "a<b>&c"})

    assert content == Content(text="<!channel> a&lt;b&gt;&amp;c")


@pytest.mark.parametrize("kind", [IntegrationType.TELEGRAM, IntegrationType.WEBHOOK, IntegrationType.PUSH])
def test_render_content_other_string_models_insert_values_unescaped(kind: IntegrationType) -> None:
    content = render_content(_integration(kind, "x $v"), {"v": "a<b>&c"})

    assert content == Content(text="x a<b>&c")


def test_render_content_email_escapes_html_only() -> None:
    model = {"subject": "$v", "text": "t $v", "html": "<p>$v</p>"}

    content = render_content(_integration(IntegrationType.EMAIL, model), {"v": "<A&B>"})

    assert content == Content(subject="<A&B>", text="t <A&B>", html="<p>&lt;A&amp;B&gt;</p>")


def test_render_content_email_without_html_has_no_html() -> None:
    content = render_content(_integration(IntegrationType.EMAIL, {"subject": "s", "text": "t"}), {})

    assert content.html is None


def test_render_content_webhook_object_model_renders_into_data() -> None:
    content = render_content(_integration(IntegrationType.WEBHOOK, {"id": "$id", "n": 1}), {"id": "A1"})

    assert content == Content(data={"id": "A1", "n": 1})


def test_missing_variables_collects_across_integrations() -> None:
    integrations = [
        _integration(IntegrationType.SLACK, "$a $shared"),
        _integration(IntegrationType.EMAIL, {"subject": "$b", "text": "$shared", "html": "$c"}),
    ]

    assert missing_variables(integrations, {"shared": 1}) == {"a", "b", "c"}
