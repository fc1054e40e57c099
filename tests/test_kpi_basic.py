"""kpi_basic: every KPI of a hand-built program, worked out by hand at several dates."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from rmcore_plugins.kpi_basic.standard import skill_key

from rmcore.commands import EndPair, GiveFeedback, Join, Leave, MakePair, RecordSession
from rmcore.engine import Engine
from rmcore.kpis import Kpi, collect_kpis
from rmcore.when import end_of_day

PROGRAM = "pilot"
ACTOR = "hr-ops"
# An as-of date means the last second of that day, so a pair formed at midnight has
# been active for whole days plus this fraction by the as-of moment.
X = 86399 / 86400

PEOPLE = (
    # person, role, generation, department, offers, seeks, joined
    ("ada", "mentor", "early-career", "Eng", ("AI tools", "Prompt-Engineering"), ("leadership",),
     "2025-01-01"),
    ("ben", "mentor", "early-career", "Data", ("data analytics",),
     ("negotiation", "Public Speaking"), "2025-01-01"),
    ("cat", "mentee", "tenured", "Eng", ("leadership",), ("ai tools", "prompt  engineering"),
     "2025-01-01"),
    ("dan", "mentee", "tenured", "Sales", ("negotiation",), ("data-analytics",), "2025-01-01"),
    ("eve", "both", "Early-Career ", "Ops", ("public speaking",), ("AI Tools",), "2025-01-10"),
    ("fay", "mentee", "tenured", "HR", (), (), "2025-01-10"),
)  # fmt: skip


def at(day: str) -> str:
    """Midnight UTC of a day, as the engine stores it."""
    return f"{day}T00:00:00Z"


def join(person, role, generation, department, offers, seeks, joined, capacity=None) -> Join:
    """A Join command with a made-up name and email."""
    return Join(
        person_id=person,
        name=person.title(),
        email=f"{person}@example.org",
        role=role,
        generation=generation,
        department=department,
        skills_offered=offers,
        skills_sought=seeks,
        capacity=capacity,
        at=at(joined),
    )


def program_commands() -> list:
    """The pilot program.

    Pairs: P1 ada-cat (01-05, still active), P2 ben-dan (01-06, ends 02-20 when dan
    leaves), P3 ada-eve (01-15, ended by hand 03-01), P4 ben-fay (03-05, no sessions).
    """
    commands: list = [
        join(*person, capacity=2 if person[0] == "ada" else None) for person in PEOPLE
    ]
    commands += [
        MakePair(mentor_id="ada", mentee_id="cat", at=at("2025-01-05")),
        MakePair(mentor_id="ben", mentee_id="dan", at=at("2025-01-06")),
        MakePair(mentor_id="ada", mentee_id="eve", at=at("2025-01-15")),
        RecordSession(pair_id="ada-cat", minutes=60, at=at("2025-01-12")),
        RecordSession(pair_id="ben-dan", minutes=90, at=at("2025-01-20")),
        RecordSession(pair_id="ada-eve", minutes=60, at=at("2025-01-25")),
        GiveFeedback(pair_id="ben-dan", by="dan", rating=3, skills_gained=("data analytics",),
                     at=at("2025-01-25")),
        RecordSession(pair_id="ada-cat", minutes=45, at=at("2025-02-02")),
        GiveFeedback(pair_id="ada-cat", by="cat", rating=5, fresh_perspective=True,
                     skills_gained=("AI-Tools",), at=at("2025-02-05")),
        GiveFeedback(pair_id="ada-cat", by="ada", rating=4, skills_gained=("Leadership",),
                     at=at("2025-02-06")),
        GiveFeedback(pair_id="ada-eve", by="eve", rating=4, fresh_perspective=True,
                     at=at("2025-02-10")),
        Leave(person_id="dan", reason="moved abroad", at=at("2025-02-20")),
        EndPair(pair_id="ada-eve", reason="goals met", at=at("2025-03-01")),
        MakePair(mentor_id="ben", mentee_id="fay", at=at("2025-03-05")),
        RecordSession(pair_id="ada-cat", minutes=30, at=at("2025-03-10")),
        GiveFeedback(pair_id="ada-cat", by="cat", rating=4, skills_gained=("prompt engineering",),
                     at=at("2025-03-12")),
    ]  # fmt: skip
    return commands


def build(path: Path, commands: Sequence, program: str = PROGRAM) -> Path:
    """A database at ``path`` holding ``commands`` for ``program``."""
    with Engine.open(path, create=True) as engine:
        for command in commands:
            engine.execute(program, command, actor=ACTOR)
    return path


@pytest.fixture(scope="module")
def pilot_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database holding the pilot program (read-only in the tests)."""
    return build(tmp_path_factory.mktemp("pilot") / "pilot.db", program_commands())


def values(path: Path, day: str, program: str = PROGRAM) -> dict:
    """Program-wide KPI values by name as of the end of ``day``."""
    with Engine.open(path) as engine:
        return {k.name: k.value for k in collect_kpis(engine, program, end_of_day(day))}


def check(actual: dict, expected: dict) -> None:
    """Every expected KPI has exactly its value (floats to 1e-12); None stays None."""
    for name, value in expected.items():
        if value is None or isinstance(value, int):
            assert actual[name] == value and type(actual[name]) is type(value), name
        else:
            assert actual[name] == pytest.approx(value, rel=1e-12), name


EMPTY = {
    "participants": 0, "mentors": 0, "mentees": 0, "active_pairs": 0, "match_rate": None,
    "sessions": 0, "mentoring_hours": 0.0, "sessions_per_pair_month": None,
    "engaged_pairs_30d": None, "stalled_pairs": 0, "avg_rating": None,
    "fresh_perspective_rate": None, "two_way_rate": None, "skills_transfer_rate": None,
    "retention_rate": None, "cross_generation_rate": None, "cross_department_rate": None,
}  # fmt: skip


def test_kpi_basic_reports_every_kpi_of_the_contract_with_unit_and_description(pilot_db):
    with Engine.open(pilot_db) as engine:
        records = collect_kpis(engine, PROGRAM, end_of_day("2025-01-31"))
    assert [k.name for k in records] == list(EMPTY)
    assert all(isinstance(k, Kpi) and k.plugin == "kpi_basic" for k in records)
    assert all(k.unit and k.description and k.group is None for k in records)


def test_before_anyone_joined_counts_are_zero_and_rates_are_null(pilot_db):
    check(values(pilot_db, "2024-12-31"), EMPTY)


def test_a_few_days_in_people_have_joined_but_no_pair_exists(pilot_db):
    # ada, ben, cat and dan joined on 01-01; eve and fay only on 01-10.
    check(
        values(pilot_db, "2025-01-03"),
        {**EMPTY, "participants": 4, "mentors": 2, "mentees": 2, "match_rate": 0 / 4,
         "retention_rate": 4 / 4},
    )  # fmt: skip


def test_end_of_january_three_pairs_all_engaged(pilot_db):
    # Pairs P1 (01-05), P2 (01-06), P3 (01-15), all active. Sessions 01-12 (60 min),
    # 01-20 (90), 01-25 (60). Only dan's feedback (rating 3, no fresh perspective,
    # gained data analytics) so far. eve is "Early-Career " like ada: P3 is not
    # cross-generation; ada and cat are both in Eng: P1 is not cross-department.
    # Skills that can flow: P1 ai tools + prompt engineering to cat, leadership to ada
    # (3); P2 data analytics to dan, negotiation to ben (2); P3 ai tools to eve (1).
    check(
        values(pilot_db, "2025-01-31"),
        {
            "participants": 6,
            "mentors": 3,  # ada, ben, eve (both)
            "mentees": 4,  # cat, dan, eve (both), fay
            "active_pairs": 3,
            "match_rate": 5 / 6,  # all but fay
            "sessions": 3,
            "mentoring_hours": 210 / 60,
            # active days: P1 26 + X, P2 25 + X, P3 16 + X
            "sessions_per_pair_month": 3 / ((67 + 3 * X) / 30),
            "engaged_pairs_30d": 3 / 3,
            "stalled_pairs": 0,
            "avg_rating": 3 / 1,
            "fresh_perspective_rate": 0 / 1,
            "two_way_rate": 0 / 3,
            "skills_transfer_rate": 1 / 6,
            "retention_rate": 6 / 6,
            "cross_generation_rate": 2 / 3,
            "cross_department_rate": 2 / 3,
        },
    )


def test_end_of_february_the_leaver_ends_a_pair_and_one_pair_has_stalled(pilot_db):
    # dan left on 02-20, which ended P2; ben stays but is unmatched. The 30 days up to
    # 02-28 start on 01-30: P1 (session 02-02) is engaged, P3 (last session 01-25)
    # has stalled. Feedback: dan 3, cat 5 (fresh), ada 4, eve 4 (fresh, nothing gained).
    check(
        values(pilot_db, "2025-02-28"),
        {
            "participants": 5,
            "mentors": 3,
            "mentees": 3,  # cat, eve, fay
            "active_pairs": 2,
            "match_rate": 3 / 5,  # ada, cat, eve
            "sessions": 4,
            "mentoring_hours": 255 / 60,
            # P1 01-05 -> 02-28 end: 54 + X; P2 01-06 -> 02-20: 45; P3 01-15 -> 02-28 end: 44 + X
            "sessions_per_pair_month": 4 / ((143 + 2 * X) / 30),
            "engaged_pairs_30d": 1 / 2,
            "stalled_pairs": 1,
            "avg_rating": (3 + 5 + 4 + 4) / 4,
            "fresh_perspective_rate": 2 / 3,  # mentees dan, cat, eve; cat and eve say yes
            "two_way_rate": 1 / 3,  # only P1: cat and ada both gained something
            "skills_transfer_rate": 3 / 6,  # ai tools to cat, leadership to ada, data to dan
            "retention_rate": 5 / 6,
            "cross_generation_rate": 2 / 3,
            "cross_department_rate": 2 / 3,
        },
    )


def test_end_of_march_an_ended_pair_and_a_new_pair_without_sessions(pilot_db):
    # P3 ended on 03-01; P4 ben-fay formed 03-05 has no session: neither engaged nor
    # stalled yet. cat's second feedback (rating 4) adds prompt engineering.
    check(
        values(pilot_db, "2025-03-31"),
        {
            "participants": 5,
            "mentors": 3,
            "mentees": 3,
            "active_pairs": 2,
            "match_rate": 4 / 5,  # ada, cat, ben, fay
            "sessions": 5,
            "mentoring_hours": 285 / 60,
            # P1 85 + X, P2 45, P3 45 (01-15 -> 03-01), P4 26 + X
            "sessions_per_pair_month": 5 / ((201 + 2 * X) / 30),
            "engaged_pairs_30d": 1 / 2,
            "stalled_pairs": 0,
            "avg_rating": 20 / 5,
            "fresh_perspective_rate": 2 / 4,
            "two_way_rate": 1 / 4,
            "skills_transfer_rate": 4 / 6,  # P4: nothing can flow between ben and fay
            "retention_rate": 5 / 6,
            "cross_generation_rate": 3 / 4,
            "cross_department_rate": 3 / 4,
        },
    )


@pytest.mark.parametrize(
    ("day", "engaged", "stalled"),
    [
        # P1's last session is on 03-10; the 30 days up to 04-08 are 03-10..04-08.
        # P4 (paired 03-05, never met) has stalled by then.
        ("2025-04-08", 1, 1),
        # The 30 days up to 04-09 start on 03-11: P1 is no longer engaged and, its last
        # session being more than 30 days before the end of 04-09, has stalled too.
        ("2025-04-09", 0, 2),
    ],
)
def test_the_30_day_window_of_engaged_pairs_includes_its_first_day(pilot_db, day, engaged, stalled):
    result = values(pilot_db, day)
    assert result["active_pairs"] == 2
    assert result["engaged_pairs_30d"] == engaged / 2
    assert result["stalled_pairs"] == stalled


@pytest.mark.parametrize(
    ("day", "stalled"),
    [
        # P4 was formed at midnight on 03-05 and never met: the end of 04-03 is less
        # than 30 days later (and P1 met on 03-10), so nothing has stalled yet.
        ("2025-04-03", 0),
        # The end of 04-04 is more than 30 days after 03-05 00:00: P4 has stalled.
        ("2025-04-04", 1),
    ],
)
def test_a_pair_that_never_met_stalls_30_days_after_pairing(pilot_db, day, stalled):
    result = values(pilot_db, day)
    assert result["engaged_pairs_30d"] == 1 / 2  # P1, P4 never met
    assert result["stalled_pairs"] == stalled


# ---------------------------------------------------------------- edge cases


def test_an_empty_program_has_zero_counts_and_null_rates(tmp_path):
    path = tmp_path / "empty.db"
    Engine.open(path, create=True).close()
    check(values(path, "2025-06-30"), EMPTY)


def test_a_program_nobody_joined_is_empty_even_when_another_program_is_busy(pilot_db):
    check(values(pilot_db, "2025-03-31", program="other"), EMPTY)


def test_a_mentee_only_program_has_nothing_to_match_and_no_pair_rates(tmp_path):
    path = build(
        tmp_path / "mentees.db",
        [join(f"m{i}", "mentee", "tenured", "Ops", ("leadership",), ("AI tools",), "2025-01-01")
         for i in range(3)],
    )  # fmt: skip
    check(
        values(path, "2025-02-01"),
        {**EMPTY, "participants": 3, "mentees": 3, "match_rate": 0 / 3, "retention_rate": 1.0},
    )


def test_without_feedback_ratings_are_null_but_skill_rates_are_measured(tmp_path):
    path = build(
        tmp_path / "quiet.db",
        [
            join("ada", "mentor", "early-career", "Eng", ("AI tools",), ("leadership",),
                 "2025-01-01"),
            join("cat", "mentee", "tenured", "Ops", ("leadership",), ("AI tools",),
                 "2025-01-01"),
            MakePair(mentor_id="ada", mentee_id="cat", at=at("2025-01-02")),
            RecordSession(pair_id="ada-cat", minutes=30, at=at("2025-01-10")),
        ],
    )  # fmt: skip
    result = values(path, "2025-01-20")
    check(
        result,
        {
            "sessions": 1,
            "mentoring_hours": 0.5,
            "sessions_per_pair_month": 1 / ((18 + X) / 30),
            "avg_rating": None,
            "fresh_perspective_rate": None,
            "two_way_rate": 0 / 1,
            "skills_transfer_rate": 0 / 2,  # AI tools to cat, leadership to ada: neither reported
        },
    )


def test_a_pair_whose_mentor_left_is_no_longer_active_and_its_mentee_is_unmatched(tmp_path):
    path = build(
        tmp_path / "left.db",
        [
            join("ada", "mentor", "early-career", "Eng", (), (), "2025-01-01"),
            join("cat", "mentee", "tenured", "Ops", (), (), "2025-01-01"),
            MakePair(mentor_id="ada", mentee_id="cat", at=at("2025-01-02")),
            RecordSession(pair_id="ada-cat", minutes=60, at=at("2025-01-05")),
            Leave(person_id="ada", reason="retired", at=at("2025-01-12")),
        ],
    )
    before, after = values(path, "2025-01-11"), values(path, "2025-01-12")
    check(
        before, {"participants": 2, "active_pairs": 1, "match_rate": 1.0, "engaged_pairs_30d": 1.0}
    )
    check(
        after,
        {
            "participants": 1,
            "mentors": 0,
            "mentees": 1,
            "active_pairs": 0,
            "match_rate": 0 / 1,
            "engaged_pairs_30d": None,  # no active pair to measure
            "stalled_pairs": 0,
            "sessions": 1,  # sessions held stay held
            "sessions_per_pair_month": 1 / (10 / 30),  # active 01-02 -> 01-12
            "retention_rate": 1 / 2,
        },
    )


# ---------------------------------------------------------------- breakdowns


def team(prefix: str, count: int, role: str, generation: str, department: str) -> list[Join]:
    """``count`` people joining on 2025-01-01."""
    return [
        join(f"{prefix}{i}", role, generation, department, (), (), "2025-01-01")
        for i in range(1, count + 1)
    ]


@pytest.fixture(scope="module")
def cohort_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 early-career mentors (Eng), 5 tenured mentees (Ops), 2 executives (no department).

    Pairs e1-t1, e2-t2 and e3-x1; sessions e1-t1 (30 min) and e3-x1 (60 min); feedback
    t1 5 (fresh perspective), e1 3, x1 1.
    """
    commands: list = [
        *team("e", 5, "mentor", "early-career", "Eng"),
        *team("t", 5, "mentee", "tenured", "Ops"),
        *team("x", 2, "mentee", "executive", ""),
        MakePair(mentor_id="e1", mentee_id="t1", at=at("2025-01-02")),
        MakePair(mentor_id="e2", mentee_id="t2", at=at("2025-01-02")),
        MakePair(mentor_id="e3", mentee_id="x1", at=at("2025-01-02")),
        RecordSession(pair_id="e1-t1", minutes=30, at=at("2025-01-05")),
        RecordSession(pair_id="e3-x1", minutes=60, at=at("2025-01-06")),
        GiveFeedback(pair_id="e1-t1", by="t1", rating=5, fresh_perspective=True,
                     at=at("2025-01-07")),
        GiveFeedback(pair_id="e1-t1", by="e1", rating=3, at=at("2025-01-07")),
        GiveFeedback(pair_id="e3-x1", by="x1", rating=1, at=at("2025-01-07")),
    ]  # fmt: skip
    return build(tmp_path_factory.mktemp("cohort") / "cohort.db", commands)


def grouped(path: Path, day: str, by: str) -> dict[str, dict[str, Kpi]]:
    """``{group: {name: Kpi}}`` for a breakdown."""
    result: dict[str, dict[str, Kpi]] = {}
    with Engine.open(path) as engine:
        for kpi in collect_kpis(engine, PROGRAM, end_of_day(day), by=by):
            result.setdefault(kpi.group, {})[kpi.name] = kpi
    return result


def test_by_generation_counts_a_pair_in_each_members_group_and_feedback_in_the_givers(cohort_db):
    groups = grouped(cohort_db, "2025-01-10", "generation")
    assert set(groups) == {"early-career", "tenured", "executive"}
    early = {name: k.value for name, k in groups["early-career"].items()}
    tenured = {name: k.value for name, k in groups["tenured"].items()}
    check(
        early,
        {"participants": 5, "mentors": 5, "mentees": 0, "active_pairs": 3, "match_rate": 3 / 5,
         "sessions": 2, "mentoring_hours": 1.5, "avg_rating": 3 / 1,
         "fresh_perspective_rate": None, "cross_generation_rate": 3 / 3},
    )  # fmt: skip
    check(
        tenured,
        {"participants": 5, "mentors": 0, "mentees": 5, "active_pairs": 2, "match_rate": 2 / 5,
         "sessions": 1, "mentoring_hours": 0.5, "avg_rating": 5 / 1,
         "fresh_perspective_rate": 1 / 1, "retention_rate": 1.0},
    )  # fmt: skip
    assert not any(k.suppressed for g in ("early-career", "tenured") for k in groups[g].values())


def test_a_group_of_fewer_than_five_people_is_suppressed_not_shown(cohort_db):
    groups = grouped(cohort_db, "2025-01-10", "generation")
    executives = groups["executive"].values()
    assert len(executives) == len(EMPTY)
    # x1's rating of 1 would otherwise be the executives' average for all to see.
    assert all(k.suppressed and k.value is None for k in executives)


def test_by_department_groups_people_without_one_under_the_empty_name(cohort_db):
    groups = grouped(cohort_db, "2025-01-10", "department")
    assert set(groups) == {"Eng", "Ops", ""}
    assert groups[""]["participants"].suppressed
    assert groups["Ops"]["participants"].value == 5
    assert groups["Eng"]["cross_department_rate"].value == 3 / 3


def test_a_group_counts_people_who_had_joined_by_the_date(cohort_db):
    groups = grouped(cohort_db, "2024-12-31", "generation")
    assert groups == {}


@pytest.mark.parametrize(
    "spelling",
    ["AI tools", "ai-tools", "AI_Tools", "  ai   TOOLS ", "AI\u2013tools", "\uff21\uff29 tools"],
)
def test_skills_match_whatever_their_case_spacing_hyphens_or_width(spelling):
    assert skill_key(spelling) == "ai tools"


def test_different_skills_stay_different():
    assert skill_key("AI tools") != skill_key("AI tool")
    assert skill_key("---") == ""
