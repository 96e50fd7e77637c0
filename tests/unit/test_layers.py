"""The import contract: layers point one way, lazy imports inside functions included.

core (no project imports) <- ingest, detectors, alerting, storage <- processors (the stream)
and analysis (offline: compare, report, drift of files), which never import each other
<- llmpulse.
Within the middle layer only storage may import alerting, for the alert state and the
delivery record it stores.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "core",
    "ingest",
    "detectors",
    "storage",
    "alerting",
    "processors",
    "analysis",
    "llmpulse",
)
ALLOWED = {
    "core": set(),
    "ingest": {"core"},
    "detectors": {"core", "ingest"},
    "alerting": {"core"},
    "storage": {"core", "alerting"},
    "processors": {"core", "ingest", "detectors", "storage", "alerting"},
    "analysis": {"core", "ingest", "detectors", "storage", "alerting"},
    "llmpulse": {"core", "ingest", "detectors", "storage", "alerting", "processors", "analysis"},
}


def imports_of(package: str) -> dict[str, set[str]]:
    """Project packages each module of ``package`` imports, at any depth of its code."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = (names & set(PACKAGES)) - {package}
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    allowed = ALLOWED[package]
    upward = {m: sorted(names - allowed) for m, names in imports_of(package).items()}
    assert {m: names for m, names in upward.items() if names} == {}


def test_the_contract_sees_the_imports_it_judges() -> None:
    """A walk that found nothing would pass every layer; processors does import storage."""
    assert "storage" in imports_of("processors")["processors/handler.py"]
