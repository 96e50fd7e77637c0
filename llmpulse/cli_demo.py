"""``llmpulse demo``: the scripted incident, on the embedded stack."""

from __future__ import annotations

from pathlib import Path

import click

from llmpulse.demo import SHORT, DemoError, Script, run_demo

__all__ = ["demo"]


@click.command()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".llmpulse-demo"),
    show_default=True,
    help="Where the demo keeps its data (wiped at the start of each demo run).",
)
@click.option("--short", is_flag=True, help="The same story with 10 s windows (for tests).")
def demo(home: Path, short: bool) -> None:
    """Replay an incident: v7 of a support bot turns toxic, alerts fire, the rollback
    webhook is called, traffic returns to v6, alerts resolve. About 2-3 minutes."""
    try:
        run_demo(home.resolve(), SHORT if short else Script())
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
