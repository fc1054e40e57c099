"""Where a connection keeps its scratch data: journals in memory, index sorts in files."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from conftest import temporary_files

from rmcore.memory import (
    MEMORY_SCHEMA,
    has_memory_schema,
    scratch_in_memory,
    sorts_in_files,
)

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="needs /proc to see open files"
)

ROWS = 4_000  # 1.2 MB of text: well past the 64 KiB a statement journal keeps in memory


@pytest.fixture
def conn(tmp_path: Path):
    """A WAL database whose ``notes`` table was filled and emptied once, so that the next
    inserts reuse pages holding old rows: what a statement journal copies."""
    conn = sqlite3.connect(tmp_path / "scratch.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE source (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
    rows = [(n, f"A private note, number {n}. " * 10) for n in range(ROWS)]
    conn.executemany("INSERT INTO source VALUES (?, ?)", rows)
    conn.execute("INSERT INTO notes SELECT * FROM source")
    yield conn
    conn.close()


def _refill_notes(conn: sqlite3.Connection) -> list[str]:
    """Empty and refill ``notes`` in two statements that call a function (which makes
    SQLite keep a statement journal); the temporary files open before the end."""
    conn.execute("DELETE FROM notes")
    conn.execute(f"INSERT INTO notes SELECT id, upper(text) FROM source WHERE id < {ROWS // 2}")
    conn.execute(f"INSERT INTO notes SELECT id, upper(text) FROM source WHERE id >= {ROWS // 2}")
    return temporary_files()


def test_without_scratch_in_memory_a_statement_journal_reaches_a_file(conn):
    """The hazard the rest of this file guards against, on this SQLite."""
    conn.execute("BEGIN")
    assert _refill_notes(conn) != []
    conn.execute("ROLLBACK")


def test_scratch_in_memory_keeps_statement_journals_and_scratch_tables_in_memory(conn):
    """Journals stay in memory, and a table in the memory schema never touches a file;
    afterwards the connection is as it was."""
    with scratch_in_memory(conn):
        assert has_memory_schema(conn)
        conn.execute("BEGIN")
        conn.execute(f"CREATE TABLE {MEMORY_SCHEMA}.kept AS SELECT * FROM source")
        conn.execute(f"DELETE FROM {MEMORY_SCHEMA}.kept")
        conn.execute(f"INSERT INTO {MEMORY_SCHEMA}.kept SELECT * FROM source")
        assert _refill_notes(conn) == []
        conn.execute("COMMIT")
    assert not has_memory_schema(conn)
    assert conn.execute("PRAGMA temp_store").fetchone()[0] == 0


def test_index_sorts_go_to_files_while_the_journals_stay_in_memory(conn):
    """Inside a transaction begun with scratch in memory, sorts_in_files lets SQLite sort
    through files in threads, yet statements after the switch still journal in memory;
    both settings come back when the block ends."""
    with scratch_in_memory(conn):
        conn.execute("BEGIN")
        conn.execute("DELETE FROM notes")  # the write transaction begins in memory
        with sorts_in_files(conn, threads=2):
            assert conn.execute("PRAGMA temp_store").fetchone()[0] == 1
            assert conn.execute("PRAGMA threads").fetchone()[0] == 2
            conn.execute("CREATE INDEX notes_text ON notes (text)")
            assert _refill_notes(conn) == []
        assert conn.execute("PRAGMA temp_store").fetchone()[0] == 2
        assert conn.execute("PRAGMA threads").fetchone()[0] == 0
        conn.execute("COMMIT")
    assert conn.execute("SELECT count(*) FROM notes").fetchone()[0] == ROWS


def test_a_connection_with_temp_tables_sorts_in_memory_and_keeps_its_tables(conn):
    """SQLite refuses to change the setting inside a transaction once TEMP tables exist;
    the sort then stays in memory, in one thread, and the tables are untouched."""
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("CREATE TEMP TABLE mine AS SELECT 1 AS one")
    conn.execute("BEGIN")
    with sorts_in_files(conn, threads=2):
        assert conn.execute("PRAGMA temp_store").fetchone()[0] == 2
        assert conn.execute("PRAGMA threads").fetchone()[0] == 0
        conn.execute("CREATE INDEX notes_text ON notes (text)")
    conn.execute("COMMIT")
    assert conn.execute("SELECT one FROM temp.mine").fetchone() == (1,)


def test_scratch_in_memory_leaves_a_connection_with_temp_tables_as_it_is(conn):
    """Changing the setting would delete the connection's TEMP tables."""
    conn.execute("CREATE TEMP TABLE mine AS SELECT 1 AS one")
    with scratch_in_memory(conn):
        assert conn.execute("PRAGMA temp_store").fetchone()[0] == 0
    assert conn.execute("SELECT one FROM temp.mine").fetchone() == (1,)
