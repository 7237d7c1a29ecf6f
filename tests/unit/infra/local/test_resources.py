"""Deriving the template moto creates: what is dropped, what is resolved through outputs."""

from __future__ import annotations

import json

import pytest

from infra.local.resources import (
    ResourceError,
    condition_key,
    create_explicit,
    function_values,
    prepare,
    referenced,
    substitute,
)

SUPPORTED = {"AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::IAM::Role", "AWS::SSM::Parameter", "AWS::Events::Rule"}

TEMPLATE = {
    "Resources": {
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "q"}},
        "Topic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {
                "Subscription": [
                    {"Protocol": "lambda", "Endpoint": {"Fn::GetAtt": ["WorkLambdaFunction", "Arn"]}},
                    {"Protocol": "sqs", "Endpoint": {"Fn::GetAtt": ["Queue", "Arn"]}},
                ]
            },
        },
        "WorkLambdaFunction": {
            "Type": "AWS::Lambda::Function",
            "Properties": {"FunctionName": "svc-work"},
            "DependsOn": ["Queue"],
        },
        "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {}},
        "ApiUrl": {"Type": "AWS::SSM::Parameter", "Properties": {"Value": {"Fn::Sub": "https://${Api}.example"}}},
        "Rule": {
            "Type": "AWS::Events::Rule",
            "Properties": {"Targets": [{"Arn": {"Fn::GetAtt": ["WorkLambdaFunction", "Arn"]}}]},
        },
        "Policy": {"Type": "AWS::SQS::QueuePolicy", "Properties": {"Queues": [{"Ref": "Queue"}]}},
        "Alarm": {"Type": "AWS::Unknown::Thing", "Properties": {}},
        "Role": {"Type": "AWS::IAM::Role", "Properties": {}, "DependsOn": ["WorkLambdaFunction", "Queue"]},
    }
}


def test_referenced_finds_ref_getatt_and_sub_names() -> None:
    value = {"a": {"Ref": "A"}, "b": {"Fn::GetAtt": "B.Arn"}, "c": {"Fn::Sub": "${C.Arn}/${AWS::Region}"}}

    assert referenced(value) == {"A", "B", "C"}


def test_prepare_keeps_what_moto_creates_and_drops_what_is_played_locally() -> None:
    prepared = prepare(TEMPLATE, SUPPORTED, [])

    assert set(prepared.template["Resources"]) == {"Queue", "Topic", "Role"}
    assert set(prepared.explicit) == {"Policy"}
    assert prepared.skipped == {"Alarm": "AWS::Unknown::Thing", "ApiUrl": "AWS::SSM::Parameter"}


def test_prepare_strips_lambda_subscriptions_of_topics_and_dropped_dependencies() -> None:
    resources = prepare(TEMPLATE, SUPPORTED, []).template["Resources"]

    assert [item["Protocol"] for item in resources["Topic"]["Properties"]["Subscription"]] == ["sqs"]
    assert resources["Role"]["DependsOn"] == ["Queue"]


def test_prepare_adds_an_output_per_wanted_intrinsic_once() -> None:
    wanted = [{"URL": {"Ref": "Queue"}, "SAME": {"Ref": "Queue"}, "PLAIN": "x"}]

    prepared = prepare(TEMPLATE, SUPPORTED, wanted)

    assert list(prepared.template["Outputs"].values()) == [{"Value": {"Ref": "Queue"}}]
    assert list(prepared.outputs.values()) == [json.dumps({"Ref": "Queue"})]


def test_function_values_and_substitute_resolve_function_references() -> None:
    known = function_values(TEMPLATE, "us-east-1", "123456789012")

    value = substitute(
        {"fn": {"Ref": "WorkLambdaFunction"}, "arn": {"Fn::GetAtt": ["WorkLambdaFunction", "Arn"]}}, known
    )

    assert value == {"fn": "svc-work", "arn": "arn:aws:lambda:us-east-1:123456789012:function:svc-work"}


def test_substitute_unresolved_intrinsic_is_an_error() -> None:
    with pytest.raises(ResourceError):
        substitute({"Ref": "Nowhere"}, {})


def test_prepare_asks_moto_for_the_condition_of_a_conditional_explicit_resource() -> None:
    template = {
        "Conditions": {"HasEmail": {"Fn::Not": [{"Fn::Equals": ["", ""]}]}},
        "Resources": {
            "Topic": {"Type": "AWS::SNS::Topic", "Properties": {}},
            "Mail": {
                "Type": "AWS::SNS::Subscription",
                "Condition": "HasEmail",
                "Properties": {"TopicArn": {"Ref": "Topic"}, "Protocol": "email", "Endpoint": "a@example.com"},
            },
        },
    }

    prepared = prepare(template, SUPPORTED, [])

    assert prepared.template["Conditions"] == template["Conditions"]
    assert {"Condition": "HasEmail", "Value": "true"} in prepared.template["Outputs"].values()
    assert condition_key("Mail") in prepared.outputs.values()


def test_create_explicit_skips_a_resource_whose_condition_is_false() -> None:
    calls: list[str] = []
    template = {"Resources": {"Mail": {"Type": "AWS::SNS::Subscription", "Condition": "No", "Properties": {}}}}
    prepared = prepare(template, SUPPORTED, [])

    created = create_explicit(calls.append, prepared, {})

    assert (created, calls) == ([], [])
