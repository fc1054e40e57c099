"""A realistic 200-person program: the proposal reads as sensible two-way pairs.

Ninety-four early-career mentors and ninety-four tenured mentees are drawn at random
(digital skills on one side, leadership and communication on the other), and twelve
people are written by hand so that a few pairs can be checked by eye:

- zara (Gen Z, marketing) is the only one offering "TikTok strategy", which harold
  (Baby Boomer, finance) seeks; harold alone offers "executive presence", which zara
  seeks. They should be paired, with skills flowing both ways.
- kai (Gen Z, data) offers Python and seeks negotiation; his manager margaret (strategy)
  offers negotiation and seeks Python, and would score more than oscar (data, the same
  skills) for the cross-department bonus. They must not be paired: oscar gets kai.
- leo (Tokyo) and mina (London) offer the same rare skill ("spreadsheet automation")
  and seek the same one ("board reporting"), which beatrice (London) offers while
  seeking theirs. Working hours decide: beatrice gets mina.
- ivy (Gen X) and jon (Gen Z) both offer "process mining", which nora (Gen X) seeks;
  neither seeks what nora offers. The reverse direction decides: nora gets jon.
"""

from __future__ import annotations

import random

import pytest

from rmcore.commands import Join
from rmcore.engine import Engine
from rmcore.matching import propose

DIGITAL = [
    "AI tools",
    "prompt engineering",
    "data analytics",
    "SQL",
    "automation",
    "social media",
    "cybersecurity",
    "dashboards",
    "no-code apps",
    "cloud services",
]
HUMAN = [
    "leadership",
    "communication",
    "negotiation",
    "judgement",
    "stakeholder management",
    "public speaking",
    "coaching",
    "budgeting",
    "strategy",
    "conflict resolution",
]
DEPARTMENTS = ["Engineering", "Finance", "Marketing", "Operations", "Legal", "Sales"]
ZONES = ["Europe/London", "Europe/London", "Europe/Berlin", "America/New_York"]

HAND_WRITTEN = [
    dict(person_id="zara", role="mentor", generation="Gen Z", department="Marketing",
         skills_offered=("TikTok strategy", "AI tools"), skills_sought=("executive presence",)),
    dict(person_id="harold", role="mentee", generation="Baby Boomer", department="Finance",
         skills_offered=("executive presence", "budgeting"),
         skills_sought=("tiktok-strategy",)),
    dict(person_id="kai", role="mentor", generation="Gen Z", department="Data",
         manager_id="margaret", skills_offered=("python",), skills_sought=("negotiation",)),
    dict(person_id="margaret", role="mentee", generation="Gen X", department="Strategy",
         skills_offered=("negotiation",), skills_sought=("Python",)),
    dict(person_id="oscar", role="mentee", generation="Gen X", department="Data",
         skills_offered=("negotiation",), skills_sought=("Python",)),
    dict(person_id="leo", role="mentor", generation="Gen Z", department="Operations",
         timezone="Asia/Tokyo", skills_offered=("spreadsheet automation",),
         skills_sought=("board reporting",)),
    dict(person_id="mina", role="mentor", generation="Gen Z", department="Operations",
         timezone="Europe/London", skills_offered=("spreadsheet automation",),
         skills_sought=("board reporting",)),
    dict(person_id="beatrice", role="mentee", generation="tenured", department="Finance",
         timezone="Europe/London", skills_offered=("board reporting",),
         skills_sought=("Spreadsheet Automation",)),
    dict(person_id="ivy", role="mentor", generation="Gen X", department="Sales",
         skills_offered=("process mining",)),
    dict(person_id="jon", role="mentor", generation="Gen Z", department="Sales",
         skills_offered=("Process-Mining",)),
    dict(person_id="nora", role="mentee", generation="Gen X", department="Legal",
         skills_offered=("mentoring",), skills_sought=("process mining",)),
    dict(person_id="omar", role="mentee", generation="tenured", department="Legal",
         skills_offered=("origami",), skills_sought=("calligraphy",)),
]  # fmt: skip


def random_people(rng: random.Random) -> list[dict]:
    """94 mentors and 94 mentees with realistic, overlapping skills."""
    people = []
    for i in range(94):
        people.append(
            dict(person_id=f"mentor{i:02d}", role="mentor",
                 generation=rng.choice(["Gen Z", "Gen Z", "early-career", "Millennial"]),
                 department=rng.choice(DEPARTMENTS), timezone=rng.choice(ZONES),
                 skills_offered=tuple(rng.sample(DIGITAL, rng.randint(2, 3))),
                 skills_sought=tuple(rng.sample(HUMAN, rng.randint(1, 2))),
                 capacity=rng.choice([1, 1, 1, 2]))
        )  # fmt: skip
        people.append(
            dict(person_id=f"mentee{i:02d}", role="mentee",
                 generation=rng.choice(["Gen X", "Baby Boomer", "tenured"]),
                 department=rng.choice(DEPARTMENTS), timezone=rng.choice(ZONES),
                 skills_offered=tuple(rng.sample(HUMAN, rng.randint(2, 3))),
                 skills_sought=tuple(rng.sample(DIGITAL, rng.randint(1, 2))))
        )  # fmt: skip
    return people


def program(path) -> Engine:
    """A new database holding the 200-person program (the hand-written people first)."""
    people = [*HAND_WRITTEN, *random_people(random.Random(2026))]
    assert len(people) == 200
    commands = [
        Join(name=p["person_id"].title(), email=f"{p['person_id']}@example.org",
             at="2026-01-05T09:00:00Z", **p)
        for p in people
    ]  # fmt: skip
    engine = Engine.open(path, create=True)
    engine.execute("default", commands, actor="hr-ops")
    return engine


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """The proposal for the 200-person program."""
    with program(tmp_path_factory.mktemp("realistic") / "program.db") as engine:
        return propose(engine, "default")


def pairs_of(result) -> dict[str, object]:
    """Proposals by mentee."""
    return {p.mentee_id: p for p in result.proposals}


def test_the_complementary_couple_is_paired_with_skills_flowing_both_ways(result):
    """zara teaches harold TikTok strategy; harold teaches zara executive presence."""
    pair = pairs_of(result)["harold"]
    assert pair.mentor_id == "zara"
    assert pair.reasons["mentor_to_mentee"] == ["tiktok strategy"]
    assert pair.reasons["mentee_to_mentor"] == ["executive presence"]
    assert pair.reasons["terms"]["career_stage"] > 0


def test_a_manager_is_never_paired_with_their_direct_report(result):
    """kai goes to oscar, not to margaret, his manager."""
    assert pairs_of(result)["oscar"].mentor_id == "kai"
    margaret = pairs_of(result).get("margaret")
    assert margaret is None or margaret.mentor_id != "kai"


def test_shared_working_hours_decide_between_equal_mentors(result):
    """beatrice (London) gets mina (London) rather than leo (Tokyo)."""
    pair = pairs_of(result)["beatrice"]
    assert pair.mentor_id == "mina"
    assert pair.reasons["terms"]["timezone_overlap"] == 1.0


def test_the_reverse_direction_decides_between_equal_mentors(result):
    """nora (Gen X) learns process mining from jon (Gen Z), not from ivy (Gen X)."""
    assert pairs_of(result)["nora"].mentor_id == "jon"


def test_someone_nobody_can_teach_is_listed_with_the_reason(result):
    """omar seeks calligraphy, which nobody offers."""
    (omar,) = [u for u in result.unmatched if u.person_id == "omar"]
    assert omar.side == "mentee"
    assert "no available mentor offers a skill they seek" in omar.reason


def test_the_program_as_a_whole_gets_reverse_two_way_pairs(result):
    """Nearly everyone is paired, mentors are earlier in their careers, most pairs are two-way."""
    proposals = result.proposals
    assert len(proposals) >= 90
    assert all(p.reasons["terms"]["career_stage"] >= 0 for p in proposals)
    two_way = [
        p for p in proposals if p.reasons["mentor_to_mentee"] and p.reasons["mentee_to_mentor"]
    ]
    assert len(two_way) >= 0.8 * len(proposals)
    assert result.summary["exact"]
    for p in proposals:
        assert sum(p.reasons["terms"].values()) == pytest.approx(p.score)


def test_the_dense_and_the_sparse_solver_prove_the_same_optimum(tmp_path):
    """The 200-person program solved both ways: every pair at once (small programs), and
    candidates with pricing (large ones). Ties may be broken differently; the total may not."""
    pytest.importorskip("lap")
    from rmcore_plugins.matching_skills import dense

    with program(tmp_path / "program.db") as engine:
        every_pair = propose(engine, "default")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(dense, "DENSE_SIDE", 0)
            sparse = propose(engine, "default")
    assert every_pair.summary["exact"] and sparse.summary["exact"]
    assert every_pair.summary["candidate_pairs"] > sparse.summary["candidate_pairs"]
    assert every_pair.total_score == pytest.approx(sparse.total_score, abs=1e-9)
