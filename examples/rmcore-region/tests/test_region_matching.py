"""The ``region`` strategy through ``rmcore match``, on a real database."""

from __future__ import annotations

import json

from rmcore import hookimpl, matching
from rmcore.engine import Engine
from rmcore.plugins import make_plugin_manager


def proposals(result) -> dict:
    """``rmcore match --format json`` as {(mentor, mentee): row} and {person: unmatched row}."""
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    pairs = {(r["mentor_id"], r["mentee_id"]): r for r in rows if r["kind"] == "pair"}
    left = {r["person_id"]: r for r in rows if r["kind"] == "unmatched"}
    return {"pairs": pairs, "unmatched": left}


def test_until_a_program_enables_it_the_strategy_stays_silent(tutorial):
    default = tutorial("match", "--format", "json")
    assert "matching_skills" in default.stderr
    asked = tutorial("match", "--strategy", "region")
    assert asked.exit_code == 1
    assert "strategy region proposed nothing for program default" in asked.stderr


def test_enabled_it_pairs_people_only_within_their_region(tutorial):
    across = proposals(tutorial("match", "--strategy", "matching_skills", "--format", "json"))
    assert set(across["pairs"]) == {("ada", "grace"), ("ben", "hugo")}  # across the Atlantic
    assert tutorial("config", "set", "region.enabled", "true").exit_code == 0
    within = tutorial("match", "--strategy", "region", "--format", "json")
    found = proposals(within)
    assert set(found["pairs"]) == {("ada", "hugo"), ("ben", "grace")}
    assert found["unmatched"] == {}
    assert found["pairs"][("ben", "grace")]["mentor_to_mentee"] == ["ai tools"]
    assert "(region, best pairs first, within each region)" in within.stderr


def test_once_enabled_it_answers_before_matching_skills_without_being_named(tutorial):
    assert tutorial("config", "set", "region.enabled", "true").exit_code == 0
    found = proposals(tutorial("match", "--format", "json"))
    assert set(found["pairs"]) == {("ada", "hugo"), ("ben", "grace")}


def test_region_map_puts_several_areas_in_one_region(tutorial):
    tutorial("config", "set", "region.enabled", "true")
    tutorial("config", "set", "region.map", '{"Europe": "Atlantic", "America": "Atlantic"}')
    found = proposals(tutorial("match", "--format", "json"))
    # One region: ada and grace exchange three skills, the best pair, as matching_skills found.
    assert set(found["pairs"]) == {("ada", "grace"), ("ben", "hugo")}
    assert found["pairs"][("ada", "grace")]["score"] == 3.0


def test_a_time_zone_that_names_no_region_leaves_the_person_unmatched_saying_why(tutorial, join):
    join("ines", "mentee", "tenured", "UTC", "", "AI tools")
    join("kai", "mentee", "tenured", "Asia/Tokyo", "", "calligraphy")
    tutorial("config", "set", "region.enabled", "true")
    found = proposals(tutorial("match", "--format", "json"))
    assert found["unmatched"]["ines"]["reason"] == (
        "time zone UTC names no region; add it to region.map"
    )
    assert found["unmatched"]["kai"]["reason"] == (
        "nobody in Asia offers a skill they seek or seeks a skill they offer"
    )
    tutorial("config", "set", "region.map", '{"UTC": "Europe"}')
    found = proposals(tutorial("match", "--format", "json"))
    assert found["unmatched"]["ines"]["reason"] == (
        "their possible partners in Europe were paired with others"
    )


def test_applied_pairs_are_recorded_under_the_strategy_name_and_not_proposed_again(tutorial):
    tutorial("config", "set", "region.enabled", "true")
    applied = tutorial("match", "--apply", "--at", "2026-01-12", "--format", "json")
    assert applied.exit_code == 0, applied.output
    pairs = json.loads(tutorial("pairs", "--format", "json").stdout)
    assert {(p["mentor_id"], p["mentee_id"], p["strategy"]) for p in pairs} == {
        ("ada", "hugo", "region"),
        ("ben", "grace", "region"),
    }
    again = proposals(tutorial("match", "--format", "json"))
    assert again["pairs"] == {} and again["unmatched"] == {}


def test_the_hard_rules_hold_managers_earlier_pairs_and_capacity(rmcore, join):
    rmcore("config", "set", "region.enabled", "true")
    join("ada", "mentor", "early-career", "Europe/London", "AI tools", "", "--capacity", "2")
    join("boss", "mentee", "tenured", "Europe/Paris", "", "AI tools")
    join("cleo", "mentee", "tenured", "Europe/Paris", "", "AI tools", "--manager", "ada")
    join("dan", "mentee", "tenured", "Europe/Rome", "", "AI tools")
    join("eve", "mentee", "tenured", "Europe/Oslo", "", "AI tools")
    assert rmcore("pair", "ada", "boss", "--at", "2026-01-06").exit_code == 0
    assert rmcore("end-pair", "ada-boss", "--reason", "done", "--at", "2026-01-07").exit_code == 0
    found = proposals(rmcore("match", "--format", "json"))
    # boss was paired with ada before, cleo reports to ada: dan and eve share ada's two places.
    assert set(found["pairs"]) == {("ada", "dan"), ("ada", "eve")}
    assert set(found["unmatched"]) == {"boss", "cleo"}


def test_two_people_of_role_both_never_mentor_each_other_in_one_round(rmcore, join):
    rmcore("config", "set", "region.enabled", "true")
    join("mei", "both", "early-career", "Asia/Tokyo", "generative AI", "strategy")
    join("raj", "both", "tenured", "Asia/Kolkata", "strategy", "generative AI")
    found = proposals(rmcore("match", "--format", "json"))
    assert len(found["pairs"]) == 1
    assert set(found["unmatched"]) == set()  # each has a pair, on one side or the other


def test_a_setting_of_the_wrong_type_is_refused_by_name(tutorial):
    tutorial("config", "set", "region.enabled", "yes")
    refused = tutorial("match", "--strategy", "region")
    assert refused.exit_code == 1
    assert "region.enabled must be true or false, not 'yes'" in refused.stderr


class SameDepartment:
    """Another organisation's score term, added to every strategy's scores."""

    @hookimpl
    def rmcore_score_pair(self, mentor, mentee):
        return {"same_team": 5.0} if mentor.department == mentee.department else None


def test_other_plugins_score_terms_count_in_the_score(tutorial, db):
    tutorial("config", "set", "region.enabled", "true")
    tutorial("config", "set", "region.map", '{"Europe": "Atlantic", "America": "Atlantic"}')
    pm = make_plugin_manager()
    pm.register(SameDepartment(), name="same_team")
    with Engine.open(db, pm=pm) as engine:
        result = matching.propose(engine, "default", strategy="region")
    # Everyone's department is empty, so every pair gets the extra 5 points.
    scores = {(p.mentor_id, p.mentee_id): p.score for p in result.proposals}
    assert scores == {("ada", "grace"): 8.0, ("ben", "hugo"): 6.0}
    assert result.proposals[0].reasons["terms"]["same_team"] == 5.0


def test_rmcore_regions_counts_the_participants_of_each_region(tutorial, join):
    join("ines", "both", "tenured", "UTC", "leadership", "AI tools")
    rows = json.loads(tutorial("regions", "--format", "json").stdout)
    assert rows == [
        {"region": "(none)", "people": 1, "mentors": 1, "mentees": 1},
        {"region": "America", "people": 2, "mentors": 1, "mentees": 1},
        {"region": "Europe", "people": 2, "mentors": 1, "mentees": 1},
    ]
    tutorial("config", "set", "region.map", '{"America": "Americas", "UTC": "Europe"}')
    rows = json.loads(tutorial("regions", "--format", "json").stdout)
    assert [(r["region"], r["people"]) for r in rows] == [("Americas", 2), ("Europe", 3)]
