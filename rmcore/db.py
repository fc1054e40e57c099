"""Opening the SQLite file: pragmas, owner-only permissions, schema migrations."""

from __future__ import annotations

import os
import sqlite3
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rmcore.delivery import DELIVERY_MIGRATIONS
from rmcore.personal import KEY_MIGRATIONS
from rmcore.projections import PROJECTION_MIGRATIONS
from rmcore.store import LOG_MIGRATIONS

MigrationSteps = Sequence[tuple[str, Callable[[Any], None]]]
# Named sets of ordered schema steps, applied with sqlite-utils' Migrations. Plugins that
# own tables pass their own sets to migrate().
CORE_MIGRATIONS: dict[str, MigrationSteps] = {
    "rmcore.log": LOG_MIGRATIONS,
    "rmcore.projections": PROJECTION_MIGRATIONS,
    "rmcore.delivery": DELIVERY_MIGRATIONS,
    "rmcore.keys": KEY_MIGRATIONS,
}
BUSY_TIMEOUT_MS = 30_000
CACHE_KIB = 64 * 1024  # page cache per connection; indexes on pair ids are hit at random


class DatabaseError(Exception):
    """The database file is missing, unreadable, read-only or not an rmcore database."""


MIN_SQLITE = (3, 38, 0)  # the read models use the JSON operators -> and ->>


def file_name(path: str | os.PathLike) -> str:
    """``path`` as SQLite should be given it: absolute, so that a relative name such as
    ``file:x.db`` is never read as a URI (Python's SQLite is often built to read them)."""
    return str(path) if str(path) == ":memory:" else os.path.abspath(path)


def connect(path: str | os.PathLike, *, create: bool = False) -> sqlite3.Connection:
    """Open (or, with ``create``, create) the database with WAL and full sync."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise DatabaseError(
            f"rmcore needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; this Python "
            f"has {sqlite3.sqlite_version}"
        )
    path = Path(path)
    if str(path) != ":memory:":
        try:
            exists, is_dir = path.exists(), path.is_dir()
        except OSError as exc:  # e.g. a folder on the way that this user may not enter
            raise DatabaseError(f"cannot open {path}: {exc.strerror}") from exc
        if not exists:
            if not create:
                raise DatabaseError(f"no database at {path}; create one with `rmcore init`")
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except FileExistsError:
                pass
            except OSError as exc:
                raise DatabaseError(f"cannot create {path}: {exc.strerror}") from exc
        elif is_dir:
            raise DatabaseError(f"{path} is a folder, not a database file")
    try:
        conn = sqlite3.connect(
            file_name(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
        )
    except sqlite3.Error as exc:
        raise open_error(path, exc) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if str(path) != ":memory:":
            check_is_rmcore(conn, path, creating=create)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal" and str(path) != ":memory:":
            raise DatabaseError(f"cannot switch {path} to WAL mode (journal mode {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise open_error(path, exc) from exc
    except DatabaseError:
        conn.close()
        raise
    return conn


def open_error(path: Path, exc: sqlite3.Error) -> DatabaseError:
    """SQLite's reason for failing to open ``path``, with what it means for the operator."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name == "SQLITE_READONLY_DIRECTORY":
        hint = (
            f"this user may not create files in {path.parent}, and SQLite needs "
            f"{path.name}-wal and {path.name}-shm beside the database"
        )
    elif name.startswith("SQLITE_READONLY"):
        hint = "the file is read-only for this user"
    elif name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
        hint = "check that this user may read and write the file and its folder"
    elif name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB":
        hint = "the file is damaged or not an rmcore database; restore it from a backup"
    elif name == "SQLITE_FULL":
        hint = "the disk is full"
    elif name.startswith("SQLITE_IOERR"):
        hint = "the operating system could not read or write the file"
    else:
        hint = ""
    return DatabaseError(f"cannot open {path}: {exc}" + (f" ({hint})" if hint else ""))


def check_is_rmcore(conn: sqlite3.Connection, path: str | os.PathLike, *, creating: bool) -> None:
    """Refuse a SQLite file that is not an rmcore database (``init`` may fill an empty one)."""
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise open_error(Path(path), exc) from exc
    if "events" in tables:
        return
    if tables - {"sqlite_sequence"}:
        raise DatabaseError(
            f"{path} is a SQLite database of something else; rmcore needs a file of its own"
        )
    if not creating:
        raise DatabaseError(f"{path} is not an rmcore database yet; create it with `rmcore init`")
    try:
        os.chmod(path, 0o600)  # an empty file becoming the log: owner-only, like a new one
    except OSError as exc:
        raise DatabaseError(f"cannot make {path} owner-only: {exc.strerror}") from exc


def _fingerprint(sets: Mapping[str, MigrationSteps]) -> int:
    """A checksum of every set's step names: stored as ``PRAGMA user_version`` once applied."""
    names = "\n".join(f"{name}:{step}" for name, steps in sets.items() for step, _ in steps)
    return zlib.crc32(names.encode()) & 0x7FFFFFFF


def migrate(conn: sqlite3.Connection, extra: Mapping[str, MigrationSteps] | None = None) -> None:
    """Apply pending schema steps of the core (and of plugins) in one write transaction.

    ``PRAGMA user_version`` records how many steps are applied, so an up-to-date database
    is recognised without loading sqlite-utils (which keeps every command's start quick).
    """
    sets = {**CORE_MIGRATIONS, **(extra or {})}
    expected = _fingerprint(sets)
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] == expected:
            return
        from sqlite_utils import Database, Migrations

        db = Database(conn, execute_plugins=False)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for name, steps in sets.items():
                migrations = Migrations(name)
                for step_name, step in steps:
                    migrations(name=step_name)(step)
                migrations.apply(db)
            conn.execute(f"PRAGMA user_version = {expected}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"cannot prepare the database: {exc}") from exc
