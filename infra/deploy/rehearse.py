"""What ``serverless deploy`` does, done against moto: create the stack, upload the artifacts, update the stack.

osls deploys with change sets: a new stack starts from the core template (the deployment bucket); the artifacts, the
compiled template and the service state go to the bucket under the package's artifact directory; then an UPDATE
change set from the uploaded template is executed. This module does the same calls with boto3 against a moto
server, then ``verify`` checks what exists against the resolved serverless.yml.

``python -m infra.deploy.rehearse [package-dir]`` runs it all and prints a report.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from infra.deploy.motoserver import moto_server
from infra.deploy.package import PackagedService, load_package

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
COMPILED_TEMPLATE = "compiled-cloudformation-template.json"
STATE_FILE = "serverless-state.json"
WAIT_SECONDS = 300.0


class RehearsalError(Exception):
    """A step of the deploy failed."""


def _s3_endpoint(region: str) -> str:
    """The S3 host osls puts in a TemplateURL (lib/plugins/aws/utils/get-s3-endpoint-for-region.js)."""
    if region == "us-east-1":
        return "s3.amazonaws.com"
    if region.startswith("cn-"):
        return f"s3.{region}.amazonaws.com.cn"
    return f"s3.{region}.amazonaws.com"


@dataclass
class Aws:
    """boto3 clients of one endpoint and region, created on first use."""

    endpoint_url: str
    region: str
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        """Return the client of an AWS service."""
        if service not in self._clients:
            self._clients[service] = boto3.session.Session().client(
                service,
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                aws_access_key_id="rehearsal",
                aws_secret_access_key="rehearsal",  # noqa: S106 (moto's, not a secret)
                config=Config(retries={"mode": "standard", "max_attempts": 3}),
            )
        return self._clients[service]


@dataclass
class Deployment:
    """A stack deployed by the rehearsal."""

    package: PackagedService
    aws: Aws
    bucket: str
    outputs: dict[str, str]
    physical_ids: dict[str, str]
    seconds: float

    def physical_id(self, logical_id: str) -> str:
        """Return a created resource's physical id; raise when moto did not create it."""
        try:
            return self.physical_ids[logical_id]
        except KeyError:
            raise RehearsalError(f"{logical_id} was not created") from None


def _wait_stack(cloudformation: Any, stack_name: str, goal: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == goal:
            return
        if not status.endswith("_IN_PROGRESS"):
            reason = stack.get("StackStatusReason", "")
            raise RehearsalError(f"stack {stack_name} is {status}, wanted {goal}: {reason}")
        time.sleep(0.5)
    raise RehearsalError(f"stack {stack_name} not {goal} after {WAIT_SECONDS:.0f} s")


def _wait_change_set(cloudformation: Any, stack_name: str, name: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        change_set = cloudformation.describe_change_set(StackName=stack_name, ChangeSetName=name)
        if change_set["Status"] == "CREATE_COMPLETE":
            return
        if change_set["Status"] == "FAILED":
            raise RehearsalError(f"change set {name} failed: {change_set.get('StatusReason', '')}")
        time.sleep(0.5)
    raise RehearsalError(f"change set {name} not created after {WAIT_SECONDS:.0f} s")


def _apply_change_set(package: PackagedService, aws: Aws, change_set_type: str, **template: str) -> None:
    cloudformation = aws.client("cloudformation")
    stack_name = package.stack_name
    name = f"{stack_name}-change-set"
    tags = {"STAGE": package.stage, **package.provider.get("stackTags", {})}
    if change_set_type == "UPDATE":
        cloudformation.delete_change_set(StackName=stack_name, ChangeSetName=name)
    cloudformation.create_change_set(
        StackName=stack_name,
        ChangeSetName=name,
        ChangeSetType=change_set_type,
        Capabilities=CAPABILITIES,
        Parameters=[],
        Tags=[{"Key": key, "Value": str(value)} for key, value in tags.items()],
        **template,
    )
    _wait_change_set(cloudformation, stack_name, name)
    cloudformation.execute_change_set(StackName=stack_name, ChangeSetName=name)
    _wait_stack(cloudformation, stack_name, f"{change_set_type}_COMPLETE")


def _upload(package: PackagedService, aws: Aws, bucket: str) -> None:
    """Upload what osls uploads: the compiled template, each function's artifact, the service state."""
    s3 = aws.client("s3")
    prefix = package.artifact_directory
    files = [
        (COMPILED_TEMPLATE, json.dumps(package.template).encode(), "application/json"),
        *((path.name, path.read_bytes(), "application/zip") for path in sorted(set(package.artifacts.values()))),
        (STATE_FILE, (package.directory / STATE_FILE).read_bytes(), "application/json"),
    ]
    for name, body, content_type in files:
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        s3.put_object(
            Bucket=bucket, Key=f"{prefix}/{name}", Body=body, ContentType=content_type, Metadata={"filesha256": digest}
        )


def deploy(package: PackagedService, aws: Aws) -> Deployment:
    """Deploy a package the way osls does for a new stack; return what was created."""
    started = time.monotonic()
    cloudformation = aws.client("cloudformation")
    _apply_change_set(package, aws, "CREATE", TemplateBody=json.dumps(package.core_template))
    # osls finds its bucket the same way: the stack's ServerlessDeploymentBucket resource.
    bucket = cloudformation.describe_stack_resource(
        StackName=package.stack_name, LogicalResourceId="ServerlessDeploymentBucket"
    )["StackResourceDetail"]["PhysicalResourceId"]
    _upload(package, aws, bucket)
    template_url = f"https://{_s3_endpoint(package.region)}/{bucket}/{package.artifact_directory}/{COMPILED_TEMPLATE}"
    _apply_change_set(package, aws, "UPDATE", TemplateURL=template_url)
    paginator = cloudformation.get_paginator("list_stack_resources")
    physical_ids = {
        summary["LogicalResourceId"]: summary["PhysicalResourceId"]
        for page in paginator.paginate(StackName=package.stack_name)
        for summary in page["StackResourceSummaries"]
        if summary.get("LogicalResourceId") and summary.get("PhysicalResourceId")
    }
    return Deployment(
        package=package,
        aws=aws,
        bucket=bucket,
        outputs=_outputs(cloudformation, package.stack_name),
        physical_ids=physical_ids,
        seconds=time.monotonic() - started,
    )


def _outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


@dataclass
class Findings:
    """What one verification found: problems, and what it could only assert from the template."""

    problems: list[str] = field(default_factory=list)
    from_template: list[str] = field(default_factory=list)

    def expect(self, what: str, actual: Any, expected: Any) -> None:
        """Record a problem when ``actual`` is not ``expected``."""
        if actual != expected:
            self.problems.append(f"{what}: {actual!r}, expected {expected!r}")


# Types moto's CloudFormation does not model are skipped without an error; the rehearsal asks moto which they are.
@cache
def moto_skips(resource_type: str) -> bool:
    """Whether moto's CloudFormation silently skips a resource type (this process has the server's moto)."""
    from moto.cloudformation import parsing

    level = parsing.logger.level
    parsing.logger.setLevel(logging.ERROR)
    try:
        return parsing.resource_class_from_type(resource_type) is None
    finally:
        parsing.logger.setLevel(level)


_PSEUDO = {"AWS::URLSuffix": "amazonaws.com", "AWS::Partition": "aws"}


def _value(deployment: Deployment, value: Any) -> Any:
    """Resolve a template value to what the stack made of it: Ref to the physical id, GetAtt Arn to the ARN."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, argument),) = value.items()
        if key == "Ref":
            return deployment.physical_id(argument)
        if key == "Fn::GetAtt" and argument[1] == "Arn":
            return _arn(deployment, argument[0])
    return value


def _pattern(deployment: Deployment, value: Any) -> re.Pattern[str] | None:
    """Return what a ``Fn::Join`` of strings and ``Ref``s must come out as, a ``Ref`` to a resource moto skips (the
    WebSocket API) standing for any name; ``None`` for a value that is no such join."""
    if not (isinstance(value, dict) and set(value) == {"Fn::Join"}):
        return None
    separator, parts = value["Fn::Join"]
    pieces: list[str] = []
    for part in parts:
        if isinstance(part, str):
            pieces.append(re.escape(part))
        elif isinstance(part, dict) and set(part) == {"Ref"}:
            name = part["Ref"]
            if name == "AWS::Region":
                pieces.append(re.escape(deployment.package.region))
            elif name in _PSEUDO:
                pieces.append(re.escape(_PSEUDO[name]))
            elif name in deployment.package.resources and moto_skips(deployment.package.resources[name]["Type"]):
                pieces.append(r"[^./:]+")
            else:
                pieces.append(re.escape(str(_value(deployment, part))))
        else:
            return None
    return re.compile(re.escape(separator).join(pieces))


def _arn(deployment: Deployment, logical_id: str) -> str:
    resource_type = deployment.package.resources[logical_id]["Type"]
    physical = deployment.physical_id(logical_id)
    if resource_type == "AWS::SQS::Queue":
        url = deployment.aws.client("sqs").get_queue_url(QueueName=physical.rsplit("/", 1)[-1])["QueueUrl"]
        attributes = deployment.aws.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attributes["Attributes"]["QueueArn"])
    if resource_type == "AWS::DynamoDB::Table":
        return str(deployment.aws.client("dynamodb").describe_table(TableName=physical)["Table"]["TableArn"])
    if resource_type == "AWS::IAM::Role":
        return str(deployment.aws.client("iam").get_role(RoleName=physical)["Role"]["Arn"])
    if resource_type == "AWS::Lambda::Function":
        return str(deployment.aws.client("lambda").get_function_configuration(FunctionName=physical)["FunctionArn"])
    return physical


def _setting(function: dict[str, Any], provider: dict[str, Any], key: str, provider_key: str | None = None) -> Any:
    return function.get(key, provider.get(provider_key or key))


def verify_functions(deployment: Deployment) -> Findings:
    """Every function: handler, runtime, memory, timeout, its own role, its environment, log retention, a version."""
    findings = Findings()
    package, provider = deployment.package, deployment.package.provider
    lam, logs = deployment.aws.client("lambda"), deployment.aws.client("logs")
    for key, function in package.functions.items():
        name = function["name"]
        logical_id = package.function_logical_id(key)
        live = lam.get_function_configuration(FunctionName=name)
        findings.expect(f"{name} handler", live["Handler"], function["handler"])
        findings.expect(f"{name} runtime", live["Runtime"], _setting(function, provider, "runtime"))
        findings.expect(f"{name} memory", live["MemorySize"], int(_setting(function, provider, "memorySize")))
        findings.expect(f"{name} timeout", live["Timeout"], int(_setting(function, provider, "timeout")))
        findings.expect(f"{name} role", live["Role"], _arn(deployment, function["role"]))
        environment = {**provider.get("environment", {}), **function.get("environment", {})}
        live_env = dict(live.get("Environment", {}).get("Variables", {}))
        patterns = {variable: _pattern(deployment, value) for variable, value in environment.items()}
        for variable, pattern in patterns.items():
            if pattern is not None and not pattern.fullmatch(str(live_env.pop(variable, ""))):
                findings.problems.append(f"{name} environment {variable}: does not match {pattern.pattern!r}")
        expected_env = {
            variable: str(_value(deployment, value))
            for variable, value in environment.items()
            if patterns[variable] is None
        }
        findings.expect(f"{name} environment", live_env, expected_env)
        groups = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")["logGroups"]
        retention = [group.get("retentionInDays") for group in groups if group["logGroupName"] == f"/aws/lambda/{name}"]
        findings.expect(f"{name} log retention", retention, [provider["logRetentionInDays"]])
        if provider.get("versionFunctions", True):
            versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
            if not any(version["Version"] != "$LATEST" for version in versions):
                findings.problems.append(f"{name}: no published version")
        # moto's CloudFormation drops Architectures and TracingConfig (it reports x86_64 and PassThrough).
        properties = package.resources[logical_id]["Properties"]
        findings.expect(f"{name} architectures (template)", properties.get("Architectures"), [provider["architecture"]])
        tracing = "Active" if provider.get("tracing", {}).get("lambda") else None
        findings.expect(f"{name} tracing (template)", properties.get("TracingConfig", {}).get("Mode"), tracing)
        findings.from_template.append(f"{name}: Architectures, TracingConfig")
    return findings


def _events(deployment: Deployment, kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (function["name"], event[kind])
        for function in deployment.package.functions.values()
        for event in function.get("events", [])
        if kind in event
    ]


def verify_event_source_mappings(deployment: Deployment) -> Findings:
    """Every queue event: a mapping with its queue, batch size, batching window and partial-failure reporting."""
    findings = Findings()
    lam = deployment.aws.client("lambda")
    every_mapping = [
        mapping
        for page in lam.get_paginator("list_event_source_mappings").paginate()
        for mapping in page["EventSourceMappings"]
    ]
    for name, event in _events(deployment, "sqs"):
        queue_arn = _value(deployment, event["arn"]) if isinstance(event["arn"], dict) else event["arn"]
        function_arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
        mappings = [
            mapping
            for mapping in every_mapping
            if mapping["EventSourceArn"] == queue_arn and mapping["FunctionArn"] == function_arn
        ]
        if len(mappings) != 1:
            findings.problems.append(f"{name}: {len(mappings)} event source mappings from {queue_arn}, expected 1")
            continue
        mapping = mappings[0]
        findings.expect(f"{name} batch size", mapping["BatchSize"], int(event.get("batchSize", 10)))
        findings.expect(
            f"{name} batching window",
            mapping.get("MaximumBatchingWindowInSeconds", 0),
            int(event.get("maximumBatchingWindow", 0)),
        )
        expected_types = [event["functionResponseType"]] if event.get("functionResponseType") else []
        findings.expect(f"{name} response types", mapping.get("FunctionResponseTypes", []), expected_types)
        findings.expect(f"{name} mapping state", mapping.get("State"), "Enabled")
    return findings


def verify_schedule_rules(deployment: Deployment) -> Findings:
    """Every schedule event: an EventBridge rule with its expression that targets the function."""
    findings = Findings()
    events = deployment.aws.client("events")
    rules = deployment.package.of_type("AWS::Events::Rule")
    for name, event in _events(deployment, "schedule"):
        settings = event if isinstance(event, dict) else {"rate": event}
        expressions = _as_list(settings.get("rate"))
        function_arn = deployment.aws.client("lambda").get_function_configuration(FunctionName=name)["FunctionArn"]
        matched = 0
        for logical_id in rules:
            rule = events.describe_rule(Name=deployment.physical_id(logical_id))
            targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
            if rule.get("ScheduleExpression") in expressions and any(t["Arn"] == function_arn for t in targets):
                matched += 1
                expected_state = "ENABLED" if settings.get("enabled", True) else "DISABLED"
                findings.expect(f"{name} rule {rule['Name']} state", rule.get("State"), expected_state)
        findings.expect(f"{name} schedule rules", matched, len(expressions))
    return findings


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def verify_tables(deployment: Deployment) -> Findings:
    """Every table: name, keys, attribute types, billing; TTL and point-in-time recovery from the template."""
    findings = Findings()
    dynamodb = deployment.aws.client("dynamodb")
    for logical_id, resource in deployment.package.of_type("AWS::DynamoDB::Table").items():
        properties = resource["Properties"]
        name = properties["TableName"]
        live = dynamodb.describe_table(TableName=deployment.physical_id(logical_id))["Table"]
        findings.expect(f"{logical_id} name", live["TableName"], name)
        findings.expect(f"{name} keys", live["KeySchema"], properties["KeySchema"])
        findings.expect(
            f"{name} attributes",
            sorted(live["AttributeDefinitions"], key=lambda item: item["AttributeName"]),
            sorted(properties["AttributeDefinitions"], key=lambda item: item["AttributeName"]),
        )
        findings.expect(
            f"{name} billing", live.get("BillingModeSummary", {}).get("BillingMode"), properties.get("BillingMode")
        )
        # moto's CloudFormation drops TimeToLiveSpecification and PointInTimeRecoverySpecification.
        pitr = properties.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")
        findings.expect(f"{name} point-in-time recovery (template)", pitr, True)
        findings.from_template.append(f"{name}: TimeToLiveSpecification, PointInTimeRecoverySpecification")
    ledger = deployment.package.resources.get("DeliveriesTable", {}).get("Properties", {})
    findings.expect(
        "ledger TTL (template)", ledger.get("TimeToLiveSpecification"), {"AttributeName": "expires_at", "Enabled": True}
    )
    return findings


_QUEUE_ATTRIBUTES = ("VisibilityTimeout", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds", "DelaySeconds")


def verify_queues(deployment: Deployment) -> Findings:
    """Every queue: its timings, managed encryption, and its redrive policy to the right dead-letter queue."""
    findings = Findings()
    sqs = deployment.aws.client("sqs")
    for logical_id, resource in deployment.package.of_type("AWS::SQS::Queue").items():
        properties = resource["Properties"]
        name = properties["QueueName"]
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        live = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        for attribute in _QUEUE_ATTRIBUTES:
            if attribute in properties:
                findings.expect(f"{name} {attribute}", live.get(attribute), str(properties[attribute]))
        if "SqsManagedSseEnabled" in properties:
            findings.expect(
                f"{name} SSE", live.get("SqsManagedSseEnabled"), str(properties["SqsManagedSseEnabled"]).lower()
            )
        redrive = properties.get("RedrivePolicy")
        if redrive is None:
            findings.expect(f"{name} redrive", live.get("RedrivePolicy"), None)
            continue
        live_redrive = json.loads(live.get("RedrivePolicy", "{}"))
        findings.expect(
            f"{name} DLQ", live_redrive.get("deadLetterTargetArn"), _value(deployment, redrive["deadLetterTargetArn"])
        )
        findings.expect(
            f"{name} max receives", int(live_redrive.get("maxReceiveCount", 0)), int(redrive["maxReceiveCount"])
        )
        findings.problems.extend(
            f"{name}: {logical_id} is not a queue of this stack"
            for logical_id in [redrive["deadLetterTargetArn"].get("Fn::GetAtt", [None])[0]]
            if logical_id not in deployment.package.of_type("AWS::SQS::Queue")
        )
    return findings


def verify_topics(deployment: Deployment) -> Findings:
    """Every topic exists with its name; subscriptions (moto skips them) from the template."""
    findings = Findings()
    sns = deployment.aws.client("sns")
    for logical_id, resource in deployment.package.of_type("AWS::SNS::Topic").items():
        arn = deployment.physical_id(logical_id)
        attributes = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
        findings.expect(
            f"{logical_id} name", attributes["TopicArn"].rsplit(":", 1)[-1], resource["Properties"]["TopicName"]
        )
    for logical_id, resource in deployment.package.of_type("AWS::SNS::Subscription").items():
        topic = resource["Properties"].get("TopicArn", {}).get("Ref")
        if topic not in deployment.package.of_type("AWS::SNS::Topic"):
            findings.problems.append(f"{logical_id}: subscribes to {topic!r}, not a topic of this stack")
        findings.from_template.append(f"{logical_id}: AWS::SNS::Subscription")
    return findings


def verify_parameters(deployment: Deployment) -> Findings:
    """Every SSM parameter of the stack exists with its type and value."""
    findings = Findings()
    ssm = deployment.aws.client("ssm")
    for logical_id, resource in deployment.package.of_type("AWS::SSM::Parameter").items():
        properties = resource["Properties"]
        live = ssm.get_parameter(Name=properties["Name"])["Parameter"]
        findings.expect(f"{properties['Name']} type", live["Type"], properties["Type"])
        if isinstance(properties["Value"], str) or "Ref" in properties["Value"]:
            findings.expect(f"{properties['Name']} value", live["Value"], str(_value(deployment, properties["Value"])))
        elif not live["Value"]:
            findings.problems.append(f"{logical_id}: empty value")
    return findings


def _rest_api_methods(deployment: Deployment) -> dict[tuple[str, str], dict[str, Any]]:
    api = deployment.aws.client("apigateway")
    rest_api_id = deployment.physical_id("ApiGatewayRestApi")
    methods: dict[tuple[str, str], dict[str, Any]] = {}
    for resource in api.get_resources(restApiId=rest_api_id, limit=500)["items"]:
        for verb in resource.get("resourceMethods", {}):
            methods[(resource["path"], verb)] = api.get_method(
                restApiId=rest_api_id, resourceId=resource["id"], httpMethod=verb
            )
    return methods


def verify_api(deployment: Deployment) -> Findings:
    """Every http event: its route, API key (private) or admin authorizer, and its function; the stage; the usage
    plan, API key and authorizer from the template (moto skips those types)."""
    findings = Findings()
    package = deployment.package
    methods = _rest_api_methods(deployment)
    authorizer_ids = set(package.of_type("AWS::ApiGateway::Authorizer"))
    for function in package.functions.values():
        for event in function.get("events", []):
            if "http" not in event:
                continue
            http = event["http"]
            path, verb = "/" + http["path"].strip("/"), http["method"].upper()
            method = methods.get((path, verb))
            if method is None:
                findings.problems.append(f"{verb} {path}: no such route")
                continue
            findings.expect(f"{verb} {path} API key", method.get("apiKeyRequired", False), bool(http.get("private")))
            authorization = "CUSTOM" if http.get("authorizer") else "NONE"
            findings.expect(f"{verb} {path} authorization", method.get("authorizationType"), authorization)
            uri = method.get("methodIntegration", {}).get("uri", "")
            if f":function:{function['name']}/" not in uri:
                findings.problems.append(f"{verb} {path}: integration {uri!r} is not {function['name']}")
            if http.get("authorizer"):
                template_method = next(
                    resource
                    for resource in package.of_type("AWS::ApiGateway::Method").values()
                    if resource["Properties"]["HttpMethod"] == verb
                    and resource["Properties"].get("AuthorizationType") == "CUSTOM"
                )
                if template_method["Properties"].get("AuthorizerId", {}).get("Ref") not in authorizer_ids:
                    findings.problems.append(f"{verb} {path}: its authorizer is not one of this stack")
    stages = deployment.aws.client("apigateway").get_stages(restApiId=deployment.physical_id("ApiGatewayRestApi"))
    findings.expect("API stages", [stage["stageName"] for stage in stages["item"]], [package.stage])
    findings.problems.extend(_api_template_problems(package))
    findings.from_template.append(
        "AWS::ApiGateway::Authorizer, ApiKey, UsagePlan, UsagePlanKey (moto skips them; the methods' links are live)"
    )
    return findings


def _api_template_problems(package: PackagedService) -> list[str]:
    findings = Findings()
    usage_plan = package.provider.get("apiGateway", {}).get("usagePlan", {})
    plans = list(package.of_type("AWS::ApiGateway::UsagePlan").values())
    findings.expect("usage plans", len(plans), 1)
    for plan in plans:
        properties = plan["Properties"]
        findings.expect(
            "usage plan throttle",
            properties.get("Throttle"),
            {"RateLimit": usage_plan["throttle"]["rateLimit"], "BurstLimit": usage_plan["throttle"]["burstLimit"]},
        )
        findings.expect(
            "usage plan quota",
            properties.get("Quota"),
            {"Limit": usage_plan["quota"]["limit"], "Period": usage_plan["quota"]["period"]},
        )
        api_stages = properties.get("ApiStages", [])
        findings.expect("usage plan API", [stage.get("ApiId") for stage in api_stages], [{"Ref": "ApiGatewayRestApi"}])
    keys = package.of_type("AWS::ApiGateway::ApiKey")
    findings.expect("API keys", len(keys), len(package.provider.get("apiGateway", {}).get("apiKeys", [])))
    for logical_id, key in keys.items():
        findings.expect(f"{logical_id} enabled", key["Properties"].get("Enabled"), True)
        links = [
            link
            for link in package.of_type("AWS::ApiGateway::UsagePlanKey").values()
            if link["Properties"].get("KeyId") == {"Ref": logical_id}
        ]
        findings.expect(f"{logical_id} usage plan links", len(links), 1)
    for logical_id, authorizer in package.of_type("AWS::ApiGateway::Authorizer").items():
        properties = authorizer["Properties"]
        findings.expect(f"{logical_id} type", properties.get("Type"), "TOKEN")
        findings.expect(
            f"{logical_id} identity", properties.get("IdentitySource"), "method.request.header.Authorization"
        )
        if "AdminAuthorizerLambdaFunction" not in json.dumps(properties.get("AuthorizerUri")):
            findings.problems.append(f"{logical_id}: does not call the adminAuthorizer function")
    return findings.problems


def verify_websocket_api(deployment: Deployment) -> Findings:
    """From the template (moto skips ``AWS::ApiGatewayV2::*``): every websocket event is a route of the one WebSocket
    API that integrates its function, a route response where the event asks for one, and a stage named as the
    stage."""
    findings = Findings()
    package = deployment.package
    apis = package.of_type("AWS::ApiGatewayV2::Api")
    routes = {
        resource["Properties"]["RouteKey"]: resource["Properties"]
        for resource in package.of_type("AWS::ApiGatewayV2::Route").values()
    }
    integrations = package.of_type("AWS::ApiGatewayV2::Integration")
    expected = {
        (event["websocket"]["route"] if isinstance(event["websocket"], dict) else event["websocket"]): (key, event)
        for key, function in package.functions.items()
        for event in function.get("events", [])
        if "websocket" in event
    }
    if not expected:
        return findings
    findings.expect("WebSocket APIs", [api["Properties"].get("ProtocolType") for api in apis.values()], ["WEBSOCKET"])
    findings.expect("WebSocket routes", sorted(routes), sorted(expected))
    for route, (key, event) in expected.items():
        props = routes.get(route)
        if props is None:
            continue
        target = json.dumps(props.get("Target"))
        integration = next((item for name, item in integrations.items() if json.dumps({"Ref": name}) in target), None)
        function_id = package.function_logical_id(key)
        if integration is None or function_id not in json.dumps(integration["Properties"].get("IntegrationUri")):
            findings.problems.append(f"WebSocket route {route}: does not invoke {key}")
        wants_response = (
            isinstance(event["websocket"], dict) and "routeResponseSelectionExpression" in event["websocket"]
        )
        findings.expect(
            f"WebSocket route {route} route response", "RouteResponseSelectionExpression" in props, wants_response
        )
    stages = [stage["Properties"].get("StageName") for stage in package.of_type("AWS::ApiGatewayV2::Stage").values()]
    findings.expect("WebSocket API stages", stages, [package.stage])
    findings.from_template.append("AWS::ApiGatewayV2::Api, Route, RouteResponse, Integration, Deployment, Stage")
    return findings


def verify_alarms(deployment: Deployment) -> Findings:
    """From the template (moto skips alarms): each dead-letter queue has a depth alarm, each queue consumer an errors
    and a throttles alarm, and every alarm notifies a topic of this stack."""
    findings = Findings()
    package = deployment.package
    alarms = list(package.of_type("AWS::CloudWatch::Alarm").values())
    topics = set(package.of_type("AWS::SNS::Topic"))
    watched: set[tuple[str, str]] = set()
    for alarm in alarms:
        properties = alarm["Properties"]
        for dimension in properties.get("Dimensions", []):
            value = dimension["Value"]
            target = value.get("Ref") or value.get("Fn::GetAtt", [None])[0] if isinstance(value, dict) else value
            watched.add((properties["MetricName"], str(target)))
        actions = {action.get("Ref") for action in properties.get("AlarmActions", []) if isinstance(action, dict)}
        if not actions or not actions <= topics:
            findings.problems.append(f"{properties.get('AlarmName')}: notifies {actions or 'nothing'}")
    for logical_id, queue in package.of_type("AWS::SQS::Queue").items():
        target = (
            queue["Properties"].get("RedrivePolicy", {}).get("deadLetterTargetArn", {}).get("Fn::GetAtt", [None])[0]
        )
        if target and ("ApproximateNumberOfMessagesVisible", target) not in watched:
            findings.problems.append(f"{target}: dead-letter queue of {logical_id} has no depth alarm")
    consumers = {
        package.function_logical_id(key)
        for key, fn in package.functions.items()
        if any("sqs" in e for e in fn.get("events", []))
    }
    for consumer in sorted(consumers):
        for metric in ("Errors", "Throttles"):
            if (metric, consumer) not in watched:
                findings.problems.append(f"{consumer}: no {metric} alarm")
    findings.from_template.append(f"{len(alarms)} AWS::CloudWatch::Alarm")
    return findings


def verify_outputs(deployment: Deployment) -> Findings:
    """From the template (moto reports no outputs after change sets): the API URL, every topic ARN and queue URL."""
    findings = Findings()
    outputs = deployment.package.template.get("Outputs", {})
    referenced = json.dumps(outputs)
    for required in ("ServiceEndpoint", "ApiUrl"):
        if required not in outputs:
            findings.problems.append(f"output {required} missing")
    for resource_type in ("AWS::SNS::Topic", "AWS::SQS::Queue"):
        for logical_id in deployment.package.of_type(resource_type):
            if json.dumps({"Ref": logical_id}) not in referenced:
                findings.problems.append(f"{logical_id}: no output")
    findings.from_template.append("Outputs")
    return findings


def verify_artifact_upload(deployment: Deployment) -> Findings:
    """Each function's artifact is in the deployment bucket where its code points, and the bucket refuses plain
    HTTP (its policy, which moto skips, from the template)."""
    findings = Findings()
    s3 = deployment.aws.client("s3")
    package = deployment.package
    for key, artifact in package.artifacts.items():
        s3_key = f"{package.artifact_directory}/{artifact.name}"
        head = s3.head_object(Bucket=deployment.bucket, Key=s3_key)
        findings.expect(f"{artifact.name} size", head["ContentLength"], artifact.stat().st_size)
        function = package.resources[package.function_logical_id(key)]
        findings.expect(f"{key} code", function["Properties"]["Code"].get("S3Key"), s3_key)
    policy = deployment.package.core_template["Resources"].get("ServerlessDeploymentBucketPolicy", {})
    if '"aws:SecureTransport": false' not in json.dumps(policy):
        findings.problems.append("deployment bucket policy does not refuse plain HTTP")
    findings.from_template.append("AWS::S3::BucketPolicy")
    return findings


def verify_roles(deployment: Deployment) -> Findings:
    """Every function's role exists with the inline policies the template gives it."""
    findings = Findings()
    iam = deployment.aws.client("iam")
    for function in deployment.package.functions.values():
        logical_id = function["role"]
        role_name = deployment.physical_id(logical_id)
        expected = [
            policy["PolicyName"] for policy in deployment.package.resources[logical_id]["Properties"]["Policies"]
        ]
        findings.expect(f"{logical_id} policies", iam.list_role_policies(RoleName=role_name)["PolicyNames"], expected)
    return findings


VERIFIERS: dict[str, Callable[[Deployment], Findings]] = {
    "functions": verify_functions,
    "roles": verify_roles,
    "event source mappings": verify_event_source_mappings,
    "schedule rules": verify_schedule_rules,
    "tables": verify_tables,
    "queues": verify_queues,
    "topics": verify_topics,
    "parameters": verify_parameters,
    "api": verify_api,
    "websocket api": verify_websocket_api,
    "alarms": verify_alarms,
    "outputs": verify_outputs,
    "artifact upload": verify_artifact_upload,
}


def unverified_skips(deployment: Deployment) -> list[str]:
    """Resource types moto skipped that no verifier asserts from the template."""
    covered = {
        "AWS::S3::BucketPolicy",
        "AWS::ApiGateway::Authorizer",
        "AWS::ApiGateway::ApiKey",
        "AWS::ApiGateway::UsagePlan",
        "AWS::ApiGateway::UsagePlanKey",
        "AWS::SNS::Subscription",
        "AWS::CloudWatch::Alarm",
        # Checked from the template by test_template.py: the purchase subscribers' retries and on-failure queue.
        "AWS::Lambda::EventInvokeConfig",
        # Checked from the template by tests/integration/infra/test_template.py (every response a {"message"} JSON).
        "AWS::ApiGateway::GatewayResponse",
        # verify_websocket_api.
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Route",
        "AWS::ApiGatewayV2::RouteResponse",
        "AWS::ApiGatewayV2::Integration",
        "AWS::ApiGatewayV2::Deployment",
        "AWS::ApiGatewayV2::Stage",
    }
    types = {resource["Type"] for resource in deployment.package.resources.values()}
    return sorted(
        resource_type for resource_type in types if moto_skips(resource_type) and resource_type not in covered
    )


def main(argv: list[str] | None = None) -> int:
    """Rehearse the deploy of a package directory against a fresh moto server; exit 1 on any problem."""
    args = sys.argv[1:] if argv is None else argv
    package = load_package(args[0] if args else None)
    out = sys.stdout
    started = time.monotonic()
    with moto_server() as url:
        deployment = deploy(package, Aws(url, package.region))
        out.write(f"deployed {package.stack_name} to moto in {deployment.seconds:.1f} s\n")
        failed = False
        for name, verifier in VERIFIERS.items():
            findings = verifier(deployment)
            out.write(f"{'FAIL' if findings.problems else 'ok  '} {name}\n")
            for problem in findings.problems:
                out.write(f"     {problem}\n")
            for note in findings.from_template:
                out.write(f"     from the template: {note}\n")
            failed = failed or bool(findings.problems)
        skipped = sorted({resource["Type"] for resource in package.resources.values() if moto_skips(resource["Type"])})
        out.write(f"moto's CloudFormation skips: {', '.join(skipped)}\n")
        for resource_type in unverified_skips(deployment):
            out.write(f"FAIL {resource_type}: skipped by moto and asserted nowhere\n")
            failed = True
    out.write(f"rehearsal {'failed' if failed else 'passed'} in {time.monotonic() - started:.1f} s\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
