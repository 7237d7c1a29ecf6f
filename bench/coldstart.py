"""Cold start: each function's handler import beside a bare ``import boto3``, and the size of each function's artifact.

Every handler serverless.yml names is imported in fresh processes of this interpreter, alternating with ``import
boto3``, in the same run: with bytecode compiled beforehand into one cache (as the deploy workflow ships it), and with
an empty cache (each process compiles what it imports, as a package shipped without bytecode does). The figure is the
median of each; the target is a handler at most 1.5x boto3 in both. Artifact sizes come from the last ``make package``
(``.build/ci``), when there is one. ``--quick``: fewer runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from bench.environment import FUNCTION_ENV, use_bench_environment
from bench.results import Fragment, Table, Target

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.5
RUNS = {True: 21, False: 7}  # cached bytecode: many quick runs; compiling: fewer slow ones
QUICK_RUNS = {True: 7, False: 3}
PACKAGE_DIR = ROOT / ".build" / "ci"
# What every handler imports before any of this repository's code: the floor under each ratio. Clients are botocore's
# (core/clients.py); no function loads boto3 itself at import. Defining a model (every handler's settings are one)
# imports pydantic.fields, and with it pydantic.types and annotated_types.
LIBRARIES = (
    "import botocore.session, botocore.config, pydantic; from pydantic import BaseModel; import pydantic.fields; "
    "from aws_lambda_powertools import Logger, Metrics, Tracer"
)
LIBRARIES_LABEL = "(botocore + pydantic + powertools)"

use_bench_environment()


def handler_modules() -> dict[str, str]:
    """Return each function's handler module by function name, from serverless.yml."""
    definition = yaml.safe_load((ROOT / "serverless.yml").read_text())
    return {
        name: str(function["handler"]).rsplit(".", 1)[0].replace("/", ".")
        for name, function in definition["functions"].items()
    }


def _last_line(code: str, **env: str) -> str:
    """Run ``code`` in a fresh process of this interpreter with the functions' environment (plus ``env``) and return
    the last line it printed."""
    env = {**os.environ, **FUNCTION_ENV, "PYTHONPATH": str(ROOT), **env}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    return result.stdout.strip().splitlines()[-1]


def statement_ms(statement: str, pycache: str, write_bytecode: bool) -> float:
    """Return how long ``statement`` (imports) takes in a fresh process with the functions' environment, in ms;
    bytecode is cached under ``pycache`` only when ``write_bytecode``."""
    code = f"import time; t = time.perf_counter(); {statement}; print((time.perf_counter() - t) * 1000)"
    # The process inherits this shell's PYTHONDONTWRITEBYTECODE unless it is set here: "" writes bytecode.
    return float(_last_line(code, PYTHONPYCACHEPREFIX=pycache, PYTHONDONTWRITEBYTECODE="" if write_bytecode else "1"))


def loads_boto3(module: str) -> bool:
    """Tell whether importing ``module`` loads boto3 (not only botocore), in a fresh process."""
    return _last_line(f"import sys, {module}; print('boto3' in sys.modules)") == "True"


def measure(modules: list[str], cached: bool, runs: int) -> dict[str, float]:
    """Return the median import time of boto3, of the libraries every handler uses, and of each module, alternating
    fresh processes; keyed by module name (the libraries by ``LIBRARIES``)."""
    statements = {"boto3": "import boto3", LIBRARIES: LIBRARIES, **{module: f"import {module}" for module in modules}}
    times: dict[str, list[float]] = {key: [] for key in statements}
    with tempfile.TemporaryDirectory() as shared:
        if cached:
            for statement in statements.values():
                statement_ms(statement, shared, write_bytecode=True)
        for _ in range(runs):
            for key, values in times.items():
                if cached:
                    values.append(statement_ms(statements[key], shared, write_bytecode=False))
                else:
                    with tempfile.TemporaryDirectory() as empty:
                        values.append(statement_ms(statements[key], empty, write_bytecode=False))
    return {key: statistics.median(values) for key, values in times.items()}


def budget_note(medians: dict[bool, dict[str, float]], modules: list[str]) -> str:
    """Return what the target leaves this repository's modules above the libraries' floor, beside what they take."""
    parts = []
    for cached, label in ((True, "with bytecode cached"), (False, "compiling")):
        boto3, libraries = medians[cached]["boto3"], medians[cached][LIBRARIES]
        own = [medians[cached][module] - libraries for module in modules]
        parts.append(
            f"{label}, the floor is {libraries / boto3:.2f}x boto3, so {TARGET_RATIO}x leaves "
            f"{TARGET_RATIO * boto3 - libraries:.0f} ms for this repository's modules; they take "
            f"{statistics.median(own):.0f} ms in the median handler, {max(own):.0f} ms at most"
        )
    return "Above the floor: " + "; ".join(parts) + "."


def artifact_rows() -> list[list[str]]:
    """Return each function's artifact size from the last package of the ci stage, if any."""
    if not (PACKAGE_DIR / "serverless-state.json").is_file():
        return []
    from infra.deploy.checks import artifact_sizes
    from infra.deploy.package import PackageError, load_package

    try:
        rows = artifact_sizes(load_package(PACKAGE_DIR))
    except PackageError:
        return []
    return [
        [key, f"{zipped / 2**20:.1f} MB", f"{unzipped / 2**20:.1f} MB", groups]
        for key, zipped, unzipped, groups in rows
    ]


def main() -> None:
    """Run the benchmark, print its figures and save them for the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer import runs")
    args = parser.parse_args()
    runs = QUICK_RUNS if args.quick else RUNS
    fragment = Fragment(
        "coldstart",
        "Cold start: handler imports against import boto3, artifact sizes",
        "python -m bench.coldstart" + (" --quick" if args.quick else ""),
        args.quick,
    )
    functions = handler_modules()
    modules = sorted(set(functions.values()))
    medians = {cached: measure(modules, cached, runs[cached]) for cached in (True, False)}
    print(f"Handler import, median of fresh processes (alternating with import boto3); target <= {TARGET_RATIO}x")
    print(
        f"  {'function':<34} {'module':<30} {'cached ms':>9} {'ratio':>6} {'/libs':>6} "
        f"{'compiling ms':>12} {'ratio':>6} {'/libs':>6} {'boto3':>6}"
    )
    rows = [["(import boto3)", "boto3"]]
    for cached in (True, False):
        boto3 = medians[cached]["boto3"]
        rows[0] += [f"{boto3:.0f} ms", "1.00x", f"{boto3 / medians[cached][LIBRARIES]:.2f}x"]
    rows[0].append("yes")
    floor = [LIBRARIES_LABEL, "-"]
    for cached in (True, False):
        libraries, boto3 = medians[cached][LIBRARIES], medians[cached]["boto3"]
        floor += [f"{libraries:.0f} ms", f"{libraries / boto3:.2f}x", "1.00x"]
    floor.append("no")
    rows.append(floor)
    for function, module in functions.items():
        cells = [function, module]
        for cached in (True, False):
            ratio = medians[cached][module] / medians[cached]["boto3"]
            over_libraries = medians[cached][module] / medians[cached][LIBRARIES]
            cells += [f"{medians[cached][module]:.0f} ms", f"{ratio:.2f}x", f"{over_libraries:.2f}x"]
            label = "bytecode cached" if cached else "no bytecode"
            fragment.targets.append(
                Target(
                    f"import {module} / import boto3, {label}",
                    f"{ratio:.2f}x",
                    f"<= {TARGET_RATIO:.2f}x",
                    ratio <= TARGET_RATIO,
                )
            )
        cells.append("yes" if loads_boto3(module) else "no")
        rows.append(cells)
    for cells in rows:
        print(
            f"  {cells[0]:<34} {cells[1]:<30} {cells[2]:>9} {cells[3]:>6} {cells[4]:>6} "
            f"{cells[5]:>12} {cells[6]:>6} {cells[7]:>6} {cells[8]:>6}"
        )
    fragment.tables.append(
        Table(
            f"Handler import, median of fresh processes ({runs[True]} cached, {runs[False]} compiling, each); "
            f"ratios to import boto3, and to the libraries {LIBRARIES_LABEL}",
            [
                "function",
                "module",
                "bytecode cached",
                "/ boto3",
                "/ libraries",
                "no bytecode",
                "/ boto3",
                "/ libraries",
                "loads boto3",
            ],
            rows,
        )
    )
    sizes = artifact_rows()
    if sizes:
        print("\nArtifact sizes (.build/ci, the last `make package`)")
        for cells in sizes:
            print(f"  {cells[0]:<16} zip {cells[1]:>8}  unzipped {cells[2]:>8}  dependencies: {cells[3]}")
        fragment.tables.append(
            Table("Artifact sizes (.build/ci)", ["function", "zip", "unzipped", "dependencies"], sizes)
        )
    fragment.notes.append(
        f"The row {LIBRARIES_LABEL} imports only the libraries every handler uses at its cold start, none of this "
        "repository's code (`" + LIBRARIES + "`): the floor under every handler's ratio. A handler's figure above it "
        "is this repository's own modules. The clients are botocore's; the last column tells which handlers load boto3 "
        "as well (the purchases functions, for its DynamoDB type serializer)."
    )
    fragment.notes.append(budget_note(medians, modules))
    fragment.notes.append(
        "Measured with this machine's interpreter and .venv, not Lambda's: both sides of each ratio import the same "
        "botocore. On Lambda, boto3 and botocore are the runtime's own, and the handlers' bytecode ships in their zips "
        "when packaged where Python 3.12 runs (the deploy workflow)."
    )
    fragment.save()


if __name__ == "__main__":
    main()
