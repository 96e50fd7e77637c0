"""``llmpulse rules``: check an alert rules file before the worker loads it."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from alerting.config import RuleSet
from alerting.rules import check_rules, format_duration
from core.settings import SettingsError, load_settings

__all__ = ["rules"]

out = Console()


@click.group()
def rules() -> None:
    """Check alert rules files (LLMPULSE_RULES)."""


@rules.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
def check(file: Path | None) -> None:
    """Report every problem in FILE (default: $LLMPULSE_RULES), one per line.

    Exits 1 when there is any problem, so CI can run it on every change.
    """
    if file is None:
        try:
            file = load_settings().rules
        except SettingsError as exc:
            raise click.ClickException(str(exc)) from None
        if file is None:
            raise click.UsageError("give FILE or set LLMPULSE_RULES")
    ruleset, problems = check_rules(file)
    if problems or ruleset is None:
        # click.echo, not rich: "rules[x]" in a message is text, not markup
        for problem in problems:
            click.echo(str(problem), err=True)
        n = len(problems)
        click.echo(f"{n} error{'' if n == 1 else 's'}", err=True)
        raise SystemExit(1)
    _summary(ruleset)


def _summary(ruleset: RuleSet) -> None:
    n, m = len(ruleset.rules), len(ruleset.receivers)
    click.echo(f"OK: {n} rule{'' if n == 1 else 's'}, {m} receiver{'' if m == 1 else 's'}")
    if not ruleset.rules:
        return
    table = Table(box=None, pad_edge=False)
    for column in ("rule", "metric", "condition", "window", "for", "receivers", "actions"):
        table.add_column(column)
    for r in ruleset.rules:
        actions = ", ".join(f"{a.kind}:{a.receiver}" for a in r.actions)
        condition = f"{r.op} {r.threshold:g}"
        if r.compare_to is not None:  # a baseline rule: worse than, beyond chance
            worse = "higher" if r.higher_is_worse else "lower"
            effect = f" by {r.min_effect.text}" if r.min_effect else ""
            condition = f"{worse}{effect} than {r.compare_to} (alpha {r.alpha:g})"
        cells = (r.name, r.metric, condition, format_duration(r.window_s),
                 format_duration(r.for_s), ", ".join(r.receivers), actions)  # fmt: skip
        table.add_row(*(Text(c) for c in cells))
    # piped (CI logs): do not squeeze the table into 80 columns
    Console(width=None if out.is_terminal else 160).print(table)
