"""Traffic for alerting tests: synthetic events of one prompt version, stamped now."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ingest.synthetic import synthetic_events
from tests.integration.conftest import Stack, publish

APP = "support-bot"


def with_rules(stack: Stack, rules: Path, text: str, env: dict[str, str]) -> Stack:
    """The stack's worker will run these rules, evaluated every 0.5 s, with ``env``."""
    rules.write_text(text)
    stack.extra_env.update({"LLMPULSE_RULES": str(rules), "LLMPULSE_ALERT_EVAL_S": "0.5", **env})
    return stack


def now_stamped(event: dict) -> bytes:
    """The event as JSON with ``ts`` set to now (rules look at recent events)."""
    event["ts"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(event).encode()


def traffic(
    stack: Stack, version: str, toxic: float, until: Callable[[], bool], timeout: float, tag: str,
    first_seed: int = 0,
) -> int:  # fmt: skip
    """Publish 10 events of ``version`` every 0.5 s, stamped now, until ``until()``.

    Event ids start with ``{tag}-`` so a test can count each phase's events. Batch i
    is seeded ``first_seed + i``: two phases with the same first seed publish the
    same answers.
    """
    deadline, i = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and not until():
        events = synthetic_events(
            10, seed=first_seed + i, prefix=f"{tag}-{version}-{i}", app=APP,
            prompt_version=version,
            toxic_share=toxic,
        )  # fmt: skip
        publish(stack.bootstrap, ((None, now_stamped(e)) for e in events))
        i += 1
        time.sleep(0.5)
    return i * 10
