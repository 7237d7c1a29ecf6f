"""The snapshot file (format, version, unreadable files), value conversions and the terminal's line, without moto."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infra.local.snapshot import (
    FILE_NAME,
    FORMAT,
    VERSION,
    LocalAwsState,
    Restored,
    SavedMessage,
    SavedParameter,
    SnapshotError,
    Snapshots,
    attributes_json,
    attributes_moto,
    decode,
    dynamo_item,
    dynamo_json,
    encode,
    read,
    summary,
    write_private,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"
STATE = LocalAwsState(
    tables={"notify-local-topics": [{"channel": {"S": "demo"}, "topic": {"S": "welcome"}, "raw": {"B": "AAE="}}]},
    parameters=[SavedParameter(name="/notify/local/credentials/x", type="SecureString", value="secret")],
    queues={"notify-local-deliveries": [SavedMessage(message_id="m-1", body="{}", receive_count=2)]},
    identities=["notify@example.com"],
)


def untouchable(service: str) -> Any:
    """A client factory for paths that must not reach moto."""
    raise AssertionError(f"moto was called ({service})")


@dataclass
class FakeDynamoType:
    """What moto's ``DynamoType`` offers the conversion: a type and a value."""

    type: str
    value: Any


def test_encode_then_decode_gives_the_state_back() -> None:
    text = encode(STATE, ACCOUNT, REGION, datetime(2026, 5, 1, 12, 0, tzinfo=UTC))

    saved = decode(text, ACCOUNT, REGION)

    assert saved.state == STATE
    assert (saved.format, saved.version, saved.saved_at) == (FORMAT, VERSION, "2026-05-01T12:00:00Z")


def test_encode_writes_plain_json_with_format_and_version() -> None:
    document = json.loads(encode(STATE, ACCOUNT, REGION, datetime.now(UTC)))

    assert (document["format"], document["version"]) == ("notify-local-aws", 1)
    assert document["state"]["parameters"][0]["value"] == "secret"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "is not JSON"),
        ("[]", "is not a saved state of the local stack"),
        ('{"format": "other", "version": 1}', "is not a saved state of the local stack"),
        (json.dumps({"format": FORMAT, "version": 2}), "has version 2, this stack reads version 1"),
        (json.dumps({"format": FORMAT}), "has version None"),
    ],
)
def test_decode_unusable_text_raises_saying_why(text: str, reason: str) -> None:
    with pytest.raises(SnapshotError, match=reason):
        decode(text, ACCOUNT, REGION)


def test_decode_of_another_region_raises() -> None:
    text = encode(STATE, ACCOUNT, "eu-west-1", datetime.now(UTC))

    with pytest.raises(SnapshotError, match="was saved for account '123456789012' in 'eu-west-1', not"):
        decode(text, ACCOUNT, REGION)


def test_decode_malformed_state_names_where() -> None:
    document = json.loads(encode(STATE, ACCOUNT, REGION, datetime.now(UTC)))
    document["state"]["queues"] = {"q": [{"body": "no id"}]}

    with pytest.raises(SnapshotError, match=r"is malformed at state\.queues\.q\.0\.message_id"):
        decode(json.dumps(document), ACCOUNT, REGION)


def test_read_without_a_file_is_none(tmp_path: Path) -> None:
    assert read(tmp_path / FILE_NAME, ACCOUNT, REGION) is None


def test_write_private_leaves_only_the_file_readable_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "aws" / FILE_NAME

    write_private(path, "one")
    write_private(path, "two")

    assert path.read_text() == "two"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert [entry.name for entry in path.parent.iterdir()] == [FILE_NAME]


def test_restore_without_a_file_says_nothing_saved_yet(tmp_path: Path) -> None:
    snapshots = Snapshots(tmp_path / "aws", untouchable, ACCOUNT, REGION)

    assert snapshots.restore() == f"nothing saved yet in {tmp_path / 'aws'}"
    assert not snapshots.set_aside


def test_restore_of_an_unreadable_file_sets_it_aside_and_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "aws" / FILE_NAME
    path.parent.mkdir()
    path.write_text("{half a fi")
    snapshots = Snapshots(tmp_path / "aws", untouchable, ACCOUNT, REGION)

    line = snapshots.restore()

    assert line == f"{path} is not JSON; kept as snapshot.json.unreadable, starting without it"
    assert snapshots.set_aside
    assert not path.exists()
    assert (tmp_path / "aws" / "snapshot.json.unreadable").read_text() == "{half a fi"


def test_restore_of_a_newer_version_sets_it_aside(tmp_path: Path) -> None:
    path = tmp_path / "aws" / FILE_NAME
    path.parent.mkdir()
    path.write_text(json.dumps({"format": FORMAT, "version": 7}))

    line = Snapshots(tmp_path / "aws", untouchable, ACCOUNT, REGION).restore()

    assert "has version 7, this stack reads version 1" in line
    assert (tmp_path / "aws" / "snapshot.json.unreadable").exists()


def test_save_before_restore_leaves_the_saved_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "aws" / FILE_NAME
    write_private(path, "what the last run saved")

    Snapshots(tmp_path / "aws", untouchable, ACCOUNT, REGION).save()

    assert path.read_text() == "what the last run saved"


class Interrupted(Exception):
    """What the stack raises from its signal handler when Ctrl-C comes while it starts."""


def test_save_after_a_restore_cut_short_leaves_the_saved_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "aws" / FILE_NAME
    text = encode(STATE, ACCOUNT, REGION, datetime.now(UTC))
    write_private(path, text)

    def interrupted(service: str) -> Any:
        raise Interrupted

    snapshots = Snapshots(tmp_path / "aws", interrupted, ACCOUNT, REGION)
    with pytest.raises(Interrupted):
        snapshots.restore()
    snapshots.save()

    assert path.read_text() == text


def test_reset_removes_everything_saved(tmp_path: Path) -> None:
    write_private(tmp_path / "aws" / FILE_NAME, "{}")
    write_private(tmp_path / "aws" / "demo.json", "{}")

    Snapshots(tmp_path / "aws", untouchable, ACCOUNT, REGION).reset()

    assert not (tmp_path / "aws").exists()


def test_dynamo_json_encodes_binary_values_at_every_depth() -> None:
    value = FakeDynamoType(
        "M",
        {
            "top": FakeDynamoType("B", b"\x00\xff"),
            "set": FakeDynamoType("BS", [b"\x01", "Ag=="]),
            "list": FakeDynamoType("L", [FakeDynamoType("B", "Aw=="), FakeDynamoType("NULL", True)]),
            "n": FakeDynamoType("N", "1.5"),
        },
    )

    assert dynamo_json(value.type, value.value) == {
        "M": {
            "top": {"B": "AP8="},
            "set": {"BS": ["AQ==", "Ag=="]},
            "list": {"L": [{"B": "Aw=="}, {"NULL": True}]},
            "n": {"N": "1.5"},
        }
    }


def test_dynamo_item_decodes_binary_values_for_the_client() -> None:
    item: dict[str, dict[str, Any]] = {
        "raw": {"B": "AP8="},
        "m": {"M": {"s": {"BS": ["AQ=="]}, "l": {"L": [{"B": "Aw=="}, {"S": "x"}]}}},
    }

    assert dynamo_item(item) == {
        "raw": {"B": b"\x00\xff"},
        "m": {"M": {"s": {"BS": [b"\x01"]}, "l": {"L": [{"B": b"\x03"}, {"S": "x"}]}}},
    }


def test_message_attributes_round_trip_binary_values() -> None:
    held = {
        "last_error": {"DataType": "String", "StringValue": "boom"},
        "raw": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
    }

    saved = attributes_json(held)

    assert saved["raw"]["BinaryValue"] == "AAE="
    assert json.loads(json.dumps(saved)) == saved
    assert attributes_moto(saved) == held


def test_summary_counts_tables_with_items_and_names_what_was_left_out() -> None:
    restored = Restored(
        items={"topics": 1, "ledger": 56, "pacing": 0},
        parameters=12,
        messages=1,
        endpoints=1,
        left_out=["table old-one"],
    )

    assert summary(restored, ".local/aws") == (
        "restored 2 tables (57 items), 12 parameters, 1 queued message, 1 push endpoint from .local/aws;"
        " left out, no longer defined: table old-one"
    )


def test_summary_of_nothing_counts_zero() -> None:
    assert (
        summary(Restored(), ".local/aws")
        == "restored 0 tables (0 items), 0 parameters, 0 queued messages from .local/aws"
    )
