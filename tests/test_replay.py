"""``rmcore replay``: rebuilding the read models from the log gives the same tables."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

import pytest
from conftest import ACTOR, read_event_count, temporary_files

from rmcore import audit, projections
from rmcore.codec import canonical_json
from rmcore.commands import Forget, GiveFeedback, Join, RecordSession
from rmcore.engine import Engine
from rmcore.events import Joined
from rmcore.memory import MEMORY_SCHEMA
from rmcore.projections import (
    AFTER_BULK,
    BARRIERS,
    FOLDED_IN_BULK,
    STATEMENTS,
    TABLES,
    rebuild,
)
from rmcore.store import NewEvent

REQUIRED = {"people", "pairs", "sessions", "feedback", "config", "programs"}
READ_MODELS = tuple(TABLES)


def snapshot(path: Path) -> dict[str, list[tuple]]:
    """Every row of every core read model, in a stable order."""
    conn = sqlite3.connect(path)
    try:
        tables = {}
        for table in READ_MODELS:
            width = len(conn.execute(f"SELECT * FROM {table} LIMIT 0").description)
            order = ", ".join(str(i) for i in range(1, width + 1))
            tables[table] = conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
        return tables
    finally:
        conn.close()


def edit_by_hand(path: Path, *statements: str) -> None:
    """Change the file behind rmcore's back, as someone with sqlite3 could."""
    conn = sqlite3.connect(path)
    try:
        for sql in statements:
            conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


def test_the_core_read_models_include_the_ones_operators_query():
    """Every core table is compared below, and the six documented ones exist."""
    assert set(READ_MODELS) >= REQUIRED


def test_replay_rebuilds_tables_equal_to_the_incremental_ones(populated_db: Path, run_cli, raw_log):
    """Folding the whole log again gives exactly what the commands built, row for row."""
    before = snapshot(populated_db)
    assert all(before[table] for table in REQUIRED)
    log_before = raw_log.rows()
    result = run_cli("replay")
    assert result.exit_code == 0, result.stderr
    assert f"Replayed {len(log_before)} events" in result.stdout
    assert snapshot(populated_db) == before
    assert raw_log.rows() == log_before


def test_replay_repairs_a_projection_row_changed_by_hand(populated_db: Path, run_cli):
    """The log is the truth: a replay undoes a direct edit of a read model."""
    before = snapshot(populated_db)
    edit_by_hand(
        populated_db,
        "UPDATE people SET name = 'Mallory' WHERE person_id = 'ada'",
        "DELETE FROM sessions WHERE minutes = 45",
    )
    assert snapshot(populated_db) != before
    assert run_cli("replay").exit_code == 0
    assert snapshot(populated_db) == before


def test_replay_check_passes_on_a_clean_database(populated_db: Path, run_cli, raw_log):
    """The live read models equal a fresh replay."""
    log_before = raw_log.rows()
    result = run_cli("replay", "--check")
    assert result.exit_code == 0, result.stderr
    assert f"Replay check passed: {len(log_before)} events" in result.stdout
    assert raw_log.rows() == log_before


def test_replay_check_on_an_altered_projection_exits_1_and_prints_the_difference(
    populated_db: Path, run_cli, raw_log
):
    """Both sides of the changed row are shown; neither the log nor the tables change."""
    edit_by_hand(populated_db, "UPDATE pairs SET status = 'ended' WHERE pair_id = 'ada-raj'")
    altered = snapshot(populated_db)
    log_before = raw_log.rows()
    result = run_cli("replay", "--check")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "differ from a fresh replay (2 difference(s))" in result.stderr
    lines = result.stderr.splitlines()
    live = [line for line in lines if line.startswith("pairs: only in the live tables:")]
    replayed = [line for line in lines if line.startswith("pairs: only in the replay:")]
    assert len(live) == len(replayed) == 1
    assert "'ada-raj'" in live[0] and "'ended'" in live[0]
    assert "'ada-raj'" in replayed[0] and "'active'" in replayed[0]
    assert raw_log.rows() == log_before
    assert snapshot(populated_db) == altered


def test_a_difference_with_a_long_value_is_shown_cut_to_a_line(populated_db: Path, run_cli):
    """A value of 200,000 characters is shown by its start and its length."""
    edit_by_hand(populated_db, "UPDATE config SET value = json_quote(printf('%.200000c', 'x'))")
    result = run_cli("replay", "--check")
    assert result.exit_code == 1
    live = [line for line in result.stderr.splitlines() if "only in the live tables" in line]
    assert live and all(len(line) < 1000 for line in live), [len(line) for line in live]
    assert "(200,002 in all)" in live[0]


def test_replay_check_notices_a_row_missing_from_the_live_tables(populated_db: Path, run_cli):
    """A deleted feedback row shows up as only in the replay."""
    edit_by_hand(populated_db, "DELETE FROM feedback WHERE by_person = 'ada'")
    result = run_cli("replay", "--check")
    assert result.exit_code == 1
    assert "feedback: only in the replay:" in result.stderr
    assert "only in the live tables" not in result.stderr


def test_replay_check_leaves_no_scratch_database_attached(populated_db: Path):
    """After a check the engine's connection is back to only its own database."""
    from rmcore import audit

    with Engine.open(populated_db) as engine:
        assert audit.replay_check(engine) == []
        names = [row[1] for row in engine.conn.execute("PRAGMA database_list")]
        assert names == ["main"]
        assert not engine.conn.in_transaction


def test_replay_keeps_several_programs_apart(db_path: Path, run_cli):
    """Two programs in one file replay into their own rows."""
    for name in ("default", "spring"):
        result = run_cli(
            "--program",
            name,
            "join",
            "ada",
            "--name",
            f"Ada {name}",
            "--email",
            "ada@example.org",
            "--role",
            "mentor",
            "--at",
            "2025-01-06",
        )
        assert result.exit_code == 0, result.stderr
    before = snapshot(db_path)
    assert run_cli("--program", "spring", "replay").exit_code == 0
    assert snapshot(db_path) == before
    assert len(before["people"]) == len(before["programs"]) == 2


def _indexes(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
        ).fetchall()
    finally:
        conn.close()


def test_replay_leaves_every_read_model_index_in_place(populated_db: Path, run_cli):
    """The indexes a replay drops to build in bulk are all there again afterwards."""
    before = _indexes(populated_db)
    assert any(name == "sessions_pair" for name, _, _ in before)
    assert run_cli("replay").exit_code == 0
    assert _indexes(populated_db) == before


def test_a_replay_that_fails_part_way_keeps_the_indexes_and_the_rows(populated_db: Path):
    """A fold that raises rolls back whole: read models and their indexes as they were."""
    before_rows, before_indexes = snapshot(populated_db), _indexes(populated_db)
    engine = Engine.open(populated_db)
    try:
        # A trigger on this connection alone makes the fold fail at a later session row.
        engine.conn.execute(
            "CREATE TEMP TRIGGER fail_late BEFORE INSERT ON main.sessions"
            " WHEN NEW.minutes = 45 BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
        try:
            audit.replay(engine)
        except sqlite3.DatabaseError as exc:
            assert "disk on fire" in str(exc)
        else:
            raise AssertionError("the replay should have failed")
    finally:
        engine.close()
    assert _indexes(populated_db) == before_indexes
    assert snapshot(populated_db) == before_rows


def test_replaying_a_payload_that_cannot_be_read_names_its_position(populated_db: Path, run_cli):
    """No traceback: the CLI says which position could not be read, exit 1, nothing changed."""
    before = snapshot(populated_db)
    edit_by_hand(
        populated_db,
        "DROP TRIGGER events_no_update",
        "UPDATE events SET data = '{not json', schema = schema + 1 WHERE position = 2",
    )
    result = run_cli("replay")
    assert result.exit_code == 1
    assert "position 2: the" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(populated_db) == before


def test_personal_fields_stored_in_plain_text_or_mangled_read_back_as_before(db_path: Path):
    """A log written before sealing existed folds its plain values as they are; a sealed
    value that no key opens (here, mangled) reads as erased; a replay agrees."""
    engine = Engine.open(db_path, create=True)
    try:
        plain = Joined(person_id="ada", name='Ada "Lovelace"', email="ada@example.org",
                       role="mentor", capacity=1)  # fmt: skip
        payload = engine.codec.unstructure(plain)
        mangled = dict(payload, person_id="bob", email="bob@example.org")
        engine.keyring.seal("demo", "person:bob", "joined", mangled)
        mangled["name"] = mangled["name"][:-4] + "AAAA"
        with engine.store.transaction():
            stored = engine.store.append(
                "demo",
                [NewEvent(f"person:{p['person_id']}", "joined", plain.schema,
                          "2025-01-01T00:00:00Z", canonical_json(p))
                 for p in (payload, mangled)],
                actor="test",
            )  # fmt: skip
            engine.projector.apply(stored)
    finally:
        engine.close()
    before = snapshot(db_path)
    names = {row[1]: (row[2], row[3]) for row in before["people"]}
    assert names == {
        "ada": ('Ada "Lovelace"', "ada@example.org"),
        "bob": ("[erased]", "bob@example.org"),
    }
    with Engine.open(db_path) as engine:
        audit.replay(engine)
    assert snapshot(db_path) == before


# Folding sessions and feedback straight from the log


def _tables_opened(conn: sqlite3.Connection, sql: str) -> tuple[set[str], set[str]]:
    """The tables a statement reads and writes, as SQLite compiles it (an index counts
    as its table)."""
    tables = dict(conn.execute("SELECT rootpage, tbl_name FROM sqlite_master"))
    read, written = set(), set()
    unbound = (None,) * max(int(n) for n in re.findall(r"\?(\d+)", sql))
    for row in conn.execute(f"EXPLAIN {sql}", unbound):
        opcode, p2, p3 = row[1], row[3], row[4]
        if opcode in ("OpenRead", "OpenWrite") and p3 == 0 and p2 in tables:
            (read if opcode == "OpenRead" else written).add(tables[p2])
    return read, written


def test_the_bulk_types_only_insert_and_every_other_type_that_touches_their_tables_waits():
    """Read from SQLite's own compiled statements: a bulk type writes one table and reads
    none but its own (SQLite reads the table it inserts into, to check a key), and every
    other type that reads or writes a table a bulk type fills is folded in log order
    around that type's bulk rows (AFTER_BULK)."""
    conn = sqlite3.connect(":memory:")
    for ddl in TABLES.values():
        conn.execute(ddl)
    bulk_tables = set()
    for type_name in FOLDED_IN_BULK:
        for table, sql in STATEMENTS[type_name]:
            read, written = _tables_opened(conn, sql)
            assert written == {table} and read <= {table}, (type_name, read, written)
            assert sql.startswith(f"INSERT INTO {table} (") and "ON CONFLICT" not in sql
            bulk_tables.add(table)
    touching: dict[str, set[str]] = {}
    for type_name, statements in STATEMENTS.items():
        if type_name in FOLDED_IN_BULK:
            continue
        for _, sql in statements:
            read, written = _tables_opened(conn, sql)
            for bulk in FOLDED_IN_BULK:
                if (read | written) & {table for table, _ in STATEMENTS[bulk]}:
                    touching.setdefault(type_name, set()).add(bulk)
    assert touching == AFTER_BULK
    assert set(AFTER_BULK) >= BARRIERS


def _append_directly(engine: Engine, *events: tuple[str, str, int, str, dict]) -> None:
    """Events written through the store, as an import of another site's log would."""
    with engine.store.transaction():
        stored = engine.store.append(
            "default",
            [NewEvent(stream, type_name, schema, at, canonical_json(payload))
             for stream, type_name, schema, at, payload in events],
            actor="test",
        )  # fmt: skip
        engine.projector.apply(stored)


@pytest.fixture
def mixed_log(populated_db: Path) -> Path:
    """The populated program plus a session under the old schema, an erasure, and
    feedback recorded after it, in plain text, on the erased person's pair."""
    with Engine.open(populated_db) as engine:
        _append_directly(
            engine,
            ("pair:ada-grace", "session_held", 1, "2025-03-05T10:00:00Z",
             {"pair_id": "ada-grace", "hours": 1.5, "topics": ["judgement"]}),
        )  # fmt: skip
        engine.execute("default", Forget(person_id="tom", at="2025-04-02T09:00:00Z"), actor=ACTOR)
        _append_directly(
            engine,
            ("pair:mei-tom", "feedback_given", 1, "2025-04-03T09:00:00Z",
             {"pair_id": "mei-tom", "by": "mei", "rating": 3, "comment": "after the erasure"}),
        )  # fmt: skip
        for command in (
            GiveFeedback(pair_id="ada-raj", by="raj", rating=5, comment="Sharp.",
                         at="2025-04-04T09:00:00Z"),
            RecordSession(pair_id="ada-raj", minutes=30, at="2025-04-05T09:00:00Z"),
        ):  # fmt: skip
            engine.execute("default", command, actor=ACTOR)
    return populated_db


def test_a_replay_in_the_smallest_steps_equals_the_incremental_tables(
    mixed_log: Path, monkeypatch: pytest.MonkeyPatch
):
    """Bulk ranges of one position and batches of two events: the old-schema session is
    upcast, the erasure blanks only what was recorded before it, progress counts each
    event once."""
    before = snapshot(mixed_log)
    comments = {(pair, by): comment for _, _, pair, by, _, _, _, comment, _ in before["feedback"]}
    assert comments[("mei-tom", "mei")] == "after the erasure"
    assert comments[("ada-raj", "raj")] == "Sharp."
    assert any(minutes == 90 for *_, minutes, _, _ in before["sessions"])
    monkeypatch.setattr(projections, "BULK_SPAN", 1)
    steps: list[int] = []
    with Engine.open(mixed_log) as engine, engine.store.transaction():
        folded = rebuild(engine.store, engine.projector, batch=2, progress=steps.append)
    assert folded == sum(steps) == read_event_count(mixed_log)
    assert snapshot(mixed_log) == before


def test_a_change_recorded_before_the_row_it_changes_is_folded_before_it(
    populated_db: Path, monkeypatch: pytest.MonkeyPatch
):
    """Events that touch the tables the bulk types fill keep their place in the log
    around the bulk rows: a profile update recorded before its person's joined event (as
    a log merged from elsewhere could hold) changes nothing, in a replay as when it was
    recorded, in large spans and in the smallest."""
    with Engine.open(populated_db) as engine:
        schemas = engine.projector.schemas
        joined = {"person_id": "zed", "name": "Zed", "email": "zed@example.org",
                  "role": "mentee", "department": "Sales"}  # fmt: skip
        _append_directly(
            engine,
            ("person:zed", "profile_updated", schemas["profile_updated"], "2025-05-01T09:00:00Z",
             {"person_id": "zed", "changes": {"department": "Legal"}}),
            ("person:zed", "joined", schemas["joined"], "2025-05-02T09:00:00Z", joined),
            ("person:ada", "profile_updated", schemas["profile_updated"], "2025-05-03T09:00:00Z",
             {"person_id": "ada", "changes": {"department": "Platform"}}),
        )  # fmt: skip
    before = snapshot(populated_db)
    departments = {row[1]: row[6] for row in before["people"]}
    assert (departments["zed"], departments["ada"]) == ("Sales", "Platform")
    for span, batch in ((projections.BULK_SPAN, 1_000), (1, 2), (2, 1)):
        monkeypatch.setattr(projections, "BULK_SPAN", span)
        with Engine.open(populated_db) as engine, engine.store.transaction():
            rebuild(engine.store, engine.projector, batch=batch)
        assert snapshot(populated_db) == before
        with Engine.open(populated_db) as engine:  # with the helper: spans of bulk rows
            audit.replay(engine)  # alone are not scanned
        assert snapshot(populated_db) == before


def test_replay_and_its_check_agree_with_the_incremental_tables_on_a_mixed_log(
    mixed_log: Path, run_cli
):
    """Through the CLI: ``replay --check`` finds nothing, ``replay`` changes nothing."""
    before = snapshot(mixed_log)
    result = run_cli("replay", "--check")
    assert result.exit_code == 0, result.stderr
    assert run_cli("replay").exit_code == 0
    assert snapshot(mixed_log) == before


def test_a_bulk_fold_opens_sealed_comments_as_the_incremental_fold_does(populated_db: Path):
    """Sealed comments read back in plain text after a replay; the SQL function that
    opened them is no longer usable on the connection."""
    with Engine.open(populated_db) as engine:
        sealed = engine.conn.execute(
            "SELECT count(*) FROM events WHERE type = 'feedback_given' AND data LIKE '%rmenc1:%'"
        ).fetchone()[0]
        assert sealed >= 1
        audit.replay(engine)
        with pytest.raises(sqlite3.OperationalError):
            engine.conn.execute("SELECT rmcore_opened('a', 'b', 'c', 'd')")
    comments = [row[7] for row in snapshot(populated_db)["feedback"]]
    assert "Eye-opening." in comments
    assert not any(comment.startswith("rmenc1:") for comment in comments)


@pytest.mark.parametrize("key_cache", [65536, 1], ids=["keys-preloaded", "keys-read-mid-fold"])
def test_a_bulk_fold_reads_an_erased_pairs_comments_as_erased(
    populated_db: Path, run_cli, monkeypatch: pytest.MonkeyPatch, key_cache: int
):
    """After grace is forgotten her pair's sealed comments fold to ``[erased]``, whether
    the keys were loaded before the fold or are looked up while SQLite inserts."""
    from rmcore import personal

    with Engine.open(populated_db) as engine:
        for command in (
            GiveFeedback(pair_id="ada-raj", by="raj", rating=5, comment="Sharp.",
                         at="2025-04-04T09:00:00Z"),
            Forget(person_id="grace", at="2025-05-01T09:00:00Z"),
        ):  # fmt: skip
            engine.execute("default", command, actor=ACTOR)
    before = snapshot(populated_db)
    comments = {(pair, by): comment for _, _, pair, by, _, _, _, comment, _ in before["feedback"]}
    assert comments[("ada-grace", "grace")] == "[erased]"
    assert comments[("ada-raj", "raj")] == "Sharp."
    monkeypatch.setattr(personal, "KEY_CACHE", key_cache)
    with Engine.open(populated_db) as engine:
        audit.replay(engine)
        assert audit.replay_check(engine) == []
    assert snapshot(populated_db) == before


TRICKY_COMMENTS = (
    "emoji 😀 and a clef 𝄞",
    'tab\tnew\nline "quoted" back\\slash',
    "line\u2028separator, combining é, bom \ufeff",
    "rmenc1:looks sealed but is not",
)


@pytest.fixture
def tricky_feedback(populated_db: Path) -> Path:
    """The populated program with sealed comments full of characters JSON escapes."""
    with Engine.open(populated_db) as engine:
        for day, comment in enumerate(TRICKY_COMMENTS, start=10):
            feedback = GiveFeedback(pair_id="ada-raj", by="raj", rating=4, comment=comment,
                                    at=f"2025-04-{day}T09:00:00Z")  # fmt: skip
            engine.execute("default", feedback, actor=ACTOR)
    return populated_db


def test_the_helper_names_a_span_s_kinds_of_event_only_when_it_sees_every_row(
    populated_db: Path,
):
    """The rebuild skips the statements (and the scan) of kinds a span lacks on the
    helper's word: the helper gives it only for a span whose every row it can see, not
    for one holding rows the folding connection has not committed (as in import-log)."""
    with Engine.open(populated_db) as engine:
        engine.conn.execute(f"ATTACH DATABASE ':memory:' AS {MEMORY_SCHEMA}")
        in_log = set(engine.conn.execute("SELECT DISTINCT type, schema FROM events"))

        def present(last: int) -> set | None:
            ahead = projections.OpenedAhead(
                engine.conn, populated_db, engine.keyring, engine.projector.schemas, None, last
            )
            try:
                ahead.start()
                ahead.prepare(last)
                return None if ahead.present is None else set(ahead.present)
            finally:
                ahead.close()

        with engine.store.transaction():
            head = engine.store.head()[0]
            assert present(head) == in_log
            engine.store.append(
                "default",
                [NewEvent("person:zoe", "configured", engine.projector.schemas["configured"],
                          "2025-05-01T09:00:00Z", canonical_json({"key": "k", "value": 1}))],
                actor="test",
            )  # fmt: skip
            assert present(head + 1) is None
            assert present(head) == in_log


def test_values_opened_ahead_are_the_values_the_inserts_would_open(tricky_feedback: Path):
    """The helper puts exactly what ``Keyring.open_value`` gives into the table, and
    nothing for a subject whose key is not in memory."""
    with Engine.open(tricky_feedback) as engine:
        engine.keyring.preload()
        expected = {}
        for position, program, data in engine.conn.execute(
            "SELECT position, program, data FROM events WHERE type = 'feedback_given'"
        ):
            payload = json.loads(data)
            if payload.get("comment", "").startswith("rmenc1:"):
                expected[position] = engine.keyring.open_value(
                    program, f"pair:{payload['pair_id']}", "comment", payload["comment"]
                )
        assert set(TRICKY_COMMENTS) <= set(expected.values())
        engine.conn.execute(f"ATTACH DATABASE ':memory:' AS {MEMORY_SCHEMA}")
        engine.conn.execute("BEGIN")
        head = engine.store.head()[0]
        for loaded in (True, False):
            if not loaded:
                engine.keyring._keys.pop(("default", "pair:ada-raj"))
            ahead = projections.OpenedAhead(
                engine.conn, tricky_feedback, engine.keyring, engine.projector.schemas, None, head
            )
            try:
                ahead.start()
                ahead.prepare(head)
                table = dict(
                    engine.conn.execute(
                        f"SELECT position, value FROM {MEMORY_SCHEMA}.{projections.OPENED_AHEAD}"
                        " WHERE field = 'comment'"
                    ).fetchall()
                )
            finally:
                ahead.close()
            wanted = {p: v for p, v in expected.items() if loaded or v not in TRICKY_COMMENTS}
            assert table == wanted
        engine.conn.execute("ROLLBACK")


def test_a_replay_with_comments_opened_ahead_equals_the_incremental_tables(
    tricky_feedback: Path,
):
    """Through ``audit.replay``, which opens ahead from the WAL file: the same rows."""
    before = snapshot(tricky_feedback)
    assert set(TRICKY_COMMENTS) <= {row[7] for row in before["feedback"]}
    with Engine.open(tricky_feedback) as engine:
        audit.replay(engine)
        assert audit.replay_check(engine) == []
    assert snapshot(tricky_feedback) == before


def _counts_by_hand(path: Path, until: str | None = None) -> list[tuple]:
    """Per program: first and last position, events, the first event's occurred_at."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT program, position, occurred_at FROM events ORDER BY position"
        ).fetchall()
    finally:
        conn.close()
    counts: dict[str, list] = {}
    for program, position, occurred_at in rows:
        if until is None or occurred_at <= until:
            seen = counts.setdefault(program, [position, position, 0, occurred_at])
            seen[1], seen[2] = position, seen[2] + 1
    return sorted((program, *values) for program, values in counts.items())


def test_events_are_counted_per_program_for_one_several_or_no_program(
    populated_db: Path, tmp_path: Path
):
    """One program takes the quick lookups, several the grouped scan; both agree with
    counting by hand, with and without a moment to stop at."""
    with Engine.open(tmp_path / "empty.db", create=True) as engine:
        assert engine.store.program_counts() == []
    several = tmp_path / "several.db"
    several.write_bytes(populated_db.read_bytes())
    with Engine.open(several) as engine:
        for person_id in ("zoe", "yan"):
            join = Join(person_id=person_id, name=person_id.title(), role="mentee",
                        email=f"{person_id}@example.org", at="2025-01-07T09:00:00Z")  # fmt: skip
            engine.execute("spring", join, actor=ACTOR)
    for path in (populated_db, several):
        with Engine.open(path) as engine:
            for until in (None, "2025-02-11T23:59:59Z"):
                counted = sorted(engine.store.program_counts(occurred_until=until))
                assert counted == _counts_by_hand(path, until)


@pytest.fixture
def many_comments(populated_db: Path) -> Path:
    """The populated program with 20,000 more sealed comments (more than SQLite keeps
    in its default temporary page cache), then one later session."""
    with Engine.open(populated_db) as engine:
        events = []
        for n in range(20_000):
            payload = {"pair_id": "ada-grace", "by": "grace", "rating": 4,
                       "comment": f"Comment {n}, about delegation and prompts. " * 4}  # fmt: skip
            engine.keyring.seal("default", "pair:ada-grace", "feedback_given", payload)
            events.append(("pair:ada-grace", "feedback_given", 1, "2025-03-02T09:00:00Z", payload))
        _append_directly(engine, *events)
        engine.execute(
            "default", RecordSession(pair_id="ada-raj", minutes=30, at="2025-04-05T09:00:00Z"),
            actor=ACTOR,
        )  # fmt: skip
    return populated_db


needs_proc = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="needs /proc to see open files"
)


@needs_proc
def test_a_replay_puts_no_copy_of_read_model_rows_in_a_temporary_file(many_comments: Path):
    """Inserting thousands of opened comments in bulk keeps its statement journals and
    the values opened ahead in memory, replay after replay."""
    seen: list[str] = []
    with Engine.open(many_comments) as engine:
        for _ in range(2):  # the second one reuses the pages the first one freed
            audit.replay(engine, progress=lambda _: seen.extend(temporary_files()))
    assert seen == []


@needs_proc
def test_point_in_time_copies_put_no_opened_comment_in_a_temporary_file(
    many_comments: Path, tmp_path: Path
):
    """A copy of the whole log and one cut before the last recording (rows copied, then
    folded) both fold with temporary storage in memory."""
    seen: list[str] = []
    with Engine.open(many_comments) as engine:
        recorded = [row[0] for row in engine.conn.execute(
            "SELECT recorded_at FROM events ORDER BY position DESC LIMIT 2"
        )]  # fmt: skip
        for name, known_at in (("whole.db", recorded[0]), ("cut.db", recorded[1])):
            audit.snapshot(
                engine, tmp_path / name, known_at=known_at,
                progress=lambda _: seen.extend(temporary_files()),
            )  # fmt: skip
    assert seen == []


def test_an_interrupt_while_a_comment_is_opened_stops_the_replay_as_itself(
    populated_db: Path, monkeypatch: pytest.MonkeyPatch
):
    """SQLite would report it as "user-defined function raised exception"; the fold
    raises the interrupt itself, rolls back, and the next replay runs normally."""
    before = snapshot(populated_db)
    with Engine.open(populated_db) as engine:

        def interrupted(*args):
            raise KeyboardInterrupt

        monkeypatch.setattr(engine.keyring, "open_value", interrupted)
        with pytest.raises(KeyboardInterrupt), engine.store.transaction():
            rebuild(engine.store, engine.projector)  # no helper: the inserts open comments
        monkeypatch.undo()
        audit.replay(engine)
    assert snapshot(populated_db) == before


def test_an_interrupt_between_batches_stops_the_replay_as_itself(
    populated_db: Path, monkeypatch: pytest.MonkeyPatch
):
    """Stopping while the log is being read leaves no error of the clean-up in its place."""
    before = snapshot(populated_db)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(projections, "plan_fold", interrupted)
    with Engine.open(populated_db) as engine, pytest.raises(KeyboardInterrupt):
        audit.replay(engine)
    assert snapshot(populated_db) == before


def test_a_replay_that_failed_leaves_later_commands_on_the_engine_working(
    populated_db: Path, monkeypatch: pytest.MonkeyPatch
):
    """The indexes it had dropped came back with the rollback; forgetting someone on the
    same engine afterwards (whose fold builds dropped indexes first) does not drop or
    build them twice."""
    with Engine.open(populated_db) as engine:
        with monkeypatch.context() as patched:

            def interrupted(*args, **kwargs):
                raise KeyboardInterrupt

            patched.setattr(projections, "plan_fold", interrupted)
            with pytest.raises(KeyboardInterrupt):
                audit.replay(engine)
        engine.execute("default", Forget(person_id="tom", at="2025-05-01T09:00:00Z"), actor=ACTOR)
        assert audit.replay_check(engine) == []
