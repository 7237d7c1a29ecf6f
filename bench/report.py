"""Assemble ``bench/RESULTS.md`` from the fragments the benchmarks saved in ``bench/results/``.

Run: ``python -m bench.report`` (``make bench`` runs it last). The page names the machine, the date and the commit,
lists every target beside its figure, then each benchmark's tables, notes and plots, in the order ``make bench`` runs
them. A benchmark that saved no fragment is shown by what it printed (``bench/results/<name>.out``); one that failed
or was not run is named as such.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bench.results import RESULTS_DIR, ROOT, Fragment, Table, commit, machine

OUTPUT = ROOT / "bench" / "RESULTS.md"
# The order of `make bench` (bench/__main__.py); a benchmark not named here runs after these.
ORDER = ("intake", "coldstart", "delivery", "audience", "local_stack", "load", "burst", "drill", "realtime", "api_fuzz")
RUN_FILE = RESULTS_DIR / "run.json"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> list[str]:
    """Return a table as Markdown lines, its title in bold above it."""
    lines = [f"**{_cell(table.title)}**", ""]
    lines.append("| " + " | ".join(_cell(column) for column in table.columns) + " |")
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in table.rows]
    return [*lines, ""]


def _met(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "-"}[met]


def _printed(name: str, code: int | None, output: str) -> list[str]:
    """The section of a benchmark that saved no fragment: what it printed, or that it failed or did not run."""
    if code is None:
        return [f"## {name}", "", f"`python -m bench.{name}` was not run: no figures.", ""]
    state = "" if code == 0 else f" failed (exit code {code}); it"
    if not output.strip():
        return [f"## {name}", "", f"`python -m bench.{name}`{state} printed nothing and saved no figures.", ""]
    return [f"## {name}", "", f"`python -m bench.{name}`{state} printed:", "", "```text", output.rstrip(), "```", ""]


def render(
    fragments: dict[str, Fragment], run: dict[str, int], now: datetime, printed: dict[str, str] | None = None
) -> str:
    """Return the page for these fragments; ``run`` holds the exit code of each benchmark of the last run, and
    ``printed`` what each printed."""
    printed = printed or {}
    host = machine()
    modes = {fragment.quick for fragment in fragments.values()}
    mode = "quick (`make bench QUICK=1`)" if modes == {True} else "full (`make bench`)" if modes == {False} else "mixed"
    # A fragment saved before fragments named their commit is the report's as it was written then: unknown now.
    measured = sorted({fragment.commit or "unknown" for fragment in fragments.values()})
    at = f"commit `{commit()}`"
    if measured and measured != [commit()]:
        at += " (the figures measured at " + ", ".join(f"`{sha}`" for sha in measured) + ": see each section)"
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python -m bench.report` on {now:%Y-%m-%d %H:%M} UTC from a {mode} run at {at}.",
        "",
        f"Machine: {host['cpus']} CPUs ({host['cpu_model']}), {host['memory']} of memory, {host['system']}, "
        f"{host['python']}. The local stack, its clients and the receiver share these CPUs; the load average at the "
        "start of each benchmark is given with it.",
        "",
        "## Targets",
        "",
        "| figure | measured | target | |",
        "|---|---|---|---|",
    ]
    for name in [*ORDER, *sorted((set(fragments) | set(run)) - set(ORDER))]:
        if run.get(name):
            # A benchmark of the last run that failed: no row of it reads met, whether it saved figures (maybe a
            # previous run's, or partial) or none.
            lines.append(f"| {_cell(name)}: the benchmark | exit code {run[name]} | exit code 0 | **failed** |")
        for target in fragments[name].targets if name in fragments else []:
            met = "not judged (its run failed)" if run.get(name) else _met(target.met)
            lines.append(f"| {_cell(target.figure)} | {_cell(target.measured)} | {_cell(target.target)} | {met} |")
    lines.append("")
    names = [name for name in ORDER if name in run or name in fragments]
    names += sorted((set(run) | set(fragments)) - set(ORDER))
    for name in names:
        fragment = fragments.get(name)
        if fragment is None:
            lines += _printed(name, run.get(name), printed.get(name, ""))
            continue
        lines += [
            f"## {fragment.title}",
            "",
            f"`{fragment.command}` · {datetime.fromisoformat(fragment.started):%Y-%m-%d %H:%M:%S} UTC · "
            f"commit `{fragment.commit or 'unknown'}` · {fragment.seconds:.0f} s · "
            f"load average {fragment.load_average:.1f} at start",
            "",
        ]
        if run.get(name):
            lines += [f"(exit code {run[name]}: the figures below may be partial)", ""]
        for table in fragment.tables:
            lines += table_markdown(table)
        lines += [f"{note}\n" for note in fragment.notes]
        lines += [f"![{fragment.title}]({plot})\n" for plot in fragment.plots]
    return "\n".join(lines).rstrip() + "\n"


def load_fragments(directory: Path = RESULTS_DIR) -> dict[str, Fragment]:
    """Read every fragment of ``directory``, by benchmark name."""
    fragments = {}
    for path in sorted(directory.glob("*.json")):
        if path == RUN_FILE:
            continue
        fragment = Fragment.load(path)
        fragments[fragment.name] = fragment
    return fragments


def main() -> None:
    """Write bench/RESULTS.md."""
    run = json.loads(RUN_FILE.read_text()) if RUN_FILE.is_file() else {}
    printed = {path.stem: path.read_text(errors="replace") for path in RESULTS_DIR.glob("*.out")}
    OUTPUT.write_text(render(load_fragments(), run, datetime.now(UTC), printed))
    print(f"wrote {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
