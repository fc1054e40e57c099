"""``forget``: erase a person's personal data, then compact the file so it leaves the disk.

In one transaction: an active person leaves (their pairs end), a ``forgotten`` event is
recorded (folding it blanks the read models' copies), the keys of the person and of
their pairs are deleted and the subjects remembered as erased, and every
``rmcore_forget`` plugin deletes what it kept (the email outbox, for instance). After
the commit the write-ahead log is checkpointed, the file is rebuilt with ``VACUUM``
(with ``secure_delete`` on) and the write-ahead log is truncated, so the old pages
holding the plain text are in no file any more.
"""

from __future__ import annotations

import sqlite3

from attrs import frozen

from rmcore.commands import DomainError, Forget, decide
from rmcore.engine import Engine, Outcome, command_fingerprint
from rmcore.plugins import call_each, known_plugin_names
from rmcore.queries import SqlState


@frozen
class Forgetting:
    """What ``forget`` did: its events (none for a repeat) and, if compaction did not
    finish, why."""

    outcome: Outcome
    not_compacted: str | None
    already_forgotten: bool = False


def forget(
    engine: Engine,
    program: str,
    person_id: str,
    *,
    actor: str,
    at: str,
    idempotency_key: str | None = None,
) -> Forgetting:
    """Erase ``person_id`` in ``program`` and compact the database file.

    Forgetting someone already forgotten records nothing, asks the plugins again to
    delete their copies and compacts again: how an operator finishes an erasure whose
    compaction another process blocked.
    """
    blocked = sorted(name for name in known_plugin_names() if engine.pm.is_blocked(name))
    if blocked:
        raise DomainError(
            f"forget needs every installed plugin, so that each deletes its copies of the "
            f"person; {', '.join(blocked)} is disabled"
        )
    command = Forget(person_id=person_id, at=at)
    engine.conn.execute("PRAGMA secure_delete = ON")  # deleted cells are zeroed, not freed
    with engine.unit_of_work(
        program,
        actor=actor,
        idempotency_key=idempotency_key,
        fingerprint=command_fingerprint([command]) if idempotency_key else None,
    ) as unit:
        state = SqlState(engine.conn, program)
        person = state.person(person_id)
        already = person is not None and person.status == "forgotten"
        if not (unit.duplicate or already):
            unit.record(at, decide(state, command))
            unit.flush()
        if unit.duplicate or already or unit.appended:
            engine.keyring.erase(program, person_id)
            pair_ids = sorted(pair.pair_id for pair in state.pairs_of(person_id))
            call_each(engine.pm, "rmcore_forget", conn=engine.conn, program=program,
                      person_id=person_id, pair_ids=pair_ids)  # fmt: skip
    # VACUUM cannot run inside a transaction: the file is compacted after the commit.
    outcome = Outcome(unit.earlier, duplicate=True) if unit.duplicate else Outcome(unit.appended)
    return Forgetting(outcome, compact(engine), already_forgotten=already)


COMPACT_WAIT_MS = 5_000


def compact(engine: Engine) -> str | None:
    """Checkpoint, ``VACUUM`` and truncate the write-ahead log; why that did not finish, or
    None when it did (the erasure itself is committed either way)."""
    conn = engine.conn
    (wait,) = conn.execute("PRAGMA busy_timeout").fetchone()
    conn.execute(f"PRAGMA busy_timeout = {COMPACT_WAIT_MS}")
    busy_reason = "another process kept the database busy; run it again when the database is idle"
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return busy_reason
        if name.startswith("SQLITE_CORRUPT") or not isinstance(exc, sqlite3.OperationalError):
            # VACUUM reads every page: it finds damage the erasure never touched
            return f"the file is damaged ({exc}); run it again once the file is repaired"
        # VACUUM writes a whole copy of the file first: a full disk, a size limit
        return f"SQLite could not write the compacted copy ({exc}); run it again once it can"
    finally:
        conn.execute(f"PRAGMA busy_timeout = {wait}")
    return busy_reason if busy else None
