"""The demo's stand-ins for the outside world: a deploy service, PagerDuty, Slack
(real HTTP servers on 127.0.0.1) and the support bot's traffic (a real producer).

Kept apart from the narration in ``llmpulse.demo`` so each side stays small.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from alerting.signing import SignatureError, verify
from ingest.producer import EventProducer
from ingest.synthetic import synthetic_events
from llmpulse.broker import free_port

__all__ = ["APP", "PROFILES", "Call", "Receivers", "Traffic"]

APP = "support-bot"
# What each prompt version's answers look like. v7 is the bad deploy: rude answers,
# figures that contradict the retrieved context, and questions about a new topic.
PROFILES: dict[str, dict[str, float]] = {
    "v6": {"toxic_share": 0.0, "wrong_share": 0.1, "new_topic_share": 0.0},
    "v7": {"toxic_share": 0.35, "wrong_share": 0.8, "new_topic_share": 0.3},
}
FEEDBACK_SHARE = 0.3  # calls whose user clicks thumbs up or down
THUMBS_DOWN = {"v6": 0.1, "v7": 0.6}


@dataclass
class Call:
    path: str
    body: dict[str, Any]
    at: float
    verified: str = ""  # rollback calls: "ok" or the signature error


@dataclass
class Receivers:
    """Local receivers; every call lands in ``calls`` for the narrator."""

    secret: str
    port: int = field(default_factory=free_port)
    calls: queue.Queue[Call] = field(default_factory=queue.Queue)
    rollbacks: list[Call] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Receivers:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                call = Call(self.path, json.loads(raw or b"{}"), time.time())
                status = 202 if self.path == "/pagerduty" else 200
                if self.path == "/rollback":
                    try:
                        verify(owner.secret, dict(self.headers), raw, now=time.time())
                        call.verified = "ok"
                        keys = {c.body.get("idempotency_key") for c in owner.rollbacks}
                        if call.body.get("idempotency_key") not in keys:  # a retry: done once
                            owner.rollbacks.append(call)
                    except SignatureError as exc:
                        call.verified, status = exc.reason, 401
                owner.calls.put(call)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Traffic:
    """The bot's LLM calls: ``rate`` events/s of the live version, stamped now."""

    def __init__(self, bootstrap: str, rate: int) -> None:
        self.bootstrap = bootstrap
        self.rate = rate
        self.version = "v6"
        self.sent = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="demo-traffic", daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # surfaced by the narrator
            self.error = exc

    async def _run(self) -> None:
        rng = random.Random(7)
        async with (
            EventProducer(self.bootstrap, idempotent=False) as producer,
            EventProducer(self.bootstrap, "llm.feedback", idempotent=False) as feedback,
        ):
            streams: dict[str, Iterator[dict]] = {}
            while not self._stop.is_set():
                started = time.monotonic()
                version = self.version
                if version not in streams:
                    # One stream per version: re-seeding every tick makes batches that
                    # are not independent, and the drift test rightly notices.
                    streams[version] = synthetic_events(
                        10**9, seed=len(streams), prefix=f"demo-{version}", app=APP,
                        prompt_version=version, **PROFILES[version],
                    )  # fmt: skip
                events = itertools.islice(streams[version], max(1, self.rate // 2))
                for event in events:
                    event["ts"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                    event["environment"] = "prod"
                    if version == "v6":  # an A/A split: llmpulse compare --by variant
                        event["variant"] = rng.choice("ab")
                    key = event["event_id"].encode()
                    await producer.send_raw(key, json.dumps(event).encode())
                    self.sent += 1
                    if rng.random() < FEEDBACK_SHARE:
                        down = rng.random() < THUMBS_DOWN[version]
                        verdict = {"event_id": event["event_id"], "ts": event["ts"],
                                   "score": -1 if down else 1, "source": "thumbs"}  # fmt: skip
                        await feedback.send_raw(key, json.dumps(verdict).encode())
                await producer.flush()
                await feedback.flush()
                await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - started)))
