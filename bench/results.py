"""What each benchmark measured, kept as a JSON fragment in ``bench/results/`` for ``python -m bench.report``.

A benchmark prints its figures and saves one ``Fragment``: its tables, the targets it checks, notes and the plots it
drew. ``bench/report.py`` assembles the fragments of a run into ``bench/RESULTS.md``; ``bench/results/`` is not
committed, ``RESULTS.md`` and ``bench/plots/`` are.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
PLOTS_DIR = ROOT / "bench" / "plots"


@dataclass
class Table:
    """One table of figures: a title, column names and rows of already formatted cells."""

    title: str
    columns: list[str]
    rows: list[list[str]]


@dataclass
class Target:
    """A figure beside the target it is held to; ``met`` is ``None`` when the figure is informative only."""

    figure: str
    measured: str
    target: str
    met: bool | None


@dataclass
class Fragment:
    """What one benchmark run measured."""

    name: str
    title: str
    command: str
    quick: bool
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    load_average: float = field(default_factory=lambda: os.getloadavg()[0])
    # The commit it measured: a report keeps the fragments of benchmarks not run again, which may be older.
    commit: str = field(default_factory=lambda: commit())  # noqa: PLW0108 (commit is defined further down)
    seconds: float = 0.0
    _clock: float = field(default_factory=time.monotonic, repr=False)

    def save(self) -> Path:
        """Write the fragment to ``bench/results/<name>.json`` and return its path."""
        self.seconds = round(time.monotonic() - self._clock, 1)
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        data = {key: value for key, value in asdict(self).items() if not key.startswith("_")}
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> Fragment:
        """Read a fragment written by ``save``."""
        data: dict[str, Any] = json.loads(path.read_text())
        data["tables"] = [Table(**table) for table in data.get("tables", [])]
        data["targets"] = [Target(**target) for target in data.get("targets", [])]
        data.setdefault("commit", "")  # saved before fragments named their commit: not the one checked out now
        return cls(**data)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of ``values`` (``fraction`` 0.5 for the median, 0.99 for p99)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def cpu_model() -> str:
    """Return the CPU's model name as /proc/cpuinfo gives it, or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    """Describe this machine: CPUs, memory, OS and Python."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        memory = "unknown"
    return {
        "cpus": str(os.cpu_count() or 0),
        "cpu_model": cpu_model(),
        "memory": memory,
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


def commit() -> str:
    """Return the checked-out commit, marked when the work tree has changes not committed (the run's own outputs,
    RESULTS.md and the plots, left out: a run rewrites them before its report is written)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/RESULTS.md", ":!bench/plots"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head} (with uncommitted changes)" if dirty else head


def milliseconds(seconds: float) -> str:
    """Format seconds as whole milliseconds, or a dash when there is no figure."""
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"
