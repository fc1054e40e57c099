"""Read models folded from the log: people, pairs, sessions, feedback, config, programs.

The engine keeps these tables in the same SQLite file as the log and brings them up
to date inside the append transaction, together with their checkpoint, so a reader
never sees half of a command. ``rebuild`` folds the whole log again from empty; the
result must equal what the incremental path built, and ``compare`` proves it.

Projectors work on payload dicts (upcast to the current schema) rather than on event
objects: structuring every event would cost more than the SQL that stores it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sqlite_utils import Database, Migrations

from rmcore.events import EventRegistry
from rmcore.store import SQLiteEventStore, StoredEvent

CHECKPOINT = "core"

projection_migrations = Migrations("rmcore.projections")

TABLES: dict[str, str] = {
    "people": """
        CREATE TABLE people (
            program TEXT NOT NULL,
            person_id TEXT NOT NULL,
            name TEXT NOT NULL,
            email TEXT NOT NULL,
            role TEXT NOT NULL,
            generation TEXT NOT NULL,
            department TEXT NOT NULL,
            manager_id TEXT,
            timezone TEXT NOT NULL,
            skills_offered TEXT NOT NULL,
            skills_sought TEXT NOT NULL,
            goals TEXT NOT NULL,
            capacity INTEGER NOT NULL,
            status TEXT NOT NULL,
            joined_at TEXT NOT NULL,
            left_at TEXT,
            left_reason TEXT,
            PRIMARY KEY (program, person_id)
        )""",
    "pairs": """
        CREATE TABLE pairs (
            program TEXT NOT NULL,
            pair_id TEXT NOT NULL,
            mentor_id TEXT NOT NULL,
            mentee_id TEXT NOT NULL,
            strategy TEXT NOT NULL,
            score REAL,
            reasons TEXT NOT NULL,
            goals TEXT NOT NULL,
            status TEXT NOT NULL,
            paired_at TEXT NOT NULL,
            ended_at TEXT,
            end_reason TEXT,
            PRIMARY KEY (program, pair_id)
        )""",
    "sessions": """
        CREATE TABLE sessions (
            position INTEGER PRIMARY KEY,
            program TEXT NOT NULL,
            pair_id TEXT NOT NULL,
            held_at TEXT NOT NULL,
            minutes INTEGER NOT NULL,
            topics TEXT NOT NULL,
            mode TEXT NOT NULL
        )""",
    "feedback": """
        CREATE TABLE feedback (
            position INTEGER PRIMARY KEY,
            program TEXT NOT NULL,
            pair_id TEXT NOT NULL,
            by_person TEXT NOT NULL,
            rating INTEGER NOT NULL,
            fresh_perspective INTEGER NOT NULL,
            skills_gained TEXT NOT NULL,
            comment TEXT NOT NULL,
            given_at TEXT NOT NULL
        )""",
    "config": """
        CREATE TABLE config (
            program TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            set_at TEXT NOT NULL,
            PRIMARY KEY (program, key)
        )""",
    "programs": """
        CREATE TABLE programs (
            program TEXT PRIMARY KEY,
            first_position INTEGER NOT NULL,
            last_position INTEGER NOT NULL,
            events INTEGER NOT NULL,
            started_at TEXT NOT NULL
        )""",
}

INDEXES = (
    "CREATE INDEX people_manager ON people (program, manager_id)",
    "CREATE INDEX pairs_mentor ON pairs (program, mentor_id, status)",
    "CREATE INDEX pairs_mentee ON pairs (program, mentee_id, status)",
    "CREATE INDEX sessions_pair ON sessions (program, pair_id, held_at)",
    "CREATE INDEX feedback_pair ON feedback (program, pair_id)",
)


@projection_migrations()
def create_projection_tables(db: Database) -> None:
    """The core read models and the checkpoint table."""
    for ddl in TABLES.values():
        db.execute(ddl)
    for ddl in INDEXES:
        db.execute(ddl)
    db.execute("CREATE TABLE checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL)")
    db.execute("INSERT INTO checkpoints (name, position) VALUES (?, 0)", [CHECKPOINT])


Handler = Callable[[sqlite3.Connection, str, str, int, dict[str, Any]], None]


def _list(value: Any) -> str:
    return json.dumps(list(value or ()), ensure_ascii=False)


def _joined(conn, program, at, position, d) -> None:
    conn.execute(
        "INSERT INTO people (program, person_id, name, email, role, generation, department,"
        " manager_id, timezone, skills_offered, skills_sought, goals, capacity, status,"
        " joined_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,'active',?)",
        (
            program,
            d["person_id"],
            d["name"],
            d["email"],
            d["role"],
            d.get("generation", ""),
            d.get("department", ""),
            d.get("manager_id"),
            d.get("timezone", "UTC"),
            _list(d.get("skills_offered")),
            _list(d.get("skills_sought")),
            _list(d.get("goals")),
            d.get("capacity", 0),
            at,
        ),
    )


def _left(conn, program, at, position, d) -> None:
    conn.execute(
        "UPDATE people SET status = 'left', left_at = ?, left_reason = ?"
        " WHERE program = ? AND person_id = ?",
        (at, d.get("reason", ""), program, d["person_id"]),
    )


def _paired(conn, program, at, position, d) -> None:
    conn.execute(
        "INSERT INTO pairs (program, pair_id, mentor_id, mentee_id, strategy, score, reasons,"
        " goals, status, paired_at) VALUES (?,?,?,?,?,?,?,?,'active',?)",
        (
            program,
            d["pair_id"],
            d["mentor_id"],
            d["mentee_id"],
            d.get("strategy", "manual"),
            d.get("score"),
            json.dumps(d.get("reasons") or {}, sort_keys=True, ensure_ascii=False),
            _list(d.get("goals")),
            at,
        ),
    )


def _pair_ended(conn, program, at, position, d) -> None:
    conn.execute(
        "UPDATE pairs SET status = 'ended', ended_at = ?, end_reason = ?"
        " WHERE program = ? AND pair_id = ?",
        (at, d.get("reason", ""), program, d["pair_id"]),
    )


def _session_held(conn, program, at, position, d) -> None:
    conn.execute(
        "INSERT INTO sessions (position, program, pair_id, held_at, minutes, topics, mode)"
        " VALUES (?,?,?,?,?,?,?)",
        (
            position,
            program,
            d["pair_id"],
            at,
            d["minutes"],
            _list(d.get("topics")),
            d.get("mode", "virtual"),
        ),
    )


def _feedback_given(conn, program, at, position, d) -> None:
    conn.execute(
        "INSERT INTO feedback (position, program, pair_id, by_person, rating,"
        " fresh_perspective, skills_gained, comment, given_at) VALUES (?,?,?,?,?,?,?,?,?)",
        (
            position,
            program,
            d["pair_id"],
            d["by"],
            d["rating"],
            1 if d.get("fresh_perspective") else 0,
            _list(d.get("skills_gained")),
            d.get("comment", ""),
            at,
        ),
    )


def _configured(conn, program, at, position, d) -> None:
    if d.get("value") is None:
        conn.execute("DELETE FROM config WHERE program = ? AND key = ?", (program, d["key"]))
        return
    conn.execute(
        "INSERT INTO config (program, key, value, set_at) VALUES (?,?,?,?)"
        " ON CONFLICT (program, key) DO UPDATE SET value = excluded.value,"
        " set_at = excluded.set_at",
        (program, d["key"], json.dumps(d["value"], sort_keys=True, ensure_ascii=False), at),
    )


HANDLERS: dict[str, Handler] = {
    "joined": _joined,
    "left": _left,
    "paired": _paired,
    "pair_ended": _pair_ended,
    "session_held": _session_held,
    "feedback_given": _feedback_given,
    "configured": _configured,
}


class Projector:
    """Folds stored events into the core read models of one connection."""

    def __init__(self, conn: sqlite3.Connection, registry: EventRegistry) -> None:
        self.conn = conn
        self.registry = registry
        self._schemas = {
            name: cls.schema for name, cls in ((c.type, c) for c in registry.classes())
        }

    def checkpoint(self) -> int:
        """The last position folded into the read models."""
        row = self.conn.execute(
            "SELECT position FROM checkpoints WHERE name = ?", (CHECKPOINT,)
        ).fetchone()
        return row[0] if row else 0

    def apply(self, events: Iterable[StoredEvent]) -> int:
        """Fold events (in log order) and move the checkpoint; returns how many."""
        conn = self.conn
        programs: dict[str, list] = {}
        last = None
        count = 0
        for event in events:
            handler = HANDLERS.get(event.type)
            if handler is not None:
                payload = json.loads(event.data)
                if event.schema != self._schemas.get(event.type, event.schema):
                    payload = self.registry.upcast(event.type, event.schema, payload)
                handler(conn, event.program, event.occurred_at, event.position, payload)
            seen = programs.get(event.program)
            if seen is None:
                programs[event.program] = [event.position, event.position, 1, event.recorded_at]
            else:
                seen[1] = event.position
                seen[2] += 1
            last = event.position
            count += 1
        if last is None:
            return 0
        conn.executemany(
            "INSERT INTO programs (program, first_position, last_position, events, started_at)"
            " VALUES (?,?,?,?,?) ON CONFLICT (program) DO UPDATE SET"
            " last_position = excluded.last_position, events = events + excluded.events",
            [(name, *values) for name, values in programs.items()],
        )
        conn.execute("UPDATE checkpoints SET position = ? WHERE name = ?", (last, CHECKPOINT))
        return count

    def catch_up(self, store: SQLiteEventStore) -> int:
        """Fold whatever the log holds past the checkpoint (inside a write transaction)."""
        return self.apply(store.read(self.checkpoint()))

    def clear(self) -> None:
        """Empty every core read model and reset the checkpoint."""
        for table in TABLES:
            self.conn.execute(f"DELETE FROM {table}")
        self.conn.execute("UPDATE checkpoints SET position = 0 WHERE name = ?", (CHECKPOINT,))


def rebuild(
    source: SQLiteEventStore,
    projector: Projector,
    *,
    batch: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Clear the read models behind ``projector`` and fold the whole log into them.

    Runs inside the caller's transaction on ``projector.conn``; ``source`` may be
    another connection (a scratch database reading the live log).
    """
    projector.clear()
    total = 0
    for chunk in _chunks(source.read(0), batch):
        total += projector.apply(chunk)
        if progress:
            progress(len(chunk))
    return total


def _chunks(events: Iterator[StoredEvent], size: int) -> Iterator[list[StoredEvent]]:
    chunk: list[StoredEvent] = []
    for event in events:
        chunk.append(event)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def compare(conn: sqlite3.Connection, other_schema: str, limit: int = 20) -> list[str]:
    """Differences between the read models in ``main`` and in an attached schema."""
    differences: list[str] = []
    tables = [*TABLES, "checkpoints"]
    for table in tables:
        for label, left, right in (
            ("only in the live tables", "main", other_schema),
            ("only in the replay", other_schema, "main"),
        ):
            query = f"SELECT * FROM {left}.{table} EXCEPT SELECT * FROM {right}.{table}"
            rows = conn.execute(f"{query} LIMIT {limit + 1}").fetchall()
            for row in rows[:limit]:
                differences.append(f"{table}: {label}: {tuple(row)}")
            if len(rows) > limit:
                count = conn.execute(f"SELECT count(*) FROM ({query})").fetchone()[0]
                differences.append(f"{table}: {label}: ... {count - limit} more rows")
    return differences
