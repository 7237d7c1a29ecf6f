"""schemathesis against the local stack: every request generated from the API's own document is answered as the
document says (no 5xx, documented statuses, content types and bodies).

The run is bounded and seeded; ``make bench`` (bench/api_fuzz.py) runs it with more examples and prints the counts.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = int(os.environ.get("API_FUZZ_MAX_EXAMPLES", "12"))
# Where bench/api_fuzz.py reads the counts of a run; unset in `make test`.
REPORT = os.environ.get("API_FUZZ_REPORT")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
TALLY: Counter[str] = Counter()


@pytest.fixture(scope="module")
def api_schema(stack: Stack) -> schemathesis.BaseSchema:
    """The document the running stack serves, loaded as schemathesis sees it."""
    schema = schemathesis.openapi.from_url(f"{stack.api}/v1/openapi.json", timeout=40)
    schema.config.generation.update(modes=[GenerationMode.POSITIVE], max_examples=MAX_EXAMPLES, deterministic=True)
    return schema


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    """Write the run's counts where bench/api_fuzz.py asked for them."""
    started = time.monotonic()
    yield
    if REPORT:
        counts = {"seconds": round(time.monotonic() - started, 1), "responses": dict(sorted(TALLY.items()))}
        Path(REPORT).write_text(json.dumps(counts))


def auth_headers(case: Case, stack: Stack) -> dict[str, str]:
    """Return the credentials the operation's security asks for: the publisher key or the admin token."""
    schemes = {name for requirement in case.operation.definition.raw.get("security", []) for name in requirement}
    headers: dict[str, str] = {}
    if "api_key" in schemes:
        headers["x-api-key"] = stack.api_key
    if "admin" in schemes:
        headers["Authorization"] = f"Bearer {stack.admin_token}"
    return headers


def _served() -> list[tuple[str, str]]:
    """Every operation of the document: the routers' routes, and the publish function's (declared in ``core``)."""
    from api.openapi import DECLARED, routers

    documented = [
        (method, router.documented(method, resource)) for router in routers() for method, resource in router.routes
    ]
    return documented + [(method, path) for method, path, _ in DECLARED]


@pytest.mark.parametrize(("method", "path"), _served(), ids=str)
def test_api_generated_requests_answered_as_documented(
    api_schema: schemathesis.BaseSchema, stack: Stack, method: str, path: str
) -> None:
    # schemathesis.pytest.from_fixture (the lazy loader) reads request.node._nodeid, gone in pytest 9; operations are
    # driven through hypothesis directly instead.
    operation = api_schema.find_operation_by_label(f"{method} {path}")
    assert operation is not None, f"{method} {path} is not in the stack's document"

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(GenerationMode.POSITIVE))
    def run(case: Case) -> None:
        status: Any = "error"
        try:
            headers = auth_headers(case, stack)
            status = case.call_and_validate(base_url=stack.api, headers=headers, checks=CHECKS).status_code
        finally:
            TALLY[f"{method} {path} → {status}"] += 1

    run()
