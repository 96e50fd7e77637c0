"""Child processes that ``llmpulse up`` keeps running: the embedded broker and the OTLP
receiver. Each is started again whenever it exits on its own, until it is stopped, so
one crash does not end the stack; the rules of that loop live here once."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from pathlib import Path

from core.errors import LlmpulseError
from core.retry import Backoff

__all__ = ["SupervisedProcess"]

log = logging.getLogger(__name__)


class SupervisedProcess:
    """A child process with :meth:`supervise` and :meth:`stop`.

    A subclass gives :meth:`start`, which runs the child (``self.process``) and returns
    once it serves, or raises an :class:`LlmpulseError`; a failed start is tried again
    with backoff. ``what`` and ``log_path`` name the child in the log, ``lost`` says
    what a restart loses; :meth:`_ended` cleans up after the child.
    """

    what = "the child process"
    thread_name = "llmpulse-child"
    lost = ""  # e.g. ", empty: ...": what the log line adds about the restart
    stop_timeout_s = 10.0  # SIGTERM, then SIGKILL after this long
    restart_first_s = 1.0  # backoff between failed starts
    restart_max_s = 30.0

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._supervised = False

    def start(self) -> SupervisedProcess:
        raise NotImplementedError

    def supervise(self) -> None:
        """Start the child again whenever it exits on its own, until :meth:`stop`."""
        self._supervised = True
        threading.Thread(target=self._watch, name=self.thread_name, daemon=True).start()

    def _watch(self) -> None:
        while self._supervised and (proc := self.process) is not None:
            code = proc.wait()
            if not self._supervised or self.process is not proc:
                return  # stopped on purpose
            log.warning(
                "%s exited with code %s; starting it again%s (see %s)",
                self.what, code, self.lost, self.log_path,
            )  # fmt: skip
            delay = Backoff(first_s=self.restart_first_s, max_s=self.restart_max_s).delays()
            while self._supervised:
                try:
                    self.start()
                except LlmpulseError as exc:
                    log.error("%s did not start again, retrying: %s", self.what, exc)
                    time.sleep(delay())
                    continue
                if not self._supervised:  # stop() came while it was starting
                    self._terminate()
                break

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop supervising, then end the child: SIGTERM (it finishes what it is doing),
        SIGKILL if it is still there after ``timeout_s``."""
        self._supervised = False
        self._terminate(timeout_s)

    def _terminate(self, timeout_s: float | None = None) -> None:
        timeout_s = self.stop_timeout_s if timeout_s is None else timeout_s
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        self._ended()

    def _ended(self) -> None:
        """After the child this object started is gone: a subclass's cleanup."""
