"""Listings in table, JSON and CSV; ``rmcore log``; init and unusable database files."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from pathlib import Path
from typing import ClassVar

import pytest
from attrs import frozen

from rmcore import hookimpl
from rmcore.cli import PLUGIN_MANAGER
from rmcore.engine import Engine
from rmcore.events import PairEvent
from rmcore.plugins import make_plugin_manager

# The fields each listing must carry (a listing may add more; every format shows the same).
PEOPLE_FIELDS = {
    "person_id", "name", "email", "role", "generation", "department", "manager_id",
    "timezone", "skills_offered", "skills_sought", "capacity", "status", "joined_at", "left_at",
}  # fmt: skip
PAIR_FIELDS = {
    "pair_id", "mentor_id", "mentee_id", "status", "paired_at", "ended_at", "sessions",
    "minutes", "last_session_at", "strategy", "score",
}  # fmt: skip
PROGRAM_FIELDS = {"program", "events", "started_at", "active_people", "active_pairs"}
CONFIG_FIELDS = {"key", "value", "set_at"}

LISTINGS = {
    "people": (("people",), PEOPLE_FIELDS, "person_id"),
    "pairs": (("pairs",), PAIR_FIELDS, "pair_id"),
    "programs": (("programs",), PROGRAM_FIELDS, "program"),
    "config": (("config", "list"), CONFIG_FIELDS, "key"),
}
EXPECTED_IDS = {
    "people": ["ada", "barbara", "grace", "ken", "linus", "mei", "raj"],
    "pairs": ["ada-grace", "ada-raj"],
    "programs": ["default"],
    "config": ["matching_skills.min_score", "notify_email.sender"],
}

pytestmark = pytest.mark.usefixtures("populated_db")


def json_columns(run_cli, args: tuple[str, ...]) -> list[str]:
    """The keys of the first row of a JSON listing, in order."""
    return list(json.loads(run_cli(*args, "--format", "json").stdout)[0])


@pytest.mark.parametrize("listing", LISTINGS)
def test_json_listing_is_a_list_of_dicts_with_the_expected_fields(run_cli, listing):
    """Every row has the same keys, the expected fields among them, in id order."""
    args, fields, key = LISTINGS[listing]
    result = run_cli(*args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    assert all(isinstance(row, dict) for row in rows)
    assert set(rows[0]) >= fields
    assert all(list(row) == list(rows[0]) for row in rows)
    assert next(iter(rows[0])) == key
    assert [row[key] for row in rows] == EXPECTED_IDS[listing]


@pytest.mark.parametrize("listing", LISTINGS)
def test_csv_listing_has_a_header_row_then_one_row_per_item(run_cli, listing):
    """The first CSV row names the same columns as the JSON listing."""
    args, fields, key = LISTINGS[listing]
    result = run_cli(*args, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == json_columns(run_cli, args)
    assert set(rows[0]) >= fields
    assert all(len(row) == len(rows[0]) for row in rows)
    assert [row[rows[0].index(key)] for row in rows[1:]] == EXPECTED_IDS[listing]


@pytest.mark.parametrize("listing", LISTINGS)
def test_table_listing_has_a_header_a_rule_and_aligned_rows(run_cli, listing):
    """A header (columns of the JSON listing), dashes, then one line per item, its id first."""
    args, _fields, key = LISTINGS[listing]
    columns = json_columns(run_cli, args)
    result = run_cli(*args, "--format", "table")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0].split()
    assert header[0] == key
    assert set(header) <= set(columns)
    assert set(lines[1].replace(" ", "")) == {"-"}
    ids = EXPECTED_IDS[listing]
    assert len(lines) == 2 + len(ids)
    for line, expected in zip(lines[2:], ids):
        assert line.split()[0] == expected
    second_column = lines[0].index(header[1])
    assert all(line[second_column - 2 : second_column] == "  " for line in lines[2:])


def test_listings_default_to_json_when_stdout_is_not_a_terminal(run_cli):
    """Scripts get JSON without asking."""
    result = run_cli("people")
    assert [row["person_id"] for row in json.loads(result.stdout)] == EXPECTED_IDS["people"]


def test_people_status_filters_active_left_and_all(run_cli):
    """tom left; he shows under --status left and all, not by default."""

    def ids(status: str) -> list[str]:
        """The person ids listed for one status."""
        rows = json.loads(run_cli("people", "--status", status, "--format", "json").stdout)
        return [row["person_id"] for row in rows]

    assert ids("left") == ["tom"]
    assert ids("all") == sorted([*EXPECTED_IDS["people"], "tom"])
    assert ids("active") == EXPECTED_IDS["people"]


def test_people_json_keeps_lists_and_csv_joins_them(run_cli):
    """Skills are a JSON array, and ``a;b`` in a CSV cell."""
    rows = json.loads(run_cli("people", "--format", "json").stdout)
    ada = next(row for row in rows if row["person_id"] == "ada")
    assert ada["skills_offered"] == ["AI tools", "prompt engineering"]
    assert ada["capacity"] == 2
    assert ada["left_at"] is None
    records = list(csv.DictReader(io.StringIO(run_cli("people", "--format", "csv").stdout)))
    ada_csv = next(row for row in records if row["person_id"] == "ada")
    assert ada_csv["skills_offered"] == "AI tools;prompt engineering"
    assert ada_csv["left_at"] == ""


def test_pairs_listing_counts_sessions_and_minutes(run_cli):
    """Each pair shows its session count, total minutes and last session."""
    rows = json.loads(run_cli("pairs", "--status", "all", "--format", "json").stdout)
    summary = {r["pair_id"]: (r["status"], r["sessions"], r["minutes"]) for r in rows}
    assert summary == {
        "ada-grace": ("active", 2, 105),
        "ada-raj": ("active", 0, 0),
        "linus-barbara": ("ended", 1, 50),
        "mei-tom": ("ended", 1, 30),
    }
    ada_grace = next(r for r in rows if r["pair_id"] == "ada-grace")
    assert ada_grace["last_session_at"] == "2025-02-24T15:00:00Z"


def test_programs_listing_counts_events_people_and_pairs(run_cli, raw_log):
    """The one program holds every event, 7 active people and 2 active pairs."""
    (row,) = json.loads(run_cli("programs", "--format", "json").stdout)
    assert row["events"] == raw_log.count()
    assert (row["active_people"], row["active_pairs"]) == (7, 2)


def log_lines(run_cli, *args: str, program: str = "default") -> list[dict]:
    """``rmcore log`` output parsed line by line."""
    result = run_cli("--program", program, "log", *args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "" or result.stdout.endswith("\n")
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_log_prints_one_json_object_per_line_with_hashes(run_cli, raw_log):
    """Every event, in order, with its full envelope and the chain links."""
    events = log_lines(run_cli)
    assert [e["position"] for e in events] == list(range(1, raw_log.count() + 1))
    assert events[0]["prev_hash"] == "0" * 64
    for before, after in zip(events, events[1:]):
        assert after["prev_hash"] == before["hash"]
    raw_hashes = [row[0] for row in raw_log.query("SELECT hash FROM events ORDER BY position")]
    assert [e["hash"] for e in events] == raw_hashes
    first = events[2]
    assert first["type"] == "joined" and first["stream"] == "person:ada"
    assert first["data"]["skills_offered"] == ["AI tools", "prompt engineering"]
    assert first["actor"] == "hr-ops"


def test_log_since_shows_only_later_positions(run_cli, raw_log):
    """--since N starts after position N."""
    last = raw_log.count()
    assert [e["position"] for e in log_lines(run_cli, "--since", str(last - 3))] == [
        last - 2,
        last - 1,
        last,
    ]
    assert log_lines(run_cli, "--since", str(last)) == []


def test_log_type_filters_and_combines_with_since(run_cli):
    """--type is repeatable and works together with --since."""
    sessions = log_lines(run_cli, "--type", "session_held")
    assert len(sessions) == 4
    assert {e["type"] for e in sessions} == {"session_held"}
    endings = log_lines(run_cli, "--type", "left", "--type", "pair_ended")
    assert [e["type"] for e in endings] == ["pair_ended", "left", "pair_ended"]
    later = log_lines(run_cli, "--type", "session_held", "--since", str(sessions[1]["position"]))
    assert [e["position"] for e in later] == [e["position"] for e in sessions[2:]]


def test_log_shows_one_program_unless_asked_for_all(run_cli, raw_log):
    """Events of another program appear only with --all-programs."""
    other = run_cli(
        "--program", "spring", "join", "zoe", "--name", "Zoe", "--email", "zoe@example.org",
        "--role", "mentor",
    )  # fmt: skip
    assert other.exit_code == 0, other.stderr
    assert all(e["program"] == "default" for e in log_lines(run_cli))
    assert [e["stream"] for e in log_lines(run_cli, program="spring")] == ["person:zoe"]
    assert len(log_lines(run_cli, "--all-programs")) == raw_log.count()


@pytest.mark.parametrize("typo", ["session", "Session_held", "sessions_held"])
def test_log_with_an_unknown_type_is_a_usage_error_naming_the_known_types(run_cli, typo):
    """A typo in --type must not look like "no such events": exit 2 and say what exists."""
    result = run_cli("log", "--type", "left", "--type", typo)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    # Only the unknown one is named (left is a real type), with the closest real one.
    assert f"no event type is called {typo!r} (did you mean session_held?)" in result.stderr
    assert "the known types are configured, feedback_given, forgotten" in result.stderr


@frozen(kw_only=True)
class MilestoneReached(PairEvent):
    """An event type of a third-party plugin."""

    type: ClassVar[str] = "acme_milestone_reached"
    schema: ClassVar[int] = 1
    milestone: str


class Milestones:
    """Registers MilestoneReached."""

    @hookimpl
    def rmcore_register_event_types(self, register):
        """One event type."""
        register(MilestoneReached)


def test_log_accepts_a_type_that_a_loaded_plugin_registers(run_cli):
    """No event of that type yet: an empty answer, not a usage error."""
    plugin = Milestones()
    PLUGIN_MANAGER.register(plugin, name="acme_milestones")
    try:
        result = run_cli("log", "--type", "acme_milestone_reached")
    finally:
        PLUGIN_MANAGER.unregister(plugin)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    assert run_cli("log", "--type", "acme_milestone_reached").exit_code == 2


def test_log_accepts_a_type_the_log_holds_after_its_plugin_was_removed(run_cli, db_path):
    """An auditor can still pick out the events a since-uninstalled plugin recorded."""
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(Milestones(), name="acme_milestones")
    event = MilestoneReached(pair_id="ada-grace", milestone="first month")
    with Engine.open(db_path, pm=pm) as engine, engine.unit_of_work("default", actor="hr") as unit:
        unit.record("2025-04-02T09:00:00Z", [event])
    events = log_lines(run_cli, "--type", "acme_milestone_reached")
    assert [(e["type"], e["data"]) for e in events] == [
        ("acme_milestone_reached", {"pair_id": "ada-grace", "milestone": "first month"})
    ]


# Database files


def test_a_command_on_a_database_that_does_not_exist_says_to_run_init(run_cli, tmp_path: Path):
    """Exit 1, the advice, and no file created by accident."""
    missing = tmp_path / "typo.db"
    result = run_cli("people", db=missing)
    assert result.exit_code == 1
    assert "no database at" in result.stderr
    assert "rmcore init" in result.stderr
    assert "Traceback" not in result.output
    assert not missing.exists()


def test_init_creates_a_database_and_running_it_twice_is_fine(run_cli, tmp_path: Path, raw_log):
    """The second init succeeds and changes nothing."""
    path = tmp_path / "new" / "program.db"
    path.parent.mkdir()
    first = run_cli("init", db=path)
    assert first.exit_code == 0, first.stderr
    assert f"Database ready at {path}" in first.stdout
    assert raw_log.count(path) == 0
    second = run_cli("init", db=path)
    assert second.exit_code == 0, second.stderr
    assert raw_log.count(path) == 0


def test_init_on_a_populated_database_keeps_its_log(run_cli, raw_log):
    """Running init again on a database in use is harmless."""
    before = raw_log.rows()
    assert run_cli("init").exit_code == 0
    assert raw_log.rows() == before


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_init_creates_the_file_readable_by_its_owner_only(run_cli, tmp_path: Path):
    """The log holds personal data: mode 0600."""
    path = tmp_path / "private.db"
    assert run_cli("init", db=path).exit_code == 0
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("command", [("people",), ("init",), ("verify",), ("log",)])
def test_a_corrupt_file_exits_1_with_a_clear_message(run_cli, tmp_path: Path, command):
    """Random bytes are not a database: say so, no traceback, leave the file alone."""
    path = tmp_path / "corrupt.db"
    garbage = bytes(range(256)) * 16
    path.write_bytes(garbage)
    result = run_cli(*command, db=path)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert "file is not a database" in result.stderr
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    assert path.read_bytes() == garbage


def test_a_folder_given_as_the_database_is_a_usage_error(run_cli, tmp_path: Path):
    """--db must name a file."""
    result = run_cli("people", db=tmp_path)
    assert result.exit_code == 2
    assert "is a directory" in result.stderr


def test_another_applications_sqlite_file_is_refused_and_left_untouched(run_cli, tmp_path: Path):
    """A SQLite file of something else gets no rmcore tables, whatever the command."""
    path = tmp_path / "invoices.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    conn.commit()
    conn.close()
    for command in (("people",), ("init",)):
        result = run_cli(*command, db=path)
        assert result.exit_code == 1
        assert "something else" in result.stderr
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert tables == {"invoices"}


def test_an_empty_file_is_not_an_rmcore_database_until_init(run_cli, tmp_path: Path, raw_log):
    """A 0-byte file is refused by everyday commands; init turns it into a database."""
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    refused = run_cli("people", db=path)
    assert refused.exit_code == 1
    assert "rmcore init" in refused.stderr
    assert path.stat().st_size == 0
    assert run_cli("init", db=path).exit_code == 0
    assert raw_log.count(path) == 0
