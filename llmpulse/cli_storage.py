"""``llmpulse migrate`` and ``llmpulse costs``: maintenance of the stored data."""

from __future__ import annotations

from datetime import date

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from detectors.cost import PriceTable
from llmpulse.cli_common import load_cli_settings
from storage.costs import recompute_costs
from storage.engine import Engine, StorageError
from storage.migrations import migrate as apply

__all__ = ["costs", "migrate"]

console = Console(stderr=True)
out = Console()


@click.command()
def migrate() -> None:
    """Apply storage migrations (the worker also does this at start)."""

    settings = load_cli_settings()
    try:
        with Engine(settings.dsn, settings.clickhouse_database, settings.clickhouse_auth) as engine:
            applied = engine.call(apply, engine.client, settings.clickhouse_database,
                                  ttl_days=settings.retention_days)  # fmt: skip
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    for m in applied:
        out.print(f"applied {m.version:04d}_{m.name}")
    out.print(f"schema up to date ({len(applied)} applied now)")


@click.group()
def costs() -> None:
    """Cost maintenance."""


@costs.command("recompute")
@click.option(
    "--since",
    required=True,
    type=click.DateTime(["%Y-%m-%d"]),
    help="First day (UTC) whose events are recomputed.",
)
def costs_recompute(since: object) -> None:
    """Recompute stored costs with the current price table (app-reported costs are kept)."""

    settings = load_cli_settings()
    table = PriceTable.load(settings.prices)
    day: date = since.date()  # type: ignore[attr-defined]
    try:
        bar = Progress(TextColumn("recomputing"), BarColumn(), MofNCompleteColumn(),
                       console=console, transient=True)  # fmt: skip
        engine = Engine(settings.dsn, settings.clickhouse_database, settings.clickhouse_auth)
        with engine, bar:
            task = bar.add_task("recompute", total=None)

            def tick(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            summary = engine.call(recompute_costs, engine.client,
                                  settings.clickhouse_database, table, day, tick)  # fmt: skip
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    out.print(f"price table {table.version}: {summary.rows} events since {day} rewritten, "
              f"{summary.changed} costs changed, {summary.unknown} without a price")  # fmt: skip
