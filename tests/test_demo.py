"""`rmcore demo`: a realistic program, plausible KPIs, the same program for the same seed."""

from __future__ import annotations

import json
import re
import shutil
from datetime import date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import ACTOR, RawLog

from rmcore.cli import cli

PEOPLE, MONTHS = 120, 4
DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
RANGE = re.compile(r"(\d+) events, (\d{4}-\d\d-\d\d) to (\d{4}-\d\d-\d\d)\)")


def rmcore(db: Path, *args: str) -> Result:
    """Run one rmcore command line in-process against ``db``."""
    return CliRunner().invoke(cli, ["--db", str(db), "--actor", ACTOR, *args])


def build(folder: Path, seed: int, people: int = PEOPLE) -> tuple[Path, Result]:
    """Run the demo into ``folder/demo.db``."""
    db = folder / "demo.db"
    result = rmcore(db, "demo", "--seed", str(seed), "--people", str(people), "--months", "4")
    assert result.exit_code == 0, result.output
    return db, result


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Result]:
    """The seed-7 demo, built once for this module (tests that write use a copy)."""
    return build(tmp_path_factory.mktemp("demo"), 7)


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> tuple[Path, Result]:
    """The seed-7 demo again, in another file."""
    return build(tmp_path_factory.mktemp("twin"), 7)


@pytest.fixture(scope="module")
def other(tmp_path_factory) -> tuple[Path, Result]:
    """A demo built from another seed."""
    return build(tmp_path_factory.mktemp("other"), 8)


@pytest.fixture
def demo_copy(demo, tmp_path) -> Path:
    """A private copy of the seed-7 demo database and its export."""
    db, _ = demo
    target = tmp_path / "demo.db"
    shutil.copyfile(db, target)
    shutil.copyfile(export_of(db), export_of(target))
    return target


def export_of(db: Path) -> Path:
    """Where the demo writes the HR export it imported."""
    return db.with_name(f"{db.stem}-people.csv")


def last_event(db: Path) -> str:
    """The latest business date in the log."""
    return RawLog(db).query("SELECT max(occurred_at) FROM events")[0][0]


def kpis(db: Path) -> dict[str, object]:
    """KPI values as of the demo's last event."""
    result = rmcore(db, "kpi", "--as-of", last_event(db), "--format", "json")
    assert result.exit_code == 0, result.output
    return {row["name"]: row["value"] for row in json.loads(result.stdout)}


def listing(db: Path, command: str) -> list[dict]:
    """``people`` or ``pairs`` (all statuses) with every date made relative to the first event,
    so two builds an hour apart compare equal when they hold the same program."""
    origin = datetime.fromisoformat(
        RawLog(db).query("SELECT min(occurred_at) FROM events")[0][0].replace("Z", "+00:00")
    )

    def relative(value):
        if isinstance(value, str) and DATE_TIME.match(value):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return f"+{(moment - origin).total_seconds():.0f}s"
        return value

    result = rmcore(db, command, "--status", "all", "--format", "json")
    assert result.exit_code == 0, result.output
    return [{k: relative(v) for k, v in row.items()} for row in json.loads(result.stdout)]


def test_the_demo_builds_a_program_and_says_what_to_try_next(demo):
    db, result = demo
    assert f"Built program 'default' in {db}: {PEOPLE} people" in result.stdout
    assert "match_rate" in result.stdout and "avg_rating" in result.stdout
    assert "Try next:" in result.stdout
    assert f"rmcore --db {db} report --out report.html" in result.stdout
    assert f"rmcore --db new.db import {export_of(db)}" in result.stdout


def test_the_demo_summary_counts_what_the_log_holds(demo):
    db, result = demo
    summary = re.search(
        r"(\d+) people, (\d+) pairs, (\d+) sessions, (\d+) feedback, (\d+) leavers \((\d+) events",
        result.stdout,
    )
    assert summary, result.stdout
    counts = dict(RawLog(db).query("SELECT type, count(*) FROM events GROUP BY type"))
    people, pairs, sessions, feedback, leavers, events = map(int, summary.groups())
    assert (people, pairs, sessions, feedback, leavers) == (
        counts["joined"],
        counts["paired"],
        counts["session_held"],
        counts["feedback_given"],
        counts["left"],
    )
    assert events == sum(counts.values())
    assert sessions > pairs > PEOPLE // 4


def test_the_demo_spans_the_months_asked_for(demo):
    db, result = demo
    found = RANGE.search(result.stdout)
    assert found, result.stdout
    start, end = date.fromisoformat(found.group(2)), date.fromisoformat(found.group(3))
    assert 120 <= (end - start).days <= 123
    first, last = RawLog(db).query("SELECT min(occurred_at), max(occurred_at) FROM events")[0]
    assert found.group(2) <= first[:10] and last[:10] <= found.group(3)
    assert (date.fromisoformat(last[:10]) - date.fromisoformat(first[:10])).days > 100


def active_ids(db: Path) -> set[str]:
    """The people still in the demo program, read from the file with plain sqlite3."""
    return {
        row[0] for row in RawLog(db).query("SELECT person_id FROM people WHERE status = 'active'")
    }


def export_ids(db: Path) -> list[str]:
    """The person ids of the demo's HR export, in file order."""
    lines = export_of(db).read_text(encoding="utf-8").splitlines()
    return [line.split(",")[0] for line in lines[1:]]


def test_the_demo_writes_an_hr_export_of_its_active_people_next_to_the_database(demo):
    db, result = demo
    export = export_of(db)
    leavers = int(re.search(r"(\d+) leavers", result.stdout).group(1))
    assert leavers > 0
    assert f"The HR export of its {PEOPLE - leavers} active people is {export}." in result.stdout
    header = export.read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("person_id,name,email,role,generation,department")
    ids = export_ids(db)
    assert len(ids) == len(set(ids)) == PEOPLE - leavers
    assert set(ids) == active_ids(db)
    left = {row[0] for row in RawLog(db).query("SELECT stream FROM events WHERE type = 'left'")}
    assert len(left) == leavers
    assert not {f"person:{person_id}" for person_id in ids} & left


def test_the_demo_kpis_are_plausible(demo):
    db, _ = demo
    values = kpis(db)
    assert 0.5 <= values["match_rate"] <= 1
    assert 3 <= values["avg_rating"] <= 5
    assert 0.5 <= values["sessions_per_pair_month"] <= 4
    assert 0.85 <= values["retention_rate"] < 1
    assert values["cross_generation_rate"] > 0.5
    assert 0 < values["stalled_pairs"] < values["active_pairs"]


def test_the_same_seed_builds_the_same_program(demo, twin):
    (db, _), (db2, _) = demo, twin
    assert db != db2
    assert kpis(db) == kpis(db2)
    assert listing(db, "people") == listing(db2, "people")
    assert listing(db, "pairs") == listing(db2, "pairs")
    assert export_ids(db) == export_ids(db2)


def test_another_seed_builds_another_program(demo, other):
    (db, _), (db2, _) = demo, other
    assert listing(db, "people") != listing(db2, "people")
    assert listing(db, "pairs") != listing(db2, "pairs")
    assert kpis(db) != kpis(db2)


def test_the_demo_database_verifies_deeply(demo):
    db, _ = demo
    result = rmcore(db, "verify", "--deep")
    assert result.exit_code == 0, result.output
    assert "read models equal a replay" in result.stdout


def test_the_demo_refuses_an_existing_database_without_force(db_path, run_cli, raw_log):
    before = raw_log.rows()
    result = run_cli("demo", "--people", "20", "--months", "1")
    assert result.exit_code == 1
    assert "already exist" in result.stderr and "--force" in result.stderr
    assert raw_log.rows() == before
    assert not export_of(db_path).exists()


def test_the_demo_replaces_an_existing_database_with_force(db_path, run_cli, raw_log):
    assert run_cli("demo", "--people", "20", "--months", "1").exit_code == 1
    result = run_cli("demo", "--people", "20", "--months", "1", "--force")
    assert result.exit_code == 0, result.output
    assert raw_log.query("SELECT count(*) FROM events WHERE type = 'joined'") == [(20,)]
    again = run_cli("demo", "--people", "30", "--months", "1", "--force", "--seed", "3")
    assert again.exit_code == 0, again.output
    assert raw_log.query("SELECT count(*) FROM events WHERE type = 'joined'") == [(30,)]


def test_the_demo_refuses_when_only_its_export_exists(tmp_path):
    db = tmp_path / "fresh.db"
    export_of(db).write_text("kept\n", encoding="utf-8")
    result = rmcore(db, "demo", "--people", "20", "--months", "1")
    assert result.exit_code == 1
    assert export_of(db).read_text(encoding="utf-8") == "kept\n"
    assert not db.exists()


def test_the_demo_export_starts_a_new_program_in_an_empty_database(demo, tmp_path):
    db, _ = demo
    new = tmp_path / "new.db"
    assert rmcore(new, "init").exit_code == 0
    result = rmcore(new, "import", str(export_of(db)))
    assert result.exit_code == 0, result.output
    active = len(active_ids(db))
    assert f"Imported {active} rows: {active} joined" in result.stdout
    assert RawLog(new).count() == active
    people = [rmcore(d, "people", "--format", "json").stdout for d in (new, db)]
    assert people[0] == people[1]


def test_the_people_export_of_the_demo_reimports_appending_nothing(demo_copy, tmp_path):
    exported = rmcore(demo_copy, "people", "--format", "csv")
    assert exported.exit_code == 0, exported.output
    path = tmp_path / "people.csv"
    path.write_text(exported.stdout, encoding="utf-8")
    before = RawLog(demo_copy).rows()
    result = rmcore(demo_copy, "import", str(path))
    assert result.exit_code == 0, result.output
    assert RawLog(demo_copy).rows() == before


@pytest.mark.parametrize("options", [(), ("--leave-missing",)], ids=["plain", "leave-missing"])
def test_the_demo_export_reimported_into_the_demo_appends_nothing(options, demo_copy):
    before = RawLog(demo_copy).rows()
    result = rmcore(demo_copy, "import", str(export_of(demo_copy)), *options)
    assert result.exit_code == 0, result.output
    active = len(active_ids(demo_copy))
    assert f"0 joined, 0 updated, {active} unchanged, 0 left (0 events)" in result.stdout
    assert RawLog(demo_copy).rows() == before


def test_the_demo_hr_export_is_readable_by_its_owner_only_like_the_database(demo):
    """It holds names and emails."""
    db, _ = demo
    assert db.stat().st_mode & 0o777 == 0o600
    assert export_of(db).stat().st_mode & 0o777 == 0o600


def test_an_interrupted_demo_leaves_nothing_and_the_rerun_works_without_force(
    tmp_path, monkeypatch
):
    """Ctrl-C once the people are imported: no half-built database that needs --force."""
    from rmcore import demo as builder

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(builder, "simulate", interrupted)
    db = tmp_path / "demo.db"
    result = rmcore(db, "demo", "--people", "20", "--months", "1")
    assert result.exit_code == 1
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    again = rmcore(db, "demo", "--people", "20", "--months", "1")
    assert again.exit_code == 0, again.output
    assert RawLog(db).query("SELECT count(*) FROM events WHERE type = 'joined'") == [(20,)]
