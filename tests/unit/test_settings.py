"""Settings: defaults, environment names (a contract), YAML file, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmpulse.settings import SettingsError, load_settings


def test_defaults_match_the_documented_contract() -> None:
    s = load_settings({})
    assert s.home == Path(".llmpulse")
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.dsn == f"chdb://{Path('.llmpulse/clickhouse').resolve()}"
    assert s.device == "auto" and s.rules is None
    assert s.topics.all() == ["llm.events", "llm.feedback", "llm.deadletter", "llm.scored",
                              "llm.alerts"]  # fmt: skip


def test_environment_names_set_each_setting(tmp_path: Path) -> None:
    s = load_settings({
        "LLMPULSE_HOME": str(tmp_path),
        "LLMPULSE_KAFKA_BOOTSTRAP": "kafka:29092",
        "LLMPULSE_CLICKHOUSE_DSN": "http://clickhouse:8123",
        "LLMPULSE_RULES": "rules.yaml",
        "LLMPULSE_DEVICE": "cuda",
        "LLMPULSE_BATCH_MAX": "500",
    })  # fmt: skip
    assert s.home == tmp_path and s.kafka_host_port == ("kafka", 29092)
    assert s.dsn == "http://clickhouse:8123" and not s.embedded_engine
    assert s.rules == Path("rules.yaml") and s.device == "cuda" and s.batch_max == 500


def test_yaml_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "llmpulse.yaml"
    cfg.write_text("batch_max: 250\nretention_days: 30\ntopics:\n  events: app.events\n")
    s = load_settings({"LLMPULSE_CONFIG": str(cfg), "LLMPULSE_BATCH_MAX": "100"})
    assert (s.batch_max, s.retention_days, s.topics.events) == (100, 30, "app.events")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LLMPULSE_DEVICE": "tpu"}, "LLMPULSE_DEVICE='tpu'"),
        ({"LLMPULSE_BATCH_MAX": "many"}, "LLMPULSE_BATCH_MAX='many'"),
        ({"LLMPULSE_BATCH_MAX": "0"}, "LLMPULSE_BATCH_MAX must be >= 1"),
        ({"LLMPULSE_KAFKA_BOOTSTRAP": "nohost"}, "expected host:port"),
        ({"LLMPULSE_CLICKHOUSE_DSN": "mysql://x"}, "must start with chdb://"),
        ({"LLMPULSE_CONFIG": "/nonexistent.yaml"}, "no such file"),
    ],
)
def test_bad_values_name_the_variable(env: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env)


def test_unknown_yaml_keys_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("batch_maxx: 3\n")
    with pytest.raises(SettingsError, match="unknown settings"):
        load_settings({"LLMPULSE_CONFIG": str(cfg)})


def test_sql_token_is_kept_out_of_repr() -> None:
    assert "s3cret" not in repr(load_settings({"LLMPULSE_SQL_TOKEN": "s3cret"}))


def test_an_unknown_redaction_mode_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="LLMPULSE_REDACTION='blur'"):
        load_settings({"LLMPULSE_REDACTION": "blur"})


def test_the_redaction_salt_stays_out_of_the_settings_repr() -> None:
    s = load_settings({"LLMPULSE_REDACTION": "hash", "LLMPULSE_REDACTION_SALT": "s3cret-salt"})
    assert s.redaction == "hash" and "s3cret-salt" not in repr(s)
