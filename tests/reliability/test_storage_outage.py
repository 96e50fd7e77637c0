"""Storage down for 30 s: the worker pauses, retries with backoff, and loses nothing.

Two ways to break storage under a real worker, with the same expectations:

- the writer seam: ``tests.reliability.faults`` makes every ``Writer.insert`` raise
  while a flag file exists;
- the server DSN: the worker writes to a ClickHouse HTTP server (``chdb_http``: the
  real engine behind the real protocol), which is stopped, so its port refuses
  connections, and then started again on the same port and data.

During the outage the worker stays up, logs the failure once, and commits no
offsets: the events published meanwhile wait in Kafka as consumer lag. Afterwards
every event is stored exactly once and the lag drains to 0.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.retry import Backoff
from llmpulse.broker import free_port
from tests.integration.conftest import Stack, publish
from tests.reliability.chdb_http import ChdbHttpServer
from tests.reliability.conftest import committed_and_end, payloads, wait_lag_zero

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 30.0  # the figure
BEFORE, DURING = 50, 100
PAUSED = re.compile(r"storage write failed, consumption paused, retrying: (.*?) *$", re.M)
RESUMED = re.compile(
    r"storage write succeeded after ([\d.]+)s of failures \((\d+) failed attempts\); "
    r"consumption resumes"
)


def max_attempts(seconds: float, backoff: Backoff) -> int:
    """Most attempts the backoff allows in ``seconds``: every delay is at least 0.8 of its
    nominal value (first * 2**k, capped at max), so count attempts at those shortest delays.
    Doubling then the cap keep it near log2 of the outage plus outage / cap, not a loop's."""
    attempts, elapsed, nominal = 1, 0.0, backoff.first_s
    while elapsed <= seconds:
        elapsed += 0.8 * nominal
        nominal = min(nominal * backoff.factor, backoff.max_s)
        attempts += 1
    return attempts


@dataclass
class Outage:
    begin: Callable[[], None]
    end: Callable[[], None]


@dataclass
class Recovery:
    paused_lines: list[str]
    paused_s: float
    failed_attempts: int


def survive_outage(stack: Stack, outage: Outage) -> Recovery:
    """Events before, during and after an OUTAGE_S storage outage; checks it all."""
    worker = stack.start_worker()
    publish(stack.bootstrap, payloads(BEFORE, seed=1))
    assert stack.wait_for("SELECT count() FROM llm_events FINAL", BEFORE, timeout=120) == BEFORE
    wait_lag_zero(stack.bootstrap)
    before, _ = committed_and_end(stack.bootstrap)

    outage.begin()
    down_at = time.monotonic()
    publish(stack.bootstrap, payloads(DURING, seed=2))
    log = stack.home / "logs" / "worker.log"
    while time.monotonic() - down_at < OUTAGE_S:
        assert worker.poll() is None, "the worker exited during the outage"
        committed, end = committed_and_end(stack.bootstrap)
        assert committed == before, "offsets were committed while nothing could be stored"
        time.sleep(2.0)
    assert sum(end.values()) - sum(committed.values()) == DURING, "the new events wait as lag"
    assert PAUSED.search(log.read_text()), "the outage was not logged"
    outage.end()

    total = BEFORE + DURING
    assert stack.wait_for("SELECT count() FROM llm_events FINAL", total, timeout=120) == total
    assert stack.scalar("SELECT uniqExact(event_id) FROM llm_events") == total
    # Retries repeat one batch with one dedup token, so not even raw rows are doubled.
    assert stack.scalar("SELECT count() FROM llm_events") == total
    wait_lag_zero(stack.bootstrap)
    assert worker.poll() is None
    text = log.read_text()
    resumed = RESUMED.findall(text)
    assert len(resumed) == 1, resumed
    assert stack.stop_worker(worker) == 0
    return Recovery(
        PAUSED.findall(text), paused_s=float(resumed[0][0]), failed_attempts=int(resumed[0][1])
    )


def check_backoff(recovery: Recovery) -> None:
    """Paused for about the outage (it counts from the first failed write, which comes
    after scoring) and at most one longest backoff delay more, with a number of
    attempts that grows like log2 of the outage, not like a loop's."""
    backoff = Backoff()
    assert OUTAGE_S / 2 <= recovery.paused_s <= OUTAGE_S + 1.2 * backoff.max_s
    assert 4 <= recovery.failed_attempts <= max_attempts(recovery.paused_s, backoff)


def test_writer_outage_pauses_consumption_then_stores_every_event_once(
    stack: Stack, tmp_path: Path
) -> None:
    """The writer seam fails for 30 s: one log line, no commits, then all stored once."""
    flag = tmp_path / "storage-down"
    stack.worker_module = "tests.reliability.faults"
    stack.extra_env["LLMPULSE_FAULT_STORAGE_FILE"] = str(flag)
    recovery = survive_outage(stack, Outage(begin=flag.touch, end=flag.unlink))
    # The error text does not change, so the outage is logged once, not per attempt.
    assert recovery.paused_lines == [f"ConnectionError: injected storage outage ({flag} exists)"]
    check_backoff(recovery)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChdbHttpServer]:
    """A ClickHouse HTTP server on a free port, not started yet."""
    s = ChdbHttpServer(tmp_path / "clickhouse-server", free_port())
    try:
        yield s
    finally:
        s.stop()


def test_server_refusing_connections_pauses_consumption_then_stores_every_event_once(
    stack: Stack, server: ChdbHttpServer
) -> None:
    """The ClickHouse server is down for 30 s (its port refuses), then back on its data."""
    server.start()
    stack.extra_env["LLMPULSE_CLICKHOUSE_DSN"] = server.dsn
    recovery = survive_outage(stack, Outage(begin=server.stop, end=server.start))
    assert recovery.paused_lines, "the refused connection was logged"
    # The driver's message is a long URL; the line ends with the cause that matters.
    assert all(
        line.endswith("(cause: ConnectionRefusedError: [Errno 111] Connection refused)")
        for line in recovery.paused_lines
    ), recovery.paused_lines
    check_backoff(recovery)


def test_worker_waits_at_start_for_a_server_that_is_not_up_yet(
    stack: Stack, server: ChdbHttpServer
) -> None:
    """docker compose may start the worker before ClickHouse answers: it waits, then runs."""
    stack.extra_env["LLMPULSE_CLICKHOUSE_DSN"] = server.dsn
    worker = stack.start_worker()  # announced: models loaded, storage next
    out = stack.home.parent / "worker-0.out"

    def wait_for_line(text: str, count: int = 1) -> str:
        deadline = time.monotonic() + 60
        while (log := out.read_text()).count(text) < count:
            assert worker.poll() is None, log[-2000:]
            assert time.monotonic() < deadline, f"no line {text!r} in 60 s:\n{log[-2000:]}"
            time.sleep(0.2)
        return log

    wait_for_line("ClickHouse is not reachable yet, waiting for it", count=2)
    server.start()
    # The worker's next attempt comes up to one backoff delay later (<= 10 s); until its
    # recovery line the tables may not exist, and asking then would race the migration.
    log = wait_for_line("ClickHouse is reachable after")
    line = next(x for x in log.splitlines() if "ClickHouse is reachable after" in x)
    assert line.endswith("; storage ready"), line
    publish(stack.bootstrap, payloads(10, seed=3))
    assert stack.wait_for("SELECT count() FROM llm_events FINAL", 10, timeout=120) == 10
    assert stack.stop_worker(worker) == 0
