"""``python -m tests.integration.otlp_faults worker ...``: ``llmpulse worker`` that SIGKILLs
itself the first time an OTLP round reaches the seam ``LLMPULSE_OTLP_KILL_AT`` names, so
a crash lands exactly between two steps of the OTLP commit order (processors/otlp.py):

- ``published``: the round's events are on ``llm.events`` (broker acked), its spans are
  not stored and its messages not acked;
- ``stored``: its spans are stored too, its messages still not acked.

Nothing in the product knows this hook; without the variable the worker is unchanged.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

SEAMS = ("published", "stored")


def _die(seam: str) -> None:
    sys.stderr.write(f"OTLP FAULT: SIGKILL at {seam}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(seam: str) -> None:
    from processors.otlp import OtlpHandler

    if seam not in SEAMS:
        raise SystemExit(f"LLMPULSE_OTLP_KILL_AT={seam!r}: use one of {SEAMS}")
    original = OtlpHandler._store

    async def store(self: OtlpHandler, *args: Any) -> None:
        if seam == "published":
            _die(seam)
        await original(self, *args)
        _die(seam)

    OtlpHandler._store = store  # type: ignore[method-assign]


def main() -> None:
    seam = os.environ.get("LLMPULSE_OTLP_KILL_AT", "")
    if seam:
        install(seam)
    from llmpulse.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
