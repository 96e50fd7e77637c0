"""``llmpulse reference``: see and replace the drift reference of an app|prompt_version."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from core.settings import SettingsError, load_settings
from llmpulse.query import run_query
from llmpulse.reference_client import send_reference_request
from storage.engine import StorageError

__all__ = ["reference"]

console = Console(stderr=True)
out = Console()


def _send(app: str, version: str, action: str, **fields: object) -> dict:
    from processors.references import ReferenceRequest, ReferenceSetError

    try:
        req = ReferenceRequest(app, version, action, **fields)  # type: ignore[arg-type]
        return send_reference_request(load_settings(), req)
    except (ReferenceSetError, StorageError, SettingsError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def reference() -> None:
    """See and replace drift references (one per app and prompt version)."""


@reference.command("show")
@click.option("--app", default=None, help="Only this app.")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]),
              show_default=True)  # fmt: skip
def show(app: str | None, fmt: str) -> None:
    """List the active references: source, size, and what they were built from."""

    where = "WHERE active = 1" + (f" AND app = '{app.replace(chr(39), '')}'" if app else "")
    sql = (
        "SELECT app, prompt_version, source, size, target, complete, detail, embedding_model, "
        "reference_id, vectors_id, updated_at FROM llm_drift_references FINAL "
        f"{where} ORDER BY app, prompt_version"
    )
    try:
        result = run_query(load_settings(), sql)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "json":
        rows = [dict(zip(result.columns, r, strict=True)) for r in result.rows]
        click.echo(json.dumps(rows, default=str, indent=1))
        return
    table = Table(*result.columns[:8], header_style="bold")
    for row in result.rows:
        table.add_row(*(str(v) for v in row[:8]))
    out.print(table)
    console.print(f"{len(result.rows)} references")


@reference.command("set")
@click.argument("app")
@click.argument("version")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Events (JSON lines with input and output) to use as the reference.",
)
@click.option("--from", "start", help="Use stored events from this time (ISO 8601)...")
@click.option("--to", "end", help="...up to this time (exclusive).")
@click.option(
    "--first",
    "first",
    type=click.IntRange(2, 1_000_000),
    help="Use the next N events of APP|VERSION, from now on.",
)
@click.option("--size", default=1000, show_default=True, type=click.IntRange(2, 1_000_000),
              help="With --from/--to: at most this many events (a hash sample).")  # fmt: skip
def set_(
    app: str, version: str, file: Path | None, start: str | None, end: str | None,
    first: int | None, size: int,
) -> None:  # fmt: skip
    """Replace the reference of APP VERSION (use "" for events without a prompt version).

    Exactly one source: --file, --from/--to, or --first. With --file or --from/--to a
    running worker tests its open window against the new reference when the window
    closes; with --first, events not tested yet are the first events of the new one.
    """
    chosen = [name for name, v in (("--file", file), ("--from/--to", start or end),
                                   ("--first", first)) if v]  # fmt: skip
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --file, --from/--to, --first")
    if file is not None:
        from processors.references import ReferenceSetError, events_from_file

        try:  # read here first, so a bad line is reported before anything is sent
            ids, _, _ = events_from_file(file, limit=100_000)
        except ReferenceSetError as exc:
            raise click.ClickException(str(exc)) from None
        if len(ids) == 100_000:
            console.print(f"{file} has more events: the first 100,000 are used")
        console.print(f"embedding {len(ids)} events of {file}…")
        done = _send(app, version, "file", path=str(file.resolve()),
                     detail=f"{len(ids)} events from {file.name}")  # fmt: skip
    elif first is not None:
        done = _send(app, version, "first", size=first)
    else:
        done = _send(app, version, "range", start=start, end=end, size=size)
    click.echo(json.dumps(done))


@reference.command("clear")
@click.argument("app")
@click.argument("version")
def clear(app: str, version: str) -> None:
    """Drop the reference of APP VERSION; its next events build (or inherit) a new one."""
    click.echo(json.dumps(_send(app, version, "clear")))
