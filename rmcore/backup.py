"""Online backups through SQLite's backup API, safe while others keep writing."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from rmcore import db
from rmcore.commands import DomainError
from rmcore.engine import Engine
from rmcore.output import check_new_target, publish, remove_scratch, scratch_file

PAGES_PER_STEP = 1024
EXISTS_HINT = "back up to a new file"


def backup(
    engine: Engine, out: str | os.PathLike, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Copy the whole database (log, read models, keys) to ``out``, a new owner-only file.

    The copy is a consistent snapshot: SQLite restarts the copy of pages a concurrent
    writer changed, so writers never wait for the backup and the backup never sees half
    of a command.
    """
    out = check_new_target(out, EXISTS_HINT)
    fd, scratch = scratch_file(out)  # written under a temporary name, named when complete
    os.close(fd)
    try:
        target = sqlite3.connect(db.file_name(scratch))
        try:
            engine.conn.backup(
                target,
                pages=PAGES_PER_STEP,
                progress=(lambda status, remaining, total: progress(total - remaining, total))
                if progress
                else None,
            )
            target.execute("PRAGMA journal_mode = WAL")
        finally:
            target.close()
        publish(scratch, out, EXISTS_HINT)
    except BaseException as exc:
        remove_scratch(scratch)
        if isinstance(exc, sqlite3.OperationalError):
            raise DomainError(f"the backup to {out} failed: {exc}") from None
        raise
    return out
