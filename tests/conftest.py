"""Fixtures every suite shares: a clean environment, fresh cached clients, and AWS under moto."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Set before any project import reads them: no real credentials, no X-Ray, a fixed region and namespace.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "notify-test",
        "POWERTOOLS_METRICS_NAMESPACE": "NotifyTest",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
        "STAGE": "test",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

# moto adds its hook to botocore's built-in handlers when imported: imported first, every session the suite makes (the
# product's botocore one, tests/support/aws.py's boto3 one) carries it, and a client is answered by moto whenever a
# mock is active.
import moto  # noqa: F401

from core import clients
from core.observability import logger
from core.settings import role_settings
from infra.local.moto_dynamodb import serialize_writes
from tests.fakes.lambda_context import FakeLambdaContext
from tests.fakes.log_stream import CurrentStdout
from tests.support.aws import AwsResources, create_resources
from tests.support.postgres import TEST_DATABASE_URL

# Concurrent consumers of a test are threads of this process: moto's DynamoDB must check a condition and write in one
# step, as DynamoDB does, or two of them take the same send slot.
serialize_writes()


def pytest_configure(config: pytest.Config) -> None:
    """Keep the shell's variables out of every function's settings; the `aws` fixture sets the resource names.

    With a Lambda runtime variable left in (``AWS_LAMBDA_FUNCTION_NAME``), private targets would be refused as inside
    Lambda; with a resource name or a tunable left in, a test would run on it.
    """
    # The shell's DATABASE_URL names the server the PostgreSQL fixtures use (tests/support/postgres.py), not a setting.
    if os.environ.get("DATABASE_URL"):
        os.environ.setdefault(TEST_DATABASE_URL, os.environ["DATABASE_URL"])
    for model in role_settings().values():
        for field in model.model_fields.values():
            if field.alias and field.alias not in {"STAGE", "AWS_REGION"}:
                os.environ.pop(field.alias, None)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """On several workers (``make test``: ``-n 2``), hand out whole modules, and every e2e test as one unit: the
    worker that takes it starts the one local stack those tests share (two stacks would also package at once)."""
    from xdist.scheduler import LoadScopeScheduling

    class _Modules(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "e2e" if module.startswith("tests/e2e/") else module

    return _Modules(config, log)


@pytest.fixture(autouse=True)
def _fresh_clients() -> Iterator[None]:
    """Every test starts with no cached client, store or settings."""
    clients.reset()
    yield
    clients.reset()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsResources]:
    """The service's tables, queues and parameters in moto, and the environment that names them."""
    from moto import mock_aws

    with mock_aws():
        resources = create_resources()
        for key, value in resources.env.items():
            monkeypatch.setenv(key, value)
        clients.reset()
        yield resources


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    """A Lambda context with a 30 s timeout."""
    return FakeLambdaContext()


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """What the functions log: powertools' handler holds the stdout of import time, so it is redirected to capsys."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(CurrentStdout())
    yield lambda: capsys.readouterr().out
    handler.setStream(previous)
