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

from core.errors import MissingTemplateVariablesError, PayloadTooLargeError, TemplateError, field_path
from core.models import Integration
from core.queue import DELIVERY_MESSAGE_BYTES_LIMIT

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


def as_text(value: Any) -> str:
    """Return a value as text goes: a string as it is, anything else as compact JSON (non-ASCII kept)."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _Rendering:
    """One ``render`` call: the values' texts, each made once, and the characters left before the output is larger
    than a delivery message can be. A model that inserts a value many times would otherwise build all of it (a
    256 KiB value, 600 times, is 150 MiB) before the message's size is checked."""

    def __init__(self, values: Mapping[str, Any], escape: Escape | None, root: str) -> None:
        self.values = values
        self.escape = escape
        self.root = root
        self.left = DELIVERY_MESSAGE_BYTES_LIMIT
        self._texts: dict[str, str] = {}

    def text(self, name: str) -> str:
        if name not in self._texts:
            text = as_text(self.values[name])
            self._texts[name] = self.escape(text) if self.escape else text
        return self._texts[name]

    def spend(self, characters: int) -> None:
        """Count characters about to be built; raise once the output would exceed a delivery message's limit."""
        self.left -= characters
        if self.left < 0:
            raise PayloadTooLargeError(
                f"{self.root} renders to more than {DELIVERY_MESSAGE_BYTES_LIMIT // 1024} KiB with this metadata, "
                "more than a delivery message can carry"
            )


def _render_text(template: str, rendering: _Rendering, path: str) -> str:
    compiled = _compile(template, path)
    mapping = {}
    size = len(template)
    for match in compiled.pattern.finditer(template):
        name = match.group("named") or match.group("braced")
        if name is not None:
            mapping[name] = rendering.text(name)
            size += len(mapping[name]) - len(match.group())
    rendering.spend(size)
    return compiled.substitute(mapping)


def _render_item(item: Any, rendering: _Rendering, path: str) -> Any:
    """Render a value inside a JSON model: a string that is one placeholder becomes the value, typed, as it is."""
    if isinstance(item, str) and rendering.escape is None and (whole := _WHOLE_PLACEHOLDER.fullmatch(item)):
        name = whole.group("bare") or whole.group("braced")
        rendering.spend(len(rendering.text(name)))
        return rendering.values[name]
    if isinstance(item, Mapping):
        return {key: _render_item(value, rendering, field_path([str(key)], path)) for key, value in item.items()}
    if isinstance(item, list):
        return [_render_item(value, rendering, field_path([index], path)) for index, value in enumerate(item)]
    if isinstance(item, str):
        return _render_text(item, rendering, path)
    return item


def render(template: Any, values: Mapping[str, Any], escape: Escape | None = None, path: str = "model") -> Any:
    """Render a template string (into text) or a JSON structure with ``values``; raise naming every missing variable.

    Inside a structure, a string that is exactly ``$name`` or ``${name}`` takes the value with its JSON type (number,
    bool, null, object, array); any other string, and a template that is a string itself, is text. Raise
    ``PayloadTooLargeError`` before building an output longer than a delivery message can be.
    """
    missing = variables(template, path) - values.keys()
    if missing:
        raise MissingTemplateVariablesError(missing)
    rendering = _Rendering(values, escape, path)
    if isinstance(template, str):
        return _render_text(template, rendering, path)
    return _render_item(template, rendering, path)


def escape_html(text: str) -> str:
    """Escape a value inserted into an HTML template."""
    return html.escape(text, quote=True)


def missing_variables(integrations: list[Integration], values: Mapping[str, Any]) -> set[str]:
    """Return every variable the integrations' models need that ``values`` lacks."""
    needed: set[str] = set()
    for integration in integrations:
        needed |= variables(integration.model)
    return needed - values.keys()
