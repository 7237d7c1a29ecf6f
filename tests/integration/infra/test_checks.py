"""The deploy checks themselves: each finds what it exists to find."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.deploy.checks import actionlint, artifact_problems, iam_wildcards
from infra.deploy.motoserver import moto_server

_AARCH64_ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 11 + (183).to_bytes(2, "little")
_X86_64_ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 11 + (62).to_bytes(2, "little")


def _role(*statements: dict[str, Any]) -> dict[str, Any]:
    document = {"Version": "2012-10-17", "Statement": list(statements)}
    return {
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {"Policies": [{"PolicyName": "p", "PolicyDocument": document}]},
            }
        }
    }


def _allow(action: Any, resource: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


_TABLE = {"Fn::GetAtt": ["Table", "Arn"]}
_SCOPED = {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/notify/ci/integrations/*"}


@pytest.mark.parametrize(
    "statement",
    [
        _allow("*", _TABLE),
        _allow("dynamodb:*", _TABLE),
        _allow(["dynamodb:Get*"], _TABLE),
        _allow("dynamodb:GetItem", "*"),
        _allow("sns:Publish", "arn:aws:sns:*:*:*"),
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": _TABLE},
    ],
    ids=["star-action", "service-star", "prefix-star", "star-resource", "any-region-arn", "not-action"],
)
def test_iam_wildcards_wildcard_grant_reported(statement: dict[str, Any]) -> None:
    assert len(iam_wildcards(_role(statement))) == 1


@pytest.mark.parametrize(
    "statement",
    [
        _allow(["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "*"),
        _allow("ssm:GetParameter", _SCOPED),
        _allow(["dynamodb:GetItem"], _TABLE),
        {"Effect": "Deny", "Action": "*", "Resource": "*"},
    ],
    ids=["xray", "scoped-path", "known-table", "deny"],
)
def test_iam_wildcards_scoped_grant_accepted(statement: dict[str, Any]) -> None:
    assert iam_wildcards(_role(statement)) == []


def test_iam_wildcards_managed_policy_reported() -> None:
    template = {"Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {"ManagedPolicyArns": ["arn"]}}}}

    assert iam_wildcards(template) != []


def _artifact(tmp_path: Path, files: dict[str, bytes]) -> Path:
    path = tmp_path / "notify.zip"
    record = "".join(f"{name},,\n" for name in files if name.startswith("pkg/"))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("core/__init__.py", "")
        archive.writestr("requirements.txt", "pkg==1.0\n")
        archive.writestr("pkg-1.0.dist-info/RECORD", record + "pkg-1.0.dist-info/RECORD,,\n")
        for name, body in files.items():
            archive.writestr(name, body)
    return path


def _requirements(tmp_path: Path) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text("# runtime\npkg==1.0\n")
    return path


def test_artifact_problems_runtime_only_accepted(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, {"pkg/_speed.cpython-312-aarch64-linux-gnu.so": _AARCH64_ELF})

    assert artifact_problems(artifact, _requirements(tmp_path)) == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"tests/test_x.py": b""}, "not runtime code"),
        ({"stray.py": b""}, "neither our code"),
        ({"pkg/_speed.cpython-312-x86_64-linux-gnu.so": _X86_64_ELF}, "not an arm64"),
        ({"pkg/_speed.cpython-311-aarch64-linux-gnu.so": _AARCH64_ELF}, "cpython-311"),
        ({"core/__pycache__/x.cpython-311.pyc": b""}, "byte code"),
    ],
    ids=["tests", "stray", "x86", "cp311", "pyc"],
)
def test_artifact_problems_non_runtime_file_reported(tmp_path: Path, files: dict[str, bytes], expected: str) -> None:
    problems = artifact_problems(_artifact(tmp_path, files), _requirements(tmp_path))

    assert any(expected in problem for problem in problems), problems


def test_artifact_problems_missing_requirement_reported(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pkg==1.0\nstripe==16.1.0\n")

    problems = artifact_problems(_artifact(tmp_path, {}), requirements)

    assert problems == ["stripe: in requirements.txt but not in the artifact"]


def test_actionlint_broken_workflow_reported(tmp_path: Path) -> None:
    workflow = tmp_path / "broken.yml"
    workflow.write_text(
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.x }}\n"
    )

    result = actionlint([workflow])

    assert not result.ok
    assert 'property "x" is not defined' in result.output


def test_moto_server_stops_when_its_block_fails() -> None:
    with pytest.raises(RuntimeError), moto_server() as url:  # noqa: PT012
        assert requests.get(f"{url}/moto-api/", timeout=5).ok
        raise RuntimeError("a failed rehearsal")

    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/moto-api/", timeout=5)
