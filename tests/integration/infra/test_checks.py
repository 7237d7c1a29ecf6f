"""The deploy checks themselves: each finds what it exists to find."""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.deploy import dependencies
from infra.deploy.checks import (
    IMPORT_NAMES,
    PYTHON312_MAGIC,
    Artifact,
    actionlint,
    admin_token_window_problems,
    api_resource_problems,
    artifact_problems,
    bytecode_problems,
    consumer_timeout_problems,
    event_source_problems,
    iam_wildcards,
    import_closure,
    import_problems,
    invoke_permission_problems,
    package_artifact_problems,
    private_target_problems,
    secret_reference_problems,
    settings_problems,
    tracing_problems,
    version_problems,
)
from infra.deploy.dependencies import runtime_python
from infra.deploy.motoserver import moto_server
from infra.deploy.package import PackagedService

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
_SNS = "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:"


@pytest.mark.parametrize(
    "statement",
    [
        _allow("*", _TABLE),
        _allow("dynamodb:*", _TABLE),
        _allow(["dynamodb:Get*"], _TABLE),
        _allow("dynamodb:GetItem", "*"),
        _allow("sns:Publish", "arn:aws:sns:*:*:*"),
        _allow("sns:Publish", {"Fn::Sub": _SNS + "*"}),
        _allow("sns:Publish", {"Fn::Sub": _SNS + "*-push"}),
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": _TABLE},
    ],
    ids=[
        "star-action",
        "service-star",
        "prefix-star",
        "star-resource",
        "any-region-arn",
        "every-topic-of-the-account",
        "any-topic-ending-in",
        "not-action",
    ],
)
def test_iam_wildcards_wildcard_grant_reported(statement: dict[str, Any]) -> None:
    assert len(iam_wildcards(_role(statement))) == 1


@pytest.mark.parametrize(
    "statement",
    [
        _allow(["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "*"),
        # A function in a VPC: the network interfaces Lambda makes take "*" only (AWSLambdaVPCAccessExecutionRole).
        _allow(["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface"], "*"),
        _allow("ssm:GetParameter", _SCOPED),
        _allow(["dynamodb:GetItem"], _TABLE),
        _allow("sns:Publish", [{"Fn::Sub": _SNS + "endpoint/*"}, {"Fn::Sub": _SNS + "notify-ci-push-*"}]),
        {"Effect": "Deny", "Action": "*", "Resource": "*"},
    ],
    ids=["xray", "vpc-network-interfaces", "scoped-path", "known-table", "push-endpoints-and-prefixed-topics", "deny"],
)
def test_iam_wildcards_scoped_grant_accepted(statement: dict[str, Any]) -> None:
    assert iam_wildcards(_role(statement)) == []


def test_iam_wildcards_managed_policy_reported() -> None:
    template = {"Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {"ManagedPolicyArns": ["arn"]}}}}

    assert iam_wildcards(template) != []


def _artifact(tmp_path: Path, files: dict[str, bytes], dists: dict[str, str] | None = None) -> Path:
    """A function zip: ``files`` beside the dist-info of ``pkg`` (owning ``pkg/``) and of each of ``dists`` (name: its
    Requires-Dist lines), each owning the files under its module name."""
    path = tmp_path / "function.zip"
    owners = {"pkg": "", **(dists or {})}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("core/__init__.py", "")
        for dist, requires in owners.items():
            module = IMPORT_NAMES.get(dist, dist)
            owned = [name for name in files if name.split("/", 1)[0] == module]
            if dist != "pkg" and not owned:
                owned = [f"{module}/__init__.py"]
                archive.writestr(owned[0], "")
            info = f"{dist.replace('-', '_')}-1.0.dist-info"
            record = "".join(f"{name},,\n" for name in owned) + f"{info}/RECORD,,\n{info}/METADATA,,\n"
            archive.writestr(f"{info}/RECORD", record)
            metadata = f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n" + "".join(
                f"Requires-Dist: {line}\n" for line in requires.splitlines()
            )
            archive.writestr(f"{info}/METADATA", metadata + "\n")
        for name, body in files.items():
            archive.writestr(name, body)
    return path


def test_artifact_problems_runtime_only_accepted(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, {"pkg/_speed.cpython-312-aarch64-linux-gnu.so": _AARCH64_ELF})

    assert artifact_problems(artifact) == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"tests/test_x.py": b""}, "not runtime code"),
        ({"stray.py": b""}, "neither our code"),
        ({"pkg/_speed.cpython-312-x86_64-linux-gnu.so": _X86_64_ELF}, "not an arm64"),
        ({"pkg/_speed.cpython-311-aarch64-linux-gnu.so": _AARCH64_ELF}, "cpython-311"),
    ],
    ids=["tests", "stray", "x86", "cp311"],
)
def test_artifact_problems_non_runtime_file_reported(tmp_path: Path, files: dict[str, bytes], expected: str) -> None:
    problems = artifact_problems(_artifact(tmp_path, files))

    assert any(expected in problem for problem in problems), problems


def test_artifact_problems_runtime_boto3_reported(tmp_path: Path) -> None:
    problems = artifact_problems(_artifact(tmp_path, {}, {"botocore": ""}))

    assert problems == ["botocore: Lambda's python3.12 runtime has its own; the artifact must not carry it"]


def _pyc(flags: int, magic: bytes = PYTHON312_MAGIC) -> bytes:
    return magic + flags.to_bytes(4, "little") + b"\x00" * 8


@pytest.mark.parametrize("flags", [1, 3], ids=["unchecked-hash", "checked-hash"])
def test_bytecode_problems_hash_based_312_pyc_beside_its_source_accepted(tmp_path: Path, flags: int) -> None:
    artifact = _artifact(tmp_path, {"core/x.py": b"", "core/__pycache__/x.cpython-312.pyc": _pyc(flags)})

    assert bytecode_problems(artifact, required=False) == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"core/x.py": b"", "core/__pycache__/x.cpython-312.pyc": _pyc(0)}, "timestamp pyc"),
        ({"core/x.py": b"", "core/__pycache__/x.cpython-312.pyc": _pyc(1, b"\xa7\r\r\n")}, "not Python 3.12"),
        ({"core/x.py": b"", "core/__pycache__/x.cpython-311.pyc": _pyc(1)}, "another Python"),
        ({"core/__pycache__/gone.cpython-312.pyc": _pyc(1)}, "without its source"),
    ],
    ids=["timestamp", "magic", "cp311", "orphan"],
)
def test_bytecode_problems_unusable_pyc_reported(tmp_path: Path, files: dict[str, bytes], expected: str) -> None:
    problems = bytecode_problems(_artifact(tmp_path, files), required=False)

    assert len(problems) == 1
    assert expected in problems[0], problems


def test_bytecode_problems_required_source_without_bytecode_reported(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, {"core/x.py": b"", "core/y.py": b"", "core/__pycache__/x.cpython-312.pyc": _pyc(1)})

    assert bytecode_problems(artifact, required=True) == [
        "core/__init__.py: no Python 3.12 bytecode",
        "core/y.py: no Python 3.12 bytecode",
    ]


_HANDLER = {"handler": "api/h.handler"}
_STRIPE_AT_IMPORT = b"import stripe\n\ndef handler(event, context):\n    return stripe.VERSION\n"
_STRIPE_IN_GETTER = b"def get_gateway():\n    import stripe\n\n    return stripe\n"


def test_import_problems_extra_imported_and_carried_accepted(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, {"api/__init__.py": b"", "api/h.py": _STRIPE_AT_IMPORT}, {"stripe": "requests"})

    assert import_problems("fn", _HANDLER, _artifact_with_requests(artifact)) == []


def _artifact_with_requests(artifact: Path) -> Path:
    with zipfile.ZipFile(artifact, "a") as archive:
        archive.writestr("requests/__init__.py", "")
        archive.writestr("requests-1.0.dist-info/RECORD", "requests/__init__.py,,\n")
        archive.writestr("requests-1.0.dist-info/METADATA", "Name: requests\n\n")
    return artifact


@pytest.mark.parametrize(
    ("handler_source", "expected"),
    [
        (_STRIPE_AT_IMPORT, "fn: imports stripe, which its zip does not carry (add `dependencies: [stripe]`)"),
        (
            b"from core.gateway import get_gateway\n\ndef handler(event, context):\n    return get_gateway()\n",
            "fn: imports stripe lazily, which its zip does not carry (add `dependencies: [stripe]`)",
        ),
        (b"import api.gone\n\ndef handler(event, context):\n    pass\n", "fn: api.h imports api.gone, which its zip"),
    ],
    ids=["at-import", "lazily-in-a-getter-it-calls", "our-module-left-out"],
)
def test_import_problems_missing_dependency_reported(tmp_path: Path, handler_source: bytes, expected: str) -> None:
    files = {"api/__init__.py": b"", "api/h.py": handler_source, "core/gateway.py": _STRIPE_IN_GETTER}

    problems = import_problems("fn", _HANDLER, _artifact(tmp_path, files))

    assert len(problems) == 1
    assert problems[0].startswith(expected), problems


def test_import_problems_module_imported_by_a_name_held_in_a_variable_is_followed(tmp_path: Path) -> None:
    # As core.channels.channel_class imports a channel's module from CHANNEL_MODULES: the handler renders through it.
    files = {
        "api/__init__.py": b"",
        "api/h.py": b"from core.registry import load\n\ndef handler(event, context):\n    return load('pay')\n",
        "core/registry.py": (
            b"from importlib import import_module\n\n"
            b"MODULES = {'pay': 'core.gateway', 'gone': 'core.not_shipped'}\n\n"
            b"def load(kind):\n    return import_module(MODULES[kind]).get_gateway()\n"
        ),
        "core/gateway.py": _STRIPE_IN_GETTER,
    }

    problems = import_problems("fn", _HANDLER, _artifact(tmp_path, files))

    assert problems == ["fn: imports stripe lazily, which its zip does not carry (add `dependencies: [stripe]`)"]


def test_import_closure_publish_follows_the_channels_it_renders(packaged: PackagedService) -> None:
    closure = import_closure(Artifact(packaged.artifacts["publish"]), packaged.functions["publish"]["handler"])

    assert {f"core.channels.{name}" for name in ("email", "slack", "telegram", "webhook", "push")} <= closure.ours


def test_import_problems_extra_never_imported_reported(tmp_path: Path) -> None:
    # The getter that imports stripe sits in a module the handler imports, but nothing it runs calls it.
    files = {
        "api/__init__.py": b"",
        "api/h.py": b"import core.gateway\n\ndef handler(event, context):\n    return 1\n",
        "core/gateway.py": _STRIPE_IN_GETTER,
    }

    problems = import_problems("fn", _HANDLER, _artifact(tmp_path, files, {"psycopg2-binary": "", "stripe": ""}))

    assert problems == [
        "fn: carries psycopg2-binary but never imports it (remove it from its `dependencies`)",
        "fn: carries stripe but never imports it (remove it from its `dependencies`)",
    ]


def test_import_problems_name_only_assigned_does_not_run_a_function_of_that_name(tmp_path: Path) -> None:
    # As api.audience's store getter ``schedules()`` beside core.audience.schedules' field ``schedules: list[...]``:
    # a field or variable of that name is assigned, never read, and calls nothing.
    files = {
        "api/__init__.py": b"",
        "api/h.py": b"import api.other\nfrom core.model import Page\n\ndef handler(event, context):\n    return Page\n",
        "api/other.py": b"from core.gateway import get_gateway\n\ndef gateway():\n    return get_gateway()\n",
        "core/model.py": b"class Page:\n    gateway: list[str]\n\nlast = gateway = None\n",
        "core/gateway.py": _STRIPE_IN_GETTER,
    }

    assert import_problems("fn", _HANDLER, _artifact(tmp_path, files)) == []

    # Read, the name may call it: followed.
    files["api/h.py"] = files["api/h.py"].replace(b"return Page", b"return Page.gateway")
    assert import_problems("fn", _HANDLER, _artifact(tmp_path, files)) == [
        "fn: imports stripe lazily, which its zip does not carry (add `dependencies: [stripe]`)"
    ]


def test_import_problems_requirement_of_a_carried_distribution_missing_reported(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, {"api/__init__.py": b"", "api/h.py": _STRIPE_AT_IMPORT}, {"stripe": "requests"})

    assert import_problems("fn", _HANDLER, artifact) == ["fn: needs requests, which its zip does not carry"]


def test_import_problems_handler_left_out_reported(tmp_path: Path) -> None:
    problems = import_problems("fn", _HANDLER, _artifact(tmp_path, {}))

    assert problems == ["fn: its handler module api.h is not in its zip (package.patterns)"]


def test_package_artifacts_packaged_ci_stage_accepted(packaged: PackagedService) -> None:
    # Where packaging found a Python 3.12 (this machine's pyenv has one), every module must ship its bytecode.
    problems = package_artifact_problems(packaged, require_bytecode=runtime_python() is not None)

    assert problems == {"artifact contents": [], "bytecode": [], "imports": []}


def test_package_artifacts_stripe_rides_only_with_its_importers(packaged: PackagedService) -> None:
    carriers = {key for key, path in packaged.artifacts.items() if "stripe" in Artifact(path).distributions}

    assert carriers == {
        key for key, function in packaged.functions.items() if "stripe" in function.get("dependencies", [])
    }
    assert not carriers & {"publish", "api", "realtimeTokens", "websocket", "adminAuthorizer", "deliver"}


def test_package_artifacts_each_function_zips_its_own_folder_only(packaged: PackagedService) -> None:
    with zipfile.ZipFile(packaged.artifacts["deliver"]) as archive:
        tops = {name.split("/", 1)[0] for name in archive.namelist()}

    assert {"core", "consumer", "pydantic", "aws_lambda_powertools"} <= tops
    assert not tops & {"api", "producer", "tests", "bench", "infra", "boto3", "botocore", "stripe", "psycopg2"}


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


def _functions(**environments: dict[str, Any]) -> dict[str, Any]:
    resources = {
        logical_id: {"Type": "AWS::Lambda::Function", "Properties": {"Environment": {"Variables": variables}}}
        for logical_id, variables in environments.items()
    }
    return {"Resources": resources}


@pytest.mark.parametrize("value", ["true", "True", " 1", {"Ref": "AllowPrivateTargets"}], ids=str)
def test_private_target_problems_switch_on_in_another_stage_reported(value: Any) -> None:
    template = _functions(DeliverLambdaFunction={"ALLOW_PRIVATE_TARGETS": value})

    problems = private_target_problems(template, "prod")

    assert len(problems) == 1
    assert problems[0].startswith("DeliverLambdaFunction: ALLOW_PRIVATE_TARGETS=")
    assert problems[0].endswith("in stage 'prod' (only the local stage may allow private targets)")


@pytest.mark.parametrize(
    ("stage", "value"),
    [("local", "true"), ("prod", "false"), ("prod", "0"), ("prod", None)],
    ids=["local", "off", "zero", "unset"],
)
def test_private_target_problems_local_stage_or_switch_off_accepted(stage: str, value: str | None) -> None:
    variables = {} if value is None else {"ALLOW_PRIVATE_TARGETS": value}

    assert private_target_problems(_functions(DeliverLambdaFunction=variables), stage) == []


def test_private_target_problems_local_stack_marker_reported() -> None:
    template = _functions(DeliverLambdaFunction={"NOTIFY_LOCAL_STACK": "1"})

    assert private_target_problems(template, "local") != []


def _repackaged(packaged: PackagedService, tmp_path: Path, template: dict[str, Any]) -> PackagedService:
    """The packaged ci stage with ``template`` as its stack template."""
    (tmp_path / "cloudformation-template-update-stack.json").write_text(json.dumps(template))
    (tmp_path / "serverless-state.json").write_text((packaged.directory / "serverless-state.json").read_text())
    return PackagedService(tmp_path)


def _variant(packaged: PackagedService, tmp_path: Path, function: str, **variables: str | None) -> PackagedService:
    """The packaged ci stage with some of one function's variables changed (``None``: removed)."""
    template = copy.deepcopy(packaged.template)
    environment = template["Resources"][function]["Properties"]["Environment"]["Variables"]
    for name, value in variables.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return _repackaged(packaged, tmp_path, template)


def test_settings_problems_packaged_ci_stage_accepted(packaged: PackagedService) -> None:
    assert settings_problems(packaged) == []


@pytest.mark.parametrize(
    ("function", "variable"),
    [
        ("DeliverLambdaFunction", "PACING_TABLE"),
        ("PublishLambdaFunction", "IDEMPOTENCY_TABLE"),
        ("ApiLambdaFunction", "DEAD_LETTER_QUEUE_URL"),
        ("AdminAuthorizerLambdaFunction", "ADMIN_TOKEN_HASH_PARAMETER"),
    ],
)
def test_settings_problems_variable_missing_reported_naming_it(
    packaged: PackagedService, tmp_path: Path, function: str, variable: str
) -> None:
    problems = settings_problems(_variant(packaged, tmp_path, function, **{variable: None}))

    assert len(problems) == 1
    assert f"{variable} is not set" in problems[0]


def test_settings_problems_private_targets_refused_as_in_lambda(packaged: PackagedService, tmp_path: Path) -> None:
    problems = settings_problems(_variant(packaged, tmp_path, "DeliverLambdaFunction", ALLOW_PRIVATE_TARGETS="true"))

    assert len(problems) == 1
    assert "ALLOW_PRIVATE_TARGETS=true is refused inside Lambda" in problems[0]


def _authorizer(ttl: int | None, cache: str | None) -> dict[str, Any]:
    variables = {} if cache is None else {"ADMIN_TOKEN_CACHE_SECONDS": cache}
    template = _functions(AdminAuthorizerLambdaFunction=variables)
    properties: dict[str, Any] = {
        "AuthorizerUri": {"Fn::Join": ["", ["arn:", {"Fn::GetAtt": ["AdminAuthorizerLambdaFunction", "Arn"]}]]}
    }
    if ttl is not None:
        properties["AuthorizerResultTtlInSeconds"] = ttl
    template["Resources"]["Authorizer"] = {"Type": "AWS::ApiGateway::Authorizer", "Properties": properties}
    return template


@pytest.mark.parametrize(
    ("ttl", "cache"), [(30, "30"), (0, "30"), (60, "0"), (30, None)], ids=["30+30", "0+30", "60+0", "30+default"]
)
def test_admin_token_window_problems_within_60_seconds_accepted(ttl: int, cache: str | None) -> None:
    assert admin_token_window_problems(_authorizer(ttl, cache)) == []


@pytest.mark.parametrize(
    ("ttl", "cache"), [(300, "30"), (30, "31"), (None, "0"), (30, "soon")], ids=["300+30", "30+31", "default", "nan"]
)
def test_admin_token_window_problems_over_60_seconds_reported(ttl: int | None, cache: str) -> None:
    assert len(admin_token_window_problems(_authorizer(ttl, cache))) == 1


def _fake_python(path: Path, version: str) -> None:
    path.parent.mkdir(parents=True)
    path.write_text(f"#!/bin/sh\necho {version == '3.12'}\n")
    path.chmod(0o755)


@pytest.fixture
def pyenv_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine whose only Pythons are those a test puts in the returned pyenv ``versions`` directory: this
    interpreter is never the one, PATH has none, and uv has none."""
    monkeypatch.setattr(dependencies, "RUNTIME_PYTHON", (0, 0))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("PYTHON312", raising=False)
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(tmp_path / "uv"))
    return tmp_path / "pyenv" / "versions"


def test_runtime_python_found_in_pyenv_when_not_on_path(pyenv_versions: Path) -> None:
    _fake_python(pyenv_versions / "3.11.7/bin/python3.11", "3.11")
    _fake_python(pyenv_versions / "3.12.1/bin/python3.12", "3.12")

    assert runtime_python() == str(pyenv_versions / "3.12.1/bin/python3.12")


def test_runtime_python_none_when_no_312_anywhere(pyenv_versions: Path) -> None:
    # A 3.12 directory whose interpreter is not 3.12 (a broken install) is probed and refused.
    _fake_python(pyenv_versions / "3.12.0/bin/python3.12", "3.11")

    assert runtime_python() is None


def test_runtime_python_takes_the_newest_312_by_version_not_by_name(pyenv_versions: Path) -> None:
    for version in ("3.12.9", "3.12.10"):
        _fake_python(pyenv_versions / f"{version}/bin/python3.12", "3.12")

    assert runtime_python() == str(pyenv_versions / "3.12.10/bin/python3.12")


def test_tracing_problems_packaged_ci_stage_accepted(packaged: PackagedService) -> None:
    assert tracing_problems(packaged.template) == []


def test_tracing_problems_name_a_traced_function_whose_role_cannot_write_segments(packaged: PackagedService) -> None:
    template = copy.deepcopy(packaged.template)
    role = template["Resources"]["AdminAuthorizerRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    role["Statement"] = [statement for statement in role["Statement"] if statement.get("Sid") != "Tracing"]

    assert tracing_problems(template) == [
        "AdminAuthorizerLambdaFunction: traced, but its role does not allow xray:PutTraceSegments,"
        " xray:PutTelemetryRecords"
    ]


def test_event_source_problems_packaged_ci_stage_accepted(packaged: PackagedService) -> None:
    assert event_source_problems(packaged.template) == []


def test_event_source_problems_name_a_queue_hidden_for_less_than_its_consumer_runs(packaged: PackagedService) -> None:
    template = copy.deepcopy(packaged.template)
    template["Resources"]["DeliverLambdaFunction"]["Properties"]["Timeout"] = 200

    assert event_source_problems(template) == [
        "DeliverEventSourceMappingSQSDeliveryQueue: DeliveryQueue's VisibilityTimeout 180 s is shorter than"
        " DeliverLambdaFunction's timeout 200 s (Lambda refuses the mapping)"
    ]


@pytest.mark.parametrize(
    ("resource", "value", "expected"),
    [
        (
            ("DeliverLambdaFunction", "Timeout"),
            31,
            "DeliverEventSourceMappingSQSDeliveryQueue: DeliveryQueue's VisibilityTimeout 180 s is less than 6x"
            " DeliverLambdaFunction's timeout 31 s, as AWS advises: a message shows again while still handled",
        ),
        (
            ("ExpansionQueue", "VisibilityTimeout"),
            900,
            "ExpandEventSourceMappingSQSExpansionQueue: ExpansionQueue's VisibilityTimeout 900 s is less than 6x"
            " ExpandLambdaFunction's timeout 900 s, as AWS advises: a message shows again while still handled",
        ),
    ],
    ids=["deliver-31s", "expansion-queue-900s"],
)
def test_event_source_problems_name_a_queue_hidden_for_less_than_six_consumer_timeouts(
    packaged: PackagedService, resource: tuple[str, str], value: int, expected: str
) -> None:
    # Lambda takes the mapping, but a message whose invocation starts late shows again while it is still handled.
    template = copy.deepcopy(packaged.template)
    logical_id, name = resource
    template["Resources"][logical_id]["Properties"][name] = value

    assert event_source_problems(template) == [expected]


@pytest.mark.parametrize(
    ("batch", "window", "expected"),
    [
        (20, 0, "a BatchSize of 20 needs a MaximumBatchingWindowInSeconds of at least 1"),
        (10_001, 5, "BatchSize 10001 is over 10000"),
    ],
    ids=["batch-over-10-without-window", "batch-over-10000"],
)
def test_event_source_problems_name_a_batch_lambda_refuses(
    packaged: PackagedService, batch: int, window: int, expected: str
) -> None:
    # consumerBatchSize and consumerBatchWindow are params: moto takes any; Lambda refuses these mappings.
    template = copy.deepcopy(packaged.template)
    mapping = template["Resources"]["DeliverEventSourceMappingSQSDeliveryQueue"]["Properties"]
    mapping.update(BatchSize=batch, MaximumBatchingWindowInSeconds=window)

    assert event_source_problems(template) == [
        f"DeliverEventSourceMappingSQSDeliveryQueue: {expected} (Lambda refuses the mapping)"
    ]


def test_consumer_timeout_problems_packaged_ci_stage_accepted(packaged: PackagedService) -> None:
    assert consumer_timeout_problems(packaged) == []


def _deliver_timeout(packaged: PackagedService, tmp_path: Path, timeout: int) -> PackagedService:
    """The packaged ci stage with the deliver function's timeout changed."""
    template = copy.deepcopy(packaged.template)
    template["Resources"]["DeliverLambdaFunction"]["Properties"]["Timeout"] = timeout
    return _repackaged(packaged, tmp_path, template)


def test_consumer_timeout_problems_name_a_deliver_timeout_leaving_no_time_to_send(
    packaged: PackagedService, tmp_path: Path
) -> None:
    # The consumer starts no send in an invocation's last 15.05 s (3.05 + 10 s, the longest send, and 2 s): at 20 s,
    # every message waiting for a slot or after a slow one went back to the queue, for ever, no attempt counted.
    assert consumer_timeout_problems(_deliver_timeout(packaged, tmp_path, 20)) == [
        "DeliverLambdaFunction: its timeout 20 s leaves under 5 s to send: the consumer starts no send in an"
        " invocation's last 15.05 s (consumerTimeout must be at least 21)"
    ]


def test_consumer_timeout_problems_deliver_timeout_of_the_minimum_accepted(
    packaged: PackagedService, tmp_path: Path
) -> None:
    assert consumer_timeout_problems(_deliver_timeout(packaged, tmp_path, 21)) == []


def test_consumer_timeout_problems_longer_http_timeouts_raise_the_minimum(
    packaged: PackagedService, tmp_path: Path
) -> None:
    problems = consumer_timeout_problems(_variant(packaged, tmp_path, "DeliverLambdaFunction", HTTP_READ_TIMEOUT="20"))

    assert problems == [
        "DeliverLambdaFunction: its timeout 30 s leaves under 5 s to send: the consumer starts no send in an"
        " invocation's last 25.05 s (consumerTimeout must be at least 31)"
    ]


def test_secret_reference_problems_name_a_secrets_manager_read_its_role_cannot_make(packaged: PackagedService) -> None:
    template = copy.deepcopy(packaged.template)
    cron = template["Resources"]["CronLambdaFunction"]["Properties"]
    cron["Environment"]["Variables"]["DATABASE_SECRET_PARAMETER"] = "/aws/reference/secretsmanager/notify-db"

    assert secret_reference_problems(packaged.template) == []
    assert secret_reference_problems(template) == [
        "CronLambdaFunction: DATABASE_SECRET_PARAMETER reads a Secrets Manager secret, but its role does not allow"
        " secretsmanager:GetSecretValue on it (add it, and kms:Decrypt for a customer key)"
    ]
    document = template["Resources"]["CronRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    document["Statement"].append({"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "x"})
    assert secret_reference_problems(template) == []


def test_api_resource_problems_name_two_variables_side_by_side(packaged: PackagedService) -> None:
    template = copy.deepcopy(packaged.template)
    template["Resources"]["ExtraVar"] = {
        "Type": "AWS::ApiGateway::Resource",
        "Properties": {"ParentId": {"Ref": "ApiGatewayResourceV1Notifications"}, "PathPart": "{notification_id}"},
    }

    assert api_resource_problems(packaged.template) == []
    assert api_resource_problems(template) == [
        '{"Ref": "ApiGatewayResourceV1Notifications"}: variable path parts {channel}, {notification_id} side by side'
        " (API Gateway takes one per level)"
    ]


def test_invoke_permission_problems_name_a_service_grant_without_source_arn(packaged: PackagedService) -> None:
    # osls wrote the WebSocket API's grant with no SourceArn: any account's API naming the function could invoke it.
    template = copy.deepcopy(packaged.template)
    del template["Resources"]["WebsocketLambdaPermissionWebsockets"]["Properties"]["SourceArn"]

    assert invoke_permission_problems(packaged.template) == []
    assert invoke_permission_problems(template) == [
        "WebsocketLambdaPermissionWebsockets: lets apigateway.amazonaws.com invoke the function from any of its"
        " resources"
    ]


def test_version_problems_name_each_version_the_stack_would_keep(packaged: PackagedService) -> None:
    template = copy.deepcopy(packaged.template)
    template["Resources"]["DeliverLambdaVersionX"] = {"Type": "AWS::Lambda::Version", "DeletionPolicy": "Retain"}

    assert version_problems(packaged.template) == []
    assert version_problems(template) == ["DeliverLambdaVersionX: a function version, kept for good on every deploy"]
