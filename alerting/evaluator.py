"""Rule evaluation: metrics from ClickHouse → state machine → messages on ``llm.alerts``.

Outbox order, per evaluation: (1) step every alert and save the states that changed,
(2) produce a message for each decision and wait for the broker's ack, (3) save that
people were told. A crash after 1 makes the same decision again after the restart,
with the same notification id; a crash after 2 produces it twice, and the notify
agent delivers it once (``alert_log``). Kafka is the outbox; nothing is lost.

Each worker evaluates only the app|prompt_version keys whose ``llm.scored`` partition
it owns, so two workers never alert on the same key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote as urlquote

from alerting.alert import Comparison, Evidence, Notification, Rollback, alert_identity
from alerting.comparison import (
    Baseline,
    Version,
    choose_baseline,
    judge,
    served_before_query,
    versions_seen_query,
)
from alerting.config import Rule, RuleSet
from alerting.metrics import evidence_query, metric_query, versions_query
from alerting.rules_yaml import format_duration
from alerting.state import (
    FIRING,
    INACTIVE,
    RESOLVE,
    AlertState,
    needs_notify,
    notification_id,
    step,
    told,
)

__all__ = ["Evaluator", "alert_labels"]

log = logging.getLogger(__name__)

Query = Callable[[str], Awaitable[list[tuple]]]  # runs SQL on the engine thread
Send = Callable[[Notification], Awaitable[None]]  # produces to llm.alerts, waits for the ack
Save = Callable[[list[AlertState]], Awaitable[None]]
Owns = Callable[[str, str | None], bool]  # (app, prompt_version or None for app scope)
# alert id -> (labels, value, count, verdict): verdict is a baseline rule's decision
# (worse or not), None for a threshold rule, whose value is compared with the threshold.
Observed = dict[str, tuple[dict[str, str], float | None, int, bool | None]]

EXAMPLES = 3
EXAMPLE_CHARS = 500
METRICS_WITHOUT_EVENT_VALUE = ("drift", "drift_p_value", "negative_feedback_rate", "cost_burn_rate")


def alert_labels(rule: Rule, app: str, prompt_version: str | None) -> dict[str, str]:
    labels = {"alertname": rule.name, "app": app}
    if prompt_version is not None:
        labels["prompt_version"] = prompt_version
    labels.update({k: v for k, v in rule.filters.items() if k not in labels})
    return labels


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "no data"
    if unit == "ratio":
        return f"{value:.1%}"
    return f"{value:.4g}"


class Evaluator:
    def __init__(
        self,
        rules: RuleSet,
        db: str,
        query: Query,
        save: Save,
        send: Send,
        owns: Owns,
        *,
        redact: Callable[[str], str] = lambda s: s,
        query_url: str = "",
        refresh_s: float = 60.0,
        caught_up: Callable[[], bool] = lambda: True,
        pending_since: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules = rules
        self.db = db
        self.query = query
        self.save = save
        self.send = send
        self.owns = owns
        self.redact = redact
        self.query_url = query_url
        self.refresh_s = refresh_s
        self.clock = clock
        self.caught_up = caught_up  # the backlog present at the last load() is stored
        # The time of the oldest records on the broker not stored yet (about now while the
        # worker keeps up); None: always now.
        self.pending_since = pending_since or clock
        self.states: dict[str, AlertState] = {}
        self._compared: dict[str, Comparison] = {}  # this tick's baseline comparisons
        # (rule, app, candidate) -> the baseline chosen when it was first judged: kept, so
        # an alert firing elsewhere later does not start the candidate's test over.
        self._baselines: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._untouched: set[str] = set()  # this tick's alerts whose judgement failed
        self._unpinned: set[tuple[str, str, str]] = set()
        self._loaded_at = clock()
        self._loaded: set[str] = set()  # alerts restored by the last load()
        self._refreshing = {
            r.name
            for r in rules.rules
            if any(
                rules.receivers[n].channel == "alertmanager"
                for n in r.receivers
                if n in rules.receivers
            )
        }

    def load(self, states: dict[str, AlertState]) -> None:
        """Replace the in-memory states (after a restart or a rebalance)."""
        names = {r.name for r in self.rules.rules}
        self.states = {k: s for k, s in states.items() if s.rule in names}
        self._loaded_at = self.clock()
        self._loaded = set(self.states)

    async def tick(self) -> list[Notification]:
        """One evaluation of every rule; returns the messages produced."""
        now = self.clock()
        backlog = bool(self._loaded) and not self.caught_up()
        behind_s = max(0.0, now - self.pending_since())
        decisions: list[tuple[Rule, AlertState, str]] = []
        changed: list[AlertState] = []
        self._compared = {}
        self._untouched = set()
        for rule in self.rules.rules:
            try:
                observed = await self._observe(rule, now)
            except Exception as exc:  # one broken rule must not silence the others
                log.warning("rule %s: metric query failed: %s", rule.name, str(exc)[:300])
                continue
            for alert_id, (labels, value, count, verdict) in observed.items():
                if not self.owns(labels["app"], labels.get("prompt_version")):
                    continue
                prev = self.states.get(alert_id) or AlertState(alert_id, rule.name, labels)
                restored = alert_id in self._loaded and (
                    backlog or now - self._loaded_at < rule.window_s
                )
                if count < rule.min_events and (restored or behind_s > rule.window_s / 2):
                    # A thin window is no sign that traffic stopped or recovered when:
                    # - the alert was restored after a restart or a rebalance: it may be
                    #   the backlog not scored yet (one partition after the other); a full
                    #   one may hold only rows stored before the crash, about to age out.
                    #   Until that backlog is stored, and for at least one window;
                    # - the worker itself is behind (a stall, a burst): records older than
                    #   half the window are not stored yet. Until they are.
                    continue
                breaching = value is not None and count >= rule.min_events
                if verdict is not None:
                    breaching = breaching and verdict
                else:
                    breaching = breaching and rule.breaches(float(value))  # type: ignore[arg-type]
                nxt = step(prev, breaching, now, rule.for_s).observe(value, count)
                if (nxt.state, nxt.active_at, nxt.fired_at, nxt.resolved_at) != (
                    prev.state, prev.active_at, prev.fired_at, prev.resolved_at,
                ):  # fmt: skip
                    changed.append(nxt)
                if nxt.state == INACTIVE and prev.state == INACTIVE:
                    self.states.pop(alert_id, None)  # keep memory to live alerts
                    continue
                self.states[alert_id] = nxt
                refresh = self.refresh_s if rule.name in self._refreshing else None
                reason = needs_notify(nxt, rule.repeat_interval_s, now, refresh)
                if reason:
                    decisions.append((rule, nxt, reason))
        if changed:
            await self.save(changed)
        sent: list[Notification] = []
        told_states: list[AlertState] = []
        for rule, st, reason in decisions:
            note = await self._notification(rule, st, reason, now)
            await self.send(note)
            sent.append(note)
            after = told(st, reason, self.clock())
            self.states[st.alert_id] = after
            told_states.append(after)
            log.info("alert %s %s (%s) for %s", rule.name, note.status, reason, note.labels)
        if told_states:
            await self.save(told_states)
        return sent

    async def _observe(self, rule: Rule, now: float) -> Observed:
        out: Observed = {}
        if rule.compare_to is not None:
            out = await self._observe_baseline(rule, now)
        else:
            q = metric_query(self.db, rule, now)
            for row in await self.query(q.sql):
                if q.scope == "app":
                    app, version, value, n = row[0], None, row[1], row[2]
                else:
                    app, version, value, n = row
                labels = alert_labels(rule, app, version)
                out[alert_identity(rule.name, labels)] = (labels, value, int(n), None)
        # Live alerts of this rule with no events in the window: "no data", which
        # resolves a firing alert and cancels a pending one.
        for alert_id, st in self.states.items():
            live = st.rule == rule.name and st.state != INACTIVE
            if live and alert_id not in out and alert_id not in self._untouched:
                out[alert_id] = (st.labels, None, 0, None)  # (a failed judgement is not)
        return out

    async def _observe_baseline(self, rule: Rule, now: float) -> Observed:
        """Each version younger than the rule's window, tested against its baseline."""
        rows = await self.query(versions_seen_query(self.db, rule, now))
        versions = [Version(str(a), str(v), float(f), float(last)) for a, v, f, last in rows]
        out: Observed = {}
        for cand in versions:
            pinned = rule.filters.get("prompt_version")
            if now - cand.first_seen > rule.window_s or pinned not in (None, cand.prompt_version):
                continue  # judged for `window` from its first event; then it passed
            if not self.owns(cand.app, cand.prompt_version):
                continue  # another worker's key: not even queried
            labels = alert_labels(rule, cand.app, cand.prompt_version)
            alert_id = alert_identity(rule.name, labels)
            try:
                base = await self._baseline_of(rule, cand, versions)
                if base is None:
                    continue  # the app's first version, or the pinned one itself
                judged = await judge(self.db, rule, cand, base, now, self.query)
            except Exception as exc:  # one version's failure must not skip the others,
                self._untouched.add(alert_id)  # nor resolve its alert as "no data"
                log.warning("rule %s: judging %s %s failed: %s", rule.name, cand.app,
                            cand.prompt_version, str(exc)[:300])  # fmt: skip
                continue
            if judged is None:  # a sample below min_events: as a thin window
                out[alert_id] = (labels, None, 0, False)
                continue
            c = judged.comparison
            self._compared[alert_id] = c
            out[alert_id] = (labels, c.candidate_value, c.candidate_count, judged.worse)
        return out

    async def _baseline_of(
        self, rule: Rule, cand: Version, versions: list[Version]
    ) -> Baseline | None:
        key = (rule.name, cand.app, cand.prompt_version)
        by_name = {v.prompt_version: v for v in versions if v.app == cand.app}
        kept = self._baselines.get(key)
        if kept is not None and kept[0] in by_name:
            return Baseline(by_name[kept[0]], kept[1])
        served: dict[str, tuple[float, int]] = {}
        if rule.compare_to == "baseline" or rule.compare_to in by_name:
            sql = served_before_query(self.db, rule, cand.app, cand.first_seen)
            served = {str(v): (float(t), int(n)) for v, t, n in await self.query(sql)}
        base = choose_baseline(rule, cand, versions, self._firing_versions(cand.app), served)
        missing = rule.compare_to not in ("baseline", cand.prompt_version) and base is None
        if missing and key not in self._unpinned:
            self._unpinned.add(key)  # said once per version, not every few seconds
            log.warning("rule %s: %s has no events of the pinned version %s in the last "
                        "30 days: %s %s is not judged", rule.name, cand.app, rule.compare_to,
                        cand.app, cand.prompt_version)  # fmt: skip
        if base is not None:
            self._baselines[key] = (base.version.prompt_version, base.until)
            log.info("rule %s: judging %s %s against %s", rule.name, cand.app,
                     cand.prompt_version, base.version.prompt_version)  # fmt: skip
        return base

    def _firing_versions(self, app: str) -> set[str]:
        return {
            str(s.labels.get("prompt_version"))
            for s in self.states.values()
            if s.state == FIRING and s.labels.get("app") == app
        }

    async def _notification(
        self, rule: Rule, st: AlertState, reason: str, now: float
    ) -> Notification:
        app, version = st.labels["app"], st.labels.get("prompt_version", "")
        status = "resolved" if reason == RESOLVE else FIRING
        start = (st.fired_at or now) - rule.window_s
        end = st.resolved_at if status == "resolved" and st.resolved_at else now
        sql = evidence_query(self.db, rule, st.labels, start, end)
        examples: tuple[str, ...] = ()
        if status == FIRING and reason != "refresh":
            examples = await self._examples(rule, sql)
        comparison = self._compared.get(st.alert_id)
        rollback = None
        if reason == "first":
            for action in rule.actions:
                if action.kind == "rollback":
                    if rule.compare_to is not None:  # the baseline it was found worse than
                        target = comparison.baseline if comparison else None
                    else:
                        target = await self._rollback_to(rule, app, version, now)
                    rollback = Rollback(action.receiver, app, version, target)
        values = {
            "rule": rule.name, "app": app, "prompt_version": version, "metric": rule.metric,
            "value": st.value if st.value is not None else float("nan"),
            "threshold": rule.threshold, "op": rule.op, "window": format_duration(rule.window_s),
            "count": st.count,
        }  # fmt: skip
        if rule.summary:
            summary = rule.summary.format(**values)
        elif comparison is not None:
            where = f"{app} {version}".strip()
            summary = (
                f"{rule.name}: {rule.metric} on {where} is worse than baseline "
                f"{comparison.baseline}: {comparison.describe(rule.spec.unit)}"
            )
        else:
            where = f"{app} {version}".strip()
            summary = (
                f"{rule.name}: {rule.metric} {_fmt(st.value, rule.spec.unit)} {rule.op} "
                f"{_fmt(rule.threshold, rule.spec.unit)} over {values['window']} on {where} "
                f"({st.count} {rule.spec.counted})"
            )
        if status == "resolved":
            summary = f"RESOLVED {rule.name} on {app} {version}".strip()
        link = self.query_url.replace("{query}", urlquote(sql, safe="")) if self.query_url else None
        return Notification(
            notification_id=notification_id(st, reason),
            alert_id=st.alert_id,
            reason=reason,
            status=status,
            rule=rule.name,
            labels=dict(st.labels),
            severity=rule.severity,
            metric=rule.metric,
            op=rule.op,
            threshold=rule.threshold,
            value=st.value,
            count=st.count,
            window_s=rule.window_s,
            for_s=rule.for_s,
            starts_at=st.fired_at or now,
            ends_at=st.resolved_at if status == "resolved" else None,
            evaluated_at=now,
            summary=summary,
            receivers=rule.receivers,
            evidence=Evidence(sql, examples, link, comparison),
            rollback=rollback,
            compare_to=rule.compare_to or "",
        )

    async def _examples(self, rule: Rule, sql: str) -> tuple[str, ...]:
        try:
            rows = await self.query(sql)
        except Exception as exc:
            log.warning("rule %s: evidence query failed: %s", rule.name, str(exc)[:300])
            return ()
        if rule.metric in ("drift", "drift_p_value"):
            return tuple(_drift_examples(rows))[:EXAMPLES]
        texts = [str(r[3]) for r in rows if str(r[3]).strip()]
        return tuple(self.redact(t)[:EXAMPLE_CHARS] for t in texts[:EXAMPLES])

    async def _rollback_to(self, rule: Rule, app: str, bad: str, now: float) -> str | None:
        """The most recently seen other version of ``app`` that looks healthy: no alert
        firing on it and, for event metrics, the rule not breached over its last window."""
        firing = self._firing_versions(app)
        for version, last_seen in await self.query(versions_query(self.db, app, bad, now)):
            if version in firing:
                continue
            if rule.metric in METRICS_WITHOUT_EVENT_VALUE:
                return str(version)
            r = replace(rule, filters={**rule.filters, "app": app, "prompt_version": version})
            rows = await self.query(metric_query(self.db, r, float(last_seen) + 0.001).sql)
            if rows and rows[0][2] is not None and not rule.breaches(float(rows[0][2])):
                return str(version)
        return None


def _drift_examples(rows: list[tuple]) -> list[str]:
    """What moved: the examples of the clusters that grew or shrank (vectors), or the
    sentence saying how a retrieval number moved ("chunk length lower: median ...")."""
    out = []
    for row in rows:
        try:
            explanation: dict[str, Any] = json.loads(row[6] or "null") or {}
        except ValueError:
            continue
        if explanation.get("summary"):
            out.append(f"{row[2]}: {explanation['summary']}")
        for cluster in explanation.get("top", []):
            out.extend(str(e) for e in cluster.get("examples", []))
    return out
