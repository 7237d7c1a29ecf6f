"""How bench/report.py renders fragments: a figure from another commit or a benchmark that failed must not read as
this run's 'met'."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bench import report, results
from bench.results import Fragment, Target


def _fragment(name: str, met: bool = True) -> Fragment:
    fragment = Fragment(name, name.title(), f"python -m bench.{name}", False)
    fragment.targets.append(Target(f"{name}: lost", "0", "0", met))
    return fragment


def _targets_rows(page: str) -> list[str]:
    section = page.split("## Targets", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "figure" not in line]


def test_a_fragment_kept_from_an_older_commit_is_not_labelled_with_the_current_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`python -m bench load` keeps every other fragment of the last run; the page names one commit (the one checked
    out when the report is written) for all of them. Commits 4313f6a and a18ac9c had to patch the header by hand."""
    monkeypatch.setattr(results, "commit", lambda: "aaaaaaaaaaaa")
    old = _fragment("drill")  # measured at aaaa
    monkeypatch.setattr(results, "commit", lambda: "bbbbbbbbbbbb")
    monkeypatch.setattr(report, "commit", lambda: "bbbbbbbbbbbb")
    new = _fragment("load")

    page = report.render({"drill": old, "load": new}, {"load": 0}, datetime.now(UTC))

    assert "aaaaaaaaaaaa" in page, "the drill's figures are shown as measured at the current commit bbbb"


def test_a_benchmark_that_failed_does_not_vanish_from_the_targets_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """A benchmark that exited non-zero without saving a fragment leaves no row in the Targets table: the table
    reads all 'met'."""
    monkeypatch.setattr(report, "commit", lambda: "bbbbbbbbbbbb")
    page = report.render({"load": _fragment("load")}, {"load": 0, "drill": 1}, datetime.now(UTC))

    rows = _targets_rows(page)
    assert any("drill" in row for row in rows), f"no Targets row for the failed drill: {rows}"


def test_a_stale_fragment_of_a_failed_rerun_is_not_met_in_the_targets_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m bench drill` crashes before saving: drill.json of the previous run stays, and its targets are
    listed as 'met' in the Targets table (only its section says 'exit code 1')."""
    monkeypatch.setattr(report, "commit", lambda: "bbbbbbbbbbbb")
    page = report.render({"drill": _fragment("drill")}, {"drill": 1}, datetime.now(UTC))

    rows = [row for row in _targets_rows(page) if "drill" in row]
    assert rows == [
        "| drill: the benchmark | exit code 1 | exit code 0 | **failed** |",
        "| drill: lost | 0 | 0 | not judged (its run failed) |",
    ]
