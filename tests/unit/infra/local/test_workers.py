"""A function's process environment and its worker's log on the local stack (infra/local/workers.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from core.roles.deliver import DeliverSettings
from infra.local.config import ROOT
from infra.local.definition import FunctionSpec
from infra.local.iam import ROLE_REFUSAL
from infra.local.logs import parse
from infra.local.workers import FunctionPool, Invocation, function_env

SPEC = FunctionSpec(
    key="deliver",
    name="notify-local-deliver",
    logical_id="DeliverLambdaFunction",
    handler="consumer/handler.handler",
    timeout=30,
    memory=256,
    environment={},
)
RESOLVED = {
    "STAGE": "local",
    "DELIVERIES_TABLE": "notify-local-ledger",
    "DELIVERY_QUEUE_URL": "http://127.0.0.1:3002/123456789012/notify-local-deliveries",
    "DEAD_LETTER_QUEUE_URL": "http://127.0.0.1:3002/123456789012/notify-local-deliveries-dlq",
    "PACING_TABLE": "notify-local-pacing",
    "ALLOW_PRIVATE_TARGETS": "true",
}


def _env(resolved: dict[str, str]) -> dict[str, str]:
    return function_env(SPEC, resolved, "http://127.0.0.1:3002", "us-east-1", {})


def test_function_env_carries_the_local_stack_marker_over_the_definition() -> None:
    assert _env({**RESOLVED, "NOTIFY_LOCAL_STACK": "0"})["NOTIFY_LOCAL_STACK"] == "1"


def test_function_env_passes_on_no_variable_only_the_real_lambda_runtime_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.12")
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")

    env = _env(RESOLVED)

    assert "AWS_EXECUTION_ENV" not in env
    assert "AWS_LAMBDA_RUNTIME_API" not in env


def test_function_env_local_deliver_may_allow_private_targets() -> None:
    settings = DeliverSettings.from_env(_env(RESOLVED))

    assert settings.allow_private_targets is True
    assert settings.on_local_stack is True


@pytest.mark.parametrize(("terminal", "functions"), [("DEBUG", "DEBUG"), ("INFO", "INFO"), ("WARNING", "INFO")])
def test_function_env_log_level_sets_powertools_level(terminal: str, functions: str) -> None:
    env = function_env(SPEC, RESOLVED, "http://127.0.0.1:3002", "us-east-1", {}, log_level=terminal)

    assert env["POWERTOOLS_LOG_LEVEL"] == functions


def test_function_env_log_level_overrides_the_definitions_level() -> None:
    env = function_env(
        SPEC, {**RESOLVED, "POWERTOOLS_LOG_LEVEL": "ERROR"}, "http://127.0.0.1:3002", "us-east-1", {}, log_level="DEBUG"
    )

    assert env["POWERTOOLS_LOG_LEVEL"] == "DEBUG"


def test_function_env_without_log_level_leaves_powertools_default() -> None:
    assert "POWERTOOLS_LOG_LEVEL" not in _env(RESOLVED)


# --- a worker's log: one JSON line per record ------------------------------------------------------------------------

HANDLERS = """
import logging
import warnings

from aws_lambda_powertools import Logger

logger = Logger(service="notify-test")


def powertools(event, context):
    logger.info("from powertools", extra={"attempt": 1})
    return "ok"


def stdlib(event, context):
    logging.getLogger("botocore.example").warning("from the standard logging")
    logging.getLogger("botocore.example").info("below the root level")
    return "ok"


def warns(event, context):
    warnings.warn("careful", UserWarning, stacklevel=1)
    return "ok"


def raises(event, context):
    raise ValueError("bad value")


def refuses(event, context):
    raise Exception("Unauthorized")


def prints(event, context):
    print("printed")
    return "ok"
"""


def _invoke(
    tmp_path: Path, function: str, log_level: str | None = None, source: str = HANDLERS
) -> tuple[Invocation, list[str]]:
    (tmp_path / "handlers.py").write_text(source)
    spec = replace(SPEC, handler=f"handlers.{function}", timeout=20)
    env = {
        **function_env(spec, {}, "http://127.0.0.1:9", "us-east-1", {}, log_level=log_level),
        "PYTHONPATH": str(ROOT),
    }
    log = tmp_path / "function.log"
    pool = FunctionPool(spec, env, tmp_path, log, max_workers=1)
    try:
        outcome = pool.invoke({})
    finally:
        pool.close()
    return outcome, log.read_text().splitlines()


def _records(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def test_worker_powertools_record_is_written_once(tmp_path: Path) -> None:
    _, lines = _invoke(tmp_path, "powertools")

    records = _records(lines)
    assert [record["message"] for record in records] == ["from powertools"]
    assert records[0]["attempt"] == 1


def test_worker_powertools_debug_record_is_written_at_debug(tmp_path: Path) -> None:
    source = HANDLERS.replace('logger.info("from powertools"', 'logger.debug("from powertools"')

    _, lines = _invoke(tmp_path, "powertools", log_level="DEBUG", source=source)

    assert [record["level"] for record in _records(lines)] == ["DEBUG"]


def test_worker_standard_logging_record_is_one_json_line(tmp_path: Path) -> None:
    _, lines = _invoke(tmp_path, "stdlib")

    records = _records(lines)
    assert [(record["level"], record["message"]) for record in records] == [("WARNING", "from the standard logging")]
    assert records[0]["function_request_id"]
    assert parse(lines[0]) is not None


def test_worker_warning_is_one_json_line(tmp_path: Path) -> None:
    _, lines = _invoke(tmp_path, "warns")

    records = _records(lines)
    assert len(records) == 1
    assert records[0]["level"] == "WARNING"
    assert "UserWarning: careful" in records[0]["message"]


def test_worker_handler_error_is_one_json_record_with_its_traceback(tmp_path: Path) -> None:
    outcome, lines = _invoke(tmp_path, "raises")

    assert outcome.error is not None
    assert outcome.error["errorType"] == "ValueError"
    [record] = _records(lines)
    assert record["level"] == "ERROR"
    assert record["message"] == "invocation failed"
    assert record["exception_name"] == "ValueError"
    assert record["exception"].splitlines()[-1] == "ValueError: bad value"


def test_worker_authorizer_unauthorized_is_a_one_line_warning(tmp_path: Path) -> None:
    outcome, lines = _invoke(tmp_path, "refuses")

    assert outcome.error is not None
    assert outcome.error["errorMessage"] == "Unauthorized"
    [record] = _records(lines)
    assert record["level"] == "WARNING"
    assert "exception" not in record


def test_worker_import_failure_is_one_json_record(tmp_path: Path) -> None:
    _, lines = _invoke(tmp_path, "missing")

    [record] = _records(lines)
    assert record["message"] == "handler import failed"
    assert record["exception"].splitlines()[-1].startswith("AttributeError")


def test_worker_print_stays_a_plain_line(tmp_path: Path) -> None:
    _, lines = _invoke(tmp_path, "prints")

    assert lines == ["printed"]


def test_line_writer_workers_appending_to_one_log_never_join_two_lines(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from infra.local.worker import line_writer\n"
        "out = line_writer(2)\n"
        "for i in range(2000):\n"
        '    print(\'{"_aws": {"n": %d}, "pad": "%s"}\' % (i, \'y\' * 300), file=out)\n'
        "out.flush()\n"
    )
    log = tmp_path / "function.log"
    with log.open("ab") as shared:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        writers = [subprocess.Popen([sys.executable, "-c", code], stderr=shared, env=env) for _ in range(3)]
        assert [writer.wait(60) for writer in writers] == [0, 0, 0]

    lines = log.read_text().splitlines()

    assert len(lines) == 6000
    assert [line for line in lines if line.count('{"_aws"') != 1] == []


CALLS_AWS = """
import boto3
from botocore.exceptions import ClientError


def reads(event, context):
    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    try:
        client.get_item(TableName=event["table"], Key={"id": {"S": "1"}})
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    return "read"
"""


def test_worker_refuses_an_aws_call_its_role_does_not_allow_and_logs_it(tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text(CALLS_AWS)
    allowed = "arn:aws:dynamodb:us-east-1:123456789012:table/allowed"
    spec = replace(
        SPEC,
        handler="handlers.reads",
        timeout=20,
        role_statements=[{"actions": ["dynamodb:GetItem"], "resources": [allowed]}],
    )
    env = {**function_env(spec, {}, "http://127.0.0.1:9", "us-east-1", {}), "PYTHONPATH": str(ROOT)}
    log = tmp_path / "function.log"
    pool = FunctionPool(spec, env, tmp_path, log, max_workers=1)
    try:
        refused = pool.invoke({"table": "other"})
    finally:
        pool.close()

    assert refused.result == "AccessDeniedException"  # refused before any request left (nothing listens on :9)
    [record] = _records(log.read_text().splitlines())
    assert record["message"] == (
        f"{ROLE_REFUSAL} dynamodb:GetItem on arn:aws:dynamodb:us-east-1:123456789012:table/other"
    )
