"""Run the real worker with faults injected at its seams, for the reliability suite.

``python -m tests.reliability.faults worker ...`` is ``llmpulse worker`` with two
test-only hooks patched in before it starts; nothing in the product knows them:

- ``LLMPULSE_FAULT_STORAGE_FILE=PATH``: while PATH exists, every storage write
  (``Writer.insert``) raises ``ConnectionError``, as a dead ClickHouse would.
- ``LLMPULSE_FAULT_KILL_AT=SEAM[,SEAM]`` with ``LLMPULSE_FAULT_KILL_P=P`` (default
  0.05): at each pass through a named seam the process SIGKILLs itself with
  probability P, so a crash lands exactly between two steps of the commit order.
  Seams: ``before_store`` (scored, nothing written), ``after_store`` (rows written,
  summaries not produced, offsets not acked), ``before_notify`` (an alert message
  taken, no receiver called), ``after_notify`` (receivers called, not acked).
  ``LLMPULSE_FAULT_SEED`` makes the draws repeatable; ``LLMPULSE_FAULT_KILL_AFTER_S``
  arms the seams only that many seconds after the process started (default 0), so a
  chaos run can place a seam kill at a chosen point of a long run.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["install", "main"]

SEAMS = ("before_store", "after_store", "before_notify", "after_notify")


def _killer(
    seams: set[str], p: float, rng: random.Random, armed_at: float = 0.0
) -> Callable[[str], None]:
    def maybe_die(seam: str) -> None:
        if seam in seams and time.monotonic() >= armed_at and rng.random() < p:
            sys.stderr.write(f"FAULT: SIGKILL at {seam}\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    return maybe_die


def install(env: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Patch the seams named by the environment; no variable set, nothing patched."""
    from alerting.dispatch import Dispatcher
    from processors.handler import BatchHandler
    from storage.writer import Writer

    flag = env.get("LLMPULSE_FAULT_STORAGE_FILE")
    if flag:
        original_insert = Writer.insert
        path = Path(flag)

        def insert(self: Writer, *args: Any, **kwargs: Any) -> None:
            if path.exists():
                raise ConnectionError(f"injected storage outage ({path} exists)")
            original_insert(self, *args, **kwargs)

        Writer.insert = insert  # type: ignore[method-assign]

    names = {s for s in env.get("LLMPULSE_FAULT_KILL_AT", "").split(",") if s}
    unknown = names - set(SEAMS)
    if unknown:
        raise SystemExit(f"LLMPULSE_FAULT_KILL_AT: unknown seams {sorted(unknown)}; use {SEAMS}")
    if not names:
        return
    seed = env.get("LLMPULSE_FAULT_SEED")
    rng = random.Random(int(seed) if seed else None)
    armed_at = time.monotonic() + float(env.get("LLMPULSE_FAULT_KILL_AFTER_S", "0"))
    die = _killer(names, float(env.get("LLMPULSE_FAULT_KILL_P", "0.05")), rng, armed_at)

    original_store = BatchHandler._store

    async def store(self: BatchHandler, batch: Any) -> None:
        die("before_store")
        await original_store(self, batch)
        die("after_store")

    BatchHandler._store = store  # type: ignore[method-assign]

    original_dispatch = Dispatcher.dispatch

    async def dispatch(self: Dispatcher, *args: Any, **kwargs: Any) -> Any:
        die("before_notify")
        result = await original_dispatch(self, *args, **kwargs)
        die("after_notify")
        return result

    Dispatcher.dispatch = dispatch  # type: ignore[method-assign]


def main() -> None:
    install()
    from llmpulse.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
