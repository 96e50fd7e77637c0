"""Who may query the worker's SQL endpoint, and what: real worker, real HTTP.

The rule (docs/security.md): bound to a loopback address the endpoint answers local
clients without a token; bound anywhere else the worker does not start without
``LLMPULSE_SQL_TOKEN``, and every request must carry it (401 otherwise). Only one
read statement passes (400 otherwise, with the reason), and the engine runs it with
``readonly=1``, which also stops what the syntactic check lets through (table
functions, settings changes), but not ``INTO OUTFILE``: chdb writes that file even
read-only, so the check refuses it (found by this test). The loopback, no-token case is what every
integration test's ``Stack.sql`` already does; one worker here serves the rest.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest.synthetic import synthetic_events
from llmpulse.broker import EmbeddedBroker, free_port
from tests.integration.conftest import Stack, publish

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "sql-token-for-tests-8c1f"
N = 30


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A worker bound to every address (0.0.0.0) with a token, holding N events."""
    tmp = tmp_path_factory.mktemp("sql-access")
    with EmbeddedBroker("127.0.0.1", free_port(), tmp / "broker-logs") as broker:
        stack = Stack(tmp / "home", broker.bootstrap, free_port(), extra_env={
            "LLMPULSE_SQL_BIND": "0.0.0.0", "LLMPULSE_SQL_TOKEN": TOKEN,
        })  # fmt: skip
        try:
            stack.start_worker()
            events = synthetic_events(N, seed=5, prefix="sql")
            publish(broker.bootstrap, [(None, json.dumps(e).encode()) for e in events])
            assert stack.wait_for("SELECT count() FROM llm_events FINAL", N) == N
            yield stack
        finally:
            stack.kill_workers()


def post(stack: Stack, query: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST to the endpoint over loopback; (status, decoded JSON body)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.sql_port}/sql/", data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json", **(headers or {})}, method="POST",
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_non_loopback_bind_without_a_token_does_not_start(tmp_path: Path) -> None:
    """Refused at once, before models load, and the message says what to set."""
    stack = Stack(tmp_path / "home", "127.0.0.1:1", free_port(),
                  extra_env={"LLMPULSE_SQL_BIND": "0.0.0.0"})  # fmt: skip
    run = stack.cli("worker", check=False, timeout=60)
    assert run.returncode == 1
    assert "LLMPULSE_SQL_BIND=0.0.0.0 is not a loopback address" in run.stderr
    assert "set LLMPULSE_SQL_TOKEN" in run.stderr
    assert not (stack.home / "worker.json").exists()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong-token"),
        bearer(TOKEN + "x"),
        bearer(TOKEN[:-1]),
        {"Authorization": TOKEN},  # no scheme
        {"Authorization": f"Basic {TOKEN}"},
        {"X-Token": TOKEN},
    ],
    ids=["none", "wrong", "longer", "shorter", "no-scheme", "basic", "other-header"],
)
def test_a_request_without_the_right_token_is_401(worker: Stack, headers: dict) -> None:
    status, body = post(worker, "SELECT count() FROM llm_events", headers)
    assert (status, body) == (401, {"error": "missing or wrong bearer token"})


def test_the_right_token_reads(worker: Stack) -> None:
    status, body = post(worker, "SELECT count() AS n FROM llm_events FINAL", bearer())
    assert status == 200
    assert body["columns"] == ["n"] and body["rows"] == [[N]]


def test_llmpulse_sql_sends_the_configured_token(worker: Stack) -> None:
    """The CLI reads LLMPULSE_SQL_TOKEN; without it the worker's refusal is shown."""
    assert worker.scalar("SELECT count() FROM llm_events FINAL") == N
    del worker.extra_env["LLMPULSE_SQL_TOKEN"]
    try:
        run = worker.cli("sql", "SELECT 1", check=False)
    finally:
        worker.extra_env["LLMPULSE_SQL_TOKEN"] = TOKEN
    assert run.returncode != 0 and "missing or wrong bearer token" in run.stderr


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("INSERT INTO llm_events (event_id) VALUES ('x')", "got INSERT"),
        ("ALTER TABLE llm_events DELETE WHERE 1", "got ALTER"),
        ("DROP TABLE llm_events", "got DROP"),
        ("TRUNCATE TABLE llm_events", "got TRUNCATE"),
        ("SYSTEM SHUTDOWN", "got SYSTEM"),
        ("SYSTEM DROP MARK CACHE", "got SYSTEM"),
        ("CREATE TABLE t (x Int8) ENGINE = Memory", "got CREATE"),
        ("OPTIMIZE TABLE llm_events FINAL", "got OPTIMIZE"),
        ("RENAME TABLE llm_events TO x", "got RENAME"),
        ("KILL QUERY WHERE 1", "got KILL"),
        ("SET readonly = 0", "got SET"),
        ("GRANT ALL ON *.* TO default", "got GRANT"),
        ("SELECT 1; DROP TABLE llm_events", "only one statement"),
        ("SELECT 1;DROP TABLE llm_events;", "only one statement"),
        ("/* SELECT */ DROP TABLE llm_events", "got DROP"),
        ("-- SELECT\nDROP TABLE llm_events", "got DROP"),
        ("", "empty query"),
    ],
)
def test_anything_but_one_read_statement_is_refused(worker: Stack, query: str, reason: str) -> None:
    status, body = post(worker, query, bearer())
    assert status == 400 and reason in body["error"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        # Pass the syntactic check; the engine's readonly=1 refuses them.
        ("SELECT * FROM file('/etc/hostname', 'LineAsString')", "READONLY"),
        ("SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')", "READONLY"),
        ("SELECT count() FROM llm_events SETTINGS readonly = 0", "READONLY"),
        ("SELECT 1 SETTINGS max_result_rows = 0", "READONLY"),
    ],
)
def test_what_the_check_lets_through_the_engine_refuses(
    worker: Stack, query: str, code: str
) -> None:
    status, body = post(worker, query, bearer())
    assert status == 400 and code in body["error"], body


@pytest.mark.parametrize(
    "query",
    [
        "WITH 1 AS x SELECT x INTO OUTFILE '{out}'",
        "SELECT 'line' INTO OUTFILE '{out}' APPEND",
        "SELECT 'line' INTO/**/OUTFILE '{out}'",
    ],
)
def test_into_outfile_is_refused_and_writes_nothing(
    worker: Stack, tmp_path: Path, query: str
) -> None:
    """The embedded engine writes INTO OUTFILE files even with readonly=1; the check stops it."""
    out = tmp_path / "written.txt"
    status, body = post(worker, query.format(out=out), bearer())
    refusal = {"error": "INTO OUTFILE would write a file on the worker's host"}
    assert (status, body) == (400, refusal)
    assert not out.exists()


def test_refused_writes_left_the_data_as_it_was(worker: Stack) -> None:
    """Runs after the refusals above (file order): every table and row is still there."""
    status, body = post(worker, "SELECT count() FROM llm_events FINAL", bearer())
    assert (status, body["rows"]) == (200, [[N]])
    status, body = post(worker, "SHOW TABLES", bearer())
    assert status == 200 and ["llm_events"] in body["rows"] and ["t"] not in body["rows"]


def test_the_reference_endpoint_needs_the_token_too(worker: Stack) -> None:
    """The port's only write (drift references) follows the same bearer-token rule."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.sql_port}/drift/reference/",
        data=json.dumps({"action": "clear", "app": "support-bot"}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=60)
    assert err.value.code == 401
