"""``rmcore export`` and ``rmcore import-log``: moving a log between databases, verified."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ACTOR, assert_refused_output
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from rmcore.cli import cli
from rmcore.commands import DomainError, GiveFeedback, Join, MakePair, SetConfig
from rmcore.engine import Engine
from rmcore.projections import TABLES
from rmcore.store import canonical_envelope, chain_hash


def read_models(path: Path, program: str | None = None) -> dict[str, list[tuple]]:
    """Every row of every core read model (one program's rows if given), sorted."""
    conn = sqlite3.connect(path)
    try:
        tables = {}
        for table in (*TABLES, "checkpoints"):
            where = " WHERE program = ?" if program and table != "checkpoints" else ""
            params = (program,) if where else ()
            tables[table] = sorted(conn.execute(f"SELECT * FROM {table}{where}", params))
        return tables
    finally:
        conn.close()


def keys_of(export_file: Path) -> Path:
    """Where ``export`` writes the key file of an export."""
    return export_file.with_name(export_file.name + ".keys")


def export(run_cli, out: Path, *options: str, db: Path | None = None) -> list[str]:
    """``rmcore export --out OUT --keys-out OUT.keys``; the export's lines (newlines kept)."""
    result = run_cli("export", "--out", str(out), "--keys-out", str(keys_of(out)), *options, db=db)
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8").splitlines(keepends=True)


def fresh(run_cli, path: Path) -> Path:
    """A new, empty database."""
    assert run_cli("init", db=path).exit_code == 0
    return path


def import_log(run_cli, file: Path, db: Path):
    """``rmcore --db DB import-log FILE``, with the export's key file when there is one."""
    keys = ("--keys", str(keys_of(file))) if keys_of(file).exists() else ()
    return run_cli("import-log", str(file), *keys, db=db)


def anchor_of(run_cli, db: Path) -> str:
    """``verify --anchor`` on a database (which also proves its chain is intact)."""
    result = run_cli("verify", "--anchor", db=db)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def listing(run_cli, db: Path, program: str = "default") -> tuple[list, list]:
    """People and pairs (every status) as the CLI prints them in JSON."""
    people = run_cli("--program", program, "people", "--status", "all", "--format", "json", db=db)
    pairs = run_cli("--program", program, "pairs", "--status", "all", "--format", "json", db=db)
    assert people.exit_code == pairs.exit_code == 0
    return json.loads(people.stdout), json.loads(pairs.stdout)


@pytest.fixture
def two_programs(populated_db: Path, run_cli) -> Path:
    """The populated program plus a small second program, ``pilot-b``, interleaved."""
    for command in (
        ("--program", "pilot-b", "join", "zoe", "--name", "Zoe", "--email", "zoe@example.org",
         "--role", "mentor", "--capacity", "1", "--at", "2025-02-10"),
        ("session", "ada-raj", "--minutes", "30", "--at", "2025-02-18"),
        ("--program", "pilot-b", "join", "yan", "--name", "Yan", "--email", "yan@example.org",
         "--role", "mentee", "--at", "2025-02-10"),
        ("--program", "pilot-b", "pair", "zoe", "yan", "--at", "2025-02-11"),
        ("feedback", "ada-raj", "--by", "raj", "--rating", "4", "--at", "2025-02-19",
         "--idempotency-key", "fb-raj-1"),
    ):  # fmt: skip
        result = run_cli(*command)
        assert result.exit_code == 0, result.output
    return populated_db


# Round trips -------------------------------------------------------------------------------


def test_an_export_imported_into_a_fresh_database_gives_the_same_chain_and_read_models(
    populated_db: Path, run_cli, raw_log, tmp_path: Path
):
    """Same rows, same head hash, same read models; the copy verifies deep."""
    file = tmp_path / "program.jsonl"
    export(run_cli, file)
    target = fresh(run_cli, tmp_path / "target.db")
    result = import_log(run_cli, file, target)
    assert result.exit_code == 0, result.output
    count = raw_log.count()
    assert f"Read {count} events: {count} appended, 0 already here." in result.stdout
    assert anchor_of(run_cli, target) == anchor_of(run_cli, populated_db)
    assert raw_log.rows(target) == raw_log.rows()
    assert read_models(target) == read_models(populated_db)
    assert run_cli("verify", "--deep", db=target).exit_code == 0


def test_without_its_key_file_an_import_keeps_the_chain_but_cannot_read_names(
    populated_db: Path, run_cli, raw_log, tmp_path: Path
):
    """The export itself holds names, emails and comments only as ciphertext."""
    file = tmp_path / "program.jsonl"
    export(run_cli, file)
    keys_of(file).unlink()
    text = file.read_text(encoding="utf-8")
    assert "Ada Lovelace" not in text and "ada@example.org" not in text
    target = fresh(run_cli, tmp_path / "target.db")
    assert import_log(run_cli, file, target).exit_code == 0
    assert anchor_of(run_cli, target) == anchor_of(run_cli, populated_db)
    people, _ = listing(run_cli, target)
    assert {p["name"] for p in people} == {"[sealed]"}  # not erased: this copy lacks keys
    assert {p["email"] for p in people} == {"[sealed]"}
    assert [p["role"] for p in people] == [p["role"] for p in listing(run_cli, populated_db)[0]]


def test_the_export_and_its_key_file_are_readable_by_their_owner_only(
    populated_db: Path, run_cli, tmp_path
):
    file = tmp_path / "program.jsonl"
    export(run_cli, file)
    assert file.stat().st_mode & 0o777 == 0o600
    assert keys_of(file).stat().st_mode & 0o777 == 0o600


def test_a_damaged_key_file_refuses_the_import_naming_its_line(
    populated_db: Path, run_cli, raw_log, tmp_path: Path
):
    file = tmp_path / "program.jsonl"
    export(run_cli, file)
    lines = keys_of(file).read_text().splitlines()
    lines[1] = lines[1].replace('"key": "', '"key": "!!')
    keys_of(file).write_text("\n".join(lines) + "\n")
    target = fresh(run_cli, tmp_path / "target.db")
    result = import_log(run_cli, file, target)
    assert result.exit_code == 1
    assert "line 2: not a key line" in result.stderr
    assert raw_log.count(target) == 0


def test_a_whole_log_export_carries_every_program(
    two_programs: Path, run_cli, raw_log, tmp_path: Path
):
    """--all-programs moves the whole database's log, both programs and one chain."""
    file = tmp_path / "all.jsonl"
    export(run_cli, file, "--all-programs")
    target = fresh(run_cli, tmp_path / "target.db")
    assert import_log(run_cli, file, target).exit_code == 0
    assert anchor_of(run_cli, target) == anchor_of(run_cli, two_programs)
    assert raw_log.rows(target) == raw_log.rows()
    assert read_models(target) == read_models(two_programs)
    assert listing(run_cli, target, "pilot-b") == listing(run_cli, two_programs, "pilot-b")


def test_the_export_is_a_header_the_log_lines_and_a_closing_digest(
    two_programs: Path, run_cli, raw_log, tmp_path: Path
):
    """Header names the format and program; the body is what `rmcore log` prints; the last
    line counts the events and digests their hashes in order."""
    lines = export(run_cli, tmp_path / "program.jsonl")
    header, *body, trailer = (json.loads(line) for line in lines)
    assert header["format"] == "rmcore-log"
    assert header["version"] == 1
    assert header["program"] == "default"
    assert header["source_head"] == raw_log.count()
    logged = run_cli("log")
    assert body == [json.loads(line) for line in logged.stdout.splitlines()]
    assert {event["program"] for event in body} == {"default"}
    hashes = [h for (h,) in raw_log.query(
        "SELECT hash FROM events WHERE program = 'default' ORDER BY position")]  # fmt: skip
    assert trailer == {
        "end": True,
        "events": len(hashes),
        "digest": hashlib.sha256("".join(hashes).encode()).hexdigest(),
    }
    everything = export(run_cli, tmp_path / "all.jsonl", "--all-programs")
    assert json.loads(everything[0])["program"] is None
    assert len(everything) == raw_log.count() + 2


def test_importing_the_same_file_twice_appends_nothing(
    populated_db: Path, run_cli, raw_log, tmp_path: Path
):
    """The second import finds every event already there."""
    file = tmp_path / "program.jsonl"
    export(run_cli, file)
    target = fresh(run_cli, tmp_path / "target.db")
    assert import_log(run_cli, file, target).exit_code == 0
    rows, models = raw_log.rows(target), read_models(target)
    again = import_log(run_cli, file, target)
    assert again.exit_code == 0, again.output
    count = raw_log.count()
    assert f"Read {count} events: 0 appended, {count} already here." in again.stdout
    assert raw_log.rows(target) == rows
    assert read_models(target) == models


def test_importing_an_export_into_its_own_source_appends_nothing(
    populated_db: Path, run_cli, raw_log, tmp_path: Path
):
    """Every event is already in the source."""
    file = tmp_path / "program.jsonl"
    export(run_cli, file)
    before = raw_log.rows()
    assert import_log(run_cli, file, populated_db).exit_code == 0
    assert raw_log.rows() == before


def test_a_later_export_adds_only_what_is_new(populated_db: Path, run_cli, raw_log, tmp_path: Path):
    """Export, import, record more, export again: the second import appends the rest."""
    target = fresh(run_cli, tmp_path / "target.db")
    assert import_log(run_cli, _exported(run_cli, tmp_path / "one.jsonl"), target).exit_code == 0
    for command in (
        ("session", "ada-raj", "--minutes", "50", "--at", "2025-04-10"),
        ("leave", "ken", "--reason", "retired", "--at", "2025-04-11"),
    ):
        assert run_cli(*command).exit_code == 0
    result = import_log(run_cli, _exported(run_cli, tmp_path / "two.jsonl"), target)
    assert result.exit_code == 0, result.output
    assert "2 appended" in result.stdout
    assert raw_log.rows(target) == raw_log.rows()
    assert read_models(target) == read_models(populated_db)


def _exported(run_cli, file: Path) -> Path:
    export(run_cli, file)
    return file


def test_a_program_export_into_a_database_with_another_program_appends_after_its_chain(
    populated_db: Path, run_cli, raw_log, tmp_path: Path
):
    """New positions and hashes continuing the target's chain; same people and pairs;
    the other program untouched; a second import appends nothing."""
    file = tmp_path / "program.jsonl"
    export(run_cli, file)
    target = fresh(run_cli, tmp_path / "target.db")
    for person in ("zoe", "yan"):
        result = run_cli(
            "--program", "pilot-b", "join", person, "--name", person.title(),
            "--email", f"{person}@example.org", "--role", "mentee", "--at", "2025-01-03",
            db=target,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    own = raw_log.rows(target)
    other_before = listing(run_cli, target, "pilot-b")
    result = import_log(run_cli, file, target)
    assert result.exit_code == 0, result.output
    rows = raw_log.rows(target)
    assert rows[: len(own)] == own
    imported = rows[len(own) :]
    source = raw_log.rows()
    assert [row[0] for row in imported] == list(range(len(own) + 1, len(rows) + 1))
    assert imported[0][12] == own[-1][13]  # prev_hash continues the target's chain
    # Every envelope field except position and hashes travels unchanged.
    assert [row[1:12] for row in imported] == [row[1:12] for row in source]
    verified = run_cli("verify", "--deep", db=target)
    assert verified.exit_code == 0, verified.output
    assert listing(run_cli, target) == listing(run_cli, populated_db)
    assert listing(run_cli, target, "pilot-b") == other_before
    again = import_log(run_cli, file, target)
    assert again.exit_code == 0
    assert raw_log.rows(target) == rows


def test_a_diverged_log_of_the_same_program_is_refused(
    populated_db: Path, run_cli, raw_log, tmp_path: Path
):
    """The target's own ``default`` program already has other events at those versions."""
    file = tmp_path / "program.jsonl"
    export(run_cli, file)
    target = fresh(run_cli, tmp_path / "target.db")
    result = run_cli(
        "config", "set", "matching_skills.min_score", "0.7", "--at", "2025-01-01", db=target
    )
    assert result.exit_code == 0, result.output
    before = raw_log.rows(target)
    refused = import_log(run_cli, file, target)
    assert refused.exit_code == 1
    assert "diverged" in refused.stderr
    assert raw_log.rows(target) == before


def test_idempotency_keys_travel_with_the_log(two_programs: Path, run_cli, raw_log, tmp_path: Path):
    """A retry of a command recorded before the move appends nothing in the new database."""
    file = tmp_path / "program.jsonl"
    export(run_cli, file)
    target = fresh(run_cli, tmp_path / "target.db")
    assert import_log(run_cli, file, target).exit_code == 0
    before = raw_log.count(target)
    retry = run_cli(
        "feedback", "ada-raj", "--by", "raj", "--rating", "4", "--at", "2025-02-19",
        "--idempotency-key", "fb-raj-1", db=target,
    )  # fmt: skip
    assert retry.exit_code == 0, retry.output
    assert "Already recorded" in retry.stdout
    assert raw_log.count(target) == before


def test_free_text_with_quotes_line_breaks_and_emoji_survives_the_move(
    populated_db: Path, run_cli, raw_log, tmp_path: Path
):
    """Payload text is re-encoded on the way in exactly as it was hashed."""
    comment = 'First line\nsecond \t"quoted" \\ back\u2028slash, café, 😀'
    result = run_cli(
        "feedback", "ada-raj", "--by", "raj", "--rating", "5", "--comment", comment,
        "--at", "2025-02-20",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    file = tmp_path / "program.jsonl"
    export(run_cli, file)
    target = fresh(run_cli, tmp_path / "target.db")
    assert import_log(run_cli, file, target).exit_code == 0
    assert raw_log.rows(target) == raw_log.rows()
    stored = raw_log.query("SELECT comment FROM feedback WHERE by_person = 'raj'", path=target)
    assert stored == [(comment,)]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**62), 2**62)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6,
)  # fmt: skip


def rows_of(path: Path) -> list[tuple]:
    """Every row of the log, read with plain sqlite3."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM events ORDER BY position").fetchall()
    finally:
        conn.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    comment=st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\n\t"),
                    max_size=60),
    value=JSON_VALUES,
)  # fmt: skip
def test_any_comment_and_setting_value_round_trips_through_export_and_import(comment: str, value):
    """Whatever text and JSON values the rules accept, the imported chain is identical."""
    with tempfile.TemporaryDirectory() as folder:
        source, target, file = (Path(folder) / name for name in ("s.db", "t.db", "e.jsonl"))
        with Engine.open(source, create=True) as engine:
            commands = [
                Join(person_id="ada", name="Ada", email="ada@example.org", role="mentor",
                     capacity=1, at="2025-01-06T09:00:00Z"),
                Join(person_id="raj", name="Raj", email="raj@example.org", role="mentee",
                     at="2025-01-06T09:00:00Z"),
                MakePair(mentor_id="ada", mentee_id="raj", at="2025-01-07T09:00:00Z"),
            ]  # fmt: skip
            engine.execute("default", commands, actor=ACTOR)
            try:
                engine.execute(
                    "default",
                    [GiveFeedback(pair_id="ada-raj", by="raj", rating=4, comment=comment,
                                  at="2025-01-08T09:00:00Z"),
                     SetConfig(key="audit_demo.value", value=value, at="2025-01-08T09:00:00Z")],
                    actor=ACTOR,
                )  # fmt: skip
            except DomainError:
                reject()
        runner = CliRunner()
        exported = runner.invoke(cli, ["--db", str(source), "export", "--out", str(file)])
        assert exported.exit_code == 0, exported.output
        Engine.open(target, create=True).close()
        imported = runner.invoke(cli, ["--db", str(target), "import-log", str(file)])
        assert imported.exit_code == 0, imported.output
        assert rows_of(target) == rows_of(source)


# Refusals -----------------------------------------------------------------------------------

Tamper = Callable[[list[str]], list[str]]


def _line_of(lines: list[str], type_name: str) -> int:
    """The 0-based index of the first line holding an event of this type."""
    return next(i for i, line in enumerate(lines) if f'"type":"{type_name}"' in line)


def edit_rating(lines: list[str]) -> tuple[list[str], int]:
    """Change a feedback rating; the hash no longer matches."""
    i = _line_of(lines, "feedback_given")
    event = json.loads(lines[i])
    event["data"]["rating"] = 1 if event["data"]["rating"] != 1 else 2
    return [*lines[:i], json.dumps(event) + "\n", *lines[i + 1 :]], i + 1


def edit_and_rehash_one(lines: list[str]) -> tuple[list[str], int]:
    """Change a rating and recompute that event's hash only: the next line no longer links."""
    i = _line_of(lines, "feedback_given")
    event = json.loads(lines[i])
    event["data"]["rating"] = 1 if event["data"]["rating"] != 1 else 2
    data = json.dumps(event["data"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    fields = [event[name] for name in (
        "position", "event_id", "program", "stream", "version", "type", "schema",
        "occurred_at", "recorded_at", "actor", "idempotency_key")]  # fmt: skip
    event["hash"] = chain_hash(event["prev_hash"], canonical_envelope(*fields, data))
    return [*lines[:i], json.dumps(event) + "\n", *lines[i + 1 :]], i + 2


def delete_line(lines: list[str]) -> tuple[list[str], int]:
    """Drop an event from the middle; the line after it no longer links."""
    i = len(lines) // 2
    return [*lines[:i], *lines[i + 1 :]], i + 1


def swap_lines(lines: list[str]) -> tuple[list[str], int]:
    """Swap two neighbouring events."""
    i = len(lines) // 2
    return [*lines[:i], lines[i + 1], lines[i], *lines[i + 2 :]], i + 1


def swap_lines_second(lines: list[str]) -> tuple[list[str], int]:
    """Swap two neighbouring events; report the second, whose position is now lower."""
    swapped, line = swap_lines(lines)
    return swapped, line + 1


def duplicate_line(lines: list[str]) -> tuple[list[str], int]:
    """Repeat an event."""
    i = len(lines) // 2
    return [*lines[: i + 1], lines[i], *lines[i + 1 :]], i + 2


def drop_closing_line(lines: list[str]) -> tuple[list[str], int]:
    """Truncated: the closing line is missing."""
    return lines[:-1], len(lines) - 1


def cut_mid_line(lines: list[str]) -> tuple[list[str], int]:
    """Truncated in the middle of an event."""
    i = len(lines) // 2
    return [*lines[:i], lines[i][: len(lines[i]) // 2]], i + 1


def garbage_line(lines: list[str]) -> tuple[list[str], int]:
    """One line replaced by text that is not JSON."""
    i = len(lines) // 2
    return [*lines[:i], "this is not json {\n", *lines[i + 1 :]], i + 1


def text_after_the_end(lines: list[str]) -> tuple[list[str], int]:
    """Something appended after the closing line."""
    return [*lines, lines[1]], len(lines) + 1


def no_header(lines: list[str]) -> tuple[list[str], int]:
    """The header line removed."""
    return lines[1:], 1


def wrong_count(lines: list[str]) -> tuple[list[str], int]:
    """The closing line claims one event more."""
    trailer = json.loads(lines[-1])
    trailer["events"] += 1
    return [*lines[:-1], json.dumps(trailer) + "\n"], len(lines)


def not_an_envelope(lines: list[str]) -> tuple[list[str], int]:
    """A JSON object that is not an event envelope."""
    i = len(lines) // 2
    return [*lines[:i], '{"position": 3}\n', *lines[i + 1 :]], i + 1


# (tamper, what the refusal says; "{line}" is the line the tamper reports)
WHOLE_LOG_CASES = [
    (edit_rating, "line {line}: the event's contents do not match its hash"),
    (edit_and_rehash_one, "line {line}: does not follow the line before it"),
    (delete_line, "line {line}: does not follow the line before it"),
    (swap_lines, "line {line}: does not follow the line before it"),
    (duplicate_line, "line {line}: positions go backwards"),
    (drop_closing_line, "ends without its closing line (after line {line})"),
    (cut_mid_line, "line {line}: not valid JSON"),
    (garbage_line, "line {line}: not valid JSON"),
    (text_after_the_end, "line {line}: text after the end of the export"),
    (no_header, "line {line}: not an rmcore log export"),
    (wrong_count, "the closing line does not match the events in the file"),
    (not_an_envelope, "line {line}: not an event envelope"),
]


@pytest.mark.parametrize(("tamper", "message"), WHOLE_LOG_CASES, ids=lambda v: getattr(
    v, "__name__", ""))  # fmt: skip
def test_a_broken_or_edited_whole_log_export_is_refused_whole_naming_the_line(
    two_programs: Path, run_cli, raw_log, tmp_path: Path, tamper, message: str
):
    """Exit 1, the reason (with its line), and nothing appended to the target."""
    lines = export(run_cli, tmp_path / "all.jsonl", "--all-programs")
    broken, line = tamper(lines)
    file = tmp_path / "broken.jsonl"
    file.write_text("".join(broken), encoding="utf-8")
    target = fresh(run_cli, tmp_path / "target.db")
    result = import_log(run_cli, file, target)
    assert result.exit_code == 1, result.output
    assert message.format(line=line) in result.stderr
    assert "Traceback" not in result.output
    assert raw_log.count(target) == 0
    assert all(rows == [] for table, rows in read_models(target).items() if table != "checkpoints")


PROGRAM_CASES = [
    (edit_rating, "line {line}: the event's contents do not match its hash"),
    (swap_lines_second, "line {line}: positions go backwards"),
    (delete_line, "the closing line does not match the events in the file"),
    (drop_closing_line, "ends without its closing line"),
    (garbage_line, "line {line}: not valid JSON"),
]


@pytest.mark.parametrize(("tamper", "message"), PROGRAM_CASES, ids=lambda v: getattr(
    v, "__name__", ""))  # fmt: skip
def test_a_broken_program_export_is_refused_whole(
    two_programs: Path, run_cli, raw_log, tmp_path: Path, tamper, message: str
):
    """A one-program export skips positions, so gaps are caught by the closing digest."""
    lines = export(run_cli, tmp_path / "program.jsonl")
    broken, line = tamper(lines)
    file = tmp_path / "broken.jsonl"
    file.write_text("".join(broken), encoding="utf-8")
    target = fresh(run_cli, tmp_path / "target.db")
    result = import_log(run_cli, file, target)
    assert result.exit_code == 1, result.output
    assert message.format(line=line) in result.stderr
    assert raw_log.count(target) == 0


def forged_export(lines: list[str], edit: Callable[[list[dict]], None], out: Path) -> Path:
    """``lines`` of an export with ``edit`` applied to its events, then every hash, link
    and the trailer's digest recomputed, as someone forging it consistently would."""
    header, *events, _ = (json.loads(line) for line in lines)
    edit(events)
    prev = "0" * 64
    for event in events:
        data = json.dumps(event["data"], sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)  # fmt: skip
        fields = [event[name] for name in (
            "position", "event_id", "program", "stream", "version", "type", "schema",
            "occurred_at", "recorded_at", "actor", "idempotency_key")]  # fmt: skip
        event["prev_hash"] = prev
        event["hash"] = prev = chain_hash(prev, canonical_envelope(*fields, data))
    digest = hashlib.sha256("".join(e["hash"] for e in events).encode()).hexdigest()
    trailer = {"end": True, "events": len(events), "digest": digest}
    out.write_text("".join(json.dumps(x) + "\n" for x in (header, *events, trailer)))
    return out


def test_a_consistently_rehashed_export_with_an_undecodable_payload_is_refused(
    populated_db: Path, run_cli, raw_log, tmp_path: Path
):
    """Hashes, links and digest all recomputed: the payload check still names the line."""
    lines = export(run_cli, tmp_path / "program.jsonl")
    types = [json.loads(line)["type"] for line in lines[1:-1]]
    index = types.index("session_held")

    def add_a_field(events: list[dict]) -> None:
        events[index]["data"]["mood"] = "great"

    file = forged_export(lines, add_a_field, tmp_path / "forged.jsonl")
    target = fresh(run_cli, tmp_path / "target.db")
    result = import_log(run_cli, file, target)
    assert result.exit_code == 1, result.output
    assert f"line {index + 2}: " in result.stderr
    assert "mood" in result.stderr
    assert raw_log.count(target) == 0


@pytest.mark.parametrize("field", ["event_id", "recorded_at", "actor", "occurred_at"])
def test_a_consistently_rehashed_export_with_a_control_character_in_its_envelope_is_refused(
    populated_db: Path, run_cli, raw_log, tmp_path: Path, field: str
):
    """No append stores a NUL in an envelope field, import-log's included: verify relies
    on it to see text hidden from the hash."""
    lines = export(run_cli, tmp_path / "program.jsonl")

    def hide_text(events: list[dict]) -> None:
        events[3][field] += "\x00hidden"

    file = forged_export(lines, hide_text, tmp_path / "forged.jsonl")
    target = fresh(run_cli, tmp_path / "target.db")
    result = import_log(run_cli, file, target)
    assert result.exit_code == 1, result.output
    assert raw_log.count(target) == 0


def test_a_large_export_broken_at_its_end_appends_nothing(
    db_path: Path, run_cli, raw_log, tmp_path: Path
):
    """Events are added in chunks inside one transaction: a refusal after the first chunks
    still leaves the target as it was."""
    with Engine.open(db_path) as engine:
        engine.execute(
            "default",
            [Join(person_id=f"p{i:05d}", name=f"Person {i}", email=f"p{i}@example.org",
                  role="mentee", at="2025-01-06T09:00:00Z") for i in range(4500)],
            actor=ACTOR,
        )  # fmt: skip
    lines = export(run_cli, tmp_path / "big.jsonl")
    event = json.loads(lines[-2])
    event["data"]["name"] = "Someone Else"
    file = tmp_path / "broken.jsonl"
    file.write_text("".join([*lines[:-2], json.dumps(event) + "\n", lines[-1]]))
    target = fresh(run_cli, tmp_path / "target.db")
    result = import_log(run_cli, file, target)
    assert result.exit_code == 1
    assert f"line {len(lines) - 1}: " in result.stderr
    assert raw_log.count(target) == 0
    assert read_models(target)["people"] == []


def test_export_never_overwrites_a_file(populated_db: Path, run_cli, tmp_path: Path):
    """An existing --out is refused and keeps its bytes."""
    existing = tmp_path / "kept.jsonl"
    existing.write_text("earlier export\n")
    result = run_cli("export", "--out", str(existing))
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert existing.read_text() == "earlier export\n"


def test_importing_a_missing_file_is_refused(populated_db: Path, run_cli, raw_log, tmp_path):
    """Exit 1 naming the path; nothing appended."""
    before = raw_log.count()
    result = run_cli("import-log", str(tmp_path / "absent.jsonl"))
    assert result.exit_code == 1
    assert "absent.jsonl" in result.stderr
    assert raw_log.count() == before


@pytest.mark.parametrize(
    ("out", "reason"),
    [
        ("", "empty"),
        ("missing-folder/x.jsonl", "No such file or directory"),
        ("a-file/x.jsonl", "Not a directory"),
    ],
)
def test_an_export_to_a_path_that_cannot_be_created_is_refused_naming_it(
    populated_db: Path, run_cli, tmp_path: Path, monkeypatch, out: str, reason: str
):
    """A clear message and exit 1, never a traceback, and no file left anywhere."""
    monkeypatch.chdir(tmp_path)
    assert_refused_output(run_cli, tmp_path, "export", out, reason)


def test_an_interrupted_export_leaves_nothing_and_the_rerun_works(
    populated_db: Path, run_cli, tmp_path: Path, monkeypatch
):
    """Ctrl-C after the first lines: no partial file blocks the next export."""
    from rmcore.store import SQLiteEventStore

    complete = SQLiteEventStore.json_lines

    def interrupted(self, where, batch=5000):
        yield next(complete(self, where, batch=3))
        raise KeyboardInterrupt

    monkeypatch.setattr(SQLiteEventStore, "json_lines", interrupted)
    out = tmp_path / "moved.jsonl"
    result = run_cli("export", "--out", str(out))
    assert result.exit_code == 1
    assert list(tmp_path.iterdir()) == [populated_db]
    monkeypatch.setattr(SQLiteEventStore, "json_lines", complete)
    again = run_cli("export", "--out", str(out))
    assert again.exit_code == 0, again.output
    target = fresh(run_cli, tmp_path / "target.db")
    assert import_log(run_cli, out, target).exit_code == 0


def test_importing_a_binary_file_is_refused_as_not_an_export(
    populated_db: Path, run_cli, raw_log, tmp_path: Path
):
    """A database given by mistake: exit 1 naming the file and the line, nothing appended."""
    target = fresh(run_cli, tmp_path / "target.db")
    result = run_cli("import-log", str(populated_db), db=target)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert f"{populated_db} is not a JSON-lines export (line 1 is not UTF-8 text)" in result.stderr
    assert raw_log.count(target) == 0


def test_an_export_whose_key_file_cannot_be_created_writes_neither_file(
    populated_db: Path, run_cli, tmp_path: Path
):
    """Both targets are checked first: the refusal leaves no export behind to block a rerun."""
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / "moved.jsonl"
    result = run_cli("export", "--out", str(out), "--keys-out", str(tmp_path / "a-file" / "k"))
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "cannot create" in result.stderr and "Not a directory" in result.stderr
    assert not out.exists()
    assert export(run_cli, out)  # the rerun is not refused
