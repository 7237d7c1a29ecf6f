"""The function's role, played: an AWS call its role's policies do not allow is refused, as IAM refuses it in AWS.

moto answers every call whatever the caller may do, so a function whose role lacks an action works here and fails
once deployed (moto's own IAM checks match a statement's resource against ``*`` for most services, so they refuse
everything a least-privilege role allows). Here each worker gets the Allow statements of its function's role in the
packaged template (``LOCAL_ROLE_STATEMENTS``), their resources resolved to ARNs where the template names them (tables,
queues, topics, parameter paths; ``*`` where it cannot tell, the API's own ids among them), and refuses a call no
statement allows: its action, and for DynamoDB, SQS, SSM and SNS the ARN it acts on. The worker logs the refusal
(``ROLE_REFUSAL``, which the end-to-end tests look for) and the call raises AWS's ``AccessDenied``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import botocore.client
from botocore.exceptions import ClientError

ROLE_STATEMENTS_VARIABLE = "LOCAL_ROLE_STATEMENTS"
ROLE_REFUSAL = "AWS call refused: the function's role does not allow"
# Batch operations IAM authorizes by the single operation's action.
_BATCH_ACTIONS = {
    "sns:PublishBatch": "sns:Publish",
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
# Calls no policy needs to allow.
_ALWAYS_ALLOWED = frozenset({"sts:GetCallerIdentity"})
# The error code AWS answers a refused call with, by the service's IAM prefix (AccessDeniedException elsewhere).
_DENIED_CODES = {"sqs": "AccessDenied", "sns": "AuthorizationError", "ses": "AccessDenied"}
# What an ARN of each resource type the template names looks like: its service, and the name property.
_ARN_OF_TYPE = {
    "AWS::DynamoDB::Table": ("dynamodb", "TableName", "table/"),
    "AWS::SQS::Queue": ("sqs", "QueueName", ""),
    "AWS::SNS::Topic": ("sns", "TopicName", ""),
}
_SUB_NAME = re.compile(r"\$\{([^}!][^}]*)\}")
# An SSM name that reads a Secrets Manager secret: IAM wants both the parameter and the secret allowed.
_SECRETS_MANAGER_REFERENCE = "/aws/reference/secretsmanager/"
# What the statements of a role the worker cannot play faithfully hold (the stack lists such a role as not played).
_UNPLAYED_KEYS = ("Condition", "NotAction", "NotResource", "NotPrincipal")


class RoleNotPlayed(ValueError):
    """A role whose policies this module cannot evaluate as IAM would; the function then runs unguarded."""


_log = logging.getLogger("lambda.runtime")


@dataclass(frozen=True)
class Place:
    """Where the local stack plays AWS: the region and account ARNs name."""

    region: str
    account: str

    def arn(self, service: str, resource: str) -> str:
        """Return the ARN of ``resource`` of ``service`` here."""
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"


def _resource_arn(template: Mapping[str, Any], logical_id: str, place: Place) -> str:
    resource = (template.get("Resources") or {}).get(logical_id) or {}
    service, name_property, prefix = _ARN_OF_TYPE.get(resource.get("Type", ""), ("", "", ""))
    name = (resource.get("Properties") or {}).get(name_property)
    return place.arn(service, prefix + name) if service and isinstance(name, str) else "*"


def _pseudo(name: str, place: Place) -> str:
    return {"AWS::Partition": "aws", "AWS::Region": place.region, "AWS::AccountId": place.account}.get(name, "*")


def _sub_name(template: Mapping[str, Any], name: str, variables: Mapping[str, Any], place: Place) -> str:
    """Return what ``${name}`` of an ``Fn::Sub`` stands for here: a variable, a pseudo parameter, ``X.Arn``, or
    ``*``."""
    if name in variables:
        return resolve_resource(template, variables[name], place)
    if name.startswith("AWS::"):
        return _pseudo(name, place)
    logical_id, _, attribute = name.partition(".")
    return _resource_arn(template, logical_id, place) if attribute == "Arn" else "*"


def resolve_resource(template: Mapping[str, Any], value: Any, place: Place) -> str:
    """Return a statement's resource as an ARN pattern: ``*`` for any part the template does not tell here."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        return "*"
    [(kind, body)] = value.items()
    if kind == "Fn::Sub":
        text, variables = (body[0], body[1]) if isinstance(body, list) and len(body) == 2 else (body, {})
        if not isinstance(text, str) or not isinstance(variables, dict):
            return "*"
        return _SUB_NAME.sub(lambda match: _sub_name(template, match.group(1), variables, place), text)
    if kind == "Fn::GetAtt":
        target = body if isinstance(body, list) else str(body).split(".", 1)
        return _resource_arn(template, str(target[0]), place) if target[1:] == ["Arn"] else "*"
    if kind == "Ref" and isinstance(body, str):
        if body.startswith("AWS::"):
            return _pseudo(body, place)
        resource = (template.get("Resources") or {}).get(body) or {}
        return _resource_arn(template, body, place) if resource.get("Type") == "AWS::SNS::Topic" else "*"
    if kind == "Fn::Join" and isinstance(body, list) and len(body) == 2 and isinstance(body[1], list):
        return str(body[0]).join(resolve_resource(template, part, place) for part in body[1])
    return "*"


def role_statements(template: Mapping[str, Any], role: Any, place: Place) -> list[dict[str, Any]]:
    """Return the statements of ``role`` (a function's ``Role``: ``Fn::GetAtt`` of a role in ``template``): effect,
    actions and resource patterns.

    Raises
    ------
    RoleNotPlayed
        The role is not one of the template's, takes managed policies or policies of their own resources, or has a
        statement with a condition or a ``Not…`` element: what IAM would decide is not told here.
    """
    target = role.get("Fn::GetAtt") if isinstance(role, dict) else None
    logical_id = (target if isinstance(target, list) else str(target).split(".", 1))[0] if target else None
    resource = (template.get("Resources") or {}).get(logical_id) or {}
    if resource.get("Type") != "AWS::IAM::Role":
        raise RoleNotPlayed("its role is not a role of the template")
    properties = resource.get("Properties") or {}
    attached = [
        other_id
        for other_id, other in (template.get("Resources") or {}).items()
        if other.get("Type") in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}
        and str(logical_id) in json.dumps((other.get("Properties") or {}).get("Roles"))
    ]
    if properties.get("ManagedPolicyArns") or attached:
        raise RoleNotPlayed(f"{logical_id} takes managed or separate policies")
    statements: list[dict[str, Any]] = []
    for policy in properties.get("Policies") or []:
        document = policy.get("PolicyDocument") or {}
        document = json.loads(document) if isinstance(document, str) else document
        for statement in _as_list(document.get("Statement")):
            unplayed = [key for key in _UNPLAYED_KEYS if key in statement]
            if unplayed:
                raise RoleNotPlayed(f"{logical_id} has a statement with {', '.join(unplayed)}")
            statements.append(
                {
                    "effect": str(statement.get("Effect")),
                    "actions": [str(action) for action in _as_list(statement.get("Action"))],
                    "resources": [
                        resolve_resource(template, item, place) for item in _as_list(statement.get("Resource"))
                    ],
                }
            )
    return statements


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def action_of(service_model: Any, operation: str) -> str:
    """Return the IAM action that authorizes ``operation`` of a botocore client's service."""
    prefix = service_model.signing_name or service_model.endpoint_prefix
    if prefix == "execute-api":  # the WebSocket Management API: every operation is ManageConnections
        return "execute-api:ManageConnections"
    action = f"{prefix}:{operation}"
    return _BATCH_ACTIONS.get(action, action)


def _parameter_arn(name: str, place: Place) -> str:
    return place.arn("ssm", "parameter" + (name if name.startswith("/") else "/" + name))


def call_resources(action: str, params: Mapping[str, Any], place: Place) -> list[str] | None:
    """Return the ARNs a call acts on, for the services whose resources are checked; ``None``: its action only."""
    service = action.split(":", 1)[0]
    if service == "dynamodb":
        tables = list(params.get("RequestItems") or {}) or [params.get("TableName")]
        index = params.get("IndexName")
        suffix = f"/index/{index}" if index else ""
        return [place.arn("dynamodb", f"table/{table}{suffix}") for table in tables if isinstance(table, str)]
    if service == "sqs" and isinstance(params.get("QueueUrl"), str):
        return [place.arn("sqs", urlsplit(params["QueueUrl"]).path.rstrip("/").rsplit("/", 1)[-1])]
    if service == "ssm":
        names = params.get("Names") or [params.get("Name")]
        return [_parameter_arn(name, place) for name in names if isinstance(name, str)]
    if service == "sns":
        for key in ("TopicArn", "TargetArn", "EndpointArn", "PlatformApplicationArn"):
            if isinstance(params.get(key), str):
                return [params[key]]
    return None


@cache
def _pattern(granted: str, ignore_case: bool) -> re.Pattern[str]:
    expression = "^" + ".*".join(re.escape(part) for part in granted.split("*")) + "$"
    return re.compile(expression, re.IGNORECASE if ignore_case else 0)


def _covers(statement: Mapping[str, Any], action: str, arn: str | None) -> bool:
    """Whether a statement names ``action`` and, unless ``arn`` is ``None`` (not checked), that resource."""
    if not any(_pattern(granted, True).match(action) for granted in statement["actions"]):
        return False
    return arn is None or any(_pattern(pattern, False).match(arn) for pattern in statement["resources"])


def allows(statements: Iterable[Mapping[str, Any]], action: str, resources: list[str] | None = None) -> bool:
    """Tell whether the statements allow ``action`` (IAM's ``*`` wildcards; actions case-insensitive) on every one of
    ``resources`` (``None``: whatever the resource): an Allow covers each, and no Deny covers any."""
    if action in _ALWAYS_ALLOWED:
        return True
    arns: list[str | None] = list(resources) if resources is not None else [None]
    allow = [statement for statement in statements if statement.get("effect", "Allow") == "Allow"]
    deny = [statement for statement in statements if statement.get("effect") == "Deny"]
    if any(_covers(statement, action, arn) for statement in deny for arn in arns):
        return False
    return all(any(_covers(statement, action, arn) for statement in allow) for arn in arns)


def also_needed(action: str, params: Mapping[str, Any], place: Place) -> list[tuple[str, list[str]]]:
    """Return what else IAM checks for a call: a Secrets Manager secret read through its SSM reference name needs
    ``secretsmanager:GetSecretValue`` on the secret (whose ARN ends in ``-`` and six random characters)."""
    if not action.startswith("ssm:GetParameter"):
        return []
    names = params.get("Names") or [params.get("Name")]
    secrets = [
        place.arn("secretsmanager", f"secret:{name[len(_SECRETS_MANAGER_REFERENCE) :]}-AbCdEf")
        for name in names
        if isinstance(name, str) and name.startswith(_SECRETS_MANAGER_REFERENCE)
    ]
    return [("secretsmanager:GetSecretValue", secrets)] if secrets else []


def refusal(action: str, operation: str, function_name: str) -> ClientError:
    """Return the error AWS raises for a call the caller's policies do not allow."""
    prefix = action.split(":", 1)[0]
    message = (
        f"User: arn:aws:sts::123456789012:assumed-role/{function_name}/{function_name} is not authorized to perform:"
        f" {action} because no identity-based policy allows the {action} action"
    )
    error = {"Code": _DENIED_CODES.get(prefix, "AccessDeniedException"), "Message": message}
    return ClientError({"Error": error}, operation)


def install(environ: Mapping[str, str]) -> None:
    """Refuse, in this process, every AWS call the role in ``LOCAL_ROLE_STATEMENTS`` does not allow; nothing when it
    is not set."""
    raw = environ.get(ROLE_STATEMENTS_VARIABLE)
    if raw is None:
        return
    statements = json.loads(raw)
    function_name = environ.get("AWS_LAMBDA_FUNCTION_NAME", "function")
    place = Place(environ.get("AWS_REGION", "us-east-1"), environ.get("LOCAL_ACCOUNT_ID", "123456789012"))
    make_api_call = botocore.client.BaseClient._make_api_call

    def guarded(self: Any, operation_name: str, api_params: Any) -> Any:
        action = action_of(self.meta.service_model, operation_name)
        needed = [(action, call_resources(action, api_params, place)), *also_needed(action, api_params, place)]
        for wanted, resources in needed:
            if not allows(statements, wanted, resources):
                on = f" on {', '.join(resources)}" if resources else ""
                _log.error(f"{ROLE_REFUSAL} {wanted}{on}", extra={"fields": {"action": wanted, "resources": resources}})
                raise refusal(wanted, operation_name, function_name)
        return make_api_call(self, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = guarded
