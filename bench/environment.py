"""The process environment the benchmarks run under: moto credentials, quiet powertools, a deployed function's env."""

from __future__ import annotations

import os

# What serverless.yml's provider environment sets that bears on cold start (see bench/intake.py).
FUNCTION_ENV = {"PYDANTIC_DISABLE_PLUGINS": "__all__"}


def use_bench_environment(**extra: str) -> None:
    """Point AWS at moto's fake credentials, silence logs and X-Ray, and set the deployed functions' environment."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_SERVICE_NAME": "notify-bench",
            "POWERTOOLS_METRICS_NAMESPACE": "NotifyBench",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            **FUNCTION_ENV,
            **extra,
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
