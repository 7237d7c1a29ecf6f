"""schemathesis against the local stack, longer than `make test` runs it: prints responses per operation and status.

Runs tests/e2e/test_api_fuzz.py (the same checks, the same seeded generation) with more examples per operation.
Usage: ``python -m bench.api_fuzz [max examples per operation, default 200]``; ``--quick``: 25.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.results import Fragment, Table, Target

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EXAMPLES = 200
QUICK_EXAMPLES = 25


def main() -> int:
    """Run the fuzz test with more examples; print its counts and outcome, and save them for the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("examples", nargs="?", type=int, default=None, help="max examples per operation")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EXAMPLES} examples per operation")
    args = parser.parse_args()
    examples = args.examples or (QUICK_EXAMPLES if args.quick else DEFAULT_EXAMPLES)
    fragment = Fragment(
        "api_fuzz",
        "API fuzz (schemathesis against the local stack)",
        f"python -m bench.api_fuzz {examples}" + (" --quick" if args.quick else ""),
        args.quick,
    )
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
    fragment.tables.append(
        Table(
            f"{examples} examples per operation, {sum(responses.values())} responses in {took:.0f} s",
            ["responses", "operation and status"],
            [[str(count), label] for label, count in responses.items()],
        )
    )
    fragment.targets.append(
        Target(
            "api fuzz: 5xx answers, checks failed",
            f"{server_errors}, exit {result.returncode}",
            "0, exit 0",
            (server_errors == 0 and result.returncode == 0),
        )
    )
    fragment.save()
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
