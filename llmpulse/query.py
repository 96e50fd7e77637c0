"""Read-only SQL for people: directly on the engine, or through the running worker.

The embedded engine (chdb) lives in one process. When a worker holds it, queries
go to the worker's loopback SQL endpoint; otherwise the engine is opened here.
A ClickHouse server is always queried directly.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from core.retry import Backoff
from core.settings import Settings
from storage.engine import Engine, EngineBusyError, StorageError
from storage.readonly import READ_ONLY_SETTINGS, check_read_only

__all__ = [
    "QueryResult",
    "WorkerRefused",
    "format_result",
    "post_to_worker",
    "rows_of",
    "run_query",
]


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    via: str  # "engine" | "worker" | "server"


class WorkerRefused(StorageError):
    """The worker's endpoint answered with an error; the message is its reason."""


def post_to_worker(url: str, body: dict[str, Any], token: str, timeout_s: float) -> Any:
    """POST JSON to one of the worker's loopback endpoints; its error text on refusal."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            reason = exc.reason
        raise WorkerRefused(str(reason)) from None


def _via_worker(url: str, sql: str, token: str, timeout_s: float = 120.0) -> QueryResult:
    try:
        body = post_to_worker(url, {"query": sql}, token, timeout_s)
    except WorkerRefused as exc:
        raise StorageError(f"query refused by the worker: {exc}") from None
    return QueryResult(body["columns"], body["types"], body["rows"], "worker")


def _direct(settings: Settings, sql: str) -> QueryResult:
    with Engine(settings.dsn, settings.clickhouse_database, settings.clickhouse_auth) as engine:
        try:
            result = engine.call(engine.client.query, sql, settings=READ_ONLY_SETTINGS)
        except Exception as exc:
            if "UNKNOWN_TABLE" in str(exc) and not _migrated(engine):
                raise StorageError(
                    f"no llmpulse tables in {settings.dsn_redacted} yet: start a worker "
                    "(`llmpulse up` or `llmpulse worker`) or run `llmpulse migrate`"
                ) from exc
            raise
        rows = [list(r) for r in result.result_rows]
        types = [t.name for t in result.column_types]
        via = "engine" if engine.embedded else "server"
        return QueryResult(list(result.column_names), types, rows, via)


def _migrated(engine: Engine) -> bool:
    found = engine.call(
        engine.client.query,
        "SELECT count() FROM system.tables WHERE database = currentDatabase() "
        "AND name = 'schema_migrations'",
    )
    return bool(found.result_rows[0][0])


def run_query(settings: Settings, sql: str, wait_s: float = 30.0) -> QueryResult:
    """Run one read query wherever the data can be reached now."""
    from processors.worker import read_worker_state

    sql = check_read_only(sql)
    if not settings.embedded_engine:
        return _direct(settings, sql)
    deadline = time.monotonic() + wait_s
    delay = Backoff(first_s=0.1, max_s=1.0).delays()  # a worker starting, a query ending
    while True:
        state = read_worker_state(settings)
        if state is None:
            try:
                with _quiet_stderr():  # chdb prints its lock error to fd 2 itself
                    return _direct(settings, sql)
            except EngineBusyError:
                # A worker is starting and has not announced itself yet, or another
                # process holds the engine; look again until the deadline.
                problem = (
                    f"the embedded engine in {settings.home} is held by another process "
                    "that announces no SQL endpoint; is another llmpulse running there?"
                )
        else:
            try:
                return _via_worker(state["sql_url"], sql, settings.sql_token)
            except urllib.error.URLError as exc:
                problem = (
                    f"the worker (pid {state['pid']}) holds the engine but its SQL endpoint "
                    f"{state['sql_url']} does not answer: {exc.reason}"
                )
        if time.monotonic() > deadline:
            raise StorageError(problem)
        time.sleep(delay())


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def format_result(result: QueryResult, fmt: str) -> str:
    if fmt == "json":
        objs = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        return json.dumps(objs, default=str, ensure_ascii=False, indent=1)
    if fmt in ("csv", "tsv"):
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(result.rows)
        return buf.getvalue().rstrip("\n")
    raise ValueError(f"unknown format {fmt!r}")


def rows_of(settings: Settings) -> Callable[[str], list[dict[str, Any]]]:
    """A query function over ``run_query``: each row as a column -> value dict."""

    def run(sql: str) -> list[dict[str, Any]]:
        result = run_query(settings, sql)
        return [dict(zip(result.columns, row, strict=True)) for row in result.rows]

    return run
