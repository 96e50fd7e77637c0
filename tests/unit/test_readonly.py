"""The read-only gate in front of the SQL endpoint and `llmpulse sql`."""

from __future__ import annotations

import pytest

from storage.readonly import ReadOnlyViolation, check_read_only


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  select count() from llm_events FINAL;  ",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "-- why\nSHOW TABLES",
        "DESCRIBE llm_events",
        "EXPLAIN SELECT 1",
        "SELECT ';' AS semicolon",
        "(SELECT 1) UNION ALL (SELECT 2)",
    ],
)
def test_read_queries_pass(sql: str) -> None:
    assert check_read_only(sql)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DROP TABLE llm_events", "got DROP"),
        ("INSERT INTO t VALUES (1)", "got INSERT"),
        ("/* SELECT */ ALTER TABLE t DELETE WHERE 1", "got ALTER"),
        ("SELECT 1; DROP TABLE t", "one statement"),
        ("  ;  ", "empty query"),
        # readonly=1 does not stop INTO OUTFILE in the embedded engine: a file write.
        ("SELECT 1 INTO OUTFILE '/tmp/x'", "INTO OUTFILE"),
        ("select 1 into  outfile '/tmp/x' APPEND", "INTO OUTFILE"),
        ("SELECT 1 INTO/**/OUTFILE '/tmp/x'", "INTO OUTFILE"),
        ("SELECT 1 INTO -- c\n OUTFILE '/tmp/x'", "INTO OUTFILE"),
        ("SELECT '/*' INTO OUTFILE '/tmp/x' -- */'", "INTO OUTFILE"),
    ],
)
def test_writes_and_multiple_statements_are_refused(sql: str, message: str) -> None:
    with pytest.raises(ReadOnlyViolation, match=message):
        check_read_only(sql)
