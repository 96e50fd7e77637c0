"""Rules files: what loads, and every mistake reported once, at its line, without secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import alerting.rules
from alerting.config import Action, RuleSet, Secret
from alerting.rules import (
    DurationError,
    RulesError,
    check_rules,
    load_rules,
    parse_duration,
    parse_rules,
)
from llmpulse.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "rules.yaml"

# Line numbers in the comments are the ones the cases below rely on.
BASE = """\
receivers:
  - name: pager
    type: pagerduty
    routing_key_env: PD_KEY
  - name: deployer
    type: rollback
    url: http://127.0.0.1:9000/rollback
    secret_env: ROLLBACK_SECRET
rules:
  - name: toxic
    metric: toxicity_rate
    window: 1m
    op: ">"
    threshold: 0.1
    receivers: [pager]
"""
# line 10: "- name: toxic", 11 metric, 12 window, 13 op, 14 threshold, 15 receivers, 16: added


def problems(text: str) -> list[str]:
    ruleset, found = parse_rules(text, "r.yaml")
    assert (ruleset is None) == bool(found)
    return [str(p) for p in found]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_base_is_valid() -> None:
    ruleset, found = parse_rules(BASE)
    assert found == [] and ruleset is not None
    assert [r.name for r in ruleset.rules] == ["toxic"]


def test_public_surface_is_pinned() -> None:
    assert sorted(alerting.rules.__all__) == [
        "DurationError", "RuleProblem", "RulesError", "SUMMARY_KEYS", "check_rules",
        "format_duration", "load_rules", "parse_duration", "parse_rules",
    ]  # fmt: skip


# -- the example file ------------------------------------------------------------------


def test_example_loads_into_the_expected_rules_and_receivers() -> None:
    text = EXAMPLE.read_text()
    rs = load_rules(EXAMPLE)
    assert rs.source == str(EXAMPLE)
    assert {r.metric for r in rs.rules} >= {
        "toxicity_rate", "hallucination_rate", "drift", "latency_p95", "error_rate",
        "cost_burn_rate", "negative_feedback_rate", "pii_rate",
    }  # fmt: skip
    rules = {r.name: r for r in rs.rules}

    toxic = rules["toxic-output"]
    assert (toxic.metric, toxic.op, toxic.threshold) == ("toxicity_rate", ">", 0.05)
    assert (toxic.window_s, toxic.for_s, toxic.score_threshold) == (300.0, 60.0, 0.5)
    assert toxic.filters == {"app": "support-bot", "environment": "prod"}
    assert toxic.severity == "critical"
    assert toxic.receivers == ("sre-pager", "llm-channel", "audit", "am")
    assert toxic.actions == (Action("rollback", "deployer"),)
    assert toxic.min_events == 20  # from defaults
    assert toxic.summary.startswith("{app} {prompt_version}:")
    assert toxic.line == line_of(text, "name: toxic-output")

    assert rules["slow-answers"].op == ">"  # "gt"
    drift = rules["traffic-drift"]
    assert drift.receivers == ("llm-channel", "audit")  # from defaults
    assert (drift.severity, drift.min_events, drift.repeat_interval_s) == ("warning", 1, 14_400)
    gate = rules["worse-than-baseline"]
    assert (gate.compare_to, gate.op, gate.alpha) == ("baseline", ">", 0.05)
    assert gate.min_effect is not None and gate.min_effect.size == 0.03
    assert gate.actions == (Action("rollback", "deployer"),)
    burn = rules["cost-burn"]
    assert (burn.budget_usd, burn.budget_period_s, burn.repeat_interval_s) == (50, 86_400, 43_200)
    assert burn.budget_usd is not None and rules["toxic-output"].budget_usd is None

    r = rs.receivers
    assert set(r) == {"sre-pager", "llm-channel", "deployer", "audit", "am"}
    assert {x.channel for x in r.values()} == {"pagerduty", "slack", "rollback", "webhook",
                                               "alertmanager"}  # fmt: skip
    assert r["sre-pager"].secret == Secret(env="PD_ROUTING_KEY") and r["sre-pager"].url is None
    assert r["llm-channel"].url is None
    assert r["llm-channel"].url_secret == Secret(file=Path("/run/secrets/slack_llm_webhook"))
    assert r["deployer"].url == "http://127.0.0.1:9000/rollback"
    assert r["deployer"].secret == Secret(env="LLMPULSE_ROLLBACK_SECRET")
    assert r["deployer"].timeout_s == 5.0 and r["am"].timeout_s == 10.0
    assert r["audit"].secret == Secret(file=Path("/run/secrets/audit_hmac"))
    assert r["audit"].headers == {"X-Source": "llmpulse"}
    assert r["am"].retry_deadline_s == 120.0 and r["audit"].retry_deadline_s is None
    assert r["am"].line == line_of(text, "name: am")


def test_defaults_apply_only_where_a_rule_is_silent() -> None:
    text = BASE.replace("rules:\n", """\
defaults:
  receivers: [pager]
  severity: critical
  for: 2m
  min_events: 30
  repeat_interval: 1h
rules:
""").replace("    receivers: [pager]\n", "") + """\
  - name: quiet
    metric: latency_p95
    window: 5m
    op: ">"
    threshold: 3000
    severity: info
    for: 0
    min_events: 5
    repeat_interval: 1d
    receivers: []
    actions: [rollback]
"""  # fmt: skip
    rules = {r.name: r for r in load_rules_text(text).rules}
    toxic, quiet = rules["toxic"], rules["quiet"]
    assert (toxic.receivers, toxic.severity, toxic.for_s) == (("pager",), "critical", 120.0)
    assert (toxic.min_events, toxic.repeat_interval_s) == (30, 3600.0)
    assert (quiet.receivers, quiet.severity, quiet.for_s) == ((), "info", 0.0)
    assert (quiet.min_events, quiet.repeat_interval_s) == (5, 86_400.0)
    assert quiet.actions == (Action("rollback", "deployer"),)


def test_builtin_defaults_without_a_defaults_section() -> None:
    rule = load_rules_text(BASE).rules[0]
    assert (rule.severity, rule.for_s, rule.min_events) == ("error", 0.0, 1)
    assert (rule.repeat_interval_s, rule.score_threshold, rule.filters) == (14_400.0, 0.5, {})
    assert rule.line == 10


def load_rules_text(text: str) -> RuleSet:
    ruleset, found = parse_rules(text)
    assert found == [], found
    assert ruleset is not None
    return ruleset


# -- every kind of mistake, at its line ------------------------------------------------

RULE_END = 16  # the line of anything appended to BASE's rule

CASES = [
    # (id, text, line, text expected in the problem)
    ("missing key", BASE.replace("    window: 1m\n", ""), 10,
     "rules[toxic]: missing required key 'window'"),
    ("wrong type", BASE.replace("threshold: 0.1", "threshold: high"), 14,
     "rules[toxic].threshold: expected a number, got a string"),
    ("unknown metric", BASE.replace("toxicity_rate", "toxicty_rate"), 11,
     "unknown metric 'toxicty_rate' (did you mean toxicity_rate"),
    ("unknown op", BASE.replace('op: ">"', 'op: "=="'), 13, "unknown op '=='"),
    ("unknown severity", BASE + "    severity: urgent\n", RULE_END,
     "unknown severity 'urgent'"),
    ("unknown channel", BASE.replace("type: pagerduty", "type: pagerdutty"), 3,
     "receivers[pager].type: unknown receiver type 'pagerdutty' (did you mean pagerduty?)"),
    ("unknown filter label", BASE + "    filters: {team: llm}\n", RULE_END,
     "rules[toxic].filters.team: unknown filter label"),
    ("filter value not a string", BASE + "    filters: {prompt_version: 3}\n", RULE_END,
     "filters.prompt_version: expected a string (quote it), got an integer"),
    ("duplicate rule", BASE + "  - name: toxic\n    metric: pii_rate\n", RULE_END,
     "rules[toxic].name: duplicate rule name (first defined on line 10)"),
    ("duplicate receiver", BASE.replace("name: deployer", "name: pager"), 5,
     "duplicate receiver name (first defined on line 2)"),
    ("undefined receiver", BASE.replace("[pager]", "[pager, pagr]"), 15,
     "undefined receiver 'pagr' (did you mean pager?)"),
    ("rollback receiver in receivers", BASE.replace("[pager]", "[deployer]"), 15,
     "deployer is a rollback receiver: name it in actions"),
    ("no receivers, no actions", BASE.replace("[pager]", "[]"), 10,
     "rules[toxic]: a rule needs receivers or actions"),
    ("rollback with two rollback receivers",
     BASE.replace("rules:", "  - name: d2\n    type: rollback\n    url: http://h/\n"
                            "    secret_env: S\nrules:") + "    actions: [rollback]\n",
     RULE_END + 4, "'rollback' needs exactly one receiver of type rollback (there are 2)"),
    ("rollback to a non-rollback receiver", BASE + "    actions: [{rollback: pager}]\n",
     RULE_END, "pager is not a receiver of type rollback"),
    ("unknown action", BASE + "    actions: [restart]\n", RULE_END, "unknown action"),
    ("rollback on a per-app metric",
     BASE.replace("toxicity_rate", "cost_burn_rate").replace("threshold: 0.1", "threshold: 2")
     + "    budget_usd: 10\n    actions: [rollback]\n", RULE_END + 1,
     "rollback needs a per-version metric"),
    ("literal routing key", BASE.replace("routing_key_env: PD_KEY", "routing_key: abc"), 4,
     "receivers[pager].routing_key: put secrets in routing_key_env or routing_key_file, "
     "not in the rules file"),
    ("literal secret", BASE.replace("secret_env: ROLLBACK_SECRET", "secret: abc"), 8,
     "put secrets in secret_env or secret_file, not in the rules file"),
    ("env and file", BASE.replace("PD_KEY\n", "PD_KEY\n    routing_key_file: /k\n"), 5,
     "give routing_key_env or routing_key_file, not both"),
    ("env name is not a name", BASE.replace("PD_KEY", "pd-key!"), 4,
     "must name an environment variable"),
    ("slack url literal", BASE.replace("rules:", "  - name: s\n    type: slack\n"
                                                 "    url: https://hooks.slack.com/x\nrules:"),
     11, "the Slack webhook URL is a credential: put it in url_env or url_file"),
    ("slack without url", BASE.replace("rules:", "  - name: s\n    type: slack\nrules:"), 9,
     "slack receivers need url_env or url_file"),
    ("webhook without url", BASE.replace("rules:", "  - name: w\n    type: webhook\nrules:"),
     9, "webhook receivers need url"),
    ("rollback without secret", BASE.replace("    secret_env: ROLLBACK_SECRET\n", ""), 5,
     "rollback receivers must sign their requests"),
    ("pagerduty without key", BASE.replace("    routing_key_env: PD_KEY\n", ""), 2,
     "pagerduty receivers need routing_key_env or routing_key_file"),
    ("slack takes no secret",
     BASE.replace("rules:", "  - name: s\n    type: slack\n    url_env: U\n"
                            "    secret_env: S\nrules:"), 12, "slack receivers take no secret"),
    ("bad url", BASE.replace("http://127.0.0.1:9000/rollback", "127.0.0.1:9000"), 7,
     "must be an http:// or https:// URL"),
    ("timeout not positive", BASE.replace("PD_KEY\n", "PD_KEY\n    timeout_s: 0\n"), 5,
     "receivers[pager].timeout_s: must be > 0 seconds"),
    ("credential header", BASE.replace("PD_KEY\n", "PD_KEY\n    headers: {Authorization: x}\n"),
     5, "headers.Authorization: looks like a credential"),
    ("ratio threshold above 1", BASE.replace("threshold: 0.1", "threshold: 1.5"), 14,
     "toxicity_rate is a ratio between 0 and 1"),
    ("negative threshold", BASE.replace("toxicity_rate", "latency_p95")
     .replace("threshold: 0.1", "threshold: -5"), 14, "latency_p95 is never negative"),
    ("negative for", BASE + "    for: -30s\n", RULE_END, "rules[toxic].for: must be >= 0"),
    ("zero window", BASE.replace("window: 1m", "window: 0s"), 12, "window: must be > 0"),
    ("min_events below 1", BASE + "    min_events: 0\n", RULE_END, "must be an integer >= 1"),
    ("bad duration", BASE.replace("window: 1m", "window: 5 minutes"), 12,
     "invalid duration '5 minutes'"),
    ("score_threshold on a non-score metric", BASE.replace("toxicity_rate", "latency_p95")
     .replace("threshold: 0.1", "threshold: 100") + "    score_threshold: 0.5\n", RULE_END,
     "score_threshold: only applies to toxicity_rate, hallucination_rate, injection_rate"),
    ("score_threshold out of range", BASE + "    score_threshold: 2\n", RULE_END,
     "score_threshold: must be between 0 and 1"),
    ("budget missing", BASE.replace("toxicity_rate", "cost_burn_rate")
     .replace("threshold: 0.1", "threshold: 2"), 10, "cost_burn_rate needs budget_usd"),
    ("budget on another metric", BASE + "    budget_usd: 5\n", RULE_END,
     "budget_usd: only applies to cost_burn_rate"),
    ("drift filter on a label drift does not have",
     BASE.replace("toxicity_rate", "drift").replace("threshold: 0.1", "threshold: 1")
     + "    filters: {environment: prod}\n", RULE_END, "drift can only filter on those"),
    ("summary with an unknown field", BASE + '    summary: "{app} is {status}"\n', RULE_END,
     "unknown field {status}"),
    ("summary that does not format", BASE + '    summary: "{value:d}"\n', RULE_END,
     "summary: does not format"),
    ("bad rule name", BASE.replace("name: toxic", "name: toxic output"), 10,
     "rule names may only use letters, digits"),
    ("unknown top-level key", BASE + "routes: []\n", RULE_END, "routes: unknown key"),
    ("unknown rule key", BASE + "    treshold: 3\n", RULE_END,
     "rules[toxic].treshold: unknown key (did you mean threshold"),
    ("unknown receiver key", BASE.replace("PD_KEY\n", "PD_KEY\n    urls: x\n"), 5,
     "receivers[pager].urls: unknown key (did you mean url"),
    ("unknown defaults key", BASE.replace("rules:", "defaults:\n  window: 1m\nrules:"), 10,
     "defaults.window: unknown key"),
    ("bad defaults value", BASE.replace("rules:", "defaults:\n  severity: loud\nrules:"), 10,
     "defaults.severity: unknown severity 'loud'"),
    ("bare > op", BASE.replace('op: ">"', "op: >"), 13, "quote it"),
    ("duplicate key", BASE + "    op: <\n", RULE_END, "rules[toxic].op: duplicate key"),
    ("rule is not a mapping", BASE + "  - just-a-string\n", RULE_END,
     "rules[1]: expected a mapping"),
    ("rules missing", "receivers: []\n", 1, "missing required key 'rules'"),
    ("empty file", "", 1, "the file is empty"),
    ("not a mapping", "- a\n- b\n", 1, "expected a mapping"),
    ("yaml syntax error", BASE.replace("    op: \">\"\n", "    op: \">\n"), 16,
     "yaml: invalid YAML"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_each_mistake_is_reported_at_its_line(text: str, line: int, expected: str) -> None:
    found = problems(text)
    hits = [p for p in found if expected in p]
    assert hits, f"no problem contains {expected!r}: {found}"
    assert hits[0].startswith(f"r.yaml:{line}: "), found


def test_a_mistake_gives_exactly_one_problem() -> None:
    """No cascades: a bad default or a bad receiver is not reported again per rule."""
    for text in (
        BASE.replace("rules:", "defaults:\n  receivers: [nope]\nrules:").replace(
            "    receivers: [pager]\n", ""
        ),
        BASE.replace("type: rollback", "type: rolback") + "    actions: [{rollback: deployer}]\n",
        BASE.replace("toxicity_rate", "toxicity_rat"),
        "receivers: pager\n" + BASE[BASE.index("rules:") :],
    ):
        assert len(problems(text)) == 1, problems(text)


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = (
        BASE.replace("type: pagerduty", "type: pager").replace(  # line 3
            "window: 1m", "window: soon"
        )  # line 12
        + "    severity: urgent\n"  # line 16
    )
    found = problems(text)
    assert [p.split(": ")[0] for p in found] == ["r.yaml:3", "r.yaml:12", "r.yaml:16"]


def test_yaml_syntax_error_is_one_problem_with_its_line() -> None:
    text = BASE.replace("    threshold: 0.1\n", "    threshold: [0.1\n")
    found = problems(text)
    assert len(found) == 1 and found[0].startswith("r.yaml:15: yaml: invalid YAML"), found


SECRET = "SUPERSECRET123"
LEAKS = [
    BASE.replace("routing_key_env: PD_KEY", f"routing_key: {SECRET}"),
    BASE.replace("secret_env: ROLLBACK_SECRET", f"secret: {SECRET}"),
    BASE.replace("routing_key_env: PD_KEY", f"routing_key_env: {SECRET}-not-a-name"),
    BASE.replace("routing_key_env: PD_KEY", f"routing_key_env: [{SECRET}]"),
    BASE.replace("rules:", f"  - name: s\n    type: slack\n    url: https://h/{SECRET}\nrules:"),
    BASE.replace("PD_KEY\n", f"PD_KEY\n    headers: {{X-Api-Key: {SECRET}}}\n"),
    BASE.replace("http://127.0.0.1:9000", f"http://u:{SECRET}@127.0.0.1:9000"),
    BASE.replace("routing_key_env: PD_KEY", f"routing_key_env: PD_KEY\n    routing_kye: {SECRET}"),
]


@pytest.mark.parametrize("text", LEAKS)
def test_secret_values_never_appear_in_problems(text: str, tmp_path: Path) -> None:
    found = problems(text)
    assert found and not any(SECRET in p for p in found), found
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(RulesError) as err:
        load_rules(path)
    assert SECRET not in str(err.value) and len(err.value.errors) == len(found)
    result = CliRunner().invoke(main, ["rules", "check", str(path)])
    assert result.exit_code == 1 and SECRET not in result.output


def test_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    ruleset, found = check_rules(tmp_path / "missing.yaml")
    assert ruleset is None and len(found) == 1
    assert (
        str(found[0])
        == f"{tmp_path / 'missing.yaml'}: file: cannot read: No such file or directory"
    )


# -- durations -------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("1m", 60.0), ("2h", 7200.0), ("1d", 86_400.0), ("500ms", 0.5),
    ("1w", 604_800.0), ("1h30m", 5400.0), ("1.5m", 90.0), (" 30s ", 30.0), ("45", 45.0),
    (90, 90.0), (0.25, 0.25), ("0s", 0.0), ("-30s", -30.0),
])  # fmt: skip
def test_durations_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5 minutes", "1y", "m", "1h 30m", "s30", "nan", "inf",
                                 True, None, [1]])  # fmt: skip
def test_bad_durations_say_what_is_accepted(bad: object) -> None:
    with pytest.raises(DurationError):
        parse_duration(bad)


def test_duration_error_names_the_units() -> None:
    with pytest.raises(DurationError, match=r"units ms, s, m, h, d, w \(e\.g\. 500ms"):
        parse_duration("5 minutes")


# -- llmpulse rules check --------------------------------------------------------------


def test_cli_check_passes_the_example() -> None:
    result = CliRunner().invoke(main, ["rules", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK: 9 rules, 5 receivers\n")
    assert "higher by +3pp than baseline (alpha 0.05)" in result.stdout
    assert "toxic-output" in result.stdout and "rollback:deployer" in result.stdout
    assert result.stderr == ""


def test_cli_check_lists_every_problem_and_fails(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    bad = BASE.replace("type: pagerduty", "type: pager").replace("window: 1m", "window: soon")
    path.write_text(bad + "    severity: urgent\n")
    result = CliRunner().invoke(main, ["rules", "check", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert [line.split(": ")[0] for line in lines[:3]] == [f"{path}:3", f"{path}:12", f"{path}:16"]
    assert lines[1] == f"{path}:12: rules[toxic].window: " + lines[1].split("window: ", 1)[1]
    assert lines[3:] == ["3 errors"]
    assert result.stdout == ""


def test_cli_check_reads_llmpulse_rules_without_a_file() -> None:
    result = CliRunner().invoke(main, ["rules", "check"], env={"LLMPULSE_RULES": str(EXAMPLE)})
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK: 9 rules")
