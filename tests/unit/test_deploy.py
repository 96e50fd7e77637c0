"""The Docker deployment and the Grafana dashboard agree with the code.

There is no Docker engine in CI, so the files are parsed and checked against what
the code defines: the settings (``core.settings``), the storage migrations, the
example rules file, ``pyproject.toml``, and each other. Each checker returns the
problems it finds. The tests at the end give the checkers broken copies and expect
the broken reference to be named, so a check that can never fail is caught too.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from alerting import load_rules
from core.settings import ENV_FIELDS, ENV_PREFIX, Settings, load_settings
from storage.migrations import available

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
GRAFANA = ROOT / "deploy" / "grafana"
DATASOURCES_FILE = GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml"
PROVIDERS_FILE = GRAFANA / "provisioning" / "dashboards" / "llmpulse.yaml"
DASHBOARD_FILE = GRAFANA / "dashboards" / "llmpulse.json"

CLICKHOUSE_PLUGIN = "grafana-clickhouse-datasource"
CLICKHOUSE_HTTP_PORT = 8123  # what clickhouse-server serves HTTP on, unless configured
GRAFANA_PORT = 3000
SETTINGS = {ENV_PREFIX + suffix for suffix in ENV_FIELDS} | {f"{ENV_PREFIX}CONFIG"}

Problems = list[str]


def _words(text: str) -> set[str]:
    return set(text.split())


# --- reading the files ------------------------------------------------------------

_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_]\w*)|(?P<escaped>\$))"
)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable interpolation: $X, ${X}, ${X:-default}, ${X-default}, $$."""

    def value(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        name, op, arg = m["braced"] or m["plain"], m["op"], m["arg"] or ""
        given = env.get(name)
        if op in (":?", "?"):
            if (not given) if op == ":?" else given is None:
                raise ValueError(f"${{{name}}} is required: {arg}")
            return given or ""
        if op == ":-":
            return given or arg
        if op == "-":
            return arg if given is None else given
        if op == ":+":
            return arg if given else ""
        if op == "+":
            return "" if given is None else arg
        return given or ""

    return _VAR.sub(value, text)


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    """The compose file as Compose sees it with the variables of ``env`` (defaults else)."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(item, env) for key, item in node.items()}
    return node


def load_compose(path: Path = COMPOSE_FILE, env: Mapping[str, str] | None = None) -> dict:
    return resolve(yaml.safe_load(path.read_text()), env or {})


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


@dataclass(frozen=True)
class Port:
    target: int
    published: str | None
    host_ip: str | None


def ports(service: Mapping[str, Any]) -> list[Port]:
    found = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            found.append(
                Port(int(entry["target"]), published and str(published), entry.get("host_ip"))
            )
            continue
        spec = str(entry).split("/")[0]
        parts = spec.rsplit(":", 2) if spec.count(":") >= 2 else spec.split(":")
        host_ip = parts[0] if len(parts) == 3 else None
        published = parts[-2] if len(parts) >= 2 and parts[-2] else None
        first, _, last = parts[-1].partition("-")
        for target in range(int(first), int(last or first) + 1):
            found.append(Port(target, published, host_ip))
    return found


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    bind: bool


def mounts(service: Mapping[str, Any]) -> list[Mount]:
    found = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            source, target = str(entry.get("source", "")), str(entry["target"])
            found.append(Mount(source, target, entry.get("type") == "bind"))
            continue
        source, _, rest = str(entry).partition(":")
        target = rest.split(":")[0] if rest else source
        found.append(Mount(source, target, source.startswith((".", "/", "~"))))
    return found


def host_path(service: Mapping[str, Any], container_path: str, root: Path) -> Path | None:
    """The repository file a bind mount of ``service`` shows at ``container_path``."""
    wanted = PurePosixPath(container_path)
    for m in mounts(service):
        target = PurePosixPath(m.target)
        if m.bind and (wanted == target or target in wanted.parents):
            return root / m.source / wanted.relative_to(target)
    return None


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in raw.items()}


def service_secrets(service: Mapping[str, Any]) -> dict[str, str]:
    """Secret name -> its path in the container."""
    found = {}
    for entry in service.get("secrets") or []:
        if isinstance(entry, dict):
            name = entry["source"]
            target = entry.get("target", name)
        else:
            name = target = entry
        found[name] = target if target.startswith("/") else f"/run/secrets/{target}"
    return found


def healthcheck_text(service: Mapping[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test") or ""
    return " ".join(test) if isinstance(test, list) else str(test)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), with continuation lines joined and comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            found.append((instruction.upper(), args.strip()))
    return found


def dockerfile_env(text: str) -> dict[str, str]:
    env = {}
    for instruction, args in dockerfile_instructions(text):
        if instruction == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args) if "=" in item)
    return env


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def top_level_packages() -> list[str]:
    patterns = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({p.split(".")[0].rstrip("*") for p in patterns})


# --- the schema the migrations create ----------------------------------------------


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _parenthesised(text: str, start: int) -> str:
    depth = 0
    for i in range(start, len(text)):
        depth += text[i] == "("
        depth -= text[i] == ")"
        if depth == 0:
            return text[start + 1 : i]
    raise ValueError("unbalanced parentheses")


_CREATE = re.compile(
    r"^CREATE\s+(?:OR\s+REPLACE\s+)?(?P<kind>TABLE|(?:MATERIALIZED\s+)?VIEW)\s+"
    r"(?:IF\s+NOT\s+EXISTS\s+)?(?:\w+\.)?(?P<name>\w+)",
    re.I,
)
_ADD_COLUMN = re.compile(r"ADD\s+COLUMN\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I)
_TOP_FROM = re.compile(r"\bFROM\b", re.I)


def schema() -> dict[str, set[str]]:
    """Table or view -> its columns, from the DDL the worker applies."""
    tables: dict[str, set[str]] = {}
    for migration in available():
        for statement in migration.statements(db="llmpulse", ttl_days=90):
            statement = re.sub(r"--[^\n]*", "", statement).strip()
            create = _CREATE.match(statement)
            if create and create["kind"].upper() == "TABLE":
                body = _parenthesised(statement, statement.index("(", create.end()))
                tables[create["name"]] = {
                    part.split()[0]
                    for part in _split_top_level(body)
                    if part.split()[0].upper() not in ("INDEX", "PROJECTION", "CONSTRAINT")
                }
            elif create:
                select = statement[re.search(r"\bSELECT\b", statement, re.I).end() :]
                depth, cut = 0, len(select)
                for m in re.finditer(r"[()]|\bFROM\b", select, re.I):
                    token = m.group(0)
                    depth += (token == "(") - (token == ")")
                    if token.upper() == "FROM" and depth == 0:
                        cut = m.start()
                        break
                columns = set()
                for item in _split_top_level(select[:cut]):
                    alias = re.search(r"\bAS\s+(\w+)\s*$", item, re.I)
                    columns.add(alias[1] if alias else item.split(".")[-1])
                tables[create["name"]] = columns
            elif statement.upper().startswith("ALTER TABLE"):
                name = statement.split()[2].split(".")[-1]
                tables.setdefault(name, set()).update(_ADD_COLUMN.findall(statement))
    return tables


# --- SQL of the dashboard ------------------------------------------------------------

_KEYWORDS = _words(
    """
    select from where and or not in is null as group by order asc desc limit offset
    final interval second minute hour day week month distinct having join left right
    inner outer on using with case when then else end like between true false prewhere
    settings all array union
    """
)


@dataclass(frozen=True)
class SqlRefs:
    tables: set[str]
    identifiers: set[str]  # bare names that must be columns of those tables
    aliases: set[str]


def sql_refs(sql: str) -> SqlRefs:
    """Tables after FROM/JOIN, and the other names the query reads.

    Grafana variables (${app:singlequote}) and macro names ($__timeFilter) are dropped,
    their arguments kept: $__timeFilter(minute) reads ``minute``. String literals,
    numbers, function names (a name before "(") and aliases (AS name) are not columns.
    """
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", sql)
    text = re.sub(r"'(?:[^'\\]|\\.)*'", " ", text)
    tables = {
        t.split(".")[-1] for t in re.findall(r"\b(?:FROM|JOIN)\s+([A-Za-z_][\w.]*)", text, re.I)
    }
    aliases = set(re.findall(r"\bAS\s+([A-Za-z_]\w*)", text, re.I))
    names = set()
    for m in re.finditer(r"\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)\b(?!\s*\()", text):
        name = m[1].split(".")[-1]
        if name.lower() not in _KEYWORDS and name not in tables and name not in aliases:
            names.add(name)
    return SqlRefs(tables, names, aliases)


def dashboard_queries(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, dict, str]]:
    """(where, datasource, SQL) of every panel target and template variable."""

    def panels(items: list[dict]) -> Iterator[dict]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels") or [])

    for panel in panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            where = f"panel {panel.get('title')!r} target {target.get('refId')}"
            yield (
                where,
                target.get("datasource") or panel.get("datasource") or {},
                target.get("rawSql", ""),
            )
        if panel.get("type") != "row" and not panel.get("targets"):
            yield f"panel {panel.get('title')!r}", panel.get("datasource") or {}, ""
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") == "query":
            query = var.get("query")
            sql = query.get("rawSql", "") if isinstance(query, dict) else str(query or "")
            yield f"variable {var.get('name')}", var.get("datasource") or {}, sql


# --- the checkers ----------------------------------------------------------------------

TOP_LEVEL_KEYS = {
    "name",
    "services",
    "networks",
    "volumes",
    "configs",
    "secrets",
    "include",
    "models",
}
SERVICE_KEYS = _words(
    """
    annotations attach build blkio_config cap_add cap_drop cgroup cgroup_parent command
    configs container_name cpu_count cpu_percent cpu_period cpu_quota cpu_rt_period
    cpu_rt_runtime cpu_shares cpus cpuset credential_spec depends_on deploy develop
    device_cgroup_rules devices dns dns_opt dns_search domainname entrypoint env_file
    environment expose extends external_links extra_hosts gpus group_add healthcheck
    hostname image init ipc isolation labels links logging mac_address mem_limit
    mem_reservation mem_swappiness memswap_limit network_mode networks oom_kill_disable
    oom_score_adj pid pids_limit platform ports post_start pre_stop privileged profiles
    pull_policy read_only restart runtime scale secrets security_opt shm_size
    stdin_open stop_grace_period stop_signal storage_opt sysctls tmpfs tty ulimits user
    userns_mode uts volumes volumes_from working_dir
    """
)
HEALTHCHECK_KEYS = {
    "test",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "start_interval",
    "disable",
}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
RESTART = {"no", "always", "on-failure", "unless-stopped"}


def compose_spec_problems(compose: Mapping[str, Any]) -> Problems:
    problems = []
    if "version" in compose:
        problems.append("top-level `version` is obsolete in the Compose spec")
    for key in set(compose) - TOP_LEVEL_KEYS:
        if not str(key).startswith("x-"):
            problems.append(f"unknown top-level key {key!r}")
    for name, service in (compose.get("services") or {}).items():
        for key in set(service) - SERVICE_KEYS:
            if not str(key).startswith("x-"):
                problems.append(f"{name}: unknown service attribute {key!r}")
        if "image" not in service and "build" not in service:
            problems.append(f"{name}: neither image nor build")
        for key in set(service.get("healthcheck") or {}) - HEALTHCHECK_KEYS:
            problems.append(f"{name}: unknown healthcheck attribute {key!r}")
        for dep, condition in depends_on(service).items():
            if condition not in CONDITIONS:
                problems.append(f"{name}: depends_on {dep}: unknown condition {condition!r}")
        restart = str(service.get("restart", "no")).split(":")[0]
        if restart not in RESTART:
            problems.append(f"{name}: unknown restart policy {restart!r}")
        for port in ports(service):
            if not 0 < port.target < 65536:
                problems.append(f"{name}: port {port.target} out of range")
    return problems


def unknown_variable_problems(compose: Mapping[str, Any], receiver_vars: set[str]) -> Problems:
    """LLMPULSE_* variables that no setting reads (receiver secrets are allowed)."""
    problems = []
    for name, service in compose["services"].items():
        for var in environment(service):
            if var.startswith(ENV_PREFIX) and var not in SETTINGS | receiver_vars:
                problems.append(f"{name}: {var} is not a setting of core.settings")
    return problems


def dsn_problems(compose: Mapping[str, Any], worker: str = "worker") -> Problems:
    services = compose["services"]
    env = environment(services[worker])
    dsn = urlparse(env.get(f"{ENV_PREFIX}CLICKHOUSE_DSN", ""))
    if dsn.scheme not in ("http", "https"):
        return [f"{worker}: LLMPULSE_CLICKHOUSE_DSN must be http(s)://, not {dsn.scheme!r}"]
    host = services.get(dsn.hostname or "")
    if host is None:
        return [f"{worker}: the DSN host {dsn.hostname!r} is not a service"]
    problems = []
    if "clickhouse/clickhouse-server" not in str(host.get("image", "")):
        problems.append(f"{worker}: the DSN host {dsn.hostname!r} is not a ClickHouse server")
    if dsn.port != CLICKHOUSE_HTTP_PORT:
        problems.append(
            f"{worker}: the DSN port {dsn.port} is not ClickHouse's HTTP port "
            f"{CLICKHOUSE_HTTP_PORT}"
        )
    exposed = {p.target for p in ports(host)} | {int(p) for p in host.get("expose") or []}
    if dsn.port not in exposed and str(dsn.port) not in healthcheck_text(host):
        problems.append(f"{worker}: {dsn.hostname} neither exposes nor checks port {dsn.port}")
    server = environment(host)
    user = server.get("CLICKHOUSE_USER") or "default"
    if (dsn.username or "default") != user:
        problems.append(f"{worker}: the DSN user {dsn.username!r} is not {user!r}")
    if (dsn.password or "") != server.get("CLICKHOUSE_PASSWORD", ""):
        problems.append(f"{worker}: the DSN password is not the server's CLICKHOUSE_PASSWORD")
    database = env.get(f"{ENV_PREFIX}CLICKHOUSE_DATABASE") or Settings().clickhouse_database
    if server.get("CLICKHOUSE_DB") != database:
        problems.append(
            f"{worker}: database {database!r} is not the server's CLICKHOUSE_DB "
            f"{server.get('CLICKHOUSE_DB')!r}"
        )
    return problems


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    found = {}
    for item in filter(None, (v.strip() for v in value.split(","))):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        found[name] = (host, int(port))
    return found


def bootstrap_problems(compose: Mapping[str, Any], worker: str = "worker") -> Problems:
    services = compose["services"]
    bootstrap = environment(services[worker]).get(f"{ENV_PREFIX}KAFKA_BOOTSTRAP", "")
    problems = []
    for server in filter(None, bootstrap.split(",")):
        host, _, port = server.strip().rpartition(":")
        broker = services.get(host)
        if broker is None:
            problems.append(f"{worker}: bootstrap host {host!r} is not a service")
            continue
        env = environment(broker)
        advertised = _listeners(env.get("KAFKA_ADVERTISED_LISTENERS", ""))
        listening = _listeners(env.get("KAFKA_LISTENERS", ""))
        protocols = dict(
            item.split(":", 1)
            for item in env.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "").split(",")
            if ":" in item
        )
        names = [n for n, address in advertised.items() if address == (host, int(port))]
        if not names:
            problems.append(
                f"{worker}: bootstrap {server} is not an advertised listener of "
                f"{host} ({env.get('KAFKA_ADVERTISED_LISTENERS')})"
            )
            continue
        name = names[0]
        if listening.get(name, ("", -1))[1] != int(port):
            problems.append(f"{host}: listener {name} does not listen on port {port}")
        if protocols.get(name) != "PLAINTEXT":
            problems.append(f"{host}: listener {name} is not PLAINTEXT (SASL/TLS unsupported)")
    if not bootstrap:
        problems.append(f"{worker}: LLMPULSE_KAFKA_BOOTSTRAP is not set")
    return problems


def dependency_problems(compose: Mapping[str, Any]) -> Problems:
    services = compose["services"]
    problems = []
    for name, service in services.items():
        for dep, condition in depends_on(service).items():
            if dep not in services:
                problems.append(f"{name}: depends on {dep!r}, which is not a service")
            elif condition == "service_healthy" and not healthcheck_text(services[dep]):
                problems.append(
                    f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck"
                )
    return problems


def mount_problems(compose: Mapping[str, Any], root: Path) -> Problems:
    problems = []
    volumes, secrets = compose.get("volumes") or {}, compose.get("secrets") or {}
    for name, service in compose["services"].items():
        for m in mounts(service):
            if m.bind and not (root / m.source).exists():
                problems.append(f"{name}: mounts {m.source}, which is not in the repository")
            if not m.bind and m.source and m.source not in volumes:
                problems.append(f"{name}: volume {m.source!r} is not declared")
        for secret in service_secrets(service):
            if secret not in secrets:
                problems.append(f"{name}: secret {secret!r} is not declared")
    return problems


def rules_file(compose: Mapping[str, Any], root: Path, worker: str = "worker") -> Path | None:
    service = compose["services"][worker]
    path = environment(service).get(f"{ENV_PREFIX}RULES")
    return host_path(service, path, root) if path else None


def receiver_secrets(rules: Path) -> tuple[set[str], set[str]]:
    """(environment variables, files) the receivers of a rules file read secrets from."""
    names, files = set(), set()
    for receiver in load_rules(rules).receivers.values():
        for secret in (receiver.url_secret, receiver.secret):
            if secret is not None and secret.env:
                names.add(secret.env)
            if secret is not None and secret.file:
                files.add(str(secret.file))
    return names, files


def secret_problems(compose: Mapping[str, Any], root: Path, worker: str = "worker") -> Problems:
    service = compose["services"][worker]
    rules = rules_file(compose, root, worker)
    if rules is None:
        return [f"{worker}: LLMPULSE_RULES is not a file mounted from the repository"]
    env_names, files = receiver_secrets(rules)
    problems = [
        f"{worker}: the rules read ${name}, which the worker's environment lacks"
        for name in sorted(env_names - set(environment(service)))
    ]
    visible = set(service_secrets(service).values()) | {m.target for m in mounts(service)}
    problems += [
        f"{worker}: the rules read {file}, which is neither a secret nor a mount"
        for file in sorted(files - visible)
    ]
    return problems


def grafana_problems(compose: Mapping[str, Any], root: Path, grafana: str = "grafana") -> Problems:
    service = compose["services"][grafana]
    env = environment(service)
    problems = []
    if not str(service.get("image", "")).startswith("grafana/grafana"):
        problems.append(f"{grafana}: not a grafana/grafana image")
    plugins = env.get("GF_INSTALL_PLUGINS", "") + "," + env.get("GF_PLUGINS_PREINSTALL", "")
    if CLICKHOUSE_PLUGIN not in re.split(r"[,\s@]+", plugins):
        problems.append(f"{grafana}: {CLICKHOUSE_PLUGIN} is not installed")
    if not any(
        p.target == GRAFANA_PORT and p.published == str(GRAFANA_PORT) for p in ports(service)
    ):
        problems.append(f"{grafana}: port {GRAFANA_PORT} is not published as {GRAFANA_PORT}")
    provisioning = host_path(service, "/etc/grafana/provisioning", root)
    if provisioning is None or not provisioning.is_dir():
        return [*problems, f"{grafana}: /etc/grafana/provisioning is not mounted from the repo"]
    providers = [
        provider
        for path in sorted((provisioning / "dashboards").glob("*.yaml"))
        for provider in yaml.safe_load(path.read_text()).get("providers") or []
    ]
    if not providers:
        problems.append(f"{grafana}: no dashboard provider is provisioned")
    for provider in providers:
        folder = host_path(service, provider["options"]["path"], root)
        if folder is None or not any(folder.glob("*.json")):
            problems.append(
                f"{grafana}: provider {provider['name']!r} reads "
                f"{provider['options']['path']}, where no dashboard is mounted"
            )
    home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home and not (host_path(service, home, root) or Path("/nonexistent")).is_file():
        problems.append(f"{grafana}: the home dashboard {home} is not mounted")
    return problems


def datasource_problems(
    compose: Mapping[str, Any], datasources: Mapping[str, Any], grafana: str = "grafana"
) -> Problems:
    problems = []
    services = compose["services"]
    for ds in datasources.get("datasources") or []:
        if ds.get("type") != CLICKHOUSE_PLUGIN:
            continue
        data, secure = ds.get("jsonData") or {}, ds.get("secureJsonData") or {}
        host = data.get("host") or data.get("server")
        server = services.get(host)
        if server is None:
            problems.append(f"datasource {ds.get('uid')}: host {host!r} is not a service")
            continue
        ch = environment(server)
        if data.get("protocol") != "http" or int(data.get("port", 0)) != CLICKHOUSE_HTTP_PORT:
            problems.append(f"datasource {ds.get('uid')}: not http on {CLICKHOUSE_HTTP_PORT}")
        if data.get("username") != (ch.get("CLICKHOUSE_USER") or "default"):
            problems.append(
                f"datasource {ds.get('uid')}: user {data.get('username')!r} is not "
                "the server's CLICKHOUSE_USER"
            )
        if data.get("defaultDatabase") != ch.get("CLICKHOUSE_DB"):
            problems.append(f"datasource {ds.get('uid')}: database is not CLICKHOUSE_DB")
        # Grafana expands $VAR / ${VAR} in provisioning files from its own environment.
        password = interpolate(str(secure.get("password", "")), environment(services[grafana]))
        if password != ch.get("CLICKHOUSE_PASSWORD", ""):
            problems.append(
                f"datasource {ds.get('uid')}: the password is not the server's CLICKHOUSE_PASSWORD"
            )
    return problems


def dashboard_problems(
    dashboard: Mapping[str, Any], uid: str, tables: Mapping[str, set[str]]
) -> Problems:
    problems = []
    for where, datasource, sql in dashboard_queries(dashboard):
        if datasource.get("uid") != uid:
            problems.append(f"{where}: data source {datasource.get('uid')!r} is not {uid!r}")
        if datasource.get("type") not in (None, CLICKHOUSE_PLUGIN):
            problems.append(f"{where}: data source type {datasource.get('type')!r}")
        if not sql:
            continue
        refs = sql_refs(sql)
        if not refs.tables:
            problems.append(f"{where}: reads no table")
        unknown = sorted(refs.tables - set(tables))
        problems += [f"{where}: no table or view {t!r} in storage/migrations" for t in unknown]
        columns = set().union(*(tables[t] for t in refs.tables if t in tables))
        if not unknown:
            problems += [
                f"{where}: no column {c!r} in {sorted(refs.tables)}"
                for c in sorted(refs.identifiers - columns)
            ]
    return problems


def dockerfile_problems(text: str, packages: list[str]) -> Problems:
    instructions = dockerfile_instructions(text)
    copied = set()
    for instruction, args in instructions:
        if instruction in ("COPY", "ADD"):
            parts = json.loads(args) if args.startswith("[") else shlex.split(args)
            sources = [p for p in parts[:-1] if not p.startswith("--")]
            copied.update(
                PurePosixPath(s).parts[0] if s not in (".", "./") else "." for s in sources
            )
    problems = []
    readme = pyproject()["project"]["readme"]
    for needed in [*packages, "pyproject.toml", readme]:
        if needed not in copied and "." not in copied:
            problems.append(f"Dockerfile: {needed} is not copied into the image")
    runs = " ; ".join(args for instruction, args in instructions if instruction == "RUN")
    if not re.search(r"pip install\b[^;&|]*\s\.(\s|$|;|&)", runs + " "):
        problems.append("Dockerfile: the project is not installed with `pip install .`")
    users = [args for instruction, args in instructions if instruction == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("Dockerfile: the image runs as root")
    checks = [args for instruction, args in instructions if instruction == "HEALTHCHECK"]
    port = str(Settings().sql_port)
    if not checks or not any("LLMPULSE_SQL_PORT" in c and port in c for c in checks):
        problems.append(f"Dockerfile: no HEALTHCHECK on LLMPULSE_SQL_PORT (default {port})")
    return problems


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def tables() -> dict[str, set[str]]:
    return schema()


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD_FILE.read_text())


@pytest.fixture(scope="module")
def datasources() -> dict:
    return yaml.safe_load(DATASOURCES_FILE.read_text())


def provisioned_uid(datasources: Mapping[str, Any]) -> str:
    [ds] = [d for d in datasources["datasources"] if d["type"] == CLICKHOUSE_PLUGIN]
    return ds["uid"]


# --- docker-compose.yml ----------------------------------------------------------------


def test_compose_file_is_valid_yaml_following_the_compose_spec(compose: dict) -> None:
    assert compose_spec_problems(compose) == []
    assert {"kafka", "clickhouse", "worker", "grafana"} <= set(compose["services"])


def test_every_llmpulse_variable_given_to_a_container_is_a_setting(compose: dict) -> None:
    receiver_vars, _ = receiver_secrets(rules_file(compose, ROOT))
    assert unknown_variable_problems(compose, receiver_vars) == []
    image_env = dockerfile_env(DOCKERFILE.read_text())
    assert [v for v in image_env if v.startswith(ENV_PREFIX) and v not in SETTINGS] == []


def test_the_worker_environment_loads_as_valid_settings(compose: dict) -> None:
    env = dockerfile_env(DOCKERFILE.read_text()) | environment(compose["services"]["worker"])
    settings = load_settings(env={k: v for k, v in env.items() if k.startswith(ENV_PREFIX)})
    assert not settings.embedded_engine
    assert settings.sql_bind == "0.0.0.0" and settings.sql_token, "a public bind needs a token"
    assert settings.rules == Path("/etc/llmpulse/rules.yaml")


def test_worker_dsn_points_at_the_clickhouse_service_http_port(compose: dict) -> None:
    assert dsn_problems(compose) == []
    dsn = urlparse(environment(compose["services"]["worker"])["LLMPULSE_CLICKHOUSE_DSN"])
    assert (dsn.hostname, dsn.port) == ("clickhouse", CLICKHOUSE_HTTP_PORT)


def test_the_clickhouse_password_follows_the_variable_everywhere() -> None:
    compose = load_compose(env={"CLICKHOUSE_PASSWORD": "s3cret"})
    assert dsn_problems(compose) == []
    assert (
        urlparse(environment(compose["services"]["worker"])["LLMPULSE_CLICKHOUSE_DSN"]).password
        == "s3cret"
    )
    assert environment(compose["services"]["grafana"])["CLICKHOUSE_PASSWORD"] == "s3cret"


def test_worker_bootstrap_is_an_advertised_plaintext_listener_of_kafka(compose: dict) -> None:
    assert bootstrap_problems(compose) == []
    assert environment(compose["services"]["worker"])["LLMPULSE_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_kafka_runs_kraft_with_its_log_dirs_on_the_volume(compose: dict) -> None:
    kafka = compose["services"]["kafka"]
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert env["CLUSTER_ID"]
    assert env["KAFKA_LOG_DIRS"] in {m.target for m in mounts(kafka) if not m.bind}


def test_every_dependency_exists_and_is_healthy_when_waited_for(compose: dict) -> None:
    assert dependency_problems(compose) == []


def test_worker_waits_for_healthy_kafka_and_clickhouse(compose: dict) -> None:
    assert depends_on(compose["services"]["worker"]) == {
        "kafka": "service_healthy",
        "clickhouse": "service_healthy",
    }


def test_healthchecks_ask_kafka_and_clickhouse_themselves(compose: dict) -> None:
    services = compose["services"]
    assert "kafka-broker-api-versions" in healthcheck_text(services["kafka"])
    assert "kafka:9092" in healthcheck_text(services["kafka"])
    # The address the worker uses: the image's first-start init server is on 127.0.0.1 only.
    assert f"//clickhouse:{CLICKHOUSE_HTTP_PORT}/ping" in healthcheck_text(services["clickhouse"])


def test_files_mounted_from_the_repository_exist(compose: dict) -> None:
    assert mount_problems(compose, ROOT) == []
    assert rules_file(compose, ROOT) == ROOT / "examples" / "rules.yaml"


def test_the_mounted_rules_file_loads_and_its_secrets_reach_the_worker(compose: dict) -> None:
    assert load_rules(rules_file(compose, ROOT)).rules
    assert secret_problems(compose, ROOT) == []


def test_the_worker_is_built_from_the_repository_dockerfile(compose: dict) -> None:
    build = compose["services"]["worker"]["build"]
    context, dockerfile = (
        (build, "Dockerfile")
        if isinstance(build, str)
        else (build.get("context", "."), build.get("dockerfile", "Dockerfile"))
    )
    assert (ROOT / context / dockerfile).resolve() == DOCKERFILE
    assert compose["services"]["worker"].get("command", ["worker"]) == ["worker"]


def test_workers_can_be_scaled_to_three(compose: dict) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker
    assert all(p.published is None for p in ports(worker)), "a fixed host port allows one"
    partitions = int(environment(worker)["LLMPULSE_PARTITIONS"])
    assert partitions >= 3
    assert int(environment(compose["services"]["kafka"])["KAFKA_NUM_PARTITIONS"]) == partitions
    settings = load_settings(
        env={"LLMPULSE_CLICKHOUSE_DSN": environment(worker)["LLMPULSE_CLICKHOUSE_DSN"]}
    )
    assert not settings.embedded_engine, "several workers need a ClickHouse server"


def test_host_ports_other_than_grafana_are_bound_to_loopback(compose: dict) -> None:
    for name, service in compose["services"].items():
        for port in ports(service):
            if name != "grafana":
                assert port.host_ip == "127.0.0.1", (name, port)


# --- Grafana ---------------------------------------------------------------------------


def test_grafana_serves_port_3000_with_the_clickhouse_plugin_and_provisioning(
    compose: dict,
) -> None:
    assert grafana_problems(compose, ROOT) == []
    assert environment(compose["services"]["grafana"])["GF_SECURITY_ADMIN_PASSWORD"]


def test_the_datasource_reaches_clickhouse_as_the_worker_does(
    compose: dict, datasources: dict
) -> None:
    assert datasource_problems(compose, datasources) == []
    assert provisioned_uid(datasources) == "llmpulse-clickhouse"


def test_every_dashboard_query_uses_the_provisioned_datasource(
    dashboard: dict, datasources: dict, tables: dict
) -> None:
    uid = provisioned_uid(datasources)
    problems = dashboard_problems(dashboard, uid, tables)
    assert [p for p in problems if "data source" in p] == []


def test_dashboard_sql_reads_only_tables_and_columns_of_the_migrations(
    dashboard: dict, datasources: dict, tables: dict
) -> None:
    assert dashboard_problems(dashboard, provisioned_uid(datasources), tables) == []


def test_the_schema_parser_sees_tables_altered_columns_and_view_aliases(tables: dict) -> None:
    assert {
        "llm_events",
        "llm_drift",
        "alerts",
        "alert_log",
        "llm_metrics_1m",
        "llm_cost_daily",
    } <= set(tables)
    assert {"toxicity", "hallucination", "ingested_at"} <= tables["llm_events"]
    assert {"minute", "negative_feedback_rate", "latency_p99"} <= tables["llm_metrics_1m"]
    assert "score" not in tables["llm_metrics_1m"], "a subquery's alias is not a view column"


def test_dashboard_has_the_panels_of_the_report(dashboard: dict) -> None:
    refs = {where: sql_refs(sql) for where, _, sql in dashboard_queries(dashboard) if sql}
    read = set().union(*(r.tables for r in refs.values()))
    assert {
        "llm_metrics_1m",
        "llm_events",
        "llm_drift",
        "llm_cost_daily",
        "alerts",
        "alert_log",
    } <= read
    sql = "\n".join(s for _, _, s in dashboard_queries(dashboard))
    for needed in (
        "error_rate",
        "quantile(0.99)(latency_ms)",
        "toxicity_rate",
        "hallucination",
        "negative_feedback_rate",
        "p_value",
        "threshold",
        "drifted = 1",
        "cost_usd",
        "FROM alerts FINAL",
        "state = 'firing'",
        "outcome = 'gave_up'",
    ):
        assert needed in sql, needed
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"app", "prompt_version"}
    for var in variables.values():
        assert sql_refs(var["query"]).tables == {"llm_events"}
    assert re.search(r"prompt_version IN \(\$\{prompt_version", sql)


def test_the_dashboard_is_in_the_folder_the_provider_loads(compose: dict) -> None:
    grafana = compose["services"]["grafana"]
    [provider] = yaml.safe_load(PROVIDERS_FILE.read_text())["providers"]
    assert provider["type"] == "file"
    assert host_path(grafana, provider["options"]["path"], ROOT) == DASHBOARD_FILE.parent


# A Python script run in a subprocess: chdb allows one engine per process.
_RUN_DASHBOARD = r"""
import json, re, sys
from storage.engine import Engine
from storage.migrations import migrate

dashboard, home = json.load(open(sys.argv[1])), sys.argv[2]

def expand(sql):
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"(\1 >= toDateTime(0) AND \1 <= now() + 3600)", sql)
    sql = re.sub(r"\$__dateFilter\((\w+)\)", r"(\1 >= toDate(0) AND \1 <= today() + 1)", sql)
    bucket = r"toStartOfInterval(toDateTime(\1), INTERVAL 60 second)"
    sql = re.sub(r"\$__timeInterval\((\w+)\)", bucket, sql)
    sql = sql.replace("$__interval_s", "60").replace("${app:singlequote}", "'bot'")
    return sql.replace("${prompt_version:singlequote}", "'v1'")

SEED = [
    "INSERT INTO llm_events (event_id, ts, app, prompt_version, model, status, latency_ms,"
    " toxicity, hallucination, cost_usd) VALUES ('e1', now64(3), 'bot', 'v1', 'm', 'ok', 100,"
    " 0.9, 0.7, 0.01), ('e2', now64(3), 'bot', 'v1', 'm', 'error', 300, 0.1, NULL, NULL)",
    "INSERT INTO llm_feedback (event_id, ts, score) VALUES ('e1', now64(3), -1)",
    "INSERT INTO llm_drift (key, app, prompt_version, kind, window_start, window_end, p_value,"
    " threshold, drifted) VALUES ('k', 'bot', 'v1', 'input', now64(3), now64(3), 0.001, 0.01, 1)",
    "INSERT INTO alerts (alert_id, rule, app, prompt_version, state, fired_at, value, count,"
    " updated_at) VALUES ('a', 'r', 'bot', 'v1', 'firing', 1.7e9, 0.5, 3, now64(6))",
    "INSERT INTO alert_log (notification_id, alert_id, outcome) VALUES ('n', 'a', 'gave_up')",
]
queries = [(v["name"], v["query"]) for v in dashboard["templating"]["list"]]
queries += [(p["title"] + "/" + t["refId"], t["rawSql"]) for p in dashboard["panels"]
            for t in p.get("targets", [])]
failed = 0
with Engine("chdb://" + home, "llmpulse") as engine:
    engine.call(migrate, engine.client, "llmpulse", ttl_days=90)
    for statement in SEED:
        engine.call(engine.client.command, statement)
    for name, sql in queries:
        try:
            rows = engine.call(engine.client.query, expand(sql)).result_rows
        except Exception as exc:
            failed += 1
            print(f"{name}: {str(exc).strip()[:500]}")
            continue
        if not rows:
            failed += 1
            print(f"{name}: no row from the seeded data")
print(f"{len(queries) - failed} ran, {failed} failed")
sys.exit(1 if failed else 0)
"""


@pytest.mark.integration
def test_every_dashboard_query_runs_on_the_real_engine(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", _RUN_DASHBOARD, str(DASHBOARD_FILE), str(tmp_path / "ch")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]


# --- Dockerfile ------------------------------------------------------------------------


def test_the_image_copies_and_installs_every_package_of_pyproject() -> None:
    packages = top_level_packages()
    assert packages == [
        "alerting",
        "analysis",
        "core",
        "detectors",
        "ingest",
        "llmpulse",
        "processors",
        "storage",
    ]
    assert set(pyproject()["tool"]["setuptools"]["package-data"]) <= set(packages)
    assert dockerfile_problems(DOCKERFILE.read_text(), packages) == []


def test_the_image_runs_the_worker_and_ships_the_example_rules() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    last = dict(instructions)
    assert json.loads(last["ENTRYPOINT"]) == ["llmpulse"]
    assert json.loads(last["CMD"]) == ["worker"]
    assert str(Settings().sql_port) in last["EXPOSE"].split()
    copies = [args.split() for instruction, args in instructions if instruction == "COPY"]
    assert ["examples", "examples"] in copies


# --- the checkers catch broken references ---------------------------------------------


def _set_env(service: str, var: str, value: str | None) -> Callable[[dict], None]:
    def change(compose: dict) -> None:
        env = compose["services"][service].setdefault("environment", {})
        if value is None:
            env.pop(var, None)
        else:
            env[var] = value

    return change


COMPOSE_BREAKS = {
    "an unknown LLMPULSE variable": (
        _set_env("worker", "LLMPULSE_CLICKHOUSE_URL", "http://x"),
        lambda c: unknown_variable_problems(c, set()),
        "LLMPULSE_CLICKHOUSE_URL is not a setting",
    ),
    "a receiver secret variable the rules do not name": (
        lambda c: None,
        lambda c: unknown_variable_problems(c, set()),
        "LLMPULSE_ROLLBACK_SECRET is not a setting",
    ),
    "a DSN on ClickHouse's native port": (
        _set_env("worker", "LLMPULSE_CLICKHOUSE_DSN", "http://llmpulse:llmpulse@clickhouse:9000"),
        dsn_problems,
        "is not ClickHouse's HTTP port",
    ),
    "a DSN on a host that is no service": (
        _set_env("worker", "LLMPULSE_CLICKHOUSE_DSN", "http://llmpulse:llmpulse@ch:8123"),
        dsn_problems,
        "'ch' is not a service",
    ),
    "a DSN with another password": (
        _set_env("worker", "LLMPULSE_CLICKHOUSE_DSN", "http://llmpulse:nope@clickhouse:8123"),
        dsn_problems,
        "password",
    ),
    "a database the server does not create": (
        _set_env("worker", "LLMPULSE_CLICKHOUSE_DATABASE", "other"),
        dsn_problems,
        "is not the server's CLICKHOUSE_DB",
    ),
    "a bootstrap on the host listener's port": (
        _set_env("worker", "LLMPULSE_KAFKA_BOOTSTRAP", "kafka:29092"),
        bootstrap_problems,
        "is not an advertised listener",
    ),
    "a bootstrap the broker no longer advertises": (
        _set_env("kafka", "KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://broker:9092"),
        bootstrap_problems,
        "is not an advertised listener",
    ),
    "a dependency on a missing service": (
        lambda c: c["services"]["worker"]["depends_on"].update(
            {"zookeeper": {"condition": "service_started"}}
        ),
        dependency_problems,
        "'zookeeper', which is not a service",
    ),
    "waiting for a service with no healthcheck": (
        lambda c: c["services"]["clickhouse"].pop("healthcheck"),
        dependency_problems,
        "clickhouse has no healthcheck",
    ),
    "a mounted file missing from the repository": (
        lambda c: c["services"]["worker"].update(
            volumes=["./examples/no-such-rules.yaml:/etc/llmpulse/rules.yaml:ro"]
        ),
        lambda c: mount_problems(c, ROOT),
        "./examples/no-such-rules.yaml, which is not in the repository",
    ),
    "an undeclared named volume": (
        lambda c: c.pop("volumes"),
        lambda c: mount_problems(c, ROOT),
        "volume 'kafka-data' is not declared",
    ),
    "a secret file the worker cannot see": (
        lambda c: c["services"]["worker"].update(secrets=["slack_llm_webhook"]),
        lambda c: secret_problems(c, ROOT),
        "/run/secrets/audit_hmac, which is neither a secret nor a mount",
    ),
    "a secret variable missing from the worker": (
        _set_env("worker", "PD_ROUTING_KEY", None),
        lambda c: secret_problems(c, ROOT),
        "$PD_ROUTING_KEY",
    ),
    "Grafana without the ClickHouse plugin": (
        _set_env("grafana", "GF_INSTALL_PLUGINS", "grafana-piechart-panel"),
        lambda c: grafana_problems(c, ROOT),
        "grafana-clickhouse-datasource is not installed",
    ),
    "Grafana on another port": (
        lambda c: c["services"]["grafana"].update(ports=["3001:3000"]),
        lambda c: grafana_problems(c, ROOT),
        "port 3000 is not published",
    ),
    "dashboards mounted where the provider does not look": (
        lambda c: c["services"]["grafana"].update(
            volumes=["./deploy/grafana/provisioning:/etc/grafana/provisioning:ro"]
        ),
        lambda c: grafana_problems(c, ROOT),
        "where no dashboard is mounted",
    ),
    "an obsolete version key": (
        lambda c: c.update(version="3.8"),
        compose_spec_problems,
        "`version` is obsolete",
    ),
    "a misspelt service attribute": (
        lambda c: c["services"]["worker"].update(depends_one=["kafka"]),
        compose_spec_problems,
        "unknown service attribute 'depends_one'",
    ),
}


@pytest.mark.parametrize("case", sorted(COMPOSE_BREAKS))
def test_a_broken_compose_file_is_reported(compose: dict, case: str) -> None:
    change, check, expected = COMPOSE_BREAKS[case]
    broken = copy.deepcopy(compose)
    change(broken)
    problems = check(broken)
    assert any(expected in p for p in problems), problems


def test_a_datasource_with_another_user_is_reported(compose: dict, datasources: dict) -> None:
    broken = copy.deepcopy(datasources)
    broken["datasources"][0]["jsonData"]["username"] = "default"
    assert any(
        "is not the server's CLICKHOUSE_USER" in p for p in datasource_problems(compose, broken)
    )


def _replace_sql(dashboard: dict, old: str, new: str) -> dict:
    text = json.dumps(dashboard)
    assert old in text
    return json.loads(text.replace(old, new))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("FROM alert_log", "FROM alert_history", "no table or view 'alert_history'"),
        ("FROM llm_cost_daily", "FROM llmpulse.llm_costs", "no table or view 'llm_costs'"),
        ("sum(errors)", "sum(failures)", "no column 'failures'"),
        (
            "model,\\n       sum(cost_usd)",
            "prompt_version,\\n       sum(cost_usd)",
            "no column 'prompt_version' in ['llm_cost_daily']",
        ),
        ("$__timeFilter(minute)", "$__timeFilter(ts)", "no column 'ts' in ['llm_metrics_1m']"),
        ("llmpulse-clickhouse", "clickhouse-other", "data source 'clickhouse-other'"),
    ],
    ids=[
        "unknown table",
        "unknown view",
        "unknown column",
        "column of another table",
        "macro on a missing column",
        "another datasource",
    ],
)
def test_a_broken_dashboard_reference_is_reported(
    dashboard: dict, tables: dict, old: str, new: str, expected: str
) -> None:
    broken = _replace_sql(dashboard, old, new)
    problems = dashboard_problems(broken, "llmpulse-clickhouse", tables)
    assert any(expected in p for p in problems), problems


def test_a_dashboard_file_with_a_bogus_table_is_reported(tmp_path: Path, tables: dict) -> None:
    panel = {
        "type": "table",
        "title": "bogus",
        "datasource": {"uid": "llmpulse-clickhouse"},
        "targets": [{"refId": "A", "rawSql": "SELECT app FROM llm_bogus"}],
    }
    path = tmp_path / "bogus.json"
    path.write_text(json.dumps({"panels": [panel]}))
    problems = dashboard_problems(json.loads(path.read_text()), "llmpulse-clickhouse", tables)
    assert problems == [
        "panel 'bogus' target A: no table or view 'llm_bogus' in storage/migrations"
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("COPY alerting alerting\n", "", "alerting is not copied"),
        ("README.md ./", "./", "README.md is not copied"),
        ("pip install . ", "pip install -r requirements.txt ", "`pip install .`"),
        ("USER llmpulse", "USER root", "runs as root"),
        ("LLMPULSE_SQL_PORT') or '6066'", "X') or '8080'", "no HEALTHCHECK"),
    ],
    ids=[
        "a package not copied",
        "the readme not copied",
        "the project not installed",
        "root user",
        "healthcheck on another port",
    ],
)
def test_a_broken_dockerfile_is_reported(tmp_path: Path, old: str, new: str, expected: str) -> None:
    text = DOCKERFILE.read_text()
    assert old in text
    broken = tmp_path / "Dockerfile"
    broken.write_text(text.replace(old, new))
    problems = dockerfile_problems(broken.read_text(), top_level_packages())
    assert any(expected in p for p in problems), problems


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert (
        interpolate("${SET:-d} ${EMPTY:-d} ${UNSET:-d} ${EMPTY-d} $SET $$HOME", env)
        == "x d d  x $HOME"
    )
    assert interpolate("${SET:+alt}${UNSET:+alt}", env) == "alt"
    with pytest.raises(ValueError, match=r"UNSET\} is required"):
        interpolate("${UNSET:?set it}", env)
