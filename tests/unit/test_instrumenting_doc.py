"""docs/instrumenting.md against the code it describes: each library's snippet sets the
content-capture environment that the tested app sets for that library
(``tests/otlp_apps/app.py``, ``CONTENT_ENV``), and the field table names every attribute
the mapping reads, so a new attribute in ``ingest/otlp_mapping.py`` cannot go
undocumented. ``tests/integration/test_instrumenting_doc.py`` runs the snippets."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ingest import otlp_mapping
from tests.otlp_apps.app import CONTENT_ENV

DOC = Path(__file__).resolve().parents[2] / "docs" / "instrumenting.md"
SNIPPETS = ("genai", "openinference", "openllmetry", "rag-openinference", "rag-genai", "rag-answer")
# the page's snippet of each library -> the tested app's mode for it
TESTED_MODE = {
    "genai": "genai-spans",
    "openinference": "openinference",
    "openllmetry": "openllmetry",
}


def snippet(name: str) -> str:
    pattern = rf"<!-- snippet: {re.escape(name)} -->\n```python\n(.*?)```"
    found = re.findall(pattern, DOC.read_text(), re.S)
    assert len(found) == 1, f"snippet {name!r}: {len(found)} in {DOC.name}"
    return str(found[0])


def environment_set(code: str) -> dict[str, str]:
    """What ``os.environ.setdefault(NAME, VALUE)`` / ``os.environ[NAME] = VALUE`` set."""
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(code)):
        if (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) == "os.environ.setdefault"
            and all(isinstance(a, ast.Constant) for a in node.args)
        ):
            found[node.args[0].value] = node.args[1].value
        elif isinstance(node, ast.Assign) and ast.unparse(node.targets[0]).startswith(
            "os.environ["
        ):
            target = node.targets[0]
            assert isinstance(target, ast.Subscript) and isinstance(node.value, ast.Constant)
            found[ast.literal_eval(target.slice)] = node.value.value
    return found


@pytest.mark.parametrize("name", SNIPPETS)
def test_every_snippet_is_python_that_compiles(name: str) -> None:
    compile(snippet(name), f"{DOC.name}:{name}", "exec")


@pytest.mark.parametrize("name", list(TESTED_MODE))
def test_a_library_snippet_sets_the_content_capture_the_tested_app_sets(name: str) -> None:
    assert environment_set(snippet(name)) == CONTENT_ENV[TESTED_MODE[name]]


@pytest.mark.parametrize("name", list(TESTED_MODE))
def test_a_library_snippet_sends_to_the_receiver_of_llmpulse_up_once(name: str) -> None:
    # the integration test swaps exactly this address for its own server's
    assert snippet(name).count('"http://127.0.0.1:4318"') == 1


def test_the_environment_reader_sees_both_ways_of_setting_a_variable() -> None:
    code = 'import os\nos.environ.setdefault("A", "1")\nos.environ["B"] = "2"\n'
    assert environment_set(code) == {"A": "1", "B": "2"}


READ = {
    "app": otlp_mapping._APP,
    "environment": otlp_mapping._ENVIRONMENT,
    "prompt_version": otlp_mapping._PROMPT_VERSION,
    "prompt_id": otlp_mapping._PROMPT_ID,
    "variant": otlp_mapping._VARIANT,
    "model": otlp_mapping._MODEL,
    "provider": otlp_mapping._PROVIDER,
    "user_id": otlp_mapping._USER,
    "session_id": otlp_mapping._SESSION,
    "ttft": otlp_mapping._TTFT_S + otlp_mapping._FIRST_TOKEN_EVENTS,
    "total tokens": otlp_mapping._TOTAL_TOKENS,
    **{f"usage.{k}": v for k, v in otlp_mapping._TOKENS.items()},
}


@pytest.mark.parametrize("field", list(READ))
def test_the_field_table_names_every_attribute_the_mapping_reads(field: str) -> None:
    table = DOC.read_text().split("### Fields", 1)[1].split("### Content", 1)[0]
    missing = [name for name in READ[field] if f"`{name}`" not in table]
    assert missing == [], f"{field}: not in the field table of {DOC.name}"
