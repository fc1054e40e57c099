"""The ``region_kpis`` plugin through ``rmcore kpi``, on a real database."""

from __future__ import annotations

import json

import pytest

NAMES = {"within_region_pair_rate", "participants_without_region"}


def region_kpis(rmcore, *args: str) -> dict:
    """The plugin's rows of ``rmcore kpi --format json``, by (name, group)."""
    result = rmcore("kpi", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = [row for row in json.loads(result.stdout) if row["plugin"] == "region_kpis"]
    return {(row["name"], row.get("group")): row for row in rows}


@pytest.fixture
def paired(tutorial, join):
    """The tutorial's people plus ines (UTC, no region); one pair within a region, one not."""
    join("ines", "mentee", "tenured", "UTC", "", "AI tools")
    for mentor, mentee, day in (("ada", "hugo", "2026-01-08"), ("ben", "ines", "2026-01-09")):
        assert tutorial("pair", mentor, mentee, "--at", day).exit_code == 0
    return tutorial


def test_until_a_program_enables_them_the_kpis_are_not_reported(paired):
    assert region_kpis(paired) == {}
    basic = json.loads(paired("kpi", "--format", "json").stdout)
    assert {row["plugin"] for row in basic} == {"kpi_basic"}


def test_the_kpis_count_what_had_happened_by_the_date(paired):
    paired("config", "set", "region.enabled", "true")
    values = {
        day: {name: row["value"] for (name, _), row in region_kpis(paired, "--as-of", day).items()}
        for day in ("2026-01-07", "2026-01-08", "2026-01-09")
    }
    assert values["2026-01-07"] == {
        "within_region_pair_rate": None,  # no pair yet: nothing to measure
        "participants_without_region": 1,
    }
    assert values["2026-01-08"]["within_region_pair_rate"] == 1.0
    assert values["2026-01-09"]["within_region_pair_rate"] == 0.5
    paired("leave", "ines", "--reason", "moved on", "--at", "2026-01-10")
    later = region_kpis(paired, "--as-of", "2026-01-10")
    assert later[("participants_without_region", None)]["value"] == 0
    assert later[("within_region_pair_rate", None)]["value"] == 0.5  # ended pairs still count


def test_region_map_changes_who_has_a_region(paired):
    paired("config", "set", "region.enabled", "true")
    paired("config", "set", "region.map", '{"UTC": "America"}')
    kpis = region_kpis(paired, "--as-of", "2026-01-09")
    assert kpis[("participants_without_region", None)]["value"] == 0
    assert kpis[("within_region_pair_rate", None)]["value"] == 1.0


def test_by_generation_each_group_is_measured_and_small_groups_are_suppressed(paired, join):
    paired("config", "set", "region.enabled", "true")
    for person, generation in (("cleo", "early-career"), ("eli", "early-career"),
                               ("fay", "early-career"), ("gus", "tenured"), ("hal", "tenured"),
                               ("vera", "executive")):  # fmt: skip
        role = "mentor" if person == "cleo" else "mentee"
        join(person, role, generation, "Europe/Paris", "AI tools", "AI tools")
    assert paired("pair", "cleo", "eli", "--at", "2026-01-09").exit_code == 0
    kpis = region_kpis(paired, "--as-of", "2026-01-09", "--by", "generation")
    rate = {group: row["value"] for (name, group), row in kpis.items() if "rate" in name}
    # early-career: ada-hugo and cleo-eli within, ben-ines not; tenured: ada-hugo, ben-ines.
    assert rate == {"early-career": 2 / 3, "tenured": 0.5, "executive": None}
    assert kpis[("within_region_pair_rate", "executive")]["suppressed"] is True
    without = {g: row["value"] for (name, g), row in kpis.items() if name.startswith("part")}
    assert without == {"early-career": 0, "tenured": 1, "executive": None}


def test_the_names_do_not_collide_with_the_standard_kpis(paired):
    paired("config", "set", "region.enabled", "true")
    rows = json.loads(paired("kpi", "--format", "json").stdout)
    mine = {row["name"] for row in rows if row["plugin"] == "region_kpis"}
    assert mine == NAMES
    assert not mine & {row["name"] for row in rows if row["plugin"] == "kpi_basic"}
