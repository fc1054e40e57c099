"""`rmcore import`: a re-import refused by the rules about active pairs names the line AND
the column of the change at fault, and appends nothing.

The program is the one ``populated_db`` builds (see tests/conftest.py): ada mentors grace
and raj in two active pairs, with a capacity of 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("populated_db")

ZOE = "zoe,Zoe Adeyemi,zoe@example.org,mentor,,2"
HEADER = "person_id,name,email,role,manager_id,capacity"
ADA = "ada,Ada Lovelace,ada@example.org,{role},{manager},{capacity}"
GRACE = "grace,Grace Hopper,grace@example.org,{role},{manager},0"


def write(path: Path, *lines: str) -> Path:
    """A UTF-8 text file made of ``lines``."""
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def refused_problems(result, raw_log, before: list[tuple]) -> list[str]:
    """Exit 1, the file refused whole, the log byte-for-byte as it was; the problem lines."""
    assert result.exit_code == 1, result.output
    assert "nothing was imported" in result.stderr
    assert "Traceback" not in result.output
    assert raw_log.rows() == before
    return [line for line in result.stderr.splitlines() if line.startswith("line ")]


def import_refused(run_cli, raw_log, path: Path) -> list[str]:
    """Import ``path``, which must be refused; return its problem lines."""
    before = raw_log.rows()
    return refused_problems(run_cli("import", str(path)), raw_log, before)


def test_a_mentor_in_active_pairs_turned_mentee_names_the_role_column(run_cli, raw_log, tmp_path):
    path = write(
        tmp_path / "hr.csv", HEADER, ZOE, ADA.format(role="mentee", manager="", capacity=2)
    )
    assert import_refused(run_cli, raw_log, path) == [
        "line 3, column role: ada mentors in 2 active pair(s) and cannot become a mentee; "
        "end those pairs first"
    ]


def test_a_mentee_in_an_active_pair_turned_mentor_names_the_role_column(run_cli, raw_log, tmp_path):
    path = write(tmp_path / "hr.csv", HEADER, GRACE.format(role="mentor", manager=""))
    (problem,) = import_refused(run_cli, raw_log, path)
    assert problem.startswith("line 2, column role: grace is mentored in an active pair")


def test_a_new_manager_who_is_the_pair_partner_names_the_manager_id_column(
    run_cli, raw_log, tmp_path
):
    path = write(tmp_path / "hr.csv", HEADER, ZOE, GRACE.format(role="mentee", manager="ada"))
    assert import_refused(run_cli, raw_log, path) == [
        "line 3, column manager_id: grace and ada are paired (ada-grace) and a pair cannot "
        "cross a reporting line; end that pair first"
    ]


def test_the_column_is_named_as_the_file_spells_it(run_cli, raw_log, tmp_path):
    """A header alias (``Manager``) is what the operator sees in their file."""
    path = write(
        tmp_path / "hr.csv",
        "person_id,name,email,role,Manager",
        "grace,Grace Hopper,grace@example.org,mentee,ada",
    )
    (problem,) = import_refused(run_cli, raw_log, path)
    assert problem.startswith("line 2, column Manager: grace and ada are paired")


def test_a_capacity_below_the_current_mentees_names_the_capacity_column(run_cli, raw_log, tmp_path):
    path = write(
        tmp_path / "hr.csv", HEADER, ADA.format(role="mentor", manager="", capacity=1), ZOE
    )
    assert import_refused(run_cli, raw_log, path) == [
        "line 2, column capacity: capacity 1 is below the 2 mentee(s) ada has now"
    ]


def test_a_json_lines_file_names_the_field_at_fault(run_cli, raw_log, tmp_path):
    row = {"person_id": "ada", "name": "Ada Lovelace", "email": "ada@example.org",
           "role": "mentor", "capacity": 0}  # fmt: skip
    path = write(tmp_path / "hr.jsonl", json.dumps(row))
    (problem,) = import_refused(run_cli, raw_log, path)
    assert problem.startswith("line 1, column capacity: capacity 0 is below the 2 mentee(s)")


def test_every_row_refused_by_a_pair_rule_is_listed_with_its_own_column(run_cli, raw_log, tmp_path):
    path = write(
        tmp_path / "hr.csv",
        HEADER,
        ADA.format(role="mentor", manager="", capacity=1),
        GRACE.format(role="mentee", manager="ada"),
    )
    problems = import_refused(run_cli, raw_log, path)
    assert [p.split(":")[0] for p in problems] == [
        "line 2, column capacity",
        "line 3, column manager_id",
    ]
