"""`llmpulse demo --short`, then `report` and `compare` on its data, as a user runs them.

The demo runs once for the module (real Tansu, a worker process, chdb, local HTTP
receivers); the later tests read the data it leaves behind, with no worker running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def llmpulse(
    *args: str, home: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    if home is not None:
        env["LLMPULSE_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "llmpulse.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("demo") / "home"
    run = llmpulse("demo", "--short", "--home", str(home), timeout=400)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    return home, out


def test_the_demo_fires_rolls_back_once_and_resolves(demo: tuple[Path, str]) -> None:
    home, out = demo
    assert "deploy: prompt v7 goes live" in out
    assert "PagerDuty trigger" in out and "PagerDuty resolve" in out
    assert out.count("deploy service: rollback support-bot v7 → v6 (signature ok") == 1
    assert "every alert has resolved" in out
    assert "What an analyst runs next" in out and "FROM alerts FINAL" in out
    assert (home / "clickhouse").is_dir()  # the data stays for llmpulse sql / report


def test_the_report_draws_both_versions_and_the_alerts(
    demo: tuple[Path, str], tmp_path: Path
) -> None:
    home, _ = demo
    run = llmpulse("report", "--app", "support-bot", "--out", str(tmp_path), home=home)
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("volume", "latency", "quality", "drift", "cost"):
        image = matplotlib.image.imread(tmp_path / f"{name}.png")
        assert image.shape[0] > 300 and image.shape[1] > 600
    drawn = json.loads((tmp_path / "report.json").read_text())
    text = json.dumps(drawn)
    assert "v6" in text and "v7" in text and "toxic-answers" in text
    assert all(f"{n}.png" in (tmp_path / "index.html").read_text() for n in ("volume", "cost"))


def test_compare_finds_v7_worse_on_toxicity_and_hallucination(demo: tuple[Path, str]) -> None:
    home, _ = demo
    run = llmpulse("compare", "--app", "support-bot", "--baseline", "v6", "--candidate", "v7",
                   "--format", "json", home=home)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = {m["name"]: m for m in json.loads(run.stdout)["metrics"]}
    for name in ("toxicity_rate", "hallucination_rate"):
        assert metrics[name]["verdict"] == "worse"
        assert metrics[name]["p_adjusted"] < 0.01


def test_compare_finds_no_difference_between_two_samples_of_v6(demo: tuple[Path, str]) -> None:
    home, _ = demo  # the demo splits v6's calls into variants a and b at random
    run = llmpulse("compare", "--app", "support-bot", "--by", "variant", "--baseline", "a",
                   "--candidate", "b", "--format", "json", home=home)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    verdicts = {m["name"]: m["verdict"] for m in json.loads(run.stdout)["metrics"]}
    assert "worse" not in verdicts.values() and "better" not in verdicts.values(), verdicts
    assert "drifted" not in verdicts.values(), verdicts


def test_the_demo_refuses_to_wipe_a_directory_it_did_not_make(tmp_path: Path) -> None:
    home = tmp_path / "precious"
    home.mkdir()
    (home / "notes.txt").write_text("keep me")
    run = llmpulse("demo", "--short", "--home", str(home), timeout=60)
    assert run.returncode == 1
    assert "was not made by llmpulse demo" in run.stderr
    assert (home / "notes.txt").read_text() == "keep me"
