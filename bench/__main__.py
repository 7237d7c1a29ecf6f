"""Run every benchmark under bench/, one process each, then write bench/RESULTS.md: ``python -m bench [--quick]``.

``make bench`` runs this (``make bench QUICK=1`` or ``make bench-quick``: the quick forms, a few minutes in all). A
benchmark is a module of bench/ run as ``python -m bench.<name>`` (it has a ``__main__`` block and is no helper);
they run in ``ORDER``, any other after them by name. What each prints is shown and kept in
``bench/results/<name>.out``, for the report of a benchmark that saves no fragment. One that fails does not stop the
others; the report names it and the exit code is 1. ``python -m bench load drill`` runs only those two and keeps the
other figures of the last run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from bench.report import ORDER, RESULTS_DIR, ROOT, RUN_FILE
from bench.report import main as write_report
from bench.results import PLOTS_DIR

BENCH_DIR = ROOT / "bench"
# Modules of bench/ that are not benchmarks.
HELPERS = frozenset(
    {"__init__", "__main__", "environment", "plots", "publish_harness", "receiver", "report", "results", "workers"}
)
# What a benchmark is given in the full run (the quick run gives each ``--quick``).
FULL_ARGS = {"burst": ["--outage"]}


def benchmarks() -> list[str]:
    """Return the benchmarks of bench/, in the order they run."""
    found = {
        path.stem
        for path in BENCH_DIR.glob("*.py")
        if path.stem not in HELPERS and 'if __name__ == "__main__":' in path.read_text()
    }
    return [name for name in ORDER if name in found] + sorted(found - set(ORDER))


def run(name: str, quick: bool) -> int:
    """Run one benchmark, echoing what it prints and keeping it in ``bench/results/<name>.out``."""
    command = [sys.executable, "-m", f"bench.{name}", *(["--quick"] if quick else FULL_ARGS.get(name, []))]
    print(f"\n=== {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    with (RESULTS_DIR / f"{name}.out").open("w") as kept:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            kept.write(line)
        code = process.wait()
    print(f"=== {name}: exit code {code}, {time.monotonic() - started:.0f} s", flush=True)
    return code


def main() -> int:
    """Run the benchmarks and assemble the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick form of every benchmark")
    parser.add_argument("only", nargs="*", help="run only these (default: every benchmark)")
    args = parser.parse_args()
    available = benchmarks()
    unknown = sorted(set(args.only) - set(available))
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; there are {', '.join(available)}")
    names = [name for name in available if name in args.only] or available
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    if not args.only:
        # A run of every benchmark starts afresh, so that RESULTS.md and bench/plots/ come from this run only.
        for stale in [*RESULTS_DIR.glob("*.json"), *RESULTS_DIR.glob("*.out"), *PLOTS_DIR.glob("*.png")]:
            stale.unlink()
    codes: dict[str, int] = json.loads(RUN_FILE.read_text()) if args.only and RUN_FILE.is_file() else {}
    for name in names:
        codes[name] = run(name, args.quick)
        RUN_FILE.write_text(json.dumps(codes, indent=2) + "\n")
    write_report()
    return 1 if any(codes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
