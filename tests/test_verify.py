"""``rmcore verify``: a clean chain passes; every kind of tampering names its first position."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rmcore.store import canonical_envelope, chain_hash

COLUMNS = (
    "position, event_id, program, stream, version, type, schema, occurred_at, recorded_at,"
    " actor, idempotency_key, data, prev_hash, hash"
)


@contextmanager
def attacker(path: Path) -> Iterator[sqlite3.Connection]:
    """A raw connection with the two guard triggers dropped, as someone tampering would."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("DROP TRIGGER events_no_delete")
    try:
        yield conn
    finally:
        conn.close()


def failing_position(result) -> int:
    """The position named in verify's error message."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    match = re.match(r"Error: position (\d+): ", result.stderr)
    assert match, result.stderr
    return int(match.group(1))


@pytest.fixture
def tamper_db(populated_db: Path) -> Path:
    """The populated program; it holds at least 20 events."""
    conn = sqlite3.connect(populated_db)
    count = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    conn.close()
    assert count >= 20
    return populated_db


def test_a_clean_log_passes_verification(tamper_db: Path, run_cli, raw_log):
    """Exit 0 with the count and head hash."""
    result = run_cli("verify")
    assert result.exit_code == 0, result.stderr
    head_position, head_hash = raw_log.query(
        "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
    )[0]
    assert f"OK: {head_position} events" in result.stdout
    assert head_hash in result.stdout


def test_an_empty_log_passes_verification(run_cli):
    """Nothing appended yet is a valid chain too."""
    result = run_cli("verify")
    assert result.exit_code == 0, result.stderr
    assert "OK: 0 events" in result.stdout


def test_editing_one_payload_is_caught_at_that_position(tamper_db: Path, run_cli):
    """A rating changed from 4 to 5 no longer matches its hash."""
    with attacker(tamper_db) as conn:
        (position,) = conn.execute(
            "SELECT position FROM events WHERE type = 'feedback_given' AND data ->> 'rating' = 4"
        ).fetchone()
        conn.execute(
            "UPDATE events SET data = replace(data, '\"rating\":4', '\"rating\":5')"
            " WHERE position = ?",
            (position,),
        )
    result = run_cli("verify")
    assert failing_position(result) == position
    assert "do not match its hash" in result.stderr


def test_editing_an_envelope_field_is_caught_at_that_position(tamper_db: Path, run_cli):
    """Who did it is hashed as much as what happened."""
    with attacker(tamper_db) as conn:
        conn.execute("UPDATE events SET actor = 'someone-else' WHERE position = 9")
    assert failing_position(run_cli("verify")) == 9


@pytest.mark.parametrize("chain_only", [False, True], ids=["payloads", "chain-only"])
def test_a_log_written_in_many_scripts_passes(run_cli, chain_only: bool):
    """Text beyond ASCII in the envelope and the payload: the hashed text's length is
    counted in bytes."""
    env = ["--program", "été-2026", "--actor", "Zoë Ñúñez 王"]
    for person, role in (("soren", "mentor"), ("zoe", "mentee")):
        joined = run_cli(*env, "join", person, "--name", f"{person.title()} Łukasik",
                         "--email", f"{person}@example.org", "--role", role,
                         "--department", "Ingeniería", "--offers", "análisis de datos,日本語",
                         "--at", "2025-01-06")  # fmt: skip
        assert joined.exit_code == 0, joined.output
    assert run_cli(*env, "pair", "soren", "zoe", "--at", "2025-01-07").exit_code == 0
    result = run_cli("verify", *(["--chain-only"] if chain_only else []))
    assert result.exit_code == 0, result.output


HIDDEN_TEXT = [
    # (column, new value as SQL): the hashed text of each still reads as before
    ("actor", "actor || char(0) || 'mallory'"),
    ("event_id", "event_id || char(0) || 'x'"),
    ("occurred_at", "occurred_at || char(0) || char(27) || ']0;pwned' || char(7)"),
    ("recorded_at", "recorded_at || char(0) || 'later'"),
    ("idempotency_key", "CAST(x'00ff10' AS TEXT)"),
    ("type", "type || char(0) || 'x'"),
    ("data", "data || char(0) || '{\"rating\":1}'"),
    ("version", "version || char(0) || '9'"),
    ("version", "version || 'abc'"),
    ("schema", "schema || '.5'"),
    ("schema", "''"),
]


@pytest.mark.parametrize("chain_only", [False, True], ids=["payloads", "chain-only"])
@pytest.mark.parametrize(("column", "value"), HIDDEN_TEXT)
def test_text_hidden_where_the_hashed_text_stops_reading_is_caught(
    tamper_db: Path, run_cli, column: str, value: str, chain_only: bool
):
    """SQLite builds the hashed text with printf, whose %s stops at a NUL character and
    whose %d reads only a number's leading digits: text after either is still caught."""
    with attacker(tamper_db) as conn:
        conn.execute(f"UPDATE events SET {column} = {value} WHERE position = 9")
    result = run_cli("verify", *(["--chain-only"] if chain_only else []))
    assert failing_position(result) == 9
    assert all(line.isprintable() for line in result.stderr.splitlines())


def test_deleting_a_row_in_the_middle_is_caught_at_the_missing_position(tamper_db, run_cli):
    """A gap in positions is named as the missing one."""
    with attacker(tamper_db) as conn:
        conn.execute("DELETE FROM events WHERE position = 12")
    result = run_cli("verify")
    assert failing_position(result) == 12
    assert "position 12 is missing" in result.stderr


@pytest.mark.parametrize("args", [("replay",), ("replay", "--check")])
def test_a_replay_refuses_a_log_with_a_row_deleted(tamper_db: Path, run_cli, raw_log, args):
    """The read models are not rebuilt from a log with a hole in it; verify names it."""
    with attacker(tamper_db) as conn:
        conn.execute("DELETE FROM events WHERE position = 12")
    people_before = raw_log.query("SELECT * FROM people ORDER BY person_id")
    result = run_cli(*args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: the log is missing 1 event(s) below position ")
    assert "`rmcore verify` names the first gap" in result.stderr
    assert raw_log.query("SELECT * FROM people ORDER BY person_id") == people_before


def test_a_last_position_that_is_not_a_number_is_caught(tamper_db: Path, run_cli, raw_log):
    """SQLite's record of the highest position ever given, edited to text."""
    with attacker(tamper_db) as conn:
        conn.execute("UPDATE sqlite_sequence SET seq = 'abc' WHERE name = 'events'")
    result = run_cli("verify")
    assert failing_position(result) == raw_log.count() + 1
    assert "sqlite_sequence holds 'abc' as the log's last position" in result.stderr


@pytest.mark.parametrize(
    ("edit", "args", "message"),
    [
        ("UPDATE events SET version = 'x' WHERE position = (SELECT max(position) FROM events"
         " WHERE stream = 'pair:ada-grace')",
         ("session", "ada-grace", "--minutes", "20", "--at", "2025-03-03"),
         "Error: the last version of pair:ada-grace is 'x': the log was changed outside"),
        ("UPDATE events SET hash = x'00ff10' WHERE position = (SELECT max(position) FROM events)",
         ("join", "zoe", "--name", "Zoe", "--email", "zoe@example.org", "--role", "mentee"),
         "Error: the hash at position "),
    ],
)  # fmt: skip
def test_nothing_is_appended_after_a_log_row_edited_to_a_value_no_append_writes(
    tamper_db: Path, run_cli, raw_log, edit: str, args: tuple[str, ...], message: str
):
    with attacker(tamper_db) as conn:
        conn.execute(edit)
    before = raw_log.count()
    result = run_cli(*args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(message), result.stderr
    assert "`rmcore verify` names the first bad position" in result.stderr
    assert raw_log.count() == before


def test_deleting_a_row_and_renumbering_the_rest_is_caught(tamper_db: Path, run_cli):
    """Closing the gap does not help: the next row's prev_hash no longer links."""
    with attacker(tamper_db) as conn:
        conn.execute("DELETE FROM events WHERE position = 12")
        last = conn.execute("SELECT max(position) FROM events").fetchone()[0]
        for position in range(13, last + 1):
            conn.execute(
                "UPDATE events SET position = position - 1 WHERE position = ?", (position,)
            )
    assert failing_position(run_cli("verify")) == 12


def test_deleting_the_last_rows_is_caught_after_the_remaining_head(tamper_db: Path, run_cli):
    """A truncated log is still a valid chain, but the sequence remembers the lost rows."""
    with attacker(tamper_db) as conn:
        last = conn.execute("SELECT max(position) FROM events").fetchone()[0]
        conn.execute("DELETE FROM events WHERE position > ?", (last - 3,))
    result = run_cli("verify")
    assert failing_position(result) == last - 2
    assert f"positions {last - 2}-{last} were appended and later removed" in result.stderr


def swap_rows(conn: sqlite3.Connection, a: int, b: int) -> None:
    """Exchange every column but the position between rows ``a`` and ``b``."""
    names = [c.strip() for c in COLUMNS.split(",")][1:]
    row_a = conn.execute(f"SELECT {', '.join(names)} FROM events WHERE position = ?", (a,))
    row_a = row_a.fetchone()
    row_b = conn.execute(f"SELECT {', '.join(names)} FROM events WHERE position = ?", (b,))
    row_b = row_b.fetchone()
    assignments = ", ".join(f"{name} = ?" for name in names)
    conn.execute("BEGIN")
    conn.execute("UPDATE events SET event_id = 'swap', version = -version WHERE position = ?", (a,))
    conn.execute(f"UPDATE events SET {assignments} WHERE position = ?", (*row_a, b))
    conn.execute(f"UPDATE events SET {assignments} WHERE position = ?", (*row_b, a))
    conn.execute("COMMIT")


def test_swapping_two_rows_contents_is_caught_at_the_first_of_them(tamper_db: Path, run_cli):
    """Reordering history, hashes and all, breaks the links at the earlier position."""
    with attacker(tamper_db) as conn:
        swap_rows(conn, 14, 15)
        streams = conn.execute(
            "SELECT stream FROM events WHERE position IN (14, 15) ORDER BY position"
        ).fetchall()
        assert streams[0] != streams[1]
    assert failing_position(run_cli("verify")) == 14


def test_swapping_only_two_payloads_is_caught_at_the_first_of_them(tamper_db: Path, run_cli):
    """Each payload is bound to its own envelope."""
    with attacker(tamper_db) as conn:
        first, second = conn.execute(
            "SELECT data FROM events WHERE position IN (5, 6) ORDER BY position"
        ).fetchall()
        conn.execute("UPDATE events SET data = ? WHERE position = 5", second)
        conn.execute("UPDATE events SET data = ? WHERE position = 6", first)
    assert failing_position(run_cli("verify")) == 5


def test_changing_a_stream_version_is_caught_at_that_position(tamper_db: Path, run_cli):
    """The version is part of the hashed envelope."""
    with attacker(tamper_db) as conn:
        (position,) = conn.execute(
            "SELECT position FROM events WHERE stream = 'person:ken'"
        ).fetchone()
        conn.execute("UPDATE events SET version = 2 WHERE position = ?", (position,))
    assert failing_position(run_cli("verify")) == position


def test_a_version_jump_is_caught_even_when_the_attacker_rehashes_the_chain(
    tamper_db: Path, run_cli
):
    """Recomputing every hash after the edit still leaves person:ken jumping to version 2."""
    with attacker(tamper_db) as conn:
        (position,) = conn.execute(
            "SELECT position FROM events WHERE stream = 'person:ken'"
        ).fetchone()
        conn.execute("UPDATE events SET version = 2 WHERE position = ?", (position,))
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM events WHERE position >= ? ORDER BY position", (position,)
        ).fetchall()
        prev = rows[0][12]
        for row in rows:
            digest = chain_hash(prev, canonical_envelope(*row[:12]))
            conn.execute(
                "UPDATE events SET prev_hash = ?, hash = ? WHERE position = ?",
                (prev, digest, row[0]),
            )
            prev = digest
    result = run_cli("verify")
    assert failing_position(result) == position
    assert "person:ken in default jumps from version 0 to 2" in result.stderr


def test_verify_changes_nothing_in_the_log(tamper_db: Path, run_cli, raw_log):
    """Verification only reads."""
    before = raw_log.rows()
    assert run_cli("verify").exit_code == 0
    assert raw_log.rows() == before
