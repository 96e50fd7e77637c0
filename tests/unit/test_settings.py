"""Settings: defaults, environment names (a contract), YAML file, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import SettingsError, load_settings


def test_defaults_match_the_documented_contract() -> None:
    s = load_settings({})
    assert s.home == Path(".llmpulse")
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.dsn == f"chdb://{Path('.llmpulse/clickhouse').resolve()}"
    assert s.device == "auto" and s.rules is None
    assert s.topics.all() == ["llm.events", "llm.feedback", "llm.deadletter", "llm.scored",
                              "llm.alerts", "llm.otlp"]  # fmt: skip


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


def test_security_environment_names_set_each_setting(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    s = load_settings({
        "LLMPULSE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "LLMPULSE_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "LLMPULSE_KAFKA_SASL_USERNAME": "llmpulse",
        "LLMPULSE_KAFKA_SASL_PASSWORD": "kafka-pw",
        "LLMPULSE_KAFKA_SSL_CAFILE": str(ca),
        "LLMPULSE_CLICKHOUSE_DSN": "https://clickhouse:8443",
        "LLMPULSE_CLICKHOUSE_USER": "writer",
        "LLMPULSE_CLICKHOUSE_PASSWORD": "ch-pw",
        "LLMPULSE_CLICKHOUSE_CA_CERT": str(ca),
        "LLMPULSE_CLICKHOUSE_VERIFY": "false",
    })  # fmt: skip
    # Protocol and mechanism are case-insensitive, as in other Kafka clients.
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (s.kafka_sasl_username, s.kafka_sasl_password) == ("llmpulse", "kafka-pw")
    assert s.kafka_ssl_cafile == ca
    assert s.clickhouse_auth.client_kwargs(s.dsn) == {
        "interface": "https", "username": "writer", "password": "ch-pw", "ca_cert": str(ca),
        "verify": False,
    }  # fmt: skip


def test_secrets_can_be_read_from_files_and_are_stripped(tmp_path: Path) -> None:
    env = {}
    for name in ("SQL_TOKEN", "REDACTION_SALT", "KAFKA_SASL_PASSWORD", "CLICKHOUSE_PASSWORD"):
        path = tmp_path / name.lower()
        path.write_text(f"{name.lower()}-from-file\n")  # editors and `echo` add a newline
        env[f"LLMPULSE_{name}_FILE"] = str(path)
    s = load_settings({**env, "LLMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                       "LLMPULSE_KAFKA_SASL_USERNAME": "u"})  # fmt: skip
    assert s.sql_token == "sql_token-from-file"
    assert s.redaction_salt == "redaction_salt-from-file"
    assert s.kafka_sasl_password == "kafka_sasl_password-from-file"
    assert s.clickhouse_password == "clickhouse_password-from-file"
    assert "from-file" not in repr(s)


def test_a_secret_in_the_environment_replaces_the_yaml_files_one(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-yaml-file")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"sql_token_file: {secret}\n")
    s = load_settings({"LLMPULSE_CONFIG": str(cfg), "LLMPULSE_SQL_TOKEN": "from-env"})
    assert s.sql_token == "from-env"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LLMPULSE_SQL_TOKEN": "t", "LLMPULSE_SQL_TOKEN_FILE": "{f}"},
         "set LLMPULSE_SQL_TOKEN or LLMPULSE_SQL_TOKEN_FILE, not both"),
        ({"LLMPULSE_CLICKHOUSE_PASSWORD_FILE": "{d}/missing"},
         "LLMPULSE_CLICKHOUSE_PASSWORD_FILE='{d}/missing': cannot read it"),
        ({"LLMPULSE_REDACTION_SALT_FILE": "{d}/empty"}, "is empty"),
        ({"LLMPULSE_KAFKA_SECURITY_PROTOCOL": "TLS"}, "LLMPULSE_KAFKA_SECURITY_PROTOCOL='TLS'"),
        ({"LLMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "LLMPULSE_KAFKA_SASL_MECHANISM": "GSSAPI",
          "LLMPULSE_KAFKA_SASL_USERNAME": "u", "LLMPULSE_KAFKA_SASL_PASSWORD": "p"},
         "LLMPULSE_KAFKA_SASL_MECHANISM='GSSAPI'"),
        ({"LLMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "LLMPULSE_KAFKA_SASL_PASSWORD": "p"},
         "SASL_SSL needs LLMPULSE_KAFKA_SASL_USERNAME"),
        ({"LLMPULSE_KAFKA_SASL_USERNAME": "u", "LLMPULSE_KAFKA_SASL_PASSWORD": "p"},
         "PLAINTEXT sends none"),
        ({"LLMPULSE_KAFKA_SSL_CAFILE": "{f}"}, "uses no TLS"),
        ({"LLMPULSE_KAFKA_SECURITY_PROTOCOL": "SSL", "LLMPULSE_KAFKA_SSL_CAFILE": "{d}/nope.pem"},
         "LLMPULSE_KAFKA_SSL_CAFILE='{d}/nope.pem': no such file"),
        ({"LLMPULSE_KAFKA_SECURITY_PROTOCOL": "SSL", "LLMPULSE_KAFKA_SSL_KEYFILE": "{f}"},
         "KEYFILE needs LLMPULSE_KAFKA_SSL_CERTFILE"),
        ({"LLMPULSE_CLICKHOUSE_CA_CERT": "{d}/nope.pem"}, "CLICKHOUSE_CA_CERT='{d}/nope.pem'"),
        ({"LLMPULSE_CLICKHOUSE_VERIFY": "maybe"}, "LLMPULSE_CLICKHOUSE_VERIFY='maybe'"),
    ],
)  # fmt: skip
def test_security_settings_that_cannot_work_are_refused_by_name(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    (tmp_path / "f").write_text("secret-value-xyz")
    (tmp_path / "empty").write_text("\n")
    subst = {"{f}": str(tmp_path / "f"), "{d}": str(tmp_path)}
    for key, value in subst.items():
        env = {k: v.replace(key, value) for k, v in env.items()}
        message = message.replace(key, value)
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert message in str(err.value)
    assert "secret-value-xyz" not in str(err.value)


def test_passwords_stay_out_of_the_settings_repr() -> None:
    s = load_settings({
        "LLMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "LLMPULSE_KAFKA_SASL_USERNAME": "u",
        "LLMPULSE_KAFKA_SASL_PASSWORD": "kafka-s3cret",
        "LLMPULSE_CLICKHOUSE_PASSWORD": "ch-s3cret",
    })  # fmt: skip
    assert "kafka-s3cret" not in repr(s) and "ch-s3cret" not in repr(s)
    assert "ch-s3cret" not in repr(s.clickhouse_auth)


def test_the_printable_dsn_hides_its_password() -> None:
    s = load_settings({"LLMPULSE_CLICKHOUSE_DSN": "https://writer:pa%40ss@ch.example:8443/x"})
    assert s.dsn_redacted == "https://writer:***@ch.example:8443/x"
    assert load_settings({}).dsn_redacted == load_settings({}).dsn  # chdb: nothing to hide


def test_every_setting_is_documented_with_its_yaml_key() -> None:
    from core.settings import ENV_FIELDS, ENV_PREFIX

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    missing = [f"{ENV_PREFIX}{suffix}" for suffix, key in ENV_FIELDS.items()
               if f"| `{ENV_PREFIX}{suffix}` | `{key}` |" not in doc]  # fmt: skip
    assert missing == []


def test_a_bad_yaml_value_names_the_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("batch_max: lots\n")
    with pytest.raises(SettingsError, match=f"{cfg}:batch_max='lots' is not valid"):
        load_settings({"LLMPULSE_CONFIG": str(cfg)})


def test_a_bound_broken_in_the_yaml_file_names_it_too(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("drift_alpha: 1.5\n")
    with pytest.raises(SettingsError, match=f"{cfg}:drift_alpha must be < 1"):
        load_settings({"LLMPULSE_CONFIG": str(cfg)})


def test_the_given_environment_is_the_only_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMPULSE_BATCH_MAX", "7")
    assert load_settings({}).batch_max == 2000
    assert load_settings().batch_max == 7  # None: the process environment


def test_a_secret_that_cannot_be_parsed_is_never_echoed() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({}, sql_token=["not", "a", "string"])
    assert "sql_token=*** is not valid" in str(err.value)
