"""Unit tests of core/models.py: the publish request refuses text a delivery message cannot carry, naming where; the
delivery message refuses ids the ledger's key cannot hold and times the consumer cannot compute with."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import InvalidRequestError, invalid_fields
from core.http import parse_body
from core.models import DELIVERY_KEY_BYTES, NOTIFICATION_ID_BYTES, DeliveryMessage, DeliveryMessageV1, PublishRequest
from core.times import epoch_time
from core.validation import LONE_SURROGATE, TEXT_RULE, UNSENDABLE, text_matching


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


# --- the delivery message: ids the ledger's key holds, times the consumer can compute with --------------------------


def _delivery(**changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "v": 2,
        "notification_id": "n-1",
        "delivery_key": "hook",
        "channel": "orders",
        "topic": "shipped",
        "created_at": "2026-11-22T18:00:00.000Z",
        "integration": {"name": "hook", "type": "webhook"},
        "content": {"text": "hi"},
    }
    message.update(changes)
    return message


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"notification_id": "n" * NOTIFICATION_ID_BYTES}, id="id-at-the-hash-key-limit"),
        pytest.param({"delivery_key": "é" * (DELIVERY_KEY_BYTES // 2)}, id="key-at-the-sort-key-limit-in-bytes"),
        pytest.param({"not_before": "2999-12-31T23:59:59+00:00"}, id="latest-time"),
        pytest.param({"window_start": "1970-01-01T00:00:00Z"}, id="earliest-time"),
        pytest.param({"created_at": "2026-11-22T19:00:00+01:00"}, id="offset"),
    ],
)
def test_delivery_message_values_the_ledger_and_clock_hold_are_accepted(changes: dict[str, Any]) -> None:
    DeliveryMessage.model_validate_json(json.dumps(_delivery(**changes)))


@pytest.fixture
def local_time_five_hours_behind_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone five hours behind UTC (it is UTC otherwise), restored after the test."""
    monkeypatch.setenv("TZ", "XST+05")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_time_five_hours_behind_utc")
def test_delivery_message_time_without_offset_is_read_as_utc() -> None:
    # Read in the host's local time, the last second before the year 3000 would lie past it (refused), and the
    # consumer would wait five hours longer than the producer meant.
    message = DeliveryMessage.model_validate_json(json.dumps(_delivery(not_before="2999-12-31T23:59:59")))

    assert epoch_time(message.not_before) == datetime(2999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("changes", "field", "kind"),
    [
        pytest.param({"notification_id": "n" * 2049}, "notification_id", "too_long_bytes", id="id-over-the-hash-key"),
        pytest.param(
            {"delivery_key": "é" * 513}, "delivery_key", "too_long_bytes", id="key-over-the-sort-key-in-bytes"
        ),
        pytest.param({"not_before": "9999-12-31T23:59:59-05:00"}, "not_before", "time_range", id="past-9999-in-utc"),
        pytest.param({"not_before": "3000-01-01T00:00:00Z"}, "not_before", "time_range", id="year-3000"),
        pytest.param(
            {"created_at": "0001-01-01T00:00:00+14:00"}, "created_at", "time_range", id="before-year-1-in-utc"
        ),
        pytest.param({"window_start": "1969-12-31T23:59:59Z"}, "window_start", "time_range", id="before-1970"),
        pytest.param({"created_at": "yesterday"}, "created_at", "iso_time", id="not-a-time"),
        pytest.param(
            {"outcome": {"status": "dead", "attempts": 1, "at": "never"}}, "outcome.at", "iso_time", id="outcome-at"
        ),
    ],
)
def test_delivery_message_values_no_row_or_clock_holds_are_refused_naming_the_field(
    changes: dict[str, Any], field: str, kind: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        DeliveryMessage.model_validate_json(json.dumps(_delivery(**changes)))

    assert [(invalid_fields(raised.value, "body"), error["type"]) for error in raised.value.errors()] == [(field, kind)]


def test_delivery_message_v1_integration_name_over_the_sort_key_is_refused_when_upgraded() -> None:
    message = _delivery(v=1, integration={"name": "h" * (DELIVERY_KEY_BYTES + 1), "type": "webhook"})
    del message["delivery_key"]
    old = DeliveryMessageV1.model_validate_json(json.dumps(message))

    with pytest.raises(ValidationError):
        old.upgraded(0)
