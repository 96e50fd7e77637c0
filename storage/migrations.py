"""Versioned DDL, applied in order and recorded in ``schema_migrations``.

Files are ``migrations/NNNN_name.sql``; statements are separated by ``;`` at the
end of a line. ``{db}`` and ``{ttl_days}`` are filled in at apply time. The DDL
is plain ClickHouse SQL, valid for chdb and for a ClickHouse server alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver.client import Client

__all__ = ["Migration", "applied_versions", "available", "migrate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self, **params: object) -> list[str]:
        text = self.sql.format(**params)
        return [s.strip() for s in text.split(";\n") if s.strip().strip(";").strip()]


def available() -> list[Migration]:
    folder = resources.files("storage") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def _ensure_table(client: Client, db: str) -> None:
    client.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree(applied_at) ORDER BY version"
    )


def applied_versions(client: Client, db: str) -> set[int]:
    _ensure_table(client, db)
    rows = client.query(f"SELECT version FROM {db}.schema_migrations FINAL").result_rows
    return {int(r[0]) for r in rows}


def migrate(client: Client, db: str, *, ttl_days: int) -> list[Migration]:
    """Apply what is missing; return the migrations applied now (idempotent)."""
    done = applied_versions(client, db)
    applied = []
    for migration in available():
        if migration.version in done:
            continue
        for statement in migration.statements(db=db, ttl_days=ttl_days):
            client.command(statement)
        client.insert(
            f"{db}.schema_migrations",
            [[migration.version, migration.name]],
            column_names=["version", "name"],
        )
        log.info("applied migration %04d_%s", migration.version, migration.name)
        applied.append(migration)
    _apply_retention(client, db, ttl_days)
    return applied


RETAINED_TABLES = ("llm_events", "llm_embeddings", "llm_feedback", "llm_spans")


def _apply_retention(client: Client, db: str, ttl_days: int) -> None:
    """Keep the TTL of the per-event tables equal to the configured retention."""
    wanted = f"toIntervalDay({ttl_days})"
    for table in RETAINED_TABLES:
        ddl = client.command(
            f"SELECT create_table_query FROM system.tables WHERE database = '{db}' "
            f"AND name = '{table}'"
        )
        if isinstance(ddl, str) and ddl and wanted not in ddl:
            client.command(
                f"ALTER TABLE {db}.{table} MODIFY TTL toDateTime(ts) + INTERVAL {ttl_days} DAY"
            )
            log.info("%s retention set to %d days", table, ttl_days)
