"""Questions answered from the read models (never by replaying the log)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

from attrs import frozen

from rmcore.model import PERSON_COLUMNS, Pair, Person

PAIR_COLUMNS = (
    "pair_id",
    "mentor_id",
    "mentee_id",
    "status",
    "paired_at",
    "ended_at",
    "strategy",
    "score",
    "reasons",
    "goals",
)
_JSON_FIELDS = {"skills_offered": list, "skills_sought": list, "goals": list, "reasons": dict}


REPLAY_HINT = "the read models are damaged; `rmcore replay` rebuilds them from the log"


class DamagedReadModels(Exception):
    """A read-model row holds what no fold writes (the file was changed outside rmcore)."""


def stored_json(value: Any, where: str, kind: type | None = None) -> Any:
    """``value``, JSON text a fold wrote into a read model, decoded (to a ``kind``, if
    given); a clear error if it is not (``where`` names the table and column)."""
    try:
        decoded = json.loads(value)
    except (ValueError, TypeError):  # not text, not UTF-8, or not JSON
        decoded = value
    else:
        if kind is None or isinstance(decoded, kind):
            return decoded
    what = "JSON" if decoded is value else f"a JSON {'array' if kind is list else 'object'}"
    raise DamagedReadModels(f"{where} holds a value that is not {what}: {REPLAY_HINT}")


def _row_dict(columns: tuple[str, ...], row: tuple, table: str) -> dict[str, Any]:
    found = {}
    for name, value in zip(columns, row):
        if name in _JSON_FIELDS:
            value = stored_json(value, f"{table}.{name}", _JSON_FIELDS[name])
        elif isinstance(value, bytes):  # no fold writes a blob: dates and ids are text
            raise DamagedReadModels(f"{table}.{name} holds bytes where text belongs: {REPLAY_HINT}")
        found[name] = value
    return found


def _person(row: tuple) -> Person:
    return Person(**_row_dict(PERSON_COLUMNS, row, "people"))


def _pair(row: tuple) -> Pair:
    return Pair(**_row_dict(PAIR_COLUMNS, row, "pairs"))


_PEOPLE_SQL = f"SELECT {', '.join(PERSON_COLUMNS)} FROM people"
_PAIRS_SQL = f"SELECT {', '.join(PAIR_COLUMNS)} FROM pairs"


class SqlState:
    """The rules' view of one program, read from the projections (see commands.State)."""

    def __init__(self, conn: sqlite3.Connection, program: str) -> None:
        self.conn = conn
        self.program = program

    def person(self, person_id: str) -> Person | None:
        """The person with this id, active or not."""
        row = self.conn.execute(
            f"{_PEOPLE_SQL} WHERE program = ? AND person_id = ?", (self.program, person_id)
        ).fetchone()
        return _person(row) if row else None

    def pair(self, pair_id: str) -> Pair | None:
        """The pair with this id, active or not."""
        row = self.conn.execute(
            f"{_PAIRS_SQL} WHERE program = ? AND pair_id = ?", (self.program, pair_id)
        ).fetchone()
        return _pair(row) if row else None

    def active_pairs_of(self, person_id: str) -> list[Pair]:
        """Active pairs in which the person is mentor or mentee."""
        rows = self.conn.execute(
            f"{_PAIRS_SQL} WHERE program = ? AND mentor_id = ? AND status = 'active'"
            f" UNION ALL {_PAIRS_SQL} WHERE program = ? AND mentee_id = ? AND status = 'active'",
            (self.program, person_id, self.program, person_id),
        ).fetchall()
        return [_pair(row) for row in rows]

    def pairs_between(self, a: str, b: str) -> list[Pair]:
        """Every pair, active or ended, between two people (either direction)."""
        rows = self.conn.execute(
            f"{_PAIRS_SQL} WHERE program = ? AND mentor_id = ? AND mentee_id = ?"
            f" UNION ALL {_PAIRS_SQL} WHERE program = ? AND mentor_id = ? AND mentee_id = ?",
            (self.program, a, b, self.program, b, a),
        ).fetchall()
        return [_pair(row) for row in rows]

    def pairs_of(self, person_id: str) -> list[Pair]:
        """Every pair, active or ended, in which the person is mentor or mentee."""
        rows = self.conn.execute(
            f"{_PAIRS_SQL} WHERE program = ? AND mentor_id = ?"
            f" UNION ALL {_PAIRS_SQL} WHERE program = ? AND mentee_id = ?",
            (self.program, person_id, self.program, person_id),
        ).fetchall()
        return [_pair(row) for row in rows]

    def last_activity(self, pair_id: str) -> str | None:
        """The date of the pair's latest session or feedback, if any."""
        row = self.conn.execute(
            "SELECT max(at) FROM (SELECT max(held_at) AS at FROM sessions"
            " WHERE program = ?1 AND pair_id = ?2 UNION ALL SELECT max(given_at) FROM feedback"
            " WHERE program = ?1 AND pair_id = ?2)",
            (self.program, pair_id),
        ).fetchone()
        return row[0]

    def config(self, key: str) -> Any:
        """A program setting, or None."""
        row = self.conn.execute(
            "SELECT value FROM config WHERE program = ? AND key = ?", (self.program, key)
        ).fetchone()
        return stored_json(row[0], f"config.value of {key!r}") if row else None


def program_config(conn: sqlite3.Connection, program: str) -> dict[str, Any]:
    """Every setting of a program, as plugins receive it."""
    rows = conn.execute(
        "SELECT key, value FROM config WHERE program = ? ORDER BY key", (program,)
    ).fetchall()
    return {key: stored_json(value, f"config.value of {key!r}") for key, value in rows}


def config_rows(conn: sqlite3.Connection, program: str) -> list[dict[str, Any]]:
    """Settings with the business time they were last set."""
    rows = conn.execute(
        "SELECT key, value, set_at FROM config WHERE program = ? ORDER BY key", (program,)
    ).fetchall()
    return [
        {"key": key, "value": stored_json(value, f"config.value of {key!r}"), "set_at": at}
        for key, value, at in rows
    ]


def people(
    conn: sqlite3.Connection, program: str, *, status: str | None = "active"
) -> Iterator[Person]:
    """People of a program in id order; ``status=None`` for everyone."""
    sql, params = f"{_PEOPLE_SQL} WHERE program = ?", [program]
    if status:
        sql += " AND status = ?"
        params.append(status)
    for row in conn.execute(sql + " ORDER BY person_id", params):
        yield _person(row)


def pair_rows(
    conn: sqlite3.Connection, program: str, *, status: str | None = "active"
) -> Iterator[dict[str, Any]]:
    """Pairs with their session count, minutes and last session date."""
    sql = (
        "SELECT p.pair_id, p.mentor_id, p.mentee_id, p.status, p.paired_at, p.ended_at,"
        " p.strategy, p.score, count(s.position), coalesce(sum(s.minutes), 0), max(s.held_at)"
        " FROM pairs p LEFT JOIN sessions s ON s.program = p.program AND s.pair_id = p.pair_id"
        " WHERE p.program = ?"
    )
    params: list = [program]
    if status:
        sql += " AND p.status = ?"
        params.append(status)
    sql += " GROUP BY p.pair_id ORDER BY p.pair_id"
    names = (
        "pair_id",
        "mentor_id",
        "mentee_id",
        "status",
        "paired_at",
        "ended_at",
        "strategy",
        "score",
        "sessions",
        "minutes",
        "last_session_at",
    )
    for row in conn.execute(sql, params):
        yield dict(zip(names, row))


def pairs(conn: sqlite3.Connection, program: str, *, status: str | None = "active") -> list[Pair]:
    """Pairs of a program as model objects; ``status=None`` for every pair."""
    sql, params = f"{_PAIRS_SQL} WHERE program = ?", [program]
    if status:
        sql += " AND status = ?"
        params.append(status)
    return [_pair(row) for row in conn.execute(sql + " ORDER BY pair_id", params)]


@frozen
class Snapshot:
    """What a point-in-time copy holds: ``as-of`` a business date or ``known-at`` a time."""

    kind: str
    moment: str
    source: str
    head: int

    @property
    def occurred_until(self) -> str | None:
        """The business-date cut its read models were folded with (as-of copies only)."""
        return self.moment if self.kind == "as-of" else None


def snapshot_of(conn: sqlite3.Connection) -> Snapshot | None:
    """The snapshot description of a point-in-time copy, or None for a live database."""
    if not conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'snapshot'"
    ).fetchone():
        return None
    row = conn.execute("SELECT kind, moment, source, head FROM snapshot").fetchone()
    return Snapshot(*row) if row else None


def mostly_program(conn: sqlite3.Connection, program: str, share: float = 0.2) -> bool:
    """Whether the program holds at least ``share`` of the whole log."""
    row = conn.execute(
        "SELECT events, (SELECT max(last_position) FROM programs) FROM programs WHERE program = ?",
        (program,),
    ).fetchone()
    if not (row and isinstance(row[0], int) and isinstance(row[1], int)):
        return False  # no program row (or a damaged one): walk by program, as for a small one
    return row[0] >= share * row[1]


def recorded_types(conn: sqlite3.Connection, types: list[str]) -> set[str]:
    """Which of ``types`` occur in the log (any program). The type column has no index:
    callers ask only about names the registry does not know, a rare path."""
    if not types:
        return set()
    rows = conn.execute(
        f"SELECT DISTINCT type FROM events WHERE type IN ({', '.join('?' * len(types))})",
        types,
    ).fetchall()
    return {row[0] for row in rows}


def program_position(conn: sqlite3.Connection, program: str) -> int:
    """The position of the program's last event (0 if it has none)."""
    row = conn.execute(
        "SELECT last_position FROM programs WHERE program = ?", (program,)
    ).fetchone()
    return row[0] if row else 0


def programs(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The programs in the database, with event counts and current size."""
    rows = conn.execute(
        "SELECT g.program, g.events, g.started_at,"
        " (SELECT count(*) FROM people p WHERE p.program = g.program AND p.status = 'active'),"
        " (SELECT count(*) FROM pairs q WHERE q.program = g.program AND q.status = 'active')"
        " FROM programs g ORDER BY g.program"
    ).fetchall()
    names = ("program", "events", "started_at", "active_people", "active_pairs")
    return [dict(zip(names, row)) for row in rows]
