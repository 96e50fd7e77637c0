"""The report's figures: one PNG per question, each saying what it drew.

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas, never
through pyplot: no global figure registry to leak or close, no backend switch that
would surprise a process importing llmpulse, and safe off the main thread. Every
plot returns a ``Drawn`` record (series and markers actually drawn, with point
counts) so tests and ``report.json`` can check a picture without looking at pixels.
The panels themselves are drawn by ``report_panels``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.report_panels import (
    DPI,
    HEIGHT_IN,
    WIDTH_IN,
    Palette,
    cost,
    drift,
    latency,
    no_data,
    quality,
    relevance,
    volume,
)

__all__ = ["Drawn", "Marker", "PlotData", "Row", "plot_all"]

Row = dict[str, Any]


@dataclass(frozen=True)
class Marker:
    """A moment worth a vertical line: a version's first event, an alert firing or resolving."""

    kind: str  # "deploy" | "firing" | "resolved"
    at: datetime
    name: str  # the alert's rule; "" for a deploy
    version: str = ""  # "" for an alert on the whole app

    @property
    def label(self) -> str:
        return " · ".join(p for p in (self.name, self.version) if p)


@dataclass
class PlotData:
    """Everything the figures need, already normalised (datetimes in UTC, floats or None)."""

    metrics: list[Row]  # one row per bucket start t, app and prompt_version (all models)
    drift: list[Row]  # llm_drift rows: start, end, app, prompt_version, kind, p_value, ...
    cost: list[Row]  # llm_cost_daily rows summed per day and model
    markers: list[Marker]
    start: datetime  # the time axis: the data's own span, bucket-aligned, with a margin
    end: datetime
    step: timedelta  # the bucket
    bucket: str  # its name: "5 s", "1 min", "1 h"
    multi_app: bool


@dataclass
class Drawn:
    name: str
    title: str
    series: list[tuple[str, int]] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    labels: list[tuple[datetime, str, int]] = field(default_factory=list)  # at, text, markers
    note: str | None = None

    def add(self, label: str, points: int) -> None:
        self.series.append((label, points))


def _namer(multi_app: bool) -> Callable[[Row], str]:
    """Series names: the version, with the app when several apps are drawn. Rows come
    aggregated over models, so a plot draws one series per version."""

    def name(r: Row) -> str:
        version = r["prompt_version"] or "(no version)"
        return f"{r['app']}/{version}" if multi_app else version

    return name


def _render(path: Path, title: str, draw: Callable[[Figure, Drawn], list[Axes]]) -> Drawn:
    """One figure, one PNG; where ``draw`` drew no series, every panel says why."""
    drawn = Drawn(path.name, title)
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=13)
    axes = draw(fig, drawn)
    if not drawn.series:
        drawn.note = drawn.note or "no data"
        for ax in axes:
            no_data(ax, drawn.note)
    fig.savefig(path, dpi=DPI, format="png")
    fig.clear()
    return drawn


def plot_all(data: PlotData, out: Path) -> list[Drawn]:
    """Write the six PNGs into ``out``; one record per image, in page order."""
    labels, palette = _namer(data.multi_app), Palette()
    # A bucket's value belongs to its whole span: draw it at the middle, so a deploy
    # line inside a bucket falls where that bucket's change is drawn.
    half = data.step / 2
    data = replace(data, metrics=[{**r, "t": r["t"] + half} for r in data.metrics])
    versions = (labels, palette)
    return [
        _render(out / "volume.png", f"Events per {data.bucket} and error rate, per prompt version",
                partial(volume, data, *versions)),
        _render(out / "latency.png", "Latency p50 / p95 / p99 per prompt version (all models)",
                partial(latency, data, *versions)),
        _render(out / "quality.png", "Quality rates per prompt version (time in UTC)",
                partial(quality, data, *versions)),
        _render(out / "relevance.png", "Relevance to the question per prompt version (median)",
                partial(relevance, data, *versions)),
        _render(out / "drift.png", "Drift tests: p-value per window (log scale; lower = drift)",
                partial(drift, data, *versions)),
        _render(out / "cost.png", "Cost per UTC day, by model (USD)", partial(cost, data)),
    ]  # fmt: skip
