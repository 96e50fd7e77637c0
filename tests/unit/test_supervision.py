"""The supervision ``llmpulse up`` gives its broker and OTLP receiver
(llmpulse/supervision.py), on a real child process that only sleeps: started again when
it dies, retried while it does not start, and left stopped once stopped."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from core.errors import LlmpulseError
from llmpulse.supervision import SupervisedProcess

DEADLINE_S = 30.0


class Sleeper(SupervisedProcess):
    """A child that sleeps until it is ended; its first ``failures`` starts fail."""

    what = "the sleeper"
    thread_name = "llmpulse-sleeper"
    restart_first_s = 0.01
    restart_max_s = 0.05

    def __init__(self, tmp_path: Path, failures: int = 0) -> None:
        super().__init__(tmp_path / "sleeper.log")
        self.failures = failures
        self.starts = 0
        self.ended = 0

    def start(self) -> Sleeper:
        self.starts += 1
        if self.failures:
            self.failures -= 1
            raise LlmpulseError("not yet")
        command = [sys.executable, "-c", "import time; time.sleep(600)"]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        return self

    def _ended(self) -> None:
        self.ended += 1


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.05)


def test_a_child_that_dies_is_started_again_and_stopped_for_good(tmp_path: Path) -> None:
    child = Sleeper(tmp_path).start()
    child.supervise()
    (watcher,) = [t for t in threading.enumerate() if t.name == Sleeper.thread_name]
    first = child.process
    assert first is not None
    first.kill()
    until(lambda: child.process not in (None, first))
    second = child.process
    assert second is not None and second.poll() is None
    child.stop()
    watcher.join(DEADLINE_S)  # once it is gone, nothing can start the child again
    assert not watcher.is_alive() and second.poll() is not None
    assert (child.process, child.starts, child.ended) == (None, 2, 1)


def test_a_start_that_fails_is_tried_again_until_it_succeeds(tmp_path: Path) -> None:
    child = Sleeper(tmp_path).start()
    child.supervise()
    first = child.process
    assert first is not None
    child.failures = 3
    first.kill()
    until(lambda: child.process not in (None, first))
    assert child.starts == 1 + 3 + 1
    child.stop()


def test_a_child_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    child = Sleeper(tmp_path)
    ignoring = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print(1, flush=True); time.sleep(600)"
    )
    child.process = subprocess.Popen([sys.executable, "-c", ignoring], stdout=subprocess.PIPE)
    assert child.process.stdout is not None and child.process.stdout.readline() == b"1\n"
    process = child.process
    child.stop(timeout_s=0.5)
    process.stdout.close()  # the pipe, left open, is reported as unraisable by a later GC
    assert process.returncode == -9 and child.ended == 1
