"""Strict templates: ``$name`` / ``${name}``, ``$$`` for a dollar; a missing variable is an error, never left in.

Values are inserted in one pass, so an inserted value that looks like a placeholder is never expanded again, and the
longest identifier wins, so ``$name`` never matches inside ``$name_full``. In a JSON model (an object or an array), a
string that is exactly one placeholder takes the value with its JSON type (``"$total"`` → ``42.5``); every other
string is text. How a type's model renders into content, and what it escapes, is its channel's (``core.channels``).
"""

from __future__ import annotations

import html
import json
import re
import string
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from core.errors import MissingTemplateVariablesError, TemplateError, field_path
from core.models import Integration

Escape = Callable[[str], str]

_IDENTIFIER = r"[_a-zA-Z][_a-zA-Z0-9]*"
# A string that is one placeholder and nothing else: in a JSON model it stands for the value itself, typed.
_WHOLE_PLACEHOLDER = re.compile(rf"\$(?:(?P<bare>{_IDENTIFIER})|\{{(?P<braced>{_IDENTIFIER})\}})")


class _Template(string.Template):
    idpattern = _IDENTIFIER
    flags = re.RegexFlag(0)  # case matters: $Name and $name are two variables


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Yield every string of a template structure with its path; keys are not templates."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, field_path([str(key)], path))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, field_path([index], path))


def _compile(template: str, path: str) -> _Template:
    compiled = _Template(template)
    if not compiled.is_valid():
        match = next(m for m in compiled.pattern.finditer(template) if m.group("invalid") is not None)
        # The match starts at the ``$``; its "invalid" group starts after it.
        raise TemplateError(
            path,
            f"has an invalid placeholder at character {match.start() + 1} (write $name or ${{name}} for a variable, "
            "$$ for a dollar sign)",
        )
    return compiled


def variables(template: Any, path: str = "model") -> set[str]:
    """Return the variable names a template (a string or a structure of strings) uses; raise on bad syntax."""
    names: set[str] = set()
    for where, text in _strings(template, path):
        names.update(_compile(text, where).get_identifiers())
    return names


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _render_text(template: str, values: Mapping[str, Any], escape: Escape | None, path: str) -> str:
    compiled = _compile(template, path)
    mapping = {}
    for name in compiled.get_identifiers():
        text = _as_text(values[name])
        mapping[name] = escape(text) if escape else text
    return compiled.substitute(mapping)


def _render_item(item: Any, values: Mapping[str, Any], escape: Escape | None, path: str) -> Any:
    """Render a value inside a JSON model: a string that is one placeholder becomes the value, typed, as it is."""
    if isinstance(item, str) and escape is None and (whole := _WHOLE_PLACEHOLDER.fullmatch(item)):
        return values[whole.group("bare") or whole.group("braced")]
    if isinstance(item, Mapping):
        return {key: _render_item(value, values, escape, field_path([str(key)], path)) for key, value in item.items()}
    if isinstance(item, list):
        return [_render_item(value, values, escape, field_path([index], path)) for index, value in enumerate(item)]
    if isinstance(item, str):
        return _render_text(item, values, escape, path)
    return item


def render(template: Any, values: Mapping[str, Any], escape: Escape | None = None, path: str = "model") -> Any:
    """Render a template string (into text) or a JSON structure with ``values``; raise naming every missing variable.

    Inside a structure, a string that is exactly ``$name`` or ``${name}`` takes the value with its JSON type (number,
    bool, null, object, array); any other string, and a template that is a string itself, is text.
    """
    missing = variables(template, path) - values.keys()
    if missing:
        raise MissingTemplateVariablesError(missing)
    if isinstance(template, str):
        return _render_text(template, values, escape, path)
    return _render_item(template, values, escape, path)


def escape_html(text: str) -> str:
    """Escape a value inserted into an HTML template."""
    return html.escape(text, quote=True)


def missing_variables(integrations: list[Integration], values: Mapping[str, Any]) -> set[str]:
    """Return every variable the integrations' models need that ``values`` lacks."""
    needed: set[str] = set()
    for integration in integrations:
        needed |= variables(integration.model)
    return needed - values.keys()
