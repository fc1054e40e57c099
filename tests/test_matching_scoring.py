"""matching_skills: skills, career stages, time zones, settings and a pair's score terms."""

from __future__ import annotations

import pytest
from rmcore_plugins.matching_skills.scoring import TERMS, eligible, explain, profile
from rmcore_plugins.matching_skills.settings import (
    SettingsError,
    load_settings,
    normalise,
    overlap,
    utc_offsets,
)

from rmcore.model import Person


def person(person_id: str, **fields) -> Person:
    """A participant with sensible defaults."""
    values = {"name": person_id.title(), "email": f"{person_id}@example.org", "role": "mentor"}
    return Person(person_id=person_id, **{**values, **fields})


@pytest.mark.parametrize(
    "spelling", ["AI tools", "ai-tools", "AI  Tools", " ai_TOOLS ", "Ai\u2013tools", "AI\ttools"]
)
def test_skill_spellings_that_differ_in_case_spaces_or_hyphens_are_one_skill(spelling):
    """Case, runs of spaces, hyphens, dashes and underscores do not make a different skill."""
    assert load_settings({}).skill(spelling) == "ai tools"


def test_skills_that_differ_in_letters_stay_different():
    """Normalising is not fuzzy matching."""
    settings = load_settings({})
    assert settings.skill("AI tool") != settings.skill("AI tools")


def test_configured_aliases_map_several_names_to_one_skill():
    """``matching_skills.skill_aliases`` folds synonyms, themselves normalised, into one."""
    settings = load_settings(
        {"matching_skills.skill_aliases": {"GenAI": "generative AI", "gen-ai": "Generative  AI"}}
    )
    assert settings.skills(["genai", "Gen AI", "generative-ai"]) == {"generative ai"}


def test_the_default_career_scale_and_generation_names_order_people():
    """early-career < mid-career < tenured; Gen Z < Millennial < Gen X < Baby Boomer."""
    settings = load_settings({})
    ranks = [settings.stage(g) for g in ("Early-Career", "mid career", "TENURED")]
    assert ranks == sorted(ranks) and len(set(ranks)) == 3
    generations = [settings.stage(g) for g in ("Gen Z", "millennials", "gen-x", "Baby Boomer")]
    assert generations == sorted(generations) and len(set(generations)) == 4
    assert settings.stage("Gen Z") == settings.stage("early-career")
    assert settings.stage("") is None
    assert settings.stage("wizard") is None


def test_a_configured_career_scale_with_synonyms_replaces_the_default():
    """Each entry is a stage name or a list of synonyms, earliest first."""
    settings = load_settings(
        {"matching_skills.career_stages": [["graduate", "junior"], "senior", ["principal"]]}
    )
    assert settings.stage("Junior") == settings.stage("graduate") < settings.stage("senior")
    assert settings.stage("senior") < settings.stage("principal")
    assert settings.stage("tenured") is None


def test_working_hours_overlap_follows_the_time_zones_through_the_year():
    """9-17 local: same zone 1, London and New York 3 of 8 hours, London and Tokyo none."""
    hours = (9.0, 17.0)
    london, new_york = utc_offsets("Europe/London"), utc_offsets("America/New_York")
    assert overlap(london, london, hours) == 1.0
    assert overlap(london, new_york, hours) == pytest.approx(3 / 8)
    assert overlap(london, utc_offsets("Asia/Tokyo"), hours) == 0.0
    # UTC+14 and UTC-11 are 25 hours apart: one hour apart on the clock, 7 shared hours.
    kiritimati, pago_pago = utc_offsets("Pacific/Kiritimati"), utc_offsets("Pacific/Pago_Pago")
    assert overlap(kiritimati, pago_pago, hours) == pytest.approx(7 / 8)
    assert utc_offsets("Mars/Olympus_Mons") is None
    assert overlap(None, london, hours) == 0.0


def test_explain_gives_every_term_and_the_terms_add_up_to_the_score():
    """Skills each way, a cross-department bonus, the reverse direction, the overlap."""
    settings = load_settings({})
    mentor = profile(
        person(
            "zoe",
            generation="Gen Z",
            department="Engineering",
            timezone="Europe/London",
            skills_offered=("AI tools", "prompt-engineering", "SQL"),
            skills_sought=("Public speaking", "negotiation"),
        ),
        settings,
    )
    mentee = profile(
        person(
            "harold",
            role="mentee",
            generation="Baby Boomer",
            department="Finance",
            timezone="America/New_York",
            skills_offered=("public  speaking", "budgeting"),
            skills_sought=("ai tools", "Prompt Engineering", "python"),
        ),
        settings,
    )
    explained = explain(mentor, mentee, settings)
    assert explained.mentor_to_mentee == ("ai tools", "prompt engineering")
    assert explained.mentee_to_mentor == ("public speaking",)
    assert explained.terms == {
        "mentor_skills": 2.0,
        "mentee_skills": 1.0,
        "cross_department": 0.5,
        "career_stage": 2.0,
        "timezone_overlap": pytest.approx(3 / 8),
    }
    assert tuple(explained.terms) == TERMS
    assert explained.score == pytest.approx(5.5 + 3 / 8)
    assert sum(explained.reasons()["terms"].values()) == explained.score
    assert eligible(explained, settings)


def test_the_conventional_direction_costs_what_the_reverse_one_earns():
    """A tenured mentor for an early-career mentee gets the career-stage weight taken off."""
    settings = load_settings({"matching_skills.career_stage": 1.5})
    senior = profile(person("s", generation="tenured", skills_offered=("leadership",)), settings)
    junior = profile(
        person("j", role="mentee", generation="early-career", skills_sought=("leadership",)),
        settings,
    )
    assert explain(senior, junior, settings).terms["career_stage"] == -1.5
    assert explain(junior, senior, settings).terms["career_stage"] == 1.5


def test_extra_terms_from_other_plugins_are_added_after_the_built_in_ones():
    """Other plugins' terms join the reasons and the score."""
    settings = load_settings({})
    a = profile(person("a", skills_offered=("sql",)), settings)
    b = profile(person("b", role="mentee", skills_sought=("SQL",)), settings)
    explained = explain(a, b, settings, {"same_site": 0.75, "alumni": -0.25})
    assert list(explained.terms)[-2:] == ["alumni", "same_site"]
    assert explained.score == pytest.approx(explain(a, b, settings).score + 0.5)


def test_a_pair_below_the_minimum_or_without_shared_skills_is_not_eligible():
    """min_score and min_shared_skills decide eligibility; reverse_only needs the direction."""
    strict = load_settings({"matching_skills.min_score": 10})
    a = profile(person("a", generation="Gen Z", skills_offered=("sql",)), strict)
    b = profile(person("b", role="mentee", generation="Gen X", skills_sought=("sql",)), strict)
    c = profile(person("c", role="mentee", generation="Gen X"), strict)
    assert not eligible(explain(a, b, strict), strict)
    lenient = load_settings({"matching_skills.min_score": 0.1})
    assert eligible(explain(a, b, lenient), lenient)
    assert not eligible(explain(a, c, lenient), lenient)  # scores 2.5, but no skill flows
    reverse = load_settings({"matching_skills.reverse_only": True})
    assert eligible(explain(a, b, reverse), reverse)
    assert not eligible(explain(b, a, reverse), reverse)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("matching_skills.min_scor", 1, "not a matching_skills setting"),
        ("matching_skills.min_score", "high", "must be a number"),
        ("matching_skills.cross_department", True, "must be a number"),
        ("matching_skills.reverse_only", "yes", "true or false"),
        ("matching_skills.working_hours", [17, 9], "[start, end]"),
        ("matching_skills.career_stages", ["only-one"], "at least two stages"),
        ("matching_skills.career_stages", ["a", ["b", "A"]], "appear once"),
        ("matching_skills.skill_aliases", ["genai"], "object of names"),
        ("matching_skills.candidates", 0, "at least 1"),
    ],
)
def test_a_bad_setting_is_refused_with_a_message_naming_it(key, value, message):
    """Typos and wrong types never pass silently."""
    with pytest.raises(SettingsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings({key: value})


def test_other_plugins_settings_are_ignored():
    """Only the matching_skills.* keys belong to this plugin."""
    assert load_settings({"notify_email.sender": "hr@example.org"}) == load_settings({})


def test_normalise_collapses_unicode_compatibility_forms():
    """Full-width letters and non-breaking spaces read like their plain forms."""
    assert normalise("ＡＩ\u00a0tools") == "ai tools"


@pytest.mark.parametrize(
    "config",
    [
        {},
        {
            "matching_skills.mentor_skills": 0.1,
            "matching_skills.mentee_skills": 0.7,
            "matching_skills.cross_department": 0.3,
            "matching_skills.career_stage": 1.1,
            "matching_skills.timezone_overlap": 0.37,
            "matching_skills.working_hours": [8.5, 17.25],
        },
    ],
)
def test_scoring_every_pair_at_once_gives_each_pair_exactly_its_explained_score(config):
    """The dense scorer adds the same terms in the same order as ``explain``: equal to the
    last bit, even with weights that binary fractions cannot hold."""
    import random

    import numpy as np
    from rmcore_plugins.matching_skills.problem import Problem

    rng = random.Random(7)
    skills = ["AI tools", "SQL", "negotiation", "coaching", "python", "budgeting"]
    people = [
        person(
            f"p{i:02d}",
            skills_offered=rng.sample(skills, 3),
            skills_sought=rng.sample(skills, 2),
            generation=rng.choice(["Gen Z", "Millennial", "Gen X", ""]),
            department=rng.choice(["Data", "Sales", ""]),
            timezone=rng.choice(["Europe/London", "Asia/Kolkata", "America/St_Johns"]),
        )
        for i in range(40)
    ]
    settings = load_settings(config)
    profiles = [profile(p, settings) for p in people]
    mentees, mentors = profiles[:20], profiles[20:]
    scores, shared, allowed = Problem(mentees, mentors, settings).every_pair()
    for i, mentee in enumerate(mentees):
        for j, mentor in enumerate(mentors):
            explained = explain(mentor, mentee, settings)
            assert scores[i, j] == explained.score
            assert shared[i, j] == explained.shared_skills
    assert allowed.all()
    assert np.unique(scores).size > 10
