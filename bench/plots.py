"""Plots of the benchmarks, drawn with matplotlib (``bench/requirements.txt``, installed by ``make bench``).

Each function draws one PNG under ``bench/plots/`` and returns its path relative to ``bench/``, or ``None`` when
matplotlib is not installed (the figures are printed and saved all the same).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.results import PLOTS_DIR, percentile

WIDTH, HEIGHT, DPI = 9.0, 5.2, 100
# Colours of the receiver's answers, one per kind, the same in every plot.
ANSWER_COLOURS = {
    "200": "#2e7d32",
    "500": "#c62828",
    "503": "#6a1b9a",
    "503 outage": "#6a1b9a",
    "503 broken": "#b39ddb",
    "429": "#ef6c00",
    "400": "#5d4037",
    "slow": "#1565c0",
    "reset": "#00838f",
}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, name: str) -> str:
    PLOTS_DIR.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(PLOTS_DIR / name, dpi=DPI)
    return f"plots/{name}"


def latency_distribution(
    name: str, title: str, series: Mapping[str, Sequence[float]], timeline: Mapping[str, Sequence[float]]
) -> str | None:
    """Draw latency distributions (seconds, one histogram per series) above cumulative counts over time.

    ``timeline`` maps a label to the moments (seconds from the start) at which one more thing happened, e.g. a
    publish accepted, a notification fully delivered: the horizontal gap between two such curves is the lag.
    """
    plt = _pyplot()
    if plt is None:
        return None
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(WIDTH, HEIGHT * 1.5))
    for label, values in series.items():
        if not values:
            continue
        ms = [value * 1000 for value in values]
        p50, p99 = percentile(ms, 0.5), percentile(ms, 0.99)
        top.hist(ms, bins=60, alpha=0.6, label=f"{label} (p50 {p50:.0f} ms, p99 {p99:.0f} ms)")
        top.axvline(p99, linestyle="--", linewidth=1, color="black")
    top.set_xlabel("milliseconds (dashed: p99)")
    top.set_ylabel("count")
    top.set_title(title)
    top.legend()
    for label, moments in timeline.items():
        ordered = sorted(moments)
        bottom.step([0.0, *ordered], range(len(ordered) + 1), where="post", label=f"{label} ({len(ordered)})")
    bottom.set_xlabel("seconds from the first publish")
    bottom.set_ylabel("cumulative count")
    bottom.set_title("Over time")
    bottom.legend(loc="upper left")
    path = _save(figure, name)
    plt.close(figure)
    return path


@dataclass(frozen=True)
class Curve:
    """A cumulative count over time: the moments (seconds from the start) at which one more thing happened."""

    label: str
    moments: Sequence[float]


def delivered_over_time(
    name: str,
    title: str,
    curves: Sequence[Curve],
    floors: Sequence[tuple[str, float]] = (),
    spans: Sequence[tuple[str, float, float]] = (),
    marks: Sequence[tuple[str, float]] = (),
    answers: Mapping[str, Sequence[float]] | None = None,
) -> str | None:
    """Draw cumulative deliveries over time, with optional ideal lines, shaded spans and marked moments.

    ``floors``: (label, rate per second) lines from the origin; ``spans``: (label, start, end) shaded; ``marks``:
    (label, moment) vertical lines; ``answers``: the receiver's answers per kind, drawn per second below.
    """
    plt = _pyplot()
    if plt is None:
        return None
    rows = 2 if answers else 1
    figure, axes = plt.subplots(rows, 1, figsize=(WIDTH, HEIGHT * (1.5 if answers else 1)), squeeze=False, sharex=True)
    top = axes[0][0]
    end = max((max(curve.moments) for curve in curves if curve.moments), default=1.0)
    most = max((len(curve.moments) for curve in curves), default=0)
    for curve in curves:
        ordered = sorted(curve.moments)
        top.step([0.0, *ordered], range(len(ordered) + 1), where="post", label=f"{curve.label} ({len(ordered)})")
    for label, rate in floors:
        # The ideal: one more delivered every 1/rate seconds, until as many as the largest curve.
        stop = min(end, most / rate) if rate > 0 else end
        top.plot([0, stop], [0, rate * stop], linestyle=":", color="grey", label=label)
    for row, (axis,) in enumerate(axes):
        for label, start, stop in spans:
            axis.axvspan(start, stop, color="#6a1b9a", alpha=0.08, label=label if row == 0 else None)
        for index, (label, moment) in enumerate(marks):
            first = row == 0 and index == 0
            axis.axvline(moment, color="black", linewidth=0.8, linestyle="--", label=label if first else None)
    if not answers:
        top.set_xlabel("seconds from the first publish")
    top.set_ylabel("delivered (cumulative)")
    top.set_title(title)
    top.legend(loc="upper left")
    if answers:
        bottom = axes[1][0]
        horizon = int(max((max(moments) for moments in answers.values() if moments), default=0.0)) + 1
        base = [0] * horizon
        for kind, moments in answers.items():
            counts = [0] * horizon
            for moment in moments:
                if 0 <= moment < horizon:
                    counts[int(moment)] += 1
            bottom.bar(range(horizon), counts, bottom=base, width=1.0, label=kind, color=ANSWER_COLOURS.get(kind))
            base = [b + c for b, c in zip(base, counts, strict=True)]
        bottom.set_xlabel("seconds from the first publish")
        bottom.set_ylabel("receiver answers per second")
        bottom.set_title("What the receiver answered")
        bottom.legend(loc="upper right", ncol=4, fontsize="small", framealpha=0.9)
    path = _save(figure, name)
    plt.close(figure)
    return path
