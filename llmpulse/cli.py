"""The ``llmpulse`` command. Verb names and options are a public contract."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from alerting.rules import RulesError
from core.errors import LlmpulseError
from core.kafka_security import aiokafka_security
from core.settings import Settings
from detectors.base import DetectorError
from ingest.otlp_receiver import ReceiverError
from ingest.producer import EventProducer
from ingest.schema import Rejection, event_to_json, parse_event
from llmpulse.broker import BrokerError, EmbeddedBroker
from llmpulse.cli_common import load_cli_settings
from llmpulse.cli_compare import compare
from llmpulse.cli_demo import demo
from llmpulse.cli_drift import drift
from llmpulse.cli_receiver import ReceiverProcess, receiver, receiver_endpoint
from llmpulse.cli_reference import reference
from llmpulse.cli_report import report
from llmpulse.cli_rules import rules
from llmpulse.cli_storage import costs, migrate
from llmpulse.cli_trace import trace
from llmpulse.query import format_result, run_query
from storage.engine import StorageError
from storage.readonly import ReadOnlyViolation

console = Console(stderr=True)
out = Console()


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


loglevel_option = click.option(
    "--loglevel",
    default="info",
    show_default=True,
    type=click.Choice(["crit", "error", "warn", "info", "debug"]),
    help="Worker log level (the log is $LLMPULSE_HOME/logs/worker.log).",
)


class _Group(click.Group):
    """Any LlmpulseError a command lets through becomes one line on stderr and exit 1:
    a bad setting, rule file or price table is the user's to fix, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LlmpulseError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
def main(verbose: bool) -> None:
    """llmpulse: score every LLM call, store it in ClickHouse, alert on what matters."""
    _setup_logging(verbose)


@main.command()
@loglevel_option
def up(loglevel: str) -> None:
    """Run the embedded stack in the foreground: broker + worker + ClickHouse engine,
    and the OTLP/HTTP receiver (LLMPULSE_OTLP_PORT, 0 turns it off).

    One Ctrl-C stops them all cleanly (the worker commits, then the receiver and the
    broker stop).
    """  # fmt: skip

    settings = load_cli_settings()
    if not settings.embedded_engine:
        console.print(f"[yellow]note:[/] storing to {settings.dsn_redacted} (not embedded)")
    # The OTLP receiver runs as a child process: it outlives a worker crash, and the
    # other way round. What would stop it from starting fails `up` before anything runs.
    otlp = ReceiverProcess(settings) if settings.otlp_port else None
    try:
        if otlp is not None:
            otlp.check()
    except ReceiverError as exc:
        raise click.ClickException(str(exc)) from None
    host, port = settings.kafka_host_port
    broker = EmbeddedBroker(host, port, settings.logs_dir)
    try:
        broker.start()
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    broker.supervise()  # a broker that dies is started again; the worker recovers
    try:
        if otlp is not None:
            try:
                otlp.start()
            except ReceiverError as exc:
                otlp = None
                raise click.ClickException(str(exc)) from None
            otlp.supervise()
        _banner(settings, broker.log_path, otlp_on=otlp is not None)
        _run_worker(settings, loglevel)
    finally:
        if otlp is not None:
            otlp.stop()  # after the worker, before the broker its acked spans are in
        broker.stop()
        console.print(f"[green]stopped[/] broker{', receiver' if otlp else ''} and worker")


def _banner(settings: Settings, broker_log: Path | None, *, otlp_on: bool = False) -> None:
    home = settings.home.resolve()
    console.print("[bold]llmpulse[/] running — Ctrl-C stops everything")
    console.print(
        f"  Kafka bootstrap : {settings.kafka_bootstrap}  (topic {settings.topics.events})"
    )
    console.print(f"  ClickHouse      : {settings.dsn_redacted}")
    console.print(f"  data            : {home}")
    logs = f"broker: {broker_log.name}, " if broker_log else ""
    logs += "receiver: receiver.log, " if otlp_on else ""
    console.print(
        f"  logs            : {settings.logs_dir.resolve()}"
        + (f"  ({logs}worker: worker.log)" if logs else "")
    )
    console.print(
        f"  SQL endpoint    : http://{settings.sql_bind}:{settings.sql_port}/sql/ (read-only)"
    )
    if otlp_on:
        token = "; bearer token required" if settings.otlp_token else ""
        console.print(
            f"  OTLP/HTTP       : {receiver_endpoint(settings)}  (/v1/traces, /v1/logs{token};"
            f" OTEL_EXPORTER_OTLP_ENDPOINT={receiver_endpoint(settings)})"
        )
    rules = settings.rules or "off (set LLMPULSE_RULES to a rules file, see docs/alerting.md)"
    console.print(f"  alert rules     : {rules}")
    console.print("  publish events  : llmpulse publish events.jsonl")
    console.print(
        '  query           : llmpulse sql "SELECT app, count() FROM llm_events FINAL GROUP BY app"'
    )


@main.command()
@loglevel_option
def worker(loglevel: str) -> None:
    """Run the worker alone, against LLMPULSE_KAFKA_BOOTSTRAP and LLMPULSE_CLICKHOUSE_DSN."""
    settings = load_cli_settings()
    _banner(settings, None)
    _run_worker(settings, loglevel)


def _run_worker(settings: Settings, loglevel: str) -> None:
    from processors.worker import WorkerError, run_worker

    console.print(f"loading detectors on {settings.device} (first start takes a few seconds)…")
    try:
        run_worker(settings, loglevel=loglevel)
    except (WorkerError, StorageError, ConnectionError, DetectorError) as exc:
        raise click.ClickException(str(exc)) from None
    except RulesError as exc:
        raise click.ClickException(
            f"LLMPULSE_RULES={settings.rules}: fix these first "
            f"(`llmpulse rules check` shows the same):\n{exc}"
        ) from None
    except SystemExit as exc:
        if exc.code not in (0, None):
            log_file = settings.logs_dir / "worker.log"
            console.print(f"[red]the worker stopped on an error[/]; see {log_file}")
        raise


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--no-validate",
    is_flag=True,
    help="Send lines as they are (replays; exercising the dead-letter path).",
)
@click.option("--topic", default=None, help="Topic to send to [default: llm.events].")
def publish(file: Path, no_validate: bool, topic: str | None) -> None:
    """Send the events of a JSON Lines FILE, with a progress bar and a summary."""
    settings = load_cli_settings()
    sent, rejected = asyncio.run(_publish(settings, file, no_validate, topic))
    total_rejected = sum(rejected.values())
    out.print(f"sent {sent}, rejected {total_rejected}")
    for reason, n in rejected.most_common(10):
        out.print(f"  {n:>6}  {reason}")
    if total_rejected and not sent:
        sys.exit(1)


async def _publish(settings: Settings, file: Path, raw: bool, topic: str | None):

    size = file.stat().st_size
    sent, rejected = 0, Counter[str]()

    producer = EventProducer(
        settings.kafka_bootstrap, topic or settings.topics.events, **aiokafka_security(settings)
    )
    try:
        await producer.start()
    except Exception as exc:
        raise click.ClickException(
            f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc} "
            "(is `llmpulse up` running? LLMPULSE_KAFKA_BOOTSTRAP?)"
        ) from None
    columns = (TextColumn("publishing"), BarColumn(), MofNCompleteColumn(),
               TextColumn("bytes"), TimeRemainingColumn())  # fmt: skip
    try:
        with Progress(*columns, console=console, transient=True) as progress, open(file, "rb") as f:
            task = progress.add_task("publish", total=size)
            for line in f:
                progress.advance(task, len(line))
                payload = line.rstrip(b"\r\n")
                if not payload.strip():
                    continue
                if raw:
                    await producer.send_raw(None, payload)
                else:
                    parsed = parse_event(payload)
                    if isinstance(parsed, Rejection):
                        rejected[parsed.reason] += 1
                        continue
                    await producer.send_raw(parsed.event_id.encode(), event_to_json(parsed))
                sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent, rejected


@main.command()
@click.argument("query")
@click.option(
    "--format",
    "fmt",
    default="table",
    show_default=True,
    type=click.Choice(["table", "csv", "tsv", "json"]),
)
def sql(query: str, fmt: str) -> None:
    """Run one read-only QUERY (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN)."""

    settings = load_cli_settings()
    try:
        result = run_query(settings, query)
    except (StorageError, ReadOnlyViolation) as exc:
        raise click.ClickException(str(exc)) from None
    if fmt != "table":
        click.echo(format_result(result, fmt))
        return
    table = Table(show_lines=False, header_style="bold")
    for i, name in enumerate(result.columns):
        values = [row[i] for row in result.rows if row[i] is not None]
        numeric = bool(values) and all(
            isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in values
        )
        table.add_column(name, justify="right" if numeric else "left")
    for row in result.rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    out.print(table)
    console.print(f"{len(result.rows)} rows (via {result.via})")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write scored lines here [default: stdout].",
)
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1, 100_000))
def score(file: Path, output: Path | None, batch_size: int) -> None:
    """Score the events of FILE offline with exactly the worker's detectors.

    Each output line is the input event plus a ``scores`` object: toxicity (class
    scores), hallucination (null without context), unsupported, pii, injection,
    cost_usd. Invalid lines are counted and skipped, with their reasons.
    """
    from processors.batch import build_scorer
    from processors.offline import score_lines

    settings = load_cli_settings()
    try:
        with console.status("loading detectors"):
            scorer = build_scorer(settings, models=True)
    except DetectorError as exc:
        raise click.ClickException(str(exc)) from None
    columns = (TextColumn("scoring"), BarColumn(), TextColumn("{task.fields[n]} events"),
               TimeRemainingColumn())  # fmt: skip
    sink = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
    try:
        with Progress(*columns, console=console, transient=True) as progress, open(file, "rb") as f:
            task = progress.add_task("score", total=file.stat().st_size, n=0)
            summary = score_lines(scorer, f, sink, batch_size,
                                  lambda n: progress.advance(task, n))  # fmt: skip
    finally:
        if output:
            sink.close()
    rejected = sum(summary.rejected.values())
    where = f" (first at line {summary.first_rejected_line})" if rejected else ""
    console.print(f"scored {summary.scored}, rejected {rejected}{where}")
    for reason, n in summary.rejected.most_common(10):
        console.print(f"  {n:>6}  {reason}")
    if rejected and not summary.scored:
        sys.exit(1)


main.add_command(compare)
main.add_command(costs)
main.add_command(demo)
main.add_command(drift)
main.add_command(migrate)
main.add_command(receiver)
main.add_command(reference)
main.add_command(rules)
main.add_command(report)
main.add_command(trace)

if __name__ == "__main__":
    main()
