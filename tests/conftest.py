"""Shared fixtures. Integration fixtures (broker, workers) live in integration/conftest.py."""

from __future__ import annotations

import os
import threading

import pytest

# Set by pytest itself, and by scikit-learn's first import (OpenMP settings it needs).
_NOT_OURS = {"PYTEST_CURRENT_TEST", "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK"}


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _NOT_OURS}


@pytest.fixture(autouse=True)
def _no_leaks():
    """Fail a test that leaves threads running or environment variables changed."""
    env = _env()
    threads = set(threading.enumerate())
    yield
    assert _env() == env, "test changed os.environ"
    left = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
    for t in left:
        t.join(timeout=5)
    alive = [t.name for t in left if t.is_alive() and not t.daemon]
    assert not alive, f"test left threads running: {alive}"
