"""``rmcore verify``: anchors, payload decoding with today's code, and ``--deep``.

Tampering is done the way someone with write access to the file would do it: with a raw
sqlite3 connection, the guard triggers dropped, and (where it matters) every hash after
the edit recomputed so that the chain on its own looks intact.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from rmcore.store import GENESIS_HASH, canonical_envelope, chain_hash

FIELDS = (
    "position, event_id, program, stream, version, type, schema, occurred_at, recorded_at,"
    " actor, idempotency_key, data"
)


@contextmanager
def attacker(path: Path) -> Iterator[sqlite3.Connection]:
    """A raw connection to the file with the UPDATE and DELETE guards dropped."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS events_no_update")
    conn.execute("DROP TRIGGER IF EXISTS events_no_delete")
    try:
        yield conn
    finally:
        conn.close()


def rehash(conn: sqlite3.Connection, since: int = 1) -> None:
    """Recompute prev_hash and hash of every row from ``since`` on: a consistent forgery."""
    prev = GENESIS_HASH
    if since > 1:
        (prev,) = conn.execute(
            "SELECT hash FROM events WHERE position = ?", (since - 1,)
        ).fetchone()
    rows = conn.execute(
        f"SELECT {FIELDS} FROM events WHERE position >= ? ORDER BY position", (since,)
    ).fetchall()
    for row in rows:
        digest = chain_hash(prev, canonical_envelope(*row))
        conn.execute(
            "UPDATE events SET prev_hash = ?, hash = ? WHERE position = ?", (prev, digest, row[0])
        )
        prev = digest


def append_raw(conn: sqlite3.Connection, stream: str, type_name: str, schema: int, data: dict):
    """INSERT one correctly chained row at the end of the log, bypassing the codec."""
    head, prev = conn.execute(
        "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
    ).fetchone()
    (version,) = conn.execute(
        "SELECT max(version) FROM events WHERE program = 'default' AND stream = ?", (stream,)
    ).fetchone()
    fields = (head + 1, "0190a0a0-0000-7000-8000-000000000001", "default", stream,
              (version or 0) + 1, type_name, schema, "2025-03-02T10:00:00Z",
              "2025-03-02T10:00:00.000000Z", "hr-ops", None,
              json.dumps(data, sort_keys=True, separators=(",", ":")))  # fmt: skip
    digest = chain_hash(prev, canonical_envelope(*fields))
    conn.execute(
        f"INSERT INTO events ({FIELDS}, prev_hash, hash) VALUES ({', '.join('?' * 14)})",
        (*fields, prev, digest),
    )
    return head + 1


def failing_position(result) -> int:
    """The position named by ``Error: position N: ...``."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    match = re.match(r"Error: position (\d+): ", result.stderr)
    assert match, result.stderr
    return int(match.group(1))


def anchor_of(run_cli, db: Path | None = None) -> str:
    """``rmcore verify --anchor``: the POS:HASH line."""
    result = run_cli("verify", "--anchor", db=db)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def add_more(run_cli) -> None:
    """Append a few events after an anchor was taken."""
    for command in (
        ("session", "ada-raj", "--minutes", "45", "--at", "2025-04-02"),
        ("feedback", "ada-raj", "--by", "raj", "--rating", "5", "--at", "2025-04-03"),
        ("join", "zoe", "--name", "Zoe", "--email", "zoe@example.org", "--role", "mentee",
         "--at", "2025-04-04"),
    ):  # fmt: skip
        result = run_cli(*command)
        assert result.exit_code == 0, result.output


def set_rating(conn: sqlite3.Connection, position: int, rating: int) -> None:
    """Change the payload of a feedback row (or add a rating field to any row)."""
    conn.execute(
        "UPDATE events SET data = json_set(data, '$.rating', ?) WHERE position = ?",
        (rating, position),
    )


# Anchors -------------------------------------------------------------------------------


def test_the_anchor_is_the_head_position_and_hash(populated_db: Path, run_cli, raw_log):
    """One line, POS:HASH, nothing else."""
    result = run_cli("verify", "--anchor")
    assert result.exit_code == 0, result.output
    head = raw_log.query("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1")[0]
    assert result.stdout == f"{head[0]}:{head[1]}\n"


def test_the_anchor_of_an_empty_log_is_position_zero(run_cli):
    """Nothing recorded yet: 0 and the genesis hash."""
    assert anchor_of(run_cli) == f"0:{GENESIS_HASH}"


def test_a_log_that_only_grew_still_extends_its_anchor(populated_db: Path, run_cli, raw_log):
    """Anchor, append more, --against passes and says so."""
    anchor = anchor_of(run_cli)
    add_more(run_cli)
    assert anchor_of(run_cli) != anchor
    result = run_cli("verify", "--against", anchor)
    assert result.exit_code == 0, result.output
    position = anchor.split(":")[0]
    assert f"extends anchor {position}" in result.stdout
    assert f"OK: {raw_log.count()} events" in result.stdout


def test_the_anchor_of_the_current_head_passes(populated_db: Path, run_cli):
    """An unchanged log extends its own head."""
    anchor = anchor_of(run_cli)
    assert run_cli("verify", "--against", anchor).exit_code == 0


def rated_feedback_position(raw_log) -> int:
    """The position of the first feedback event."""
    return raw_log.query("SELECT min(position) FROM events WHERE type = 'feedback_given'")[0][0]


@pytest.mark.parametrize("where", ["first", "feedback", "anchor"])
def test_a_rewritten_history_before_the_anchor_fails_although_the_chain_looks_intact(
    populated_db: Path, run_cli, raw_log, where: str
):
    """Edit at or before the anchor and rehash everything after it: plain verify is
    fooled, --against is not, and names a position no later than the anchor."""
    anchor = anchor_of(run_cli)
    anchored = int(anchor.split(":")[0])
    add_more(run_cli)
    edited = {"first": 1, "feedback": rated_feedback_position(raw_log), "anchor": anchored}[where]
    with attacker(populated_db) as conn:
        conn.execute("UPDATE events SET actor = 'someone-else' WHERE position = ?", (edited,))
        rehash(conn, edited)
    assert run_cli("verify").exit_code == 0  # the chain alone cannot tell
    result = run_cli("verify", "--against", anchor)
    assert failing_position(result) <= anchored
    assert "anchored hash" in result.stderr


def test_an_edit_before_the_anchor_without_rehashing_is_caught_where_it_was_made(
    populated_db: Path, run_cli, raw_log
):
    """The chain check finds the edited row itself."""
    anchor = anchor_of(run_cli)
    add_more(run_cli)
    position = rated_feedback_position(raw_log)
    with attacker(populated_db) as conn:
        set_rating(conn, position, 1)
    assert failing_position(run_cli("verify", "--against", anchor)) == position
    assert failing_position(run_cli("verify")) == position


def test_an_edit_after_the_anchor_is_outside_what_the_anchor_proves(
    populated_db: Path, run_cli, raw_log
):
    """Rehashed rows after the anchor still extend it; only a later anchor would tell."""
    anchor = anchor_of(run_cli)
    anchored = int(anchor.split(":")[0])
    add_more(run_cli)
    with attacker(populated_db) as conn:
        conn.execute("UPDATE events SET actor = 'someone-else' WHERE position = ?",
                     (anchored + 1,))  # fmt: skip
        rehash(conn, anchored + 1)
    assert run_cli("verify", "--against", anchor).exit_code == 0


def test_a_log_cut_back_before_the_anchor_fails(populated_db: Path, run_cli, raw_log):
    """Rows deleted from the end (and the sequence reset) no longer reach the anchor."""
    add_more(run_cli)
    anchor = anchor_of(run_cli)
    anchored = int(anchor.split(":")[0])
    with attacker(populated_db) as conn:
        conn.execute("DELETE FROM events WHERE position > ?", (anchored - 3,))
        conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'events'",
                     (anchored - 3,))  # fmt: skip
        conn.execute("UPDATE checkpoints SET position = ?", (anchored - 3,))
    assert run_cli("verify").exit_code == 0  # a shorter log is a valid chain
    result = run_cli("verify", "--against", anchor)
    assert failing_position(result) <= anchored
    assert f"before the anchored position {anchored}" in result.stderr


def test_an_anchor_from_another_database_fails(populated_db: Path, run_cli, tmp_path: Path):
    """Same position, different hash: not the same history."""
    other = tmp_path / "other.db"
    assert run_cli("init", db=other).exit_code == 0
    for person in ("a1", "a2"):
        result = run_cli(
            "join", person, "--name", person, "--email", f"{person}@example.org",
            "--role", "mentee", "--at", "2025-01-01", db=other,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    foreign = anchor_of(run_cli, db=other)
    assert failing_position(run_cli("verify", "--against", foreign)) == 2


@pytest.mark.parametrize(
    "text",
    ["nonsense", "12", f"12{'a' * 64}", f"0:{'a' * 64}", f"-3:{'a' * 64}", f"3:{'a' * 63}",
     f"3:{'g' * 64}", f"x:{'a' * 64}", ":", ""],
)  # fmt: skip
def test_a_malformed_anchor_is_a_usage_error(populated_db: Path, run_cli, text: str):
    """Exit 2 naming --against; nothing is verified."""
    result = run_cli("verify", "--against", text)
    assert result.exit_code == 2, result.output
    assert "--against" in result.stderr
    assert "POS:HASH" in result.stderr


def test_an_anchor_hash_in_capitals_is_accepted(populated_db: Path, run_cli):
    """Hex is hex, whatever the case it was written down in."""
    position, digest = anchor_of(run_cli).split(":")
    assert run_cli("verify", "--against", f"{position}:{digest.upper()}").exit_code == 0


# Payloads decode with today's code -------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "type_name", "schema", "data", "why"),
    [
        ("pair:ada-grace", "session_held", 2,
         {"pair_id": "ada-grace", "minutes": 30, "topics": [], "mode": "virtual",
          "mood": "great"}, "mood"),
        ("pair:ada-grace", "session_held", 2, {"pair_id": "ada-grace", "topics": []},
         "minutes"),
        ("pair:ada-grace", "mystery_event", 1, {"pair_id": "ada-grace"}, "mystery_event"),
        ("pair:ada-grace", "session_held", 9,
         {"pair_id": "ada-grace", "minutes": 30, "topics": [], "mode": "virtual"}, "newer"),
        ("pair:ada-grace", "session_held", 1, {"pair_id": "ada-grace", "topics": []}, "upcast"),
    ],
    ids=["unknown-key", "missing-field", "unknown-type", "future-schema", "broken-old-schema"],
)  # fmt: skip
def test_a_payload_that_no_longer_decodes_fails_verify_but_passes_chain_only(
    populated_db: Path, run_cli, stream, type_name, schema, data, why
):
    """A correctly chained row that today's code cannot read is named with the reason."""
    with closing(sqlite3.connect(populated_db, isolation_level=None)) as conn:
        position = append_raw(conn, stream, type_name, schema, data)
    result = run_cli("verify")
    assert failing_position(result) == position
    assert "does not decode" in result.stderr
    assert why in result.stderr
    chain_only = run_cli("verify", "--chain-only")
    assert chain_only.exit_code == 0, chain_only.output
    assert "payloads decode" not in chain_only.stdout


def test_an_undecodable_payload_in_the_middle_is_the_first_bad_position(
    populated_db: Path, run_cli, raw_log
):
    """Rewritten and rehashed so the chain holds; decoding still finds the row."""
    position = rated_feedback_position(raw_log)
    with attacker(populated_db) as conn:
        conn.execute(
            "UPDATE events SET data = json_set(data, '$.stars', 5) WHERE position = ?",
            (position,),
        )
        rehash(conn, position)
    assert run_cli("verify", "--chain-only").exit_code == 0
    result = run_cli("verify")
    assert failing_position(result) == position
    assert "stars" in result.stderr


def test_an_old_schema_payload_decodes_through_its_upcaster(populated_db: Path, run_cli, raw_log):
    """A session_held of schema 1 (hours, no mode) is valid: verify and a deep check pass
    once the read models have folded it, with the hours turned into minutes."""
    with closing(sqlite3.connect(populated_db, isolation_level=None)) as conn:
        position = append_raw(
            conn, "pair:ada-raj", "session_held", 1,
            {"pair_id": "ada-raj", "hours": 1.5, "topics": ["delegation"]},
        )  # fmt: skip
    assert run_cli("verify").exit_code == 0
    assert run_cli("replay").exit_code == 0
    result = run_cli("verify", "--deep")
    assert result.exit_code == 0, result.output
    assert raw_log.query("SELECT minutes, mode FROM sessions WHERE position = ?", (position,)) == [
        (90, "virtual")
    ]


# --deep ---------------------------------------------------------------------------------


def test_deep_verification_passes_on_a_clean_database(populated_db: Path, run_cli, raw_log):
    """The read models equal a fresh replay."""
    result = run_cli("verify", "--deep")
    assert result.exit_code == 0, result.output
    assert "read models equal a replay" in result.stdout


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE people SET name = 'Mallory' WHERE person_id = 'ada'",
        "UPDATE pairs SET status = 'active', ended_at = NULL WHERE pair_id = 'mei-tom'",
        "DELETE FROM sessions WHERE minutes = 45",
        "INSERT INTO feedback VALUES (999, 'default', 'ada-raj', 'raj', 5, 1, '[]', '',"
        " '2025-03-01T00:00:00Z')",
        "UPDATE config SET value = '0.9' WHERE key = 'matching_skills.min_score'",
    ],
    ids=["person-renamed", "ended-pair-revived", "session-removed", "feedback-invented",
         "setting-changed"],
)  # fmt: skip
def test_deep_verification_fails_when_a_read_model_row_was_altered(
    populated_db: Path, run_cli, sql: str
):
    """The log is intact, so plain verify passes; --deep lists the difference, exit 1."""
    with closing(sqlite3.connect(populated_db, isolation_level=None)) as conn:
        conn.execute(sql)
    assert run_cli("verify").exit_code == 0
    result = run_cli("verify", "--deep")
    assert result.exit_code == 1
    assert "differ from a fresh replay" in result.stderr
    assert "Traceback" not in result.output


def test_deep_verification_checks_the_chain_first(populated_db: Path, run_cli, raw_log):
    """A broken chain is reported by position even with --deep."""
    position = rated_feedback_position(raw_log)
    with attacker(populated_db) as conn:
        set_rating(conn, position, 2)
    assert failing_position(run_cli("verify", "--deep")) == position


def test_verify_writes_nothing(populated_db: Path, run_cli, raw_log):
    """Verification, anchors and deep checks only read."""
    before = raw_log.rows()
    anchor = anchor_of(run_cli)
    for args in (("verify",), ("verify", "--deep"), ("verify", "--against", anchor)):
        assert run_cli(*args).exit_code == 0
    assert raw_log.rows() == before
