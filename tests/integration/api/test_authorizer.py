"""Integration tests of the admin TOKEN authorizer (api/authorizer.py), reading the token hash from SSM on moto."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from api import authorizer
from api.authorizer import handler
from core.errors import UpstreamError
from tests.fakes.delivery import FakeClock
from tests.fakes.lambda_context import FakeLambdaContext
from tests.support.aws import ADMIN_TOKEN, NAMES, AwsResources
from tests.support.events import authorizer_event

API_ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev"


def _statement(policy: dict[str, Any]) -> dict[str, Any]:
    statements = policy["policyDocument"]["Statement"]
    assert len(statements) == 1
    statement: dict[str, Any] = statements[0]
    return statement


@pytest.mark.usefixtures("aws")
def test_authorizer_valid_token_allows_every_route(lambda_context: FakeLambdaContext) -> None:
    policy = handler(authorizer_event(f"Bearer {ADMIN_TOKEN}"), lambda_context)

    statement = _statement(policy)
    assert policy["principalId"] == "admin"
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "execute-api:Invoke"
    assert statement["Resource"] == [f"{API_ARN}/*/*"]


@pytest.mark.usefixtures("aws")
def test_authorizer_lowercase_scheme_is_accepted(lambda_context: FakeLambdaContext) -> None:
    policy = handler(authorizer_event(f"bearer {ADMIN_TOKEN}"), lambda_context)

    assert _statement(policy)["Effect"] == "Allow"


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Bearer wrong-token", id="wrong-token"),
        pytest.param("Bearer publisher-api-key-0001", id="publisher-key"),
        pytest.param(f"Bearer {ADMIN_TOKEN}x", id="token-with-suffix"),
        pytest.param(f"Bearer {ADMIN_TOKEN[:-1]}", id="token-prefix"),
    ],
)
def test_authorizer_wrong_token_denies_every_route(lambda_context: FakeLambdaContext, header: str) -> None:
    policy = handler(authorizer_event(header), lambda_context)

    statement = _statement(policy)
    assert statement["Effect"] == "Deny"
    assert statement["Resource"] == [f"{API_ARN}/*/*"]


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(
    "header",
    [
        pytest.param("", id="empty"),
        pytest.param("Bearer", id="scheme-only"),
        pytest.param("Bearer   ", id="blank-token"),
        pytest.param(f"Basic {ADMIN_TOKEN}", id="basic-scheme"),
        pytest.param(ADMIN_TOKEN, id="token-without-scheme"),
    ],
)
def test_authorizer_missing_or_malformed_header_raises_unauthorized(
    lambda_context: FakeLambdaContext, header: str
) -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        handler(authorizer_event(header), lambda_context)


def test_authorizer_refusal_never_logs_the_token(
    aws: AwsResources, lambda_context: FakeLambdaContext, logs: Callable[[], str]
) -> None:
    handler(authorizer_event("Bearer wrong-token-5e1f"), lambda_context)

    output = logs()
    assert "admin token refused" in output
    assert "wrong-token-5e1f" not in output


def test_authorizer_header_without_bearer_logs_one_warning_without_the_token(
    aws: AwsResources, lambda_context: FakeLambdaContext, logs: Callable[[], str]
) -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        handler(authorizer_event("bare-token-5e1f"), lambda_context)

    output = logs()
    assert output.count("\n") == 1
    assert '"level":"WARNING"' in output
    assert "admin token refused" in output
    assert "bare-token-5e1f" not in output


NEW_TOKEN = "rotated-admin-token-9876543210"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The authorizer's clock, standing still until a test advances it."""
    fake = FakeClock(1000.0)
    monkeypatch.setattr(authorizer, "wall_clock", fake)
    return fake


def _rotate(aws: AwsResources) -> None:
    """Rotate the admin token as README "Deploy" says: a new hash over the parameter."""
    digest = hashlib.sha256(NEW_TOKEN.encode()).hexdigest()
    aws.ssm.put_parameter(Name=NAMES["ADMIN_TOKEN_HASH_PARAMETER"], Value=digest, Type="SecureString", Overwrite=True)


def _effect(token: str, context: FakeLambdaContext) -> str:
    effect: str = _statement(handler(authorizer_event(f"Bearer {token}"), context))["Effect"]
    return effect


def test_authorizer_rotated_token_still_allowed_until_the_hash_is_30_seconds_old(
    aws: AwsResources, lambda_context: FakeLambdaContext, clock: FakeClock
) -> None:
    assert _effect(ADMIN_TOKEN, lambda_context) == "Allow"
    _rotate(aws)
    clock.advance(29.9)

    assert _effect(ADMIN_TOKEN, lambda_context) == "Allow"


def test_authorizer_rotated_token_denied_once_the_hash_is_30_seconds_old(
    aws: AwsResources, lambda_context: FakeLambdaContext, clock: FakeClock
) -> None:
    assert _effect(ADMIN_TOKEN, lambda_context) == "Allow"
    _rotate(aws)
    clock.advance(30)

    assert _effect(ADMIN_TOKEN, lambda_context) == "Deny"
    assert _effect(NEW_TOKEN, lambda_context) == "Allow"


def test_authorizer_token_cache_age_follows_its_setting(
    aws: AwsResources, lambda_context: FakeLambdaContext, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADMIN_TOKEN_CACHE_SECONDS", "5")
    _effect(ADMIN_TOKEN, lambda_context)
    _rotate(aws)
    clock.advance(5)

    assert _effect(NEW_TOKEN, lambda_context) == "Allow"


def test_authorizer_hash_parameter_missing_raises_upstream_error_naming_the_code(
    aws: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    aws.ssm.delete_parameter(Name=NAMES["ADMIN_TOKEN_HASH_PARAMETER"])

    with pytest.raises(UpstreamError, match=r"^reading the admin token hash failed \(ParameterNotFound\)$") as raised:
        handler(authorizer_event(f"Bearer {ADMIN_TOKEN}"), lambda_context)

    assert isinstance(raised.value.__cause__, ClientError)
