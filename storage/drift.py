"""Drift references and results in ClickHouse: what the window monitor reads and writes.

References live in their own tables (``llm_drift_references`` for which one is
active per app|prompt_version, ``llm_drift_reference_vectors`` for the vectors
and texts), so a restart keeps them and retention on ``llm_embeddings`` never
removes one. Methods are synchronous; the worker calls them on the engine thread.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
from clickhouse_connect.driver.client import Client

from core.keys import version_key
from storage.rows import DRIFT_COLUMNS, VECTOR_COLUMNS, DriftRow, ReferenceVectorRow
from storage.writer import Writer

__all__ = [
    "DRIFT_COLUMNS",
    "KINDS",
    "REFERENCE_COLUMNS",
    "RETRIEVAL_KINDS",
    "VECTOR_COLUMNS",
    "DriftStore",
    "Reference",
    "new_reference_id",
    "token",
]

KINDS = ("input", "output")  # the texts whose vectors are tested
# One number per event, tested beside the vectors (migration 0011): the best chunk's
# relevance, the number of chunks and their mean length. Their reference values are rows
# of llm_drift_reference_vectors with a one-element vector and no text.
RETRIEVAL_KINDS = ("context_relevance", "chunk_count", "chunk_length")
REFERENCE_COLUMNS = (
    "app", "prompt_version", "reference_id", "vectors_id", "source", "detail", "target",
    "size", "complete", "active", "embedding_model", "updated_at",
)  # fmt: skip


def new_reference_id(app: str, prompt_version: str) -> str:
    return f"{app}|{prompt_version}|{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Reference:
    """The reference of one app|prompt_version (both kinds share it)."""

    app: str
    prompt_version: str
    reference_id: str
    vectors_id: str
    source: str  # first | file | range | inherited
    detail: str
    target: int
    size: int
    complete: bool
    active: bool
    embedding_model: str
    updated_at: datetime | None = None

    @property
    def key(self) -> str:
        return version_key(self.app, self.prompt_version)

    def row(self) -> list[Any]:
        # Microsecond stamps order the versions of one key; a row written twice in a
        # microsecond would tie, so each save takes a fresh stamp.
        stamp = datetime.fromtimestamp(time.time())
        return [
            self.app, self.prompt_version, self.reference_id, self.vectors_id, self.source,
            self.detail, self.target, self.size, int(self.complete), int(self.active),
            self.embedding_model, stamp,
        ]  # fmt: skip

    @classmethod
    def from_next_events(cls, app: str, prompt_version: str, target: int, model: str,
                         detail: str) -> Reference:  # fmt: skip
        """A new, empty reference that the stream fills with the key's next ``target`` events."""
        rid = new_reference_id(app, prompt_version)
        return cls(app, prompt_version, rid, rid, "first", detail, target, 0, False, True, model)

    def grown(self, added: int) -> Reference:
        size = self.size + added
        return replace(self, size=size, complete=size >= self.target)


class DriftStore:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.db = database
        self.writer = Writer(client, database)

    # references -------------------------------------------------------------

    def references(self, app: str | None = None) -> list[Reference]:
        """Active references, one per app|prompt_version."""
        where = "WHERE active = 1" + (" AND app = {app:String}" if app else "")
        result = self.client.query(
            f"SELECT {', '.join(REFERENCE_COLUMNS)} FROM {self.db}.llm_drift_references "
            f"FINAL {where} ORDER BY app, prompt_version",
            parameters={"app": app} if app else None,
        )
        return [_reference(r) for r in result.result_rows]

    def reference(self, app: str, prompt_version: str) -> Reference | None:
        result = self.client.query(
            f"SELECT {', '.join(REFERENCE_COLUMNS)} FROM {self.db}.llm_drift_references FINAL "
            "WHERE app = {app:String} AND prompt_version = {pv:String} AND active = 1",
            parameters={"app": app, "pv": prompt_version},
        )
        rows = result.result_rows
        return _reference(rows[0]) if rows else None

    def baseline(self, app: str, model: str) -> Reference | None:
        """The app's most recently set complete reference: what a new version inherits."""
        found = [r for r in self.references(app) if r.complete and r.embedding_model == model]
        return max(found, key=lambda r: r.updated_at or datetime.min) if found else None

    def save_reference(self, ref: Reference) -> None:
        self.client.insert(
            f"{self.db}.llm_drift_references", [ref.row()], column_names=list(REFERENCE_COLUMNS)
        )

    def add_vectors(self, rows: Sequence[ReferenceVectorRow], token: str) -> None:
        self.writer.insert("llm_drift_reference_vectors", VECTOR_COLUMNS, list(rows), token)

    def vectors(self, vectors_id: str, kind: str) -> tuple[np.ndarray, list[str]]:
        result = self.client.query(
            f"SELECT vector, text FROM {self.db}.llm_drift_reference_vectors FINAL "
            "WHERE reference_id = {rid:String} AND kind = {kind:String} ORDER BY event_id",
            parameters={"rid": vectors_id, "kind": kind},
        )
        rows = result.result_rows
        return _matrix([r[0] for r in rows]), [r[1] for r in rows]

    def reference_size(self, reference_id: str) -> int:
        result = self.client.query(
            f"SELECT uniqExact(event_id) FROM {self.db}.llm_drift_reference_vectors "
            "WHERE reference_id = {rid:String}",
            parameters={"rid": reference_id},
        )
        return int(result.result_rows[0][0])

    # windows ----------------------------------------------------------------

    def event_vectors(
        self, app: str, prompt_version: str, event_ids: Sequence[str]
    ) -> dict[tuple[str, str], tuple[datetime, list[float]]]:
        """(event_id, kind) -> (ts, vector) from llm_embeddings for the given events."""
        if not event_ids:
            return {}
        result = self.client.query(
            f"SELECT event_id, kind, ts, vector FROM {self.db}.llm_embeddings "
            "WHERE app = {app:String} AND prompt_version = {pv:String} "
            "AND event_id IN {ids:Array(String)} LIMIT 1 BY event_id, kind",
            parameters={"app": app, "pv": prompt_version, "ids": list(event_ids)},
        )
        return {(r[0], r[1]): (r[2], r[3]) for r in result.result_rows}

    def event_texts(self, app: str, event_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """event_id -> (input, output) as stored (already redacted)."""
        if not event_ids:
            return {}
        result = self.client.query(
            f"SELECT event_id, input, output FROM {self.db}.llm_events "
            "WHERE app = {app:String} AND event_id IN {ids:Array(String)} LIMIT 1 BY event_id",
            parameters={"app": app, "ids": list(event_ids)},
        )
        return {r[0]: (r[1], r[2]) for r in result.result_rows}

    def retrieval_values(
        self, app: str, event_ids: Sequence[str]
    ) -> dict[str, tuple[float | None, int, float | None]]:
        """event_id -> (the best chunk's relevance, the chunks, their mean length in
        characters) as stored: the chunks are the redacted ones, so a masked email makes
        one a little shorter or longer than the worker measured it."""
        if not event_ids:
            return {}
        result = self.client.query(
            "SELECT event_id, context_relevance_max, length(chunks), "
            "if(empty(chunks), NULL, arrayAvg(arrayMap(c -> lengthUTF8(c), chunks))) "
            "FROM (SELECT event_id, context_relevance_max, "
            "      arrayFilter(c -> notEmpty(trimBoth(c)), context) AS chunks "
            f"      FROM {self.db}.llm_events "
            "      WHERE app = {app:String} AND event_id IN {ids:Array(String)} "
            "      LIMIT 1 BY event_id)",
            parameters={"app": app, "ids": list(event_ids)},
        )
        return {
            r[0]: (None if r[1] is None else float(r[1]), int(r[2]),
                   None if r[3] is None else float(r[3]))
            for r in result.result_rows
        }  # fmt: skip

    def range_events(
        self,
        app: str,
        prompt_version: str,
        start: datetime,
        end: datetime,
        limit: int,
        model: str,
    ) -> list[tuple[str, datetime, str, str, list[float], list[float]]]:
        """Up to ``limit`` stored events in [start, end), a hash-sample when there are more."""
        result = self.client.query(
            "SELECT e.event_id, e.ts, e.input, e.output, i.vector, o.vector "
            f"FROM (SELECT event_id, ts, input, output FROM {self.db}.llm_events FINAL "
            "      WHERE app = {app:String} AND prompt_version = {pv:String} "
            "      AND ts >= {start:DateTime64(3)} AND ts < {end:DateTime64(3)}) AS e "
            f"INNER JOIN (SELECT event_id, vector FROM {self.db}.llm_embeddings "
            "      WHERE app = {app:String} AND prompt_version = {pv:String} "
            "      AND kind = 'input' AND model = {model:String} LIMIT 1 BY event_id) AS i "
            "ON i.event_id = e.event_id "
            f"INNER JOIN (SELECT event_id, vector FROM {self.db}.llm_embeddings "
            "      WHERE app = {app:String} AND prompt_version = {pv:String} "
            "      AND kind = 'output' AND model = {model:String} LIMIT 1 BY event_id) AS o "
            "ON o.event_id = e.event_id "
            "ORDER BY cityHash64(e.event_id) LIMIT {limit:UInt32}",
            parameters={
                "app": app, "pv": prompt_version, "start": start, "end": end, "limit": limit,
                "model": model,
            },
        )  # fmt: skip
        return [tuple(r) for r in result.result_rows]  # type: ignore[misc]

    def covered_offsets(self, partition: int) -> dict[str, tuple[int, float]]:
        """key -> (last llm.scored offset of ``partition`` already stored, when it was stored).

        Covered by a tested window (``llm_drift``) or by a reference built from the
        stream. The time (the worker's clock, written with the row) tells a replay of
        that offset from a new message at a reused offset after a broker reset.
        """
        # The offset of the row written last, with its time: the highest offset may
        # come from before a broker reset, and must not pair with a later time.
        result = self.client.query(
            "SELECT key, argMax(last_offset, tested_at), "
            "toUnixTimestamp64Milli(max(tested_at)) "
            f"FROM {self.db}.llm_drift WHERE kafka_partition = {{p:Int32}} GROUP BY key "
            "UNION ALL "
            "SELECT concat(r.app, '|', r.prompt_version), argMax(v.kafka_offset, v.added_at), "
            "toUnixTimestamp64Milli(max(v.added_at)) "
            f"FROM {self.db}.llm_drift_reference_vectors AS v "
            f"INNER JOIN (SELECT app, prompt_version, reference_id "
            f"            FROM {self.db}.llm_drift_references FINAL) AS r "
            "ON r.reference_id = v.reference_id "
            "WHERE v.kafka_partition = {p:Int32} GROUP BY r.app, r.prompt_version",
            parameters={"p": partition},
        )
        covered: dict[str, tuple[int, float]] = {}
        for key, offset, written_ms in result.result_rows:
            written_at = int(written_ms) / 1000
            if key not in covered or written_at > covered[key][1]:
                covered[key] = (int(offset), written_at)
        return covered

    def write_results(self, rows: Sequence[DriftRow], token: str) -> None:
        self.writer.insert("llm_drift", DRIFT_COLUMNS, list(rows), token)


def token(kind: str, *parts: object) -> str:
    digest = hashlib.sha256(kind.encode())
    for part in parts:
        digest.update(f"|{part}".encode())
    return f"{kind}-{digest.hexdigest()[:32]}"


def _matrix(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    if not vectors:
        return np.zeros((0, 0), dtype=np.float32)
    return np.asarray(vectors, dtype=np.float32)


def _reference(row: Sequence[Any]) -> Reference:
    (app, pv, rid, vid, source, detail, target, size, complete, active, model, updated) = row
    return Reference(
        app, pv, rid, vid, source, detail, int(target), int(size), bool(complete), bool(active),
        model, updated,
    )  # fmt: skip
