"""Where a connection keeps its scratch data: in memory, so that copies of opened
personal fields (names, comments) never reach a file of the system's temporary folder."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress

# Scratch tables go to this attached in-memory schema rather than to TEMP: TEMP tables
# would follow the connection's temporary storage setting, and once a connection has
# one, that setting can no longer change inside a transaction (see sorts_in_files).
MEMORY_SCHEMA = "rmcore_memory"

_FILES, _MEMORY = 1, 2  # values of PRAGMA temp_store


@contextmanager
def scratch_in_memory(conn: sqlite3.Connection) -> Iterator[None]:
    """Keep the connection's scratch data in memory while the block runs: SQLite's
    temporary storage, and :data:`MEMORY_SCHEMA` attached for scratch tables.

    A statement that writes many rows keeps a journal of the pages it changes, which by
    default SQLite writes past 64 KiB to a file in the system's temporary folder; those
    pages hold read-model rows. Enter this before the transaction begins: SQLite decides
    where a transaction's statement journals go as it begins, and refuses to attach a
    schema inside one. Changing the setting deletes the connection's TEMP tables, so a
    connection holding some keeps its setting.
    """
    previous = conn.execute("PRAGMA temp_store").fetchone()[0]
    switch = previous != _MEMORY and not conn.in_transaction and not _has_temp_storage(conn)
    attach = not has_memory_schema(conn) and not conn.in_transaction
    try:
        if switch:
            conn.execute(f"PRAGMA temp_store = {_MEMORY}")
        if attach:
            attach_memory_schema(conn)
        yield
    finally:
        if not conn.in_transaction:
            with suppress(sqlite3.Error):
                if attach:
                    conn.execute(f"DETACH DATABASE {MEMORY_SCHEMA}")
            with suppress(sqlite3.Error):
                if switch:
                    conn.execute(f"PRAGMA temp_store = {int(previous)}")


@contextmanager
def sorts_in_files(conn: sqlite3.Connection, threads: int) -> Iterator[None]:
    """Let SQLite sort through temporary files, with up to ``threads`` helper threads,
    while the block runs: only for sorts whose keys hold no personal field, such as
    building an index on ids and dates.

    SQLite sorts in helper threads only with temporary storage in files. The statement
    journals of a transaction already begun stay where they were. A connection with TEMP
    tables cannot switch inside a transaction; it sorts in memory, in one thread.
    """
    previous = conn.execute("PRAGMA temp_store").fetchone()[0]
    previous_threads = conn.execute("PRAGMA threads").fetchone()[0]
    switched = False
    if previous == _MEMORY:
        with suppress(sqlite3.OperationalError):  # "cannot be changed within a transaction"
            conn.execute(f"PRAGMA temp_store = {_FILES}")
            switched = True
    try:
        if switched or previous != _MEMORY:
            conn.execute(f"PRAGMA threads = {int(threads)}")
        yield
    finally:
        with suppress(sqlite3.Error):
            conn.execute(f"PRAGMA threads = {int(previous_threads)}")
        with suppress(sqlite3.Error):
            if switched:
                conn.execute(f"PRAGMA temp_store = {int(previous)}")


def attach_memory_schema(conn: sqlite3.Connection) -> None:
    """Attach :data:`MEMORY_SCHEMA` for the rest of the connection's life (outside a
    transaction)."""
    conn.execute(f"ATTACH DATABASE ':memory:' AS {MEMORY_SCHEMA}")


def has_memory_schema(conn: sqlite3.Connection) -> bool:
    """Whether :data:`MEMORY_SCHEMA` is attached to ``conn``."""
    return any(row[1] == MEMORY_SCHEMA for row in conn.execute("PRAGMA database_list"))


def _has_temp_storage(conn: sqlite3.Connection) -> bool:
    """Whether SQLite opened the connection's TEMP schema (it lists it only then; reading
    ``temp.sqlite_master`` would open it)."""
    return any(row[1] == "temp" for row in conn.execute("PRAGMA database_list"))
