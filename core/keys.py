"""The app|prompt_version key: one spelling for Kafka keys, drift state and alert owners.

The scored stream is keyed by it, and each worker evaluates the alerts of the keys
whose partition it holds; both sides must spell the key the same way, or an alert
would be evaluated by no worker, or by two.
"""

from __future__ import annotations

__all__ = ["version_key"]


def version_key(app: str, prompt_version: str | None) -> str:
    """``app|prompt_version``; a missing version is the empty string."""
    return f"{app}|{prompt_version or ''}"
