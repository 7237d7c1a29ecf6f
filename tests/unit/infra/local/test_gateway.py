"""Route matching and authorizer policy evaluation of the local API Gateway."""

from __future__ import annotations

from infra.local.definition import HttpEvent
from infra.local.gateway import RouteTable, policy_allows

ARN = "arn:aws:execute-api:us-east-1:123456789012:local/local/GET/v1/channels/a/topics"


def _table(*routes: tuple[str, str]) -> RouteTable:
    return RouteTable([HttpEvent(function="fn", method=method, path=path) for method, path in routes])


def test_route_table_matches_parameters_and_decodes_them() -> None:
    found = _table(("POST", "/v1/notifications/{channel}/{topic}")).match("POST", "/v1/notifications/a%20b/c")

    assert found is not None
    assert found[1] == {"channel": "a b", "topic": "c"}


def test_route_table_literal_segment_wins_over_parameter() -> None:
    table = _table(("GET", "/v1/notifications/{notification_id}"), ("GET", "/v1/notifications/latest"))

    found = table.match("GET", "/v1/notifications/latest")

    assert found is not None
    assert found[0].event.path == "/v1/notifications/latest"


def test_route_table_wrong_method_does_not_match() -> None:
    assert _table(("GET", "/v1/health")).match("POST", "/v1/health") is None


def test_route_table_any_method_matches() -> None:
    assert _table(("ANY", "/v1/health")).match("DELETE", "/v1/health") is not None


def test_route_table_greedy_parameter_takes_the_rest() -> None:
    found = _table(("GET", "/files/{proxy+}")).match("GET", "/files/a/b/c")

    assert found is not None
    assert found[1] == {"proxy": "a/b/c"}


def test_route_table_parameter_does_not_span_segments() -> None:
    assert _table(("GET", "/v1/x/{id}")).match("GET", "/v1/x/a/b") is None


def test_policy_allows_wildcard_allow() -> None:
    policy = {"Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": ["arn:aws:execute-api:*"]}]}

    assert policy_allows(policy, ARN) is True


def test_policy_allows_explicit_deny_wins() -> None:
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"},
            {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": "*/GET/*"},
        ]
    }

    assert policy_allows(policy, ARN) is False


def test_policy_allows_nothing_matching_is_none() -> None:
    policy = {"Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*/POST/*"}]}

    assert policy_allows(policy, ARN) is None
