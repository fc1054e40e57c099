"""The SQLite event log: append, read, head, and the tamper-evident hash chain.

The log is one table that is only ever INSERTed into; triggers refuse UPDATE and
DELETE. Every row's ``hash`` is ``sha256(prev_hash + canonical envelope)``, where the
canonical envelope joins the envelope fields with the ASCII unit separator (0x1f).
Envelope fields may not contain control characters and the payload is JSON (which
escapes them), so the joined form is unambiguous and SQLite can build it in C when
the chain is verified.

Everything the domain needs from storage goes through :class:`SQLiteEventStore`'s
narrow interface (``transaction``, ``append``, ``read``, ``read_stream``, ``head``,
``find_by_idempotency_key``), so another backend can replace it without touching the
rules.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import attrs
from attrs import frozen

from rmcore.names import CONTROL

if TYPE_CHECKING:
    from sqlite_utils import Database

GENESIS_HASH = "0" * 64
VERSION_CACHE_SIZE = 200_000
SEPARATOR = "\x1f"


def create_event_log(db: Database) -> None:
    """The append-only log table, its indexes and its guard triggers."""
    db.execute(
        """
        CREATE TABLE events (
            position INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL,
            program TEXT NOT NULL,
            stream TEXT NOT NULL,
            version INTEGER NOT NULL,
            type TEXT NOT NULL,
            schema INTEGER NOT NULL,
            occurred_at TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            actor TEXT NOT NULL,
            idempotency_key TEXT,
            data TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL,
            UNIQUE (program, stream, version)
        )
        """
    )
    db.execute(
        "CREATE INDEX events_idempotency ON events (program, idempotency_key) "
        "WHERE idempotency_key IS NOT NULL"
    )
    for action in ("UPDATE", "DELETE"):
        db.execute(
            f"""
            CREATE TRIGGER events_no_{action.lower()} BEFORE {action} ON events
            BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END
            """
        )


def create_command_keys(db: Database) -> None:
    """Idempotency keys with a fingerprint of the command that first used them."""
    db.execute(
        """
        CREATE TABLE command_keys (
            program TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            position INTEGER NOT NULL,
            PRIMARY KEY (program, key)
        )
        """
    )


# Named, ordered schema steps of the log; applied by rmcore.db.migrate. Append, never edit.
LOG_MIGRATIONS = (
    ("create_event_log", create_event_log),
    ("create_command_keys", create_command_keys),
)


class StoreError(Exception):
    """The store could not do what was asked (busy, conflict, bad envelope)."""


class ConcurrencyError(StoreError):
    """A stream had moved on from the version the writer expected."""


@frozen
class NewEvent:
    """An encoded event waiting to be appended."""

    stream: str
    type: str
    schema: int
    occurred_at: str
    data: str
    expected_version: int | None = None


class StoredEvent(NamedTuple):
    """An event as it stands in the log, with its full envelope.

    A named tuple rather than an attrs class: replay and verify build millions of them.
    """

    position: int
    event_id: str
    program: str
    stream: str
    version: int
    type: str
    schema: int
    occurred_at: str
    recorded_at: str
    actor: str
    idempotency_key: str | None
    data: str
    prev_hash: str
    hash: str

    def envelope(self) -> dict:
        """The envelope as a plain dict (``data`` stays canonical JSON text)."""
        return self._asdict()


COLUMNS = StoredEvent._fields
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM events"
_INSERT = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"

# The hashed text (prev_hash followed by the canonical envelope) as bytes, built by
# SQLite in one printf call for verification. Must match chain_hash(canonical_envelope()).
_FIELD_FORMATS = ["%d", "%s", "%s", "%s", "%d", "%s", "%d", "%s", "%s", "%s", "%s", "%s"]
HASHED_SQL = (
    "CAST(prev_hash || printf('"
    + SEPARATOR.join(_FIELD_FORMATS)
    + "', position, event_id, program, stream, version, type, schema, occurred_at,"
    " recorded_at, actor, coalesce(idempotency_key, ''), data) AS BLOB)"
)
# printf's %s ends a value at its first NUL character, and %d reads only the number at the
# start of a text: text hidden after a NUL, or after the digits of a version, would not
# reach the hashed text. No append stores either (envelope texts hold no control
# characters, canonical JSON escapes them), so verify also compares the hashed text's
# length with the byte length of every field, which a row hiding text fails. (Checking
# each field's type as well would catch a text stored as a blob of the same bytes, which
# hides nothing from the hash, at a quarter more of verify's time.)
_HASHED_FIELDS = ("prev_hash", "event_id", "program", "stream", "version", "type", "schema",
                  "occurred_at", "recorded_at", "actor", "coalesce(idempotency_key, '')",
                  "data")  # fmt: skip
HASHED_LENGTH_SQL = f"{len(_FIELD_FORMATS) - 1} + length(position) + " + " + ".join(
    f"length(CAST({field} AS BLOB))" for field in _HASHED_FIELDS
)


def _changed_outside(what: str) -> str:
    """The message for a log value no append writes."""
    return (
        f"{what}: the log was changed outside rmcore, so nothing more is appended to it;"
        " `rmcore verify` names the first bad position"
    )


def connect_read_only(path: str | os.PathLike) -> sqlite3.Connection:
    """A read-only connection to the database file at ``path`` (any file name)."""
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)


def canonical_envelope(
    position: int,
    event_id: str,
    program: str,
    stream: str,
    version: int,
    type: str,
    schema: int,
    occurred_at: str,
    recorded_at: str,
    actor: str,
    idempotency_key: str | None,
    data: str,
) -> str:
    """The envelope fields joined with the unit separator (0x1f), as they are hashed."""
    return (
        f"{position}\x1f{event_id}\x1f{program}\x1f{stream}\x1f{version}\x1f{type}\x1f"
        f"{schema}\x1f{occurred_at}\x1f{recorded_at}\x1f{actor}\x1f{idempotency_key or ''}\x1f"
        f"{data}"
    )


def chain_hash(prev_hash: str, canonical: str) -> str:
    """``sha256(prev_hash + canonical envelope)`` as hex."""
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def new_event_ids(count: int) -> list[str]:
    """Time-ordered UUIDs (version 7 layout: millisecond time, then random bits)."""
    millis = f"{time.time_ns() // 1_000_000:012x}"
    randomness = os.urandom(10 * count).hex()
    ids = []
    for i in range(0, 20 * count, 20):
        r = randomness[i : i + 20]
        variant = "89ab"[int(r[3], 16) & 3]
        ids.append(f"{millis[:8]}-{millis[8:]}-7{r[:3]}-{variant}{r[4:7]}-{r[8:20]}")
    return ids


def utc_now() -> str:
    """System time as stored in ``recorded_at``: ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    moment = time.gmtime(seconds)
    if moment.tm_sec > 59 or not 1000 <= moment.tm_year <= 9999:  # a leap second, odd clocks
        moment = datetime.fromtimestamp(seconds, timezone.utc)
        return f"{moment.isoformat(timespec='seconds')[:-6]}.{micros:06d}Z"
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', moment)}.{micros:06d}Z"


def check_envelope_text(name: str, value: str | None) -> None:
    """Refuse envelope strings that are empty or hold control characters."""
    if value is None:
        return
    if not value or CONTROL.search(value):
        raise StoreError(f"{name} must be non-empty text without control characters")


def check_envelope_texts(*labelled: tuple[str, str | None]) -> None:
    """:func:`check_envelope_text` for several ``(name, value)`` pairs, with one search when
    all are fine (the common case, on every append)."""
    values = [value for _, value in labelled if value is not None]
    if all(values) and not CONTROL.search("".join(values)):
        return
    for name, value in labelled:
        check_envelope_text(name, value)


@frozen
class EventFilter:
    """Which events to read: positions, program, types, streams, business dates, actor."""

    since: int = 0
    until: int | None = None
    program: str | None = None
    types: Sequence[str] | None = None
    streams: Sequence[str] | None = None
    occurred_from: str | None = None
    occurred_to: str | None = None
    actor: str | None = None
    # Walk the log in position order instead of the (program, stream) index: faster when
    # the program holds most of the log, slower for a small program in a big one.
    walk_positions: bool = False

    def sql(self) -> tuple[str, list]:
        """The WHERE clause and its parameters."""
        where, params = ["position > ?"], [self.since]
        for column, operator, value in (
            ("position", "<=", self.until),
            ("+program" if self.walk_positions else "program", "=", self.program),
            ("occurred_at", ">=", self.occurred_from),
            ("occurred_at", "<=", self.occurred_to),
            ("actor", "=", self.actor),
        ):
            if value is not None:
                where.append(f"{column} {operator} ?")
                params.append(value)
        for column, values in (("type", self.types), ("stream", self.streams)):
            if values:
                where.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        return " AND ".join(where), params


_INTEGER_COLUMNS = ("position", "version", "schema")
# One envelope as one line of JSON, keys in envelope order. SQLite builds it in a single
# printf: integers as they are, text through json_quote (idempotency_key becomes null when
# unset), and the payload as stored, since it is canonical JSON already (rmcore.codec).
# The same text as json_object(..., 'data', json(data), ...), without parsing every
# payload again.
ENVELOPE_JSON_SQL = (
    "printf('{"
    + ",".join(f'"{name}":%{"d" if name in _INTEGER_COLUMNS else "s"}' for name in COLUMNS)
    + "}', "
    + ", ".join(
        name if name in (*_INTEGER_COLUMNS, "data") else f"json_quote({name})" for name in COLUMNS
    )
    + ")"
)


class SQLiteEventStore:
    """The event log in one SQLite database (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection, busy_retry_seconds: float = 60.0) -> None:
        self.conn = conn
        self.busy_retry_seconds = busy_retry_seconds
        # Stream versions this connection appended, valid only while the head is the one
        # it left behind: any other writer moves the head and the cache is dropped.
        self._versions: dict[tuple[str, str], int] = {}
        self._versions_head: str | None = None
        # Called after a rollback, so that in-memory state written in the transaction
        # (such as new subject keys) is forgotten with it.
        self.on_rollback: list[Callable[[], None]] = []

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction (``BEGIN IMMEDIATE``): read-then-write without races."""
        if self.conn.in_transaction:
            raise StoreError("a write transaction is already open on this connection")
        self._begin_immediate()
        try:
            yield
        except BaseException:
            self._versions_head = None
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            for forget_state in self.on_rollback:
                forget_state()
            raise
        else:
            self.conn.execute("COMMIT")

    def _begin_immediate(self) -> None:
        # busy_timeout already waits; this loop covers the cases where SQLite gives up
        # at once instead (for instance while another connection checkpoints the WAL).
        deadline = time.monotonic() + self.busy_retry_seconds
        delay = 0.005
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise StoreError(
                        "the database stayed busy with another writer; try again"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def head(self) -> tuple[int, str]:
        """The last position and its hash; ``(0, GENESIS_HASH)`` for an empty log."""
        row = self.conn.execute(
            "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
        ).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def stream_version(self, program: str, stream: str) -> int:
        """The last version of a stream, 0 if it has no events."""
        row = self.conn.execute(
            "SELECT version FROM events WHERE program = ? AND stream = ?"
            " ORDER BY version DESC LIMIT 1",
            (program, stream),
        ).fetchone()
        return row[0] if row else 0

    def stream_versions(self, program: str, streams: set[str]) -> dict[tuple[str, str], int]:
        """The last version of each stream (0 for new ones), a few queries per batch."""
        found = dict.fromkeys(((program, stream) for stream in streams), 0)
        ordered = sorted(streams)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start : start + 500]
            rows = self.conn.execute(
                f"SELECT stream, max(version) FROM events WHERE program = ? AND stream IN"
                f" ({', '.join('?' * len(chunk))}) GROUP BY stream",
                (program, *chunk),
            )
            for stream, version in rows:
                if not isinstance(version, int):
                    raise StoreError(
                        _changed_outside(f"the last version of {stream} is {version!r}")
                    )
                found[(program, stream)] = version
        return found

    def append(
        self,
        program: str,
        events: Sequence[NewEvent],
        *,
        actor: str,
        idempotency_key: str | None = None,
        recorded_at: str | None = None,
    ) -> list[StoredEvent]:
        """Append events in order; must run inside :meth:`transaction`."""
        check_envelope_texts(
            ("program", program), ("actor", actor), ("idempotency key", idempotency_key)
        )
        recorded_at = recorded_at or utc_now()
        head = self._write_head()
        versions = self._stream_cache(program, {new.stream for new in events}, head[1])
        drafts = []
        for new, event_id in zip(events, new_event_ids(len(events))):
            check_envelope_texts(("stream", new.stream), ("occurred_at", new.occurred_at))
            key = (program, new.stream)
            version = versions[key]
            if new.expected_version is not None and new.expected_version != version:
                raise ConcurrencyError(
                    f"{new.stream} is at version {version}, expected {new.expected_version}"
                )
            versions[key] = version = version + 1
            drafts.append(
                (event_id, program, new.stream, version, new.type, new.schema,
                 new.occurred_at, recorded_at, actor, idempotency_key, new.data)
            )  # fmt: skip
        return self._seal(drafts, head)

    def append_encoded(
        self,
        program: str,
        events: Sequence[tuple[str, str, int, str, str]],
        *,
        actor: str,
        idempotency_key: str | None = None,
        recorded_at: str | None = None,
    ) -> list[StoredEvent]:
        """Append ``(stream, type, schema, occurred_at, data)`` tuples in order, as
        :meth:`append` does, for bulk writers such as the people import: no object per
        event to build first, and the streams' versions looked up for this call alone, so
        the connection's version cache does not grow with the number of streams written."""
        streams = [event[0] for event in events]
        check_envelope_texts(
            ("program", program),
            ("actor", actor),
            ("idempotency key", idempotency_key),
            *(("stream", stream) for stream in streams),
            *(("occurred_at", at) for at in {event[3] for event in events}),
        )
        head = self._write_head()
        recorded_at = recorded_at or utc_now()
        if self._versions_head != head[1]:
            self._versions.clear()  # another writer moved the head since it was filled
        versions = self.stream_versions(program, set(streams))
        drafts = []
        for (stream, type_name, schema, occurred_at, data), event_id in zip(
            events, new_event_ids(len(events))
        ):
            key = (program, stream)
            versions[key] = version = versions[key] + 1
            drafts.append(
                (event_id, program, stream, version, type_name, schema, occurred_at,
                 recorded_at, actor, idempotency_key, data)
            )  # fmt: skip
        stored = self._seal(drafts, head)
        cached = self._versions
        for key, version in versions.items():  # keep the cache right, without growing it
            if key in cached:
                cached[key] = version
        return stored

    def append_copies(self, events: Sequence[StoredEvent]) -> list[StoredEvent]:
        """Append events carried over from another log (``import-log``): their envelopes are
        kept, except position and hashes, which continue this log's chain. Each event's
        version must follow its stream's last version here."""
        drafts = []
        for program in {e.program for e in events}:
            check_envelope_text("program", program)
        head = self._write_head()
        caches = {
            program: self._stream_cache(
                program, {e.stream for e in events if e.program == program}, head[1]
            )
            for program in {e.program for e in events}
        }
        for e in events:
            for label, value in (
                ("event id", e.event_id),
                ("stream", e.stream),
                ("occurred_at", e.occurred_at),
                ("recorded_at", e.recorded_at),
                ("actor", e.actor),
                ("idempotency key", e.idempotency_key),
            ):
                check_envelope_text(label, value)  # fmt: skip
            versions = caches[e.program]
            key = (e.program, e.stream)
            if e.version != versions[key] + 1:
                raise ConcurrencyError(
                    f"{e.stream} in {e.program} is at version {versions[key]} here; "
                    f"the incoming event has version {e.version}"
                )
            versions[key] = e.version
            drafts.append(
                (e.event_id, e.program, e.stream, e.version, e.type, e.schema,
                 e.occurred_at, e.recorded_at, e.actor, e.idempotency_key, e.data)
            )  # fmt: skip
        return self._seal(drafts, head)

    def _write_head(self) -> tuple[int, str]:
        """The head, read once per append inside the write transaction (it cannot move)."""
        if not self.conn.in_transaction:
            raise StoreError("append needs an open write transaction")
        position, digest = self.head()
        if not isinstance(digest, str):
            raise StoreError(_changed_outside(f"the hash at position {position} is {digest!r}"))
        return position, digest

    def _stream_cache(
        self, program: str, streams: set[str], head_hash: str
    ) -> dict[tuple[str, str], int]:
        """The connection's stream-version cache, valid for the head ``head_hash`` and
        filled for ``streams``."""
        if self._versions_head != head_hash or len(self._versions) > VERSION_CACHE_SIZE:
            self._versions.clear()
            self._versions_head = head_hash
        unknown = {stream for stream in streams if (program, stream) not in self._versions}
        if unknown:
            self._versions.update(self.stream_versions(program, unknown))
        return self._versions

    def _seal(self, drafts: list[tuple], head: tuple[int, str]) -> list[StoredEvent]:
        """Give drafts (envelopes without position and hashes) their place in the chain
        after ``head``, the position and hash read in this transaction."""
        position, prev_hash = head
        stored: list[StoredEvent] = []
        for draft in drafts:
            position += 1
            digest = chain_hash(prev_hash, canonical_envelope(position, *draft))
            stored.append(StoredEvent(position, *draft, prev_hash, digest))
            prev_hash = digest
        self._versions_head = None  # until the insert has succeeded
        self._insert(stored)
        self._versions_head = prev_hash
        return stored

    def _insert(self, stored: Sequence[StoredEvent]) -> None:
        try:
            if len(stored) == 1:  # most commands: execute costs less than executemany
                self.conn.execute(_INSERT, stored[0])
            else:
                self.conn.executemany(_INSERT, stored)
        except sqlite3.IntegrityError as exc:
            raise ConcurrencyError(f"the log moved on while appending: {exc}") from exc

    def read(
        self,
        since: int = 0,
        *,
        program: str | None = None,
        types: Sequence[str] | None = None,
        until: int | None = None,
        batch: int = 2000,
        where: EventFilter | None = None,
    ) -> Iterator[StoredEvent]:
        """Events after position ``since`` in log order, streamed in batches."""
        where = attrs.evolve(
            where or EventFilter(), since=since, until=until, program=program, types=types
        )
        clause, params = where.sql()
        cursor = self.conn.execute(f"{_SELECT} WHERE {clause} ORDER BY position", params)
        while rows := cursor.fetchmany(batch):
            yield from map(StoredEvent._make, rows)

    def json_lines(
        self, where: EventFilter, batch: int = 5000
    ) -> Iterator[list[tuple[int, str, str]]]:
        """Batches of ``(position, hash, envelope as one line of JSON)``, built by SQLite."""
        clause, params = where.sql()
        cursor = self.conn.execute(
            f"SELECT position, hash, {ENVELOPE_JSON_SQL} FROM events WHERE {clause}"
            " ORDER BY position",
            params,
        )
        while rows := cursor.fetchmany(batch):
            yield rows

    def json_line_blocks(
        self, where: EventFilter, batch: int = 2000
    ) -> Iterator[tuple[int, bytes]]:
        """The envelopes as JSON lines in blocks of up to ``batch`` events: ``(last
        position, UTF-8 lines each ending in a newline)``, ready to write as they are."""
        if where.program is not None and not where.walk_positions:
            # Read through the (program, stream) index and sorted once: one statement.
            clause, params = where.sql()
            cursor = self.conn.execute(
                f"SELECT position, CAST({ENVELOPE_JSON_SQL} AS BLOB) FROM events"
                f" WHERE {clause} ORDER BY position",
                params,
            )
            while rows := cursor.fetchmany(batch):
                yield rows[-1][0], b"\n".join([line for _, line in rows]) + b"\n"
            return
        # Walking the log by position, each block is one statement that resumes after the
        # last position, and SQLite joins the block's lines itself.
        while True:
            clause, params = where.sql()
            last, block = self.conn.execute(
                "SELECT max(position), CAST(group_concat(line, char(10)) || char(10) AS BLOB)"
                f" FROM (SELECT position, {ENVELOPE_JSON_SQL} AS line FROM events"
                f" WHERE {clause} ORDER BY position LIMIT {int(batch)})",
                params,
            ).fetchone()
            if last is None:
                return
            yield last, block
            where = attrs.evolve(where, since=last)

    PROJECTION_COLUMNS = (
        "position",
        "program",
        "type",
        "schema",
        "occurred_at",
        "recorded_at",
        "data",
    )

    def scan(
        self,
        since: int = 0,
        *,
        batch: int = 5000,
        occurred_until: str | None = None,
        until: int | None = None,
        leave_out: Sequence[tuple[str, int]] = (),
    ) -> Iterator[list[tuple]]:
        """Batches of plain ``PROJECTION_COLUMNS`` tuples after ``since`` (up to position
        ``until``), for folds; ``occurred_until`` keeps only what had happened in the
        world by then, ``leave_out`` skips events of these ``(type, schema)`` kinds."""
        where, params = "position > ?", [since]
        if until is not None:
            where += " AND position <= ?"
            params.append(until)
        if occurred_until is not None:
            where += " AND occurred_at <= ?"
            params.append(occurred_until)
        for type_name, schema in leave_out:
            where += " AND NOT (type = ? AND schema = ?)"
            params += [type_name, schema]
        cursor = self.conn.execute(
            f"SELECT {', '.join(self.PROJECTION_COLUMNS)} FROM events"
            f" WHERE {where} ORDER BY position",
            params,
        )
        try:
            while rows := cursor.fetchmany(batch):
                yield rows
        finally:  # also when the fold stops early: the connection has no statement left
            cursor.close()

    def program_counts(self, *, occurred_until: str | None = None) -> list[tuple]:
        """``(program, first position, last position, events, first event's occurred_at)``
        for each program in the log; ``occurred_until`` as for :meth:`scan`."""
        if occurred_until is None:
            only = self.conn.execute(
                "SELECT (SELECT program FROM events ORDER BY program LIMIT 1),"
                " (SELECT program FROM events ORDER BY program DESC LIMIT 1)"
            ).fetchone()
            if only[0] is None:
                return []
            if only[0] == only[1]:  # one program, the usual case: three quick lookups
                first, last, events = self.conn.execute(
                    "SELECT (SELECT min(position) FROM events),"
                    " (SELECT max(position) FROM events), (SELECT count(*) FROM events)"
                ).fetchone()
                return [(only[0], first, last, events, self._occurred_at(first))]
            # the (program, stream, version) index covers this
            source, params = "events", []
        else:  # one pass over the table, not the index plus a lookup of every row
            source, params = "events NOT INDEXED WHERE occurred_at <= ?", [occurred_until]
        counts = self.conn.execute(
            f"SELECT program, min(position), max(position), count(*) FROM {source}"
            " GROUP BY program",
            params,
        ).fetchall()
        return [
            (program, first, last, events, self._occurred_at(first))
            for program, first, last, events in counts
        ]

    def _occurred_at(self, position: int) -> str:
        return self.conn.execute(
            "SELECT occurred_at FROM events WHERE position = ?", (position,)
        ).fetchone()[0]

    def read_stream(self, program: str, stream: str) -> list[StoredEvent]:
        """Every event of one stream, oldest first."""
        rows = self.conn.execute(
            f"{_SELECT} WHERE program = ? AND stream = ? ORDER BY version", (program, stream)
        ).fetchall()
        return [StoredEvent._make(row) for row in rows]

    def remember_key(self, program: str, key: str, fingerprint: str, position: int) -> None:
        """Record which command an idempotency key belongs to (inside the transaction)."""
        self.conn.execute(
            "INSERT INTO command_keys (program, key, fingerprint, position) VALUES (?, ?, ?, ?)",
            (program, key, fingerprint, position),
        )

    def recall_key(self, program: str, key: str) -> tuple[str, int] | None:
        """``(fingerprint, position)`` of the command that used this key, if one did."""
        row = self.conn.execute(
            "SELECT fingerprint, position FROM command_keys WHERE program = ? AND key = ?",
            (program, key),
        ).fetchone()
        return (row[0], row[1]) if row else None

    def find_by_idempotency_key(self, program: str, key: str) -> list[StoredEvent]:
        """The events a command with this idempotency key appended, if any."""
        rows = self.conn.execute(
            f"{_SELECT} WHERE program = ? AND idempotency_key = ? ORDER BY position",
            (program, key),
        ).fetchall()
        return [StoredEvent._make(row) for row in rows]

    def chain_rows(
        self,
        since: int = 0,
        until: int | None = None,
        batch: int = 5000,
        *,
        with_payload: bool = False,
    ) -> Iterator[list[tuple]]:
        """Batches of ``(position, program, stream, version, prev_hash, hash, hashed_bytes,
        hashed_length)``, followed by ``type, schema, data`` when ``with_payload``.
        ``hashed_length`` is what the length of ``hashed_bytes`` must be (see
        ``HASHED_LENGTH_SQL``)."""
        payload = ", type, schema, data" if with_payload else ""
        cursor = self.conn.execute(
            "SELECT position, program, stream, version, prev_hash, hash,"
            f" {HASHED_SQL}, {HASHED_LENGTH_SQL}{payload}"
            " FROM events WHERE position > ? AND position <= ? ORDER BY position",
            (since, until if until is not None else 2**62),
        )
        while rows := cursor.fetchmany(batch):
            yield rows
