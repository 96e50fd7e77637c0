"""The CLI as people run it: `up` stops cleanly, a busy port is a clear error."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
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
    port, otlp_port = free_port(), free_port()
    env = {
        **os.environ,
        "LLMPULSE_HOME": str(tmp_path / "home"),
        "LLMPULSE_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
        "LLMPULSE_SQL_PORT": str(free_port()),
        "LLMPULSE_OTLP_PORT": str(otlp_port),
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
        assert _otlp_export_status(otlp_port) == 200  # the receiver runs beside the worker
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
    assert f"http://127.0.0.1:{otlp_port}" in err  # and where to export OTLP
    with pytest.raises(ProcessLookupError):
        os.kill(broker_pid, 0)
    with pytest.raises(OSError):  # the receiver stopped with the rest
        socket.create_connection(("127.0.0.1", otlp_port), timeout=5).close()
    assert not (tmp_path / "home" / "worker.json").exists()


def _otlp_export_status(port: int, timeout: float = 60) -> int:
    """The status of an empty OTLP export, polled past the 503s of a receiver still
    connecting to Kafka."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/traces", data=b"", method="POST",
        headers={"Content-Type": "application/x-protobuf"},
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    status = 0
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            status = e.code
        time.sleep(0.2)
    return status


def test_sql_on_a_home_without_tables_says_how_to_create_them(tmp_path: Path) -> None:
    env = {**os.environ, "LLMPULSE_HOME": str(tmp_path / "home")}
    argv = [sys.executable, "-m", "llmpulse.cli", "sql", "SELECT count() FROM llm_events"]
    q = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert q.returncode != 0
    assert "no llmpulse tables" in q.stderr and "llmpulse migrate" in q.stderr


def test_score_adds_the_contract_scores_to_each_valid_line(tmp_path: Path) -> None:
    base = {"ts": "2026-11-22T10:00:00Z", "app": "bot", "model": "gpt-4o-mini",
            "usage": {"input_tokens": 100, "output_tokens": 20}}  # fmt: skip
    lines = [
        json.dumps({**base, "event_id": "a", "input": "How long do refunds take?",
                    "output": "Refunds take 40 days.",
                    "context": ["Refunds are issued within 5 business days."]}),
        "{not json",
        json.dumps({**base, "event_id": "b", "input": "Mail me at jane@example.com",
                    "output": "Sure."}),
    ]  # fmt: skip
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "LLMPULSE_HOME": str(tmp_path / "home")}
    run = subprocess.run([sys.executable, "-m", "llmpulse.cli", "score", str(src), "-o", str(dst)],
                         env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "scored 2, rejected 1 (first at line 2)" in run.stderr
    a, b = (json.loads(line) for line in dst.read_text().splitlines())
    keys = {"toxicity", "hallucination", "unsupported", "pii", "injection", "cost_usd"}
    assert set(a["scores"]) == set(b["scores"]) == keys
    assert a["event_id"] == "a" and a["input"] == "How long do refunds take?"
    assert a["scores"]["unsupported"] == [
        "Refunds take 40 days. [number_unsupported: 40 is neither stated in the context nor "
        "computable from it]"
    ]
    assert 0.0 <= a["scores"]["hallucination"] <= 1.0
    assert b["scores"]["hallucination"] is None  # no context: NULL, not 0
    assert b["scores"]["pii"] == ["email"] and a["scores"]["pii"] == []
    assert a["scores"]["cost_usd"] > 0 and set(a["scores"]["toxicity"]) == {
        "toxicity",
        "rude_tone",
        "toxic_language",
    }


# `llmpulse drift`: varied sentences about one topic each, so the embeddings differ by topic.
COOKING = (["How do I", "What is the best way to", "Can you explain how to", "Is it okay to"],
           ["bake sourdough bread", "roast a whole chicken", "make a creamy risotto",
            "cook pasta al dente", "grill salmon fillets", "whisk a stable meringue",
            "caramelise onions", "braise beef short ribs"],
           ["for dinner tonight?", "without a stand mixer?", "in a cast iron pan?",
            "for a family of four?"])  # fmt: skip
BILLING = (["Why was I", "How can I", "When will I", "Who do I contact to"],
           ["be charged twice on my invoice", "get a refund for my subscription",
            "update the credit card on file", "cancel my annual billing plan",
            "dispute a payment on my account", "download last month's receipt"],
           ["this month?", "before the renewal date?", "for the premium plan?",
            "through the billing portal?"])  # fmt: skip
DRIFT_KEYS = {"statistic", "p_value", "threshold", "drifted", "distance", "method", "n_ref",
              "n_cur", "explanation", "kind"}  # fmt: skip


def write_topic(path: Path, topic: tuple, n: int, seed: int, email: bool = False) -> Path:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            text = " ".join(rng.choice(part) for part in topic)
            if email:
                text += f" Reply to user{rng.randrange(1000)}@example.com."
            event = {"event_id": f"{seed}-{i}", "ts": "2026-11-22T10:00:00Z", "app": "bot",
                     "model": "gpt-4o-mini", "input": text, "output": "Here is how."}  # fmt: skip
            f.write(json.dumps(event) + "\n")
    return path


def run_drift(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLMPULSE_HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "-m", "llmpulse.cli", "drift", *args], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_drift_finds_a_new_topic_and_explains_it_with_redacted_examples(tmp_path: Path) -> None:
    ref = write_topic(tmp_path / "ref.jsonl", COOKING, 120, seed=1)
    cur = write_topic(tmp_path / "cur.jsonl", BILLING, 80, seed=2, email=True)
    with open(cur, "a") as f:
        f.write('{"input": 42}\n\nnot json\n')
    run = run_drift(tmp_path, str(ref), str(cur))
    assert run.returncode == 0, run.stderr
    assert f"skipped 2 lines of {cur} without a string 'input' (first: line 81)" in run.stderr
    result = json.loads(run.stdout)
    assert set(result) >= DRIFT_KEYS and result["kind"] == "input"
    assert result["drifted"] is True and result["p_value"] <= result["threshold"] == 0.01
    assert (result["n_ref"], result["n_cur"]) == (120, 80)
    assert result["method"] == "mmd-gaussian-perm" and result["statistic"] > 0
    top = result["explanation"]["top"]
    grew = [c for c in top if c["direction"] == "grew"]
    assert grew and all(c["examples"] for c in top)
    assert all("[EMAIL]" in text for text in grew[0]["examples"])
    assert "@example.com" not in run.stdout  # examples are redacted like stored text


def test_drift_between_two_samples_of_one_topic_finds_none(tmp_path: Path) -> None:
    ref = write_topic(tmp_path / "ref.jsonl", COOKING, 120, seed=1)
    cur = write_topic(tmp_path / "cur.jsonl", COOKING, 80, seed=3)
    run = run_drift(tmp_path, str(ref), str(cur), "--permutations", "500", "--alpha", "0.05")
    assert run.returncode == 0, run.stderr  # no drift is not an error either
    result = json.loads(run.stdout)
    assert result["drifted"] is False and result["explanation"] is None
    assert result["p_value"] > result["threshold"] == 0.05 and result["permutations"] == 500
    assert (result["n_ref"], result["n_cur"]) == (120, 80)


def test_drift_on_a_file_with_fewer_than_two_usable_lines_names_it(tmp_path: Path) -> None:
    ref = write_topic(tmp_path / "ref.jsonl", COOKING, 20, seed=1)
    few = tmp_path / "few.jsonl"
    few.write_text('{"input": "only one"}\n{"output": "no input"}\n')
    run = run_drift(tmp_path, str(ref), str(few), "--kind", "input")
    assert run.returncode != 0 and run.stdout == ""
    assert f"{few}: 1 usable line(s) with a string 'input'" in run.stderr
    assert "loading embedding model" not in run.stderr  # files are checked first
