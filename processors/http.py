"""The worker's HTTP endpoints: read-only SQL and drift-reference replacement.

The embedded engine allows one process, so while a worker holds it, ``llmpulse sql``
and ``llmpulse reference`` go through these endpoints. Off loopback they require the
bearer token; the worker refuses to start on an open address without one.
"""

from __future__ import annotations

import asyncio
import hmac
import json

import faust
from faust.web import Request, Response, View

from core.net import is_loopback
from core.settings import Settings
from processors.batch import Scorer
from processors.drift_monitor import DriftMonitor
from processors.handler import BatchHandler
from processors.references import ReferenceRequest, ReferenceSetError, apply_request
from storage.engine import Engine
from storage.readonly import READ_ONLY_SETTINGS, ReadOnlyViolation, check_read_only

__all__ = [
    "REFERENCE_PATH",
    "SQL_MAX_ROWS",
    "SQL_PATH",
    "install_endpoints",
    "is_loopback",
    "open_endpoint_problem",
]

SQL_PATH = "/sql/"
REFERENCE_PATH = "/drift/reference/"
SQL_MAX_ROWS = 100_000


def open_endpoint_problem(settings: Settings) -> str | None:
    """Why the endpoints may not start as configured: off loopback without a token."""
    if is_loopback(settings.sql_bind) or settings.sql_token:
        return None
    return (
        f"LLMPULSE_SQL_BIND={settings.sql_bind} is not a loopback address: set "
        "LLMPULSE_SQL_TOKEN (or LLMPULSE_SQL_TOKEN_FILE) so the SQL endpoint requires it"
    )


def install_endpoints(
    app: faust.App,
    settings: Settings,
    engine: Engine,
    scorer: Scorer,
    handler: BatchHandler,
    monitor: DriftMonitor,
) -> None:
    """Add the SQL and reference pages to ``app``'s web server."""

    def authorized(request: Request) -> bool:
        expected = f"Bearer {settings.sql_token}"
        given = request.headers.get("Authorization", "")
        return not settings.sql_token or hmac.compare_digest(given.encode(), expected.encode())

    @app.page(REFERENCE_PATH)
    class ReferenceView(View):
        """Replace a drift reference while this worker holds the engine (``llmpulse reference``)."""

        async def post(self, request: Request) -> Response:
            if not authorized(request):
                return self.error(401, "missing or wrong bearer token")
            try:
                req = ReferenceRequest.from_json(await request.json())
            except ReferenceSetError as exc:
                return self.error(400, str(exc))
            except (TypeError, ValueError):
                return self.error(400, "expected a JSON reference request")
            vectors = None
            loop = asyncio.get_running_loop()
            try:
                req = await loop.run_in_executor(None, req.loaded)
                req.check()
            except (ReferenceSetError, OSError) as exc:
                return self.error(400, str(exc))
            if req.action == "file":
                if not scorer.suite.config.models:
                    return self.error(
                        400, "this worker runs with LLMPULSE_MODELS=off: no embedding model "
                        "to encode a reference file with",
                    )  # fmt: skip
                encode = scorer.suite.embeddings.encode
                vectors = (
                    await handler.compute(encode, req.inputs),
                    await handler.compute(encode, req.outputs),
                )
            # Under the monitor's lock: a round growing the old reference must not save
            # it again after the new one.
            async with monitor.lock:
                try:
                    done = await engine.run(
                        apply_request, monitor.store, req, model=scorer.suite.embedding_model,
                        vectors=vectors, redact=scorer.suite.redactor.redact,
                    )  # fmt: skip
                except ReferenceSetError as exc:
                    return self.error(400, str(exc))
                await monitor.forget_reference(req.app, req.prompt_version, locked=True)
            return self.json(done)

    @app.page(SQL_PATH)
    class SQLView(View):
        """Read-only SQL over the worker's engine (the embedded engine is single-process)."""

        async def post(self, request: Request) -> Response:
            if not authorized(request):
                return self.error(401, "missing or wrong bearer token")
            try:
                body = await request.json()
                sql = check_read_only(str(body["query"]))
            except ReadOnlyViolation as exc:
                return self.error(400, str(exc))
            except (KeyError, TypeError, ValueError):
                return self.error(400, 'expected a JSON body {"query": "SELECT ..."}')
            try:
                result = await engine.run(
                    engine.client.query,
                    sql,
                    settings={**READ_ONLY_SETTINGS, "max_result_rows": SQL_MAX_ROWS},
                )
            except Exception as exc:
                return self.error(400, str(exc).strip()[:2000])
            return self.json(
                {
                    "columns": list(result.column_names),
                    "types": [t.name for t in result.column_types],
                    "rows": json.loads(json.dumps(result.result_rows, default=str)),
                }
            )
