"""The packaged ci stage: least-privilege roles, a runtime-only artifact, cfn-lint and actionlint clean."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from api.admin_auth import BEARER_HEADER_PATTERN
from infra.deploy.checks import (
    WORKFLOWS,
    actionlint,
    admin_token_window_problems,
    artifact_problems,
    cfn_lint,
    iam_wildcards,
    private_target_problems,
    role_problems,
    settings_problems,
    workflow_files,
)
from infra.deploy.package import PackagedService

pytestmark = pytest.mark.timeout(300)

# The refusals API Gateway answers itself that the service explains, with API Gateway's status codes (None: the
# fallback keeps each type's own).
GATEWAY_RESPONSES = {
    "MISSING_AUTHENTICATION_TOKEN": "403",
    "INVALID_API_KEY": "403",
    "UNAUTHORIZED": "401",
    "ACCESS_DENIED": "403",
    "THROTTLED": "429",
    "QUOTA_EXCEEDED": "429",
    "AUTHORIZER_CONFIGURATION_ERROR": "500",
    "AUTHORIZER_FAILURE": "500",
    "DEFAULT_4XX": None,
    "DEFAULT_5XX": None,
}


def test_template_iam_has_no_wildcards(packaged: PackagedService) -> None:
    assert iam_wildcards(packaged.template) == []


def test_template_every_function_has_its_own_role(packaged: PackagedService) -> None:
    assert role_problems(packaged) == []


def test_artifact_holds_runtime_code_and_requirements_only(packaged: PackagedService) -> None:
    problems = {key: artifact_problems(path) for key, path in packaged.artifacts.items()}

    assert {key: found for key, found in problems.items() if found} == {}


def test_artifact_has_no_tests_bench_or_local_stack(packaged: PackagedService) -> None:
    import zipfile

    # A packaging that produced no artifact would pass the loop below unchecked.
    assert packaged.artifacts
    for key, path in packaged.artifacts.items():
        with zipfile.ZipFile(path) as archive:
            tops = {name.split("/", 1)[0] for name in archive.namelist()}

        assert "core" in tops, key
        assert not tops & {"tests", "bench", "infra", "moto", "pytest", "cfnlint"}, key


def test_templates_have_no_cfn_lint_errors(packaged: PackagedService) -> None:
    templates = [
        packaged.directory / "cloudformation-template-create-stack.json",
        packaged.directory / "cloudformation-template-update-stack.json",
    ]

    result = cfn_lint(templates)

    assert result.ok, result.output


def test_workflows_pass_actionlint() -> None:
    files = workflow_files()

    result = actionlint(files)

    assert {path.name for path in files} >= {"ci.yml", "deploy.yml"}
    assert result.ok, result.output


def test_template_functions_run_python312_on_arm64(packaged: PackagedService) -> None:
    functions = packaged.of_type("AWS::Lambda::Function").values()

    assert {(f["Properties"]["Runtime"], tuple(f["Properties"]["Architectures"])) for f in functions} == {
        ("python3.12", ("arm64",))
    }


def test_template_local_stage_settings_do_not_leak_into_ci(packaged: PackagedService) -> None:
    deliver = packaged.resources["DeliverLambdaFunction"]["Properties"]["Environment"]["Variables"]

    assert deliver["ALLOW_PRIVATE_TARGETS"] == "false"


def test_template_private_targets_off_outside_the_local_stage(packaged: PackagedService) -> None:
    assert private_target_problems(packaged.template, packaged.stage) == []


def test_template_every_function_environment_parses_as_in_lambda(packaged: PackagedService) -> None:
    assert settings_problems(packaged) == []


def test_template_admin_authorizer_caches_30_seconds(packaged: PackagedService) -> None:
    [authorizer] = packaged.of_type("AWS::ApiGateway::Authorizer").values()
    variables = packaged.resources["AdminAuthorizerLambdaFunction"]["Properties"]["Environment"]["Variables"]

    assert authorizer["Properties"]["AuthorizerResultTtlInSeconds"] == 30
    assert variables["ADMIN_TOKEN_CACHE_SECONDS"] == "30"
    assert admin_token_window_problems(packaged.template) == []


def _statements(packaged: PackagedService, role: str) -> dict[str, dict[str, Any]]:
    [policy] = packaged.resources[role]["Properties"]["Policies"]
    return {statement["Sid"]: statement for statement in policy["PolicyDocument"]["Statement"]}


def _actions(packaged: PackagedService, role: str, action: str) -> list[str]:
    """The Sids of a role's statements that grant ``action``."""
    return [sid for sid, statement in _statements(packaged, role).items() if action in statement["Action"]]


def test_template_api_role_sends_to_the_delivery_queue_only(packaged: PackagedService) -> None:
    statements = _statements(packaged, "ApiRole")

    assert _actions(packaged, "ApiRole", "sqs:SendMessage") == ["Redrive"]
    assert statements["Redrive"]["Resource"] == {"Fn::GetAtt": ["DeliveryQueue", "Arn"]}


def test_template_deliver_role_publishes_to_push_endpoints_and_prefixed_topics_only(packaged: PackagedService) -> None:
    statements = _statements(packaged, "DeliverRole")
    arn = "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:"

    assert _actions(packaged, "DeliverRole", "sns:Publish") == ["Push"]
    assert statements["Push"]["Resource"] == [
        {"Fn::Sub": f"{arn}endpoint/*"},
        {"Fn::Sub": f"{arn}notify-ci-push-*"},
    ]


def test_template_deliver_role_allows_the_consumers_ledger_calls_and_no_others(packaged: PackagedService) -> None:
    ledger = _statements(packaged, "DeliverRole")["Ledger"]

    # The ledger calls of consumer/delivery.py: get_entry, get_entries and update.
    assert set(ledger["Action"]) == {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem"}
    assert ledger["Resource"] == {"Fn::GetAtt": ["DeliveriesTable", "Arn"]}


def test_deploy_workflow_stage_is_a_choice_of_deployable_stages() -> None:
    workflow = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())
    # YAML 1.1 reads the key `on` as True.
    stage = (workflow.get("on") or workflow[True])["workflow_dispatch"]["inputs"]["stage"]

    assert stage["type"] == "choice"
    assert stage["options"] == ["dev", "staging", "prod"]
    assert stage["default"] in stage["options"]


def test_deploy_workflow_migrates_then_deploys_the_package_it_checked() -> None:
    steps = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())["jobs"]["deploy"]["steps"]
    commands = [step["run"] for step in steps if "run" in step]

    assert commands == [
        'make package STAGE="$STAGE" REGION="$AWS_REGION"',
        '.venv/bin/python -m infra.deploy.checks ".build/$STAGE"',
        '.venv/bin/python -m infra.migrate --secret-parameter "/notify/$STAGE/database-url" --region "$AWS_REGION"',
        'npx osls deploy --stage "$STAGE" --region "$AWS_REGION" --package ".build/$STAGE" --conceal',
    ]


def _gateway_responses(packaged: PackagedService) -> dict[str, dict[str, Any]]:
    return {
        resource["Properties"]["ResponseType"]: resource["Properties"]
        for resource in packaged.of_type("AWS::ApiGateway::GatewayResponse").values()
    }


def _rendered(template: str) -> Any:
    """The body API Gateway makes of a template, with sample values for the $context variables it uses."""
    text = template.replace("$context.error.messageString", json.dumps("API Gateway's message"))
    return json.loads(re.sub(r"\$context\.[A-Za-z.]*[A-Za-z]", "x", text))


def test_template_gateway_responses_explain_every_refusal(packaged: PackagedService) -> None:
    responses = _gateway_responses(packaged)

    assert {kind: responses.get(kind, {}).get("StatusCode") for kind in GATEWAY_RESPONSES} == GATEWAY_RESPONSES
    for kind in GATEWAY_RESPONSES:
        body = _rendered(responses[kind]["ResponseTemplates"]["application/json"])
        assert list(body) == ["message"], kind
        assert isinstance(body["message"], str), kind


def test_template_gateway_responses_belong_to_the_service_rest_api(packaged: PackagedService) -> None:
    assert {str(props["RestApiId"]) for props in _gateway_responses(packaged).values()} == {
        str({"Ref": "ApiGatewayRestApi"})
    }


def _depends_on(packaged: PackagedService, logical_id: str) -> set[str]:
    """Every resource ``logical_id`` waits for, directly or through others."""
    seen: set[str] = set()
    pending = [logical_id]
    while pending:
        depends = packaged.resources[pending.pop()].get("DependsOn") or []
        for name in [depends] if isinstance(depends, str) else depends:
            if name not in seen:
                seen.add(name)
                pending.append(name)
    return seen


def test_template_api_deployment_waits_for_every_gateway_response(packaged: PackagedService) -> None:
    [deployment] = packaged.of_type("AWS::ApiGateway::Deployment")

    assert set(packaged.of_type("AWS::ApiGateway::GatewayResponse")) <= _depends_on(packaged, deployment)


def test_template_admin_authorizer_validates_the_bearer_header_as_the_function_does(packaged: PackagedService) -> None:
    [authorizer] = packaged.of_type("AWS::ApiGateway::Authorizer").values()

    assert authorizer["Properties"]["IdentityValidationExpression"] == BEARER_HEADER_PATTERN


def _websocket_routes(packaged: PackagedService) -> dict[str, dict[str, Any]]:
    return {
        resource["Properties"]["RouteKey"]: resource["Properties"]
        for resource in packaged.of_type("AWS::ApiGatewayV2::Route").values()
    }


def test_template_websocket_routes_invoke_the_websocket_function(packaged: PackagedService) -> None:
    routes = _websocket_routes(packaged)
    [(integration_id, integration)] = packaged.of_type("AWS::ApiGatewayV2::Integration").items()

    assert set(routes) == {"$connect", "$disconnect", "$default"}
    assert {json.dumps(route["Target"]) for route in routes.values()} == {
        json.dumps({"Fn::Join": ["/", ["integrations", {"Ref": integration_id}]]})
    }
    assert "WebsocketLambdaFunction" in json.dumps(integration["Properties"]["IntegrationUri"])


def test_template_websocket_default_route_sends_the_refreshed_token_back(packaged: PackagedService) -> None:
    responses = packaged.of_type("AWS::ApiGatewayV2::RouteResponse").values()

    assert _websocket_routes(packaged)["$default"]["RouteResponseSelectionExpression"] == "$default"
    assert [response["Properties"]["RouteResponseKey"] for response in responses] == ["$default"]


def test_template_deliver_role_manages_connections_of_this_websocket_api_and_stage_only(
    packaged: PackagedService,
) -> None:
    statement = _statements(packaged, "DeliverRole")["BrowserFrames"]

    assert _actions(packaged, "DeliverRole", "execute-api:ManageConnections") == ["BrowserFrames"]
    assert [resource["Fn::Join"][1][-2:] for resource in statement["Resource"]] == [
        [{"Ref": "WebsocketsApi"}, "/ci/POST/@connections/*"],
        [{"Ref": "WebsocketsApi"}, "/ci/DELETE/@connections/*"],
    ]


def test_template_signing_keys_are_read_by_the_token_and_websocket_roles_and_written_by_none(
    packaged: PackagedService,
) -> None:
    parameter = "/notify/ci/realtime/signing-keys"
    readers = {
        role
        for role in packaged.of_type("AWS::IAM::Role")
        for statement in _statements(packaged, role).values()
        if parameter in json.dumps(statement["Resource"])
    }

    assert readers == {"RealtimeTokensRole", "WebsocketRole"}
    for role in readers:
        assert _statements(packaged, role)["SigningKeys"]["Action"] == ["ssm:GetParameter"]


def test_template_connections_table_expires_items_with_their_ttl(packaged: PackagedService) -> None:
    table = packaged.resources["ConnectionsTable"]["Properties"]

    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert [key["AttributeName"] for key in table["KeySchema"]] == ["pk", "sk"]


def test_template_deliver_function_configures_browser_deliveries(packaged: PackagedService) -> None:
    variables = packaged.resources["DeliverLambdaFunction"]["Properties"]["Environment"]["Variables"]

    assert variables["CONNECTIONS_TABLE"] == "notify-ci-connections"
    assert "WebsocketsApi" in json.dumps(variables["REALTIME_MANAGEMENT_URL"])


def _roles_naming(packaged: PackagedService, text: str) -> set[str]:
    return {
        role
        for role in packaged.of_type("AWS::IAM::Role")
        for statement in _statements(packaged, role).values()
        if text in json.dumps(statement["Resource"])
    }


def test_template_purchase_topic_is_published_to_by_the_payment_worker_only(packaged: PackagedService) -> None:
    publishers = {
        role
        for role in packaged.of_type("AWS::IAM::Role")
        for statement in _statements(packaged, role).values()
        if "sns:Publish" in statement["Action"] and "PurchaseTopic" in json.dumps(statement["Resource"])
    }

    assert publishers == {"PaymentWorkerRole"}
    assert _statements(packaged, "PaymentWorkerRole")["PublishPurchases"]["Resource"] == {"Ref": "PurchaseTopic"}


def test_template_stripe_secrets_are_read_by_the_roles_that_use_them_only(packaged: PackagedService) -> None:
    assert _roles_naming(packaged, "/notify/ci/stripe/secret-key") == {"StripeCreditRole", "PaymentWorkerRole"}
    assert _roles_naming(packaged, "/notify/ci/stripe/webhook-secret") == {"StripeWebhookRole"}


def test_template_credit_subscription_filters_on_the_message_body_promo_code(packaged: PackagedService) -> None:
    """The Purchase event's contract is its JSON body: a filter on an attribute dropped other publishers' credits."""
    subscriptions = {
        props["Endpoint"]["Fn::GetAtt"][0]: props
        for props in (packaged.resources[key]["Properties"] for key in packaged.of_type("AWS::SNS::Subscription"))
        if props.get("TopicArn") == {"Ref": "PurchaseTopic"}
    }

    assert set(subscriptions) == {"StripeCreditLambdaFunction", "PurchaseNotifyLambdaFunction"}
    credit = subscriptions["StripeCreditLambdaFunction"]
    assert (credit["FilterPolicyScope"], credit["FilterPolicy"]) == ("MessageBody", {"promo_code": [{"exists": True}]})
    assert "FilterPolicy" not in subscriptions["PurchaseNotifyLambdaFunction"]


def test_template_purchase_subscribers_retry_then_go_to_the_failures_queue(packaged: PackagedService) -> None:
    configs = {
        props["FunctionName"]["Ref"]: props
        for props in (
            packaged.resources[key]["Properties"] for key in packaged.of_type("AWS::Lambda::EventInvokeConfig")
        )
    }

    for function in ("StripeCreditLambdaFunction", "PurchaseNotifyLambdaFunction"):
        destination = configs[function]["DestinationConfig"]["OnFailure"]["Destination"]
        assert destination == {"Fn::GetAtt": ["PurchaseFailuresQueue", "Arn"]}
        assert configs[function]["MaximumRetryAttempts"] == 2
    dimensions = [
        packaged.resources[key]["Properties"]["Dimensions"][0]["Value"]
        for key in packaged.of_type("AWS::CloudWatch::Alarm")
    ]
    alarmed = {value["Fn::GetAtt"][0] for value in dimensions if isinstance(value, dict) and "Fn::GetAtt" in value}
    assert {"PurchaseFailuresQueue", "StripeWebhookDeadLetterQueue"} <= alarmed


def test_template_stripe_webhook_queue_is_set_as_the_seed_set_it(packaged: PackagedService) -> None:
    queue = packaged.resources["StripeWebhookQueue"]["Properties"]
    dlq = packaged.resources["StripeWebhookDeadLetterQueue"]["Properties"]
    mapping = next(
        packaged.resources[key]["Properties"]
        for key in packaged.of_type("AWS::Lambda::EventSourceMapping")
        if packaged.resources[key]["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["StripeWebhookQueue", "Arn"]}
    )

    assert (queue["VisibilityTimeout"], queue["MessageRetentionPeriod"], queue["ReceiveMessageWaitTimeSeconds"]) == (
        600,
        604800,
        20,
    )
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    assert dlq["MessageRetentionPeriod"] == 1209600
    assert (mapping["BatchSize"], mapping["FunctionResponseTypes"]) == (1, ["ReportBatchItemFailures"])


def _client_operations(module: str) -> set[str]:
    """The DynamoDB operations a store module calls on its client, as IAM actions (``update_item`` → UpdateItem)."""
    from pathlib import Path

    source = (Path(__file__).resolve().parents[3] / module).read_text()
    calls = set(re.findall(r"self\._client\.(\w+)\(", source)) - {"get_paginator"}
    calls |= set(re.findall(r'get_paginator\("(\w+)"\)', source))
    return {"dynamodb:" + "".join(part.title() for part in call.split("_")) for call in calls}


def test_template_api_role_allows_every_call_of_the_promotions_store(packaged: PackagedService) -> None:
    allowed = set(_statements(packaged, "ApiRole")["Promotions"]["Action"])

    assert _client_operations("core/purchases/promotions.py") <= allowed


def test_template_every_function_holding_a_database_connection_has_its_concurrency_bounded(
    packaged: PackagedService,
) -> None:
    """Each warm container keeps a PostgreSQL connection: the audience API's containers were unbounded (API Gateway's
    burst), and enough of them would take every connection the cron and expand need."""
    from core.audience.settings import DatabaseSettings
    from core.settings import role_settings

    resources = packaged.template["Resources"]
    by_event_source = {
        props["FunctionName"]["Fn::GetAtt"][0]
        for props in (r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping")
        if (props.get("ScalingConfig") or {}).get("MaximumConcurrency")
    }
    scheduled = {
        target["Arn"]["Fn::GetAtt"][0]
        for r in resources.values()
        if r["Type"] == "AWS::Events::Rule"
        for target in r["Properties"]["Targets"]
    }
    holding = [key for key, model in role_settings().items() if issubclass(model, DatabaseSettings)]
    unbounded = [
        key
        for key in holding
        if (function := key[0].upper() + key[1:] + "LambdaFunction") not in by_event_source | scheduled
        and resources[function]["Properties"].get("ReservedConcurrentExecutions") is None
    ]

    assert "audience" in holding
    assert unbounded == []


def test_template_every_function_with_a_throttles_alarm_or_a_schedule_has_both_alarms(
    packaged: PackagedService,
) -> None:
    """The cron had an errors alarm only: throttled, EventBridge retries a run for hours and no alarm said so."""
    resources = packaged.template["Resources"]
    alarmed: dict[str, set[str]] = {}
    for resource in resources.values():
        properties = resource["Properties"]
        if resource["Type"] == "AWS::CloudWatch::Alarm" and properties.get("Namespace") == "AWS/Lambda":
            for dimension in properties.get("Dimensions", []):
                if isinstance(dimension.get("Value"), dict) and "Ref" in dimension["Value"]:
                    alarmed.setdefault(dimension["Value"]["Ref"], set()).add(properties["MetricName"])

    assert alarmed["CronLambdaFunction"] >= {"Errors", "Throttles"}
    assert all(metrics >= {"Errors", "Throttles"} for function, metrics in alarmed.items() if "Throttles" in metrics)


def test_template_every_queue_of_given_up_messages_has_an_alarm_before_sqs_deletes_them(
    packaged: PackagedService,
) -> None:
    """The Stripe webhook and expansion DLQs and the purchase failures queue alarmed once, at the first letter: left
    there, a paid purchase's event or a send was deleted by SQS 14 days after it was first queued, with no reminder."""
    resources = packaged.template["Resources"]
    kept = {
        resource["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for resource in resources.values()
        if resource["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in resource["Properties"]
    } | {
        resource["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
        for resource in resources.values()
        if resource["Type"] == "AWS::Lambda::EventInvokeConfig"
    }
    reminded = {
        dimension["Value"]["Fn::GetAtt"][0]
        for resource in resources.values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        and resource["Properties"]["Period"] * resource["Properties"]["EvaluationPeriods"] >= 7 * 86400
        for dimension in resource["Properties"].get("Dimensions", [])
        if isinstance(dimension.get("Value"), dict) and "Fn::GetAtt" in dimension["Value"]
    }

    assert kept == {
        "DeliveryDeadLetterQueue",
        "ExpansionDeadLetterQueue",
        "StripeWebhookDeadLetterQueue",
        "PurchaseFailuresQueue",
    }
    assert kept - reminded == set()


def test_template_every_custom_metric_alarm_counts_a_metric_the_code_emits_in_its_stages_namespace(
    packaged: PackagedService,
) -> None:
    """The functions' metrics had one namespace for every stage, and the alarms matched on {service} alone: with dev
    and prod in one account, a dev failure paged prod's alarm topic."""
    from pathlib import Path

    resources = packaged.template["Resources"]
    alarms = [
        resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::CloudWatch::Alarm" and not resource["Properties"]["Namespace"].startswith("AWS/")
    ]
    namespaces = {
        resource["Properties"]["Environment"]["Variables"].get("POWERTOOLS_METRICS_NAMESPACE")
        for resource in resources.values()
        if resource["Type"] == "AWS::Lambda::Function"
    }
    root = Path(__file__).resolve().parents[3]
    code = "\n".join(
        path.read_text()
        for folder in ("core", "api", "producer", "consumer", "subscribers", "cron")
        for path in (root / folder).rglob("*.py")
    )

    assert namespaces == {"Notify/ci"}
    assert {alarm["Namespace"] for alarm in alarms} == {"Notify/ci"}
    assert {alarm["MetricName"] for alarm in alarms} >= {"SendsFailed", "SchedulesFailed", "CreditRecordFailed"}
    assert [alarm["MetricName"] for alarm in alarms if f'name="{alarm["MetricName"]}"' not in code] == []
