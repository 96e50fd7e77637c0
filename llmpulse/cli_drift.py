"""``llmpulse drift``: test two event files for drift, offline (no broker, worker or storage)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from detectors.base import DetectorError
from llmpulse.cli_common import load_cli_settings

__all__ = ["drift"]

console = Console(stderr=True)


def _plain(message: str) -> None:
    console.print(message, markup=False, highlight=False, soft_wrap=True)


@click.command()
@click.argument("ref", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("cur", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--kind",
    default="input",
    show_default=True,
    type=click.Choice(["input", "output"]),
    help="Which text of each event is compared.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Test level [default: LLMPULSE_DRIFT_ALPHA, 0.01].",
)
@click.option(
    "--permutations",
    type=click.IntRange(1, 1_000_000),
    help="Permutations of the p-value [default: LLMPULSE_DRIFT_PERMUTATIONS, 1000].",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed of the permutations and of the clustering.",
)
@click.option(
    "--clusters",
    type=click.IntRange(2, 1000),
    help="Clusters of the explanation [default: LLMPULSE_DRIFT_CLUSTERS, 8].",
)
def drift(
    ref: Path,
    cur: Path,
    kind: str,
    alpha: float | None,
    permutations: int | None,
    seed: int,
    clusters: int | None,
) -> None:
    """Test whether the texts of CUR drifted from those of REF.

    REF and CUR hold events as JSON Lines (or one JSON array, as `llmpulse sql
    --format json` prints). Both are embedded with the configured model and compared with an MMD
    permutation test. Prints one JSON object on stdout: statistic, p_value,
    threshold, drifted, distance, method, n_ref, n_cur, kind and explanation (the
    clusters whose share changed most, with redacted examples, or null when
    nothing drifted). The exit status is 0 whether or not drift was found, and
    non-zero only on an error.
    """
    import json

    from analysis.offline_drift import DriftInputError, drift_texts, load_samples
    from detectors.drift import MMDDriftTest
    from detectors.embeddings import EmbeddingModel
    from detectors.redaction import Redactor

    settings = load_cli_settings()
    try:
        test = MMDDriftTest(
            alpha=settings.drift_alpha if alpha is None else alpha,
            permutations=permutations or settings.drift_permutations,
            seed=seed,
            device=settings.device,
        )
        redactor = Redactor(settings.redaction, settings.redaction_salt)
        ref_texts, cur_texts = load_samples(ref, cur, kind, max_rows=test.max_rows, seed=seed,
                                            notify=_plain)  # fmt: skip
        console.print("loading embedding model…")
        model = EmbeddingModel(
            settings.embedding_model, device=settings.device, precision=settings.precision
        )
    except (DriftInputError, DetectorError) as exc:
        raise click.ClickException(str(exc)) from None
    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())  # fmt: skip
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("embed", total=len(ref_texts) + len(cur_texts))

            def tick(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            result = drift_texts(ref_texts, cur_texts, kind=kind, model=model, test=test,
                                 redactor=redactor, clusters=clusters or settings.drift_clusters,
                                 seed=seed, tick=tick)  # fmt: skip
    except DetectorError as exc:
        raise click.ClickException(str(exc)) from None
    verdict = "[red]drifted[/]" if result["drifted"] else "[green]no drift[/]"
    console.print(f"{verdict}: p = {result['p_value']:.4g} (threshold {result['threshold']}), "
                  f"{result['n_ref']} reference vs {result['n_cur']} current texts")  # fmt: skip
    click.echo(json.dumps(result, ensure_ascii=False))
