"""``llmpulse report``: the stored data as pictures, one HTML page, and what was drawn.

People look at pictures before tables, so the report is six PNGs (volume, latency,
quality, relevance, drift, cost) with deploy and alert markers, one page that embeds them with
the alerts and per-version totals, and ``report.json`` saying what each image holds.
The time axis is the data's own span (not the range asked for), in buckets sized to it.
Every query goes through the ``query`` callable ``build_report`` is given: the CLI
passes ``run_query`` (the worker's read-only endpoint when a worker holds the
embedded engine), tests a fake store.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from analysis.report_plots import Drawn, Marker, PlotData, plot_all
from core.errors import LlmpulseError
from core.sampling import weighted_median_sql, weighted_rate_sql
from core.sql import datetime_literal, quote
from core.thresholds import FLAG_AT
from core.time import parse_since

__all__ = ["NoDataError", "Report", "build_report", "parse_since"]

# Bucket sizes of the time plots (seconds, name). The report draws the data's own span
# (first to last event, not the requested range) in the largest bucket that still gives
# MIN_POINTS buckets: 24 to 84 points whatever the span (up to 6 months).
BUCKETS = ((1, "1 s"), (2, "2 s"), (5, "5 s"), (10, "10 s"), (30, "30 s"), (60, "1 min"),
           (120, "2 min"), (300, "5 min"), (900, "15 min"), (1800, "30 min"), (3600, "1 h"),
           (3 * 3600, "3 h"), (6 * 3600, "6 h"), (12 * 3600, "12 h"), (86400, "1 day"),
           (2 * 86400, "2 days"), (7 * 86400, "7 days"))  # fmt: skip
MIN_POINTS = 24
MARGIN = 0.02  # of the plotted span, each side
DRIFT_ROW_LIMIT = 50_000  # the worker's endpoint refuses results over 100k rows


class _Result(Protocol):
    columns: list[str]
    rows: list[list[Any]]


Query = Callable[[str], _Result]


class NoDataError(LlmpulseError, LookupError):
    """No event of the app in the range: a report of empty plots would only mislead."""


@dataclass(frozen=True)
class Report:
    html: Path
    images: list[Path]
    series: dict[str, list[str]]  # image name -> labels of the series drawn
    json: Path
    events: int
    alerts: int
    versions: list[str]
    since: datetime
    until: datetime

    def summary(self) -> str:
        n = len(self.versions)
        return (
            f"{self.events} events, {n} prompt version{'' if n == 1 else 's'}, "
            f"{self.alerts} alert{'' if self.alerts == 1 else 's'}, "
            f"{_fmt_time(self.since)} to {_fmt_time(self.until)}"
        )


def build_report(
    query: Query,
    app: str | None,
    since: datetime,
    out: Path,
    *,
    now: datetime | None = None,
    require_data: bool = False,
) -> Report:
    """Query, draw and write ``out/index.html``, the PNGs and ``out/report.json``.

    With ``require_data``, raise NoDataError before writing anything when the app has
    no events in the range (the CLI's case); otherwise empty plots say "no data".
    """
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    until = (now or datetime.now(UTC)).astimezone(UTC)
    since = since.astimezone(UTC)
    if since >= until:
        raise ValueError("since must be before now")
    data = _fetch(query, app, since, until)
    events = int(sum(t["events"] for t in data["totals"]))
    if require_data and not events:
        apps = _rows(query(_SQL["apps"].format(**_params(app, since, until))))
        others = ", ".join(str(r["app"]) for r in apps) or "none"
        raise NoDataError(
            f"no events{f' for app {app!r}' if app else ''} from {_fmt_time(since)} to "
            f"{_fmt_time(until)} (apps with events in that range: {others})"
        )
    out.mkdir(parents=True, exist_ok=True)
    drawn = plot_all(data["plot"], out)
    page = out / "index.html"
    page.write_text(_html(app, since, until, data, drawn), encoding="utf-8")
    meta = out / "report.json"
    meta.write_text(json.dumps(_meta(app, since, until, data, drawn, events), indent=1) + "\n")
    return Report(
        html=page,
        images=[out / d.name for d in drawn],
        series={d.name: [label for label, _ in d.series] for d in drawn},
        json=meta,
        events=events,
        alerts=len(data["alerts"]),
        versions=[str(t["prompt_version"]) for t in data["totals"]],
        since=since,
        until=until,
    )


# -- queries ----------------------------------------------------------------------


_TOXICITY_RATE, _HALLUCINATION_RATE = (
    weighted_rate_sql(f"e.{score} >= {FLAG_AT}", f"e.{score}", "e.sample_rate")
    for score in ("toxicity", "hallucination")
)
# the weighted medians of migration 0011's views: answer relevance and the best chunk's
_ANSWER_RELEVANCE, _CONTEXT_RELEVANCE = (
    weighted_median_sql(f"e.{column}", "e.sample_rate")
    for column in ("answer_relevance", "context_relevance_max")
)

# Times come out as epoch seconds so the engine and the worker's JSON endpoint give the
# same values. Columns are qualified (e.x) where an output alias reuses a column name.
_SQL = {
    # The expressions of the llm_metrics_1m view (storage/migrations/0011_relevance.sql),
    # on buckets of any size, per version across models; feedback only for these events.
    # Model-score rates are over the events that carry the score (NULL: not model-scored,
    # the worker shedding load), each weighted by 1 / sample_rate, NULL where none does.
    "metrics": "SELECT toUnixTimestamp(toStartOfInterval(e.ts, INTERVAL {step} SECOND)) AS t, "
    "e.app AS app, e.prompt_version AS prompt_version, count() AS events, "
    "countIf(e.status = 'error') AS errors, countIf(e.status = 'error') / count() AS error_rate, "
    "quantileExact(0.5)(e.latency_ms) AS latency_p50, "
    "quantileExact(0.95)(e.latency_ms) AS latency_p95, "
    "quantileExact(0.99)(e.latency_ms) AS latency_p99, "
    f"{_TOXICITY_RATE} AS toxicity_rate, {_HALLUCINATION_RATE} AS hallucination_rate, "
    f"{_ANSWER_RELEVANCE} AS answer_relevance_p50, "
    f"{_CONTEXT_RELEVANCE} AS context_relevance_p50, "
    "countIf(f.score IS NOT NULL) AS feedback, "
    "if(countIf(f.score IS NOT NULL) = 0, NULL, countIf(f.score < 0) / "
    "countIf(f.score IS NOT NULL)) AS negative_feedback_rate FROM llm_events AS e FINAL "
    "LEFT JOIN (SELECT event_id, toNullable(argMax(score, ingested_at)) AS score "
    "FROM llm_feedback WHERE event_id IN (SELECT event_id FROM llm_events WHERE {app} "
    "AND ts >= {lo} AND ts <= {hi}) GROUP BY event_id) AS f ON f.event_id = e.event_id "
    "WHERE {e_app} AND e.ts >= {lo} AND e.ts <= {hi} GROUP BY t, app, prompt_version "
    "ORDER BY t, prompt_version",
    # exact p95 over the whole range needs the events: the views' percentiles do not add up
    "totals": "SELECT e.app AS app, e.prompt_version AS prompt_version, count() AS events, "
    "countIf(e.status = 'error') / count() AS error_rate, "
    "quantileExact(0.95)(e.latency_ms) AS latency_p95, "
    f"{_TOXICITY_RATE} AS toxicity_rate, count(e.toxicity) AS scored, "
    f"{_HALLUCINATION_RATE} AS hallucination_rate, "
    f"{_ANSWER_RELEVANCE} AS answer_relevance, {_CONTEXT_RELEVANCE} AS context_relevance, "
    "sum(e.cost_usd) AS cost_usd, "
    "toUnixTimestamp64Milli(min(e.ts)) / 1000 AS first_ts, "
    "toUnixTimestamp64Milli(max(e.ts)) / 1000 AS last_ts FROM llm_events AS e FINAL "
    "WHERE {e_app} AND e.ts >= {lo} AND e.ts <= {hi} GROUP BY e.app, e.prompt_version "
    "ORDER BY first_ts",
    "first_seen": "SELECT app, prompt_version, toUnixTimestamp64Milli(min(ts)) / 1000 AS t "
    "FROM llm_events WHERE {app} AND ts <= {hi} GROUP BY app, prompt_version ORDER BY t",
    "alerts": "SELECT a.rule AS rule, a.app AS app, a.prompt_version AS prompt_version, "
    "toString(a.state) AS state, a.fired_at AS fired_at, a.resolved_at AS resolved_at, "
    "a.value AS value FROM alerts AS a FINAL WHERE {a_app} AND a.fired_at IS NOT NULL "
    "AND a.fired_at <= {hi_s} AND (a.state = 'firing' OR a.fired_at >= {lo_s} "
    "OR a.resolved_at >= {lo_s}) ORDER BY a.fired_at",
    "drift": "SELECT toUnixTimestamp64Milli(window_start) / 1000 AS start, "
    "toUnixTimestamp64Milli(window_end) / 1000 AS end, app, prompt_version, "
    "toString(kind) AS kind, p_value, threshold, drifted FROM llm_drift FINAL "
    "WHERE {app} AND window_end >= {lo} AND window_end <= {hi} "
    f"ORDER BY window_end DESC LIMIT {DRIFT_ROW_LIMIT}",
    "cost": "SELECT toString(c.day) AS day, c.model AS model, sum(c.events) AS events, "
    "sum(c.cost_usd) AS cost_usd, sum(c.unpriced) AS unpriced FROM llm_cost_daily AS c "
    "WHERE {c_app} AND c.day >= toDate({lo}) AND c.day <= toDate({hi}) "
    "GROUP BY c.day, c.model ORDER BY c.day, c.model",
    "apps": "SELECT app, count() AS events FROM llm_events WHERE ts >= {lo} AND ts <= {hi} "
    "GROUP BY app ORDER BY events DESC LIMIT 20",
}


def _params(app: str | None, since: datetime, until: datetime) -> dict[str, str]:
    where = {f"{p}app": f"{p.replace('_', '.')}app = {quote(app)}" if app else "1"
             for p in ("", "e_", "a_", "c_")}  # fmt: skip
    lo_s, hi_s = repr(since.timestamp()), repr(until.timestamp())
    return where | dict(
        lo=datetime_literal(since), hi=datetime_literal(until), lo_s=lo_s, hi_s=hi_s
    )


def choose_bucket(span: timedelta) -> tuple[int, str]:
    """The largest bucket (seconds, name) that cuts ``span`` into MIN_POINTS or more."""
    fitting = [b for b in BUCKETS if span.total_seconds() / b[0] >= MIN_POINTS]
    return fitting[-1] if fitting else BUCKETS[0]


def _axis(first: datetime, last: datetime, step: int) -> tuple[datetime, datetime]:
    """The plotted range: from the first bucket to the end of the last, plus a margin."""
    lo = math.floor(first.timestamp() / step) * step
    hi = math.floor(last.timestamp() / step) * step + step
    margin = (hi - lo) * MARGIN
    return _epoch(lo - margin), _epoch(hi + margin)


def _fetch(query: Query, app: str | None, since: datetime, until: datetime) -> dict[str, Any]:
    """All the report's data, from six queries: totals, first-seen times (deploy markers),
    alerts, drift tests and daily cost; then the time series, in buckets sized to the span
    of the events (and drift tests) in the range, or of the range when there are none."""
    params = _params(app, since, until)
    rows = {n: _rows(query(_SQL[n].format(**params))) for n in _SQL if n not in ("apps", "metrics")}
    first_seen, alerts, drift = (rows[n] for n in ("first_seen", "alerts", "drift"))
    for r in first_seen:
        r["t"] = _epoch(r["t"])
    for r in drift:
        r["start"], r["end"] = _epoch(r["start"]), _epoch(r["end"])
    times = [_epoch(t[k]) for t in rows["totals"] for k in ("first_ts", "last_ts")]
    times += [r["end"] for r in drift]
    first, last = (min(times), max(times)) if times else (since, until)
    step, bucket = choose_bucket(last - first)
    metrics = _rows(query(_SQL["metrics"].format(**params, step=step)))
    for r in metrics:
        r["t"] = _epoch(r["t"])
    multi_app = len({r["app"] for r in rows["totals"]}) > 1

    def version(r: dict[str, Any]) -> str:
        pv = r["prompt_version"] or "(no version)"
        return f"{r['app']}/{pv}" if multi_app else pv

    markers = [Marker("deploy", r["t"], "", version(r)) for r in first_seen]
    for a in alerts:
        pv = version(a) if a["prompt_version"] else ""
        markers.append(Marker("firing", _epoch(a["fired_at"]), str(a["rule"]), pv))
        if a["resolved_at"] is not None and a["state"] != "firing":
            markers.append(Marker("resolved", _epoch(a["resolved_at"]), str(a["rule"]), pv))
    markers.sort(key=lambda m: m.at)
    start, end = _axis(first, last, step)
    plot = PlotData(metrics, drift, rows["cost"], markers, start, end, timedelta(seconds=step),
                    bucket, multi_app)  # fmt: skip
    return {"plot": plot, "totals": rows["totals"], "alerts": alerts, "version": version}


def _rows(result: _Result) -> list[dict[str, Any]]:
    """Rows as dicts; NaN (an empty quantile) becomes None like SQL NULL."""
    nan = lambda v: isinstance(v, float) and math.isnan(v)  # noqa: E731
    return [{c: None if nan(v) else v for c, v in zip(result.columns, r, strict=True)}
            for r in result.rows]  # fmt: skip


def _epoch(value: Any) -> datetime:
    return datetime.fromtimestamp(float(value), UTC)


def _fmt_time(when: datetime | None) -> str:
    return "—" if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _scored(totals: dict[str, Any]) -> str:
    """Events the model scores rest on: all of them, or a share while the worker shed load."""
    events, scored = int(totals["events"]), int(totals["scored"])
    return f"{scored:,}" + (f" ({scored / events:.0%})" if scored < events else "")


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "pct":
        return f"{float(value):.1%}"
    if kind == "ms":
        return f"{float(value):,.0f} ms"
    if kind == "usd":
        return f"${float(value):,.4f}" if float(value) < 1 else f"${float(value):,.2f}"
    if kind == "cos":  # a median cosine, shown as the 2 decimals that mean something
        return f"{float(value):.2f}"
    return f"{float(value):.4g}" if kind == "num" else str(value)


# -- report.json and the page -----------------------------------------------------


def _meta(app: str | None, since: datetime, until: datetime, data: dict[str, Any],
          drawn: list[Drawn], events: int) -> dict[str, Any]:  # fmt: skip
    return {
        "app": app,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "bucket": data["plot"].bucket,
        "bucket_seconds": data["plot"].step.total_seconds(),
        "time_axis": {"from": data["plot"].start.isoformat(), "to": data["plot"].end.isoformat()},
        "events": events,
        "images": {
            d.name: {
                "title": d.title,
                "series": [{"label": label, "points": n} for label, n in d.series],
                "markers": [
                    {"kind": m.kind, "label": m.label, "at": m.at.isoformat()} for m in d.markers
                ],
                "labels": [
                    {"at": at.isoformat(), "text": text, "markers": n} for at, text, n in d.labels
                ],
                "note": d.note,
            }
            for d in drawn
        },
    }


_CAPTIONS = {
    "volume.png": "Events per {bucket} for each prompt version (top; a bucket without events "
    "is 0) and the share that ended in error (bottom). Look for traffic moving to a new version "
    "after its dashed deploy line, and for error-rate steps that line up with a deploy or with "
    "a red (firing) alert line; green lines are resolutions. Markers close together share "
    "one label.",
    "latency.png": "End-to-end latency per {bucket}: p50 dotted, p95 solid, p99 dashed, one "
    "colour per version (all its models together). A new version whose p95 sits above the old "
    "one is slower for most users; a p99 that drifts away from p95 is a slow tail (timeouts, "
    "retries, long answers).",
    "quality.png": "Share of answers scored toxic (score >= 0.5), share of grounded answers "
    "scored hallucinated, and share of feedback that was negative, per version. Toxicity and "
    "hallucination are shares of the model-scored answers (a uniform sample while the worker "
    "sheds load; see the totals' model-scored column), each weighted by 1 / its sample rate "
    "so that fully scored minutes do not outweigh shed ones. Compare a "
    "version with the one before it at the deploy line; a sparse line means little traffic.",
    "relevance.png": "Median relevance per {bucket}: of each answer to its question (solid) "
    "and of the best retrieved chunk to the question (dashed), per version: cosines of MiniLM "
    "vectors, which measure how related the texts are, not whether an answer is right. A "
    "step down at a deploy line is answers wandering off topic; a step down in the dashed "
    "line without a deploy is retrieval returning less related chunks (a re-index, a "
    "chunking change; see the retrieval kinds in the drift plot). Medians of the "
    "model-scored events, each weighted by 1 / its sample rate.",
    "drift.png": "One point per drift test window (at its end), per version and kind: input "
    "and output texts, and the retrieval numbers (best chunk's relevance, chunks per event, "
    "chunk length). "
    "Lower is stronger evidence of change. A window drifted when its p-value is at or below "
    "its Benjamini-Hochberg threshold (grey ticks); drifted windows are ringed in red and "
    "their span is shaded. Drift right after a deploy line is expected; drift without one is "
    "worth reading the explanation in llm_drift for.",
    "cost.png": "Spend per UTC day, stacked by model. Whole days: the first bar also counts "
    "spend before the report's start. Events without a price are not counted (see the note).",
}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1240px;color:#222;padding:0 12px}
h1{font-size:1.6em;margin-bottom:4px}h2{margin-top:36px;border-bottom:1px solid #ddd}
.meta{color:#555}.meta b{color:#222}figure{margin:24px 0}
figure img{width:100%;max-width:1200px;border:1px solid #e4e4e4}
figcaption{color:#444;max-width:1000px;margin-top:6px;line-height:1.4}
table{border-collapse:collapse;margin:12px 0;font-size:.95em}
th,td{border:1px solid #ddd;padding:4px 10px;text-align:left}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.firing td{color:#c00;font-weight:600}.empty{color:#777;font-style:italic}
"""


def _table(columns: list[str], rows: list[tuple[str, list[str]]], right: int, empty: str) -> str:
    """Rows are (row class, cells); columns from ``right`` on are numbers. Every text
    from the data is escaped here, once."""
    if not rows:
        return f'<p class="empty">{html.escape(empty)}</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    align = ["" if i < right else ' class="n"' for i in range(len(columns))]
    body = "".join(
        f'<tr class="{html.escape(cls)}">'
        + "".join(f"<td{a}>{html.escape(t)}</td>" for a, t in zip(align, cells, strict=True))
        + "</tr>"
        for cls, cells in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _when(epoch: float | None) -> str:
    return "—" if epoch is None else _fmt_time(_epoch(epoch))


def _html(
    app: str | None, since: datetime, until: datetime, data: dict[str, Any], drawn: list[Drawn]
) -> str:
    esc, version, plot = html.escape, data["version"], data["plot"]
    bucket = plot.bucket
    events = int(sum(t["events"] for t in data["totals"]))
    title = f"llmpulse report: {app or 'all apps'}"
    figures = "".join(
        f'<figure><img src="{esc(d.name)}" alt="{esc(d.title)}" width="1200">'
        f"<figcaption><b>{esc(d.title)}.</b> {esc(_CAPTIONS[d.name].format(bucket=bucket))}"
        + (f" <i>{esc(d.note)}.</i>" if d.note else "")
        + "</figcaption></figure>"
        for d in drawn
    )
    alerts = _table(
        ["rule", "version", "state", "fired", "resolved", "value"],
        [(str(a["state"]), [str(a["rule"]), version(a) if a["prompt_version"] else "(app)",
                            str(a["state"]), _when(a["fired_at"]),
                            _when(a["resolved_at"] if a["state"] != "firing" else None),
                            _fmt(a["value"], "num")]) for a in data["alerts"]],
        5, "No alert fired or resolved in this range.",
    )  # fmt: skip
    totals = _table(
        ["version", "events", "model-scored", "error rate", "p95 latency", "toxicity rate",
         "hallucination rate", "answer relevance", "context relevance", "cost"],
        [("", [version(t), f"{int(t['events']):,}", _scored(t), _fmt(t["error_rate"], "pct"),
               _fmt(t["latency_p95"], "ms"), _fmt(t["toxicity_rate"], "pct"),
               _fmt(t["hallucination_rate"], "pct"), _fmt(t["answer_relevance"], "cos"),
               _fmt(t["context_relevance"], "cos"), _fmt(t["cost_usd"], "usd")])
         for t in data["totals"]],
        1, "No events in this range.",
    )  # fmt: skip
    generated = _fmt_time(datetime.now(UTC))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{esc(title)}</h1>
<p class="meta"><b>App:</b> {esc(app or "all apps")} &middot;
<b>Range:</b> {esc(_fmt_time(since))} to {esc(_fmt_time(until))} &middot;
<b>Generated:</b> {esc(generated)} &middot; <b>Events:</b> {events:,} &middot;
<b>Buckets:</b> {esc(bucket)} &middot;
<b>Time axis:</b> {esc(_fmt_time(plot.start))} to {esc(_fmt_time(plot.end))}</p>
<h2>Totals per prompt version</h2>
{totals}
<h2>Alerts</h2>
{alerts}
<h2>Plots</h2>
{figures}
</body></html>
"""
