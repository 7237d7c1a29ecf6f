"""The service's resources created in moto from the packaged CloudFormation template.

Functions, their API Gateway wiring, permissions and event source mappings are left out: the local stack plays those
itself. What moto's CloudFormation does not model (SNS subscriptions, queue policies, secrets) is created through the
service APIs after the stack, and every intrinsic a function needs (``{Ref: DeliveryQueue}`` …) is resolved by moto,
through stack outputs added for the purpose.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

PLAYED_LOCALLY = ("AWS::Lambda::", "AWS::ApiGateway::")
CREATED_EXPLICITLY = {
    "AWS::SNS::Subscription",
    "AWS::SQS::QueuePolicy",
    "AWS::SecretsManager::Secret",
    "AWS::CloudWatch::Alarm",
}
_ALARM_FIELDS = (
    "AlarmName",
    "AlarmDescription",
    "ActionsEnabled",
    "OKActions",
    "AlarmActions",
    "InsufficientDataActions",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "Period",
    "Unit",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "Metrics",
)
_SUB_NAME = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}")
_OUTPUT_PREFIX = "LocalValue"


class ResourceError(Exception):
    """The stack could not be created in moto."""


def is_intrinsic(value: Any) -> bool:
    """Tell whether a template value is a ``Ref``/``Fn::…`` intrinsic."""
    return (
        isinstance(value, dict)
        and len(value) == 1
        and (next(iter(value)) == "Ref" or next(iter(value)).startswith("Fn::"))
    )


def referenced(value: Any) -> set[str]:
    """Return the logical ids a template value refers to (``Ref``, ``Fn::GetAtt``, ``${…}`` in ``Fn::Sub``)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                target = item[0] if isinstance(item, list) else str(item).split(".", 1)[0]
                found.add(target)
            elif key == "Fn::Sub":
                text = item[0] if isinstance(item, list) else item
                found.update(_SUB_NAME.findall(text))
                if isinstance(item, list) and len(item) > 1:
                    found.update(referenced(item[1]))
                continue
            found.update(referenced(item))
    elif isinstance(value, list):
        for item in value:
            found.update(referenced(item))
    return {name for name in found if not name.startswith("AWS::")}


def _intrinsics(value: Any) -> Iterator[dict[str, Any]]:
    if is_intrinsic(value):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _intrinsics(item)
    elif isinstance(value, list):
        for item in value:
            yield from _intrinsics(item)


def substitute(value: Any, resolved: dict[str, Any]) -> Any:
    """Replace every intrinsic in ``value`` by its resolved value (keyed by its JSON)."""
    if is_intrinsic(value):
        key = json.dumps(value, sort_keys=True)
        if key not in resolved:
            raise ResourceError(f"cannot resolve {key} locally")
        return resolved[key]
    if isinstance(value, dict):
        return {key: substitute(item, resolved) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, resolved) for item in value]
    return value


@dataclass
class PreparedTemplate:
    """The template moto creates, what is created after it, and what nobody plays."""

    template: dict[str, Any]
    explicit: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


def function_values(template: dict[str, Any], region: str, account: str) -> dict[str, Any]:
    """Return what ``Ref`` and ``Fn::GetAtt Arn`` of each Lambda function resolve to (moto does not hold them)."""
    values: dict[str, Any] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") == "AWS::Lambda::Function":
            name = resource["Properties"]["FunctionName"]
            arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
            values[json.dumps({"Ref": logical_id}, sort_keys=True)] = name
            values[json.dumps({"Fn::GetAtt": [logical_id, "Arn"]}, sort_keys=True)] = arn
            values[json.dumps({"Fn::GetAtt": f"{logical_id}.Arn"}, sort_keys=True)] = arn
    return values


def _classify(resources: dict[str, dict[str, Any]], supported: set[str], prepared: PreparedTemplate) -> set[str]:
    """Sort resources into created by moto, created explicitly, played locally or skipped; return the dropped ids."""
    dropped: set[str] = set()
    for logical_id, resource in resources.items():
        kind = resource.get("Type", "")
        props = resource.get("Properties", {})
        if kind == "AWS::SNS::Topic" and props.get("Subscription"):
            # Lambda subscriptions are played by the local stack; other inline subscriptions stay.
            props["Subscription"] = [item for item in props["Subscription"] if item.get("Protocol") != "lambda"]
        lambda_subscription = kind == "AWS::SNS::Subscription" and props.get("Protocol") == "lambda"
        if kind.startswith(PLAYED_LOCALLY) or lambda_subscription:
            dropped.add(logical_id)
        elif kind in CREATED_EXPLICITLY:
            prepared.explicit[logical_id] = resource
            dropped.add(logical_id)
        elif kind not in supported:
            prepared.skipped[logical_id] = kind
            dropped.add(logical_id)
    changed = True
    while changed:  # whatever refers to a dropped resource cannot be created either
        changed = False
        for logical_id, resource in resources.items():
            if logical_id not in dropped and referenced(resource.get("Properties", {})) & dropped:
                if resource.get("Type") != "AWS::Events::Rule":  # a function's schedule, played locally
                    prepared.skipped[logical_id] = resource.get("Type", "")
                dropped.add(logical_id)
                changed = True
    return dropped


def prepare(
    template: dict[str, Any], supported: set[str], wanted: list[Any], known: dict[str, Any] | None = None
) -> PreparedTemplate:
    """Derive the template moto creates from the packaged one.

    ``supported`` is the set of resource types moto's CloudFormation models; ``wanted`` are values whose intrinsics
    must be resolved (function environments, event ARNs); ``known`` are intrinsics resolved already.
    """
    known = known or {}
    resources: dict[str, dict[str, Any]] = json.loads(json.dumps(template.get("Resources", {})))
    prepared = PreparedTemplate(template={})
    dropped = _classify(resources, supported, prepared)
    kept = {key: value for key, value in resources.items() if key not in dropped}
    for resource in kept.values():
        depends = resource.get("DependsOn")
        if depends is not None:
            depends = [depends] if isinstance(depends, str) else depends
            resource["DependsOn"] = [name for name in depends if name not in dropped]
    outputs: dict[str, Any] = {}
    values = [*wanted, *(resource.get("Properties", {}) for resource in prepared.explicit.values())]
    for value in values:
        for intrinsic in _intrinsics(value):
            key = json.dumps(intrinsic, sort_keys=True)
            if key in known or key in prepared.outputs.values() or referenced(intrinsic) & dropped:
                continue
            name = f"{_OUTPUT_PREFIX}{len(outputs)}"
            outputs[name] = {"Value": intrinsic}
            prepared.outputs[name] = key
    for logical_id, resource in prepared.explicit.items():
        if "Condition" in resource:
            # moto leaves out an output whose condition is false: that tells whether to create the resource.
            name = f"{_OUTPUT_PREFIX}{len(outputs)}"
            outputs[name] = {"Condition": resource["Condition"], "Value": "true"}
            prepared.outputs[name] = condition_key(logical_id)
    prepared.template = {
        "AWSTemplateFormatVersion": template.get("AWSTemplateFormatVersion", "2010-09-09"),
        "Resources": kept,
        "Outputs": outputs,
    }
    for section in ("Conditions", "Mappings", "Parameters"):
        if section in template:
            prepared.template[section] = template[section]
    return prepared


def create_stack(cloudformation: Any, name: str, prepared: PreparedTemplate) -> dict[str, Any]:
    """Create the prepared stack in moto; return the resolved intrinsics keyed by their JSON."""
    try:
        cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(prepared.template))
        stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    except Exception as exc:
        raise ResourceError(f"creating the stack in moto failed: {exc}") from exc
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise ResourceError(f"stack {name} ended {stack['StackStatus']}: {stack.get('StackStatusReason', '')}")
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}
    return {key: outputs[name] for name, key in prepared.outputs.items() if name in outputs}


def condition_key(logical_id: str) -> str:
    """Return the key under which ``create_stack`` reports that a conditional resource's condition holds."""
    return f"Condition:{logical_id}"


def _secret_value(props: dict[str, Any]) -> str:
    if "SecretString" in props:
        return str(props["SecretString"])
    spec = props.get("GenerateSecretString") or {}
    excluded = set(spec.get("ExcludeCharacters", ""))
    alphabet = [char for char in string.ascii_letters + string.digits if char not in excluded]
    generated = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    template = spec.get("SecretStringTemplate")
    if template and spec.get("GenerateStringKey"):
        return json.dumps({**json.loads(template), spec["GenerateStringKey"]: generated})
    return generated


def create_explicit(clients: Any, prepared: PreparedTemplate, resolved: dict[str, Any]) -> list[str]:
    """Create what moto's CloudFormation skips; return one line per resource created."""
    done: list[str] = []
    for logical_id, resource in prepared.explicit.items():
        if "Condition" in resource and condition_key(logical_id) not in resolved:
            continue
        props = substitute(resource.get("Properties", {}), resolved)
        kind = resource["Type"]
        if kind == "AWS::SNS::Subscription":
            attributes = {
                name: json.dumps(props[name])
                if isinstance(props[name], dict)
                else str(props[name]).lower()
                if isinstance(props[name], bool)
                else str(props[name])
                for name in ("FilterPolicy", "FilterPolicyScope", "RawMessageDelivery", "RedrivePolicy")
                if name in props
            }
            clients("sns").subscribe(
                TopicArn=props["TopicArn"],
                Protocol=props["Protocol"],
                Endpoint=props["Endpoint"],
                Attributes=attributes,
            )
        elif kind == "AWS::SQS::QueuePolicy":
            for url in props.get("Queues", []):
                clients("sqs").set_queue_attributes(
                    QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
                )
        elif kind == "AWS::SecretsManager::Secret":
            clients("secretsmanager").create_secret(
                Name=props.get("Name") or logical_id,
                SecretString=_secret_value(props),
                Description=props.get("Description", ""),
            )
        elif kind == "AWS::CloudWatch::Alarm":
            alarm = {name: props[name] for name in _ALARM_FIELDS if name in props}
            alarm.setdefault("AlarmName", logical_id)
            for name in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
                if name in alarm:
                    alarm[name] = int(alarm[name])
            if "Threshold" in alarm:
                alarm["Threshold"] = float(alarm["Threshold"])
            clients("cloudwatch").put_metric_alarm(**alarm)
        done.append(f"{logical_id} ({kind})")
    return done
