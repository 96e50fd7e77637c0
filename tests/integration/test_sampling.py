"""Load shedding on the real engine: migration 0007 upgrades stored rows, and every rate
of a model score (views, alert metrics and their notification, baseline rules, compare,
the report) is over the events that carry the score, each weighted by 1 / sample_rate
(0009), NULL where none does.

One database, built as a worker before 0007 left it and then upgraded:
- ``legacy`` v1: 5 events stored before 0007, all model-scored, one toxic;
- ``bot`` v7: 40 events at sample rate 0.25: 10 model-scored (2 toxic, 1 injection,
  6 with context of which 1 hallucinated) and 30 not (NULL scores; 4 of them with PII);
- ``bot`` v5: 5 events at sample rate 0.1, none model-scored;
- ``step``, where the sample rate changes inside the window: v8 (the baseline) 100
  events at rate 1.0, 10 toxic; v9 100 events at rate 1.0 with 10 toxic, then 200 at
  rate 0.2 of which 40 were scored (12 toxic) and 160 not. Weighting each scored event
  by 1 / sample_rate, v9's toxicity rate is (10 + 12 / 0.2) / (100 + 40 / 0.2) =
  70 / 300 = 23.3 %; flagged / scored would say 22 / 140 = 15.7 %, the fully scored
  first part counting five times its share.

Runs in a child process: chdb allows one engine directory per process.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import run_script

pytestmark = pytest.mark.integration

SCRIPT = r"""
import asyncio, json, sys, time
from datetime import UTC, datetime, timedelta
from pathlib import Path
import storage.migrations as migrations
from alerting.comparison import Baseline, Version, judge
from alerting.config import Rule, RuleSet
from alerting.evaluator import Evaluator
from alerting.metrics import metric_query
from analysis.compare import compare
from analysis.report import build_report
from storage.engine import Engine

DB = "llmpulse_sampling"
base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
at = lambda s: base + timedelta(seconds=s)
every = migrations.available

legacy = [[f"l{i}", at(6 + i / 10), "legacy", "m", "v1", f"old {i}", 0.9 if i == 0 else 0.1,
           0.0] for i in range(5)]
cols = ["event_id", "ts", "app", "model", "prompt_version", "output", "toxicity",
        "toxicity_scores", "injection", "injection_signals", "hallucination", "pii_input",
        "sample_rate"]
rows = []
for i in range(40):  # v7: the first 10 (all in the first second) were model-scored
    scored = i < 10
    tox = (0.9 if i < 2 else 0.1) if scored else None
    rows.append([f"v7-{i}", at(i / 10), "bot", "m", "v7", f"answer {i}", tox,
                 {"toxicity": tox} if scored else {}, (0.95 if i == 2 else 0.0) if scored else None,
                 ["instruction_override"] if i in (2, 20) else [],
                 (0.9 if i == 3 else 0.1) if i < 6 else None,
                 ["email"] if 10 <= i < 14 else [], 0.25])
for j in range(5):
    rows.append([f"v5-{j}", at(5 + j / 10), "bot", "m", "v5", f"quiet {j}", None, {}, None, [],
                 None, [], 0.1])

step = []  # the sample rate changes inside one minute (see the module's docstring)
for i in range(100):
    step.append([f"v8-{i}", at(8 + i / 100), "step", "m", "v8", f"before {i}",
                 0.9 if i < 10 else 0.1, {}, 0.0, [], None, [], 1.0])
for i in range(300):
    full, scored = i < 100, i < 140
    toxic = i < 10 if full else i - 100 < 12
    step.append([f"v9-{i}", at(10 + i / 10), "step", "m", "v9", f"after {i}",
                 (0.9 if toxic else 0.1) if scored else None, {}, 0.0 if scored else None, [],
                 None, [], 1.0 if full else 0.2])

class Result:
    def __init__(self, r):
        self.columns, self.rows = list(r.column_names), [list(x) for x in r.result_rows]

with Engine(f"chdb://{sys.argv[1]}", DB) as engine:
    c = engine.client
    out = {}
    def upgrade():
        migrations.available = lambda: [m for m in every() if m.version < 7]
        migrations.migrate(c, DB, ttl_days=30)
        c.insert(f"{DB}.llm_events", legacy, column_names=["event_id", "ts", "app", "model",
                 "prompt_version", "output", "toxicity", "injection"])
        migrations.available = every
        out["applied"] = [m.version for m in migrations.migrate(c, DB, ttl_days=30)]
        out["types"] = dict(c.query(
            f"SELECT name, type FROM system.columns WHERE database = '{DB}' "
            "AND table = 'llm_events' AND name IN ('toxicity', 'injection', 'sample_rate')"
        ).result_rows)
        out["legacy"] = [list(r) for r in c.query(
            f"SELECT event_id, toxicity, sample_rate FROM {DB}.llm_events FINAL "
            "WHERE app = 'legacy' ORDER BY event_id").result_rows]
        c.insert(f"{DB}.llm_events", rows, column_names=cols)
        c.insert(f"{DB}.llm_events", step, column_names=cols)
    engine.call(upgrade)
    now = time.time()

    def named(sql):
        return [dict(zip(r.column_names, x)) for r in [c.query(sql)] for x in r.result_rows]
    def views():
        out["1m"] = named(f"SELECT * FROM {DB}.llm_metrics_1m ORDER BY app, prompt_version")
        out["1h"] = named(f"SELECT app, prompt_version, toxicity_rate, toxicity_scored "
                          f"FROM {DB}.llm_metrics_1h ORDER BY app, prompt_version")
        out["sampling"] = named(f"SELECT * FROM {DB}.llm_sampling ORDER BY app")
        out["metrics"] = {}
        for metric in ("toxicity_rate", "injection_rate", "toxicity_max",
                       "hallucination_rate", "pii_rate"):
            rule = Rule("r", metric, ">", 0.1, window_s=60.0, filters={"app": "bot"})
            out["metrics"][metric] = {
                r[1]: [r[2], r[3]] for r in c.query(metric_query(DB, rule, now).sql).result_rows}
    engine.call(views)

    async def query(sql):
        return engine.call(lambda: c.query(sql).result_rows)
    async def fire(rule):
        # the notifications one evaluation of the rule sends
        sent = []
        async def save(states): pass
        async def send(note): sent.append(note)
        ev = Evaluator(RuleSet(rules=(rule,), receivers={}), DB, query, save, send,
                       lambda app, version: True, clock=lambda: now)
        await ev.tick()
        return sent
    async def evaluate():
        sent = await fire(Rule("toxic", "toxicity_rate", ">", 0.1, window_s=60.0, min_events=5,
                               filters={"app": "bot"}, receivers=("pager",)))
        return [{"version": n.prompt_version, "value": n.value, "count": n.count,
                 "counted": n.counted, "summary": n.summary,
                 "examples": list(n.evidence.examples)} for n in sent]
    out["notes"] = asyncio.run(evaluate())


    until = datetime.fromtimestamp(now + 1, UTC)
    cmp = engine.call(compare, named, "bot", "v5", "v7", "2h", until=until)
    out["compare"] = {m.name: {"baseline": [m.baseline.n, m.baseline.value],
                               "candidate": [m.candidate.n, m.candidate.value, m.candidate.hits],
                               "sql": named(m.sql)}
                      for m in cmp.metrics if m.name in ("toxicity_rate", "injection_rate")}
    out["compare_counts"] = cmp.counts

    seen = {}
    def report_query(sql):
        seen[sql] = Result(c.query(sql))
        return seen[sql]
    report = engine.call(build_report, report_query, "bot", until - timedelta(hours=2),
                         Path(sys.argv[1]).parent / "report", now=until)
    rows_of = lambda needle: [dict(zip(r.columns, x)) for s, r in seen.items() if needle in s
                              for x in r.rows]
    out["report_totals"] = rows_of("first_ts")
    out["report_buckets"] = rows_of("toStartOfInterval")
    out["report_page"] = report.html.read_text()
    def stepped():
        out["step_1m"] = named(f"SELECT * FROM {DB}.llm_metrics_1m WHERE app = 'step' "
                               "ORDER BY prompt_version")
        out["step_1h"] = named(f"SELECT prompt_version, toxicity_rate, toxicity_scored, "
                               f"toxicity_weight FROM {DB}.llm_metrics_1h WHERE app = 'step' "
                               "ORDER BY prompt_version")
        rule = Rule("r", "toxicity_rate", ">", 0.2, window_s=60.0, filters={"app": "step"})
        out["step_metric"] = {
            r[1]: [r[2], r[3]] for r in c.query(metric_query(DB, rule, now).sql).result_rows}
    engine.call(stepped)
    async def step_alerts():
        sent = await fire(Rule("toxic", "toxicity_rate", ">", 0.2, window_s=60.0, min_events=5,
                               filters={"app": "step"}, receivers=("pager",)))
        worse = Rule("worse", "toxicity_rate", ">", 0.0, window_s=3600.0, min_events=30,
                     compare_to="baseline", alpha=0.05)
        v8, v9 = Version("step", "v8", now - 120, now), Version("step", "v9", now - 60, now)
        judged = await judge(DB, worse, v9, Baseline(v8, now - 61), now, query)
        cmp = judged.comparison
        return ([{"version": n.prompt_version, "value": n.value, "count": n.count,
                  "summary": n.summary} for n in sent],
                {"baseline": [cmp.baseline_count, cmp.baseline_share],
                 "candidate": [cmp.candidate_count, cmp.candidate_share],
                 "judged": cmp.judged})
    out["step_notes"], out["step_judged"] = asyncio.run(step_alerts())
    m = engine.call(compare, named, "step", "v8", "v9", "2h", until=until).metric("toxicity_rate")
    out["step_compare"] = {"baseline": [m.baseline.n, m.baseline.value, m.baseline.hits],
                           "candidate": [m.candidate.n, m.candidate.value, m.candidate.hits],
                           "sql": named(m.sql)}
    seen.clear()
    report = engine.call(build_report, report_query, "step", until - timedelta(hours=2),
                         Path(sys.argv[1]).parent / "step-report", now=until)
    out["step_report_totals"] = rows_of("first_ts")
    out["step_report_page"] = report.html.read_text()
    print(json.dumps(out, default=str))
"""


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_script(SCRIPT, tmp_path_factory.mktemp("run") / "chdb")


def key(rows: list[dict], app: str, version: str | None = None) -> dict:
    (row,) = [r for r in rows if r["app"] == app and version in (None, r.get("prompt_version"))]
    return row


# --- migration 0007 ---------------------------------------------------------------------


def test_0007_upgrades_a_database_with_rows_and_old_rows_read_fully_scored(found: dict) -> None:
    assert found["applied"][0] == 7  # then any later migration
    assert found["types"] == {
        "toxicity": "Nullable(Float32)", "injection": "Nullable(Float32)",
        "sample_rate": "Float32",
    }  # fmt: skip
    assert [r[2] for r in found["legacy"]] == [1.0] * 5
    assert found["legacy"][0][1] == pytest.approx(0.9)  # scores kept through the type change


# --- views ------------------------------------------------------------------------------


def test_view_rates_are_flagged_over_scored_events(found: dict) -> None:
    v7 = key(found["1m"], "bot", "v7")
    assert v7["events"] == 40
    assert (v7["toxicity_rate"], v7["toxicity_scored"]) == (pytest.approx(0.2), 10)
    assert (v7["injection_rate"], v7["injection_scored"]) == (pytest.approx(0.1), 10)
    assert (v7["hallucination_rate"], v7["hallucination_scored"]) == (pytest.approx(1 / 6), 6)
    assert v7["pii_rate"] == pytest.approx(0.1)  # cheap detectors: over every event


def test_view_rates_of_a_bucket_with_no_scored_event_are_null_not_zero(found: dict) -> None:
    v5 = key(found["1m"], "bot", "v5")
    assert v5["events"] == 5 and v5["toxicity_scored"] == 0 and v5["injection_scored"] == 0
    assert v5["toxicity_rate"] is None and v5["injection_rate"] is None
    assert v5["hallucination_rate"] is None


def test_hourly_view_rates_are_over_scored_events_too(found: dict) -> None:
    assert key(found["1h"], "bot", "v7")["toxicity_rate"] == pytest.approx(0.2)
    assert key(found["1h"], "bot", "v5")["toxicity_rate"] is None
    legacy = key(found["1h"], "legacy")
    assert (legacy["toxicity_rate"], legacy["toxicity_scored"]) == (pytest.approx(0.2), 5)


def test_sampling_view_shows_events_scored_and_the_sample_rate_per_minute(found: dict) -> None:
    bot = key(found["sampling"], "bot")
    assert (bot["events"], bot["scored"]) == (45, 10)
    assert bot["sample_rate_avg"] == pytest.approx((40 * 0.25 + 5 * 0.1) / 45, rel=1e-6)
    assert bot["sample_rate_min"] == pytest.approx(0.1, rel=1e-6)
    legacy = key(found["sampling"], "legacy")
    assert (legacy["events"], legacy["scored"]) == (5, 5)
    assert (legacy["sample_rate_avg"], legacy["sample_rate_min"]) == (1.0, 1.0)


# --- alerts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "v7", "v5"),
    [
        ("toxicity_rate", [0.2, 10], [None, 0]),
        ("injection_rate", [0.1, 10], [None, 0]),
        ("toxicity_max", [0.9, 10], [None, 0]),
        ("hallucination_rate", [1 / 6, 6], [None, 0]),
        ("pii_rate", [0.1, 40], [0.0, 5]),  # not a model score: every event counts
    ],
)
def test_alert_metrics_rest_on_the_scored_events(
    found: dict, metric: str, v7: list, v5: list
) -> None:
    got = found["metrics"][metric]
    assert got["v7"] == [pytest.approx(v7[0]), v7[1]]
    assert got["v5"] == ([None, 0] if v5[0] is None else [pytest.approx(v5[0]), v5[1]])


def test_a_firing_alert_says_how_many_scored_events_its_value_rests_on(found: dict) -> None:
    (note,) = found["notes"]  # v5 has no value: nothing scored, no alert
    assert note["version"] == "v7" and note["value"] == pytest.approx(0.2)
    assert (note["count"], note["counted"]) == (10, "scored events")
    assert note["summary"].endswith("(10 scored events)")
    assert sorted(note["examples"]) == ["answer 0", "answer 1"]


# --- compare and report -----------------------------------------------------------------


def test_compare_rates_are_over_the_scored_events_of_each_side(found: dict) -> None:
    tox, inj = found["compare"]["toxicity_rate"], found["compare"]["injection_rate"]
    assert tox["candidate"] == [10, pytest.approx(0.2), 2]
    assert inj["candidate"] == [10, pytest.approx(0.1), 1]
    assert tox["baseline"] == [0, None]  # v5: nothing scored, no rate
    # the evidence SQL gives the same numbers, NULL (not NaN) on the unscored side
    sql = {r["side"]: r for r in tox["sql"]}
    assert (sql["candidate"]["n"], sql["candidate"]["rate"]) == (10, pytest.approx(0.2))
    assert (sql["baseline"]["n"], sql["baseline"]["rate"]) == (0, None)
    counts = found["compare_counts"]["candidate"]
    assert (counts["events"], counts["with_toxicity"], counts["with_injection"]) == (40, 10, 10)


def test_report_rates_are_over_scored_events_and_null_where_none_was(found: dict) -> None:
    v7 = key(found["report_totals"], "bot", "v7")
    assert (v7["events"], v7["scored"]) == (40, 10)
    assert v7["toxicity_rate"] == pytest.approx(0.2)
    assert v7["hallucination_rate"] == pytest.approx(1 / 6)
    assert key(found["report_totals"], "bot", "v5")["toxicity_rate"] is None
    # 1 s buckets: the scored events all fall in v7's first second
    buckets = sorted(
        (r for r in found["report_buckets"] if r["prompt_version"] == "v7"), key=lambda r: r["t"]
    )
    assert [r["toxicity_rate"] for r in buckets] == [pytest.approx(0.2), None, None, None]
    assert "10 (25%)" in found["report_page"]  # the totals' model-scored column


# --- a sample rate that changes inside the window ---------------------------------------

WEIGHTED = 70 / 300  # (10 + 12 / 0.2) / (100 + 40 / 0.2): 23.3 %, where 22 / 140 = 15.7 %


def test_view_rates_weight_each_scored_event_by_one_over_its_sample_rate(found: dict) -> None:
    v9 = key(found["step_1m"], "step", "v9")
    assert (v9["events"], v9["toxicity_scored"]) == (300, 140)  # the count stays plain
    assert v9["toxicity_rate"] == pytest.approx(WEIGHTED)
    assert v9["toxicity_weight"] == pytest.approx(300)  # the events the scored ones stand for
    assert v9["injection_rate"] == pytest.approx(0.0)
    v8 = key(found["step_1m"], "step", "v8")  # one sample rate, 1: the plain share
    assert (v8["toxicity_rate"], v8["toxicity_scored"], v8["toxicity_weight"]) == (
        pytest.approx(0.1), 100, pytest.approx(100),
    )  # fmt: skip
    v9h = [r for r in found["step_1h"] if r["prompt_version"] == "v9"]
    assert [(r["toxicity_rate"], r["toxicity_scored"]) for r in v9h] == [
        (pytest.approx(WEIGHTED), 140)
    ]


def test_alert_metric_is_the_weighted_rate_and_counts_the_scored_events(found: dict) -> None:
    assert found["step_metric"]["v9"] == [pytest.approx(WEIGHTED), 140]
    assert found["step_metric"]["v8"] == [pytest.approx(0.1), 100]


def test_a_threshold_between_the_plain_and_the_weighted_rate_fires_on_the_weighted(
    found: dict,
) -> None:
    # toxicity_rate > 20 %: 15.7 % unweighted would stay quiet, 23.3 % fires
    (note,) = found["step_notes"]
    assert (note["version"], note["value"], note["count"]) == ("v9", pytest.approx(WEIGHTED), 140)
    assert note["summary"].endswith("(140 scored events)")


def test_a_baseline_rule_compares_weighted_shares_over_the_scored_counts(found: dict) -> None:
    judged = found["step_judged"]
    assert judged["candidate"] == [140, pytest.approx(WEIGHTED)]
    assert judged["baseline"] == [100, pytest.approx(0.1)]
    assert judged["judged"] is True


def test_compare_gives_the_weighted_rate_and_its_sql_the_same_numbers(found: dict) -> None:
    got = found["step_compare"]
    assert got["candidate"] == [140, pytest.approx(WEIGHTED), pytest.approx(140 * WEIGHTED)]
    assert got["baseline"] == [100, pytest.approx(0.1), pytest.approx(10)]
    sql = {r["side"]: r for r in got["sql"]}
    assert (sql["candidate"]["n"], sql["candidate"]["rate"], sql["candidate"]["hits"]) == (
        140, pytest.approx(WEIGHTED), pytest.approx(140 * WEIGHTED),
    )  # fmt: skip
    assert (sql["baseline"]["rate"], sql["baseline"]["hits"]) == (pytest.approx(0.1), 10)


def test_report_totals_show_the_weighted_rate(found: dict) -> None:
    v9 = key(found["step_report_totals"], "step", "v9")
    assert (v9["events"], v9["scored"]) == (300, 140)
    assert v9["toxicity_rate"] == pytest.approx(WEIGHTED)
    assert "23.3%" in found["step_report_page"] and "15.7%" not in found["step_report_page"]
