"""Every error llmpulse raises on purpose has one root, and the CLI answers it in one line."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from pathlib import Path

from click.testing import CliRunner

from core.errors import LlmpulseError
from llmpulse.cli import main

PACKAGES = (
    "core",
    "analysis",
    "ingest",
    "detectors",
    "storage",
    "alerting",
    "processors",
    "llmpulse",
)


def _project_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in PACKAGES:
        package = importlib.import_module(name)
        modules = [name] + [m.name for m in pkgutil.walk_packages(package.__path__, f"{name}.")]
        for module_name in modules:
            module = importlib.import_module(module_name)
            for attr, value in vars(module).items():
                if (inspect.isclass(value) and issubclass(value, BaseException)
                        and value.__module__ == module_name):  # fmt: skip
                    found[f"{module_name}.{attr}"] = value
    return found


def test_every_error_class_of_the_project_derives_from_the_root() -> None:
    errors = _project_exceptions()
    assert len(errors) >= 22  # the walk found the modules, not an empty tree
    assert [name for name, cls in errors.items() if not issubclass(cls, LlmpulseError)] == []


def test_no_error_class_shadows_a_builtin() -> None:
    import builtins

    assert [n for n in _project_exceptions() if hasattr(builtins, n.rsplit(".", 1)[1])] == []


def test_a_bad_price_table_is_one_line_and_exit_1(tmp_path: Path, monkeypatch) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("models: nope\n")
    events = tmp_path / "events.jsonl"
    event = {"event_id": "a", "ts": "2026-01-01T00:00:00Z", "app": "x", "model": "gpt-4o-mini",
             "input": "hi", "output": "yo"}  # fmt: skip
    events.write_text(json.dumps(event) + "\n")
    monkeypatch.setenv("LLMPULSE_PRICES", str(prices))
    monkeypatch.setenv("LLMPULSE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(main, ["score", str(events)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {prices}: expected a mapping with a 'models' list"
    ]
    assert result.exc_info is not None and result.exc_info[0] is SystemExit
