"""``rmcore log``: envelopes as JSON lines, every filter, and ``--follow``."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import ACTOR

from rmcore.store import COLUMNS


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
