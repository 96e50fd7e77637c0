"""The CLI as people run it: `up` stops cleanly, a busy port is a clear error."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmpulse.broker import BrokerError, EmbeddedBroker, free_port

pytestmark = pytest.mark.integration


def test_broker_on_a_busy_port_fails_fast_and_says_so(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(BrokerError, match=f"port {port} on 127.0.0.1 is already in use"):
            EmbeddedBroker("127.0.0.1", port, tmp_path).start()
        assert time.monotonic() - started < 5


def test_up_runs_the_stack_and_one_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "LLMPULSE_HOME": str(tmp_path / "home"),
        "LLMPULSE_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
        "LLMPULSE_SQL_PORT": str(free_port()),
    }
    up = subprocess.Popen([sys.executable, "-m", "llmpulse.cli", "up"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        state = tmp_path / "home" / "worker.json"
        while not state.exists() and time.monotonic() < deadline:
            assert up.poll() is None, "llmpulse up exited early"
            time.sleep(0.3)
        q = subprocess.run([sys.executable, "-m", "llmpulse.cli", "sql", "SELECT 42 AS x",
                            "--format", "csv"], env=env, capture_output=True, text=True,
                           timeout=60)  # fmt: skip
        assert q.stdout.split() == ["x", "42"], q.stderr
        broker_pid = int((tmp_path / "home" / "broker.pid").read_text())
        up.send_signal(signal.SIGINT)
        _, err_bytes = up.communicate(timeout=60)
        assert up.returncode == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
    err = err_bytes.decode()
    assert "logs" in err and "llmpulse sql" in err  # the banner says where things are
    with pytest.raises(ProcessLookupError):
        os.kill(broker_pid, 0)
    assert not (tmp_path / "home" / "worker.json").exists()


def test_sql_on_a_home_without_tables_says_how_to_create_them(tmp_path: Path) -> None:
    env = {**os.environ, "LLMPULSE_HOME": str(tmp_path / "home")}
    argv = [sys.executable, "-m", "llmpulse.cli", "sql", "SELECT count() FROM llm_events"]
    q = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert q.returncode != 0
    assert "no llmpulse tables" in q.stderr and "llmpulse migrate" in q.stderr
