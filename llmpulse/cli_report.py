"""``llmpulse report``: PNG plots and one HTML page of the stored data."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from core.settings import SettingsError, load_settings
from llmpulse.query import run_query
from storage.engine import StorageError

__all__ = ["report"]


@click.command()
@click.option("--app", default=None, help="Only this app (default: every app).")
@click.option(
    "--since",
    default="24h",
    show_default=True,
    help="Start of the range: a duration before now (90m, 6h, 7d) or an ISO date/datetime "
    "(2026-05-01, 2026-05-01T08:00; UTC unless it says).",
)
@click.option(
    "--out",
    "out_dir",
    default="./llmpulse-report",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write index.html, the PNGs and report.json into.",
)
def report(app: str | None, since: str, out_dir: Path) -> None:
    """Plot volume, latency, quality, drift and cost, with deploy and alert markers.

    The time axis spans the data in the range, in 24 to 84 buckets (1 s to 7 d). Open
    OUT/index.html in a browser; OUT/report.json lists what each image shows.
    """
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from analysis.report import NoDataError, build_report, parse_since

    try:
        start = parse_since(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    try:
        settings = load_settings()
        query = partial(run_query, settings)
        built = build_report(query, app, start, out_dir, require_data=True)
    except (NoDataError, StorageError, SettingsError, ClickHouseError) as exc:
        raise click.ClickException(str(exc)) from None
    for path in [built.html, *built.images, built.json]:
        click.echo(str(path))
    click.echo(f"report: {built.summary()}", err=True)
