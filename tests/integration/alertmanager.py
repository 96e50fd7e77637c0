"""A real Alertmanager on a free loopback port, for tests of what it accepts and shows.

The binary and its templates come from ``scripts/setup.sh`` (Debian's package, the
binary reading its templates from its working directory, hence ``cwd=SHARE``).
Clustering is off (empty ``--cluster.listen-address``): no gossip port, no peers.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from llmpulse.broker import free_port

__all__ = ["BINARY", "RealAlertmanager"]

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / ".venv" / "bin" / "alertmanager"
SHARE = ROOT / ".venv" / "share" / "alertmanager"

CONFIG = """\
global:
  resolve_timeout: 5m
route:
  receiver: "null"
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: "null"
"""


class RealAlertmanager:
    """``with RealAlertmanager() as am:`` starts one, waits until ready, kills it on exit."""

    def __init__(self, start_timeout_s: float = 30.0) -> None:
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RealAlertmanager:
        if not BINARY.exists() or not (SHARE / "default.tmpl").exists():
            raise RuntimeError(
                f"{BINARY} (or its templates in {SHARE}) is missing: run bash scripts/setup.sh"
            )
        self._dir = tempfile.TemporaryDirectory(prefix="llmpulse-alertmanager-")
        work = Path(self._dir.name)
        (work / "alertmanager.yml").write_text(CONFIG)
        self.port = free_port()
        self.log_path = work / "alertmanager.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(BINARY),
                    f"--config.file={work / 'alertmanager.yml'}",
                    f"--storage.path={work / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                ],
                cwd=SHARE, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"alertmanager exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"alertmanager not ready in {self.start_timeout_s:g}s:\n{self.log_tail()}"
        )

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def get(self, path: str) -> Any:
        """GET a JSON document of the API, e.g. ``/api/v2/alerts?active=true``."""
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as resp:
            return json.loads(resp.read())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
