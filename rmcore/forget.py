"""``forget``: erase a person's personal data, then compact the file so it leaves the disk.

In one transaction: an active person leaves (their pairs end), a ``forgotten`` event is
recorded, and applying it deletes the person's key and their pairs' keys and blanks
the read models' copies; every ``rmcore_forget`` plugin deletes what it kept (the email
outbox, for instance). After the commit the write-ahead log is checkpointed, the file is
rebuilt with ``VACUUM`` (with ``secure_delete`` on), and the write-ahead log is
truncated, so the old pages holding the plain text are no longer in any file.
"""

from __future__ import annotations

import sqlite3

from attrs import frozen

from rmcore.commands import DomainError, Forget, decide
from rmcore.engine import Engine, Outcome, command_fingerprint
from rmcore.plugins import call_each
from rmcore.queries import SqlState


@frozen
class Forgetting:
    """What ``forget`` did: its events (none for a repeat) and whether compaction finished."""

    outcome: Outcome
    compacted: bool
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

    Forgetting someone already forgotten records nothing and compacts again, which is
    how an operator finishes an erasure whose compaction another process blocked.
    """
    command = Forget(person_id=person_id, at=at)
    engine.conn.execute("PRAGMA secure_delete = ON")
    with engine.unit_of_work(
        program,
        actor=actor,
        idempotency_key=idempotency_key,
        fingerprint=command_fingerprint([command]) if idempotency_key else None,
    ) as unit:
        already = False
        if not unit.duplicate:
            state = SqlState(engine.conn, program)
            person = state.person(person_id)
            already = person is not None and person.status == "forgotten"
        if not (unit.duplicate or already):
            pair_ids = sorted(pair.pair_id for pair in state.pairs_of(person_id))
            unit.record(at, decide(state, command))
            unit.flush()
            call_each(engine.pm, "rmcore_forget", conn=engine.conn, program=program,
                      person_id=person_id, pair_ids=pair_ids)  # fmt: skip
    engine.keyring.drop_cache()
    # VACUUM cannot run inside a transaction: the file is compacted after the commit.
    outcome = Outcome(unit.earlier, duplicate=True) if unit.duplicate else Outcome(unit.appended)
    return Forgetting(outcome, compact(engine), already_forgotten=already)


def compact(engine: Engine) -> bool:
    """Checkpoint, ``VACUUM`` and truncate the write-ahead log; False if a reader held it."""
    conn = engine.conn
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    except sqlite3.OperationalError as exc:  # another process holds a lock
        raise DomainError(
            f"the erasure is recorded, but the file could not be compacted ({exc}); the "
            "erased text may remain in unused pages until `rmcore forget` is run again for "
            "this person while no other rmcore command is running"
        ) from None
    return not busy
