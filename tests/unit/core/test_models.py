"""Unit tests of core/models.py: the publish request refuses text a delivery message cannot carry, naming where."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import InvalidRequestError
from core.http import parse_body
from core.models import LONE_SURROGATE, TEXT_RULE, UNSENDABLE, PublishRequest, text_matching


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        pytest.param('{"x": "\\ud800"}', "metadata.x", id="lone-high-surrogate"),
        pytest.param('{"x": "ok \\udfff"}', "metadata.x", id="lone-low-surrogate"),
        pytest.param('{"x": "\\uffff"}', "metadata.x", id="u-ffff"),
        pytest.param('{"x": "\\ufffe"}', "metadata.x", id="u-fffe"),
        pytest.param('{"a": [1, {"b": "\\ud800"}]}', "metadata.a[1].b", id="nested"),
        pytest.param('{"a\\uffff": 1}', 'metadata["a\\uffff"]', id="key"),
    ],
)
def test_publish_request_unsendable_text_raises_invalid_naming_the_field_and_the_rule(
    metadata: str, field: str
) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_body('{"metadata": ' + metadata + "}", PublishRequest)

    assert str(raised.value) == f"{field}: {TEXT_RULE}"


def test_publish_request_lone_surrogate_in_a_key_raises_invalid_naming_the_object() -> None:
    # pydantic writes a location's lone surrogate as U+FFFD; the key is still told apart, and the message is ASCII.
    with pytest.raises(InvalidRequestError) as raised:
        parse_body('{"metadata": {"a": {"\\ud800": 1}}}', PublishRequest)

    assert str(raised.value).startswith('metadata.a["')
    assert str(raised.value).endswith(f"]: {TEXT_RULE}")
    assert str(raised.value).isascii()


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        pytest.param('"tab\\t nul \\u0000 \\u001f"', "tab\t nul \x00 \x1f", id="controls-json-escapes"),
        pytest.param('"\\ud83d\\ude00"', "\U0001f600", id="surrogate-pair"),
        pytest.param('"\\ud7ff \\ue000 \\ufffd \\ud800\\udc00"', "\ud7ff \ue000 \ufffd \U00010000", id="edges"),
    ],
)
def test_publish_request_text_a_message_can_carry_is_accepted(escaped: str, text: str) -> None:
    request = parse_body('{"metadata": {"x": ' + escaped + "}}", PublishRequest)

    assert request.metadata == {"x": text}
    assert json.loads(request.model_dump_json()) == {"metadata": {"x": text}}


def test_publish_request_unsendable_text_built_in_code_is_refused() -> None:
    with pytest.raises(ValidationError) as raised:
        PublishRequest(metadata={"a": ["\uffff"]})

    assert [error["loc"] for error in raised.value.errors()] == [("metadata", "a", 0)]


@pytest.mark.parametrize(
    ("value", "where"),
    [
        pytest.param({"a": "fine", "b": ["fine", ("x", "\ud800")]}, ("b", 1, 1), id="in-a-tuple"),
        pytest.param("\udc00", (), id="the-value"),
        pytest.param({"a": {"b": 1, "c": None}}, None, id="none"),
    ],
)
def test_text_matching_returns_the_path_of_the_string(value: Any, where: tuple[str | int, ...] | None) -> None:
    assert text_matching(value, LONE_SURROGATE) == where


def test_text_matching_u_ffff_is_unsendable_but_no_surrogate() -> None:
    assert (text_matching({"x": "\uffff"}, UNSENDABLE), text_matching({"x": "\uffff"}, LONE_SURROGATE)) == (
        ("x",),
        None,
    )
