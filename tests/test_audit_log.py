"""``rmcore log``: envelopes as JSON lines, every filter, and ``--follow``."""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ACTOR

from rmcore import log_stream
from rmcore.commands import (
    EndPair,
    Forget,
    GiveFeedback,
    Join,
    Leave,
    MakePair,
    RecordSession,
    SetConfig,
    UpdateProfile,
)
from rmcore.engine import Engine
from rmcore.events import EventRegistry
from rmcore.personal import PREFIX
from rmcore.store import COLUMNS, EventFilter, NewEvent


def log_lines(run_cli, *args: str, db: Path | None = None) -> list[dict]:
    """``rmcore log ARGS``: every stdout line parsed as JSON."""
    result = run_cli("log", *args, db=db)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def positions(lines: list[dict]) -> list[int]:
    """The positions of parsed log lines."""
    return [line["position"] for line in lines]


def raw_positions(raw_log, where: str = "1", params: tuple = ()) -> list[int]:
    """Positions of the raw events table matching a WHERE clause, in order."""
    return [p for (p,) in raw_log.query(f"SELECT position FROM events WHERE {where} "
                                        "ORDER BY position", params)]  # fmt: skip


@pytest.fixture
def busy_db(populated_db: Path, run_cli) -> Path:
    """The populated program, plus a second program and events from two more actors."""
    commands = [
        ("--actor", "coach-amy", "session", "ada-raj", "--minutes", "40", "--at", "2025-02-18"),
        ("--actor", "coach-amy", "feedback", "ada-raj", "--by", "raj", "--rating", "4",
         "--at", "2025-02-19"),
        ("--program", "pilot-b", "--actor", "hr-b", "join", "zoe", "--name", "Zoe",
         "--email", "zoe@example.org", "--role", "mentor", "--capacity", "1",
         "--at", "2025-02-10"),
        ("--program", "pilot-b", "--actor", "hr-b", "join", "yan", "--name", "Yan",
         "--email", "yan@example.org", "--role", "mentee", "--at", "2025-02-10"),
        ("--program", "pilot-b", "--actor", "hr-b", "pair", "zoe", "yan", "--at", "2025-02-11"),
        ("config", "set", "notify_email.sender", "\"mentoring@example.org\"",
         "--at", "2025-05-01"),
    ]  # fmt: skip
    for command in commands:
        result = run_cli(*command)
        assert result.exit_code == 0, result.output
    return populated_db


def test_every_line_is_a_full_envelope_with_its_hash_and_the_payload_as_an_object(
    busy_db: Path, run_cli, raw_log
):
    """Each line holds the stored row: same fields, same values, data parsed from JSON."""
    lines = log_lines(run_cli)
    rows = raw_log.query("SELECT * FROM events WHERE program = 'default' ORDER BY position")
    assert len(lines) == len(rows) > 20
    for line, row in zip(lines, rows):
        assert tuple(line) == COLUMNS
        assert isinstance(line["data"], dict)
        expected = dict(zip(COLUMNS, row))
        expected["data"] = json.loads(expected["data"])
        assert line == expected
        assert len(line["hash"]) == len(line["prev_hash"]) == 64


# Awkward text for every place a string can sit: quotes, backslashes, a slash, non-ASCII
# letters, a character outside the BMP, and line breaks, tabs and other control
# characters where payloads allow them (envelope fields refuse control characters).
AWKWARD = 'Zoë "Z" O\'Brien \\ a/b ✓ 😀'
AWKWARD_MULTILINE = AWKWARD + "\nsecond line\ttab \u2028 end"
PROGRAM = 'Prögram "Q" \\ ✓'
ODD_ACTOR = 'hr "ops" \\ ü'


def every_event_type(path: Path) -> None:
    """A log holding every core event type, written through the engine (so names, emails,
    comments and reasons are sealed), with awkward text in the envelope and the payloads;
    plus events from elsewhere whose stream names hold quotes and backslashes."""
    at = "2025-01-0{}T09:00:00Z".format
    with Engine.open(path) as engine:
        commands = [
            SetConfig(key="notify_email.sender", value="hr@example.org", at=at(1)),
            SetConfig(key="custom.nested", at=at(1), value={
                "text": AWKWARD_MULTILINE + "\x01\x1f\x7f", "empty": {}, "big": 2**53 + 1,
                "list": [1, 2.5, -0.001, 1e-7, True, None]}),
            Join(person_id="zoe", name=AWKWARD, email="zoe.o@example.org", role="mentor",
                 department=AWKWARD, skills_offered=(AWKWARD, "AI tools"), capacity=2,
                 goals=(AWKWARD,), at=at(2)),
            Join(person_id="yan", name="Yan 楊", email="yan@example.org", role="mentee",
                 skills_sought=("AI tools",), at=at(2)),
            UpdateProfile(person_id="zoe", changes={"name": "Zoë \"the second\"",
                                                    "skills_sought": [AWKWARD]}, at=at(3)),
            MakePair(mentor_id="zoe", mentee_id="yan", goals=(AWKWARD,), score=0.8125,
                     reasons={"why": AWKWARD_MULTILINE}, at=at(3)),
            RecordSession(pair_id="zoe-yan", minutes=45, topics=(AWKWARD, "prompting"),
                          at=at(4)),
            GiveFeedback(pair_id="zoe-yan", by="yan", rating=5, fresh_perspective=True,
                         skills_gained=(AWKWARD,), comment=AWKWARD_MULTILINE, at=at(5)),
            EndPair(pair_id="zoe-yan", reason=AWKWARD, at=at(6)),
            Leave(person_id="yan", reason=AWKWARD, at=at(7)),
            Forget(person_id="yan", at=at(8)),
        ]  # fmt: skip
        engine.execute(PROGRAM, commands, actor=ODD_ACTOR, idempotency_key='key "1" \\ ✓')
        with engine.store.transaction():
            engine.store.append(
                PROGRAM,
                [NewEvent('person:"q" \\ ü', "left", 1, at(9), '{"person_id":"q","reason":""}')],
                actor=ACTOR,
            )


def test_every_event_type_streams_as_its_stored_envelope(db_path: Path, run_cli, raw_log):
    """Sealed fields, quotes, backslashes, unicode and escaped control characters: every
    line parses back to exactly the stored row, keys in envelope order, and is the same
    text SQLite's json_object gives for the row with its payload parsed as JSON."""
    every_event_type(db_path)
    result = run_cli("--program", PROGRAM, "log")
    assert result.exit_code == 0, result.output
    lines = result.stdout_bytes.decode("utf-8").split("\n")
    assert lines.pop() == ""
    rows = raw_log.query("SELECT * FROM events ORDER BY position")
    assert len(lines) == len(rows)
    assert {row[COLUMNS.index("type")] for row in rows} == set(EventRegistry().names())
    reference = raw_log.query(
        "SELECT json_object("
        + ", ".join(f"'{c}', {'json(data)' if c == 'data' else c}" for c in COLUMNS)
        + ") FROM events ORDER BY position"
    )
    for line, row, (expected_text,) in zip(lines, rows, reference):
        parsed = json.loads(line)
        assert list(parsed) == list(COLUMNS)
        expected = dict(zip(COLUMNS, row))
        expected["data"] = json.loads(expected["data"])
        assert parsed == expected
        assert line == expected_text
    joined = next(json.loads(line) for line in lines if '"type":"joined"' in line)
    feedback = next(json.loads(line) for line in lines if '"type":"feedback_given"' in line)
    assert joined["data"]["name"].startswith(PREFIX)
    assert joined["data"]["email"].startswith(PREFIX)
    assert feedback["data"]["comment"].startswith(PREFIX)
    assert joined["data"]["department"] == AWKWARD
    assert feedback["data"]["skills_gained"] == [AWKWARD]
    assert {line["actor"] for line in map(json.loads, lines)} == {ODD_ACTOR, ACTOR}


@pytest.mark.parametrize("batch", [1, 3, 1000])
@pytest.mark.parametrize(
    "where",
    [
        EventFilter(),
        EventFilter(program="default"),
        EventFilter(program="default", walk_positions=True),
        EventFilter(since=5, types=("session_held", "joined", "configured")),
        EventFilter(program="pilot-b", streams=("person:zoe", "pair:zoe-yan")),
    ],
    ids=["all", "program-by-index", "program-by-position", "since-and-types", "streams"],
)
def test_blocks_of_lines_hold_every_matching_event_once_in_log_order(
    busy_db: Path, raw_log, where: EventFilter, batch: int
):
    """However the lines are cut into blocks, joined they are the matching events'
    envelopes in position order, each block ending on a whole line."""
    clause, params = where.sql()
    expected = raw_positions(raw_log, clause.replace("+program", "program"), params)
    assert expected
    with Engine.open(busy_db) as engine:
        blocks = list(engine.store.json_line_blocks(where, batch=batch))
    assert all(block.endswith(b"\n") for _, block in blocks)
    lines = [json.loads(line) for _, block in blocks for line in block.splitlines()]
    assert positions(lines) == expected
    assert [last for last, _ in blocks] == [
        line["position"] for line in lines[batch - 1 :: batch]
    ] + ([] if len(lines) % batch == 0 else [lines[-1]["position"]])


def test_the_lines_of_a_single_program_log_link_into_the_chain(db_path: Path, run_cli):
    """Each prev_hash is the hash of the line before; the first starts from 64 zeros."""
    for person in ("ada", "bob", "cy"):
        result = run_cli(
            "join", person, "--name", person, "--email", f"{person}@example.org",
            "--role", "mentee", "--at", "2025-01-01",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    lines = log_lines(run_cli)
    assert lines[0]["prev_hash"] == "0" * 64
    for before, after in zip(lines, lines[1:]):
        assert after["prev_hash"] == before["hash"]


@pytest.mark.parametrize("since", [0, 1, 7, 23])
def test_since_prints_only_events_after_that_position(busy_db: Path, run_cli, raw_log, since):
    """--since POS excludes POS itself."""
    lines = log_lines(run_cli, "--since", str(since))
    assert positions(lines) == raw_positions(
        raw_log, "position > ? AND program = 'default'", (since,)
    )


def test_since_past_the_head_prints_nothing(busy_db: Path, run_cli, raw_log):
    """Nothing newer: empty output, exit 0."""
    head = raw_log.count()
    result = run_cli("log", "--since", str(head))
    assert result.exit_code == 0
    assert result.stdout == ""


@pytest.mark.parametrize(
    "types", [("session_held",), ("left", "pair_ended"), ("configured",), ("profile_updated",)]
)
def test_type_keeps_only_events_of_those_types(busy_db: Path, run_cli, raw_log, types):
    """--type is repeatable; an unused type gives no lines."""
    args = [arg for name in types for arg in ("--type", name)]
    lines = log_lines(run_cli, *args)
    marks = ", ".join("?" * len(types))
    assert positions(lines) == raw_positions(
        raw_log, f"program = 'default' AND type IN ({marks})", types
    )
    assert {line["type"] for line in lines} <= set(types)


@pytest.mark.parametrize("streams", [("pair:ada-grace",), ("person:tom", "pair:mei-tom")])
def test_stream_keeps_only_events_of_those_streams(busy_db: Path, run_cli, raw_log, streams):
    """--stream takes person:ID and pair:ID, repeatable."""
    args = [arg for name in streams for arg in ("--stream", name)]
    lines = log_lines(run_cli, *args)
    marks = ", ".join("?" * len(streams))
    expected = raw_positions(raw_log, f"program = 'default' AND stream IN ({marks})", streams)
    assert positions(lines) == expected
    assert expected


@pytest.mark.parametrize(
    ("args", "low", "high"),
    [
        (("--from", "2025-02-10"), "2025-02-10T00:00:00Z", "9999"),
        (("--to", "2025-02-10"), "0000", "2025-02-10T23:59:59Z"),
        (("--from", "2025-02-05", "--to", "2025-02-12"), "2025-02-05T00:00:00Z",
         "2025-02-12T23:59:59Z"),
        (("--from", "2025-02-10T12:00:00Z", "--to", "2025-02-24T15:00:00Z"),
         "2025-02-10T12:00:00Z", "2025-02-24T15:00:00Z"),
        (("--from", "2025-02-10T13:00:00+01:00"), "2025-02-10T12:00:00Z", "9999"),
    ],
    ids=["from", "to-whole-day", "from-and-to", "date-times", "offset"],
)  # fmt: skip
def test_from_and_to_filter_on_when_events_occurred(
    busy_db: Path, run_cli, raw_log, args, low, high
):
    """Business dates, inclusive; a date alone for --to means the whole of that day."""
    lines = log_lines(run_cli, *args)
    expected = raw_positions(
        raw_log, "program = 'default' AND occurred_at >= ? AND occurred_at <= ?", (low, high)
    )
    assert positions(lines) == expected
    assert 0 < len(expected) < raw_log.count()


def test_to_includes_events_late_on_that_day(busy_db: Path, run_cli):
    """The session held at 15:00 on 10 February is within --to 2025-02-10."""
    lines = log_lines(run_cli, "--to", "2025-02-10", "--type", "session_held")
    assert [line["occurred_at"] for line in lines] == ["2025-02-10T15:00:00Z"]


def test_dates_filter_on_occurred_not_recorded_time(busy_db: Path, run_cli, raw_log):
    """Everything here was recorded today; filtering on 2025 dates still finds events."""
    lines = log_lines(run_cli, "--from", "2025-02-18", "--to", "2025-02-19")
    assert [(line["type"], line["actor"]) for line in lines] == [
        ("session_held", "coach-amy"),
        ("feedback_given", "coach-amy"),
    ]


@pytest.mark.parametrize("actor", ["coach-amy", ACTOR, "hr-b", "nobody"])
def test_actor_keeps_only_what_that_actor_recorded(busy_db: Path, run_cli, raw_log, actor):
    """--actor filters on who issued the command (hr-b only recorded in another program)."""
    lines = log_lines(run_cli, "--actor", actor)
    assert positions(lines) == raw_positions(raw_log, "program = 'default' AND actor = ?", (actor,))
    assert all(line["actor"] == actor for line in lines)


def test_the_log_is_limited_to_the_selected_program(busy_db: Path, run_cli, raw_log):
    """--program picks one program's events; the default program is ``default``."""
    result = run_cli("--program", "pilot-b", "log")
    assert result.exit_code == 0, result.output
    other = [json.loads(line) for line in result.stdout.splitlines()]
    assert positions(other) == raw_positions(raw_log, "program = 'pilot-b'")
    assert [line["type"] for line in other] == ["joined", "joined", "paired"]
    assert all(line["program"] == "default" for line in log_lines(run_cli))


def test_all_programs_prints_the_whole_log_as_one_chain(busy_db: Path, run_cli, raw_log):
    """Every event of every program, in position order, each linking to the one before."""
    lines = log_lines(run_cli, "--all-programs")
    assert positions(lines) == raw_positions(raw_log)
    assert {line["program"] for line in lines} == {"default", "pilot-b"}
    for before, after in zip(lines, lines[1:]):
        assert after["prev_hash"] == before["hash"]


def test_filters_combine(busy_db: Path, run_cli, raw_log):
    """Every filter applies at once."""
    lines = log_lines(
        run_cli, "--all-programs", "--since", "5", "--type", "joined", "--type", "paired",
        "--from", "2025-02-01", "--actor", "hr-b",
    )  # fmt: skip
    assert positions(lines) == raw_positions(
        raw_log,
        "position > 5 AND type IN ('joined', 'paired') AND occurred_at >= '2025-02-01'"
        " AND actor = 'hr-b'",
    )
    assert [(line["program"], line["type"]) for line in lines] == [
        ("pilot-b", "joined"), ("pilot-b", "joined"), ("pilot-b", "paired"),
    ]  # fmt: skip


def test_an_unreadable_date_is_refused(busy_db: Path, run_cli):
    """Exit 1 with the ISO 8601 hint and nothing on stdout."""
    result = run_cli("log", "--from", "next week")
    assert result.exit_code == 1
    assert "ISO 8601" in result.stderr
    assert result.stdout == ""


def test_the_log_of_an_empty_database_is_empty(run_cli):
    """No events, no lines, exit 0."""
    result = run_cli("log", "--all-programs")
    assert result.exit_code == 0
    assert result.stdout == ""


class Follower:
    """``rmcore log --follow`` in a real child process, its stdout read line by line."""

    def __init__(self, db: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rmcore", "--db", str(db), "log", "--follow", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)

    def next(self, timeout: float = 20.0) -> dict:
        """The next line, parsed; fails the test if none comes in time."""
        try:
            return json.loads(self.lines.get(timeout=timeout))
        except queue.Empty:
            self.process.kill()
            pytest.fail(f"no line from rmcore log --follow within {timeout} s")

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: the exit code and stderr."""
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=20)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        return code, self.process.stderr.read()


def test_follow_prints_existing_then_new_events_until_interrupted(
    populated_db: Path, run_cli, raw_log
):
    """New events appear within seconds; Ctrl-C ends it with exit 0 and no traceback."""
    head = raw_log.count()
    follower = Follower(populated_db, "--since", str(head - 2))
    assert [follower.next()["position"] for _ in range(2)] == [head - 1, head]
    result = run_cli("session", "ada-grace", "--minutes", "25", "--at", "2025-03-03")
    assert result.exit_code == 0, result.output
    new = follower.next()
    assert (new["position"], new["type"]) == (head + 1, "session_held")
    assert new["data"]["minutes"] == 25
    assert (
        new["hash"]
        == raw_log.query("SELECT hash FROM events WHERE position = ?", (head + 1,))[0][0]
    )
    code, stderr = follower.interrupt()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert follower.lines.empty()


def test_follow_applies_the_filters_to_new_events(populated_db: Path, run_cli, raw_log):
    """Only new events that match are printed, in order."""
    head = raw_log.count()
    follower = Follower(populated_db, "--since", str(head), "--type", "session_held")
    joined = run_cli(
        "join", "zed", "--name", "Zed", "--email", "zed@example.org", "--role", "mentee",
        "--at", "2025-03-01",
    )  # fmt: skip
    assert joined.exit_code == 0, joined.output
    held = run_cli("session", "ada-raj", "--minutes", "30", "--at", "2025-03-04")
    assert held.exit_code == 0, held.output
    line = follower.next()
    assert (line["position"], line["type"]) == (head + 2, "session_held")
    code, stderr = follower.interrupt()
    assert code == 0, stderr
    assert follower.lines.empty()


@pytest.fixture
def in_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any walk of the log is built by worker processes, four positions per block."""
    monkeypatch.setattr(log_stream, "PARALLEL_THRESHOLD", 0)
    monkeypatch.setattr(log_stream, "BLOCK", 4)


def log_bytes(run_cli, *args: str, db: Path | None = None) -> bytes:
    """``rmcore [--program P] log ARGS`` as the bytes it wrote."""
    program = ("--program", args[1]) if args[:1] == ("--program",) else ()
    result = run_cli(*program, "log", *args[len(program) :], db=db)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--all-programs",),
        ("--since", "7"),
        ("--all-programs", "--since", "30"),
        ("--type", "session_held", "--type", "feedback_given"),
        ("--stream", "pair:ada-raj"),
        ("--all-programs", "--actor", "coach-amy"),
        ("--from", "2025-02-01", "--to", "2025-02-20"),
        ("--program", "pilot-b"),
        ("--all-programs", "--type", "forgotten"),
    ],
    ids=lambda args: " ".join(args) or "default",
)
def test_workers_print_exactly_what_one_process_prints(
    busy_db: Path, run_cli, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
):
    """Blocks built by worker processes, joined in order, are the same bytes."""
    sequential = log_bytes(run_cli, *args)
    monkeypatch.setattr(log_stream, "PARALLEL_THRESHOLD", 0)
    monkeypatch.setattr(log_stream, "BLOCK", 4)
    assert log_bytes(run_cli, *args) == sequential


def test_events_appended_while_workers_stream_are_printed_after_them(
    busy_db: Path, run_cli, raw_log, in_parallel
):
    """The workers cover the log up to the head found at the start; what is appended
    meanwhile follows, read by the parent, so nothing is lost or repeated."""
    where = EventFilter(program=None)
    with Engine.open(busy_db) as engine:
        blocks = log_stream.json_line_blocks(engine.store, where, path=str(busy_db), workers=2)
        first = next(blocks)
        appended = run_cli("session", "ada-grace", "--minutes", "25", "--at", "2025-03-03")
        assert appended.exit_code == 0, appended.output
        rest = list(blocks)
    lines = [json.loads(line) for _, block in [first, *rest] for line in block.splitlines()]
    assert positions(lines) == raw_positions(raw_log)
    assert lines[-1]["type"] == "session_held"


def test_a_reader_that_stops_early_leaves_no_worker_behind(busy_db: Path, in_parallel):
    """Closing the stream after one block (``| head``) shuts the workers down."""
    with Engine.open(busy_db) as engine:
        blocks = log_stream.json_line_blocks(
            engine.store, EventFilter(program=None), path=str(busy_db), workers=2
        )
        next(blocks)
        assert multiprocessing.active_children()
        blocks.close()
    assert multiprocessing.active_children() == []


def test_workers_open_a_database_whose_name_needs_escaping(
    busy_db: Path, run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A file name with ?, # and % reaches the workers' read-only connections intact."""
    odd = tmp_path / "odd ?#%20 name.db"
    odd.write_bytes(busy_db.read_bytes())
    sequential = log_bytes(run_cli, "--all-programs", db=odd)
    monkeypatch.setattr(log_stream, "PARALLEL_THRESHOLD", 0)
    monkeypatch.setattr(log_stream, "BLOCK", 4)
    assert log_bytes(run_cli, "--all-programs", db=odd) == sequential


WORKERS_FORCED = (
    "import rmcore.log_stream as stream; stream.PARALLEL_THRESHOLD = 0; stream.BLOCK = 1;"
    " from rmcore.cli import main; main()"
)


def test_ctrl_c_while_workers_stream_ends_quietly_with_no_worker_left(db_path: Path):
    """Ctrl-C reaches the whole process group: the command exits 0 without a traceback,
    from the parent or from any worker, and leaves no process behind."""
    with Engine.open(db_path, create=True) as engine, engine.store.transaction():
        filler = json.dumps({"key": "notes.filler", "value": "x" * 4000})
        engine.store.append(
            "default",
            [NewEvent("program", "configured", 1, "2025-01-06T09:00:00Z", filler)] * 100,
            actor=ACTOR,
        )
    process = subprocess.Popen(
        [sys.executable, "-c", WORKERS_FORCED, "--db", str(db_path), "log", "--all-programs"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.stdout.read(1000)  # streaming; the pipe then fills and it waits
        time.sleep(1.0)
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    stderr = process.stderr.read().decode()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):  # nobody is left in its process group
        os.killpg(process.pid, 0)
