"""``rmcore history``: everything that happened to one person or pair, in log order."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import ACTOR, PEOPLE

from rmcore.commands import UpdateProfile
from rmcore.engine import Engine

FIELDS = ("position", "occurred_at", "recorded_at", "actor", "type", "stream", "data")
# Personal fields: the log holds them sealed, history shows them readable.
PERSONAL = {
    "joined": ("name", "email"),
    "feedback_given": ("comment",),
    "left": ("reason",),
    "pair_ended": ("reason",),
    "profile_updated": ("changes.name", "changes.email"),
}
SEALED = "rmenc1:"


def masked(rows: list[dict], *, sealed: bool) -> list[dict]:
    """Rows with their personal fields replaced by a marker, after checking each one is
    sealed (in the raw log) or readable (in history)."""
    for row in rows:
        for path in PERSONAL.get(row["type"], ()):
            *parents, name = path.split(".")
            holder = row["data"]
            for parent in parents:
                holder = holder.get(parent, {})
            value = holder.get(name)
            if isinstance(value, str) and value:
                assert value.startswith(SEALED) == sealed, (row["position"], path, value)
                holder[name] = "<personal>"
    return rows


def expected_history(raw_log, entity: str, program: str = "default") -> list[dict]:
    """The history worked out from the raw log: the entity's own stream, or a person's
    stream plus the streams of every pair the log shows them in."""
    pair_ids = [
        row[0]
        for row in raw_log.query(
            "SELECT data ->> 'pair_id' FROM events WHERE program = ?1 AND type = 'paired'"
            " AND (data ->> 'mentor_id' = ?2 OR data ->> 'mentee_id' = ?2)",
            (program, entity),
        )
    ]
    is_pair = raw_log.query(
        "SELECT 1 FROM events WHERE program = ? AND stream = ?", (program, f"pair:{entity}")
    )
    streams = [f"pair:{entity}"] if is_pair else [f"person:{entity}"]
    streams += [] if is_pair else [f"pair:{pair_id}" for pair_id in pair_ids]
    rows = raw_log.query(
        f"SELECT {', '.join(FIELDS)} FROM events WHERE program = ?"
        f" AND stream IN ({', '.join('?' * len(streams))}) ORDER BY position",
        (program, *streams),
    )
    rows = [dict(zip(FIELDS, (*row[:-1], json.loads(row[-1])))) for row in rows]
    return masked(rows, sealed=True)


def history_json(run_cli, entity: str, *options: str) -> list[dict]:
    """``rmcore history ENTITY --format json``, parsed."""
    result = run_cli(*options, "history", entity, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def shown(run_cli, entity: str, *options: str) -> list[dict]:
    """History as printed, personal fields masked after checking they are readable."""
    return masked(history_json(run_cli, entity, *options), sealed=False)


@pytest.mark.parametrize("person", [p["person_id"] for p in PEOPLE])
def test_a_persons_history_is_their_stream_and_every_event_of_every_pair_they_were_in(
    populated_db: Path, run_cli, raw_log, person: str
):
    """Each participant's history equals what the raw log says, field for field."""
    rows = history_json(run_cli, person)
    known = next(p for p in PEOPLE if p["person_id"] == person)
    assert (rows[0]["data"]["name"], rows[0]["data"]["email"]) == (known["name"], known["email"])
    assert masked(rows, sealed=False) == expected_history(raw_log, person)
    assert rows[0]["type"] == "joined"
    assert rows[0]["stream"] == f"person:{person}"


def test_a_mentors_history_holds_the_sessions_and_feedback_of_both_her_pairs(
    populated_db: Path, run_cli
):
    """Ada mentors grace and raj: their pairings, sessions and both sides' feedback."""
    rows = history_json(run_cli, "ada")
    streams = {row["stream"] for row in rows}
    assert streams == {"person:ada", "pair:ada-grace", "pair:ada-raj"}
    types = [row["type"] for row in rows]
    assert types.count("paired") == 2
    assert types.count("session_held") == 2
    feedback_by = {row["data"]["by"] for row in rows if row["type"] == "feedback_given"}
    assert feedback_by == {"ada", "grace"}


def test_a_leavers_history_ends_with_their_pair_ending_and_their_leaving(
    populated_db: Path, run_cli
):
    """Tom's leaving ended his pair with mei; both events close his history."""
    rows = history_json(run_cli, "tom")
    assert [row["type"] for row in rows] == [
        "joined",
        "paired",
        "session_held",
        "pair_ended",
        "left",
    ]
    assert rows[-1]["data"]["reason"] == "moved to another company"
    assert rows[-2]["stream"] == "pair:mei-tom"


def test_a_profile_update_appears_in_the_persons_history(populated_db: Path, run_cli, raw_log):
    """A changed skill is a profile_updated event in the person's own stream."""
    with Engine.open(populated_db) as engine:
        engine.execute(
            "default",
            UpdateProfile(
                person_id="ken",
                changes={"skills_sought": ["automation", "AI tools"]},
                at="2025-05-02T09:00:00Z",
            ),
            actor="hr-import",
        )
    rows = history_json(run_cli, "ken")
    assert [row["type"] for row in rows] == ["joined", "profile_updated"]
    assert rows[1]["actor"] == "hr-import"
    assert rows[1]["data"]["changes"] == {"skills_sought": ["automation", "AI tools"]}
    assert masked(rows, sealed=False) == expected_history(raw_log, "ken")


def test_a_pairs_history_is_exactly_its_stream(populated_db: Path, run_cli, raw_log):
    """No person events: only what the pair's stream holds, in version order."""
    rows = history_json(run_cli, "ada-grace")
    assert {row["stream"] for row in rows} == {"pair:ada-grace"}
    stream = raw_log.query(
        "SELECT position FROM events WHERE stream = 'pair:ada-grace' ORDER BY version"
    )
    assert [row["position"] for row in rows] == [position for (position,) in stream]
    assert rows[3]["data"]["comment"] == "Eye-opening."
    assert masked(rows, sealed=False) == expected_history(raw_log, "ada-grace")


def test_history_follows_log_order_and_shows_who_recorded_a_late_event(populated_db: Path, run_cli):
    """A session logged late by a coach comes last although it happened earlier."""
    result = run_cli(
        "--actor", "coach-amy", "session", "ada-raj", "--minutes", "40",
        "--at", "2025-02-12T10:00:00Z",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = history_json(run_cli, "ada")
    positions = [row["position"] for row in rows]
    assert positions == sorted(positions)
    late = rows[-1]
    assert (late["type"], late["actor"]) == ("session_held", "coach-amy")
    assert late["occurred_at"] == "2025-02-12T10:00:00Z"
    assert late["recorded_at"] > rows[-2]["recorded_at"]
    assert late["occurred_at"] < rows[-2]["occurred_at"]
    assert {row["actor"] for row in rows[:-1]} == {ACTOR}


def test_history_as_a_table_shows_when_it_happened_when_it_was_recorded_and_by_whom(
    populated_db: Path, run_cli, raw_log
):
    """One header, a rule, then one line per event starting with its position."""
    result = run_cli("history", "grace", "--format", "table")
    assert result.exit_code == 0, result.output
    header, rule, *lines = result.stdout.splitlines()
    assert header.split() == [
        "position", "occurred_at", "recorded_at", "actor", "type", "details",
    ]  # fmt: skip
    assert set(rule.replace(" ", "")) == {"-"}
    expected = expected_history(raw_log, "grace")
    assert len(lines) == len(expected)
    for line, row in zip(lines, expected):
        position, occurred_at, recorded_at, actor, type_name = line.split()[:5]
        assert (int(position), occurred_at, recorded_at, actor, type_name) == (
            row["position"], row["occurred_at"], row["recorded_at"], row["actor"], row["type"],
        )  # fmt: skip
    assert "rating=5" in result.stdout


def test_history_as_csv_has_one_row_per_event(populated_db: Path, run_cli, raw_log):
    """CSV keeps every column, the payload as JSON."""
    result = run_cli("history", "linus-barbara", "--format", "csv")
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header == ",".join(FIELDS)
    assert len(lines) == len(expected_history(raw_log, "linus-barbara"))


def test_history_of_an_unknown_id_exits_1_naming_it(populated_db: Path, run_cli):
    """Neither a person nor a pair: a clear refusal, nothing on stdout, no traceback."""
    result = run_cli("history", "nobody-here", "--format", "json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "nobody-here" in result.stderr
    assert result.stderr.startswith("Error: there is no person or pair")
    assert "Traceback" not in result.output


def test_history_is_limited_to_the_selected_program(populated_db: Path, run_cli, raw_log):
    """The same person id in another program has a history of its own."""
    result = run_cli(
        "--program", "pilot-b", "join", "ada", "--name", "Ada B", "--email", "ada.b@example.org",
        "--role", "mentor", "--capacity", "1", "--at", "2025-06-01",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    other = history_json(run_cli, "ada", "--program", "pilot-b")
    assert [(row["type"], row["data"]["name"]) for row in other] == [("joined", "Ada B")]
    assert masked(other, sealed=False) == expected_history(raw_log, "ada", program="pilot-b")
    default = history_json(run_cli, "ada")
    assert all(row["data"].get("name") != "Ada B" for row in default)
    refused = run_cli("--program", "pilot-b", "history", "ada-grace")
    assert refused.exit_code == 1
    assert "pilot-b" in refused.stderr


def test_history_reads_the_log_and_changes_nothing(populated_db: Path, run_cli, raw_log):
    """The command is read-only."""
    before = raw_log.rows()
    history_json(run_cli, "ada")
    assert raw_log.rows() == before


@pytest.mark.parametrize("data", ["'{\"a\":'", "'12'", "x'00ff10'", "'[1, 2]'"])
def test_history_over_a_payload_edited_outside_rmcore_names_its_position(
    populated_db: Path, run_cli, data: str
):
    """An auditor looking into tampering gets the position to verify, not a crash."""
    conn = sqlite3.connect(populated_db, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER events_no_update")
        (position,) = conn.execute(
            "SELECT position FROM events WHERE stream = 'person:grace' ORDER BY position"
        ).fetchone()
        conn.execute(f"UPDATE events SET data = {data} WHERE position = ?", (position,))
    finally:
        conn.close()
    result = run_cli("history", "grace", "--format", "json")
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"Error: position {position}: its payload is not the JSON object rmcore wrote, so the "
        "log was changed outside rmcore; `rmcore verify` names the first bad position\n"
    )
