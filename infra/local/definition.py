"""The resolved service definition: ``osls package`` output read into functions, their settings and their events.

Nothing here lists functions or routes by hand: a function added to ``serverless.yml`` appears here by itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.local.config import LocalConfig
from infra.local.iam import Place, RoleNotPlayed, role_statements

STATE_FILE = "serverless-state.json"
TEMPLATE_FILE = "cloudformation-template-update-stack.json"
_KEY_FILE = ".local-package-key"
# The REST API osls creates for the http events: the gateway responses the local gateway plays are this API's.
REST_API_LOGICAL_ID = "ApiGatewayRestApi"
# The WebSocket API osls creates for the websocket events, and its default route selection expression.
WEBSOCKET_API_LOGICAL_ID = "WebsocketsApi"
DEFAULT_ROUTE_SELECTION = "$request.body.action"
_REF_PART = re.compile(r'\["((?:[^"\\]|\\.)*)"\]|\[(\d+)\]')


class DefinitionError(Exception):
    """The service definition could not be packaged or read."""


@dataclass(frozen=True)
class Authorizer:
    """An API Gateway Lambda authorizer of an http event."""

    function: str
    type: str = "token"
    identity_source: str = "method.request.header.Authorization"
    ttl_seconds: int = 300
    validation_expression: str | None = None


@dataclass(frozen=True)
class HttpEvent:
    """An API Gateway REST route, proxied to a function."""

    function: str
    method: str
    path: str
    private: bool = False
    authorizer: Authorizer | None = None


@dataclass(frozen=True)
class SqsEvent:
    """An SQS event source mapping."""

    function: str
    arn: Any
    batch_size: int = 10
    batching_window: float = 0.0
    report_failures: bool = False
    enabled: bool = True


@dataclass(frozen=True)
class SnsEvent:
    """An SNS subscription that invokes a function."""

    function: str
    topic_arn: Any
    topic_name: str | None = None
    filter_policy: dict[str, Any] | None = None
    filter_policy_scope: str | None = None


@dataclass(frozen=True)
class ScheduleEvent:
    """An EventBridge schedule (``rate()`` or ``cron()``) that invokes a function."""

    function: str
    expression: str
    enabled: bool = True
    input: Any = None


@dataclass(frozen=True)
class WebsocketEvent:
    """A route of the WebSocket API (``$connect``, ``$disconnect``, ``$default`` or a selected action).

    ``route_response`` says the route has a route response (``routeResponseSelectionExpression``): API Gateway sends
    what the function answers back to the client.
    """

    function: str
    route: str
    route_response: bool = False


@dataclass(frozen=True)
class GatewayResponse:
    """A customized API Gateway answer to a refused request (``AWS::ApiGateway::GatewayResponse`` of the REST API).

    ``status_code`` is ``None`` when the resource keeps API Gateway's; ``headers`` holds the static header values
    (``'value'`` mappings); ``templates`` maps a content type to its body template.
    """

    type: str
    status_code: int | None = None
    templates: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FunctionSpec:
    """One function as deployed: its handler, limits and environment (values may still be CloudFormation intrinsics)."""

    key: str
    name: str
    logical_id: str
    handler: str
    timeout: int
    memory: int
    environment: dict[str, Any]
    # Asynchronous invocation (SNS, EventBridge): retries after a failed invoke (Lambda's default is 2) and where the
    # event goes once they are spent (an SQS queue's ARN, maybe an intrinsic); None: dropped, as Lambda drops it.
    async_retries: int = 2
    on_failure: Any = None
    # Its role's Allow statements, resources resolved (infra/local/iam.py plays the role); None: not in the template.
    role_statements: list[dict[str, Any]] | None = None


@dataclass
class ServiceDefinition:
    """Everything the local stack plays, read from the packaged definition."""

    service: str
    stage: str
    region: str
    template: dict[str, Any]
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    http: list[HttpEvent] = field(default_factory=list)
    sqs: list[SqsEvent] = field(default_factory=list)
    sns: list[SnsEvent] = field(default_factory=list)
    schedules: list[ScheduleEvent] = field(default_factory=list)
    gateway_responses: dict[str, GatewayResponse] = field(default_factory=dict)
    websocket: list[WebsocketEvent] = field(default_factory=list)
    websocket_route_selection: str = DEFAULT_ROUTE_SELECTION
    unplayed: list[str] = field(default_factory=list)


def resolve_state_refs(value: Any, root: Any) -> Any:
    """Replace the ``{"$ref": "$[\"a\"][0]…"}`` pointers osls writes for repeated objects by what they point at."""
    if isinstance(value, dict):
        if set(value) == {"$ref"} and isinstance(value["$ref"], str) and value["$ref"].startswith("$"):
            target = root
            for name, index in _REF_PART.findall(value["$ref"][1:]):
                target = target[int(index)] if index else target[json.loads(f'"{name}"')]
            return resolve_state_refs(target, root)
        return {key: resolve_state_refs(item, root) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_state_refs(item, root) for item in value]
    return value


def _definition_files(root: Path) -> list[Path]:
    files = [root / "serverless.yml", root / "package-lock.json"]
    for pattern in ("*.yml", "*.yaml", "*.json"):
        files.extend(sorted((root / "infra").rglob(pattern)))
    return [path for path in files if path.is_file() and "local" not in path.relative_to(root).parts[:2]]


def package_key(config: LocalConfig) -> str:
    """Return a digest of what the package depends on: the definition files, the stage and the params."""
    digest = hashlib.sha256()
    for path in _definition_files(config.root):
        digest.update(str(path.relative_to(config.root)).encode())
        digest.update(path.read_bytes())
    digest.update(json.dumps([config.stage, config.region, config.package_params()], sort_keys=True).encode())
    return digest.hexdigest()


def package(config: LocalConfig, osls: Path) -> tuple[Path, bool]:
    """Run ``osls package --stage local`` into ``.local/serverless`` unless its output is current; return (dir, ran)."""
    out = config.state_dir / "serverless"
    key = package_key(config)
    key_file = out / _KEY_FILE
    if key_file.is_file() and key_file.read_text() == key and (out / STATE_FILE).is_file():
        return out, False
    command = [str(osls), "package", "--stage", config.stage, "--region", config.region, "--package", str(out)]
    command += [f"--param={name}={value}" for name, value in sorted(config.package_params().items())]
    # No AWS account is involved: fake credentials keep osls from looking for real ones.
    env = {
        **os.environ,
        "SLS_TELEMETRY_DISABLED": "1",
        "SLS_NOTIFICATIONS_MODE": "off",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_SESSION_TOKEN": "local",
    }
    env.pop("AWS_PROFILE", None)
    done = subprocess.run(command, cwd=config.root, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-5:]
        raise DefinitionError("osls package failed: " + " | ".join(line.strip() for line in detail))
    key_file.write_text(key)
    return out, True


def _authorizer(raw: Any, functions: dict[str, FunctionSpec], by_logical: dict[str, str]) -> Authorizer | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"name": raw.rsplit(":", 1)[-1]}
    target: str | None = None
    arn = raw.get("arn")
    if isinstance(arn, dict) and "Fn::GetAtt" in arn:
        target = by_logical.get(arn["Fn::GetAtt"][0])
    elif isinstance(arn, str):
        target = next((key for key, spec in functions.items() if arn.endswith(f":function:{spec.name}")), None)
    if target is None and raw.get("name") in functions:
        target = raw["name"]
    if target is None:
        raise DefinitionError(f"authorizer {raw.get('name') or arn!r} is not a function of this service")
    return Authorizer(
        function=target,
        type=str(raw.get("type") or "token").lower(),
        identity_source=str(raw.get("identitySource") or "method.request.header.Authorization"),
        ttl_seconds=int(raw.get("resultTtlInSeconds", 300)),
        validation_expression=raw.get("identityValidationExpression"),
    )


def _sns_event(key: str, raw: Any, region: str, account: str) -> SnsEvent:
    if isinstance(raw, str):
        if raw.startswith("arn:"):
            return SnsEvent(key, raw, raw.rsplit(":", 1)[-1])
        return SnsEvent(key, f"arn:aws:sns:{region}:{account}:{raw}", raw)
    name = raw.get("topicName")
    arn = raw.get("arn") or f"arn:aws:sns:{region}:{account}:{name}"
    return SnsEvent(key, arn, name, raw.get("filterPolicy"), raw.get("filterPolicyScope"))


def _schedule_events(key: str, raw: Any) -> list[ScheduleEvent]:
    if isinstance(raw, str):
        return [ScheduleEvent(key, raw)]
    rates = raw.get("rate")
    rates = rates if isinstance(rates, list) else [rates]
    enabled = raw.get("enabled", True) not in {False, "false"}
    return [ScheduleEvent(key, rate, enabled, raw.get("input")) for rate in rates if rate]


def gateway_responses(template: dict[str, Any], unplayed: list[str] | None = None) -> dict[str, GatewayResponse]:
    """Return the REST API's gateway responses by type; header mappings other than static values go to ``unplayed``."""
    responses: dict[str, GatewayResponse] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::ApiGateway::GatewayResponse":
            continue
        props = resource.get("Properties") or {}
        if props.get("RestApiId") != {"Ref": REST_API_LOGICAL_ID}:
            continue
        kind = str(props.get("ResponseType") or "")
        status = props.get("StatusCode")
        if not kind or (status is not None and not str(status).isdigit()):
            raise DefinitionError(f"gateway response {logical_id}: ResponseType {kind!r}, StatusCode {status!r}")
        headers: dict[str, str] = {}
        for name, value in (props.get("ResponseParameters") or {}).items():
            header = str(name).removeprefix("gatewayresponse.header.")
            text = str(value)
            if header != name and len(text) >= 2 and text[0] == text[-1] == "'":
                headers[header] = text[1:-1]
            elif unplayed is not None:
                unplayed.append(f"gateway response {kind}: {name} = {text}")
        responses[kind] = GatewayResponse(
            type=kind,
            status_code=None if status is None else int(status),
            templates={str(key): str(value) for key, value in (props.get("ResponseTemplates") or {}).items()},
            headers=headers,
        )
    return responses


def _played_role(definition: ServiceDefinition, key: str, role: Any, account: str) -> list[dict[str, Any]] | None:
    """Return the statements of a function's role the worker plays, or ``None``: it has none (osls gives every
    function one), or one it cannot play (listed as unplayed)."""
    if role is None:
        return None
    try:
        return role_statements(definition.template, role, Place(definition.region, account))
    except RoleNotPlayed as exc:
        definition.unplayed.append(f"{key}: its IAM role ({exc}; its AWS calls are not checked)")
        return None


def load(directory: Path, account: str) -> ServiceDefinition:
    """Read the packaged definition in ``directory`` into a ``ServiceDefinition``."""
    try:
        state = json.loads((directory / STATE_FILE).read_text())
        template = json.loads((directory / TEMPLATE_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise DefinitionError(f"cannot read the packaged definition in {directory}: {exc}") from exc
    service = resolve_state_refs(state["service"], state)
    provider = service["provider"]
    definition = ServiceDefinition(
        service=service["service"],
        stage=provider.get("stage", "local"),
        region=provider.get("region", "us-east-1"),
        template=template,
        websocket_route_selection=str(provider.get("websocketsApiRouteSelectionExpression") or DEFAULT_ROUTE_SELECTION),
    )
    definition.gateway_responses = gateway_responses(template, definition.unplayed)
    lambdas = {
        resource["Properties"]["FunctionName"]: (logical_id, resource["Properties"])
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::Lambda::Function"
    }
    invoke_configs = {
        resource["Properties"]["FunctionName"].get("Ref"): resource["Properties"]
        for resource in template.get("Resources", {}).values()
        if resource.get("Type") == "AWS::Lambda::EventInvokeConfig"
        and isinstance(resource.get("Properties", {}).get("FunctionName"), dict)
    }
    by_logical: dict[str, str] = {}
    for key, raw in (service.get("functions") or {}).items():
        if key not in lambdas and raw.get("name") not in lambdas:
            continue
        logical_id, props = lambdas[raw.get("name", key)]
        by_logical[logical_id] = key
        invoke = invoke_configs.get(logical_id) or {}
        definition.functions[key] = FunctionSpec(
            key=key,
            name=props["FunctionName"],
            logical_id=logical_id,
            handler=props["Handler"],
            timeout=int(props.get("Timeout", 6)),
            memory=int(props.get("MemorySize", 1024)),
            environment=dict((props.get("Environment") or {}).get("Variables") or {}),
            async_retries=int(invoke.get("MaximumRetryAttempts", 2)),
            on_failure=((invoke.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination"),
            role_statements=_played_role(definition, key, props.get("Role"), account),
        )
    for key, raw in (service.get("functions") or {}).items():
        if key not in definition.functions:
            continue
        for event in raw.get("events") or []:
            kind, body = next(iter(event.items()))
            if kind == "http":
                body = {"path": body.split()[1], "method": body.split()[0]} if isinstance(body, str) else body
                definition.http.append(
                    HttpEvent(
                        function=key,
                        method=str(body["method"]).upper(),
                        path="/" + str(body["path"]).strip("/"),
                        private=bool(body.get("private", False)),
                        authorizer=_authorizer(body.get("authorizer"), definition.functions, by_logical),
                    )
                )
            elif kind == "sqs":
                body = {"arn": body} if isinstance(body, str) else body
                definition.sqs.append(
                    SqsEvent(
                        function=key,
                        arn=body["arn"],
                        batch_size=int(body.get("batchSize", 10)),
                        batching_window=float(body.get("maximumBatchingWindow", 0)),
                        report_failures=body.get("functionResponseType") == "ReportBatchItemFailures",
                        enabled=body.get("enabled", True) not in {False, "false"},
                    )
                )
            elif kind == "sns":
                definition.sns.append(_sns_event(key, body, definition.region, account))
            elif kind == "schedule":
                definition.schedules.extend(_schedule_events(key, body))
            elif kind == "websocket":
                body = {"route": body} if isinstance(body, str) else body
                definition.websocket.append(
                    WebsocketEvent(key, str(body["route"]), bool(body.get("routeResponseSelectionExpression")))
                )
            else:
                definition.unplayed.append(f"{key}: {kind}")
    return definition
