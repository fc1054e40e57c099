"""collect_kpis: KPIs of every plugin merged, breakdowns suppressed by the core, failures named."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from plugin_site import install
from plugin_site import rmcore as run_with_plugins
from test_kpi_basic import PROGRAM, build, join, program_commands

from rmcore.commands import Leave, SetConfig
from rmcore.engine import Engine
from rmcore.hookspecs import hookimpl
from rmcore.kpis import Kpi, KpiError, collect_kpis
from rmcore.plugins import make_plugin_manager
from rmcore.when import end_of_day


class SessionLength:
    """A third-party KPI: the mean length of the sessions held by the date."""

    @hookimpl
    def rmcore_kpis(self, conn, program, as_of):
        row = conn.execute(
            "SELECT avg(minutes) FROM sessions WHERE program = ? AND held_at <= ?",
            (program, as_of),
        ).fetchone()
        return [Kpi(name="avg_session_minutes", value=row[0], unit="minutes", description="Mean")]


class Headcount:
    """A third-party KPI that breaks down by group (and leaves suppression to the core)."""

    @hookimpl
    def rmcore_kpis(self, conn, program, as_of, by):
        column = by or "''"
        rows = conn.execute(
            f"SELECT {column}, count(*) FROM people WHERE program = ? AND joined_at <= ?"
            f" GROUP BY {column}",
            (program, as_of),
        ).fetchall()
        return [
            {"name": "headcount", "value": n, "unit": "people", "group": g if by else None}
            for g, n in rows
        ]


class Broken:
    """A KPI plugin with a bug."""

    @hookimpl
    def rmcore_kpis(self, program):
        raise ZeroDivisionError("division by zero")


def engine_with(path: Path, **plugins) -> Engine:
    """An engine whose plugin manager has the installed plugins plus ``plugins`` by name."""
    pm = make_plugin_manager()
    for name, plugin in plugins.items():
        pm.register(plugin, name=name)
    return Engine.open(path, pm=pm)


@pytest.fixture(scope="module")
def pilot_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-built pilot program of test_kpi_basic."""
    return build(tmp_path_factory.mktemp("pilot") / "pilot.db", program_commands())


def test_kpis_of_a_third_party_plugin_appear_next_to_the_standard_ones(pilot_db):
    with engine_with(pilot_db, acme_sessions=SessionLength()) as engine:
        january = collect_kpis(engine, PROGRAM, end_of_day("2025-01-31"))
        march = collect_kpis(engine, PROGRAM, end_of_day("2025-03-31"))
    by_name = {k.name: k for k in january}
    assert by_name["avg_session_minutes"].value == (60 + 90 + 60) / 3
    assert by_name["avg_session_minutes"].plugin == "acme_sessions"
    assert by_name["sessions"].plugin == "kpi_basic"
    assert {k.name: k.value for k in march}["avg_session_minutes"] == 285 / 5
    # Plugins come in name order, each in its own order.
    assert [k.plugin for k in january] == ["acme_sessions"] + ["kpi_basic"] * 17


def test_a_failing_plugin_is_named_and_disabling_it_brings_the_others_back(pilot_db):
    failure = r"KPI plugin acme_broken failed: ZeroDivisionError"
    with (
        engine_with(pilot_db, acme_broken=Broken()) as engine,
        pytest.raises(KpiError, match=failure),
    ):
        collect_kpis(engine, PROGRAM, end_of_day("2025-01-31"))
    pm = make_plugin_manager(["acme_broken"])
    pm.register(Broken(), name="acme_broken")  # blocked: registering does nothing
    with Engine.open(pilot_db, pm=pm) as engine:
        assert len(collect_kpis(engine, PROGRAM, end_of_day("2025-01-31"))) == 17


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ("lots", "returned str, not a list of Kpi"),
        (Kpi(name="x", value=1), "returned Kpi, not a list of Kpi"),
        ([{"name": "x", "value": "high"}], "malformed KPI: a KPI value is a number or None"),
        ([{"name": "x", "value": float("nan")}], "malformed KPI: a KPI value must be finite"),
        ([{"name": "x", "value": True}], "malformed KPI"),
        ([{"value": 1}], "malformed KPI"),
        ([Kpi(name="x", value=1), Kpi(name="x", value=2)], "acme reported x twice"),
        ([Kpi(name="sessions", value=1)], "KPI sessions is reported by both acme and kpi_basic"),
        ([Kpi(name="x", value=1, group="g")], "though no breakdown was asked for"),
        ([Kpi(name=" ", value=1)], "returned a KPI without a name"),
    ],
)
def test_a_plugin_returning_something_malformed_is_refused_by_name(pilot_db, returned, message):
    class Malformed:
        @hookimpl
        def rmcore_kpis(self):
            return returned

    with engine_with(pilot_db, acme=Malformed()) as engine, pytest.raises(KpiError) as caught:
        collect_kpis(engine, PROGRAM, end_of_day("2025-01-31"))
    assert "KPI plugin acme" in str(caught.value) or "by both acme" in str(caught.value)
    assert message in str(caught.value)


def test_a_plugin_cannot_write_and_the_engine_can_still_write_afterwards(tmp_path):
    class Writer:
        @hookimpl
        def rmcore_kpis(self, conn, program):
            conn.execute("DELETE FROM people WHERE program = ?", (program,))
            return []

    path = build(tmp_path / "w.db", program_commands()[:2])
    with engine_with(path, acme_writer=Writer()) as engine:
        with pytest.raises(KpiError, match="KPI plugin acme_writer failed: OperationalError"):
            collect_kpis(engine, PROGRAM, end_of_day("2025-01-31"))
        assert engine.conn.execute("SELECT count(*) FROM people").fetchone()[0] == 2
        engine.execute(PROGRAM, Leave(person_id="ada", reason="x", at="2025-02-01T00:00:00Z"),
                       actor="t")  # fmt: skip
        assert (
            engine.conn.execute("SELECT count(*) FROM people WHERE status = 'left'").fetchone()[0]
            == 1
        )


def test_a_plugin_reads_its_settings_from_the_program_config(tmp_path):
    class Target:
        @hookimpl
        def rmcore_kpis(self, conn, program, as_of, config):
            (sessions,) = conn.execute(
                "SELECT count(*) FROM sessions WHERE program = ? AND held_at <= ?",
                (program, as_of),
            ).fetchone()
            target = config.get("acme.session_target")
            value = sessions / target if target else None
            return [Kpi(name="share_of_session_target", value=value, unit="fraction")]

    commands = [SetConfig(key="acme.session_target", value=10, at="2025-01-01T00:00:00Z")]
    path = build(tmp_path / "c.db", commands + program_commands())
    with engine_with(path, acme_target=Target()) as engine:
        records = collect_kpis(engine, PROGRAM, end_of_day("2025-03-31"))
    assert {k.name: k.value for k in records}["share_of_session_target"] == 5 / 10


def test_a_plugin_returning_nothing_contributes_nothing(pilot_db):
    class Silent:
        @hookimpl
        def rmcore_kpis(self):
            return None

    with engine_with(pilot_db, acme=Silent()) as engine:
        assert {k.plugin for k in collect_kpis(engine, PROGRAM, end_of_day("2025-01-31"))} == {
            "kpi_basic"
        }


def test_an_unknown_breakdown_is_refused(pilot_db):
    with Engine.open(pilot_db) as engine, pytest.raises(KpiError, match="generation or department"):
        collect_kpis(engine, PROGRAM, end_of_day("2025-01-31"), by="manager_id")


@pytest.fixture(scope="module")
def groups_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 early-career people, 5 tenured (one of whom left), 4 executives."""
    commands = [
        join(f"{prefix}{i}", "mentee", generation, "Ops", (), (), "2025-01-01")
        for prefix, generation, count in (("e", "early-career", 6), ("t", "tenured", 5),
                                          ("x", "executive", 4))
        for i in range(count)
    ]  # fmt: skip
    commands.append(Leave(person_id="t0", reason="retired", at="2025-01-05T00:00:00Z"))
    return build(tmp_path_factory.mktemp("groups") / "groups.db", commands)


def test_the_core_suppresses_small_groups_for_every_plugin(groups_db):
    with engine_with(groups_db, acme_headcount=Headcount()) as engine:
        records = collect_kpis(engine, PROGRAM, end_of_day("2025-02-01"), by="generation")
    headcount = {k.group: k for k in records if k.name == "headcount"}
    assert headcount["early-career"].value == 6 and not headcount["early-career"].suppressed
    # Five people joined the tenured group; one left, but the group is still five people.
    assert headcount["tenured"].value == 5 and not headcount["tenured"].suppressed
    assert headcount["executive"].value is None and headcount["executive"].suppressed
    participants = {k.group: k.value for k in records if k.name == "participants"}
    assert participants == {"early-career": 6, "executive": None, "tenured": 4}


def test_a_plugin_that_cannot_break_down_reports_program_wide_values(pilot_db):
    with engine_with(pilot_db, acme_sessions=SessionLength()) as engine:
        records = collect_kpis(engine, PROGRAM, end_of_day("2025-01-31"), by="department")
    mine = [k for k in records if k.plugin == "acme_sessions"]
    assert len(mine) == 1
    assert mine[0].group is None and not mine[0].suppressed and mine[0].value == 70


# ---------------------------------------------------------------- installed by entry point

GOOD_PLUGIN = '''
"""Mean session length, as a pip-installed plugin would add it."""
from rmcore.hookspecs import hookimpl
from rmcore.kpis import Kpi


@hookimpl
def rmcore_kpis(conn, program, as_of):
    (value,) = conn.execute(
        "SELECT avg(minutes) FROM sessions WHERE program = ? AND held_at <= ?", (program, as_of)
    ).fetchone()
    return [Kpi(name="avg_session_minutes", value=value, unit="minutes", description="Mean")]
'''

BROKEN_PLUGIN = """
from rmcore.hookspecs import hookimpl


@hookimpl
def rmcore_kpis(program):
    raise RuntimeError("the warehouse is unreachable")
"""


def test_plugins_installed_by_entry_point_show_in_rmcore_kpi(pilot_db, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install(site, "acme_sessions", GOOD_PLUGIN)
    install(site, "acme_broken", BROKEN_PLUGIN)

    def rmcore(*args: str) -> subprocess.CompletedProcess:
        return run_with_plugins(site, "--db", str(pilot_db), *args, RMCORE_PROGRAM=PROGRAM)

    failed = rmcore("kpi", "--as-of", "2025-01-31", "--format", "json")
    assert failed.returncode == 1
    assert "KPI plugin acme_broken failed: RuntimeError: the warehouse is unreachable" in (
        failed.stderr
    )
    assert "--disable-plugin acme_broken" in failed.stderr
    shown = rmcore(
        "--disable-plugin", "acme_broken", "kpi", "--as-of", "2025-01-31", "--format", "json"
    )
    assert shown.returncode == 0, shown.stderr
    rows = {row["name"]: row for row in json.loads(shown.stdout)}
    assert rows["avg_session_minutes"] == {
        "name": "avg_session_minutes",
        "value": 70.0,
        "unit": "minutes",
        "description": "Mean",
        "plugin": "acme_sessions",
    }
    assert rows["sessions"]["value"] == 3 and rows["sessions"]["plugin"] == "kpi_basic"
