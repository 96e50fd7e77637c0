"""Every query in docs/queries.md runs on the real engine with the current schema.

Runs in a child process: chdb allows one engine directory per process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.integration.conftest import run_script

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "queries.md"

SCRIPT = r"""
import json, sys
from storage.engine import Engine
from storage.migrations import migrate

queries = json.loads(sys.stdin.read())
failures = {}
with Engine(f"chdb://{sys.argv[1]}", "llmpulse") as engine:
    engine.call(migrate, engine.client, "llmpulse", ttl_days=30)
    for i, sql in enumerate(queries):
        try:
            engine.call(engine.client.query, sql)
        except Exception as exc:
            failures[i] = str(exc)[:500]
print(json.dumps(failures))
"""


def doc_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_page_has_its_ten_or_more_queries() -> None:
    assert len(doc_queries()) >= 10


def test_every_documented_query_runs(tmp_path: Path) -> None:
    queries = doc_queries()
    failures = run_script(SCRIPT, tmp_path / "chdb", stdin=json.dumps(queries))
    assert failures == {}, "\n\n".join(f"{queries[int(i)]}\n→ {e}" for i, e in failures.items())
