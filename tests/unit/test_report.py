"""``llmpulse report``: what each picture draws, the page, and empty data, without an engine.

The data comes through build_report's ``query`` seam: a fake that holds events and
answers each of the report's queries by the table it reads, aggregating the events into
the buckets the report asks for.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest
from click.testing import CliRunner

from analysis import report as report_mod
from analysis.report import NoDataError, build_report, choose_bucket, parse_since
from llmpulse.cli import main

NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
DEPLOY = datetime(2026, 5, 10, 10, 0, 30, tzinfo=UTC)
FIRED = datetime(2026, 5, 10, 10, 20, tzinfo=UTC)
RESOLVED = datetime(2026, 5, 10, 10, 50, tzinfo=UTC)
REFIRED = datetime(2026, 5, 10, 11, 55, tzinfo=UTC)
IMAGES = ["volume.png", "latency.png", "quality.png", "relevance.png", "drift.png", "cost.png"]
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash", "mistral-small")


@dataclass
class Result:
    columns: list[str]
    rows: list[list[Any]]

    @classmethod
    def of(cls, dicts: list[dict[str, Any]], columns: list[str] | None = None) -> Result:
        columns = columns or (list(dicts[0]) if dicts else ["x"])
        return cls(columns, [[d[c] for c in columns] for d in dicts])


@dataclass
class Ev:
    ts: datetime
    pv: str
    model: str
    app: str = "support-bot"
    error: bool = False
    latency: float = 800.0
    toxicity: float | None = 0.0  # None: not model-scored (the worker shed load)
    hallucination: float | None = None
    feedback: float | None = None
    relevance: float | None = None  # answer relevance (all sample rates 1 here)
    context_relevance: float | None = None  # the best chunk's


def _alert(rule: str, state: str, fired: datetime, resolved: datetime | None, **kw: Any):
    return {"rule": rule, "app": "support-bot", "prompt_version": "v7", "state": state,
            "fired_at": fired.timestamp(), "value": 0.1,
            "resolved_at": resolved and resolved.timestamp()} | kw  # fmt: skip


def four_hours(v7_models: tuple[str, ...] = ("gpt-4o",)) -> list[Ev]:
    """08:00 to 11:59: 10 v6 events a minute; v7 from DEPLOY, 20 a minute on each model."""
    events = []
    for minute in range(240):
        t = NOW - timedelta(hours=4) + timedelta(minutes=minute)
        events += [Ev(t + timedelta(seconds=6 * i), "v6", "gpt-4o", error=i == 0,
                      latency=700.0 + 10 * i, toxicity=0.9 * (i == 1 and minute % 5 == 0))
                   for i in range(10)]  # fmt: skip
        if t > DEPLOY:
            events += [Ev(t + timedelta(seconds=3 * i), "v7", model, latency=900.0 + 20 * i,
                          toxicity=0.9 * (i < 2), hallucination=0.9 * (i == 0),
                          feedback=-1.0 if i == 3 else 1.0 if i < 8 else None)
                       for model in v7_models for i in range(20)]  # fmt: skip
    return events


def two_minutes() -> list[Ev]:
    """A demo-like run, 11:30:00 to 11:32:00: v6, v7, then v6 again, each on five models."""
    start, events = NOW - timedelta(minutes=30), []
    for k in range(1200):  # every 0.1 s
        t = start + timedelta(seconds=k / 10)
        pv = "v7" if 400 <= k < 800 else "v6"
        events.append(Ev(t, pv, MODELS[k % 5], latency=600.0 + (k % 50) * (3 if pv == "v7" else 2),
                         toxicity=0.9 * (pv == "v7" and k % 7 == 0),
                         hallucination=0.9 * (k % 11 == 0) if k % 2 else None))  # fmt: skip
    return [*events, Ev(start + timedelta(seconds=120), "v6", "gpt-4o")]


def _q(values: list[float], q: float) -> float | None:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] if values else None


def _median(values: list[float | None]) -> float | None:
    """The lower median, what the weighted median gives at one sample rate."""
    kept = sorted(v for v in values if v is not None)
    return kept[(len(kept) - 1) // 2] if kept else None


@dataclass
class FakeStore:
    """Answers the report's queries from in-memory events; remembers the SQL it saw."""

    app: str = "support-bot"
    events: list[Ev] = field(default_factory=four_hours)
    alert_rows: list[dict[str, Any]] = field(default_factory=lambda: [
        _alert("toxic-output", "resolved", FIRED, RESOLVED),
        # firing again: its resolved_at is the previous episode's, not drawn
        _alert("<b>slow</b>", "firing", REFIRED, FIRED),
    ])  # fmt: skip
    drift_every: timedelta = timedelta(minutes=20)
    empty: bool = False
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for e in self.events:
            e.app = self.app if e.app == "support-bot" else e.app
        for a in self.alert_rows:
            a["app"] = self.app

    def __call__(self, sql: str) -> Result:
        self.seen.append(sql)
        if self.empty:
            return Result(["x"], [])
        for needle, answer in [
            ("toStartOfInterval", self.metrics),
            ("FROM llm_events AS e FINAL", self.totals),
            ("GROUP BY app ORDER BY", lambda _: Result(["app", "events"], [["other-bot", 12]])),
            ("FROM llm_events", self.first_seen),
            ("FROM alerts", lambda _: Result.of(self.alert_rows)),
            ("FROM llm_drift", self.drift),
            ("FROM llm_cost_daily", self.cost),
        ]:
            if needle in sql:
                return answer(sql)
        raise AssertionError(f"unexpected query: {sql}")

    def _groups(self, key: Any) -> dict[Any, list[Ev]]:
        groups: dict[Any, list[Ev]] = {}
        for e in sorted(self.events, key=lambda e: e.ts):
            groups.setdefault(key(e), []).append(e)
        return groups

    def metrics(self, sql: str) -> Result:
        """The report's bucketed query, over all models like the SQL."""
        step = int(re.search(r"INTERVAL (\d+) SECOND", sql)[1])  # type: ignore[index]
        rows = []
        key = lambda e: (math.floor(e.ts.timestamp() / step) * step, e.app, e.pv)  # noqa: E731
        for (t, app, pv), evs in sorted(self._groups(key).items()):
            n, lat = len(evs), [e.latency for e in evs]
            tox = [e.toxicity for e in evs if e.toxicity is not None]
            hal = [e.hallucination for e in evs if e.hallucination is not None]
            fb = [e.feedback for e in evs if e.feedback is not None]
            rows.append(dict(
                t=t, app=app, prompt_version=pv, events=n, errors=sum(e.error for e in evs),
                error_rate=sum(e.error for e in evs) / n, latency_p50=_q(lat, 0.5),
                latency_p95=_q(lat, 0.95), latency_p99=_q(lat, 0.99),
                toxicity_rate=sum(t >= 0.5 for t in tox) / len(tox) if tox else None,
                hallucination_rate=sum(h >= 0.5 for h in hal) / len(hal) if hal else None,
                feedback=len(fb), negative_feedback_rate=sum(f < 0 for f in fb) / len(fb) if fb
                else None, answer_relevance_p50=_median([e.relevance for e in evs]),
                context_relevance_p50=_median([e.context_relevance for e in evs])))  # fmt: skip
        return Result.of(rows)

    def totals(self, sql: str) -> Result:
        rows = []
        for (app, pv), evs in self._groups(lambda e: (e.app, e.pv)).items():
            n, hal = len(evs), [e.hallucination for e in evs if e.hallucination is not None]
            tox = [e.toxicity for e in evs if e.toxicity is not None]
            rows.append(dict(
                app=app, prompt_version=pv, events=n, error_rate=sum(e.error for e in evs) / n,
                latency_p95=_q([e.latency for e in evs], 0.95),
                toxicity_rate=sum(t >= 0.5 for t in tox) / len(tox) if tox else None,
                scored=len(tox),
                hallucination_rate=sum(h >= 0.5 for h in hal) / len(hal) if hal else None,
                answer_relevance=_median([e.relevance for e in evs]),
                context_relevance=_median([e.context_relevance for e in evs]),
                cost_usd=n * 0.0005, first_ts=evs[0].ts.timestamp(),
                last_ts=evs[-1].ts.timestamp()))  # fmt: skip
        return Result.of(rows)

    def first_seen(self, sql: str) -> Result:
        groups = self._groups(lambda e: (e.app, e.pv))
        rows = [[app, pv, evs[0].ts.timestamp()] for (app, pv), evs in groups.items()]
        return Result(["app", "prompt_version", "t"], rows)

    def drift(self, sql: str) -> Result:
        """A test window every ``drift_every`` from the first event; one v7 output drifted."""
        rows, first, last = [], self.events[0].ts, max(e.ts for e in self.events)
        end, pvs = first + self.drift_every, sorted({e.pv for e in self.events})
        while end <= last:
            pv = max(pvs, key=lambda v: sum(end - self.drift_every <= e.ts < end
                                            for e in self.events if e.pv == v))  # fmt: skip
            for kind in ("input", "output"):
                p = 0.0 if (pv == "v7" and kind == "output" and not any(
                    r["drifted"] for r in rows)) else 0.4  # fmt: skip
                rows.append(dict(start=(end - self.drift_every).timestamp(), end=end.timestamp(),
                                 app=self.app, prompt_version=pv, kind=kind, p_value=p,
                                 threshold=0.025, drifted=int(p <= 0.025)))  # fmt: skip
            end += self.drift_every
        return Result.of(rows)

    def cost(self, sql: str) -> Result:
        return Result(["day", "model", "events", "cost_usd", "unpriced"],
                      [["2026-05-09", "gpt-4o", 900, 2.0, 0],
                       ["2026-05-10", "gpt-4o", 4000, 3.0, 3],
                       ["2026-05-10", "gpt-4o-mini", 780, 0.75, 0]])  # fmt: skip


def _build(tmp_path: Path, store: FakeStore, since: timedelta = timedelta(hours=4), **kw: Any):
    return build_report(store, store.app, NOW - since, tmp_path / "out", now=NOW, **kw)


def test_every_image_is_a_1200x500_png(tmp_path: Path) -> None:
    report = _build(tmp_path, FakeStore())
    assert [p.name for p in report.images] == IMAGES
    for path in report.images:
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[:2] == (500, 1200), path.name


def test_report_json_says_what_was_drawn(tmp_path: Path) -> None:
    report = _build(tmp_path, FakeStore())
    meta = json.loads(report.json.read_text())
    # four hours of data: 5-minute buckets
    assert meta["bucket"] == "5 min" and meta["bucket_seconds"] == 300
    assert meta["events"] == 4780
    volume = meta["images"]["volume.png"]
    points = {s["label"]: s["points"] for s in volume["series"]}
    assert points["events: v6"] == 48 and points["events: v7"] == 24
    assert {"error rate: v6", "error rate: v7"} <= points.keys()
    markers = {(m["kind"], m["label"]) for m in volume["markers"]}
    assert {("deploy", "v6"), ("deploy", "v7")} <= markers
    assert ("firing", "toxic-output · v7") in markers
    assert ("resolved", "toxic-output · v7") in markers
    # a firing alert has no resolved marker, even with a stale resolved_at
    assert ("firing", "<b>slow</b> · v7") in markers
    assert not any(k == "resolved" and "slow" in label for k, label in markers)
    texts = [label["text"] for label in volume["labels"]]
    assert "toxic-output firing (v7)" in texts and "deploy v7" in texts
    assert {f"{q}: v7" for q in ("p50", "p95", "p99")} <= set(report.series["latency.png"])
    assert {"toxicity: v6", "toxicity: v7", "hallucination: v7", "negative feedback: v7"} <= set(
        report.series["quality.png"]
    )
    assert "hallucination: v6" not in report.series["quality.png"]  # all NULL: nothing to draw
    assert {"v6 input", "v7 output", "BH threshold", "drifted"} <= set(report.series["drift.png"])
    assert report.series["cost.png"] == ["gpt-4o", "gpt-4o-mini"]
    assert "3 events have no price" in meta["images"]["cost.png"]["note"]
    for name in IMAGES:  # Report.series and report.json agree
        assert report.series[name] == [s["label"] for s in meta["images"][name]["series"]]


def test_totals_say_how_many_events_the_model_scores_rest_on(tmp_path: Path) -> None:
    events = four_hours()
    for k, e in enumerate(e for e in events if e.pv == "v7"):
        e.toxicity = e.toxicity if k % 4 == 0 else None  # shed load: a quarter scored
    for e in events:
        e.toxicity = None if e.pv == "v6" else e.toxicity  # v6: never scored
    report = _build(tmp_path, FakeStore(events=events))
    page = report.html.read_text()
    assert "<th>model-scored</th>" in page
    assert '<td class="n">595 (25%)</td>' in page  # 595 of v7's 2,380 events
    assert '<td class="n">0 (0%)</td>' in page
    # v6 has no toxicity rate: nothing drawn for it, rather than a line at 0
    assert "toxicity: v6" not in report.series["quality.png"]
    assert "toxicity: v7" in report.series["quality.png"]


def _versions(series: list[str]) -> list[str]:
    """The version of each series label ("p95: v7" -> "v7", "v7 output" -> "v7")."""
    return [label.split(": ")[-1].split(" ")[0] for label in series]


@pytest.mark.parametrize("store", [FakeStore(events=four_hours(MODELS[:2])),
                                   FakeStore(events=two_minutes())])  # fmt: skip
def test_one_series_per_version_whatever_the_models(tmp_path: Path, store: FakeStore) -> None:
    report = _build(tmp_path, store, since=timedelta(hours=24))
    assert report.series["latency.png"] == [f"{q}: {v}" for q in ("p50", "p95", "p99")
                                            for v in ("v6", "v7")]  # fmt: skip
    for name in ("volume.png", "latency.png", "quality.png"):
        versions = _versions(report.series[name])
        assert set(versions) == {"v6", "v7"}, name
        prefixes = [label.split(": ")[0] for label in report.series[name]]
        assert len(set(zip(prefixes, versions, strict=True))) == len(versions), name
    metrics = next(sql for sql in store.seen if "toStartOfInterval" in sql)
    assert "FROM llm_events AS e FINAL" in metrics and "model" not in metrics
    assert "GROUP BY t, app, prompt_version" in metrics
    # feedback is read only for the app's events in the range
    assert (
        "FROM llm_feedback WHERE event_id IN (SELECT event_id FROM llm_events WHERE "
        "app = 'support-bot' AND ts >= " in metrics
    )
    assert not any("llm_metrics_" in sql for sql in store.seen)


def test_time_axis_follows_the_data_not_the_requested_range(tmp_path: Path) -> None:
    store = FakeStore(events=two_minutes(), drift_every=timedelta(seconds=20))
    report = _build(tmp_path, store, since=timedelta(hours=24))
    meta = json.loads(report.json.read_text())
    assert meta["bucket"] == "5 s" and meta["bucket_seconds"] == 5
    assert any("INTERVAL 5 SECOND" in sql for sql in store.seen)
    axis = {k: datetime.fromisoformat(v) for k, v in meta["time_axis"].items()}
    assert axis["from"] <= NOW - timedelta(minutes=30) < axis["to"]  # the first event
    assert timedelta(minutes=2) <= axis["to"] - axis["from"] <= timedelta(minutes=2, seconds=20)
    points = {s["label"]: s["points"] for s in meta["images"]["volume.png"]["series"]}
    assert points["events: v6"] == 17 and points["events: v7"] == 8  # v6, v7, v6 again
    assert meta["until"] == NOW.isoformat()  # the range asked for is still said
    page = report.html.read_text()
    assert "<b>Buckets:</b> 5 s" in page and "2026-05-10 11:29:5" in page
    assert "Events per 5 s" in meta["images"]["volume.png"]["title"]


@pytest.mark.parametrize(
    ("span", "bucket"),
    [(timedelta(0), "1 s"), (timedelta(seconds=55), "2 s"), (timedelta(minutes=2), "5 s"),
     (timedelta(minutes=20), "30 s"), (timedelta(hours=4), "5 min"), (timedelta(hours=24), "1 h"),
     (timedelta(days=7), "6 h"), (timedelta(days=30), "1 day")],
)  # fmt: skip
def test_bucket_size_follows_the_span(span: timedelta, bucket: str) -> None:
    assert choose_bucket(span)[1] == bucket


def test_buckets_give_a_readable_number_of_points() -> None:
    for seconds in [30 * 1.37**k for k in range(40)]:  # 30 s .. about 4 months
        step, _ = choose_bucket(timedelta(seconds=seconds))
        assert 24 <= seconds / step <= 84 or step == 7 * 86400, seconds


def test_close_alert_markers_share_one_label(tmp_path: Path) -> None:
    """Three alerts within a second of each other: one label, not three on top of each other."""
    fired = NOW - timedelta(minutes=29)
    store = FakeStore(events=two_minutes(), alert_rows=[
        _alert("toxic-answers", "resolved", fired, fired + timedelta(seconds=14)),
        _alert("ungrounded-answers", "resolved", fired, fired + timedelta(seconds=14)),
        _alert("topic-drift", "resolved", fired + timedelta(seconds=0.8),
               fired + timedelta(seconds=39)),
    ])  # fmt: skip
    report = _build(tmp_path, store, since=timedelta(hours=24))
    meta = json.loads(report.json.read_text())
    span = datetime.fromisoformat(meta["time_axis"]["to"]) - datetime.fromisoformat(
        meta["time_axis"]["from"]
    )
    for name in ("volume.png", "latency.png", "quality.png"):
        image = meta["images"][name]
        assert len(image["markers"]) == 2 + 3 + 3, name  # deploys, firings, resolutions
        labels = image["labels"]
        assert sum(label["markers"] for label in labels) == len(image["markers"]), name
        firing = [label["text"] for label in labels if "firing" in label["text"]]
        assert len(firing) == 1, name
        assert "toxic-answers, ungrounded-answers, topic-drift firing (v7)" in firing[0], name
        times = sorted(datetime.fromisoformat(label["at"]) for label in labels)
        assert all(b - a > span / 100 for a, b in pairwise(times)), name


def test_html_references_every_image_and_escapes_the_data(tmp_path: Path) -> None:
    store = FakeStore(app="<script>alert('x')</script>")
    report = _build(tmp_path, store)
    page = report.html.read_text()
    for name in IMAGES:
        assert f'src="{name}"' in page
    assert "<script>" not in page and "<b>slow</b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;slow&lt;/b&gt;" in page
    assert "toxic-output" in page and "4,780" in page
    # the app name reached the SQL as a quoted literal, not as SQL
    assert all("app = '<script>alert(\\'x\\')</script>'" in sql for sql in store.seen)


def test_empty_data_draws_no_data_and_does_not_fail(tmp_path: Path) -> None:
    report = _build(tmp_path, FakeStore(empty=True))
    meta = json.loads(report.json.read_text())
    assert report.events == 0 and report.alerts == 0
    for name in IMAGES:
        assert meta["images"][name]["series"] == []
        assert "no" in meta["images"][name]["note"]
        assert matplotlib.image.imread(tmp_path / "out" / name).shape[:2] == (500, 1200)
    assert "No events in this range." in report.html.read_text()


def test_require_data_refuses_before_writing_and_names_other_apps(tmp_path: Path) -> None:
    store = FakeStore(empty=True)
    with pytest.raises(NoDataError, match="support-bot"):
        _build(tmp_path, store, require_data=True)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", NOW - timedelta(minutes=90)),
        ("6h", NOW - timedelta(hours=6)),
        ("7d", NOW - timedelta(days=7)),
        ("2026-05-01", datetime(2026, 5, 1, tzinfo=UTC)),
        ("2026-05-01T08:30", datetime(2026, 5, 1, 8, 30, tzinfo=UTC)),
        ("2026-05-01T10:30+02:00", datetime(2026, 5, 1, 8, 30, tzinfo=UTC)),
    ],
)
def test_since_takes_durations_and_iso_dates(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "0m", "-1h", "2026-13-01", "2026-06-01"])
def test_since_refuses_nonsense_and_the_future(text: str) -> None:
    with pytest.raises(ValueError):
        parse_since(text, NOW)


def test_cli_prints_the_files_and_a_summary(tmp_path: Path, monkeypatch) -> None:
    real = report_mod.build_report

    def fake_build(query, app, since, out, **kw):  # type: ignore[no-untyped-def]
        return real(FakeStore(), app, since, out, **kw)  # the CLI's query, replaced

    monkeypatch.setattr(report_mod, "build_report", fake_build)
    result = CliRunner().invoke(
        main, ["report", "--app", "support-bot", "--since", "4h", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "r" / "index.html") in result.output
    assert str(tmp_path / "r" / "volume.png") in result.output
    assert "4780 events, 2 prompt versions, 2 alerts" in result.output


def test_cli_says_clearly_when_there_is_no_data(tmp_path: Path, monkeypatch) -> None:
    real = report_mod.build_report

    def fake_build(query, app, since, out, **kw):  # type: ignore[no-untyped-def]
        return real(FakeStore(empty=True), app, since, out, **kw)

    monkeypatch.setattr(report_mod, "build_report", fake_build)
    result = CliRunner().invoke(main, ["report", "--app", "nope", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "no events for app 'nope'" in result.output
    bad = CliRunner().invoke(main, ["report", "--since", "soon"])
    assert bad.exit_code == 2 and "--since" in bad.output


def test_several_apps_are_told_apart(tmp_path: Path) -> None:
    """v7 belongs to a second app: with no --app, series must say which app they are."""
    events = four_hours()
    for e in events:
        e.app = "other-bot" if e.pv == "v7" else e.app
    store = FakeStore(events=events)
    report = build_report(store, None, NOW - timedelta(hours=4), tmp_path, now=NOW)
    assert {"events: support-bot/v6", "events: other-bot/v7"} <= set(report.series["volume.png"])
    page = report.html.read_text()
    assert "llmpulse report: all apps" in page and "other-bot/v7" in page


def test_relevance_is_drawn_per_version_and_its_medians_are_in_the_totals(tmp_path: Path) -> None:
    events = four_hours()
    for i, e in enumerate(events):
        if e.pv == "v6":  # a RAG version: answers and chunks on topic
            e.relevance, e.context_relevance = (0.55, 0.75) if i % 2 else (0.65, 0.85)
        else:  # v7 answers wander off and retrieve nothing
            e.relevance = 0.25
    report = _build(tmp_path, FakeStore(events=events))
    series = report.series["relevance.png"]
    assert set(series) == {"answer: v6", "best chunk: v6", "answer: v7"}
    meta = json.loads(report.json.read_text())
    assert {m["label"] for m in meta["images"]["relevance.png"]["markers"]} >= {"v6", "v7"}
    page = report.html.read_text()
    assert "<th>answer relevance</th><th>context relevance</th>" in page
    # v6: the lower medians 0.55 and 0.75; v7: 0.25 and no context to score
    assert '<td class="n">0.55</td><td class="n">0.75</td>' in page
    assert '<td class="n">0.25</td><td class="n">—</td>' in page


def test_without_relevance_scores_the_relevance_plot_says_no_data(tmp_path: Path) -> None:
    report = _build(tmp_path, FakeStore())  # no event carries a relevance
    meta = json.loads(report.json.read_text())
    assert meta["images"]["relevance.png"]["series"] == []
    assert meta["images"]["relevance.png"]["note"] == "no data"


def test_retrieval_drift_kinds_are_drawn_in_the_drift_plot(tmp_path: Path) -> None:
    store = FakeStore()
    vectors = store.drift

    def with_retrieval(sql: str) -> Result:
        found = vectors(sql)
        rows = [dict(zip(found.columns, r, strict=True)) for r in found.rows]
        return Result.of(rows + [{**r, "kind": "chunk_length"} for r in rows])

    store.drift = with_retrieval  # type: ignore[method-assign]
    report = _build(tmp_path, store)
    assert {"v7 output", "v7 chunk_length"} <= set(report.series["drift.png"])
