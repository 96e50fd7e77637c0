"""``llmpulse compare``: two prompt versions (or A/B variants) side by side, with tests."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from analysis import compare as comparison
from core.settings import SettingsError, load_settings
from detectors.base import DetectorError
from llmpulse.query import rows_of
from storage.engine import StorageError

if TYPE_CHECKING:
    from analysis.compare import Comparison, MetricResult, Sample

__all__ = ["compare"]

console = Console(stderr=True)
out = Console()
_STYLE = {"worse": "red", "better": "green", "drifted": "yellow"}


@click.command()
@click.option("--app", required=True, help="The app whose events are compared.")
@click.option("--baseline", required=True, help="The version (or variant) compared against.")
@click.option("--candidate", required=True, help="The version (or variant) under test.")
@click.option(
    "--since",
    default="24h",
    show_default=True,
    help="Window start: a duration back from now (24h, 7d) or an ISO 8601 time.",
)
@click.option(
    "--by",
    default="prompt_version",
    show_default=True,
    type=click.Choice(["prompt_version", "variant"]),
    help="Compare prompt versions, or A/B variants running side by side.",
)
@click.option(
    "--alpha",
    default=0.01,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Family-wise error rate (Holm) of the whole set of tests.",
)
@click.option(
    "--max-vectors",
    default=1000,
    show_default=True,
    type=click.IntRange(2),
    help="Embeddings per side and kind for the MMD tests (seeded sample).",
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Seed of the samples and permutations."
)
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "json"]))  # fmt: skip
def compare(
    app: str,
    baseline: str,
    candidate: str,
    since: str,
    by: str,
    alpha: float,
    max_vectors: int,
    seed: int,
    fmt: str,
) -> None:
    """Compare metrics of two prompt versions with significance tests and a verdict.

    Rates (toxicity, hallucination, errors, PII, injection, negative feedback) use a
    two-proportion z-test, latency, cost and relevance (answer, best chunk; lower is
    worse) Mann-Whitney U, input and output embeddings an MMD permutation test;
    p-values are Holm-adjusted across all of them. Exits 0 whatever the verdict; see
    docs/compare.md.
    """

    try:
        settings = load_settings()
        if fmt == "table":
            console.print(f"comparing {by} {baseline} → {candidate} of {app}…")
        result = comparison.compare(
            rows_of(settings), app, baseline, candidate, since, by=by, alpha=alpha,
            max_vectors=max_vectors, seed=seed, device=settings.device,
        )  # fmt: skip
    except (ValueError, StorageError, SettingsError, DetectorError) as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), default=str, ensure_ascii=False))
        return
    _table(result)


def _table(c: Comparison) -> None:
    title = (f"{c.app}: {c.by} {c.baseline} (baseline) vs {c.candidate} (candidate), "
             f"{c.since:%Y-%m-%d %H:%M} to {c.until:%Y-%m-%d %H:%M} UTC")  # fmt: skip
    table = Table(title=title, header_style="bold")
    for column in ("metric", c.baseline, c.candidate, "change", "p", "adjusted p", "verdict"):
        table.add_column(column, justify="left" if column in ("metric", "verdict") else "right")
    for m in c.metrics:
        verdict = Text(m.verdict, style=_STYLE.get(m.verdict, ""))
        cells = (m.name, _side(m.baseline), _side(m.candidate), _change(m),
                 _p(m.p_value), _p(m.p_adjusted))  # fmt: skip
        table.add_row(*(Text(x) for x in cells), verdict)
    Console(width=None if out.is_terminal else 160).print(table)
    counts = ", ".join(_counted(s, n) for s, n in c.counts.items())
    out.print(Text(f"{counts}; alpha {c.alpha} (Holm)"))
    for note in c.limits:
        out.print(Text(f"note: {note}"), style="dim")
    out.print(Text(f"verdict: {c.verdict}", style="bold"))


def _counted(side: str, n: dict[str, int]) -> str:
    """``baseline: 400 events``, and how many of those used were model-scored when the
    worker shed load (the model-score rates rest on those alone)."""
    text = f"{side}: {n['events']} events"
    scored = n.get("with_toxicity", n["sampled"])
    return text + (f" ({scored} of {n['sampled']} used model-scored)"
                   if scored < n["sampled"] else "")  # fmt: skip


def _side(s: Sample) -> str:
    if s.value is None:
        return f"n={s.n}"
    if s.hits is not None:  # weighted hits of a model score need not be whole
        hits = f"{s.hits:.0f}" if abs(s.hits - round(s.hits)) < 1e-6 else f"{s.hits:.1f}"
        return f"{100 * s.value:.1f}% ({hits}/{s.n})"
    return f"{s.value:.4g} (p95 {s.p95:.4g})"


def _change(m: MetricResult) -> str:
    b, c = m.baseline.value, m.candidate.value
    if m.test == "MMD permutation":
        return "" if m.statistic is None else f"MMD² {m.statistic:.3g}"
    if b is None or c is None:
        return ""
    if m.baseline.hits is not None:
        return f"{100 * (c - b):+.1f} pp"
    return f"{100 * (c - b) / b:+.0f}% median" if b else f"{c - b:+.4g} median"


def _p(p: float | None) -> str:
    return "" if p is None else "<1e-300" if p < 1e-300 else f"{p:.2g}"
