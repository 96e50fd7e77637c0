"""One handle on ClickHouse, embedded (chdb) or server, behind a single thread.

chdb runs the real ClickHouse engine inside this process and allows one engine
per directory per process, so every call goes through one worker thread: the
event loop never blocks on a query, and the SQL endpoint and the writer never
race on the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from core.dsn import ServerAuth, redact_dsn
from core.errors import LlmpulseError

__all__ = ["Engine", "EngineBusyError", "StorageError", "connect"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class StorageError(LlmpulseError, RuntimeError):
    """The engine or server refused an operation."""


class EngineBusyError(StorageError):
    """Another process holds the embedded engine's directory."""


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def connect(dsn: str, database: str, auth: ServerAuth | None = None) -> Client:
    """Open a client on ``database``, creating the database if needed."""
    auth = auth or ServerAuth()
    extra = auth.client_kwargs(dsn)
    if dsn.startswith("chdb:"):
        Path(urlparse(dsn).path).mkdir(parents=True, exist_ok=True)
    try:
        bootstrap = clickhouse_connect.get_client(dsn=dsn, **extra)
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        if dsn.startswith("chdb:"):
            # chdb clients on one path share the engine; a second handle is cheap.
            return clickhouse_connect.get_client(dsn=dsn, database=database)
        bootstrap.close()
        return clickhouse_connect.get_client(dsn=dsn, database=database, **extra)
    except ClickHouseError as exc:
        text = _scrub(str(exc), auth.secrets(dsn))
        if dsn.startswith("chdb:") and "EmbeddedServer" in text:
            raise EngineBusyError(
                f"the embedded ClickHouse engine at {urlparse(dsn).path} is held by another "
                "process (a running worker?). While a worker runs, query through it: "
                "`llmpulse sql` does this by itself when the worker is reachable."
            ) from None
        raise StorageError(f"cannot open ClickHouse at {redact_dsn(dsn)}: {text}") from None
    except OSError as exc:  # a missing or unreadable ca_cert file, among others
        text = _scrub(str(exc), auth.secrets(dsn))
        raise StorageError(f"cannot reach ClickHouse at {redact_dsn(dsn)}: {text}") from None


class Engine:
    """A ClickHouse client whose calls all run on one dedicated thread."""

    def __init__(self, dsn: str, database: str, auth: ServerAuth | None = None) -> None:
        self.dsn = dsn
        self.database = database
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        try:
            self.client: Client = self._pool.submit(connect, dsn, database, auth).result()
        except BaseException:
            self._pool.shutdown(wait=True)
            raise

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb:")

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the engine thread and wait (for synchronous callers)."""
        return self._pool.submit(fn, *args, **kwargs).result()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the engine thread without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        try:
            self._pool.submit(self.client.close).result(timeout=30)
        except Exception as exc:  # closing must not mask the error that led here
            log.warning("closing ClickHouse client failed: %s", exc)
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
