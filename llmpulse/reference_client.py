"""Where ``llmpulse reference`` sends a request: the running worker, or the engine itself.

The embedded engine belongs to one process: while a worker runs, the request goes
to its ``/drift/reference/`` endpoint (it embeds with its own model and drops its
cached reference at once). Otherwise the CLI opens storage and does the work here;
a worker against a ClickHouse server picks the change up on its next round.
"""

from __future__ import annotations

import json
import urllib.error
from typing import Any

from core.settings import Settings
from llmpulse.query import WorkerRefused, post_to_worker
from processors.references import ReferenceRequest, ReferenceSetError, apply_request
from storage.drift import DriftStore
from storage.engine import Engine, StorageError
from storage.migrations import applied_versions

__all__ = ["send_reference_request"]

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def _worker_url(settings: Settings) -> str | None:
    from processors.http import REFERENCE_PATH, SQL_PATH
    from processors.worker import read_worker_state

    if not settings.embedded_engine:
        return None
    state = read_worker_state(settings)
    if state is None:
        return None
    return str(state["sql_url"]).removesuffix(SQL_PATH) + REFERENCE_PATH


def _via_worker(url: str, req: ReferenceRequest, token: str) -> dict[str, Any]:

    try:
        return dict(post_to_worker(url, json.loads(req.to_json()), token, timeout_s=600))
    except WorkerRefused as exc:
        raise ReferenceSetError(f"the worker refused: {exc}") from None
    except urllib.error.URLError as exc:
        raise StorageError(f"the worker's endpoint {url} does not answer: {exc.reason}") from None


def _direct(settings: Settings, req: ReferenceRequest) -> dict[str, Any]:
    from detectors.redaction import Redactor

    req = req.loaded()
    req.check()
    vectors = None
    # The name the worker's suite gives the configured model, without loading it.
    model_name = settings.embedding_model.name if settings.embedding_model else DEFAULT_MODEL
    redact = Redactor(settings.redaction, settings.redaction_salt).redact
    if req.action == "file":
        from detectors.embeddings import EmbeddingModel

        model = EmbeddingModel(
            settings.embedding_model, device=settings.device, precision=settings.precision
        )
        model_name = model.name
        vectors = (model.encode(req.inputs), model.encode(req.outputs))
    with Engine(settings.dsn, settings.clickhouse_database, settings.clickhouse_auth) as engine:
        if 3 not in engine.call(applied_versions, engine.client, settings.clickhouse_database):
            raise StorageError(
                "the drift tables do not exist yet: start a worker or run `llmpulse migrate`"
            )
        store = DriftStore(engine.client, settings.clickhouse_database)
        return engine.call(
            apply_request, store, req, model=model_name, vectors=vectors,
            redact=redact,
        )  # fmt: skip


def send_reference_request(settings: Settings, req: ReferenceRequest) -> dict[str, Any]:
    """Carry out ``req`` wherever storage can be written now; returns what was done."""
    req.check()
    url = _worker_url(settings)
    if url is not None:
        return _via_worker(url, req, settings.sql_token)
    return _direct(settings, req)
