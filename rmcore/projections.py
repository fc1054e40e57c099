"""Read models folded from the log: people, pairs, sessions, feedback, config, programs.

The engine keeps these tables in the same SQLite file as the log and brings them up
to date inside the append transaction, together with their checkpoint, so a reader
never sees half of a command. ``rebuild`` folds the whole log again from empty; the
result must equal what the incremental path built, and ``compare`` proves it.

Projections are SQL statements over the canonical JSON payload (see ``STATEMENTS``):
SQLite picks the fields in C, so a replay never builds an event object per row.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from attrs import frozen

from rmcore.codec import DecodeError, canonical_json
from rmcore.events import EventRegistry
from rmcore.memory import MEMORY_SCHEMA, has_memory_schema, sorts_in_files
from rmcore.model import LIST_FIELDS, PROFILE_FIELDS
from rmcore.personal import ERASED, NESTED, PERSONAL_FIELDS, PREFIX
from rmcore.queries import REPLAY_HINT, DamagedReadModels
from rmcore.store import SQLiteEventStore, StoredEvent, StoreError, connect_read_only

if TYPE_CHECKING:
    from concurrent.futures import Future

    from sqlite_utils import Database

    from rmcore.personal import Keyring

CHECKPOINT = "core"

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

# The columns of a new ``people`` row, as the ``joined`` statement fills them.
PEOPLE_INSERT_COLUMNS = (
    "program", "person_id", "name", "email", "role", "generation", "department",
    "manager_id", "timezone", "skills_offered", "skills_sought", "goals", "capacity",
    "status", "joined_at",
)  # fmt: skip
PEOPLE_INSERT_SQL = (
    f"INSERT INTO people ({', '.join(PEOPLE_INSERT_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(PEOPLE_INSERT_COLUMNS))})"
)

INDEXES = (
    "CREATE INDEX people_manager ON people (program, manager_id)",
    "CREATE INDEX pairs_mentor ON pairs (program, mentor_id, status)",
    "CREATE INDEX pairs_mentee ON pairs (program, mentee_id, status)",
    "CREATE INDEX sessions_pair ON sessions (program, pair_id, held_at)",
    "CREATE INDEX feedback_pair ON feedback (program, pair_id)",
)


def create_projection_tables(db: Database) -> None:
    """The core read models and the checkpoint table."""
    for ddl in TABLES.values():
        db.execute(ddl)
    for ddl in INDEXES:
        db.execute(ddl)
    db.execute("CREATE TABLE checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL)")
    db.execute("INSERT INTO checkpoints (name, position) VALUES (?, 0)", [CHECKPOINT])


# Named, ordered schema steps of the read models; applied by rmcore.db.migrate.
PROJECTION_MIGRATIONS = (("create_projection_tables", create_projection_tables),)


# The subject whose key seals an event type's personal fields, named by a payload field.
SUBJECT_OF = {
    "joined": "person",
    "profile_updated": "person",
    "left": "person",
    "pair_ended": "pair",
    "feedback_given": "pair",
}


def _opened(type_name: str, field: str) -> str:
    """SQL for a personal field: the value opened before the fold when it was sealed
    (parameter ``?5`` for the type's first ``PERSONAL_FIELDS``, ``?6`` for its second),
    else the payload's own (plain) value."""
    path = f"$.{NESTED[type_name]}.{field}" if type_name in NESTED else field
    return f"coalesce(?{5 + PERSONAL_FIELDS[type_name].index(field)}, ?4 ->> '{path}')"


# A sealed value as it appears in canonical JSON (base64 needs no escaping), and the
# subject ids (person and pair ids hold no quote or backslash).
_SEALED = {
    field: re.compile(f'"{field}":"({PREFIX}[^"\\\\]*)"')
    for fields in PERSONAL_FIELDS.values()
    for field in fields
}
_SUBJECT_ID = {
    subject: re.compile(f'"{subject}_id":"([^"\\\\]*)"') for subject in set(SUBJECT_OF.values())
}


def _opened_values(
    type_name: str, program: str, data: str, open_value: Callable[..., Any]
) -> tuple[Any, ...]:
    """The type's personal fields opened (None for a field that is not sealed)."""
    fields = PERSONAL_FIELDS[type_name]
    found = [_SEALED[field].search(data) for field in fields]
    if not any(found):
        return (None,) * len(fields)
    key = _subject_key(type_name, data)
    return tuple(
        None if sealed is None else open_value(program, key, field, sealed.group(1))
        for field, sealed in zip(fields, found)
    )


def _subject_key(type_name: str, data: str) -> str:
    """The subject whose key sealed the event's personal fields (``person:ID`` or ``pair:ID``)."""
    subject = SUBJECT_OF[type_name]
    match = _SUBJECT_ID[subject].search(data)
    if match is None:  # an id with escapes: read it properly
        return f"{subject}:{json.loads(data).get(f'{subject}_id')}"
    return f"{subject}:{match.group(1)}"


def _sealed_field(type_name: str, field: str, data: str) -> tuple[str, str] | None:
    """``(subject, sealed text)`` of one personal field of a payload, as
    :func:`_opened_values` finds it; None when that field is not sealed there."""
    sealed = _SEALED[field].search(data)
    return None if sealed is None else (_subject_key(type_name, data), sealed[1])


def _holds_sealed(field: str) -> str:
    """SQL that is true for a payload whose text may hold a sealed value of ``field``
    (every payload :func:`_sealed_field` finds one in, and few others)."""
    return f'instr(data, \'"{field}":"{PREFIX}\')'


class FieldOpener:
    """The SQL function ``rmcore_opened(type, field, program, data)`` of a bulk fold: one
    personal field opened exactly as :func:`_opened_values` opens it (None if not sealed).

    SQLite reports any exception raised inside a function as "user-defined function
    raised exception"; the opener keeps it in ``failure`` so the fold can raise it as it
    was (a Ctrl-C, a database error while loading a key).
    """

    def __init__(self, keyring: Keyring) -> None:
        self.open_value = keyring.open_value
        self.failure: BaseException | None = None

    def __call__(self, type_name: str, field: str, program: str, data: str) -> Any:
        try:
            found = _sealed_field(type_name, field, data)
            return None if found is None else self.open_value(program, found[0], field, found[1])
        except BaseException as exc:
            self.failure = exc
            raise


def _profile_update_sql() -> str:
    """Set each people column whose field is present in ``changes`` (null included)."""
    json_lists = LIST_FIELDS
    text = tuple(f for f in PROFILE_FIELDS if f not in json_lists and f != "capacity")

    def new_value(column: str) -> str:
        if column in ("name", "email"):
            return _opened("profile_updated", column)
        return f"?4 {'->' if column in json_lists else '->>'} '$.changes.{column}'"

    assignments = [
        f"{column} = CASE WHEN json_type(?4, '$.changes.{column}') IS NULL THEN {column}"
        f" ELSE {new_value(column)} END"
        for column in (*text, *json_lists, "capacity")
    ]
    return (
        f"UPDATE people SET {', '.join(assignments)}"
        " WHERE program = ?2 AND person_id = ?4 ->> 'person_id'"
    )


BARRIERS = frozenset({"forgotten"})

_PAIRS_OF_PERSON = (
    "SELECT pair_id FROM pairs WHERE program = ?2 AND mentor_id = ?4 ->> 'person_id'"
    " UNION ALL SELECT pair_id FROM pairs WHERE program = ?2 AND mentee_id = ?4 ->> 'person_id'"
)

# How each event type changes the read models: (table, SQL) pairs run in order. Every
# statement takes the same four parameters, ?1 position, ?2 program, ?3 occurred_at and
# ?4 the payload as canonical JSON of the current schema, and picks its fields with
# SQLite's JSON operators. Statements only write, never read other tables, so a batch
# can group them per table and run each run of one statement as ``executemany``; the
# types in BARRIERS are the exception (their statements read what earlier events wrote),
# and a batch is folded up to them first.
STATEMENTS: dict[str, tuple[tuple[str, str], ...]] = {
    "joined": (
        (
            "people",
            "INSERT INTO people (program, person_id, name, email, role, generation,"
            " department, manager_id, timezone, skills_offered, skills_sought, goals, capacity,"
            " status, joined_at) VALUES (?2, ?4 ->> 'person_id',"
            f" {_opened('joined', 'name')}, {_opened('joined', 'email')},"
            " ?4 ->> 'role', coalesce(?4 ->> 'generation', ''),"
            " coalesce(?4 ->> 'department', ''), ?4 ->> 'manager_id',"
            " coalesce(?4 ->> 'timezone', 'UTC'), coalesce(?4 -> 'skills_offered', '[]'),"
            " coalesce(?4 -> 'skills_sought', '[]'), coalesce(?4 -> 'goals', '[]'),"
            " coalesce(?4 ->> 'capacity', 0), 'active', ?3)",
        ),
    ),
    "profile_updated": (("people", _profile_update_sql()),),
    "left": (
        (
            "people",
            "UPDATE people SET status = 'left', left_at = ?3,"
            f" left_reason = coalesce({_opened('left', 'reason')}, '')"
            " WHERE program = ?2 AND person_id = ?4 ->> 'person_id'",
        ),
    ),
    "paired": (
        (
            "pairs",
            "INSERT INTO pairs (program, pair_id, mentor_id, mentee_id, strategy, score, reasons,"
            " goals, status, paired_at) VALUES (?2, ?4 ->> 'pair_id', ?4 ->> 'mentor_id',"
            " ?4 ->> 'mentee_id', coalesce(?4 ->> 'strategy', 'manual'), ?4 ->> 'score',"
            " coalesce(?4 -> 'reasons', '{}'), coalesce(?4 -> 'goals', '[]'), 'active', ?3)"
            "",
        ),
    ),
    "pair_ended": (
        (
            "pairs",
            "UPDATE pairs SET status = 'ended', ended_at = ?3,"
            f" end_reason = coalesce({_opened('pair_ended', 'reason')}, '')"
            " WHERE program = ?2 AND pair_id = ?4 ->> 'pair_id'",
        ),
    ),
    "session_held": (
        (
            "sessions",
            "INSERT INTO sessions (position, program, pair_id, held_at, minutes, topics, mode)"
            " VALUES (?1, ?2, ?4 ->> 'pair_id', ?3, ?4 ->> 'minutes',"
            " coalesce(?4 -> 'topics', '[]'), coalesce(?4 ->> 'mode', 'virtual'))",
        ),
    ),
    "feedback_given": (
        (
            "feedback",
            "INSERT INTO feedback (position, program, pair_id, by_person, rating,"
            " fresh_perspective, skills_gained, comment, given_at) VALUES (?1, ?2,"
            " ?4 ->> 'pair_id', ?4 ->> 'by', ?4 ->> 'rating',"
            " coalesce(?4 ->> 'fresh_perspective', 0), coalesce(?4 -> 'skills_gained', '[]'),"
            f" coalesce({_opened('feedback_given', 'comment')}, ''), ?3)",
        ),
    ),
    # Forgetting blanks what the read models copied in plain text, so a later replay,
    # which can no longer open those fields, folds to the same rows. (The keys themselves
    # are deleted by ``rmcore forget``, never by a fold, so a replay changes no key.)
    # These statements read ``pairs``: see BARRIERS.
    "forgotten": (
        (
            "people",
            f"UPDATE people SET name = '{ERASED}', email = '{ERASED}', status = 'forgotten',"
            f" left_reason = CASE WHEN left_reason <> '' THEN '{ERASED}' ELSE left_reason END"
            " WHERE program = ?2 AND person_id = ?4 ->> 'person_id'",
        ),
        (
            "pairs",
            f"UPDATE pairs SET end_reason = '{ERASED}' WHERE program = ?2 AND end_reason <> ''"
            " AND ?4 ->> 'person_id' IN (mentor_id, mentee_id)",
        ),
        (
            "feedback",
            f"UPDATE feedback SET comment = '{ERASED}' WHERE program = ?2 AND comment <> ''"
            f" AND pair_id IN ({_PAIRS_OF_PERSON})",
        ),
    ),
    "configured": (
        (
            "config",
            "DELETE FROM config WHERE program = ?2 AND key = ?4 ->> 'key'"
            " AND coalesce(?4 -> 'value', 'null') = 'null'",
        ),
        (
            "config",
            "INSERT INTO config (program, key, value, set_at)"
            " SELECT ?2, ?4 ->> 'key', ?4 -> 'value', ?3"
            " WHERE coalesce(?4 -> 'value', 'null') != 'null'"
            " ON CONFLICT (program, key) DO UPDATE SET value = excluded.value,"
            " set_at = excluded.set_at",
        ),
    ),
}


# Event types whose statements only insert a row, never read a table: a rebuild inserts
# them straight from the log, one INSERT ... SELECT per type and range of positions, so
# most of a log never passes through Python. The other types are folded in log order
# around them; those that mention a table these insert into (AFTER_BULK) are folded
# after the rows of those bulk types before them and before the ones after them.
FOLDED_IN_BULK = ("joined", "paired", "session_held", "feedback_given")


def _bulk_types_touched(type_name: str) -> frozenset[str]:
    """The bulk types whose tables the type's statements mention."""
    return frozenset(
        bulk
        for bulk in FOLDED_IN_BULK
        for table, _ in STATEMENTS[bulk]
        if any(re.search(rf"\b{table}\b", sql) for _, sql in STATEMENTS[type_name])
    )


# Each other type that touches a bulk type's table, with the bulk types it touches.
AFTER_BULK: dict[str, frozenset[str]] = {
    type_name: touched
    for type_name in STATEMENTS
    if type_name not in FOLDED_IN_BULK and (touched := _bulk_types_touched(type_name))
}

# Positions per bulk statement: a progress step, and the most one statement inserts.
BULK_SPAN = 50_000

# The table (in the memory schema) of personal fields opened ahead of the bulk inserts,
# and the most characters one span hands over through it.
OPENED_AHEAD = "rmcore_opened_ahead"
AHEAD_CHARS = 8_000_000

# The page cache of the folding connection during a rebuild (KiB), and the threads
# SQLite may add to sort the keys of the indexes built at the end.
REBUILD_CACHE_KIB = 16 * 1024
REBUILD_SORT_THREADS = 2

PROGRAMS_UPSERT = (
    "INSERT INTO programs (program, first_position, last_position, events, started_at)"
    " VALUES (?,?,?,?,?) ON CONFLICT (program) DO UPDATE SET"
    " last_position = excluded.last_position, events = events + excluded.events"
)


def bulk_statements(type_name: str, log: str = "main", *, ahead: bool = False) -> list[str]:
    """The type's statements as ``INSERT ... SELECT`` over the rows of ``log``.events.

    Each takes named parameters: ``schema`` (only rows stored under it), ``after`` and
    ``upto`` (the position range) and ``until`` (an occurred-at moment, or None for
    all). A personal field comes from the table of values opened ahead
    (:class:`OpenedAhead`) when ``ahead``, else from the SQL function ``rmcore_opened``,
    called only for rows whose payload text holds a sealed value of that field.
    """
    columns = {"1": "position", "2": "program", "3": "occurred_at", "4": "data"}
    for index, field in enumerate(PERSONAL_FIELDS.get(type_name, ())):
        opened = (
            f"CASE WHEN {_holds_sealed(field)} THEN"
            f" rmcore_opened('{type_name}', '{field}', program, data) END"
        )
        if ahead:
            opened = (
                f"coalesce((SELECT value FROM {MEMORY_SCHEMA}.{OPENED_AHEAD} AS ahead"
                f" WHERE ahead.position = logged.position AND ahead.field = '{field}'),"
                f" {opened})"
            )
        columns[str(5 + index)] = opened
    statements = []
    for _, sql in STATEMENTS[type_name]:
        head, values = sql.split(" VALUES (", 1)
        if not head.startswith("INSERT INTO ") or not values.endswith(")"):
            raise ValueError(f"{type_name}: only single-row inserts fold in bulk")
        picked = re.sub(r"\?([1-9])\b", lambda m: columns[m.group(1)], values[:-1])
        statements.append(
            f"{head} SELECT {picked} FROM {log}.events AS logged WHERE position > :after"
            f" AND position <= :upto AND type = '{type_name}' AND schema = :schema"
            " AND (:until IS NULL OR occurred_at <= :until) ORDER BY position"
        )
    return statements


class OpenedAhead:
    """Opens the sealed fields of bulk-folded events in a helper thread, one span of
    positions ahead of the inserts that need them.

    Opening values is Python work and inserting rows is SQLite's, which runs without the
    interpreter lock, so the two overlap on two cores. The helper reads the log through
    its own read-only connection to ``path`` (a WAL file holding the same log up to
    ``last``: the row at a position never changes) and opens only with keys already in
    memory, never touching the folding connection. What it cannot open, or cannot see
    (events not committed yet), the inserts open themselves through ``rmcore_opened``, so
    the result is the same either way. Values are handed over through the table
    :data:`OPENED_AHEAD` of the connection's memory schema (:mod:`rmcore.memory`), one
    span at a time, filled while the helper is idle; a span hands over at most
    :data:`AHEAD_CHARS` characters, which bounds the memory the table takes.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: str | os.PathLike,
        keyring: Keyring,
        schemas: dict[str, int],
        occurred_until: str | None,
        last: int,
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.conn = conn
        self.path = path
        self.keyring = keyring
        self.kinds = [
            (type_name, schemas[type_name], PERSONAL_FIELDS[type_name])
            for type_name in FOLDED_IN_BULK
            if type_name in PERSONAL_FIELDS and type_name in schemas
        ]
        self.occurred_until = occurred_until
        self.last = last
        self.ready = 0  # the table holds the values of the span that ends here
        # the (type, schema) kinds of event in that span, each with its last position
        # there; None if the helper could not see all of the span's rows
        self.present: dict[tuple[str, int], int] | None = None
        self.pending: tuple[int, Future] | None = None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="rmcore-open-ahead")
        self.reader: sqlite3.Connection | None = None
        self.table = False  # whether the table exists on ``conn``
        self.closed = False

    def start(self) -> None:
        """Set the helper to the first span; ``conn`` is not touched until :meth:`prepare`,
        so a copy may start it before its file is even written."""
        if self.pending is None and self.ready == 0:
            self.pending = (0, self.pool.submit(self._open, 0))

    def prepare(self, upto: int) -> None:
        """Put the values of the span holding ``upto`` in the table (a span starts at a
        multiple of :data:`BULK_SPAN`) and its kinds of event in ``present``, and set the
        helper to the next one."""
        if upto <= self.ready:
            return
        while self.ready < upto:
            if self.pending is None or self.pending[0] != self.ready:
                self.pending = (self.ready, self.pool.submit(self._open, self.ready))
            self.present, values = self.pending[1].result()
            self.pending = None
            self.ready += BULK_SPAN
        if not self.table:
            self.conn.execute(
                f"CREATE TABLE IF NOT EXISTS {MEMORY_SCHEMA}.{OPENED_AHEAD} (position"
                " INTEGER NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,"
                " PRIMARY KEY (position, field)) WITHOUT ROWID"
            )
            self.table = True
        self.conn.execute(f"DELETE FROM {MEMORY_SCHEMA}.{OPENED_AHEAD}")
        for field, by_position in values:  # one JSON object per field: parsed in C
            self.conn.execute(
                f"INSERT INTO {MEMORY_SCHEMA}.{OPENED_AHEAD}"
                " SELECT CAST(key AS INTEGER), ?, value FROM json_each(?)",
                (field, by_position),
            )
        if self.ready < self.last:
            self.pending = (self.ready, self.pool.submit(self._open, self.ready))

    def _open(self, after: int) -> tuple[dict[tuple[str, int], int] | None, list[tuple[str, str]]]:
        """In the helper, for the span ``(after, after + BULK_SPAN]``: its kinds of event
        with their last positions (None unless it sees every row of the span), and the
        values it can open there, as ``(field, JSON object of the values by position)``."""
        upto = min(after + BULK_SPAN, self.last)
        try:
            if self.reader is None:
                self.reader = connect_read_only(self.path)
            if self.reader.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                return None, []  # a reader could hold up the writer: the inserts do it all
            present = None
            newest = self.reader.execute("SELECT coalesce(max(position), 0) FROM events")
            if newest.fetchone()[0] >= upto:  # committed rows never change: all are there
                present = {
                    (type_name, schema): last
                    for type_name, schema, last in self.reader.execute(
                        "SELECT type, schema, max(position) FROM events WHERE position > ?1"
                        " AND position <= ?2 AND (?3 IS NULL OR occurred_at <= ?3)"
                        " GROUP BY type, schema",
                        (after, upto, self.occurred_until),
                    )
                }
            opened: dict[str, dict[int, str]] = {}
            budget = AHEAD_CHARS
            for type_name, schema, fields in self.kinds:
                sealed_any = " OR ".join(_holds_sealed(field) for field in fields)
                rows = self.reader.execute(
                    "SELECT position, program, data FROM events WHERE position > ?1"
                    " AND position <= ?2 AND type = ?3 AND schema = ?4"
                    f" AND (?5 IS NULL OR occurred_at <= ?5) AND ({sealed_any})",
                    (after, upto, type_name, schema, self.occurred_until),
                )  # fmt: skip
                for position, program, data in rows:
                    for field in fields:
                        found = _sealed_field(type_name, field, data)
                        if found is None:
                            continue
                        value = self.keyring.open_if_loaded(program, found[0], field, found[1])
                        if value is not None and "\x00" not in value:
                            opened.setdefault(field, {})[position] = value
                            budget -= len(value)
                    if budget < 0:
                        break  # the inserts open the rest of the span
            return present, [
                (field, json.dumps(by_position, ensure_ascii=False))
                for field, by_position in opened.items()
            ]
        except (sqlite3.Error, OSError):
            return None, []  # the inserts do it all themselves

    def close(self) -> None:
        """Stop the helper, close its connection (in its own thread) and drop the table;
        once closed, closing again does nothing."""
        if self.closed:
            return
        self.closed = True
        if self.pending is not None:
            self.pending[1].cancel()
        self.pool.submit(self._close_reader).result()
        self.pool.shutdown(wait=True)
        if self.table:
            with contextlib.suppress(sqlite3.Error):  # never hides why a fold stopped
                self.conn.execute(f"DROP TABLE IF EXISTS {MEMORY_SCHEMA}.{OPENED_AHEAD}")
            self.table = False

    def _close_reader(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


class Projector:
    """Folds stored events into the core read models of one connection."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        registry: EventRegistry,
        keyring: Keyring,
    ) -> None:
        self.conn = conn
        self.registry = registry
        self.keyring = keyring
        # Indexes dropped for a rebuild, to be built in bulk at its end (or before the
        # first event whose statements read the tables).
        self.deferred_indexes: list[str] = []
        self.schemas = {name: cls.schema for name, cls in ((c.type, c) for c in registry.classes())}

    def checkpoint(self) -> int:
        """The last position folded into the read models."""
        row = self.conn.execute(
            "SELECT position FROM checkpoints WHERE name = ?", (CHECKPOINT,)
        ).fetchone()
        if row is None:
            return 0
        if not isinstance(row[0], int):
            raise DamagedReadModels(
                f"checkpoints.position holds a value that is not a position: {REPLAY_HINT}"
            )
        return row[0]

    def apply(self, events: Iterable[StoredEvent], *, people: Sequence[tuple] | None = None) -> int:
        """Fold stored events (in log order) and move the checkpoint; returns how many
        (``people`` as for :meth:`apply_rows`)."""
        return self.apply_rows(
            [(e.position, e.program, e.type, e.schema, e.occurred_at, e.recorded_at, e.data)
             for e in events],
            people=people,
        )  # fmt: skip

    def apply_rows(self, rows: Sequence[tuple], *, people: Sequence[tuple] | None = None) -> int:
        """Fold ``SQLiteEventStore.PROJECTION_COLUMNS`` rows (in log order), move the checkpoint.

        ``people``, when given, holds the ``people`` row (``PEOPLE_INSERT_COLUMNS``) of
        each ``joined`` event in ``rows``, built by a bulk writer from the values it
        encoded: they are inserted as they are instead of being picked out of the
        payloads. They go in before the other statements run, which keeps the order, as a
        person's ``joined`` comes before any other event about them. The rows must be
        what the ``joined`` statement would insert (tests/test_import_properties.py
        checks that a replay gives the same rows).
        """
        if not rows:
            return 0
        return self.execute(plan_fold(rows, self.schemas, self.registry, self.keyring, people))

    def execute(self, plan: FoldPlan) -> int:
        """Run a fold's statements in order and move the checkpoint; returns the events."""
        conn = self.conn
        for sql, params in plan.steps:
            if sql is None:
                self.build_deferred_indexes()
            else:
                conn.executemany(sql, params)
        conn.executemany(PROGRAMS_UPSERT, plan.programs)
        self.move_checkpoint(plan.last_position)
        return plan.events

    def move_checkpoint(self, position: int) -> None:
        """Record that the read models hold every event up to ``position``."""
        self.conn.execute(
            "UPDATE checkpoints SET position = ? WHERE name = ?", (position, CHECKPOINT)
        )

    def catch_up(self, store: SQLiteEventStore) -> int:
        """Fold whatever the log holds past the checkpoint (inside a write transaction)."""
        total = 0
        for rows in store.scan(self.checkpoint()):
            total += self.apply_rows(rows)
        return total

    def clear(self) -> None:
        """Empty every core read model and reset the checkpoint."""
        for table in TABLES:
            self.conn.execute(f"DELETE FROM {table}")
        self.conn.execute("UPDATE checkpoints SET position = 0 WHERE name = ?", (CHECKPOINT,))

    def defer_indexes(self) -> None:
        """Drop the read models' secondary indexes until :meth:`build_deferred_indexes`.

        Building an index once over a full table is several times cheaper than keeping it
        up to date row by row; only a fold from empty should use this.
        """
        for ddl in INDEXES:
            name = ddl.split()[2]
            if self.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
            ).fetchone():
                self.conn.execute(f"DROP INDEX {name}")
                self.deferred_indexes.append(ddl)

    def forget_deferred_indexes(self) -> None:
        """After a rollback: the indexes a failed rebuild dropped are back in the file."""
        self.deferred_indexes.clear()

    def build_deferred_indexes(self) -> None:
        """Create the indexes :meth:`defer_indexes` dropped."""
        while self.deferred_indexes:
            self.conn.execute(self.deferred_indexes.pop(0))


@frozen
class FoldPlan:
    """What folding a batch of rows does, worked out without touching the database.

    ``steps`` are ``(sql, parameter rows)`` to run in order with ``executemany`` (``sql``
    None: build the deferred indexes first); ``programs`` the rows for the ``programs``
    upsert.
    """

    steps: list[tuple[str | None, list[tuple]]]
    programs: list[tuple]
    last_position: int
    events: int


def plan_fold(
    rows: Sequence[tuple],
    schemas: dict[str, int],
    registry: EventRegistry,
    keyring: Keyring,
    people: Sequence[tuple] | None = None,
) -> FoldPlan:
    """The statements that fold ``PROJECTION_COLUMNS`` rows, personal fields opened.

    Statements are grouped per table, keeping their order within a table, and each run
    of one statement becomes a single ``executemany``; a type in ``BARRIERS`` closes the
    group before and after it. Sealed fields are opened here, with ``keyring``, and
    passed as parameters ``?5`` and ``?6``.
    """
    steps: list[tuple[str | None, list[tuple]]] = []
    by_table: dict[str, list[tuple[str, tuple]]] = {}
    programs: dict[str, list] = {}
    prepared = "joined" if people is not None else None
    if people:
        steps.append((PEOPLE_INSERT_SQL, list(people)))
    open_value = keyring.open_value

    def close_group() -> None:
        for statements in by_table.values():
            _in_runs(statements, steps)
        by_table.clear()

    for position, program, type_name, schema, occurred_at, _recorded_at, data in rows:
        statements = None if type_name == prepared else STATEMENTS.get(type_name)
        if statements is not None:
            if schema != schemas.get(type_name, schema):
                data = _upcast(registry, position, type_name, schema, data)
            if type_name in PERSONAL_FIELDS:
                values = _opened_values(type_name, program, data, open_value)
                params = (position, program, occurred_at, data, *values)
            else:
                params = (position, program, occurred_at, data)
            barrier = type_name in BARRIERS
            if barrier:
                close_group()  # it reads what the events before it wrote
                steps.append((None, []))
            for table, sql in statements:
                pending = by_table.get(table)
                if pending is None:
                    pending = by_table[table] = []
                pending.append((sql, params))
            if barrier:
                close_group()
        seen = programs.get(program)
        if seen is None:
            programs[program] = [position, position, 1, occurred_at]
        else:
            seen[1] = position
            seen[2] += 1
    close_group()
    return FoldPlan(
        steps,
        [(name, *values) for name, values in programs.items()],
        rows[-1][0],
        len(rows),
    )


def _upcast(registry: EventRegistry, position: int, type_name: str, schema: int, data: str) -> str:
    """A payload stored under another schema version, as today's canonical JSON."""
    try:
        return canonical_json(registry.upcast(type_name, schema, json.loads(data)))
    except (ValueError, KeyError, TypeError) as exc:
        raise DecodeError(
            f"position {position}: the {type_name} payload (schema {schema}) cannot be read: {exc}"
        ) from None


def _in_runs(statements: list[tuple[str, tuple]], steps: list) -> None:
    """Append statements to ``steps`` in order, each run of the same SQL as one step."""
    start = 0
    while start < len(statements):
        sql = statements[start][0]
        end = start + 1
        while end < len(statements) and statements[end][0] == sql:
            end += 1
        steps.append((sql, [params for _, params in statements[start:end]]))
        start = end


def rebuild(
    source: SQLiteEventStore,
    projector: Projector,
    *,
    batch: int = 5000,
    progress: Callable[[int], None] | None = None,
    occurred_until: str | None = None,
    log: str = "main",
    log_file: str | os.PathLike | None = None,
    ahead: OpenedAhead | None = None,
) -> int:
    """Clear the read models behind ``projector`` and fold the whole log into them
    (with ``occurred_until``, only the events that had occurred by then).

    Runs inside the caller's transaction on ``projector.conn``; ``source`` may be
    another connection (a scratch database reading the live log), in which case the
    live file must be attached to ``projector.conn`` under the name ``log``. Positions
    are bounded by what ``source`` sees, so both read the same events. ``log_file``, a
    WAL file holding the same log, lets a helper thread open sealed fields ahead
    (:class:`OpenedAhead`); without it the inserts open them. ``ahead``, a helper
    already started for this fold on ``projector.conn``, is used instead (and closed).

    The types in :data:`FOLDED_IN_BULK` go from the log to their tables in SQL, a range of
    positions at a time; the others are folded in Python as the incremental path folds
    them, those in :data:`AFTER_BULK` in their place around the bulk rows they touch. A
    span of positions the helper finds holding none of a kind is not read for it. The
    secondary indexes are built once at the end, and the keys loaded in one query at the
    start. Callers keep the connection's scratch data in memory around their transaction
    (:func:`rmcore.memory.scratch_in_memory`): the bulk statements' journals hold opened
    values, and the helper hands its own over through the memory schema (without which
    there is no helper).
    """
    conn = projector.conn
    opener = FieldOpener(projector.keyring)
    cache = conn.execute("PRAGMA main.cache_size").fetchone()[0]
    try:
        projector.keyring.preload()
        conn.create_function("rmcore_opened", 4, opener)
        # Appending in position order needs few pages at hand, and the sort that builds
        # the indexes at the end keeps runs of this size in memory.
        conn.execute(f"PRAGMA main.cache_size = -{REBUILD_CACHE_KIB}")
        if ahead is None and log_file is not None and has_memory_schema(conn):
            newest = source.head()[0]  # no later position is folded
            ahead = OpenedAhead(
                conn, log_file, projector.keyring, projector.schemas, occurred_until, newest
            )
            ahead.start()  # the first span opens while the tables are emptied
        projector.clear()
        projector.defer_indexes()
        programs = source.program_counts(occurred_until=occurred_until)
        head = max((last for _, _, last, _, _ in programs), default=0)
        missing = head - sum(events for _, _, _, events, _ in programs)
        if occurred_until is None and missing:
            raise StoreError(
                f"the log is missing {missing} event(s) below position {head}: it was changed"
                " outside rmcore, and a replay would fold it as it is; `rmcore verify` names"
                " the first gap"
            )
        if ahead is not None and ahead.last < head:  # one given that stops short of the fold
            ahead.close()
            ahead = None
        # (type, schema) of the kinds inserted in bulk: the scan leaves them out
        leave_out = [(t, projector.schemas[t]) for t in FOLDED_IN_BULK if t in projector.schemas]
        only_bulk = frozenset(leave_out)
        bulk = [
            (sql, kind)
            for kind in leave_out
            for sql in bulk_statements(kind[0], log, ahead=ahead is not None)
        ]
        inserted = 0  # the bulk types are in the tables up to this position

        def insert_bulk(upto: int) -> None:
            nonlocal inserted
            while inserted < upto:
                # within one span of BULK_SPAN positions, the one whose values are ahead
                end = min(upto, (inserted // BULK_SPAN + 1) * BULK_SPAN)
                present = None
                if ahead is not None:
                    ahead.prepare(end)
                    present = ahead.present
                span = {"after": inserted, "upto": end, "until": occurred_until}
                rows = 0
                for sql, kind in bulk:
                    if present is not None and kind not in present:
                        continue  # the span has none: no need to read it
                    try:
                        rows += conn.execute(sql, {**span, "schema": kind[1]}).rowcount
                    except sqlite3.OperationalError:
                        if opener.failure is not None:
                            raise opener.failure from None
                        raise
                inserted = end
                if progress and rows:
                    progress(rows)

        def fold(rows: Sequence[tuple]) -> None:
            if rows:
                plan = plan_fold(rows, projector.schemas, projector.registry, projector.keyring)
                projector.execute(attrs.evolve(plan, programs=[]))
                if progress:
                    progress(len(rows))

        previous = 0  # the position of the last row the scan gave
        for after in range(0, head, BULK_SPAN):
            end = min(after + BULK_SPAN, head)
            # the last position of each bulk type in the span, as far as is known
            bulk_last = dict.fromkeys(FOLDED_IN_BULK, end)
            if ahead is not None:
                ahead.prepare(end)
                if ahead.present is not None:
                    if ahead.present.keys() <= only_bulk:
                        insert_bulk(end)  # nothing in the span to fold in Python
                        continue
                    bulk_last = {}
                    for (type_name, _), last in ahead.present.items():
                        if type_name in FOLDED_IN_BULK:
                            bulk_last[type_name] = max(last, bulk_last.get(type_name, 0))
            for rows in source.scan(
                after, batch=batch, occurred_until=occurred_until, until=end, leave_out=leave_out
            ):
                # whether rows[start:] touch bulk rows that come later in the span
                start, touching = 0, False
                for index, row in enumerate(rows):
                    if touching and row[0] != previous + 1:
                        # the scan left bulk rows out between the two: those before go in,
                        # then the rows up to here, then the rest
                        insert_bulk(previous)
                        fold(rows[start:index])
                        start, touching = index, False
                    touching = (
                        touching
                        or row[2] in FOLDED_IN_BULK
                        or any(
                            bulk_last.get(touched, 0) > row[0]
                            for touched in AFTER_BULK.get(row[2], ())
                        )
                    )
                    previous = row[0]
                insert_bulk(previous)
                fold(rows[start:])
            insert_bulk(end)
        conn.executemany(PROGRAMS_UPSERT, programs)
        projector.move_checkpoint(head)
        # Index keys hold ids and dates, never a personal field: they may be sorted
        # through files, which lets SQLite sort in threads.
        with sorts_in_files(conn, REBUILD_SORT_THREADS):
            projector.build_deferred_indexes()
    finally:
        if ahead is not None:
            ahead.close()
        # Put the connection back as it was, without hiding why the fold stopped.
        with contextlib.suppress(sqlite3.Error):
            conn.execute(f"PRAGMA main.cache_size = {int(cache)}")
        with contextlib.suppress(sqlite3.Error):
            conn.create_function("rmcore_opened", 4, None)
    return sum(events for _, _, _, events, _ in programs)


SHOWN_CHARACTERS = 200  # of each value in a difference: enough to tell rows apart


def _shortened(row: tuple) -> tuple:
    """``row`` with long text and blobs cut, so a difference stays a line."""
    return tuple(
        f"{value[:SHOWN_CHARACTERS]}... ({len(value):,} in all)"
        if isinstance(value, (str, bytes)) and len(value) > SHOWN_CHARACTERS
        else value
        for value in row
    )


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
                differences.append(f"{table}: {label}: {_shortened(tuple(row))}")
            if len(rows) > limit:
                count = conn.execute(f"SELECT count(*) FROM ({query})").fetchone()[0]
                differences.append(f"{table}: {label}: ... {count - limit} more rows")
    return differences
