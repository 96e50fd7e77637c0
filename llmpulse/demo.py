"""``llmpulse demo``: a scripted incident on the embedded stack, narrated.

support-bot runs prompt v6; v7 is deployed and turns rude, contradicts its retrieved
context and drifts to a new topic; alerts fire; the rollback webhook (a local deploy
service started here) is called with a signed request and moves traffic back to v6;
the alerts resolve. Everything is real: the Tansu broker, a worker process, the
ClickHouse engine, HTTP receivers on 127.0.0.1. The data stays in ``--home`` for
``llmpulse sql``, ``report`` and ``compare`` afterwards.
"""

from __future__ import annotations

import html
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.status import Status
from rich.table import Table

from core.errors import LlmpulseError
from core.settings import Settings, load_settings
from llmpulse.broker import EmbeddedBroker, free_port
from llmpulse.demo_parts import APP, Call, Receivers, Traffic
from llmpulse.query import run_query

__all__ = ["SHORT", "DemoError", "Script", "run_demo"]

MARKER = "demo.json"


@dataclass(frozen=True)
class Script:
    """The incident's timings; ``SHORT`` is the same story, faster, for the tests."""

    rate: int = 20  # events per second
    calm_s: float = 20.0  # v6 traffic before the deploy
    window: str = "30s"  # alert rule windows
    for_: str = "10s"
    drift_window: str = "45s"
    reference: int = 200  # drift reference: v6's first events
    drift_window_size: int = 100
    max_s: float = 300.0  # give up (and say so) after this long


SHORT = Script(calm_s=8.0, window="10s", for_="2s", drift_window="15s", reference=100,
               drift_window_size=50, max_s=240.0)  # fmt: skip

RULES = """# The demo's rules (see docs/alerting.md). Receivers are local stand-ins.
receivers:
  - name: pagerduty
    type: pagerduty
    url: {pd}
    routing_key_env: DEMO_PD_ROUTING_KEY
  - name: slack
    type: slack
    url_env: DEMO_SLACK_URL
  - name: deploy-service
    type: rollback
    url: {rollback}
    secret_env: DEMO_ROLLBACK_SECRET
rules:
  - name: toxic-answers
    metric: toxicity_rate
    filters: {{app: {app}}}
    window: {window}
    op: ">"
    # v6's synthetic replies are shuffled keywords, which the tone model scores as
    # brusque about one time in twenty (ten before its retraining); v7 is rude in over
    # a third of its replies
    threshold: 0.25
    for: {for_}
    min_events: 20
    severity: critical
    receivers: [pagerduty, slack]
    actions: [rollback]
  - name: ungrounded-answers
    metric: hallucination_rate
    filters: {{app: {app}}}
    window: {window}
    op: ">"
    threshold: 0.4
    for: {for_}
    min_events: 10
    severity: error
    receivers: [slack]
  - name: topic-drift
    metric: drift
    filters: {{app: {app}}}
    window: {drift_window}
    op: ">="
    threshold: 1
    severity: warning
    receivers: [slack]
"""

QUERIES = [
    (
        "What each prompt version did (from the llm_metrics_1m view)",
        "SELECT prompt_version, sum(events) AS calls,\n"
        "       round(sum(toxicity_rate * toxicity_weight)\n"
        "             / nullIf(sum(toxicity_weight), 0), 3) AS toxic,\n"
        "       round(sum(hallucination_rate * hallucination_weight)\n"
        "             / nullIf(sum(hallucination_weight), 0), 3) AS ungrounded,\n"
        "       round(max(latency_p95)) AS worst_p95_ms, round(sum(cost_usd), 4) AS usd\n"
        f"FROM llm_metrics_1m WHERE app = '{APP}' GROUP BY prompt_version ORDER BY prompt_version",
    ),
    (
        "The alerts and their lifetimes",
        "SELECT rule, labels['prompt_version'] AS version, state,\n"
        "       round(resolved_at - fired_at) AS firing_s, round(value, 3) AS last_value\n"
        "FROM alerts FINAL ORDER BY fired_at",
    ),
    (
        "Every delivery, from alert_log",
        "SELECT receiver, reason, outcome, count() AS n FROM alert_log\n"
        "GROUP BY receiver, reason, outcome ORDER BY receiver, reason",
    ),
    (
        "Drift tests per version and kind",
        "SELECT prompt_version, kind, count() AS windows, sum(drifted) AS drifted,\n"
        "       min(p_value) AS min_p FROM llm_drift FINAL\n"
        "GROUP BY prompt_version, kind ORDER BY prompt_version, kind",
    ),
]


class DemoError(LlmpulseError, RuntimeError):
    """The demo could not run or did not reach its end; the message says why."""


def _prepare_home(home: Path) -> None:
    """A fresh directory each run; only a directory an earlier demo made is wiped."""
    if home.exists() and any(home.iterdir()):
        if not (home / MARKER).exists():
            raise DemoError(f"{home} exists and was not made by llmpulse demo; pick --home")
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text(json.dumps({"started_at": time.time()}))


class Narrator:
    def __init__(self, console: Console, t0: float) -> None:
        self.console = console
        self.t0 = t0

    def say(self, text: str, style: str = "") -> None:
        m, s = divmod(int(time.time() - self.t0), 60)
        self.console.print(
            f"[dim][{m:02d}:{s:02d}][/] " + (f"[{style}]{text}[/]" if style else text)
        )


def _describe(call: Call) -> tuple[str, str] | None:
    b = call.body
    if call.path == "/pagerduty":
        action = b.get("event_action")
        summary = b.get("payload", {}).get("summary", "")
        return f"PagerDuty {action}: {summary or b.get('dedup_key')}", (
            "bold red" if action == "trigger" else "green"
        )
    if call.path == "/slack":
        return "Slack: " + html.unescape(str(b.get("text", "")).splitlines()[0])[:150], "yellow"
    if call.path == "/rollback":
        return (
            f"deploy service: rollback {b.get('app')} {b.get('prompt_version')} → "
            f"{b.get('rollback_to')} (signature {call.verified}, key "
            f"{str(b.get('idempotency_key'))[:12]}…)",
            "bold magenta",
        )
    return None


def _stored(settings: Settings) -> int:
    try:
        return int(run_query(settings, "SELECT count() FROM llm_events", wait_s=2).rows[0][0])
    except Exception:
        return -1


def run_demo(home: Path, script: Script = Script(), console: Console | None = None) -> dict:
    """Run the incident; return what happened (used by the tests)."""
    console = console or Console()
    t0 = time.time()
    say = Narrator(console, t0).say
    _prepare_home(home)
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    secret = secrets.token_hex(16)
    with Receivers(secret) as receivers, EmbeddedBroker("127.0.0.1", free_port(), logs) as broker:
        rules = home / "rules.yaml"
        rules.write_text(RULES.format(
            pd=receivers.url("/pagerduty"), rollback=receivers.url("/rollback"), app=APP,
            window=script.window, for_=script.for_, drift_window=script.drift_window,
        ))  # fmt: skip
        env = {
            **os.environ,
            "LLMPULSE_HOME": str(home),
            "LLMPULSE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LLMPULSE_CLICKHOUSE_DSN": "",
            "LLMPULSE_SQL_PORT": str(free_port()),
            "LLMPULSE_RULES": str(rules),
            "LLMPULSE_ALERT_EVAL_S": "1",
            "LLMPULSE_BATCH_WITHIN_S": "0.3",
            "LLMPULSE_DRIFT_REFERENCE_SIZE": str(script.reference),
            "LLMPULSE_DRIFT_WINDOW_SIZE": str(script.drift_window_size),
            "LLMPULSE_DRIFT_WINDOW_S": "15",
            "LLMPULSE_DRIFT_MIN_WINDOW": "20",
            "LLMPULSE_DRIFT_ROUND_S": "2",
            "LLMPULSE_DRIFT_NEW_VERSION": "inherit",
            # Small windows are tested every few seconds here; a stricter level keeps
            # the demo free of the false alarms that many tests at 1% would bring.
            "LLMPULSE_DRIFT_ALPHA": "0.001",
            "LLMPULSE_DRIFT_PERMUTATIONS": "2000",
            "DEMO_PD_ROUTING_KEY": "demo-routing-key",
            "DEMO_SLACK_URL": receivers.url("/slack"),
            "DEMO_ROLLBACK_SECRET": secret,
        }
        settings = load_settings(env)
        say(f"broker on {broker.bootstrap}, data in {home}; starting a worker…")
        out = open(logs / "demo-worker.out", "wb")  # noqa: SIM115 - closed below
        worker = subprocess.Popen(
            [sys.executable, "-m", "llmpulse.cli", "worker", "--loglevel", "warn"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        traffic = Traffic(broker.bootstrap, script.rate)
        result: dict = {"home": str(home)}
        try:
            result.update(_incident(script, settings, worker, traffic, receivers, say, console))
            _analyst(settings, console, result)
        finally:
            traffic.stop()
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(30)
            out.close()
    result["seconds"] = round(time.time() - t0, 1)
    say(f"done in {result['seconds']:.0f} s. The data stays in {home}:", "bold")
    for cmd in (
        f'LLMPULSE_HOME={home} llmpulse sql "SELECT * FROM llm_metrics_1m LIMIT 10"',
        f"LLMPULSE_HOME={home} llmpulse report --app {APP}",
        f"LLMPULSE_HOME={home} llmpulse compare --app {APP} --baseline v6 --candidate v7",
    ):
        console.print(f"    {cmd}")
    return result


def _incident(
    script: Script, settings: Settings, worker: subprocess.Popen, traffic: Traffic,
    receivers: Receivers, say, console: Console,
) -> dict:  # fmt: skip
    deadline = time.time() + script.max_s
    phase, deployed_at, rolled_back_at = "starting", 0.0, 0.0
    fired: set[str] = set()
    resolved: set[str] = set()
    with Status("waiting for the worker (models load first)…", console=console) as status:
        while _stored(settings) < 0:
            if worker.poll() is not None:
                raise DemoError(f"the worker exited ({worker.returncode}); see its log")
            if time.time() > deadline:
                raise DemoError("the worker did not start in time")
            time.sleep(0.5)
        traffic.start()
        phase = "calm"
        say(f"support-bot is live on prompt [bold]v6[/]: {script.rate} LLM calls/s")
        calm_until = time.time() + script.calm_s
        while True:
            if traffic.error is not None:
                raise DemoError(f"publishing failed: {traffic.error}")
            if worker.poll() is not None:
                raise DemoError(f"the worker exited ({worker.returncode}); see its log")
            if time.time() > deadline:
                raise DemoError(f"the incident did not finish in {script.max_s:.0f} s ({phase})")
            if phase == "calm" and time.time() >= calm_until:
                traffic.version, phase, deployed_at = "v7", "deployed", time.time()
                say("deploy: prompt [bold]v7[/] goes live (rude answers, wrong figures, "
                    "questions about travel)", "bold")  # fmt: skip
            while not receivers.calls.empty():
                call = receivers.calls.get()
                described = _describe(call)
                if described:
                    say(*described)
                status_of = call.body.get("event_action") or ""
                rule = _rule_of(call)
                if rule and status_of in ("trigger", "") and "RESOLVED" not in str(call.body):
                    fired.add(rule)
                if rule and (status_of == "resolve" or "RESOLVED" in str(call.body)):
                    resolved.add(rule)
            if phase == "deployed" and receivers.rollbacks:
                target = receivers.rollbacks[0].body.get("rollback_to") or "v6"
                traffic.version, phase, rolled_back_at = target, "rolled back", time.time()
                say(f"deploy service rolled back: traffic is on {target} again", "bold")
            if phase == "rolled back" and fired and fired <= resolved:
                say("every alert has resolved", "bold green")
                break
            status.update(
                f"{phase}: {traffic.sent:,} events sent, {max(_stored(settings), 0):,} stored"
            )
            time.sleep(0.5)
    return {
        "fired": sorted(fired), "resolved": sorted(resolved), "sent": traffic.sent,
        "rollbacks": [c.body for c in receivers.rollbacks],
        "deploy_to_rollback_s": round(rolled_back_at - deployed_at, 1),
    }  # fmt: skip


def _rule_of(call: Call) -> str:
    b = call.body
    if call.path == "/pagerduty":
        return str(b.get("payload", {}).get("custom_details", {}).get("rule", "toxic-answers"))
    if call.path == "/slack":
        for name in ("toxic-answers", "ungrounded-answers", "topic-drift"):
            if name in json.dumps(b):
                return name
    return ""


def _analyst(settings: Settings, console: Console, result: dict) -> None:
    console.print()
    console.print('[bold]What an analyst runs next[/] (llmpulse sql "…"):')
    result["tables"] = {}
    for title, sql in QUERIES:
        console.print(f"\n[bold]{title}[/]")
        console.print(f"[cyan]{sql}[/]")
        res = run_query(settings, sql)
        table = Table(*res.columns, header_style="bold")
        for row in res.rows:
            table.add_row(*("NULL" if v is None else str(v) for v in row))
        console.print(table)
        result["tables"][title] = [dict(zip(res.columns, r, strict=True)) for r in res.rows]


def short_script(**overrides: object) -> Script:
    return replace(SHORT, **overrides)  # type: ignore[arg-type]
