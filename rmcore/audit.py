"""Auditing the log: chain verification, full replay, and replay-versus-live checks."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

import attrs
from attrs import frozen

from rmcore import db
from rmcore.chain import check_chain
from rmcore.commands import DomainError
from rmcore.engine import Engine
from rmcore.memory import (
    MEMORY_SCHEMA,
    attach_memory_schema,
    has_memory_schema,
    scratch_in_memory,
)
from rmcore.personal import Keyring
from rmcore.projections import OpenedAhead, Projector, compare, rebuild
from rmcore.queries import Snapshot

Progress = Callable[[int], None] | None


@frozen
class Verdict:
    """The result of ``verify``: how many events were checked and the first problem."""

    checked: int
    head_position: int
    head_hash: str
    bad_position: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """No problem found."""
        return self.bad_position is None


def verify(
    engine: Engine,
    progress: Progress = None,
    workers: int | None = None,
    *,
    decode: bool = True,
    anchor: tuple[int, str] | None = None,
) -> Verdict:
    """Recompute the hash chain, check positions are gap-free, stream versions contiguous
    and (with ``decode``) every payload decodes with today's code; with ``anchor``
    ``(position, hash)``, check the log still extends that head."""
    head, _ = engine.store.head()
    path = None if engine.path is None else str(engine.path)
    checked, last_hash, problem = check_chain(
        engine.store,
        head,
        path=path,
        workers=workers,
        progress=progress,
        decode=engine.codec.check if decode else None,
    )
    if problem is not None:
        return Verdict(checked, checked, last_hash, problem.position, problem.reason)
    highest = engine.conn.execute(
        "SELECT seq FROM sqlite_sequence WHERE name = 'events'"
    ).fetchone()
    if highest and not isinstance(highest[0], int):
        reason = f"sqlite_sequence holds {highest[0]!r} as the log's last position"
        return Verdict(checked, head, last_hash, head + 1, reason)
    if highest and highest[0] > head:
        reason = f"positions {head + 1}-{highest[0]} were appended and later removed"
        return Verdict(checked, head, last_hash, head + 1, reason)
    checkpoint = engine.projector.checkpoint()
    if checkpoint > head:
        reason = f"the read models have seen position {checkpoint}, past the end of the log"
        return Verdict(checked, head, last_hash, head + 1, reason)
    if anchor is not None:
        reason = _anchor_problem(engine, head, *anchor)
        if reason:
            return Verdict(checked, head, last_hash, min(anchor[0], head + 1), reason)
    return Verdict(checked, head, last_hash)


def _anchor_problem(engine: Engine, head: int, position: int, digest: str) -> str | None:
    """Why the log no longer extends the anchored head, or None if it does."""
    if position > head:
        return f"the log ends at {head}, before the anchored position {position}"
    row = engine.conn.execute("SELECT hash FROM events WHERE position = ?", (position,)).fetchone()
    if row[0] != digest:
        return (
            f"position {position} no longer has the anchored hash: the log was changed "
            f"at or before position {position}"
        )
    return None


def parse_anchor(text: str) -> tuple[int, str]:
    """``"POS:HASH"`` -> ``(POS, HASH)``."""
    position, _, digest = text.partition(":")
    if not position.isdigit() or int(position) < 1 or len(digest) != 64:
        raise ValueError(f"{text!r} is not an anchor POS:HASH (a position and a 64-hex hash)")
    try:
        int(digest, 16)
    except ValueError:
        raise ValueError(f"{text!r} is not an anchor POS:HASH (the hash is not hex)") from None
    return int(position), digest.lower()


def event_count(engine: Engine) -> int:
    """The head position, which is the number of events in a gap-free log."""
    return engine.store.head()[0]


def replay(engine: Engine, progress: Progress = None) -> int:
    """Rebuild the live read models from the whole log, in one transaction."""
    until = engine.snapshot.occurred_until if engine.snapshot else None
    with scratch_in_memory(engine.conn), engine.store.transaction():
        return rebuild(
            engine.store,
            engine.projector,
            progress=progress,
            occurred_until=until,
            log_file=engine.path,
        )


def replay_check(engine: Engine, progress: Progress = None) -> list[str]:
    """Rebuild into a scratch database and list every difference from the live read models."""
    if engine.path is None or str(engine.path) == ":memory:":
        raise DomainError("a replay check needs the database file to read the log from")
    handle, scratch = tempfile.mkstemp(prefix="rmcore-replay-", suffix=".db")
    os.close(handle)
    os.unlink(scratch)
    try:
        scratch_conn = db.connect(scratch, create=True)
        try:
            scratch_conn.execute("PRAGMA synchronous = OFF")
            db.migrate(scratch_conn)
            # The scratch folds most of the log straight from the live file in SQL.
            scratch_conn.execute("ATTACH DATABASE ? AS live", (db.file_name(engine.path),))
            engine.conn.execute("ATTACH DATABASE ? AS replayed", (db.file_name(scratch),))
            try:
                # One read transaction: the log that is replayed and the live tables it is
                # compared with are the same moment, even while others keep appending.
                engine.conn.execute("BEGIN")
                try:
                    with scratch_in_memory(scratch_conn):
                        scratch_conn.execute("BEGIN")
                        rebuild(
                            engine.store,
                            # personal fields open with the live keys
                            Projector(scratch_conn, engine.registry, engine.keyring),
                            progress=progress,
                            occurred_until=(
                                engine.snapshot.occurred_until if engine.snapshot else None
                            ),
                            log="live",
                            log_file=engine.path,
                        )
                        scratch_conn.execute("COMMIT")
                    return compare(engine.conn, "replayed")
                finally:
                    engine.conn.execute("ROLLBACK")
            finally:
                engine.conn.execute("DETACH DATABASE replayed")
        finally:
            scratch_conn.close()
    finally:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(scratch + suffix):
                os.unlink(scratch + suffix)


def snapshot(
    engine: Engine,
    out: str | os.PathLike,
    *,
    as_of: str | None = None,
    known_at: str | None = None,
    progress: Progress = None,
) -> tuple[Snapshot, int]:
    """Write the program as it was to a new, read-only database file.

    ``as_of`` (an ``occurred_at``): what had happened in the world by then, late entries
    included. ``known_at`` (a ``recorded_at``): what had been recorded by then, i.e. what
    the operator knew. The copy holds the log (up to that moment for ``known_at``), so it
    verifies on its own; its read models answer ``people``, ``pairs`` and ``kpi``.
    Returns the snapshot description and how many events its read models hold.

    The file is built under a scratch name beside ``out`` and takes its name only once
    complete; a failed run deletes it, so it is written without a journal or syncing
    (the log copied, then folded as ``rmcore replay`` folds a live one) and switched to
    WAL mode, like every rmcore database, once complete.
    """
    if (as_of is None) == (known_at is None):
        raise DomainError("give exactly one of --as-of and --known-at")
    out = Path(out)
    if out.exists():
        raise DomainError(f"{out} already exists; point-in-time copies go to a new file")
    if engine.path is None:
        raise DomainError("a point-in-time copy needs a database file to copy from")
    last = engine.conn.execute(
        "SELECT position, recorded_at FROM events ORDER BY position DESC LIMIT 1"
    ).fetchone()
    full_head, last_recorded = last if last else (0, "")
    # A known-at moment before the last recording cuts the log: find where, then copy
    # the rows up to it. Otherwise the whole file is copied page by page, while a thread
    # makes sure no earlier event was recorded after the moment (imported events keep
    # their own recorded_at), which would cut the log after all.
    cut_first = known_at is not None and known_at < last_recorded
    head = _known_head(Path(engine.path), known_at) if cut_first else full_head
    building = _scratch_file(out)
    try:
        target = db.connect(building, create=True)
        try:
            _unjournaled(target)
            attach_memory_schema(target)  # for the kept keys and the values opened ahead
            info = Snapshot(
                "as-of" if as_of else "known-at", as_of or known_at, str(engine.path), head
            )
            ahead = None
            try:
                copied = None
                if not cut_first:
                    from concurrent.futures import ThreadPoolExecutor

                    with ThreadPoolExecutor(1) as pool:
                        finding = pool.submit(_known_head, Path(engine.path), known_at)
                        copied = _copy_file_pages(engine.conn, target)
                        head = finding.result() if known_at is not None else head
                if copied is not None and copied == head:
                    ahead = _opening_ahead(engine, target, info.occurred_until, head)
                    _keep_only_the_log(target)
                else:
                    if copied is not None:
                        _empty(target)
                    db.migrate(target)
                    _copy_log(target, Path(engine.path), head)
                info = attrs.evolve(info, head=head)
                copy = Engine(target, engine.pm, path=building)
                target.execute("BEGIN")
                # The copy's own log, as `rmcore replay` folds a live one.
                folded = rebuild(
                    copy.store,
                    copy.projector,
                    progress=progress,
                    occurred_until=info.occurred_until,
                    log_file=engine.path,  # the same log up to the copy's head, in WAL mode
                    ahead=ahead,
                )
            finally:
                if ahead is not None:
                    ahead.close()
            target.execute(
                "CREATE TABLE snapshot (kind TEXT NOT NULL, moment TEXT NOT NULL,"
                " source TEXT NOT NULL, head INTEGER NOT NULL)"
            )
            target.execute("INSERT INTO snapshot VALUES (?, ?, ?, ?)", attrs.astuple(info))
            target.execute("COMMIT")
            target.execute("PRAGMA journal_mode = WAL")
        finally:
            target.close()
        _publish(building, out)
    finally:
        _remove_database(building)
    return info, folded


def _opening_ahead(
    engine: Engine, target: sqlite3.Connection, occurred_until: str | None, head: int
) -> OpenedAhead:
    """A helper opening the first span's sealed values while a page copy is emptied, with
    the keys the copy holds (read from it, so none that a forget has deleted since)."""
    keys = Keyring(target)
    keys.preload()
    ahead = OpenedAhead(target, engine.path, keys, engine.projector.schemas, occurred_until, head)
    ahead.start()
    return ahead


def _known_head(path: Path, known_at: str | None) -> int:
    """The last position recorded by ``known_at`` (the whole log for None): the event
    before the first one recorded later. Reads with its own connection, in one snapshot."""
    conn = sqlite3.connect(
        db.file_name(path), timeout=db.BUSY_TIMEOUT_MS / 1000, isolation_level=None
    )
    try:
        conn.execute("BEGIN")
        head = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
        if known_at is None:
            return head
        later = conn.execute(
            "SELECT min(position) FROM events WHERE recorded_at > ?", (known_at,)
        ).fetchone()[0]
        return head if later is None else later - 1
    finally:
        conn.close()


def _copy_file_pages(source: sqlite3.Connection, target: sqlite3.Connection) -> int | None:
    """Copy the live file page by page into ``target``; the copy's last position, or
    None, with ``target`` emptied, when the file holds virtual tables (whose storage
    cannot be emptied as a table's)."""
    source.backup(target)
    _unjournaled(target)  # the pages came with the live file's WAL mode
    virtual = target.execute(
        "SELECT count(*) FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL TABLE%'"
    ).fetchone()[0]
    if virtual:
        _empty(target)
        return None
    return target.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]


def _empty(target: sqlite3.Connection) -> None:
    """Make ``target`` an empty database again."""
    with contextlib.closing(sqlite3.connect(":memory:")) as empty:
        empty.backup(target)


def _keep_only_the_log(target: sqlite3.Connection) -> None:
    """Empty every table of a page copy but the log and the keys, and zero every free
    page, so that no byte of a row deleted in the live file comes along."""
    tables = [
        name
        for (name,) in target.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND substr(name, 1, 7) != 'sqlite_'"
        )
    ]
    statistics = [  # ANALYZE's samples of index keys may hold names
        name
        for (name,) in target.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND substr(name, 1, 11) = 'sqlite_stat'"
        )
    ]
    # Triggers would fire on the rows deleted here (a guard would refuse them, another
    # could copy them elsewhere): they are set aside until the tables are empty.
    triggers = target.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name != 'events'"
    ).fetchall()
    # Deleted rows' bytes stay in a page's free space or on the free list: emptying a
    # table with secure_delete zeroes its pages, and the kept keys are written anew
    # (by way of tables in the memory schema, which never reach a file).
    target.execute("PRAGMA secure_delete = ON")
    if not has_memory_schema(target):
        attach_memory_schema(target)
    target.execute("BEGIN")
    for name, _ in triggers:
        target.execute(f"DROP TRIGGER main.{_quoted(name)}")
    _zero_free_pages(target)
    for table in _KEPT_TABLES:
        target.execute(f"CREATE TABLE {MEMORY_SCHEMA}.kept_{table} AS SELECT * FROM main.{table}")
    for table in tables:
        if table == "snapshot":  # a copy of a copy: its own description is written later
            target.execute("DROP TABLE main.snapshot")
        elif table not in _COPIED_AS_THEY_ARE:
            target.execute(f"DELETE FROM main.{_quoted(table)}")
    for table in statistics:
        target.execute(f"DELETE FROM main.{table}")
    for table in _KEPT_TABLES:
        target.execute(f"INSERT INTO main.{table} SELECT * FROM {MEMORY_SCHEMA}.kept_{table}")
        target.execute(f"DROP TABLE {MEMORY_SCHEMA}.kept_{table}")
    for _, sql in triggers:
        target.execute(sql)
    target.execute("COMMIT")


def _quoted(name: str) -> str:
    """An SQL identifier, quoted whatever it holds."""
    return '"' + name.replace('"', '""') + '"'


_KEPT_TABLES = ("subject_keys", "erased_subjects")
# The log, the schema's history and the read models' checkpoint row (which a fold resets).
_COPIED_AS_THEY_ARE = ("events", "_sqlite_migrations", "checkpoints")


def _zero_free_pages(conn: sqlite3.Connection) -> None:
    """Overwrite every page on the free list with zeros (with secure_delete on): blobs of
    zeros larger than the free list take all its pages, and dropping them frees them
    zeroed."""
    remaining = (
        conn.execute("PRAGMA main.freelist_count").fetchone()[0]
        * conn.execute("PRAGMA main.page_size").fetchone()[0]
    )
    if not remaining:
        return
    conn.execute("CREATE TABLE main.free_pages_zeroed (filler BLOB)")
    while remaining > 0:
        size = min(remaining, _ZEROS_PER_ROW)
        conn.execute("INSERT INTO main.free_pages_zeroed VALUES (zeroblob(?))", (size,))
        remaining -= size
    conn.execute("DROP TABLE main.free_pages_zeroed")


_ZEROS_PER_ROW = 64 * 1024 * 1024  # well below SQLite's largest blob


def _copy_log(target: sqlite3.Connection, source: Path, head: int) -> None:
    """Copy the log up to ``head`` and the keys (of people not forgotten by now) into
    ``target``: the copy reads names and comments like the live file does, so it is
    personal data until it is deleted."""
    target.execute("ATTACH DATABASE ? AS source", (db.file_name(source),))
    target.execute("BEGIN")
    target.execute(
        "INSERT INTO main.events SELECT * FROM source.events WHERE position <= ?", (head,)
    )
    target.execute("INSERT INTO main.subject_keys SELECT * FROM source.subject_keys")
    # Who was forgotten since reads as erased in the copy too, not as a key never held.
    target.execute("INSERT INTO main.erased_subjects SELECT * FROM source.erased_subjects")
    target.execute("COMMIT")
    target.execute("DETACH DATABASE source")


def _scratch_file(out: Path) -> Path:
    """A new, empty, owner-only file beside ``out``, to build it in."""
    try:
        handle, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    except OSError as exc:
        raise db.DatabaseError(f"cannot create {out}: {exc.strerror}") from exc
    os.close(handle)
    return Path(name)


def _remove_database(path: Path) -> None:
    """Delete a database file and whatever journal files SQLite left beside it."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def _unjournaled(conn: sqlite3.Connection) -> None:
    """No journal and no syncing: for a file that is deleted if it is not completed.
    Temporary storage in memory, as for every rebuild: the copy holds opened values."""
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA temp_store = MEMORY")


def _publish(building: Path, out: Path) -> None:
    """Give the completed file its name, never replacing a file that appeared meanwhile."""
    exists = DomainError(f"{out} already exists; point-in-time copies go to a new file")
    try:
        os.link(building, out)
    except FileExistsError:
        raise exists from None
    except OSError:  # a file system without hard links
        if out.exists():
            raise exists from None
        os.replace(building, out)
