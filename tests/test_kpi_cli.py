"""``rmcore kpi``: as-of dates, the three formats, and breakdowns with suppressed groups."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_kpi_basic import PROGRAM, X, build, join, program_commands

from rmcore.cli import cli
from rmcore.engine import Engine
from rmcore.kpis import collect_kpis
from rmcore.when import end_of_day


@pytest.fixture(scope="module")
def pilot_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-built pilot program of test_kpi_basic."""
    return build(tmp_path_factory.mktemp("pilot") / "pilot.db", program_commands())


def rmcore(db: Path, *args: str) -> Result:
    """Run the CLI in-process on ``db`` for the pilot program."""
    return CliRunner().invoke(cli, ["--db", str(db), "--program", PROGRAM, *args])


def test_json_lists_every_kpi_with_name_value_unit_description_and_plugin(pilot_db):
    result = rmcore(pilot_db, "kpi", "--as-of", "2025-02-28", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [set(row) for row in rows] == [{"name", "value", "unit", "description", "plugin"}] * 17
    values = {row["name"]: row["value"] for row in rows}
    assert values["participants"] == 5
    assert values["match_rate"] == 3 / 5
    assert values["sessions_per_pair_month"] == pytest.approx(4 / ((143 + 2 * X) / 30))
    with Engine.open(pilot_db) as engine:
        expected = collect_kpis(engine, PROGRAM, "2025-02-28T23:59:59Z")
    assert values == {k.name: k.value for k in expected}


def test_as_of_a_date_means_the_end_of_that_day_and_a_date_time_is_kept(pilot_db):
    def value(as_of: str, name: str):
        result = rmcore(pilot_db, "kpi", "--as-of", as_of, "--format", "json")
        assert result.exit_code == 0, result.output
        return {row["name"]: row["value"] for row in json.loads(result.output)}[name]

    # eve and fay joined at midnight on 01-10.
    assert value("2025-01-09", "participants") == 4
    assert value("2025-01-10", "participants") == 6
    assert value("2025-01-09T23:59:59Z", "participants") == 4
    assert value("2025-01-10T00:00:00Z", "participants") == 6
    assert value("2025-01-10T01:00:00+02:00", "participants") == 4  # 23:00 UTC the day before


def test_without_as_of_the_kpis_are_those_of_now(pilot_db):
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    default = rmcore(pilot_db, "kpi", "--format", "json")
    explicit = rmcore(pilot_db, "kpi", "--as-of", today, "--format", "json")
    assert default.exit_code == 0 and explicit.exit_code == 0
    now = {r["name"]: r["value"] for r in json.loads(default.output)}
    end_of_today = {r["name"]: r["value"] for r in json.loads(explicit.output)}
    # Active pairs keep accruing days until the end of today, and only that KPI uses them.
    assert now.pop("sessions_per_pair_month") >= end_of_today.pop("sessions_per_pair_month")
    assert now == end_of_today
    assert now["sessions"] == 5


def test_csv_has_a_header_and_leaves_null_values_empty(pilot_db):
    result = rmcore(pilot_db, "kpi", "--as-of", "2025-01-03", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert list(rows[0]) == ["name", "value", "unit", "description", "plugin"]
    values = {row["name"]: row["value"] for row in rows}
    assert values["participants"] == "4"
    assert values["avg_rating"] == ""
    assert values["match_rate"] == "0.0"


def test_the_table_names_the_program_and_moment_and_shows_null_as_n_a(pilot_db):
    result = rmcore(pilot_db, "kpi", "--as-of", "2025-01-03", "--format", "table")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Program pilot, as of 2025-01-03T23:59:59Z"
    assert lines[1].split() == ["name", "value", "unit", "description"]
    rating = next(line for line in lines if line.startswith("avg_rating "))
    assert rating.split()[1] == "n/a"


def test_an_unreadable_as_of_date_is_refused_with_exit_1(pilot_db):
    result = rmcore(pilot_db, "kpi", "--as-of", "last tuesday")
    assert result.exit_code == 1
    assert "is not an ISO 8601 date" in result.output


def test_an_unknown_breakdown_is_a_usage_error(pilot_db):
    result = rmcore(pilot_db, "kpi", "--by", "manager")
    assert result.exit_code == 2


@pytest.fixture(scope="module")
def cohort_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five early-career people in Eng, five tenured in Ops, two tenured without a department."""
    commands = [
        join(f"e{i}", "mentor", "early-career", "Eng", (), (), "2025-01-01") for i in range(5)
    ]
    commands += [join(f"t{i}", "mentee", "tenured", "Ops", (), (), "2025-01-01") for i in range(5)]
    commands += [join(f"n{i}", "mentee", "tenured", "", (), (), "2025-01-01") for i in range(2)]
    return build(tmp_path_factory.mktemp("cohort") / "cohort.db", commands)


def test_json_breakdown_marks_small_groups_suppressed_with_a_null_value(cohort_db):
    result = rmcore(cohort_db, "kpi", "--as-of", "2025-02-01", "--by", "department", "--format",
                    "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {"name", "group", "value", "suppressed", "unit", "description", "plugin"} == set(rows[0])
    participants = {r["group"]: (r["value"], r["suppressed"]) for r in rows
                    if r["name"] == "participants"}  # fmt: skip
    assert participants == {"Eng": (5, False), "Ops": (5, False), "": (None, True)}


def test_csv_breakdown_says_suppressed_instead_of_a_number(cohort_db):
    result = rmcore(cohort_db, "kpi", "--as-of", "2025-02-01", "--by", "department", "--format",
                    "csv")  # fmt: skip
    rows = [r for r in csv.DictReader(io.StringIO(result.output)) if r["name"] == "mentees"]
    assert {r["group"]: r["value"] for r in rows} == {"Eng": "0", "Ops": "5", "": "suppressed"}


def test_table_breakdown_has_a_column_per_group(cohort_db):
    result = rmcore(cohort_db, "kpi", "--as-of", "2025-02-01", "--by", "department", "--format",
                    "table")  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split() == ["name", "Eng", "Ops", "(not", "set)", "unit"]
    mentees = next(line for line in lines if line.startswith("mentees "))
    assert mentees.split() == ["mentees", "0", "5", "suppressed", "people"]
    # By generation the twelve people make two groups large enough to show.
    by_generation = rmcore(cohort_db, "kpi", "--as-of", "2025-02-01", "--by", "generation",
                           "--format", "table")  # fmt: skip
    participants = next(
        line for line in by_generation.output.splitlines() if line.startswith("participants ")
    )
    assert participants.split() == ["participants", "5", "7", "people"]


def test_kpi_on_a_missing_database_exits_1(tmp_path):
    result = rmcore(tmp_path / "nope.db", "kpi")
    assert result.exit_code == 1
    assert "no database" in result.output


def test_help_documents_as_of_by_and_format():
    result = CliRunner().invoke(cli, ["kpi", "--help"])
    assert result.exit_code == 0
    for option in ("--as-of", "--by", "--format"):
        assert option in result.output
    assert end_of_day("2025-01-01") == "2025-01-01T23:59:59Z"
