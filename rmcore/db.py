"""Opening the SQLite file: pragmas, owner-only permissions, schema migrations."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from sqlite_utils import Database, Migrations

from rmcore.projections import projection_migrations
from rmcore.store import log_migrations

CORE_MIGRATIONS: tuple[Migrations, ...] = (log_migrations, projection_migrations)
BUSY_TIMEOUT_MS = 30_000
CACHE_KIB = 64 * 1024  # page cache per connection; indexes on pair ids are hit at random


class DatabaseError(Exception):
    """The database file is missing, unreadable, read-only or not an rmcore database."""


def connect(path: str | os.PathLike, *, create: bool = False) -> sqlite3.Connection:
    """Open (or, with ``create``, create) the database with WAL and full sync."""
    path = Path(path)
    if str(path) != ":memory:":
        if not path.exists():
            if not create:
                raise DatabaseError(f"no database at {path}; create one with `rmcore init`")
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except FileExistsError:
                pass
            except OSError as exc:
                raise DatabaseError(f"cannot create {path}: {exc.strerror}") from exc
        elif path.is_dir():
            raise DatabaseError(f"{path} is a folder, not a database file")
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal" and str(path) != ":memory:":
            raise DatabaseError(f"cannot switch {path} to WAL mode (journal mode {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"cannot open {path}: {exc}") from exc
    return conn


def migrate(conn: sqlite3.Connection, extra: Iterable[Migrations] = ()) -> None:
    """Apply pending migrations of the core and of plugins, all in one write transaction."""
    sets = [*CORE_MIGRATIONS, *extra]
    db = Database(conn, execute_plugins=False)
    try:
        if not any(s.pending(db) for s in sets):
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for migration_set in sets:
                migration_set.apply(db)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"cannot prepare the database: {exc}") from exc


def is_initialised(conn: sqlite3.Connection) -> bool:
    """Whether the core tables exist."""
    db = Database(conn, execute_plugins=False)
    return not any(s.pending(db) for s in CORE_MIGRATIONS)
