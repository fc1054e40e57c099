"""The plugin's outbox table: one row per message, from built to accepted by the server.

There is no plugin-migration hook, so the plugin creates its table itself with
``CREATE TABLE IF NOT EXISTS`` on first use, inside whatever transaction is open.

A message's ``key`` is deterministic (the event position, the kind and the recipient;
for nudges the pair, the day its stall began and the recipient), and ``(program, key)``
is unique: building the same message twice records it once. Statuses:

- ``pending``: built, not tried yet;
- ``sending``: claimed by a run that is talking to the server right now (a claim older
  than ``CLAIM_MINUTES`` belongs to a run that died and is tried again);
- ``sent``: the SMTP server accepted it (``sent_at``);
- ``failed``: the last try did not get it accepted (``last_error``); tried again on the
  next run, until ``notify_email.max_attempts`` tries;
- ``undeliverable``: never sent: the address is invalid, or every try failed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from attrs import frozen

from rmcore.store import utc_now

TABLE = "notify_email_outbox"
CLAIM_MINUTES = 15
DUE = ("pending", "failed")

DDL = (
    f"""
    CREATE TABLE IF NOT EXISTS {TABLE} (
        id INTEGER PRIMARY KEY,
        program TEXT NOT NULL,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        position INTEGER,
        person_id TEXT,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        subject TEXT NOT NULL,
        message BLOB NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        created_at TEXT NOT NULL,
        claimed_at TEXT,
        sent_at TEXT,
        UNIQUE (program, key)
    )
    """,
    f"CREATE INDEX IF NOT EXISTS {TABLE}_due ON {TABLE} (program, status, id)",
)


@frozen
class Row:
    """One message of the outbox."""

    id: int
    key: str
    kind: str
    person_id: str | None
    sender: str
    recipient: str
    subject: str
    message: bytes
    status: str
    attempts: int


_COLUMNS = "id, key, kind, person_id, sender, recipient, subject, message, status, attempts"


def ensure_table(conn: sqlite3.Connection) -> None:
    """Create the outbox table and its index if this database has none yet."""
    for ddl in DDL:
        conn.execute(ddl)


def has_table(conn: sqlite3.Connection) -> bool:
    """Whether this database has the outbox table yet (it has none before the first run)."""
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
        ).fetchone()
        is not None
    )


def enqueue(
    conn: sqlite3.Connection,
    program: str,
    *,
    key: str,
    kind: str,
    position: int | None,
    person_id: str | None,
    sender: str,
    recipient: str,
    subject: str,
    message: bytes,
    error: str | None = None,
) -> bool:
    """Record a message once per key (``undeliverable`` with ``error``); True if it is new."""
    cursor = conn.execute(
        f"INSERT INTO {TABLE} (program, key, kind, position, person_id, sender, recipient,"
        " subject, message, status, last_error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
        " ?, ?, ?, ?) ON CONFLICT (program, key) DO NOTHING",
        (
            program, key, kind, position, person_id, sender, recipient, subject, message,
            "undeliverable" if error else "pending", error, utc_now(),
        ),
    )  # fmt: skip
    return cursor.rowcount == 1


def exists(conn: sqlite3.Connection, program: str, key: str) -> bool:
    """Whether a message with this key was already recorded."""
    return (
        conn.execute(
            f"SELECT 1 FROM {TABLE} WHERE program = ? AND key = ?", (program, key)
        ).fetchone()
        is not None
    )


def _stale_claim() -> str:
    moment = datetime.now(timezone.utc) - timedelta(minutes=CLAIM_MINUTES)
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"


def _due_sql() -> str:
    return (
        f"SELECT {_COLUMNS} FROM {TABLE} WHERE program = ? AND id > ? AND"
        " (status IN ('pending', 'failed') OR (status = 'sending' AND claimed_at < ?))"
        " ORDER BY id LIMIT 1"
    )


def next_due(conn: sqlite3.Connection, program: str, after: int) -> Row | None:
    """The first message after id ``after`` that is waiting to be sent."""
    row = conn.execute(_due_sql(), (program, after, _stale_claim())).fetchone()
    return Row(*row) if row else None


def due(conn: sqlite3.Connection, program: str) -> Iterator[Row]:
    """Every message waiting to be sent, oldest first, one query per row."""
    after = 0
    while (row := next_due(conn, program, after)) is not None:
        yield row
        after = row.id


def claim(conn: sqlite3.Connection, row: Row) -> bool:
    """Mark a due message as being sent by this run; False if another run took it."""
    cursor = conn.execute(
        f"UPDATE {TABLE} SET status = 'sending', claimed_at = ? WHERE id = ? AND"
        " (status IN ('pending', 'failed') OR (status = 'sending' AND claimed_at < ?))",
        (utc_now(), row.id, _stale_claim()),
    )
    return cursor.rowcount == 1


def mark_sent(conn: sqlite3.Connection, row: Row) -> None:
    """The server accepted the message."""
    conn.execute(
        f"UPDATE {TABLE} SET status = 'sent', attempts = attempts + 1, sent_at = ?,"
        " last_error = NULL WHERE id = ?",
        (utc_now(), row.id),
    )


def mark_failed(conn: sqlite3.Connection, row: Row, error: str, max_attempts: int) -> str:
    """The server did not accept it; returns the new status (``failed`` or given up)."""
    status = "undeliverable" if row.attempts + 1 >= max_attempts else "failed"
    conn.execute(
        f"UPDATE {TABLE} SET status = ?, attempts = attempts + 1, last_error = ?,"
        " claimed_at = NULL WHERE id = ?",
        (status, error, row.id),
    )
    return status


def release(conn: sqlite3.Connection, row: Row) -> None:
    """Give back a claimed message that was not tried (the connection was lost first)."""
    conn.execute(
        f"UPDATE {TABLE} SET status = CASE WHEN attempts > 0 THEN 'failed' ELSE 'pending' END,"
        " claimed_at = NULL WHERE id = ? AND status = 'sending'",
        (row.id,),
    )


def counts(conn: sqlite3.Connection, program: str) -> dict[str, Any]:
    """Messages per status in a program."""
    rows = conn.execute(
        f"SELECT status, count(*) FROM {TABLE} WHERE program = ? GROUP BY status", (program,)
    ).fetchall()
    return dict(rows)


def problems(conn: sqlite3.Connection, program: str, limit: int = 5) -> list[tuple[str, str]]:
    """The latest errors of messages not sent, as ``(recipient, error)``."""
    return conn.execute(
        f"SELECT recipient, last_error FROM {TABLE} WHERE program = ? AND status IN"
        " ('failed', 'undeliverable') ORDER BY id DESC LIMIT ?",
        (program, limit),
    ).fetchall()


def forget(conn: sqlite3.Connection, program: str, person_id: str, pair_ids: list[str]) -> int:
    """Delete every message to or about a forgotten person: theirs, and those of their pairs."""
    if not has_table(conn):
        return 0
    streams = [f"person:{person_id}", *(f"pair:{pair_id}" for pair_id in pair_ids)]
    marks = ",".join("?" * len(streams))
    deleted = conn.execute(
        f"DELETE FROM {TABLE} WHERE program = ? AND (person_id = ? OR position IN"
        f" (SELECT position FROM events WHERE program = ? AND stream IN ({marks})))",
        (program, person_id, program, *streams),
    ).rowcount
    for pair_id in pair_ids:  # nudges name the pair in their key and carry no position
        # nudge.PAIR.YYYY-MM-DD.PERSON: the date pins where the pair id ends (ids have dots)
        pattern = f"nudge.{_glob_literal(pair_id)}.{_DATE_GLOB}.*"
        deleted += conn.execute(
            f"DELETE FROM {TABLE} WHERE program = ? AND key GLOB ?", (program, pattern)
        ).rowcount
    return deleted


_DATE_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"


def _glob_literal(text: str) -> str:
    """``text`` matching only itself in a GLOB pattern."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)
