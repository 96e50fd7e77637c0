"""The report's six panels (volume, latency, quality, relevance, drift, cost) and what they draw
with: series, gaps, time axes, deploy and alert markers with their labels, the palette.

Split from ``report_plots`` to keep both files short. That module owns the data the
panels draw (``PlotData``, ``Drawn``, ``Marker``), renders each figure to its PNG and
keeps the page order; this one only draws onto a figure it is given, and imports those
types for annotations alone, so there is no import cycle at run time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import matplotlib.dates as mdates
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import PercentFormatter
from matplotlib.transforms import offset_copy

if TYPE_CHECKING:
    from analysis.report_plots import Drawn, Marker, PlotData, Row

__all__ = [
    "DPI",
    "HEIGHT_IN",
    "WIDTH_IN",
    "Palette",
    "cost",
    "drift",
    "latency",
    "no_data",
    "quality",
    "relevance",
    "volume",
]

WIDTH_IN, HEIGHT_IN, DPI = 12.0, 5.0, 100  # 1200 x 500 px
P_FLOOR = 1e-12  # a p-value of 0 still has a place on a log axis
_MARKER_STYLE = {
    "deploy": ("#444444", "--"),
    "firing": ("#d62728", "-"),
    "resolved": ("#2ca02c", "-"),
}
_NO_DATA_STYLE: dict[str, Any] = {"ha": "center", "va": "center", "fontsize": 14, "color": "#777"}
# in_layout=False: a long label may run down past its panel; the layout must not shrink it
_LABEL_STYLE: dict[str, Any] = {
    "rotation": 90,
    "va": "top",
    "fontsize": 8,
    "in_layout": False,
    "zorder": 1.5,
}  # under the data lines: they stay whole
_TICKS = ["%Y", "%b", "%d", "%H:%M", "%H:%M", "%H:%M:%S"]  # seconds ticks say the minute too
LINE_PX = 14  # the width of one rotated line of label text
LABEL_GAP_PX = 2.5 * LINE_PX  # markers closer than this share a label
LABEL_CHARS = 60  # longer label lines are cut (report.json lists every marker)
_THRESHOLD_STYLE = {"marker": "_", "s": 160, "color": "#333", "zorder": 3, "label": "BH threshold"}
_DRIFTED_STYLE: dict[str, Any] = {"s": 90, "facecolors": "none", "edgecolors": "#d62728",
                                  "linewidths": 1.8, "zorder": 4, "label": "drifted"}  # fmt: skip
_KIND_STYLE = {
    "input": {"linestyle": "-", "marker": "o"},
    "output": {"linestyle": "--", "marker": "s"},
    # retrieval drift: one number per event (docs/drift.md#retrieval-drift)
    "context_relevance": {"linestyle": ":", "marker": "^"},
    "chunk_count": {"linestyle": ":", "marker": "v"},
    "chunk_length": {"linestyle": ":", "marker": "D"},
}
_PERCENTILES = (
    ("p50", "latency_p50", ":"),
    ("p95", "latency_p95", "-"),
    ("p99", "latency_p99", "--"),
)


class Palette:
    """The same version keeps the same colour in every plot."""

    def __init__(self) -> None:
        self._colors: dict[str, Any] = {}
        self._cmap = colormaps["tab10"]

    def __call__(self, key: str) -> Any:
        if key not in self._colors:
            self._colors[key] = self._cmap(len(self._colors) % 10)
        return self._colors[key]


def _series(
    rows: Iterable[Row], key: Callable[[Row], str], column: str
) -> dict[str, tuple[list[datetime], list[float]]]:
    """Label -> (times, values) of one column, labels in order of first appearance, None
    values dropped. The rows are one per bucket and version, so one per label and time."""
    out: dict[str, tuple[list[datetime], list[float]]] = {}
    for r in sorted(rows, key=lambda r: r["t"]):
        if r[column] is not None:
            xs, ys = out.setdefault(key(r), ([], []))
            xs.append(r["t"])
            ys.append(float(r[column]))
    return out


def _gapped(xs: list[datetime], ys: list[float], step: timedelta) -> tuple[list, list]:
    """Break the line where buckets are missing, instead of drawing across the gap."""
    gx: list[datetime] = []
    gy: list[float] = []
    for x, y in zip(xs, ys, strict=True):
        if gx and x - gx[-1] > step * 1.5:
            gx.append(gx[-1] + step)
            gy.append(math.nan)
        gx.append(x)
        gy.append(y)
    return gx, gy


def _zero_filled(xs: list[datetime], ys: list[float], grid: list[datetime]) -> tuple[list, list]:
    """Counts: a bucket without events is a zero, not a gap."""
    have = dict(zip(xs, ys, strict=True))
    return grid, [have.get(t, 0.0) for t in grid]


def no_data(ax: Axes, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, **_NO_DATA_STYLE)
    ax.set_xticks([])
    ax.set_yticks([])


def _time_axis(ax: Axes, data: PlotData, label: str = "time (UTC)") -> None:
    """Narrow panels (no label) keep matplotlib's short ticks: seconds as "10", not "18:16:10"."""
    locator = mdates.AutoDateLocator(tz=UTC, minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    formats = _TICKS if label else None
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC, formats=formats))
    ax.set_xlim(data.start, data.end)
    ax.set_xlabel(label)
    ax.grid(True, alpha=0.3)


def _grid(data: PlotData) -> list[datetime]:
    """Every bucket from the first with events to the last (at their middles, like rows)."""
    times = [r["t"] for r in data.metrics]
    t, out = min(times), []
    while t <= max(times):
        out.append(t)
        t += data.step
    return out


def _markers(axes: list[Axes], data: PlotData, drawn: Drawn) -> None:
    """Deploy and alert lines on every panel, labelled on the first panel. Markers closer
    than LABEL_GAP_PX share one label, a line of text per kind in the kind's colour, side
    by side: labels never sit on each other."""
    shown = [m for m in data.markers if data.start <= m.at <= data.end]
    for m in shown:
        color, style = _MARKER_STYLE[m.kind]
        for ax in axes:
            ax.axvline(m.at, color=color, linestyle=style, linewidth=1.2, alpha=0.8, zorder=1)
    drawn.markers = shown
    if not shown:
        return
    ax, fig = axes[0], axes[0].get_figure()
    width_px = ax.get_position().width * WIDTH_IN * DPI
    gap = (data.end - data.start) * (LABEL_GAP_PX / max(width_px, 1.0))
    for group in _close(shown, gap):
        at = group[0].at
        side = 1 if at - data.start < gap / 2 else -1  # no room left of the line: go right
        parts = _tags(group)
        for k, (kind, text) in enumerate(parts):
            where = offset_copy(ax.get_xaxis_transform(), fig, x=side * k * LINE_PX, units="dots")
            ax.text(at, 0.98, f" {text} ", transform=where, color=_MARKER_STYLE[kind][0],
                    ha="left" if side > 0 else "right", **_LABEL_STYLE)  # fmt: skip
        drawn.labels.append((at, "; ".join(text for _, text in parts), len(group)))


def _close(markers: list[Marker], gap: timedelta) -> list[list[Marker]]:
    """Markers in groups: each within ``gap`` of the one before it."""
    groups: list[list[Marker]] = []
    for m in sorted(markers, key=lambda m: m.at):
        if groups and m.at - groups[-1][-1].at <= gap:
            groups[-1].append(m)
        else:
            groups.append([m])
    return groups


def _tags(group: list[Marker]) -> list[tuple[str, str]]:
    """One text per kind for close markers: "deploy v7", "toxic, ungrounded firing (v7)"."""
    parts = []
    for kind in _MARKER_STYLE:
        ms = [m for m in group if m.kind == kind]
        versions = list(dict.fromkeys(m.version for m in ms))
        if kind == "deploy" and ms:
            text = "deploy " + _few(versions)
        elif ms and len(versions) == 1:
            where = f" ({versions[0]})" if versions[0] else ""
            text = f"{_few(list(dict.fromkeys(m.name for m in ms)))} {kind}{where}"
        elif ms:
            text = f"{_few(list(dict.fromkeys(m.label for m in ms)))} {kind}"
        else:
            continue
        parts.append((kind, text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"))
    return parts


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" +{len(names) - 3} more" if len(names) > 3 else "")


def _legend(fig: Figure, handles: list[Any]) -> None:
    if handles:
        fig.legend(handles=handles, loc="outside right upper", fontsize=9)


def _version_handles(labels: Iterable[str], palette: Palette) -> list[Line2D]:
    return [Line2D([], [], color=palette(label), linewidth=2, label=label) for label in labels]


def volume(
    data: PlotData, labels: Callable[[Row], str], palette: Palette, fig: Figure, drawn: Drawn
) -> list[Axes]:
    top, bottom = fig.subplots(nrows=2, sharex=True, height_ratios=[2, 1])
    bottom.patch.set_visible(False)  # a long marker label on top may run down over it
    events = _series(data.metrics, labels, "events")
    if not events:
        return [top, bottom]
    for label, (xs, ys) in events.items():
        top.plot(*_zero_filled(xs, ys, _grid(data)), color=palette(label), linewidth=1.6)
        drawn.add(f"events: {label}", len(xs))
    errors = _series(data.metrics, labels, "error_rate")
    for label, (xs, ys) in errors.items():
        bottom.plot(*_gapped(xs, ys, data.step), color=palette(label), linewidth=1.4)
        drawn.add(f"error rate: {label}", len(xs))
    top.set_ylabel(f"events / {data.bucket}")
    bottom.set_ylabel("error rate")
    bottom.yaxis.set_major_formatter(PercentFormatter(1.0))
    for ax in (top, bottom):
        ax.set_ylim(bottom=0)
        _time_axis(ax, data)
    top.set_xlabel("")
    _markers([top, bottom], data, drawn)
    _legend(fig, _version_handles(events, palette))
    return [top, bottom]


def latency(
    data: PlotData, labels: Callable[[Row], str], palette: Palette, fig: Figure, drawn: Drawn
) -> list[Axes]:
    ax = fig.subplots()
    seen: list[str] = []
    for short, column, style in _PERCENTILES:
        series = _series(data.metrics, labels, column)
        for label, (xs, ys) in series.items():
            width = 1.8 if short == "p95" else 1.2
            line = _gapped(xs, ys, data.step)
            ax.plot(*line, color=palette(label), linestyle=style, linewidth=width)
            drawn.add(f"{short}: {label}", len(xs))
            seen += [label] if label not in seen else []
    if not seen:
        return [ax]
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(bottom=0)
    _time_axis(ax, data)
    _markers([ax], data, drawn)
    styles = [Line2D([], [], color="#555555", linestyle=s, label=n) for n, _, s in _PERCENTILES]
    _legend(fig, _version_handles(seen, palette) + styles)
    return [ax]


_QUALITY = (
    ("toxicity", "toxicity_rate"),
    ("hallucination", "hallucination_rate"),
    ("negative feedback", "negative_feedback_rate"),
)


def quality(
    data: PlotData, labels: Callable[[Row], str], palette: Palette, fig: Figure, drawn: Drawn
) -> list[Axes]:
    axes = fig.subplots(ncols=3)  # not sharex: an empty panel drops its ticks
    seen: list[str] = []
    for ax, (name, column) in zip(axes, _QUALITY, strict=True):
        series = _series(data.metrics, labels, column)
        ax.set_title(f"{name} rate", fontsize=11)
        if not series:
            no_data(ax)
            continue
        for label, (xs, ys) in series.items():
            mark = "." if len(xs) < 30 else None  # a few points must still show
            line = _gapped(xs, ys, data.step)
            ax.plot(*line, color=palette(label), linewidth=1.4, marker=mark)
            drawn.add(f"{name}: {label}", len(xs))
            seen += [label] if label not in seen else []
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylim(bottom=0)
        _time_axis(ax, data, label="")  # narrow: the ticks and date offset need the room
    if seen:
        _markers([ax for ax in axes if ax.has_data()], data, drawn)
        _legend(fig, _version_handles(seen, palette))
    return []  # an empty panel already says so


_RELEVANCE = (
    ("answer", "answer_relevance_p50", "-"),
    ("best chunk", "context_relevance_p50", "--"),
)


def relevance(
    data: PlotData, labels: Callable[[Row], str], palette: Palette, fig: Figure, drawn: Drawn
) -> list[Axes]:
    """Median relevance per version: of the answer (solid) and of the best chunk (dashed)."""
    ax = fig.subplots()
    seen: list[str] = []
    for short, column, style in _RELEVANCE:
        for label, (xs, ys) in _series(data.metrics, labels, column).items():
            mark = "." if len(xs) < 30 else None
            line = _gapped(xs, ys, data.step)
            ax.plot(*line, color=palette(label), linestyle=style, linewidth=1.5, marker=mark)
            drawn.add(f"{short}: {label}", len(xs))
            seen += [label] if label not in seen else []
    if not seen:
        return [ax]
    ax.set_ylabel("median cosine with the question")
    ax.set_ylim(0, 1)
    _time_axis(ax, data)
    _markers([ax], data, drawn)
    styles = [Line2D([], [], color="#555555", linestyle=s, label=n) for n, _, s in _RELEVANCE]
    _legend(fig, _version_handles(seen, palette) + styles)
    return [ax]


def drift(
    data: PlotData, labels: Callable[[Row], str], palette: Palette, fig: Figure, drawn: Drawn
) -> list[Axes]:
    ax = fig.subplots()
    if not data.drift:
        drawn.note = "no drift tests in this range"
        return [ax]
    handles: list[Any] = []
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in sorted(data.drift, key=lambda r: r["end"]):
        groups.setdefault((labels(r), r["kind"]), []).append(r)
    for (label, kind), rows in groups.items():
        xs, ps = [r["end"] for r in rows], [_p(r["p_value"]) for r in rows]
        usual = sorted(b - a for a, b in pairwise(xs))[len(xs) // 2 - 1] if len(xs) > 1 else None
        line = _gapped(xs, ps, 2 * usual) if usual else (xs, ps)  # no line across a pause
        handles += ax.plot(*line, color=palette(label), linewidth=1.2, markersize=4,
                           label=f"{label} {kind}", **_KIND_STYLE[kind])  # fmt: skip
        drawn.add(f"{label} {kind}", len(rows))
    limits = [(r["end"], _p(r["threshold"])) for r in data.drift if r["threshold"] is not None]
    if limits:
        handles.append(ax.scatter(*zip(*limits, strict=True), **_THRESHOLD_STYLE))
        drawn.add("BH threshold", len(limits))
    flagged = [r for r in data.drift if r["drifted"]]
    for r in flagged:
        ax.axvspan(r["start"], r["end"], color="#d62728", alpha=0.08, zorder=0)
    if flagged:
        ps = [_p(r["p_value"]) for r in flagged]
        handles.append(ax.scatter([r["end"] for r in flagged], ps, **_DRIFTED_STYLE))
        drawn.add("drifted", len(flagged))
    ax.set_yscale("log")
    ax.set_ylabel("p-value")
    _time_axis(ax, data)
    _markers([ax], data, drawn)
    _legend(fig, handles)
    return [ax]


def _p(value: float | None) -> float:
    """A p-value on a log axis: 0 sits at the floor, a missing one at 1."""
    return max(1.0 if value is None else value, P_FLOOR)


def cost(data: PlotData, fig: Figure, drawn: Drawn) -> list[Axes]:
    ax = fig.subplots()
    days = sorted({r["day"] for r in data.cost})
    if not days:
        return [ax]
    palette = Palette()
    cost = {(r["day"], r["model"]): r["cost_usd"] or 0.0 for r in data.cost}
    x = [datetime.fromisoformat(d).replace(tzinfo=UTC) for d in days]
    bottom = [0.0] * len(days)
    for model in sorted({r["model"] for r in data.cost}):
        heights = [cost.get((d, model), 0.0) for d in days]
        ax.bar(x, heights, bottom=bottom, width=0.8, color=palette(model), label=model or "(none)")
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        drawn.add(model or "(none)", sum(1 for d in days if (d, model) in cost))
    unpriced = int(sum(r["unpriced"] or 0 for r in data.cost))
    if unpriced:
        drawn.note = f"{unpriced} events have no price and are not counted"
        ax.set_title(drawn.note, fontsize=10, color="#a05000")
    ax.set_ylim(0, max(max(bottom) * 1.1, 1e-6))
    locator = mdates.AutoDateLocator(tz=UTC, minticks=2, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.set_xlim(x[0] - timedelta(days=1), x[-1] + timedelta(days=1))
    ax.set(ylabel="USD", xlabel="day (UTC)")
    ax.grid(True, axis="y", alpha=0.3)
    _legend(fig, ax.get_legend_handles_labels()[0])
    return [ax]
