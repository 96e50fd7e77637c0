"""Alert rules from a YAML file, with every mistake reported at its line.

``check_rules(path)`` reads the whole file and returns ``(RuleSet, [])`` or
``(None, problems)``: one pass finds every error, so a user fixes a file in one round
instead of one error per run. ``load_rules(path)`` is the same but raises::

    ValueError
    ├── RulesError(errors: list[RuleProblem])   the file has problems (str: one per line)
    └── DurationError                           from parse_duration

Secrets are references (``*_env`` or ``*_file``), never values: a literal secret is
an error, and no message ever repeats a value that might be one. Whether the variables
and files exist is not checked here, because the worker may run on another machine.
The format is documented in ``docs/alerting.md``.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node

from alerting.config import (
    FILTER_LABELS,
    METRICS,
    OPS,
    SEVERITIES,
    MetricSpec,
    ReceiverConfig,
    Rule,
    RuleSet,
)
from alerting.rules_baseline import BASELINE_KEYS, read_baseline
from alerting.rules_receivers import RECEIVER_KEYS, read_actions, read_receiver
from alerting.rules_yaml import (
    DurationError,
    Mapping,
    Problems,
    RuleProblem,
    compose,
    format_duration,
    is_tag,
    parse_duration,
    suggest,
    syntax_problem,
)
from core.errors import LlmpulseError

__all__ = [
    "SUMMARY_KEYS",
    "DurationError",
    "RuleProblem",
    "RulesError",
    "check_rules",
    "format_duration",
    "load_rules",
    "parse_duration",
    "parse_rules",
]

SUMMARY_KEYS = ("app", "prompt_version", "rule", "metric", "value", "threshold", "op",
                "window", "count")  # fmt: skip
OP_WORDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
# metrics whose thresholds lie in [0, 1] (a cosine of MiniLM vectors of real text is
# rarely below 0, and then barely: a threshold below 0 would hardly ever fire)
BOUNDED_UNITS = ("ratio", "score", "p", "flag", "cosine")

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_DRIFT_METRICS = ("drift", "drift_p_value")  # read llm_drift, which has no other labels
_DRIFT_LABELS = ("app", "prompt_version")
_TOP_KEYS = ("receivers", "defaults", "rules")
_DEFAULT_KEYS = ("receivers", "severity", "for", "min_events", "repeat_interval")
_RULE_KEYS = ("name", "metric", "filters", "window", "op", "threshold", "for", "min_events",
              "severity", "receivers", "actions", "score_threshold", "budget_usd",
              "budget_period", "repeat_interval", "summary", *BASELINE_KEYS)  # fmt: skip
_BUILTIN = {"receivers": (), "severity": "error", "for": 0.0, "min_events": 1,
            "repeat_interval": 4 * 3600.0}  # fmt: skip


class RulesError(LlmpulseError, ValueError):
    """A rules file has problems; ``errors`` holds all of them, in line order."""

    def __init__(self, errors: list[RuleProblem]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def load_rules(path: Path) -> RuleSet:
    """The rules of ``path``, or ``RulesError`` listing every problem in it."""
    ruleset, problems = check_rules(path)
    if problems or ruleset is None:
        raise RulesError(problems)
    return ruleset


def check_rules(path: Path) -> tuple[RuleSet | None, list[RuleProblem]]:
    """``(RuleSet, [])`` for a good file, ``(None, every problem)`` for a bad one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return None, [RuleProblem(0, "file", f"cannot read: {exc.strerror}", str(path))]
    except UnicodeDecodeError:
        return None, [RuleProblem(0, "file", "not a UTF-8 text file", str(path))]
    return parse_rules(text, str(path))


def parse_rules(text: str, source: str = "<rules>") -> tuple[RuleSet | None, list[RuleProblem]]:
    """``check_rules`` on a string; ``source`` names it in problems."""
    try:
        root = compose(text)
    except yaml.YAMLError as exc:
        return None, [syntax_problem(exc, source)]
    problems = Problems(source)
    if root is None or is_tag(root, "null"):
        problems.add(1, "file", "the file is empty: expected a mapping with receivers and rules")
        return None, problems.sorted()
    if not isinstance(root, MappingNode):
        problems.add(root, "file", "expected a mapping with receivers, defaults and rules")
        return None, problems.sorted()
    ruleset = _Builder(problems).build(Mapping(root, "", problems, _TOP_KEYS), source)
    found = problems.sorted()
    return (None, found) if found else (ruleset, [])


def _peek_name(node: Node) -> str | None:
    """The ``name`` of a mapping, if usable, so problems say ``rules[toxic]``."""
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if is_tag(key, "str") and key.value == "name" and is_tag(value, "str"):
                name = str(value.value)
                return name if _NAME.fullmatch(name) else None
    return None


class _Builder:
    """One pass over the document; every check appends to ``problems``."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.receivers: dict[str, ReceiverConfig] = {}  # channel "" when the type is bad
        self.receiver_lines: dict[str, int] = {}
        self.defaults: dict[str, object] = dict(_BUILTIN)
        self.bad_defaults: set[str] = set()
        self.receivers_unreadable = False  # then "undefined receiver" would be noise

    def build(self, top: Mapping, source: str) -> RuleSet:
        listed = top.sequence("receivers")
        self.receivers_unreadable = listed is None and "receivers" in top
        for i, node in enumerate(listed or []):
            self._receiver(node, i)
        defaults = top.get("defaults")
        if defaults is not None and not is_tag(defaults, "null"):
            self._defaults(defaults)
        rules: list[Rule] = []
        first_line: dict[str, int] = {}
        for i, node in enumerate(top.sequence("rules", required=True) or []):
            rule = self._rule(node, i, first_line)
            if rule is not None:
                rules.append(rule)
        return RuleSet(rules=tuple(rules), receivers=self.receivers, source=source)

    def _mapping(
        self, node: Node, section: str, index: int, keys: tuple[str, ...]
    ) -> Mapping | None:
        name = _peek_name(node)
        where = f"{section}[{name if name else index}]"
        if not isinstance(node, MappingNode):
            self.problems.add(node, where, "expected a mapping")
            return None
        return Mapping(node, where, self.problems, keys)

    def _receiver(self, node: Node, index: int) -> None:
        m = self._mapping(node, "receivers", index, RECEIVER_KEYS)
        if m is not None:
            name = self._name(m, self.receiver_lines, "receiver")
            receiver = read_receiver(m, name or "")
            if name is not None:
                self.receivers[name] = receiver

    def _name(self, m: Mapping, seen: dict[str, int], what: str) -> str | None:
        name = m.text("name", required=True)
        if name is None:
            return None
        if not _NAME.fullmatch(name):
            m.error("name", f"{what} names may only use letters, digits and _ . -")
            return None
        if name in seen:
            m.error("name", f"duplicate {what} name (first defined on line {seen[name]})")
            return None
        seen[name] = m.line
        return name

    # -- defaults and rules ------------------------------------------------------------

    def _defaults(self, node: Node) -> None:
        if not isinstance(node, MappingNode):
            self.problems.add(node, "defaults", "expected a mapping")
            return
        m = Mapping(node, "defaults", self.problems, _DEFAULT_KEYS)
        for key in _DEFAULT_KEYS:
            if key in m:
                value = self._common(m, key)
                if value is None:
                    self.bad_defaults.add(key)
                else:
                    self.defaults[key] = value

    def _common(self, m: Mapping, key: str) -> object:
        """A key rules share with ``defaults``, validated; ``None`` when bad."""
        if key == "receivers":
            return self._receiver_refs(m)
        if key == "severity":
            sev = m.text(key)
            if sev is not None and sev not in SEVERITIES:
                m.error(key, f"unknown severity {sev!r}{suggest(sev, SEVERITIES)}; expected "
                             f"one of {', '.join(SEVERITIES)}")  # fmt: skip
                return None
            return sev
        if key == "min_events":
            n = m.integer(key)
            if n is not None and n < 1:
                m.error(key, "must be an integer >= 1")
                return None
            return n
        seconds = m.duration(key)  # for, repeat_interval
        if seconds is not None and (seconds < 0 if key == "for" else seconds <= 0):
            m.error(key, "must be >= 0" if key == "for" else "must be > 0")
            return None
        return seconds

    def _receiver_refs(self, m: Mapping) -> tuple[str, ...] | None:
        items = m.texts("receivers")
        if items is None:
            return None
        names: list[str] = []
        for name, node in items:
            where = m.at("receivers")
            if name not in self.receivers:
                if not self.receivers_unreadable:
                    hint = suggest(name, self.receivers)
                    self.problems.add(node, where, f"undefined receiver {name!r}{hint}")
            elif self.receivers[name].channel == "rollback":
                self.problems.add(
                    node,
                    where,
                    f"{name} is a rollback receiver: name it in "
                    f"actions ({{rollback: {name}}}), not receivers",
                )
            elif name in names:
                self.problems.add(node, where, f"receiver {name!r} is listed twice")
            else:
                names.append(name)
        return tuple(names) if len(names) == len(items) else None

    def _rule(self, node: Node, index: int, seen: dict[str, int]) -> Rule | None:
        m = self._mapping(node, "rules", index, _RULE_KEYS)
        if m is None:
            return None
        before = len(self.problems.items)
        name = self._name(m, seen, "rule")
        metric = m.text("metric", required=True)
        if metric is not None and metric not in METRICS:
            m.error("metric", f"unknown metric {metric!r}{suggest(metric, METRICS)}; "
                              "see docs/alerting.md for the list")  # fmt: skip
            metric = None
        spec = METRICS[metric] if metric else None
        op = m.text("op", required=True)
        if op is not None and OP_WORDS.get(op, op) not in OPS:
            m.error("op", f"unknown op {op!r}; expected one of {', '.join(OPS)} "
                          f"(or {', '.join(OP_WORDS)})")  # fmt: skip
            op = None
        baseline = read_baseline(m, metric)  # compare_to: no threshold
        threshold = m.number("threshold", required="compare_to" not in m)
        if spec is not None and threshold is not None:
            if spec.unit in BOUNDED_UNITS and not 0 <= threshold <= 1:
                m.error("threshold", f"{metric} is a {spec.unit} between 0 and 1")
            elif threshold < 0:
                m.error("threshold", f"{metric} is never negative")
        window = m.duration("window", required=True)
        if window is not None and window <= 0:
            m.error("window", "must be > 0")
        filters = {}
        for label, (value, vnode) in (m.text_map("filters") or {}).items():
            if label not in FILTER_LABELS:
                self.problems.add(vnode, f"{m.at('filters')}.{label}",
                                  f"unknown filter label{suggest(label, FILTER_LABELS)}; "
                                  f"expected one of {', '.join(FILTER_LABELS)}")  # fmt: skip
            elif metric in _DRIFT_METRICS and label not in _DRIFT_LABELS:
                self.problems.add(vnode, f"{m.at('filters')}.{label}",
                                  f"drift is tested per app and prompt_version, so {metric} "
                                  "can only filter on those")  # fmt: skip
            filters[label] = value
        common = {k: self._common(m, k) if k in m else self.defaults[k] for k in _DEFAULT_KEYS}
        broken = {k for k in _DEFAULT_KEYS if (k in m and common[k] is None)
                  or (k not in m and k in self.bad_defaults)}  # fmt: skip
        actions = read_actions(m, spec, self.receivers, self.problems)
        if (
            actions is not None
            and not actions
            and not common["receivers"]
            and not ({"receivers"} & broken)
        ):
            self.problems.add(m.node, m.where, "a rule needs receivers or actions "
                                               "(here or in defaults)")  # fmt: skip
        score = self._only_for(m, "score_threshold", spec, "uses_score_threshold")
        if score is not None and not 0 <= score <= 1:
            m.error("score_threshold", "must be between 0 and 1")
        budget = self._only_for(m, "budget_usd", spec, "needs_budget")
        if budget is not None and budget <= 0:
            m.error("budget_usd", "must be > 0")
        elif spec is not None and spec.needs_budget and "budget_usd" not in m:
            m.error("budget_usd", f"{metric} needs budget_usd (the spend allowed per "
                                  "budget_period)")  # fmt: skip
        period = self._only_for(m, "budget_period", spec, "needs_budget")
        if period is not None and period <= 0:
            m.error("budget_period", "must be > 0")
        summary = m.text("summary")
        if summary is not None and (err := _summary_error(summary)):
            m.error("summary", err)
        if len(self.problems.items) > before or broken:
            return None  # reported (here or in defaults): the RuleSet is discarded anyway
        if not (name and metric and op and window and actions is not None and baseline) or (
            threshold is None and baseline.compare_to is None
        ):
            return None  # a problem elsewhere (a receiver) made this rule unusable
        return Rule(
            name=name, metric=metric, op=OP_WORDS.get(op, op), threshold=threshold or 0.0,
            window_s=window, for_s=float(common["for"]),  # type: ignore[arg-type]
            min_events=int(common["min_events"]),  # type: ignore[call-overload]
            severity=str(common["severity"]), receivers=tuple(common["receivers"]),  # type: ignore[arg-type]
            actions=tuple(actions), filters=filters, score_threshold=score or 0.5,
            budget_usd=budget, budget_period_s=period or 86_400.0,
            repeat_interval_s=float(common["repeat_interval"]),  # type: ignore[arg-type]
            summary=summary or "", compare_to=baseline.compare_to,
            min_effect=baseline.min_effect, alpha=baseline.alpha, line=m.line,
        )  # fmt: skip

    def _only_for(self, m: Mapping, key: str, spec: MetricSpec | None, flag: str) -> float | None:
        """A metric-specific key: an error on a metric it does not apply to."""
        value = m.duration(key) if key == "budget_period" else m.number(key)
        if value is not None and spec is not None and not getattr(spec, flag):
            users = ", ".join(n for n, s in METRICS.items() if getattr(s, flag))
            m.error(key, f"only applies to {users}")
        return value


def _summary_error(template: str) -> str | None:
    """Why ``template`` would fail to format at alert time, or ``None``."""
    fields = {k: "x" for k in SUMMARY_KEYS} | {"value": 0.25, "threshold": 0.1, "count": 100,
                                               "window": "5m"}  # fmt: skip
    try:
        template.format_map(fields)
    except KeyError as exc:
        return f"unknown field {{{exc.args[0]}}}; available: {', '.join(SUMMARY_KEYS)}"
    except (ValueError, IndexError, AttributeError, TypeError) as exc:
        return f"does not format: {exc} (fields: {', '.join(SUMMARY_KEYS)})"
    return None
