"""ClickHouse's HTTP interface served by chdb, for tests that need a server DSN.

No ClickHouse server runs on the test machines, so this puts the real engine
(chdb) behind the part of the HTTP protocol that clickhouse-connect speaks: the
SQL in the body or the ``query`` parameter, ``database`` and settings as URL
parameters (``insert_deduplication_token`` included), ``param_*`` bindings,
inserts whose body is ``INSERT ... FORMAT fmt`` followed by (lz4/zstd/gzip
compressed) data, results in the format the query names (TabSeparated when none,
as ClickHouse does), ``/ping``, and errors as HTTP 500 with ClickHouse's
``Code: N. DB::Exception: ...`` text and ``X-ClickHouse-Exception-Code``.
Responses are sent uncompressed, which HTTP allows whatever the client accepts.

chdb allows one engine per process, so the server is its own process:
``python -m tests.reliability.chdb_http --port P --path DIR``, or
:class:`ChdbHttpServer` from a test. Stopping it makes the port refuse
connections, as a dead server does; the data directory survives a restart.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zlib
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["ChdbHttpServer", "main"]

# URL parameters that the HTTP layer consumes itself; they never reach the engine.
TRANSPORT_PARAMS = frozenset({
    "query", "database", "user", "password", "default_format", "session_id",
    "session_timeout", "session_check", "query_id", "quota_key", "compress",
    "decompress", "buffer_size", "wait_end_of_query", "client_protocol_version",
    "role", "send_progress_in_http_headers", "http_headers_progress_interval_ms",
    "enable_http_compression", "cancel_http_readonly_queries_on_client_close",
})  # fmt: skip
_INSERT_RE = re.compile(
    rb"^\s*INSERT\s+INTO\s+(?P<target>.+?)\s+FORMAT\s+(?P<fmt>\w+)[ \t]*(?:\r?\n)?",
    re.IGNORECASE | re.DOTALL,
)
_TRAILING_FORMAT_RE = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_CODE_RE = re.compile(r"Code: (\d+)")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _quote(value: str) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _settings_clause(settings: Mapping[str, str]) -> str:
    return ", ".join(f"{k} = {_quote(v)}" for k, v in settings.items())


def _decompress(data: bytes, encoding: str | None) -> bytes:
    if not encoding or encoding == "identity" or not data:
        return data
    if encoding == "lz4":
        import lz4.frame

        return bytes(lz4.frame.decompress(data))
    if encoding == "zstd":
        from backports import zstd

        return zstd.decompress(data)
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    raise ValueError(f"Content-Encoding {encoding} is not supported by this test server")


class EngineError(Exception):
    """The engine refused a statement; ``code`` is ClickHouse's error code."""

    def __init__(self, message: str) -> None:
        start = message.find("Code: ")
        self.message = (message[start:] if start >= 0 else message).strip()
        match = _CODE_RE.search(self.message)
        self.code = int(match.group(1)) if match else 1000  # POCO_EXCEPTION: no code given
        super().__init__(self.message)


class Engine:
    """One chdb connection, one statement at a time, with per-request settings."""

    def __init__(self, path: Path) -> None:
        import chdb

        self.path = os.path.realpath(path)
        self.conn = chdb.connect(self.path)
        self.lock = threading.Lock()
        self.database: str | None = None
        self.version = self._query("SELECT version()", "TabSeparated").bytes().decode().strip()

    def _query(self, sql: str, fmt: str, params: Mapping[str, str] | None = None) -> Any:
        try:
            return self.conn.query(sql, fmt, params=dict(params or {}))
        except Exception as exc:  # chdb raises RuntimeError with the server's text
            raise EngineError(str(exc)) from None

    def _use(self, database: str | None) -> None:
        if database and database != self.database:
            self._query(f"USE `{database}`", "TabSeparated")
            self.database = database

    def _with_settings(self, sql: str, fmt: str, settings: Mapping[str, str], params: Any) -> Any:
        """Statements that take no SETTINGS clause (DDL) run on a handle of their own with
        SET: session state is per handle, so nothing leaks (not even ``readonly``)."""
        if not settings:
            return self._query(sql, fmt, params)
        import chdb

        conn = chdb.connect(self.path)
        try:
            statements = [f"USE `{self.database}`"] if self.database else []
            statements += [f"SET {k} = {_quote(v)}" for k, v in settings.items()]
            for statement in statements:
                conn.query(statement, "TabSeparated")
            return conn.query(sql, fmt, params=dict(params or {}))
        except Exception as exc:
            raise EngineError(str(exc)) from None
        finally:
            conn.close()

    def execute(
        self, sql: bytes, data: bytes | None, database: str | None,
        settings: dict[str, str], params: dict[str, str],
    ) -> tuple[bytes, str | None, dict[str, str]]:  # fmt: skip
        """Run one request; return (body, result format or None, summary)."""
        for key in settings:
            if not _NAME_RE.match(key):
                raise EngineError(f"Code: 115. DB::Exception: Unknown setting {key}.")
        with self.lock:
            self._use(database)
            insert = _INSERT_RE.match(sql if data is None else sql + b"\n")
            if insert:
                payload = sql[insert.end() :] if data is None else data
                return self._insert(insert, payload, settings)
            text = sql.decode().strip().rstrip(";")
            fmt_match = _TRAILING_FORMAT_RE.search(text)
            if fmt_match:  # a SELECT-like statement: settings ride as a clause before FORMAT
                fmt, body = fmt_match.group(1), text[: fmt_match.start()]
                if settings:
                    body = f"{body}\nSETTINGS {_settings_clause(settings)}"
                result = self._query(f"{body}\nFORMAT {fmt}", fmt, params)
                return result.bytes() or b"", fmt, {"read_rows": str(result.rows_read())}
            # No FORMAT: ClickHouse answers TabSeparated, and only statements with a result
            # set name a format (the client tells DDL from an empty result that way).
            result = self._with_settings(text, "TabSeparatedWithNames", settings, params)
            out = result.bytes() or b""
            if not out:
                return b"", None, {}
            summary = {"read_rows": str(result.rows_read())}
            return out[out.find(b"\n") + 1 :], "TabSeparated", summary

    def _insert(
        self, match: re.Match[bytes], payload: bytes, settings: dict[str, str]
    ) -> tuple[bytes, str | None, dict[str, str]]:
        target, fmt = match.group("target").decode(), match.group("fmt").decode()
        clause = f" SETTINGS {_settings_clause(settings)}" if settings else ""
        with tempfile.NamedTemporaryFile(suffix=".data", delete=False) as tmp:
            tmp.write(payload)
        try:
            result = self._query(
                f"INSERT INTO {target} FROM INFILE {_quote(tmp.name)}{clause} FORMAT {fmt}",
                "TabSeparated",
            )
        finally:
            os.unlink(tmp.name)
        return b"", None, {"written_rows": str(result.rows_read())}


def _handler(engine: Engine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as clickhouse-connect's pool expects
        disable_nagle_algorithm = True  # headers and body go out in two writes

        def log_message(self, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path.rstrip("/")
            if path == "/ping" or (path == "" and "query=" not in self.path):
                self._send(200, b"Ok.\n", {"Content-Type": "text/plain"})
                return
            self._run(b"")

        def do_POST(self) -> None:
            self._run(self._body())

        def _run(self, raw: bytes) -> None:
            params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
            query_id = params.get("query_id") or str(uuid.uuid4())
            headers = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": "UTC"}
            try:
                body = _decompress(raw, self.headers.get("Content-Encoding"))
                query = params.get("query", "")
                sql, data = (query.encode(), body) if query else (body, None)
                binds = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
                settings = {
                    k: v for k, v in params.items()
                    if k not in TRANSPORT_PARAMS and not k.startswith("param_")
                }  # fmt: skip
                out, fmt, summary = engine.execute(
                    sql, data, params.get("database"), settings, binds
                )
            except EngineError as exc:
                self._send(
                    500,
                    f"{exc.message} (version {engine.version})\n".encode(),
                    {**headers, "X-ClickHouse-Exception-Code": str(exc.code),
                     "Content-Type": "text/plain; charset=UTF-8"},
                )  # fmt: skip
                return
            except Exception as exc:  # a request this server cannot parse
                self._send(
                    500,
                    f"Code: 1000. DB::Exception: chdb_http: {type(exc).__name__}: {exc}\n".encode(),
                    {**headers, "X-ClickHouse-Exception-Code": "1000"},
                )  # fmt: skip
                return
            headers["X-ClickHouse-Summary"] = json.dumps(summary)
            if fmt is not None:
                headers["X-ClickHouse-Format"] = fmt
            headers["Content-Type"] = "application/octet-stream"
            self._send(200, out, headers)

    return Handler


def serve(path: Path, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    engine = Engine(path)
    server = ThreadingHTTPServer((host, port), _handler(engine))
    server.daemon_threads = True

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"chdb_http serving {path} on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        with engine.lock:
            engine.conn.close()


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ChdbHttpServer:
    """The server as a child process: start, stop (the port then refuses), start again."""

    def __init__(self, path: Path, port: int, log: Path | None = None) -> None:
        self.path = path
        self.port = port
        self.log = log or path.parent / "chdb_http.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ChdbHttpServer:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.chdb_http",
                 "--path", str(self.path), "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"chdb_http exited with {code}; see {self.log}")
            try:
                with _DIRECT.open(f"{self.dsn}/ping", timeout=2) as resp:
                    if resp.read() == b"Ok.\n":
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"chdb_http did not answer on port {self.port} in {timeout_s:.0f}s")

    def stop(self, timeout_s: float = 30.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", type=Path, required=True, help="chdb data directory")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    serve(args.path, args.host, args.port)


if __name__ == "__main__":
    main()
