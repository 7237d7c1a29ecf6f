"""schemathesis against the local stack, longer than `make test` runs it: prints responses per operation and status.

Runs tests/e2e/test_api_fuzz.py (the same checks, the same seeded generation) with more examples per operation.
Usage: ``python -m bench.api_fuzz [max examples per operation, default 200]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EXAMPLES = 200


def main() -> int:
    """Run the fuzz test with more examples; print its counts and outcome."""
    examples = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_EXAMPLES
    with tempfile.TemporaryDirectory(prefix="api-fuzz-") as workdir:
        report = Path(workdir) / "report.json"
        env = {**os.environ, "API_FUZZ_MAX_EXAMPLES": str(examples), "API_FUZZ_REPORT": str(report)}
        started = time.monotonic()
        command = [sys.executable, "-m", "pytest", "tests/e2e/test_api_fuzz.py", "-q", "-p", "no:cacheprovider"]
        command += ["-o", "timeout=0"]
        result = subprocess.run(command, cwd=ROOT, env=env, check=False)
        took = time.monotonic() - started
        counts = json.loads(report.read_text()) if report.is_file() else {"responses": {}}
    responses: dict[str, int] = counts["responses"]
    print(f"api fuzz: {examples} examples per operation, {sum(responses.values())} responses in {took:.0f} s")
    for label, count in responses.items():
        print(f"  {count:6d}  {label}")
    server_errors = sum(count for label, count in responses.items() if label.rsplit(" ", 1)[-1].startswith("5"))
    print(f"5xx: {server_errors}; pytest exit code {result.returncode}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
