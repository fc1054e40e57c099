"""``rmcore report``: a self-contained, well-formed HTML file whose charts match ``kpi --as-of``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_kpi_basic import PROGRAM, at, build, join, program_commands

from rmcore.cli import cli
from rmcore.commands import GiveFeedback, MakePair
from rmcore.engine import Engine
from rmcore.hookspecs import hookimpl
from rmcore.kpis import Kpi
from rmcore.plugins import make_plugin_manager
from rmcore.report import TRENDS, build_report

SVG = "{http://www.w3.org/2000/svg}"
MONTH_ENDS = {
    "2024-12": "2024-12-31",
    "2025-01": "2025-01-31",
    "2025-02": "2025-02-28",
    "2025-03": "2025-03-31",
    "2025-04": "2025-04-30",
}
VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "source", "wbr"}


@pytest.fixture(scope="module")
def pilot_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-built pilot program of test_kpi_basic."""
    return build(tmp_path_factory.mktemp("pilot") / "pilot.db", program_commands())


def rmcore(db: Path, *args: str, program: str = PROGRAM) -> Result:
    """Run the CLI in-process on ``db``."""
    return CliRunner().invoke(cli, ["--db", str(db), "--program", program, *args])


def kpi_as_of(db: Path, day: str) -> dict:
    """What ``rmcore kpi --as-of DAY --format json`` shows, by name."""
    result = rmcore(db, "kpi", "--as-of", day, "--format", "json")
    assert result.exit_code == 0, result.output
    return {row["name"]: row["value"] for row in json.loads(result.output)}


def write_report(db: Path, out: Path, *args: str, program: str = PROGRAM) -> str:
    """Run ``rmcore report --out OUT ARGS`` and return the file's text."""
    result = rmcore(db, "report", "--out", str(out), *args, program=program)
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    return out.read_text(encoding="utf-8")


def chart_points(html: str) -> dict[str, dict[str, float]]:
    """``{kpi: {month: value}}`` from the data attributes of the charts' marks."""
    root = ET.fromstring(html)
    points: dict[str, dict[str, float]] = {}
    for element in root.iter():
        if element.get("class") == "point":
            assert element.tag in (f"{SVG}circle", f"{SVG}rect")
            points.setdefault(element.get("data-kpi"), {})[element.get("data-month")] = float(
                element.get("data-value")
            )
    return points


@pytest.fixture(scope="module")
def pilot_report(pilot_db, tmp_path_factory) -> str:
    """The report for January to April 2025."""
    out = tmp_path_factory.mktemp("report") / "pilot.html"
    return write_report(pilot_db, out, "--from", "2025-01-01", "--to", "2025-04-30")


def test_each_months_point_equals_kpi_as_of_that_months_last_day(pilot_db, pilot_report):
    points = chart_points(pilot_report)
    assert set(points) == {t.key for t in TRENDS}
    for month in ("2025-01", "2025-02", "2025-03", "2025-04"):
        expected = kpi_as_of(pilot_db, MONTH_ENDS[month])
        for name in ("active_pairs", "match_rate", "avg_rating", "engaged_pairs_30d"):
            assert points[name][month] == expected[name], (month, name)
    assert points["active_pairs"] == {"2025-01": 3, "2025-02": 2, "2025-03": 2, "2025-04": 2}
    assert points["engaged_pairs_30d"]["2025-04"] == 0.0  # P1 last met 03-10


def test_sessions_per_month_are_the_change_in_sessions_between_month_ends(pilot_db, pilot_report):
    points = chart_points(pilot_report)["sessions_per_month"]
    months = list(MONTH_ENDS)
    for previous, month in zip(months, months[1:]):
        held = kpi_as_of(pilot_db, MONTH_ENDS[month])["sessions"]
        before = kpi_as_of(pilot_db, MONTH_ENDS[previous])["sessions"]
        assert points[month] == held - before
    assert points == {"2025-01": 3, "2025-02": 1, "2025-03": 1, "2025-04": 0}


def test_a_month_without_a_value_has_no_point_but_keeps_its_row(tmp_path):
    # Nobody gave feedback until March: no average rating for January and February.
    db = build(
        tmp_path / "late.db",
        [
            join("ada", "mentor", "early-career", "Eng", (), (), "2025-01-01"),
            join("cat", "mentee", "tenured", "Ops", (), (), "2025-01-01"),
            MakePair(mentor_id="ada", mentee_id="cat", at=at("2025-01-02")),
            GiveFeedback(pair_id="ada-cat", by="cat", rating=4, at=at("2025-03-03")),
        ],
    )
    html = write_report(db, tmp_path / "late.html", "--from", "2025-01-01", "--to", "2025-03-31")
    assert chart_points(html)["avg_rating"] == {"2025-03": 4.0}
    rows = [e for e in ET.fromstring(html).iter("tr") if e.get("data-month")]
    assert [row.get("data-month") for row in rows] == ["2025-01", "2025-02", "2025-03"]


def test_the_kpi_table_shows_kpi_as_of_the_to_date(pilot_db, pilot_report):
    cells = {
        cell.get("data-kpi"): cell.get("data-value")
        for cell in ET.fromstring(pilot_report).iter("td")
        if cell.get("data-kpi")
    }
    expected = kpi_as_of(pilot_db, "2025-04-30")
    assert set(cells) == set(expected)
    for name, value in expected.items():
        assert cells[name] == ("" if value is None else repr(value)), name


def test_a_month_cut_short_by_to_is_taken_as_of_to(pilot_db, tmp_path):
    html = write_report(
        pilot_db, tmp_path / "mid.html", "--from", "2025-02-01", "--to", "2025-03-08"
    )
    points = chart_points(html)
    expected = kpi_as_of(pilot_db, "2025-03-08")
    assert points["active_pairs"]["2025-03"] == expected["active_pairs"]
    assert points["match_rate"]["2025-03"] == expected["match_rate"]
    assert set(points["active_pairs"]) == {"2025-02", "2025-03"}
    assert "as of 2025-03-08T23:59:59Z" in html


class _TagBalance(HTMLParser):
    """Checks that every element an HTML parser sees is closed, in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass  # <meta ... />, <circle ... />: opened and closed at once

    def handle_endtag(self, tag):
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
        else:
            self.open.pop()


def test_the_report_is_well_formed_html_and_xml(pilot_report):
    assert pilot_report.startswith('<!DOCTYPE html>\n<html lang="en">')
    root = ET.fromstring(pilot_report)  # raises on any unclosed or misnested tag
    assert root.tag == "html"
    assert root.find("head/meta").get("charset") == "utf-8"
    assert root.find("head/title").text.startswith("pilot: mentoring program report")
    assert len(list(root.iter(f"{SVG}svg"))) == len(TRENDS)
    checker = _TagBalance()
    checker.feed(pilot_report)
    checker.close()
    assert checker.problems == [] and checker.open == []


def test_the_report_is_self_contained(pilot_report):
    lowered = pilot_report.lower()
    for fetches in ("<script", "<link", "<img", "<iframe", "src=", "href=", "url(", "@import"):
        assert fetches not in lowered
    assert lowered.count("http") == lowered.count('xmlns="http://www.w3.org/2000/svg"')
    assert "@media print" in pilot_report


def test_the_skills_flowing_most_are_shown_for_each_direction(pilot_report):
    root = ET.fromstring(pilot_report)
    tables = {}
    for block in root.iter("div"):
        heading = block.find("h3")
        if heading is not None and heading.text.startswith("From "):
            rows = block.findall("table/tbody/tr")
            tables[heading.text] = [(row[0].text, int(row[1].text)) for row in rows]
    assert tables["From mentors to mentees"] == [
        ("AI-Tools", 1),
        ("data analytics", 1),
        ("prompt engineering", 1),
    ]
    assert tables["From mentees to mentors"] == [("Leadership", 1)]


def test_text_from_the_log_is_escaped(tmp_path):
    db = build(
        tmp_path / "odd.db",
        [
            join("ada", "mentor", "early-career", "Eng", (), (), "2025-01-01"),
            join("cat", "mentee", "tenured", "Ops", (), (), "2025-01-01"),
            MakePair(mentor_id="ada", mentee_id="cat", at=at("2025-01-02")),
            GiveFeedback(pair_id="ada-cat", by="cat", rating=4, at=at("2025-01-03"),
                         skills_gained=("<b>AI</b> & \"friends\"",)),
        ],
    )  # fmt: skip
    html = write_report(db, tmp_path / "odd.html", "--from", "2025-01-01", "--to", "2025-01-31")
    ET.fromstring(html)
    assert "<b>AI</b>" not in html
    assert "&lt;b&gt;AI&lt;/b&gt; &amp; &quot;friends&quot;" in html


def test_an_empty_program_gives_a_report_with_nothing_to_chart(tmp_path):
    db = tmp_path / "empty.db"
    Engine.open(db, create=True).close()
    html = write_report(db, tmp_path / "empty.html", "--to", "2025-01-31", program="new")
    root = ET.fromstring(html)
    # Counts are zero; rates have nothing to measure and are not drawn.
    assert chart_points(html) == {
        "active_pairs": {"2025-01": 0},
        "sessions_per_month": {"2025-01": 0},
    }
    assert html.count("Nothing to show for this period.") == 3
    assert [e.get("data-month") for e in root.iter("tr") if e.get("data-month")] == ["2025-01"]


def test_a_period_that_ends_before_it_starts_is_refused(pilot_db, tmp_path):
    result = rmcore(pilot_db, "report", "--out", str(tmp_path / "r.html"), "--from", "2025-03-01",
                    "--to", "2025-02-01")  # fmt: skip
    assert result.exit_code == 1
    assert "is after --to" in result.output
    assert not (tmp_path / "r.html").exists()


def test_the_report_replaces_the_file_and_leaves_nothing_else_behind(pilot_db, tmp_path):
    out = tmp_path / "r.html"
    out.write_text("old")
    write_report(pilot_db, out, "--from", "2025-03-01", "--to", "2025-03-31")
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_kpis_of_other_plugins_are_in_the_report(pilot_db):
    class Goals:
        @hookimpl
        def rmcore_kpis(self):
            return [Kpi(name="acme_goals_met", value=0.25, unit="fraction", description="Goals")]

    pm = make_plugin_manager()
    pm.register(Goals(), name="acme_goals")
    with Engine.open(pilot_db, pm=pm) as engine:
        html = build_report(engine, PROGRAM, start="2025-03-01", end="2025-03-31")
    cell = next(e for e in ET.fromstring(html).iter("td") if e.get("data-kpi") == "acme_goals_met")
    assert cell.text == "25.0%"


def test_a_report_over_something_that_is_not_a_regular_file_is_refused(pilot_db, tmp_path):
    """A pipe (or a device such as /dev/full) at --out is left as it is, exit 1."""
    import os
    import stat

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    result = rmcore(pilot_db, "report", "--out", str(pipe))
    assert result.exit_code == 1
    assert f"cannot write {pipe}: it is not a regular file" in result.output
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]


def test_a_report_with_an_empty_out_is_a_usage_error(pilot_db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = rmcore(pilot_db, "report", "--out", "")
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "--out" in result.output and "empty" in result.output
    assert list(tmp_path.iterdir()) == []
