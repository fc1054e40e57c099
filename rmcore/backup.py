"""Online backups through SQLite's backup API, safe while others keep writing."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from rmcore import db
from rmcore.commands import DomainError
from rmcore.engine import Engine

PAGES_PER_STEP = 1024


def backup(
    engine: Engine, out: str | os.PathLike, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Copy the whole database (log, read models, keys) to ``out``, a new owner-only file.

    The copy is a consistent snapshot: SQLite restarts the copy of pages a concurrent
    writer changed, so writers never wait for the backup and the backup never sees half
    of a command.
    """
    out = Path(out)
    if out.exists():
        raise DomainError(f"{out} already exists; back up to a new file")
    os.close(os.open(out, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    target = sqlite3.connect(db.file_name(out))
    try:
        engine.conn.backup(
            target,
            pages=PAGES_PER_STEP,
            progress=(lambda status, remaining, total: progress(total - remaining, total))
            if progress
            else None,
        )
        target.execute("PRAGMA journal_mode = WAL")
    except BaseException:
        target.close()
        out.unlink(missing_ok=True)
        raise
    target.close()
    return out
