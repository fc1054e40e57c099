"""Point-in-time copies: ``replay --as-of`` (business time) and ``--known-at`` (recording time).

The timeline below is recorded through the engine's rules with controlled ``recorded_at``
times, so that what had happened (occurred_at) and what the operator knew (recorded_at)
differ: a session logged a week late, a person whose joining was entered two weeks after
the fact, a leaver, and a pair ended after the dates examined.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import ACTOR

from rmcore import audit, db
from rmcore.commands import EndPair, Join, Leave, MakePair, RecordSession, decide
from rmcore.engine import Engine
from rmcore.projections import TABLES, Projector
from rmcore.queries import SqlState
from rmcore.store import NewEvent


def person(person_id: str, role: str, at: str) -> Join:
    """A minimal Join command."""
    return Join(
        person_id=person_id,
        name=person_id.title(),
        email=f"{person_id}@example.org",
        role=role,
        capacity=1 if role == "mentor" else None,
        at=at,
    )


# (recorded_at, command): the order in which things were entered.
TIMELINE = (
    ("2025-01-06T10:00:00.000000Z", person("ada", "mentor", "2025-01-06T09:00:00Z")),
    ("2025-01-06T10:01:00.000000Z", person("grace", "mentee", "2025-01-06T09:00:00Z")),
    ("2025-01-06T10:02:00.000000Z", person("mei", "mentor", "2025-01-06T09:00:00Z")),
    ("2025-01-06T10:03:00.000000Z", person("tom", "mentee", "2025-01-06T09:00:00Z")),
    (
        "2025-02-03T11:00:00.000000Z",
        MakePair(mentor_id="ada", mentee_id="grace", at="2025-02-03T10:00:00Z"),
    ),
    (
        "2025-02-05T11:00:00.000000Z",
        MakePair(mentor_id="mei", mentee_id="tom", at="2025-02-05T10:00:00Z"),
    ),
    (
        "2025-02-10T16:00:00.000000Z",
        RecordSession(pair_id="ada-grace", minutes=45, at="2025-02-10T15:00:00Z"),
    ),
    # Held on 12 February, logged a week later.
    (
        "2025-02-20T09:00:00.000000Z",
        RecordSession(pair_id="mei-tom", minutes=30, at="2025-02-12T08:00:00Z"),
    ),
    (
        "2025-02-24T16:00:00.000000Z",
        RecordSession(pair_id="ada-grace", minutes=60, at="2025-02-24T15:00:00Z"),
    ),
    # Ken joined on 14 February; HR entered it on 1 March.
    ("2025-03-01T09:00:00.000000Z", person("ken", "mentee", "2025-02-14T09:00:00Z")),
    (
        "2025-03-15T10:00:00.000000Z",
        Leave(person_id="tom", reason="moved abroad", at="2025-03-15T09:00:00Z"),
    ),
    (
        "2025-04-01T10:00:00.000000Z",
        EndPair(pair_id="ada-grace", reason="goals met", at="2025-04-01T09:00:00Z"),
    ),
)

LIVE = {
    "people": {"ada": "active", "grace": "active", "ken": "active", "mei": "active",
               "tom": "left"},
    "pairs": {"ada-grace": ("ended", 2), "mei-tom": ("ended", 1)},
}  # fmt: skip


def record(engine: Engine, recorded_at: str, command, program: str = "default") -> None:
    """Decide one command against the current state and append it as recorded at a given time."""
    with engine.unit_of_work(program, actor=ACTOR) as unit:
        unit.recorded_at = recorded_at
        unit.record(command.at, decide(SqlState(engine.conn, program), command))


@pytest.fixture(scope="module")
def timeline_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The timeline, built once per module."""
    path = tmp_path_factory.mktemp("timeline") / "timeline.db"
    with Engine.open(path, create=True) as engine:
        for recorded_at, command in TIMELINE:
            record(engine, recorded_at, command)
        engine.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def timeline_db(db_path: Path, timeline_template: Path) -> Path:
    """``db_path`` holding the timeline."""
    db_path.write_bytes(timeline_template.read_bytes())
    return db_path


def every_table(path: Path) -> dict[str, list[tuple]]:
    """Every row of the log and of every read model, read with plain sqlite3."""
    conn = sqlite3.connect(path)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("events", *TABLES, "checkpoints")
        }
    finally:
        conn.close()


def state(run_cli, copy: Path) -> dict:
    """People (status) and pairs (status, sessions) as ``rmcore --db COPY`` lists them."""
    people = run_cli("people", "--status", "all", "--format", "json", db=copy)
    pairs = run_cli("pairs", "--status", "all", "--format", "json", db=copy)
    assert people.exit_code == 0, people.output
    assert pairs.exit_code == 0, pairs.output
    return {
        "people": {row["person_id"]: row["status"] for row in json.loads(people.stdout)},
        "pairs": {
            row["pair_id"]: (row["status"], row["sessions"]) for row in json.loads(pairs.stdout)
        },
    }


def make_copy(run_cli, tmp_path: Path, option: str, moment: str) -> Path:
    """``rmcore replay OPTION MOMENT --out FILE``; returns the new file."""
    out = tmp_path / f"copy-{option.strip('-')}-{len(list(tmp_path.iterdir()))}.db"
    result = run_cli("replay", option, moment, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.exists()
    return out


CASES = [
    # The late session (held 12 Feb) counts as of 15 Feb, but was not known then; Ken's
    # joining (14 Feb) had happened by 15 Feb but was entered only on 1 March.
    pytest.param(
        "--as-of", "2025-02-15",
        {"ada": "active", "grace": "active", "ken": "active", "mei": "active", "tom": "active"},
        {"ada-grace": ("active", 1), "mei-tom": ("active", 1)},
        id="as-of-15-feb",
    ),
    pytest.param(
        "--known-at", "2025-02-15",
        {"ada": "active", "grace": "active", "mei": "active", "tom": "active"},
        {"ada-grace": ("active", 1), "mei-tom": ("active", 0)},
        id="known-at-15-feb",
    ),
    pytest.param(
        "--as-of", "2025-02-11",
        {"ada": "active", "grace": "active", "mei": "active", "tom": "active"},
        {"ada-grace": ("active", 1), "mei-tom": ("active", 0)},
        id="as-of-the-day-before-the-late-session",
    ),
    pytest.param(
        "--as-of", "2025-02-12",
        {"ada": "active", "grace": "active", "mei": "active", "tom": "active"},
        {"ada-grace": ("active", 1), "mei-tom": ("active", 1)},
        id="as-of-the-day-of-the-late-session",
    ),
    pytest.param(
        "--known-at", "2025-02-20T08:59:59Z",
        {"ada": "active", "grace": "active", "mei": "active", "tom": "active"},
        {"ada-grace": ("active", 1), "mei-tom": ("active", 0)},
        id="known-at-a-second-before-the-late-session-was-logged",
    ),
    pytest.param(
        "--known-at", "2025-02-20T10:00:00+01:00",
        {"ada": "active", "grace": "active", "mei": "active", "tom": "active"},
        {"ada-grace": ("active", 1), "mei-tom": ("active", 1)},
        id="known-at-the-moment-it-was-logged-given-with-an-offset",
    ),
    pytest.param(
        "--as-of", "2025-03-20",
        {"ada": "active", "grace": "active", "ken": "active", "mei": "active", "tom": "left"},
        {"ada-grace": ("active", 2), "mei-tom": ("ended", 1)},
        id="as-of-after-the-leaver-before-the-pair-ended",
    ),
    pytest.param(
        "--known-at", "2025-03-20",
        {"ada": "active", "grace": "active", "ken": "active", "mei": "active", "tom": "left"},
        {"ada-grace": ("active", 2), "mei-tom": ("ended", 1)},
        id="known-at-after-the-leaver-before-the-pair-ended",
    ),
    pytest.param(
        "--as-of", "2025-04-01",
        LIVE["people"], LIVE["pairs"],
        id="as-of-the-day-the-pair-ended",
    ),
    pytest.param("--as-of", "2024-12-31", {}, {}, id="as-of-before-the-program"),
    pytest.param("--known-at", "2025-01-05", {}, {}, id="known-at-before-anything-was-recorded"),
]  # fmt: skip


@pytest.mark.parametrize(("option", "moment", "people", "pairs"), CASES)
def test_a_point_in_time_copy_shows_the_program_as_it_was(
    timeline_db: Path, run_cli, tmp_path: Path, option, moment, people, pairs
):
    """People and pairs in the copy match the hand-built timeline at that moment."""
    copy = make_copy(run_cli, tmp_path, option, moment)
    assert state(run_cli, copy) == {"people": people, "pairs": pairs}


@pytest.mark.parametrize(("option", "moment"), [("--as-of", "2025-02-15"),
                                                ("--known-at", "2025-02-15")])  # fmt: skip
def test_making_a_copy_leaves_the_live_database_untouched(
    timeline_db: Path, run_cli, tmp_path: Path, option: str, moment: str
):
    """The log and every read model of the live file are byte-for-byte the same rows."""
    before = every_table(timeline_db)
    make_copy(run_cli, tmp_path, option, moment)
    assert every_table(timeline_db) == before
    assert state(run_cli, timeline_db) == LIVE


@pytest.mark.parametrize(
    ("option", "moment"),
    [("--as-of", "2025-02-15"), ("--known-at", "2025-02-21"), ("--as-of", "2024-12-31"),
     ("--known-at", "2025-01-05")],
)  # fmt: skip
def test_a_copy_verifies_on_its_own_including_a_deep_replay(
    timeline_db: Path, run_cli, tmp_path: Path, option: str, moment: str
):
    """Chain, payloads and read models of the copy all check out."""
    copy = make_copy(run_cli, tmp_path, option, moment)
    result = run_cli("verify", "--deep", db=copy)
    assert result.exit_code == 0, result.output
    assert "read models equal a replay" in result.stdout


def test_a_known_at_copy_holds_exactly_the_log_recorded_by_then(
    timeline_db: Path, run_cli, raw_log, tmp_path: Path
):
    """The same rows, hashes included, up to the last one recorded by the moment."""
    copy = make_copy(run_cli, tmp_path, "--known-at", "2025-02-21")
    live = raw_log.rows()
    recorded = [row for row in live if row[8] <= "2025-02-21T23:59:59.999999Z"]
    assert len(recorded) == 8
    assert raw_log.rows(copy) == recorded


def test_an_as_of_copy_holds_the_whole_log_and_folds_only_what_had_happened(
    timeline_db: Path, run_cli, raw_log, tmp_path: Path
):
    """Events recorded later but occurred earlier are in its read models; later ones are not."""
    copy = make_copy(run_cli, tmp_path, "--as-of", "2025-02-15")
    assert raw_log.rows(copy) == raw_log.rows()
    sessions = raw_log.query("SELECT pair_id, held_at FROM sessions ORDER BY 2", path=copy)
    assert sessions == [
        ("ada-grace", "2025-02-10T15:00:00Z"),
        ("mei-tom", "2025-02-12T08:00:00Z"),
    ]


def test_an_as_of_copy_holds_the_tables_a_row_by_row_fold_of_its_events_gives(
    timeline_db: Path, run_cli, tmp_path: Path
):
    """The copy's read models, counts and checkpoint equal folding, one event at a time,
    only the events that had occurred by the end of the day, late entries included."""
    copy = make_copy(run_cli, tmp_path, "--as-of", "2025-02-15")
    with Engine.open(copy) as engine:
        until = engine.snapshot.occurred_until
    oracle_path = tmp_path / "oracle.db"
    oracle = db.connect(oracle_path, create=True)
    try:
        db.migrate(oracle)
        with Engine.open(timeline_db) as live:
            rows = [row for batch in live.store.scan(0) for row in batch if row[4] <= until]
            assert 0 < len(rows) < audit.event_count(live)
            oracle.execute("BEGIN")
            Projector(oracle, live.registry, live.keyring).apply_rows(rows)
            oracle.execute("COMMIT")
    finally:
        oracle.close()
    expected, made = every_table(oracle_path), every_table(copy)
    assert {t: made[t] for t in (*TABLES, "checkpoints")} == {
        t: expected[t] for t in (*TABLES, "checkpoints")
    }


def test_replaying_an_as_of_copy_keeps_it_at_its_moment(timeline_db: Path, run_cli, tmp_path: Path):
    """A rebuild of the copy folds the same events again, not the ones after the date."""
    copy = make_copy(run_cli, tmp_path, "--as-of", "2025-02-15")
    before = state(run_cli, copy)
    result = run_cli("replay", db=copy)
    assert result.exit_code == 0, result.output
    assert state(run_cli, copy) == before
    assert run_cli("replay", "--check", db=copy).exit_code == 0


@pytest.mark.parametrize(
    "command",
    [
        ("join", "zoe", "--name", "Zoe", "--email", "zoe@example.org", "--role", "mentee",
         "--at", "2025-02-01"),
        ("session", "ada-grace", "--minutes", "30", "--at", "2025-02-11"),
        ("leave", "grace", "--reason", "left", "--at", "2025-02-14"),
        ("config", "set", "matching_skills.min_score", "0.5"),
    ],
    ids=["join", "session", "leave", "config"],
)  # fmt: skip
@pytest.mark.parametrize("option", ["--as-of", "--known-at"])
def test_writing_to_a_copy_is_refused(
    timeline_db: Path, run_cli, raw_log, tmp_path: Path, option: str, command: tuple
):
    """A copy is read-only: exit 1, it says so, and nothing is appended to it."""
    copy = make_copy(run_cli, tmp_path, option, "2025-02-15")
    before = raw_log.rows(copy)
    result = run_cli(*command, db=copy)
    assert result.exit_code == 1, result.output
    assert "point-in-time copy" in result.stderr
    assert "read-only" in result.stderr
    assert raw_log.rows(copy) == before


def test_importing_a_log_into_a_copy_is_refused(
    timeline_db: Path, run_cli, raw_log, tmp_path: Path
):
    """import-log appends too, so a copy refuses it."""
    copy = make_copy(run_cli, tmp_path, "--known-at", "2025-02-15")
    export = tmp_path / "live.jsonl"
    assert run_cli("export", "--out", str(export)).exit_code == 0
    before = raw_log.rows(copy)
    result = run_cli("import-log", str(export), db=copy)
    assert result.exit_code == 1
    assert "read-only" in result.stderr
    assert raw_log.rows(copy) == before


@pytest.mark.parametrize(
    ("option", "moment"),
    [("--as-of", "2025-02-15"), ("--known-at", "2025-02-21"), ("--known-at", "2030-01-01")],
)
def test_a_finished_copy_is_an_ordinary_database_with_nothing_left_beside_it(
    timeline_db: Path, run_cli, tmp_path: Path, option: str, moment: str
):
    """One new file, owner-only and in WAL mode like every rmcore database; the scratch
    files it was built from are gone."""
    before = set(tmp_path.iterdir())
    copy = make_copy(run_cli, tmp_path, option, moment)
    assert set(tmp_path.iterdir()) - before == {copy}
    assert copy.stat().st_mode & 0o777 == 0o600
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


@pytest.mark.parametrize(("option", "moment"), [("--as-of", "2025-03-01"),
                                                ("--known-at", "2030-01-01")])  # fmt: skip
def test_a_copy_that_fails_half_way_leaves_no_file_behind(
    timeline_db: Path, run_cli, tmp_path: Path, option: str, moment: str
):
    """A payload that is not JSON stops the fold: exit 1, nothing at --out and no scratch
    file left in its folder."""
    with Engine.open(timeline_db) as engine, engine.store.transaction():
        damaged = NewEvent("person:zed", "joined", 1, "2025-02-01T09:00:00Z", "{not json")
        engine.store.append("default", [damaged], actor=ACTOR)
    before = set(tmp_path.iterdir())
    out = tmp_path / "never.db"
    result = run_cli("replay", option, moment, "--out", str(out))
    assert result.exit_code == 1, result.output
    assert not out.exists()
    assert set(tmp_path.iterdir()) == before


@pytest.mark.parametrize("moment", [{"as_of": "2025-03-01T23:59:59Z"},
                                    {"known_at": "2030-01-01T00:00:00Z"}])  # fmt: skip
def test_a_copy_interrupted_while_folding_leaves_no_file_behind(
    timeline_db: Path, tmp_path: Path, moment: dict
):
    """Ctrl-C arrives in the fold (here from its progress callback): neither --out nor the
    scratch file it was being built in is left."""

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    before = set(tmp_path.iterdir())
    out = tmp_path / "never.db"
    with Engine.open(timeline_db) as engine, pytest.raises(KeyboardInterrupt):
        audit.snapshot(engine, out, progress=interrupt, **moment)
    assert not out.exists()
    assert set(tmp_path.iterdir()) == before


@pytest.mark.parametrize("option", ["--as-of", "--known-at"])
def test_a_copy_is_never_written_over_an_existing_file(
    timeline_db: Path, run_cli, tmp_path: Path, option: str
):
    """--out naming a file that exists is refused, and the file keeps its bytes."""
    existing = tmp_path / "keep.db"
    existing.write_bytes(b"an auditor's earlier work")
    result = run_cli("replay", option, "2025-02-15", "--out", str(existing))
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert existing.read_bytes() == b"an auditor's earlier work"


def test_the_live_database_is_refused_as_the_output(timeline_db: Path, run_cli):
    """Pointing --out at the live file is refused like any existing file."""
    before = every_table(timeline_db)
    result = run_cli("replay", "--as-of", "2025-02-15", "--out", str(timeline_db))
    assert result.exit_code == 1
    assert every_table(timeline_db) == before


@pytest.mark.parametrize(
    "arguments",
    [
        ("--as-of", "2025-02-15"),
        ("--known-at", "2025-02-15"),
        ("--as-of", "2025-02-15", "--known-at", "2025-02-15", "--out", "{out}"),
        ("--check", "--as-of", "2025-02-15", "--out", "{out}"),
        ("--out", "{out}"),
    ],
    ids=["as-of-without-out", "known-at-without-out", "both-moments", "check-and-as-of",
         "out-alone"],
)  # fmt: skip
def test_incomplete_or_conflicting_replay_options_are_a_usage_error(
    timeline_db: Path, run_cli, tmp_path: Path, arguments: tuple
):
    """Exit 2, no file written, the live database untouched."""
    out = tmp_path / "never.db"
    before = every_table(timeline_db)
    result = run_cli("replay", *(a.replace("{out}", str(out)) for a in arguments))
    assert result.exit_code == 2, result.output
    assert not out.exists()
    assert every_table(timeline_db) == before


@pytest.mark.parametrize("option", ["--as-of", "--known-at"])
def test_an_unreadable_moment_is_refused_without_writing_a_file(
    timeline_db: Path, run_cli, tmp_path: Path, option: str
):
    """Exit 1 with the ISO 8601 hint."""
    out = tmp_path / "never.db"
    result = run_cli("replay", option, "last tuesday", "--out", str(out))
    assert result.exit_code == 1
    assert "ISO 8601" in result.stderr
    assert not out.exists()


def kpis(run_cli, *args: str, db: Path | None = None) -> dict:
    """``rmcore kpi --format json`` as name -> value."""
    result = run_cli("kpi", "--format", "json", *args, db=db)
    assert result.exit_code == 0, result.output
    return {row["name"]: row["value"] for row in json.loads(result.stdout)}


@pytest.mark.parametrize(("option", "active"), [("--as-of", 5), ("--known-at", 4)])
def test_kpis_run_in_a_copy_and_count_its_people_and_pairs(
    timeline_db: Path, run_cli, tmp_path: Path, option: str, active: int
):
    """`rmcore --db COPY kpi` answers from the copy's read models."""
    copy = make_copy(run_cli, tmp_path, option, "2025-02-15")
    values = kpis(run_cli, db=copy)
    assert values["participants"] == active
    assert values["active_pairs"] == 2
    assert kpis(run_cli)["participants"] == 4


def test_kpis_in_an_as_of_copy_equal_the_live_kpis_as_of_that_date(
    timeline_db: Path, run_cli, tmp_path: Path
):
    """The copy answers for its moment, including stalled and engaged pairs."""
    copy = make_copy(run_cli, tmp_path, "--as-of", "2025-02-15")
    assert kpis(run_cli, db=copy) == kpis(run_cli, "--as-of", "2025-02-15")


def test_a_known_at_copy_leaves_out_events_recorded_after_the_moment_after_an_import(
    timeline_db: Path, run_cli, tmp_path: Path
):
    """A program moved in with import-log lands after an event recorded later than the
    moment asked for; that event was not known then and must not be in the copy."""
    export = tmp_path / "timeline.jsonl"
    assert run_cli("export", "--out", str(export)).exit_code == 0
    target = tmp_path / "target.db"
    with Engine.open(target, create=True) as engine:
        lee = person("lee", "mentor", "2025-03-10T08:00:00Z")
        record(engine, "2025-03-10T09:00:00.000000Z", lee, program="spring")
    assert run_cli("import-log", str(export), db=target).exit_code == 0
    copy = tmp_path / "known.db"
    result = run_cli("replay", "--known-at", "2025-02-15", "--out", str(copy), db=target)
    assert result.exit_code == 0, result.output
    people = run_cli("--program", "spring", "people", "--status", "all", "--format", "json",
                     db=copy)  # fmt: skip
    assert json.loads(people.stdout) == []


def plant_deleted_rows(path: Path, marker: bytes) -> None:
    """Leave ``marker`` in the file only as the bytes of deleted rows: in a dropped table
    (now free pages), in a key deleted from ``subject_keys`` and in a table that stays."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA secure_delete = OFF")
        conn.execute("CREATE TABLE scratch (filler BLOB)")
        conn.executemany("INSERT INTO scratch VALUES (?)", [(marker * 200,)] * 50)
        conn.execute("DROP TABLE scratch")
        conn.execute(
            "INSERT INTO subject_keys (program, subject, key) VALUES ('default', 'gone', ?)",
            (marker,),
        )
        conn.execute("DELETE FROM subject_keys WHERE subject = 'gone'")
        conn.execute("CREATE TABLE outbox (message TEXT)")
        conn.execute("INSERT INTO outbox VALUES (?)", (marker.decode(),))
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


@pytest.mark.parametrize(("option", "moment"), [("--as-of", "2025-02-15"),
                                                ("--known-at", "2030-01-01")])  # fmt: skip
def test_a_whole_log_copy_carries_no_byte_of_deleted_rows_or_other_tables(
    timeline_db: Path, run_cli, tmp_path: Path, option: str, moment: str
):
    """A copy of the whole log starts from the live file's pages; rows deleted there (a
    dropped table, a deleted key) and the rows of tables other than the log and its keys
    must not come along, while the keys still open the names."""
    marker = b"Zebulon-Quartz-residue"
    plant_deleted_rows(timeline_db, marker)
    assert marker in timeline_db.read_bytes()
    copy = make_copy(run_cli, tmp_path, option, moment)
    assert marker not in copy.read_bytes()
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    people = run_cli("people", "--status", "all", "--format", "json", db=copy)
    assert "Ada" in {row["name"] for row in json.loads(people.stdout)}
    result = run_cli("verify", "--deep", db=copy)
    assert result.exit_code == 0, result.output


def test_a_known_at_moment_after_the_last_recording_still_cuts_before_a_later_recording(
    timeline_db: Path, run_cli, raw_log, tmp_path: Path
):
    """Imported events keep their older recorded_at, so the last event can be recorded
    before the moment while an earlier one was recorded after it: the log known then
    ends before that earlier event, and the page copy of the whole file is given up."""
    export = tmp_path / "timeline.jsonl"
    assert run_cli("export", "--out", str(export)).exit_code == 0
    target = tmp_path / "target.db"
    with Engine.open(target, create=True) as engine:
        lee = person("lee", "mentor", "2025-05-30T08:00:00Z")
        record(engine, "2025-06-01T09:00:00.000000Z", lee, program="spring")
        lena = person("lena", "mentee", "2025-03-30T08:00:00Z")
        record(engine, "2025-04-02T09:00:00.000000Z", lena, program="spring")
    assert run_cli("import-log", str(export), db=target).exit_code == 0
    live = raw_log.rows(target)
    assert max(row[8] for row in live[1:]) < "2025-04-15" < live[0][8]
    copy = tmp_path / "known.db"
    result = run_cli("replay", "--known-at", "2025-04-15", "--out", str(copy), db=target)
    assert result.exit_code == 0, result.output
    assert raw_log.rows(copy) == []
    assert run_cli("verify", "--deep", db=copy).exit_code == 0
    later = tmp_path / "later.db"
    result = run_cli("replay", "--known-at", "2025-06-01", "--out", str(later), db=target)
    assert result.exit_code == 0, result.output
    assert raw_log.rows(later) == live


def test_a_file_with_a_virtual_table_is_copied_row_by_row(
    timeline_db: Path, run_cli, raw_log, tmp_path: Path
):
    """A virtual table's storage cannot be emptied as a table's, so such a file is not
    copied page by page: the copy holds the log and nothing of the virtual table."""
    conn = sqlite3.connect(timeline_db)
    try:
        conn.execute("CREATE VIRTUAL TABLE notes USING fts5(body)")
        conn.execute("INSERT INTO notes VALUES ('Zebulon-Quartz-note')")
        conn.commit()
    finally:
        conn.close()
    copy = make_copy(run_cli, tmp_path, "--known-at", "2030-01-01")
    assert raw_log.rows(copy) == raw_log.rows()
    assert b"Zebulon-Quartz-note" not in copy.read_bytes()
    assert raw_log.query("SELECT name FROM sqlite_master WHERE name = 'notes'", path=copy) == []


def plugin_tables(path: Path, marker: str) -> None:
    """Tables a plugin might keep, each holding ``marker``: one guarded by an append-only
    trigger, one whose deletions a trigger copies into an audit table, and two whose
    names need care (a ``sqlite`` prefix without the underscore, a double quote)."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(
            f"""
            CREATE TABLE plugin_audit (body TEXT);
            CREATE TRIGGER plugin_audit_kept BEFORE DELETE ON plugin_audit
            BEGIN SELECT RAISE(ABORT, 'plugin_audit is append-only'); END;
            CREATE TABLE plugin_notes (body TEXT);
            CREATE TABLE plugin_trail (body TEXT);
            CREATE TRIGGER plugin_notes_trail AFTER DELETE ON plugin_notes
            BEGIN INSERT INTO plugin_trail VALUES (old.body); END;
            CREATE TABLE sqlitebackup_notes (body TEXT);
            CREATE TABLE "odd""name" (body TEXT);
            INSERT INTO plugin_audit VALUES ('{marker}');
            INSERT INTO plugin_notes VALUES ('{marker}');
            INSERT INTO sqlitebackup_notes VALUES ('{marker}');
            INSERT INTO "odd""name" VALUES ('{marker}');
            """
        )
        conn.execute("ANALYZE")
        conn.commit()
    finally:
        conn.close()


def test_a_whole_log_copy_empties_plugin_tables_whatever_their_triggers_and_names(
    timeline_db: Path, run_cli, raw_log, tmp_path: Path
):
    """Triggers neither stop the emptying nor copy what it deletes; every table is
    emptied, whatever its name, and keeps its triggers; ANALYZE's statistics go too."""
    plugin_tables(timeline_db, "Zebulon-plugin-row")
    copy = make_copy(run_cli, tmp_path, "--as-of", "2030-01-01")
    assert b"Zebulon-plugin-row" not in copy.read_bytes()
    for table in ("plugin_audit", "plugin_notes", "plugin_trail", "sqlitebackup_notes",
                  '"odd""name"', "sqlite_stat1"):  # fmt: skip
        assert raw_log.query(f"SELECT count(*) FROM {table}", path=copy) == [(0,)], table
    triggers = raw_log.query("SELECT name FROM sqlite_master WHERE type = 'trigger'", path=copy)
    assert {"plugin_audit_kept", "plugin_notes_trail"} <= {name for (name,) in triggers}
    assert run_cli("verify", "--deep", db=copy).exit_code == 0


def test_a_copy_of_a_copy_is_a_copy_at_the_new_moment(
    timeline_db: Path, run_cli, raw_log, tmp_path: Path
):
    """A point-in-time copy can itself be copied (an auditor narrowing down a moment)."""
    first = make_copy(run_cli, tmp_path, "--known-at", "2030-01-01")
    second = tmp_path / "second.db"
    result = run_cli("replay", "--as-of", "2025-02-15", "--out", str(second), db=first)
    assert result.exit_code == 0, result.output
    assert state(run_cli, second) == state(run_cli, make_copy(run_cli, tmp_path, "--as-of",
                                                              "2025-02-15"))  # fmt: skip
    snapshot = sqlite3.connect(second)
    try:
        described = snapshot.execute("SELECT kind, head FROM snapshot").fetchall()
        assert described == [("as-of", raw_log.count())]
    finally:
        snapshot.close()


def test_emptying_a_page_copy_zeroes_what_it_deletes_even_if_the_connection_would_not(
    timeline_db: Path, tmp_path: Path
):
    """SQLite builds differ in whether deleted content is zeroed by default: the copy
    turns secure_delete on itself, so a deleted key leaves no byte behind."""
    marker = b"Zebulon-Quartz-key"
    conn = sqlite3.connect(timeline_db)
    conn.execute(
        "INSERT INTO subject_keys (program, subject, key) VALUES ('default', 'gone', ?)",
        (marker,),
    )
    conn.commit()
    copy = sqlite3.connect(tmp_path / "copy.db")
    conn.backup(copy)
    conn.close()
    copy.execute("PRAGMA journal_mode = OFF")
    copy.execute("PRAGMA secure_delete = OFF")
    copy.execute("DELETE FROM subject_keys WHERE subject = 'gone'")  # as forget would
    copy.commit()
    assert marker in (tmp_path / "copy.db").read_bytes()
    audit._keep_only_the_log(copy)
    copy.close()
    assert marker not in (tmp_path / "copy.db").read_bytes()
