"""No configured secret ever reaches a log, the worker's output or a CLI's output.

One worker at ``--loglevel debug`` holds every secret the product takes: the SQL
token (bound to 0.0.0.0, so the token is required), the redaction salt (``hash`` mode,
read from a file), a ClickHouse user and password (the embedded engine ignores them,
they must still not be printed) and the receiver secrets of a rules file (PagerDuty
routing key, a Slack webhook URL whose path is the credential, a webhook HMAC key).
It scores events and dead letters, and its alert fails loudly: receivers answer 500
then 400, and one Slack URL points at a closed port, so retries and give-ups are
logged. CLI commands then run with the same environment, errors included. The Kafka
SASL password cannot be given to this worker (the embedded broker speaks no SASL);
``llmpulse publish`` gets it instead, and fails against that broker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from ingest.synthetic import synthetic_events
from llmpulse.broker import EmbeddedBroker, free_port
from tests.integration.conftest import Stack, publish
from tests.integration.receivers import Receivers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRETS = {
    "sql_token": "sqltok-SECRET-1b7e4a",
    "redaction_salt": "salt-SECRET-55d2c9",
    "clickhouse_password": "chpw-SECRET-90af31",
    "pagerduty_key": "pdkey-SECRET-3c4d88",
    "slack_path": "slackpath-SECRET-77e1f0",
    "slack_down_path": "slackdown-SECRET-12ab9e",
    "webhook_secret": "hook-SECRET-0a9b6d",
    "kafka_password": "kafkapw-SECRET-6f2e01",
}

RULES = """
receivers:
  - name: pager
    type: pagerduty
    url: {pd}
    routing_key_env: TEST_PD_KEY
    retry_deadline_s: 4
  - name: chat
    type: slack
    url_env: TEST_SLACK_URL
    retry_deadline_s: 4
  - name: chat-down
    type: slack
    url_env: TEST_SLACK_DOWN_URL
    retry_deadline_s: 3
  - name: audit
    type: webhook
    url: {hook}
    secret_env: TEST_HOOK_SECRET
rules:
  - name: any-traffic
    metric: event_count
    window: 60s
    op: ">"
    threshold: 0
    min_events: 1
    receivers: [pager, chat, chat-down, audit]
"""


@dataclass
class Captured:
    """Everything the run printed or logged, by source."""

    texts: dict[str, str] = field(default_factory=dict)

    def leaks(self) -> list[tuple[str, str]]:
        return [(source, name) for source, text in self.texts.items()
                for name, secret in SECRETS.items() if secret in text]  # fmt: skip


def _now_stamped(event: dict) -> bytes:
    event["ts"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(event).encode()


def _wait(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():  # type: ignore[operator]
        time.sleep(0.5)


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Captured]:
    tmp = tmp_path_factory.mktemp("secrets")
    salt_file = tmp / "salt"
    salt_file.write_text(SECRETS["redaction_salt"] + "\n")
    rules = tmp / "rules.yaml"
    out = Captured()
    with (
        EmbeddedBroker("127.0.0.1", free_port(), tmp / "broker-logs") as broker,
        Receivers() as receivers,
    ):
        receivers.statuses.update({"/pd": [500, 400], "/hook": [500, 202],
                                   f"/services/{SECRETS['slack_path']}": [500, 400]})  # fmt: skip
        rules.write_text(RULES.format(pd=receivers.url("/pd"), hook=receivers.url("/hook")))
        stack = Stack(tmp / "home", broker.bootstrap, free_port(), loglevel="debug", extra_env={
            "LLMPULSE_SQL_BIND": "0.0.0.0",
            "LLMPULSE_SQL_TOKEN": SECRETS["sql_token"],
            "LLMPULSE_REDACTION": "hash",
            "LLMPULSE_REDACTION_SALT_FILE": str(salt_file),
            "LLMPULSE_CLICKHOUSE_USER": "writer",
            "LLMPULSE_CLICKHOUSE_PASSWORD": SECRETS["clickhouse_password"],
            "LLMPULSE_RULES": str(rules),
            "LLMPULSE_ALERT_EVAL_S": "0.5",
            "TEST_PD_KEY": SECRETS["pagerduty_key"],
            "TEST_SLACK_URL": receivers.url(f"/services/{SECRETS['slack_path']}"),
            "TEST_SLACK_DOWN_URL": f"http://127.0.0.1:{free_port()}/{SECRETS['slack_down_path']}",
            "TEST_HOOK_SECRET": SECRETS["webhook_secret"],
        })  # fmt: skip
        try:
            worker = stack.start_worker()
            events = list(synthetic_events(20, seed=8, prefix="sec"))
            events[0]["input"] = "mail me at jane.doe@example.com"  # hashed with the salt
            publish(broker.bootstrap, [(None, _now_stamped(e)) for e in events])
            publish(broker.bootstrap, [(None, b'{"event_id": "broken"}'), (None, b"not json")])
            log = stack.home / "logs" / "worker.log"
            _wait(lambda: log.exists() and log.read_text().count("gave up on receiver") >= 3, 180)
            _wait(lambda: len(receivers.at("/hook")) >= 2, 30)
            out.texts["cli: sql"] = _run(stack, "-v", "sql", "SELECT input FROM llm_events")
            token = stack.extra_env.pop("LLMPULSE_SQL_TOKEN")
            out.texts["cli: sql without the token"] = _run(stack, "-v", "sql", "SELECT 1")
            stack.extra_env["LLMPULSE_SQL_TOKEN"] = token
            out.texts["cli: rules check"] = _run(stack, "-v", "rules", "check")
            out.texts["cli: reference show"] = _run(stack, "-v", "reference", "show")
            out.texts["cli: migrate (engine held)"] = _run(stack, "-v", "migrate")
            out.texts["cli: second worker"] = _run(stack, "-v", "worker")
            events_file = tmp / "events.jsonl"
            events_file.write_text("\n".join(json.dumps(e) for e in events[:3]) + "\n")
            out.texts["cli: score"] = _run(stack, "-v", "score", str(events_file))
            stack.extra_env.update({
                "LLMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "LLMPULSE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "LLMPULSE_KAFKA_SASL_USERNAME": "llmpulse",
                "LLMPULSE_KAFKA_SASL_PASSWORD": SECRETS["kafka_password"],
            })  # fmt: skip
            out.texts["cli: publish over SASL"] = _run(stack, "-v", "publish", str(events_file))
            assert stack.stop_worker(worker) == 0
        finally:
            stack.kill_workers()
        out.texts["worker.log"] = log.read_text()
        out.texts["worker stdout+stderr"] = (tmp / "worker-0.out").read_text()
        for path in sorted(stack.home.rglob("*")):
            if path.is_file() and "clickhouse" not in path.parts:  # rows: see the PII test
                out.texts[f"file {path.relative_to(stack.home)}"] = path.read_text(errors="replace")
        out.texts["broker.log"] = broker.log_path.read_text()
    yield out


def _run(stack: Stack, *args: str) -> str:
    run = stack.cli(*args, check=False, timeout=180)
    return f"exit {run.returncode}\n{run.stdout}\n{run.stderr}"


def test_no_secret_appears_in_any_log_or_output(captured: Captured) -> None:
    assert captured.leaks() == []


def test_the_worker_log_holds_the_failures_it_should(captured: Captured) -> None:
    """The scan above is only worth something if the failures were actually logged."""
    log = captured.texts["worker.log"]
    for line in ("receiver pager (pagerduty) failed", "gave up on receiver pager",
                 "gave up on receiver chat ", "gave up on receiver chat-down",
                 "receiver audit (webhook) failed", "[DEBUG]"):  # fmt: skip
        assert line in log, line
    assert len(log) > 20_000


def test_cli_commands_ran_and_failed_where_expected(captured: Captured) -> None:
    texts = captured.texts
    assert texts["cli: sql"].startswith("exit 0") and "[EMAIL:" in texts["cli: sql"]
    assert texts["cli: rules check"].startswith("exit 0")
    assert (
        texts["cli: second worker"].startswith("exit 1") and "in use" in texts["cli: second worker"]
    )
    assert texts["cli: migrate (engine held)"].startswith("exit 1")
    assert texts["cli: score"].startswith("exit 0") and '"scores"' in texts["cli: score"]
    assert texts["cli: publish over SASL"].startswith("exit 1")
    assert "cannot reach Kafka" in texts["cli: publish over SASL"]


def test_the_secrets_were_in_use(captured: Captured) -> None:
    """The SQL token was required and the salt made the hashes: not a vacuous scan."""
    from detectors.redaction import Redactor

    tag = Redactor("hash", SECRETS["redaction_salt"]).redact("mail me at jane.doe@example.com")
    assert tag.removeprefix("mail me at ") in captured.texts["cli: sql"]
    assert "missing or wrong bearer token" in captured.texts["cli: sql without the token"]
