"""One HTTP status classifier and one POST for every channel.

2xx is delivered; 5xx, 429 and a channel's extra codes are worth retrying; any
other 4xx is permanent (the request itself is wrong and will stay wrong). Timeouts
and refused connections are retryable. The ``reason`` is a short label that goes to
``alert_log`` and the logs; ``detail`` never includes the URL, which may be a secret.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import aiohttp

from alerting.notifiers.base import OK, PERMANENT, RETRY, Outcome

__all__ = ["classify", "post"]

USER_AGENT = "llmpulse-alerting/1"
MAX_DETAIL = 300


def classify(status: int, retry_on: Iterable[int] = ()) -> Outcome:
    if 200 <= status < 300:
        return Outcome(OK, "ok", status)
    if status == 429:
        return Outcome(RETRY, "rate_limited", status)
    if status >= 500 or status in set(retry_on):
        return Outcome(RETRY, "server_error", status)
    if 400 <= status < 500:
        return Outcome(PERMANENT, "client_error", status)
    return Outcome(PERMANENT, "unexpected_status", status)  # 1xx/3xx: redirects are not followed


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
    retry_on: Iterable[int] = (),
) -> Outcome:
    """POST ``body`` (JSON) once and classify what came back."""
    sent = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
    try:
        async with session.post(
            url,
            data=body,
            headers=sent,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as resp:
            text = (await resp.text(errors="replace"))[:MAX_DETAIL]
            outcome = classify(resp.status, retry_on)
            return Outcome(outcome.kind, outcome.reason, resp.status, text)
    except TimeoutError:
        return Outcome(RETRY, "timeout", None, f"no answer in {timeout_s:g}s")
    except aiohttp.ClientConnectionError as exc:
        return Outcome(RETRY, "connection", None, type(exc).__name__)
    except aiohttp.InvalidURL:
        return Outcome(PERMANENT, "invalid_url", None, "the receiver URL is not valid")
    except aiohttp.ClientError as exc:
        return Outcome(RETRY, "client", None, type(exc).__name__)
