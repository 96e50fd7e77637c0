"""Capture what the instrumentation libraries really send: run the app of each mode
against the OpenAI stand-in and a tiny OTLP/HTTP server that records every request body,
and write the bodies to ``tests/fixtures/otlp`` (``<capture>-traces-N.pb``,
``<capture>-logs-N.pb``, protobuf as sent, N counting from 1) with ``captures.json``,
which says how each was made and which trace ids the app reported.

    .venv/bin/python -m tests.otlp_apps.capture [--out tests/fixtures/otlp]

Span and trace ids, timestamps and durations differ from run to run; texts, token
counts and models do not (the stand-in derives them from the request).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tests.otlp_apps.standin import Standin

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "otlp"

# name -> the app's arguments after --library/--otlp/--openai/--service
CAPTURES: dict[str, tuple[str, list[str]]] = {
    "genai-spans": ("genai-spans", ["--calls", "2"]),
    "genai-spans-stream": ("genai-spans", ["--stream"]),
    "genai-spans-rag": ("genai-spans", ["--rag"]),
    "genai-spans-error": ("genai-spans", ["--model", "missing-model"]),
    "genai-logs": ("genai-logs", ["--calls", "2"]),
    "genai-logs-stream": ("genai-logs", ["--stream"]),
    "genai-logs-rag": ("genai-logs", ["--rag"]),
    "openinference": ("openinference", ["--calls", "2", "--prompt-version", "v3"]),
    "openinference-stream": ("openinference", ["--stream"]),
    "openinference-rag": ("openinference", ["--rag"]),
    "openllmetry": ("openllmetry", ["--calls", "2"]),
    "openllmetry-stream": ("openllmetry", ["--stream"]),
    "openllmetry-rag": ("openllmetry", ["--rag"]),
    "openllmetry-events": ("openllmetry-events", ["--calls", "2"]),
}


# the packages whose output the fixtures are; their versions go into captures.json
PACKAGES = (
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-util-genai",
    "openinference-instrumentation-openai",
    "opentelemetry-instrumentation-openai",
    "openai",
)


@dataclass
class _Sink:
    bodies: dict[str, list[bytes]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _server(sink: _Sink) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            with sink.lock:
                sink.bodies.setdefault(self.path, []).append(body)
            # an empty Export*ServiceResponse: everything accepted
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


def app_command(library: str, otlp: str, openai: str, service: str, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "tests.otlp_apps.app", "--library", library, "--otlp", otlp,
        "--openai", openai, "--service", service, *extra,
    ]  # fmt: skip


def app_env() -> dict[str, str]:
    """The parent's environment without OpenTelemetry or Traceloop settings, so each app
    runs with the content settings of its own mode."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "TRACELOOP_", "OPENINFERENCE_"))
    }


def capture(name: str, library: str, extra: list[str], out: Path) -> dict[str, Any]:
    sink = _Sink()
    server = _server(sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with Standin() as standin:
            otlp = f"http://127.0.0.1:{server.server_address[1]}"
            command = app_command(library, otlp, standin.base_url, f"{name}-app", extra)
            done = subprocess.run(
                command, cwd=ROOT, env=app_env(), capture_output=True, text=True, timeout=120
            )
        if done.returncode != 0:
            raise SystemExit(f"{name}: the app failed:\n{done.stderr}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        server.shutdown()
        server.server_close()
    files = []
    for path, kind in (("/v1/traces", "traces"), ("/v1/logs", "logs")):
        for n, body in enumerate(sink.bodies.get(path, []), start=1):
            target = out / f"{name}-{kind}-{n}.pb"
            target.write_bytes(body)
            files.append(target.name)
    args = [
        "--library", library, "--otlp", "http://127.0.0.1:PORT",
        "--openai", "http://127.0.0.1:PORT/v1", "--service", f"{name}-app", *extra,
    ]  # fmt: skip
    return {"app_args": args, "report": report, "files": files}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.otlp_apps.capture")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", nargs="*", default=None, help="capture names (default all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "captures.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for name, (library, extra) in CAPTURES.items():
        if args.only and name not in args.only:
            continue
        for old in args.out.glob(f"{name}-*.pb"):
            if old.name.rsplit("-", 2)[0] == name:
                old.unlink()
        manifest[name] = capture(name, library, extra, args.out)
        print(name, manifest[name]["files"], file=sys.stderr)
    manifest["versions"] = {name: version(name) for name in PACKAGES}
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")


if __name__ == "__main__":
    main()
