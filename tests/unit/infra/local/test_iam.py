"""The function's role as the local stack plays it (infra/local/iam.py): calls its policies do not allow are refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import botocore.client
import pytest
from botocore.exceptions import ClientError

from infra.local import iam
from infra.local.definition import load
from infra.local.iam import (
    ROLE_REFUSAL,
    Place,
    RoleNotPlayed,
    allows,
    also_needed,
    call_resources,
    resolve_resource,
    role_statements,
)
from tests.support.aws import AwsResources, client

PLACE = Place("us-east-1", "123456789012")
LEDGER = "arn:aws:dynamodb:us-east-1:123456789012:table/notify-test-ledger"
TEMPLATE: dict[str, Any] = {
    "Resources": {
        "Ledger": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": "notify-test-ledger"}},
        "Pacing": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": "notify-test-pacing"}},
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "notify-test-deliveries"}},
        "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "notify-test-purchase"}},
        "Api": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {}},
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Policies": [
                    {
                        "PolicyDocument": {
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
                                    "Resource": {"Fn::GetAtt": ["Ledger", "Arn"]},
                                },
                                {
                                    "Effect": "Allow",
                                    "Action": "dynamodb:UpdateItem",
                                    "Resource": {"Fn::GetAtt": ["Pacing", "Arn"]},
                                },
                                {
                                    "Effect": "Allow",
                                    "Action": ["sqs:SendMessage"],
                                    "Resource": {"Fn::GetAtt": ["Queue", "Arn"]},
                                },
                                {
                                    "Effect": "Allow",
                                    "Action": ["ssm:GetParameter"],
                                    "Resource": {
                                        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}"
                                        ":parameter/notify/test/integrations/*"
                                    },
                                },
                                {"Effect": "Deny", "Action": "sqs:DeleteMessage", "Resource": "*"},
                            ]
                        }
                    }
                ]
            },
        },
    }
}


def _statements() -> list[dict[str, list[str]]]:
    statements = role_statements(TEMPLATE, {"Fn::GetAtt": ["Role", "Arn"]}, PLACE)
    assert statements is not None
    return statements


def test_a_role_reads_as_its_statements_with_the_template_resources_as_arns() -> None:
    pacing = "arn:aws:dynamodb:us-east-1:123456789012:table/notify-test-pacing"
    assert _statements() == [
        {"effect": "Allow", "actions": ["dynamodb:GetItem", "dynamodb:UpdateItem"], "resources": [LEDGER]},
        {"effect": "Allow", "actions": ["dynamodb:UpdateItem"], "resources": [pacing]},
        {
            "effect": "Allow",
            "actions": ["sqs:SendMessage"],
            "resources": ["arn:aws:sqs:us-east-1:123456789012:notify-test-deliveries"],
        },
        {
            "effect": "Allow",
            "actions": ["ssm:GetParameter"],
            "resources": ["arn:aws:ssm:us-east-1:123456789012:parameter/notify/test/integrations/*"],
        },
        {"effect": "Deny", "actions": ["sqs:DeleteMessage"], "resources": ["*"]},
    ]


def _role(statement: dict[str, Any], **properties: Any) -> dict[str, Any]:
    policies = [{"PolicyDocument": {"Statement": [statement]}}]
    return {"Type": "AWS::IAM::Role", "Properties": {"Policies": policies, **properties}}


ALLOW_ALL_QUEUES = {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}


@pytest.mark.parametrize(
    ("resources", "reason"),
    [
        ({}, "its role is not a role of the template"),
        ({"Role": _role({**ALLOW_ALL_QUEUES, "Condition": {"Bool": {"aws:SecureTransport": "true"}}})}, "Condition"),
        ({"Role": _role({**ALLOW_ALL_QUEUES, "NotResource": "x"})}, "NotResource"),
        ({"Role": _role(ALLOW_ALL_QUEUES, ManagedPolicyArns=["arn:aws:iam::aws:policy/Admin"])}, "managed"),
        (
            {
                "Role": _role(ALLOW_ALL_QUEUES),
                "Extra": {"Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": "Role"}]}},
            },
            "separate policies",
        ),
    ],
    ids=["not-in-template", "condition", "not-resource", "managed-policy", "separate-policy"],
)
def test_a_role_iam_would_judge_otherwise_is_not_played(resources: dict[str, Any], reason: str) -> None:
    with pytest.raises(RoleNotPlayed, match=reason):
        role_statements({"Resources": resources}, {"Fn::GetAtt": ["Role", "Arn"]}, PLACE)


def test_a_policy_document_given_as_text_is_read() -> None:
    role = {
        "Type": "AWS::IAM::Role",
        "Properties": {"Policies": [{"PolicyDocument": json.dumps({"Statement": ALLOW_ALL_QUEUES})}]},
    }
    assert role_statements({"Resources": {"Role": role}}, {"Fn::GetAtt": "Role.Arn"}, PLACE) == [
        {"effect": "Allow", "actions": ["sqs:SendMessage"], "resources": ["*"]}
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"Ref": "Topic"}, "arn:aws:sns:us-east-1:123456789012:notify-test-purchase"),
        ({"Ref": "Queue"}, "*"),  # a queue's Ref is its URL
        ({"Fn::GetAtt": ["Api", "Arn"]}, "*"),
        (
            {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/x"},
            "arn:aws:execute-api:us-east-1:123456789012:*/x",
        ),
        (
            {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":execute-api:", {"Ref": "Api"}, "/POST/*"]]},
            "arn:aws:execute-api:*/POST/*",
        ),
        ({"Fn::ImportValue": "elsewhere"}, "*"),
        ({"Fn::GetAtt": "Queue.Arn"}, "arn:aws:sqs:us-east-1:123456789012:notify-test-deliveries"),
        ({"Fn::Sub": "${Queue.Arn}"}, "arn:aws:sqs:us-east-1:123456789012:notify-test-deliveries"),
        ({"Fn::Sub": ["${Ledger.Arn}/index/${Index}", {"Index": "by-user"}]}, f"{LEDGER}/index/by-user"),
        ({"Fn::Sub": "${!Literal}"}, "${!Literal}"),
    ],
)
def test_what_the_template_does_not_tell_here_is_a_wildcard(value: Any, expected: str) -> None:
    assert resolve_resource(TEMPLATE, value, PLACE) == expected


def test_a_call_is_allowed_by_its_action_on_every_resource_it_acts_on() -> None:
    statements = _statements()
    assert allows(statements, "dynamodb:GetItem", [LEDGER])
    assert allows(statements, "DynamoDB:getitem", [LEDGER])  # actions are case-insensitive
    assert not allows(
        statements, "dynamodb:GetItem", ["arn:aws:dynamodb:us-east-1:123456789012:table/notify-test-pacing"]
    )
    assert not allows(statements, "dynamodb:PutItem", [LEDGER])
    assert not allows(statements, "dynamodb:GetItem", [LEDGER, "arn:aws:dynamodb:us-east-1:123456789012:table/other"])
    assert allows(
        statements, "ssm:GetParameter", ["arn:aws:ssm:us-east-1:123456789012:parameter/notify/test/integrations/a/b"]
    )
    assert not allows(
        statements, "ssm:GetParameter", ["arn:aws:ssm:us-east-1:123456789012:parameter/notify/test/admin"]
    )
    assert not allows(statements, "sqs:DeleteMessage")  # a Deny statement allows nothing
    everything = [{"effect": "Allow", "actions": ["sqs:*"], "resources": ["*"]}]
    assert allows(everything, "sqs:DeleteMessage", ["arn:aws:sqs:us-east-1:123456789012:q"])
    assert not allows([*everything, *statements[-1:]], "sqs:DeleteMessage", ["arn:aws:sqs:us-east-1:123456789012:q"])
    assert allows(statements, "sqs:SendMessage")  # no resource to check: the action decides
    assert allows([], "sts:GetCallerIdentity")


def test_the_resources_of_a_call_are_the_arns_iam_checks() -> None:
    assert call_resources("dynamodb:Query", {"TableName": "t", "IndexName": "by-user"}, PLACE) == [
        "arn:aws:dynamodb:us-east-1:123456789012:table/t/index/by-user"
    ]
    assert call_resources("dynamodb:BatchGetItem", {"RequestItems": {"a": {}, "b": {}}}, PLACE) == [
        "arn:aws:dynamodb:us-east-1:123456789012:table/a",
        "arn:aws:dynamodb:us-east-1:123456789012:table/b",
    ]
    assert call_resources("sqs:SendMessage", {"QueueUrl": "http://127.0.0.1:3002/123456789012/q"}, PLACE) == [
        "arn:aws:sqs:us-east-1:123456789012:q"
    ]
    assert call_resources("ssm:GetParameters", {"Names": ["/a/b", "c"]}, PLACE) == [
        "arn:aws:ssm:us-east-1:123456789012:parameter/a/b",
        "arn:aws:ssm:us-east-1:123456789012:parameter/c",
    ]
    assert call_resources("sns:Publish", {"TargetArn": "arn:aws:sns:us-east-1:1:endpoint/GCM/a/b"}, PLACE) == [
        "arn:aws:sns:us-east-1:1:endpoint/GCM/a/b"
    ]
    assert call_resources("ses:SendEmail", {"Source": "a@example.com"}, PLACE) is None


def test_a_secret_read_through_its_ssm_reference_needs_the_secret_allowed_too() -> None:
    reference = {"Name": "/aws/reference/secretsmanager/notify-db"}
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:notify-db-AbCdEf"
    assert also_needed("ssm:GetParameter", reference, PLACE) == [("secretsmanager:GetSecretValue", [secret])]
    assert also_needed("ssm:GetParameter", {"Name": "/notify/test/database-url"}, PLACE) == []
    granted = [{"effect": "Allow", "actions": ["secretsmanager:GetSecretValue"], "resources": [secret[:-6] + "*"]}]
    assert allows(granted, "secretsmanager:GetSecretValue", [secret])


def test_a_worker_with_its_role_refuses_and_logs_what_the_role_does_not_allow(
    aws: AwsResources, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Restored after the test: install patches every client of the process, as the worker's.
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", botocore.client.BaseClient._make_api_call)
    iam.install(
        {
            iam.ROLE_STATEMENTS_VARIABLE: json.dumps(_statements()),
            "AWS_REGION": "us-east-1",
            "AWS_LAMBDA_FUNCTION_NAME": "notify-test-deliver",
        }
    )
    dynamodb = client("dynamodb")
    key = {"notification_id": {"S": "n"}, "delivery_key": {"S": "k"}}
    dynamodb.get_item(TableName="notify-test-ledger", Key=key)  # allowed
    with caplog.at_level(logging.ERROR, logger="lambda.runtime"), pytest.raises(ClientError) as refused:
        dynamodb.get_item(TableName="notify-test-pacing", Key={"destination": {"S": "d"}})
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "not authorized to perform: dynamodb:GetItem" in str(refused.value)
    assert caplog.messages == [
        f"{ROLE_REFUSAL} dynamodb:GetItem on arn:aws:dynamodb:us-east-1:123456789012:table/notify-test-pacing"
    ]
    with pytest.raises(ClientError) as refused_batch:
        client("sqs").send_message_batch(QueueUrl=aws.dead_letter_queue_url, Entries=[{"Id": "1", "MessageBody": "x"}])
    assert refused_batch.value.response["Error"]["Code"] == "AccessDenied"
    client("sqs").send_message_batch(QueueUrl=aws.delivery_queue_url, Entries=[{"Id": "1", "MessageBody": "x"}])


def test_without_a_role_nothing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    before = botocore.client.BaseClient._make_api_call
    iam.install({"AWS_REGION": "us-east-1"})
    assert botocore.client.BaseClient._make_api_call is before


def test_each_function_of_the_definition_gets_the_statements_of_its_role(tmp_path: Path) -> None:
    function = {"FunctionName": "svc-local-work", "Handler": "work.handler", "Role": {"Fn::GetAtt": ["Role", "Arn"]}}
    resources = {
        **TEMPLATE["Resources"],
        "WorkLambdaFunction": {"Type": "AWS::Lambda::Function", "Properties": function},
    }
    state = {
        "service": {
            "service": "svc",
            "provider": {"region": "us-east-1"},
            "functions": {"work": {"name": "svc-local-work"}},
        }
    }
    (tmp_path / "serverless-state.json").write_text(json.dumps(state))
    (tmp_path / "cloudformation-template-update-stack.json").write_text(json.dumps({"Resources": resources}))

    assert load(tmp_path, PLACE.account).functions["work"].role_statements == _statements()
