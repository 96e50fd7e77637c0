"""Alert state and the delivery log in ClickHouse. Synchronous: run on the engine thread."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from alerting.alert import DeliveryRecord
from alerting.state import AlertState
from storage.rows import ALERT_COLUMNS, AlertRow

__all__ = ["ALERT_COLUMNS", "LOG_COLUMNS", "AlertStore"]

LOG_COLUMNS = tuple(f.name for f in fields(DeliveryRecord))
FINISHED = ("delivered", "gave_up", "skipped")


class AlertStore:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.db = database
        self._last_stamp = 0.0

    def _stamp(self) -> datetime:
        # Strictly increasing, so the row written last always wins in ReplacingMergeTree.
        now = max(time.time(), self._last_stamp + 1e-6)
        self._last_stamp = now
        return datetime.fromtimestamp(now, UTC)

    def load(self) -> dict[str, AlertState]:
        rows = self.client.query(
            f"SELECT {', '.join(ALERT_COLUMNS[:-1])} FROM {self.db}.alerts FINAL"
        ).result_rows
        out = {}
        for values in rows:
            r = dict(zip(ALERT_COLUMNS[:-1], values, strict=True))
            st = AlertState(
                alert_id=r["alert_id"], rule=r["rule"], labels=dict(r["labels"]),
                state=str(r["state"]), active_at=r["active_at"], fired_at=r["fired_at"],
                resolved_at=r["resolved_at"], value=r["value"], count=int(r["count"]),
                notified_at=r["notified_at"], notified_status=r["notified_status"],
                notified_episode=r["notified_episode"], refreshed_at=r["refreshed_at"],
            )  # fmt: skip
            out[st.alert_id] = st
        return out

    def save(self, states: Sequence[AlertState]) -> None:
        rows = [
            tuple(AlertRow(
                alert_id=s.alert_id, rule=s.rule, labels=s.labels, app=s.labels.get("app", ""),
                prompt_version=s.labels.get("prompt_version", ""), state=s.state,
                active_at=s.active_at, fired_at=s.fired_at, resolved_at=s.resolved_at,
                value=s.value, count=s.count, notified_at=s.notified_at,
                notified_status=s.notified_status, notified_episode=s.notified_episode,
                refreshed_at=s.refreshed_at, updated_at=self._stamp(),
            ))
            for s in states
        ]  # fmt: skip
        if rows:
            self.client.insert(f"{self.db}.alerts", rows, column_names=list(ALERT_COLUMNS))

    def log(self, records: Iterable[DeliveryRecord]) -> None:
        """One ``alert_log`` row per record, filled from its fields by name."""
        rows = [
            [datetime.fromtimestamp(r.at, UTC), *(getattr(r, c) for c in LOG_COLUMNS[1:])]
            for r in records
        ]
        if rows:
            self.client.insert(f"{self.db}.alert_log", rows, column_names=list(LOG_COLUMNS))

    def finished(self, notification_ids: Sequence[str]) -> set[tuple[str, str]]:
        """(notification_id, receiver) pairs already delivered, given up or skipped."""
        if not notification_ids:
            return set()
        rows = self.client.query(
            f"SELECT DISTINCT notification_id, receiver FROM {self.db}.alert_log "
            "WHERE notification_id IN {ids:Array(String)} AND outcome IN {done:Array(String)}",
            parameters={"ids": list(notification_ids), "done": list(FINISHED)},
        ).result_rows
        return {(r[0], r[1]) for r in rows}

    def query(self, sql: str) -> list[tuple]:
        return [tuple(r) for r in self.client.query(sql).result_rows]
