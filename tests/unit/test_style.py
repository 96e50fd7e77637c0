"""The tree stays ruff-clean, and the public surfaces stay what the docs promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import alerting
import detectors
import ingest
import storage

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing() -> None:
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--quiet", str(ROOT)],
                          capture_output=True, text=True)  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_public_surfaces_are_pinned() -> None:
    assert sorted(ingest.__all__) == [
        "Event",
        "Feedback",
        "IngestError",
        "Rejection",
        "SchemaError",
        "Usage",
        "parse_event",
        "parse_feedback",
    ]
    assert sorted(detectors.__all__) == ["Cost", "CostDetector", "Detector", "DetectorError",
                                         "Latency", "LatencyDetector", "Price", "PriceTable",
                                         "PriceTableError", "TextBatch"]  # fmt: skip
    assert sorted(alerting.__all__) == ["AlertState", "Notification", "Rule", "RuleSet",
                                        "RulesError", "SecretError", "SignatureError",
                                        "alert_identity", "check_rules", "load_rules",
                                        "needs_notify", "step", "verify"]  # fmt: skip
    assert sorted(storage.__all__) == ["Engine", "EngineBusyError", "ReadOnlyViolation",
                                       "StorageError", "check_read_only", "connect"]  # fmt: skip


def test_detectors_import_no_kafka_or_clickhouse_code() -> None:
    code = ("import sys, detectors; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('aiokafka', 'faust', 'clickhouse_connect', 'chdb', 'processors', 'storage')]; "
            "print(bad); sys.exit(1 if bad else 0)")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout


def test_alerting_imports_no_kafka_clickhouse_or_worker_code() -> None:
    code = ("import sys, alerting, alerting.evaluator, alerting.dispatch, alerting.notifiers; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('aiokafka', 'faust', "
            "'clickhouse_connect', 'chdb', 'processors', 'storage', 'llmpulse')]; "
            "print(bad); sys.exit(1 if bad else 0)")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
