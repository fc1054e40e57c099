"""`rmcore import`: bad files are refused whole, re-imports record only what changed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

HEADER = "person_id,name,email,role,department,manager_id,timezone,skills_offered,capacity"
NEW_PEOPLE = (
    "zoe,Zoe Adeyemi,zoe@example.org,mentor,Data,,Europe/London,AI tools;automation,2",
    "yan,Yan Chen,yan@example.org,mentee,Finance,,Asia/Singapore,negotiation,0",
)


def write(path: Path, *lines: str) -> Path:
    """A text file made of ``lines`` (UTF-8, newline-terminated)."""
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def refusal_lines(stderr: str) -> list[str]:
    """The problem lines of a refused import, without the heading."""
    return [line for line in stderr.splitlines() if line.startswith("line ")]


def people_json(run_cli, status: str = "all") -> dict[str, dict]:
    """``rmcore people --format json`` keyed by person id."""
    result = run_cli("people", "--status", status, "--format", "json")
    assert result.exit_code == 0, result.output
    return {row["person_id"]: row for row in json.loads(result.stdout)}


def events_after(raw_log, position: int) -> list[tuple[str, str, dict]]:
    """``(stream, type, data)`` of every event after ``position``, read with plain sqlite3."""
    rows = raw_log.query(
        "SELECT stream, type, data FROM events WHERE position > ? ORDER BY position", (position,)
    )
    return [(stream, kind, json.loads(data)) for stream, kind, data in rows]


def assert_refused(result, raw_log, rows_before: list[tuple], *expected: str) -> list[str]:
    """Exit 1, each expected problem listed, and the log byte-for-byte as it was."""
    assert result.exit_code == 1, result.output
    assert "nothing was imported" in result.stderr
    problems = refusal_lines(result.stderr)
    for text in expected:
        assert any(line.startswith(text) for line in problems), (text, problems)
    assert raw_log.rows() == rows_before
    return problems


# -- bad files: exit 1, the right line and column, nothing appended ---------------------------


def test_an_unknown_column_is_refused_naming_it(populated_db, run_cli, raw_log, tmp_path):
    before = raw_log.rows()
    path = write(
        tmp_path / "hr.csv", f"{HEADER},favourite_colour", *(f"{r},teal" for r in NEW_PEOPLE)
    )
    result = run_cli("import", str(path))
    problems = assert_refused(
        result, raw_log, before, "line 1, column favourite_colour: unknown column"
    )
    assert len(problems) == 1


def test_an_unknown_column_is_skipped_with_ignore_extra(populated_db, run_cli, raw_log, tmp_path):
    before = raw_log.count()
    path = write(
        tmp_path / "hr.csv", f"{HEADER},favourite_colour", *(f"{r},teal" for r in NEW_PEOPLE)
    )
    result = run_cli("import", str(path), "--ignore-extra")
    assert result.exit_code == 0, result.output
    assert raw_log.count() == before + 2
    zoe = people_json(run_cli)["zoe"]
    assert zoe["skills_offered"] == ["AI tools", "automation"]
    assert "teal" not in json.dumps(zoe)


def test_a_missing_required_column_is_refused_naming_it(populated_db, run_cli, raw_log, tmp_path):
    before = raw_log.rows()
    path = write(tmp_path / "hr.csv", "person_id,name,role", "zoe,Zoe Adeyemi,mentor")
    result = run_cli("import", str(path))
    assert_refused(result, raw_log, before, "line 1: required column email is missing")


def test_an_empty_required_cell_is_refused_naming_line_and_column(
    populated_db, run_cli, raw_log, tmp_path
):
    before = raw_log.rows()
    path = write(
        tmp_path / "hr.csv", HEADER, NEW_PEOPLE[0], "xia,,xia@example.org,mentee,Data,,UTC,,0"
    )
    result = run_cli("import", str(path))
    assert_refused(result, raw_log, before, "line 3, column name: is empty")


BAD_VALUES = {
    "email": ("xia,Xia Li,xia@,mentee,Data,,UTC,,0", "email", "is not a well-formed address"),
    "role": ("xia,Xia Li,xia@example.org,boss,Data,,UTC,,0", "role", "is not one of"),
    "capacity text": ("xia,Xia Li,xia@example.org,mentor,Data,,UTC,,lots", "capacity", "whole"),
    "capacity range": ("xia,Xia Li,xia@example.org,mentor,Data,,UTC,,21", "capacity", "outside"),
    "timezone": ("xia,Xia Li,xia@example.org,mentee,Data,,Mars/Olympus,,0", "timezone", "IANA"),
    "person id": ("xia li,Xia Li,xia@example.org,mentee,Data,,UTC,,0", "person_id", "not valid"),
    "own manager": ("xia,Xia Li,xia@example.org,mentee,Data,xia,UTC,,0", "manager_id", "own"),
}


@pytest.mark.parametrize("kind", sorted(BAD_VALUES))
def test_a_bad_value_is_refused_naming_line_and_column(
    kind, populated_db, run_cli, raw_log, tmp_path
):
    row, column, reason = BAD_VALUES[kind]
    before = raw_log.rows()
    path = write(tmp_path / "hr.csv", HEADER, NEW_PEOPLE[0], NEW_PEOPLE[1], row)
    result = run_cli("import", str(path))
    problems = assert_refused(result, raw_log, before, f"line 4, column {column}: ")
    assert len(problems) == 1
    assert reason in problems[0]


# A capacity cell and what the rules make of it: the number, or part of their refusal.
CAPACITY_CELLS = {
    "007": 7,
    " 3 ": 3,
    "\u0663": 3,  # ARABIC-INDIC DIGIT THREE: a decimal digit, read as int() reads it
    "\u00b2": "is not a whole number",  # SUPERSCRIPT TWO: a digit, but no decimal digit
    "1.5": "is not a whole number",
    "-1": "outside",
    "0021": "outside",
}


@pytest.mark.parametrize("cell", sorted(CAPACITY_CELLS))
def test_a_capacity_cell_is_read_as_the_rules_read_it(cell, db_path, run_cli, raw_log, tmp_path):
    path = write(tmp_path / "hr.csv", "person_id,name,email,role,capacity",
                 f"xia,Xia Li,xia@example.org,mentor,{cell}")  # fmt: skip
    result = run_cli("import", str(path))
    expected = CAPACITY_CELLS[cell]
    if isinstance(expected, int):
        assert result.exit_code == 0, result.output
        assert people_json(run_cli)["xia"]["capacity"] == expected
    else:
        problems = assert_refused(result, raw_log, [], "line 2, column capacity: ")
        assert expected in problems[0]


@pytest.mark.parametrize("value", [[2026, 1, 5], 5, {"date": "2026-01-05"}])
def test_a_joined_at_that_is_not_text_in_a_json_line_is_refused_naming_it(
    value, db_path, run_cli, raw_log, tmp_path
):
    row = {"person_id": "zoe", "name": "Zoe", "email": "zoe@example.org", "role": "mentor",
           "joined_at": value}  # fmt: skip
    path = write(tmp_path / "hr.jsonl", json.dumps(row))
    result = run_cli("import", str(path))
    assert_refused(result, raw_log, [], "line 1, column joined_at: ")


def test_a_joined_at_met_again_is_read_as_the_first_time(db_path, run_cli, tmp_path):
    path = write(tmp_path / "hr.csv", "person_id,name,email,role,joined_at",
                 "zoe,Zoe,zoe@example.org,mentor,2026-01-05",
                 "yan,Yan,yan@example.org,mentee,2026-01-05",
                 "ken,Ken,ken@example.org,mentee,")  # fmt: skip
    result = run_cli("import", str(path), "--at", "2026-02-01")
    assert result.exit_code == 0, result.output
    people = people_json(run_cli)
    assert [people[p]["joined_at"] for p in ("zoe", "yan", "ken")] == [
        "2026-01-05T00:00:00Z", "2026-01-05T00:00:00Z", "2026-02-01T00:00:00Z",
    ]  # fmt: skip


def test_every_bad_row_is_listed_not_only_the_first(populated_db, run_cli, raw_log, tmp_path):
    before = raw_log.rows()
    rows = [row for row, _, _ in BAD_VALUES.values()]
    rows = [row.replace("xia", f"xia{i}") for i, row in enumerate(rows)]
    path = write(tmp_path / "hr.csv", HEADER, *rows)
    result = run_cli("import", str(path))
    problems = assert_refused(result, raw_log, before)
    assert [p.split(":")[0] for p in problems] == [
        f"line {i + 2}, column {column}" for i, (_, column, _) in enumerate(BAD_VALUES.values())
    ]
    assert f"({len(rows)} problem(s))" in result.stderr


def test_every_problem_of_a_row_is_listed_with_its_column(db_path, run_cli, raw_log, tmp_path):
    path = write(
        tmp_path / "hr.csv",
        "person_id,name,email,role,capacity,timezone,joined_at",
        "zoe,Zoe,zoe@,boss,x,Mars/Base,2026-13-01",
        "zoe,,yan@example.org,mentor,21,UTC,",
        "xia,Xia Li,xia@example.org,mentee,0,UTC,",
    )
    result = run_cli("import", str(path))
    problems = assert_refused(result, raw_log, [])
    assert [problem.split(":")[0] for problem in problems] == [
        "line 2, column email",
        "line 2, column role",
        "line 2, column capacity",
        "line 2, column timezone",
        "line 2, column joined_at",
        "line 3, column person_id",
        "line 3, column name",
        "line 3, column capacity",
    ]
    assert "zoe already appears on line 2" in problems[5]


def test_an_id_repeated_after_a_refused_row_is_still_named_as_a_duplicate(
    db_path, run_cli, raw_log, tmp_path
):
    path = write(tmp_path / "hr.csv", HEADER, "zoe,,zoe@example.org,mentor,,,UTC,,1",
                 NEW_PEOPLE[0])  # fmt: skip
    problems = assert_refused(run_cli("import", str(path)), raw_log, [])
    assert problems == [
        "line 2, column name: is empty",
        "line 3, column person_id: zoe already appears on line 2",
    ]


def test_a_person_twice_in_the_file_is_refused_naming_both_lines(
    populated_db, run_cli, raw_log, tmp_path
):
    before = raw_log.rows()
    path = write(tmp_path / "hr.csv", HEADER, NEW_PEOPLE[0], NEW_PEOPLE[1], NEW_PEOPLE[0])
    result = run_cli("import", str(path))
    problems = assert_refused(result, raw_log, before, "line 4, column person_id: ")
    assert "zoe" in problems[0] and "line 2" in problems[0]


def test_bytes_that_are_not_utf8_are_refused_naming_line_and_column(
    populated_db, run_cli, raw_log, tmp_path
):
    before = raw_log.rows()
    path = tmp_path / "hr.csv"
    latin1 = "xia,Xia Li,xia@example.org,mentee,Ventas Espa\xf1a,,UTC,,0".encode("latin-1")
    path.write_bytes(f"{HEADER}\n{NEW_PEOPLE[0]}\n".encode() + latin1 + b"\n")
    result = run_cli("import", str(path))
    problems = assert_refused(result, raw_log, before, "line 3, column department: ")
    assert "UTF-8" in problems[0]


@pytest.mark.parametrize(
    ("row", "fields"),
    [("xia,Xia Li,xia@example.org,mentee", 4), (NEW_PEOPLE[1] + ",spare", 10)],
    ids=["too few", "too many"],
)
def test_a_row_with_the_wrong_number_of_fields_is_refused_naming_its_line(
    row, fields, populated_db, run_cli, raw_log, tmp_path
):
    before = raw_log.rows()
    path = write(tmp_path / "hr.csv", HEADER, NEW_PEOPLE[0], row)
    result = run_cli("import", str(path))
    problems = assert_refused(result, raw_log, before, "line 3: ")
    assert f"{fields} fields" in problems[0] and "header has 9" in problems[0]


def test_lines_are_counted_in_the_file_when_a_quoted_cell_spans_two_lines(
    populated_db, run_cli, raw_log, tmp_path
):
    before = raw_log.rows()
    path = write(
        tmp_path / "hr.csv",
        HEADER,
        'zoe,Zoe Adeyemi,zoe@example.org,mentor,"Data, Analytics",,UTC,"AI tools;',
        'automation",2',
        "xia,Xia Li,xia@,mentee,Data,,UTC,,0",
    )
    result = run_cli("import", str(path))
    problems = assert_refused(result, raw_log, before, "line 4, column email: ")
    assert len(problems) == 1


def test_a_bad_json_line_is_refused_naming_its_line(populated_db, run_cli, raw_log, tmp_path):
    before = raw_log.rows()
    good = {"person_id": "zoe", "name": "Zoe", "email": "zoe@example.org", "role": "mentor"}
    path = write(
        tmp_path / "hr.jsonl",
        json.dumps(good),
        '{"person_id": "yan", "name": "Yan",',
        '["not", "an", "object"]',
    )
    result = run_cli("import", str(path))
    problems = assert_refused(result, raw_log, before, "line 2: ", "line 3: ")
    assert "not valid JSON" in problems[0]
    assert "not a JSON object" in problems[1]


def test_a_bad_value_in_a_json_line_names_its_line_and_key(
    populated_db, run_cli, raw_log, tmp_path
):
    before = raw_log.rows()
    rows = [
        {"person_id": "zoe", "name": "Zoe", "email": "zoe@example.org", "role": "mentor"},
        {"person_id": "yan", "name": "Yan", "email": "yan@example.org", "role": "mentee",
         "capacity": 50},
    ]  # fmt: skip
    path = write(tmp_path / "hr.jsonl", *map(json.dumps, rows))
    result = run_cli("import", str(path))
    assert_refused(result, raw_log, before, "line 2, column capacity: capacity 50 is outside")


def test_a_person_who_already_left_is_left_as_they_are(populated_db, run_cli, raw_log, tmp_path):
    """HR exports still list people who left the program: their rows change nothing."""
    head = raw_log.count()
    tom_moved = "tom,Tomás Núñez,tom@example.org,mentee,Legal,,,,"
    path = write(tmp_path / "hr.csv", HEADER, NEW_PEOPLE[0], tom_moved)
    result = run_cli("import", str(path))
    assert result.exit_code == 0, result.output
    assert "1 joined, 0 updated, 0 unchanged, 0 left (1 events)" in result.stdout
    assert (
        "1 row(s) for people no longer in the program (left or forgotten): nothing recorded"
        in result.stdout
    )
    assert [(stream, kind) for stream, kind, _ in events_after(raw_log, head)] == [
        ("person:zoe", "joined")
    ]
    tom = people_json(run_cli)["tom"]
    assert (tom["status"], tom["department"]) == ("left", "Sales")


def test_a_forgotten_person_in_the_file_is_not_recorded_again(
    populated_db, run_cli, raw_log, tmp_path
):
    """Importing an export that still lists someone forgotten records nothing about them."""
    assert run_cli("forget", "tom").exit_code == 0
    head = raw_log.count()
    path = write(tmp_path / "hr.csv", HEADER, "tom,Tomás Núñez,tom@example.org,mentee,,,,,")
    result = run_cli("import", str(path))
    assert result.exit_code == 0, result.output
    assert (
        "1 row(s) for people no longer in the program (left or forgotten): nothing recorded"
        in result.stdout
    )
    assert raw_log.count() == head
    assert people_json(run_cli)["tom"]["name"] == "[erased]"


@pytest.mark.parametrize(
    "cells, column",
    [
        ("tom,Tomás Núñez,tom@,mentee,,,,,", "email"),
        ("tom,Tomás Núñez,tom@example.org,wizard,,,,,", "role"),
        ("tom,Tomás Núñez,tom@example.org,mentee,,,Mars/Olympus,,", "timezone"),
        ("tom,Tomás Núñez,tom@example.org,mentee,,tom,,,", "manager_id"),
        ("tom,Tomás Núñez,tom@example.org,mentee,,,,,99", "capacity"),
    ],
)
def test_a_bad_value_in_the_row_of_someone_who_left_is_still_refused(
    populated_db, run_cli, raw_log, tmp_path, cells, column
):
    """Nothing is recorded for them, but a broken export is still a broken export."""
    before = raw_log.rows()
    path = write(tmp_path / "hr.csv", HEADER, NEW_PEOPLE[0], cells)
    assert_refused(run_cli("import", str(path)), raw_log, before, f"line 3, column {column}: ")


def test_the_export_of_everyone_including_leavers_imports_back_recording_nothing(
    populated_db, run_cli, raw_log, tmp_path
):
    """``people --status all --format csv`` lists leavers too; importing it is a no-op."""
    exported = run_cli("people", "--status", "all", "--format", "csv")
    assert exported.exit_code == 0 and ",left," in exported.stdout
    head = raw_log.count()
    path = tmp_path / "everyone.csv"
    path.write_text(exported.stdout, encoding="utf-8")
    result = run_cli("import", str(path))
    assert result.exit_code == 0, result.output
    assert "0 joined, 0 updated" in result.stdout
    assert "no longer in the program" in result.stdout
    assert raw_log.count() == head


def test_a_json_line_for_someone_who_left_records_nothing(populated_db, run_cli, raw_log, tmp_path):
    head = raw_log.count()
    row = {"person_id": "tom", "name": "Tomás Núñez", "email": "tom@example.org", "role": "mentee"}
    path = write(tmp_path / "hr.jsonl", json.dumps(row))
    result = run_cli("import", str(path), "--leave-missing")
    assert result.exit_code == 0, result.output
    assert "no longer in the program" in result.stdout
    assert all(stream != "person:tom" for stream, _, _ in events_after(raw_log, head))


def test_a_mentor_in_active_pairs_cannot_become_mentee_only(
    populated_db, run_cli, raw_log, tmp_path
):
    before = raw_log.rows()
    path = write(
        tmp_path / "hr.csv",
        "person_id,name,email,role",
        "zoe,Zoe Adeyemi,zoe@example.org,mentor",
        "ada,Ada Lovelace,ada@example.org,mentee",
    )
    result = run_cli("import", str(path))
    problems = assert_refused(result, raw_log, before, "line 3")
    assert "ada mentors in 2 active pair(s)" in problems[0]
    assert people_json(run_cli)["ada"]["role"] == "mentor"


def test_a_capacity_below_current_mentees_is_refused(populated_db, run_cli, raw_log, tmp_path):
    before = raw_log.rows()
    path = write(
        tmp_path / "hr.csv", "person_id,name,email,role,capacity",
        "ada,Ada Lovelace,ada@example.org,mentor,1",
    )  # fmt: skip
    result = run_cli("import", str(path))
    problems = assert_refused(result, raw_log, before, "line 2")
    assert "capacity 1 is below the 2 mentee(s)" in problems[0]


def test_more_than_fifty_bad_rows_lists_fifty_then_how_many_more(
    populated_db, run_cli, raw_log, tmp_path
):
    before = raw_log.rows()
    bad = [f"p{i},Person {i},p{i}-at-example.org,mentee,,,,,0" for i in range(63)]
    path = write(tmp_path / "hr.csv", HEADER, NEW_PEOPLE[0], *bad)
    result = run_cli("import", str(path))
    problems = assert_refused(result, raw_log, before)
    assert [p.split(":")[0] for p in problems] == [f"line {n}, column email" for n in range(3, 53)]
    assert "(63 problem(s))" in result.stderr
    assert "and 13 more" in result.stderr


EMPTY_FILES = {
    "0-byte CSV": ("hr.csv", b""),
    "blank CSV": ("hr.csv", b"\n  \n\r\n , \n"),
    "0-byte JSON lines": ("hr.jsonl", b""),
    "blank JSON lines": ("hr.jsonl", b"\n   \n\n"),
}


@pytest.mark.parametrize("kind", sorted(EMPTY_FILES))
def test_an_empty_file_is_refused_as_missing_its_columns_and_nobody_leaves(
    kind, populated_db, run_cli, raw_log, tmp_path
):
    name, content = EMPTY_FILES[kind]
    before = raw_log.rows()
    path = tmp_path / name
    path.write_bytes(content)
    result = run_cli("import", str(path), "--leave-missing")
    problems = assert_refused(result, raw_log, before)
    assert problems == [
        f"line 1: required column {field} is missing"
        for field in ("person_id", "name", "email", "role")
    ]
    left = [p for p, row in people_json(run_cli).items() if row["status"] == "left"]
    assert left == ["tom"]


def test_blank_lines_before_the_header_are_skipped(db_path, run_cli, raw_log, tmp_path):
    path = write(tmp_path / "hr.csv", "", "  ", HEADER, *NEW_PEOPLE)
    result = run_cli("import", str(path))
    assert result.exit_code == 0, result.output
    assert sorted(people_json(run_cli)) == ["yan", "zoe"]
    bad = write(tmp_path / "bad.csv", "", f"{HEADER},colour", *(f"{r},teal" for r in NEW_PEOPLE))
    refused = run_cli("import", str(bad))
    assert_refused(refused, raw_log, raw_log.rows(), "line 2, column colour: unknown column")


def test_a_cell_too_long_to_read_is_refused_naming_its_line(db_path, run_cli, raw_log, tmp_path):
    path = write(tmp_path / "hr.csv", HEADER, NEW_PEOPLE[0], f"yan,Yan,{'x' * 200_000},mentee")
    result = run_cli("import", str(path))
    problems = assert_refused(result, raw_log, [], "line 3: a cell is longer than 131,072")
    assert "closing quote" in problems[0]
    assert isinstance(result.exception, SystemExit)  # a refusal, not a traceback


def test_a_quote_left_open_is_named_as_the_likely_cause(db_path, run_cli, raw_log, tmp_path):
    path = write(tmp_path / "hr.csv", HEADER, f'"{NEW_PEOPLE[0]}', NEW_PEOPLE[1])
    result = run_cli("import", str(path))
    problems = assert_refused(result, raw_log, [], "line 2: the row has 1 fields")
    assert "runs on to line 3: is a closing quote missing?" in problems[0]


@pytest.mark.parametrize(
    ("encoding", "named"),
    [("utf-16", "UTF-16"), ("utf-16-le", "UTF-16"), ("utf-16-be", "UTF-16"),
     ("utf-32", "UTF-32")],
)  # fmt: skip
def test_a_utf16_or_utf32_file_is_refused_naming_its_encoding(
    encoding, named, db_path, run_cli, raw_log, tmp_path
):
    path = tmp_path / "hr.csv"
    # Non-ASCII text early on, as an export of names often has.
    path.write_text("Person ID,Name,Email,Role\nzoë,Zoë Núñez,zoe@example.org,mentor\n",
                    encoding=encoding)  # fmt: skip
    result = run_cli("import", str(path))
    problems = assert_refused(result, raw_log, [], f"line 1: the file is {named} text")
    assert len(problems) == 1


def test_a_header_that_is_not_utf8_is_refused_as_such(db_path, run_cli, raw_log, tmp_path):
    path = tmp_path / "hr.csv"
    path.write_bytes(f"{HEADER},f\xe4rg\n{NEW_PEOPLE[0]},x\n".encode("latin-1"))
    result = run_cli("import", str(path))
    problems = assert_refused(result, raw_log, [], "line 1: the header is not valid UTF-8")
    assert len(problems) == 1


def test_a_file_that_is_not_text_is_refused_as_such(db_path, run_cli, raw_log, tmp_path):
    path = tmp_path / "hr.csv"
    path.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(300) + b"\x01\x02")
    result = run_cli("import", str(path))
    assert_refused(result, raw_log, [], "line 1: the file is not text")


@pytest.mark.parametrize("separator", [";", "\t"])
def test_a_file_separated_by_semicolons_or_tabs_imports_as_a_comma_separated_one(
    separator, db_path, run_cli, tmp_path
):
    lines = [HEADER.replace(",", separator)]
    for row in NEW_PEOPLE:
        cells = row.split(",")
        cells[7] = f'"{cells[7]}"'  # the skills cell holds ';'
        lines.append(separator.join(cells))
    result = run_cli("import", str(write(tmp_path / "hr.csv", *lines)), "--at", "2026-01-05")
    assert result.exit_code == 0, result.output
    comma = tmp_path / "comma.db"
    assert run_cli("init", db=comma).exit_code == 0
    path = write(tmp_path / "c.csv", HEADER, *NEW_PEOPLE)
    assert run_cli("import", str(path), "--at", "2026-01-05", db=comma).exit_code == 0
    as_comma = json.loads(run_cli("people", "--format", "json", db=comma).stdout)
    assert people_json(run_cli) == {row["person_id"]: row for row in as_comma}
    assert people_json(run_cli)["zoe"]["skills_offered"] == ["AI tools", "automation"]


def test_json_values_that_are_not_text_are_refused_naming_line_and_key(
    db_path, run_cli, raw_log, tmp_path
):
    person = {"name": "Zoe", "email": "zoe@example.org", "role": "mentor"}
    rows = [
        {**person, "person_id": "a", "name": {"first": "Zoe"}},
        {**person, "person_id": "b", "department": ["Data"]},
        {**person, "person_id": "c", "skills_offered": ["AI tools", {"level": 2}]},
        {**person, "person_id": "d", "capacity": True},
        {**person, "person_id": {"id": 4}},
        {**person, "person_id": "f", "skills_sought": [None]},
    ]
    result = run_cli("import", str(write(tmp_path / "hr.jsonl", *map(json.dumps, rows))))
    problems = assert_refused(
        result, raw_log, [],
        "line 1, column name: name must be text",
        "line 2, column department: department must be text",
        'line 3, column skills_offered: skills_offered holds {"level": 2}',
        "line 4, column capacity: true is not a whole number",
        "line 5, column person_id: person_id must be text",
        "line 6, column skills_sought: skills_sought holds null",
    )  # fmt: skip
    assert len(problems) == 6


def test_a_json_number_for_an_id_or_a_department_is_read_as_its_digits(db_path, run_cli, tmp_path):
    row = {"person_id": 1042, "name": "Zoe", "email": "zoe@example.org", "role": "mentor",
           "department": 7, "manager_id": 1001}  # fmt: skip
    result = run_cli("import", str(write(tmp_path / "hr.jsonl", json.dumps(row))))
    assert result.exit_code == 0, result.output
    zoe = people_json(run_cli)["1042"]
    assert (zoe["department"], zoe["manager_id"]) == ("7", "1001")


def test_a_json_line_too_deep_or_with_too_long_a_number_is_refused_naming_its_line(
    db_path, run_cli, raw_log, tmp_path
):
    good = {"person_id": "zoe", "name": "Zoe", "email": "zoe@example.org", "role": "mentor"}
    path = write(
        tmp_path / "hr.jsonl",
        json.dumps(good),
        '{"person_id": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"person_id": "yan", "capacity": ' + "9" * 5000 + "}",
    )
    result = run_cli("import", str(path))
    problems = assert_refused(result, raw_log, [], "line 2: ", "line 3: ")
    assert "nested too deeply" in problems[0]
    assert "a number too long to read" in problems[1]


# -- importing again ---------------------------------------------------------------------------

BASE = (
    "person_id,name,email,role,generation,department,manager_id,timezone,"
    "skills_offered,skills_sought,capacity",
    "amara,Amara Okafor,amara@example.org,mentor,early-career,Marketing,lena,Europe/London,"
    "AI tools;social media,leadership,2",
    "jonas,Jonas Weber,jonas@example.org,mentor,early-career,Data,lena,Europe/Berlin,"
    "data analytics,communication,1",
    "priya,Priya Raman,priya@example.org,both,mid-career,Security,,Asia/Kolkata,"
    "cybersecurity,leadership,1",
    "lena,Lena Fischer,lena@example.org,mentee,tenured,Marketing,,Europe/Berlin,"
    "leadership;strategy,AI tools,0",
    "david,David Moreau,david@example.org,mentee,tenured,Finance,,Europe/Paris,"
    "negotiation,data analytics,0",
    "omar,Omar Haddad,omar@example.org,mentee,tenured,Legal,,Europe/Paris,judgement,automation,0",
)


@pytest.fixture
def imported(db_path, run_cli, tmp_path) -> Path:
    """``db_path`` after importing BASE on 2026-01-05; returns the file."""
    path = write(tmp_path / "hr.csv", *BASE)
    result = run_cli("import", str(path), "--at", "2026-01-05")
    assert result.exit_code == 0, result.output
    assert "6 joined" in result.stdout
    return path


def edited(lines: tuple[str, ...], person: str, column: str, value: str) -> tuple[str, ...]:
    """``lines`` with one cell of one person's row replaced."""
    columns = lines[0].split(",")
    out = [lines[0]]
    for line in lines[1:]:
        cells = line.split(",")
        if cells[0] == person:
            cells[columns.index(column)] = value
        out.append(",".join(cells))
    return tuple(out)


def test_importing_the_same_file_twice_appends_nothing(imported, run_cli, raw_log):
    before = raw_log.rows()
    result = run_cli("import", str(imported), "--at", "2026-02-01")
    assert result.exit_code == 0, result.output
    assert "0 joined, 0 updated, 6 unchanged, 0 left (0 events)" in result.stdout
    assert raw_log.rows() == before


def test_a_changed_profile_records_one_update_with_only_the_changed_fields(
    imported, run_cli, raw_log, tmp_path
):
    lines = BASE
    for person, column, value in (
        ("amara", "department", "Product"),
        ("jonas", "manager_id", "david"),
        ("priya", "skills_offered", "cybersecurity;AI tools"),
        ("lena", "timezone", "America/New_York"),
        ("david", "capacity", "1"),
    ):
        lines = edited(lines, person, column, value)
    head = raw_log.count()
    result = run_cli("import", str(write(tmp_path / "hr2.csv", *lines)), "--at", "2026-02-01")
    assert result.exit_code == 0, result.output
    assert "0 joined, 5 updated, 1 unchanged" in result.stdout
    assert events_after(raw_log, head) == [
        ("person:amara", "profile_updated",
         {"person_id": "amara", "changes": {"department": "Product"}}),
        ("person:jonas", "profile_updated",
         {"person_id": "jonas", "changes": {"manager_id": "david"}}),
        ("person:priya", "profile_updated",
         {"person_id": "priya", "changes": {"skills_offered": ["cybersecurity", "AI tools"]}}),
        ("person:lena", "profile_updated",
         {"person_id": "lena", "changes": {"timezone": "America/New_York"}}),
        ("person:david", "profile_updated", {"person_id": "david", "changes": {"capacity": 1}}),
    ]  # fmt: skip


def test_profile_updates_show_in_people_and_in_history(imported, run_cli, tmp_path):
    lines = edited(BASE, "amara", "department", "Product")
    lines = edited(lines, "amara", "skills_sought", "leadership;negotiation")
    result = run_cli("import", str(write(tmp_path / "hr2.csv", *lines)), "--at", "2026-02-01")
    assert result.exit_code == 0, result.output
    people = people_json(run_cli)
    assert people["amara"]["department"] == "Product"
    assert people["amara"]["skills_sought"] == ["leadership", "negotiation"]
    assert people["jonas"]["department"] == "Data"
    history = run_cli("history", "amara", "--format", "json")
    assert history.exit_code == 0, history.output
    entries = [(e["type"], e["occurred_at"], e["data"]) for e in json.loads(history.stdout)]
    assert [kind for kind, _, _ in entries] == ["joined", "profile_updated"]
    assert entries[1][1:] == (
        "2026-02-01T00:00:00Z",
        {"person_id": "amara",
         "changes": {"department": "Product", "skills_sought": ["leadership", "negotiation"]}},
    )  # fmt: skip


def test_a_cleared_manager_is_recorded_as_no_manager(imported, run_cli, raw_log, tmp_path):
    head = raw_log.count()
    lines = edited(BASE, "amara", "manager_id", "")
    result = run_cli("import", str(write(tmp_path / "hr2.csv", *lines)))
    assert result.exit_code == 0, result.output
    assert events_after(raw_log, head) == [
        ("person:amara", "profile_updated", {"person_id": "amara", "changes": {"manager_id": None}})
    ]
    assert people_json(run_cli)["amara"]["manager_id"] is None


def test_people_missing_from_a_reimport_stay_without_leave_missing(
    imported, run_cli, raw_log, tmp_path
):
    before = raw_log.rows()
    result = run_cli("import", str(write(tmp_path / "hr2.csv", *BASE[:3])))
    assert result.exit_code == 0, result.output
    assert raw_log.rows() == before
    assert all(p["status"] == "active" for p in people_json(run_cli).values())


def test_leave_missing_records_left_and_ends_their_pairs(imported, run_cli, raw_log, tmp_path):
    paired = run_cli("pair", "amara", "david", "--at", "2026-01-12")
    assert paired.exit_code == 0, paired.output
    head = raw_log.count()
    kept = tuple(line for line in BASE if not line.startswith(("amara,", "omar,")))
    result = run_cli(
        "import", str(write(tmp_path / "hr2.csv", *kept)), "--leave-missing", "--at", "2026-03-01"
    )
    assert result.exit_code == 0, result.output
    assert "2 left" in result.stdout
    new = events_after(raw_log, head)
    assert sorted((stream, kind) for stream, kind, _ in new) == [
        ("pair:amara-david", "pair_ended"),
        ("person:amara", "left"),
        ("person:omar", "left"),
    ]
    people = people_json(run_cli)
    assert {p for p, row in people.items() if row["status"] == "left"} == {"amara", "omar"}
    assert people["amara"]["left_at"] == "2026-03-01T00:00:00Z"
    pairs = json.loads(run_cli("pairs", "--status", "all", "--format", "json").stdout)
    assert [(p["pair_id"], p["status"]) for p in pairs] == [("amara-david", "ended")]


def test_leave_missing_with_the_full_file_records_nothing(imported, run_cli, raw_log):
    before = raw_log.rows()
    result = run_cli("import", str(imported), "--leave-missing")
    assert result.exit_code == 0, result.output
    assert raw_log.rows() == before


def test_a_dry_run_says_what_an_import_would_record_and_appends_nothing(
    imported, run_cli, raw_log, tmp_path
):
    before = raw_log.rows()
    changed = edited(BASE, "jonas", "department", "Analytics")
    kept = tuple(line for line in changed if not line.startswith("omar,"))
    path = write(tmp_path / "hr2.csv", *kept, "zoe,Zoe Adeyemi,zoe@example.org,mentor,,,,,,,1")
    dry = run_cli("import", str(path), "--leave-missing", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert raw_log.rows() == before
    assert dry.stdout == (
        "Checked 6 rows; importing would record 1 joined, 1 updated, 4 unchanged, 1 left"
        " (3 events).\nWould leave: omar.\nDry run: nothing was appended.\n"
    )
    real = run_cli("import", str(path), "--leave-missing")
    assert real.stdout.startswith("Imported 6 rows: 1 joined, 1 updated, 4 unchanged, 1 left (3 ")
    assert len(raw_log.rows()) == len(before) + 3


def test_a_dry_run_names_the_first_twenty_leavers_and_counts_the_rest(
    db_path, run_cli, raw_log, tmp_path
):
    rows = [f"p{i:02d},P {i},p{i}@example.org,mentee" for i in range(25)]
    everyone = write(tmp_path / "all.csv", "person_id,name,email,role", *rows)
    assert run_cli("import", str(everyone)).exit_code == 0
    before = raw_log.rows()
    few = write(tmp_path / "few.csv", "person_id,name,email,role", rows[0])
    dry = run_cli("import", str(few), "--leave-missing", "--dry-run")
    assert dry.exit_code == 0, dry.output
    named = ", ".join(f"p{i:02d}" for i in range(1, 21))
    assert f"Would leave: {named} and 4 more.\n" in dry.stdout
    assert raw_log.rows() == before


def test_a_dry_run_of_a_bad_file_is_refused_as_the_import_would_be(
    imported, run_cli, raw_log, tmp_path
):
    before = raw_log.rows()
    path = write(tmp_path / "hr2.csv", *edited(BASE, "jonas", "email", "jonas@"))
    result = run_cli("import", str(path), "--dry-run")
    assert_refused(result, raw_log, before, "line 3, column email: ")


def test_a_file_read_from_standard_input_imports_as_the_file_does(db_path, run_cli, tmp_path):
    text = "".join(f"{line}\n" for line in BASE)
    result = run_cli("import", "-", "--at", "2026-01-05", input=text)
    assert result.exit_code == 0, result.output
    assert "6 joined" in result.stdout
    again = run_cli("import", str(write(tmp_path / "hr.csv", *BASE)), "--at", "2026-01-05")
    assert "0 joined, 0 updated, 6 unchanged" in again.stdout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_a_named_pipe_imports_as_the_file_does(db_path, run_cli, tmp_path):
    pipe = tmp_path / "hr-pipe"
    os.mkfifo(pipe)
    text = "".join(f"{line}\n" for line in BASE)
    writer = threading.Thread(target=pipe.write_text, args=(text,), kwargs={"encoding": "utf-8"})
    writer.start()
    result = run_cli("import", str(pipe), "--at", "2026-01-05")
    writer.join(timeout=10)
    assert result.exit_code == 0, result.output
    assert "6 joined" in result.stdout
    again = run_cli("import", str(write(tmp_path / "hr.csv", *BASE)), "--at", "2026-01-05")
    assert "0 joined, 0 updated, 6 unchanged" in again.stdout


def test_json_lines_import_accepts_arrays_and_numbers(db_path, run_cli, raw_log, tmp_path):
    rows = [
        {"person_id": "mei", "name": "Mei Tanaka", "email": "mei@example.org", "role": "both",
         "skills_offered": ["generative AI", "social media"], "skills_sought": "strategy;pitching",
         "capacity": 2, "timezone": "Asia/Tokyo", "joined_at": "2026-01-05"},
        {"person_id": "ken", "name": "Ken Adams", "email": "ken@example.org", "role": "mentee"},
    ]  # fmt: skip
    path = write(tmp_path / "hr.jsonl", *(json.dumps(r, ensure_ascii=False) for r in rows))
    result = run_cli("import", str(path))
    assert result.exit_code == 0, result.output
    assert raw_log.count() == 2
    mei = people_json(run_cli)["mei"]
    assert mei["skills_offered"] == ["generative AI", "social media"]
    assert mei["skills_sought"] == ["strategy", "pitching"]
    assert (mei["capacity"], mei["timezone"]) == (2, "Asia/Tokyo")
    assert mei["joined_at"] == "2026-01-05T00:00:00Z"
    assert run_cli("import", str(path)).exit_code == 0
    assert raw_log.count() == 2


def test_headers_match_case_insensitively_and_by_alias(db_path, run_cli, tmp_path):
    path = tmp_path / "hr.csv"
    path.write_text(
        "\ufeffEmployee ID,Full Name,EMAIL,Role,Career Stage,Dept,Manager,Time-Zone,Offers,Seeks,"
        "CAPACITY,Start Date\n"
        "amara,Amara Okafor,amara@example.org,Mentor ,early-career,Marketing,lena,Europe/London,"
        "AI tools; social media ,leadership,2,2026-01-05\n",
        encoding="utf-8",
    )
    result = run_cli("import", str(path))
    assert result.exit_code == 1
    assert "line 2, column Role: role 'Mentor' is not one of" in result.stderr
    path.write_text(path.read_text(encoding="utf-8").replace("Mentor ", "mentor"), "utf-8")
    result = run_cli("import", str(path))
    assert result.exit_code == 0, result.output
    amara = people_json(run_cli)["amara"]
    assert {k: amara[k] for k in ("name", "generation", "department", "manager_id")} == {
        "name": "Amara Okafor",
        "generation": "early-career",
        "department": "Marketing",
        "manager_id": "lena",
    }
    assert amara["skills_offered"] == ["AI tools", "social media"]
    assert (amara["timezone"], amara["capacity"]) == ("Europe/London", 2)
    assert amara["joined_at"] == "2026-01-05T00:00:00Z"


def test_two_columns_for_one_field_are_refused(db_path, run_cli, raw_log, tmp_path):
    path = write(tmp_path / "hr.csv", "id,person_id,name,email,role", "a,a,A,a@example.org,mentor")
    result = run_cli("import", str(path))
    assert_refused(result, raw_log, [], "line 1, column person_id: a second column for person_id")


def test_quiet_prints_nothing_on_success(db_path, run_cli, raw_log, tmp_path):
    path = write(tmp_path / "hr.csv", *BASE)
    result = run_cli("import", str(path), "--quiet")
    assert result.exit_code == 0
    assert (result.stdout, result.stderr) == ("", "")
    assert raw_log.count() == 6


def test_quiet_still_reports_a_refusal(db_path, run_cli, raw_log, tmp_path):
    path = write(tmp_path / "hr.csv", *BASE, "bad,Bad,bad@,mentee,,,,,,,0")
    result = run_cli("import", str(path), "--quiet")
    assert result.exit_code == 1
    assert "line 8, column email" in result.stderr
    assert raw_log.count() == 0


def test_a_retried_import_with_the_same_key_appends_nothing(db_path, run_cli, raw_log, tmp_path):
    path = write(tmp_path / "hr.csv", *BASE)
    first = run_cli("import", str(path), "--idempotency-key", "hr-2026-01")
    assert first.exit_code == 0, first.output
    assert raw_log.query("SELECT DISTINCT idempotency_key FROM events") == [("hr-2026-01",)]
    moved = write(tmp_path / "hr-feb.csv", *edited(BASE, "amara", "department", "Product"))
    assert run_cli("import", str(moved)).exit_code == 0
    before = raw_log.rows()
    assert len(before) == 7
    again = run_cli("import", str(path), "--idempotency-key", "hr-2026-01")
    assert again.exit_code == 0, again.output
    assert (
        again.stdout == "Already recorded at position 1 (same idempotency key); nothing appended.\n"
    )
    assert raw_log.rows() == before
    assert people_json(run_cli)["amara"]["department"] == "Product"
    without_key = run_cli("import", str(path))
    assert without_key.exit_code == 0, without_key.output
    assert raw_log.count() == 8


def test_a_retry_of_an_import_that_changed_nothing_says_so_and_appends_nothing(
    imported, run_cli, raw_log
):
    first = run_cli("import", str(imported), "--idempotency-key", "hr-again")
    assert first.exit_code == 0, first.output
    assert "6 unchanged, 0 left (0 events)" in first.stdout
    before = raw_log.rows()
    for args in ((), ("--quiet",)):
        again = run_cli("import", str(imported), "--idempotency-key", "hr-again", *args)
        assert again.exit_code == 0, again.output
        expected = "" if args else "Already recorded (same idempotency key); nothing appended.\n"
        assert (again.stdout, again.stderr) == (expected, "")
    assert raw_log.rows() == before


def test_a_retried_import_in_a_subprocess_exits_0_saying_already_recorded(db_path, tmp_path):
    path = write(tmp_path / "hr.csv", *BASE)
    command = [sys.executable, "-m", "rmcore", "--db", str(db_path), "--actor", "hr-ops",
               "import", str(path), "--idempotency-key", "hr-2026-01"]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "6 joined" in first.stdout
    again = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert (again.returncode, again.stderr) == (0, "")
    assert (
        "Already recorded at position 1 (same idempotency key); nothing appended." in again.stdout
    )


def test_a_different_file_under_a_used_key_is_refused(db_path, run_cli, raw_log, tmp_path):
    path = write(tmp_path / "hr.csv", *BASE[:3])
    assert run_cli("import", str(path), "--idempotency-key", "hr-2026-01").exit_code == 0
    before = raw_log.rows()
    other = write(tmp_path / "hr2.csv", *BASE)
    result = run_cli("import", str(other), "--idempotency-key", "hr-2026-01")
    assert result.exit_code == 1
    assert (
        "idempotency key 'hr-2026-01' was already used for a different command"
        " (recorded at position 1)" in result.stderr
    )
    assert raw_log.rows() == before


def test_a_used_key_whose_import_recorded_nothing_does_not_point_at_another_event(
    imported, run_cli, raw_log, tmp_path
):
    assert run_cli("import", str(imported), "--idempotency-key", "again").exit_code == 0
    other = write(tmp_path / "hr2.csv", *edited(BASE, "jonas", "department", "Analytics"))
    result = run_cli("import", str(other), "--idempotency-key", "again")
    assert result.exit_code == 1
    assert "was already used for a different command (it appended nothing)" in result.stderr


def test_a_file_that_does_not_exist_is_refused(db_path, run_cli, raw_log, tmp_path):
    result = run_cli("import", str(tmp_path / "missing.csv"))
    assert result.exit_code == 1
    assert "no file at" in result.stderr
    assert raw_log.count() == 0


def test_the_documented_example_file_imports(db_path, run_cli, raw_log):
    example = Path(__file__).parent.parent / "docs" / "examples" / "people.csv"
    result = run_cli("import", str(example))
    assert result.exit_code == 0, result.output
    rows = sum(1 for _ in example.open(encoding="utf-8")) - 1
    assert raw_log.count() == rows
    assert f"{rows} joined" in result.stdout


def stderr_on_a_terminal(argv: list[str]) -> tuple[int, str, str]:
    """Run rmcore with stderr on a pseudo-terminal: (exit code, stdout, what the terminal got)."""
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    received: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            received.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "rmcore", *argv],
            stdout=subprocess.PIPE,
            stderr=slave,
            timeout=60,
        )
    finally:
        os.close(slave)
        reader.join(timeout=10)
        os.close(master)
    return done.returncode, done.stdout.decode(), b"".join(received).decode(errors="replace")


def test_a_terminal_shows_a_progress_bar_and_quiet_hides_it(db_path, raw_log, tmp_path):
    rows = [f"p{i},Person {i},p{i}@example.org,mentee,,,,,0" for i in range(2500)]
    path = write(tmp_path / "hr.csv", HEADER, *rows)
    code, out, terminal = stderr_on_a_terminal(["--db", str(db_path), "import", str(path)])
    assert code == 0
    assert "Importing" in terminal and "2000/" in terminal
    assert "2500 joined" in out
    other = write(tmp_path / "hr2.csv", HEADER, *(r.replace("p", "q", 1) for r in rows))
    code, out, terminal = stderr_on_a_terminal(
        ["--db", str(db_path), "import", str(other), "--quiet"]
    )
    assert (code, out) == (0, "")
    assert "Importing" not in terminal
    assert raw_log.count() == 5000


def test_the_progress_bar_counts_data_rows_and_ends_exactly_at_their_number(
    db_path, raw_log, tmp_path
):
    rows = [f"p{i},Person {i},p{i}@example.org,mentee,,,,,0" for i in range(2499)]
    rows.insert(1200, 'q1,"Quinn\nOkafor",q1@example.org,mentee,,,,,0')
    path = write(tmp_path / "hr.csv", HEADER, *rows[:700], "", *rows[700:], "")
    code, out, terminal = stderr_on_a_terminal(["--db", str(db_path), "import", str(path)])
    assert code == 1, out  # a name with a line break is refused, after every row was read
    assert "line 1203, column name: name contains line breaks" in terminal
    totals = set(re.findall(r"\b\d+/(\d+)\b", terminal))
    assert totals == {"2500"}, totals
    assert "2500/2500" in terminal
    path = write(tmp_path / "hr.jsonl", "", *(json.dumps({"person_id": f"j{i}", "name": "J",
        "email": f"j{i}@example.org", "role": "mentee"}) for i in range(1500)), "")  # fmt: skip
    code, out, terminal = stderr_on_a_terminal(["--db", str(db_path), "import", str(path)])
    assert code == 0, terminal
    assert set(re.findall(r"\b\d+/(\d+)\b", terminal)) == {"1500"}
    assert "1500/1500" in terminal
    assert raw_log.count() == 1500


# -- files larger than a chunk: the same outcome, all rows or none -----------------------------


def many(prefix: str, count: int, start: int = 0) -> list[str]:
    """``count`` valid rows for HEADER, ids ``prefix0``, ``prefix1``, ..."""
    return [
        f"{prefix}{i},Person {i},{prefix}{i}@example.org,{('mentor', 'mentee', 'both')[i % 3]},"
        f"Dept {i % 4},,Europe/Paris,skill {i % 5};skill {i % 7},{i % 3}"
        for i in range(start, start + count)
    ]


@pytest.fixture
def small_chunks(monkeypatch) -> int:
    """Rows are read and appended 7 at a time, so small files cross many chunks."""
    from rmcore import importer

    monkeypatch.setattr(importer, "CHUNK", 7)
    return 7


def test_a_file_of_many_chunks_joins_everyone_in_file_order(
    small_chunks, db_path, run_cli, raw_log, tmp_path
):
    rows = many("p", 40)
    result = run_cli("import", str(write(tmp_path / "hr.csv", HEADER, *rows)), "--at", "2026-01-05")
    assert result.exit_code == 0, result.output
    assert "Imported 40 rows: 40 joined, 0 updated, 0 unchanged, 0 left (40 events)" in (
        result.stdout
    )
    streams = [row[0] for row in raw_log.query("SELECT stream FROM events ORDER BY position")]
    assert streams == [f"person:p{i}" for i in range(40)]
    assert raw_log.query("SELECT DISTINCT version FROM events") == [(1,)]
    assert "Replay check passed: 40 events" in run_cli("replay", "--check").stdout
    assert "OK: 40 events" in run_cli("verify", "--deep").stdout


def test_a_bad_row_in_a_later_chunk_refuses_the_rows_of_earlier_chunks_too(
    small_chunks, populated_db, run_cli, raw_log, tmp_path
):
    before = raw_log.rows()
    keys_before = raw_log.query("SELECT program, subject FROM subject_keys ORDER BY 1, 2")
    rows = many("p", 30)
    rows[27] = rows[27].replace("@example.org", "-at-example.org")
    result = run_cli("import", str(write(tmp_path / "hr.csv", HEADER, *rows)), "--leave-missing")
    assert_refused(result, raw_log, before, "line 29, column email: ")
    assert len(refusal_lines(result.stderr)) == 1
    assert raw_log.query("SELECT program, subject FROM subject_keys ORDER BY 1, 2") == keys_before
    assert len(people_json(run_cli)) == 8


def test_new_changed_and_unchanged_rows_mixed_across_chunks_keep_the_file_order(
    small_chunks, db_path, run_cli, raw_log, tmp_path
):
    first = many("p", 20)
    assert run_cli("import", str(write(tmp_path / "hr.csv", HEADER, *first))).exit_code == 0
    head = raw_log.count()
    second = []
    for i, row in enumerate(first):
        if i % 4 == 1:
            row = row.replace(f"Dept {i % 4}", "Research")
        second.append(row)
        if i % 5 == 0:
            second.extend(many("q", 1, start=i))
    result = run_cli(
        "import", str(write(tmp_path / "hr2.csv", HEADER, *second)), "--at", "2026-02-01"
    )
    assert result.exit_code == 0, result.output
    assert "Imported 24 rows: 4 joined, 5 updated, 15 unchanged, 0 left (9 events)" in result.stdout
    expected = []
    for i in range(20):
        if i % 4 == 1:
            changes = {"department": "Research"}
            expected.append(
                (f"person:p{i}", "profile_updated", {"person_id": f"p{i}", "changes": changes})
            )
        if i % 5 == 0:
            expected.append((f"person:q{i}", "joined", None))
    new = [(stream, kind, data if kind != "joined" else None)
           for stream, kind, data in events_after(raw_log, head)]  # fmt: skip
    assert new == expected
    assert "Replay check passed" in run_cli("replay", "--check").stdout


def test_leave_missing_across_chunks_lets_only_the_absent_leave(
    small_chunks, db_path, run_cli, raw_log, tmp_path
):
    rows = many("p", 25)
    path = write(tmp_path / "hr.csv", HEADER, *rows)
    assert run_cli("import", str(path), "--at", "2026-01-05").exit_code == 0
    kept = [row for i, row in enumerate(rows) if i not in (3, 17, 24)]
    result = run_cli(
        "import", str(write(tmp_path / "hr2.csv", HEADER, *kept)), "--leave-missing",
        "--at", "2026-03-01",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "0 joined, 0 updated, 22 unchanged, 3 left (3 events)" in result.stdout
    status = {p: row["status"] for p, row in people_json(run_cli).items()}
    assert sorted(p for p, s in status.items() if s == "left") == ["p17", "p24", "p3"]


def test_imported_names_and_emails_are_sealed_and_can_be_forgotten(
    db_path, run_cli, raw_log, tmp_path
):
    path = write(tmp_path / "hr.csv", HEADER, *NEW_PEOPLE)
    assert run_cli("import", str(path), "--at", "2026-01-05").exit_code == 0
    data = "\n".join(row[0] for row in raw_log.query("SELECT data FROM events"))
    for text in ("Zoe Adeyemi", "zoe@example.org", "Yan Chen", "yan@example.org"):
        assert text not in data
    assert data.count("rmenc1:") == 4
    assert people_json(run_cli)["zoe"]["name"] == "Zoe Adeyemi"
    assert run_cli("forget", "zoe", "--at", "2026-01-06").exit_code == 0
    people = people_json(run_cli)
    assert (people["zoe"]["name"], people["yan"]["name"]) == ("[erased]", "Yan Chen")
    assert "Replay check passed" in run_cli("replay", "--check").stdout


def test_json_lines_of_text_import_as_the_same_csv_does(db_path, run_cli, tmp_path):
    rows = many("p", 12)
    columns = HEADER.split(",")
    lines = [json.dumps(dict(zip(columns, row.split(","))), ensure_ascii=False) for row in rows]
    result = run_cli("import", str(write(tmp_path / "hr.jsonl", *lines)), "--at", "2026-01-05")
    assert result.exit_code == 0, result.output
    from_json = people_json(run_cli)
    other = tmp_path / "other.db"
    assert run_cli("init", db=other).exit_code == 0
    csv_path = write(tmp_path / "hr.csv", HEADER, *rows)
    assert run_cli("import", str(csv_path), "--at", "2026-01-05", db=other).exit_code == 0
    result = run_cli("people", "--status", "all", "--format", "json", db=other)
    assert {row["person_id"]: row for row in json.loads(result.stdout)} == from_json


def test_one_engine_keeps_stream_versions_right_across_commands_and_imports(
    engine, raw_log, tmp_path
):
    from rmcore.commands import Join, Leave
    from rmcore.importer import import_people

    zoe = {"person_id": "zoe", "name": "Zoe Adeyemi", "email": "zoe@example.org"}
    engine.execute("default", Join(role="mentor", at="2026-01-05T00:00:00Z", **zoe), actor="a")
    path = write(tmp_path / "hr.csv", HEADER, NEW_PEOPLE[1], NEW_PEOPLE[0])
    result = import_people(engine, "default", path, actor="a", at="2026-01-06")
    assert (result.joined, result.updated) == (1, 1)
    engine.execute("default", Leave(person_id="yan", reason="moved", at="2026-01-07"), actor="a")
    engine.execute("default", Leave(person_id="zoe", reason="moved", at="2026-01-07"), actor="a")
    versions = raw_log.query("SELECT stream, type, version FROM events ORDER BY position")
    assert versions == [
        ("person:zoe", "joined", 1),
        ("person:yan", "joined", 1),
        ("person:zoe", "profile_updated", 2),
        ("person:yan", "left", 2),
        ("person:zoe", "left", 3),
    ]


def test_a_name_that_looks_sealed_is_sealed_like_any_other_and_reads_back(
    db_path, run_cli, raw_log, tmp_path
):
    path = write(tmp_path / "hr.csv", "person_id,name,email,role",
                 "zed,rmenc1:Zed,zed@example.org,mentee")  # fmt: skip
    assert run_cli("import", str(path)).exit_code == 0
    (data,) = raw_log.query("SELECT data FROM events WHERE type = 'joined'")[0]
    assert "rmenc1:Zed" not in data
    listed = run_cli("people", "--format", "json")
    assert json.loads(listed.stdout)[0]["name"] == "rmenc1:Zed"
    replay = run_cli("replay", "--check")
    assert replay.exit_code == 0, replay.output
    again = run_cli("import", str(path))
    assert "0 updated, 1 unchanged" in again.stdout


def test_a_header_without_rows_with_leave_missing_is_refused_and_nobody_leaves(
    populated_db, run_cli, raw_log, tmp_path
):
    path = write(tmp_path / "hr.csv", "person_id,name,email,role")
    before = raw_log.rows()
    result = run_cli("import", str(path), "--leave-missing")
    assert result.exit_code == 1
    assert "has no rows: with --leave-missing everyone would leave" in result.stderr
    assert raw_log.rows() == before
    assert run_cli("import", str(path)).exit_code == 0  # without the option: nothing to do
    assert raw_log.rows() == before


def test_the_import_reads_every_column_people_lists_and_nothing_else():
    from rmcore.importer import COLUMNS
    from rmcore.model import PERSON_COLUMNS

    assert sorted(COLUMNS) == sorted(PERSON_COLUMNS)
