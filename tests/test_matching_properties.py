"""matching_skills over random populations: optimal, within the rules, stable, explained.

The strategy is called through its hook implementation with model objects, the way the
engine calls it. The brute force and the rule checker below are written from the rules
in docs/matching.md, not from the strategy's code; pair scores come from the plugin's
per-pair ``explain``, which the vectorised solver must agree with.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rmcore_plugins.matching_skills import dense, rmcore_match
from rmcore_plugins.matching_skills.scoring import eligible, explain, profile
from rmcore_plugins.matching_skills.settings import load_settings

from rmcore.model import Pair, Person

SKILLS = ["AI tools", "ai-tools", "SQL", "leadership", "Public Speaking", "negotiation"]
GENERATIONS = ["Gen Z", "Millennial", "Gen X", "Baby Boomer", "early-career", "tenured", ""]
ZONES = ["Europe/London", "America/New_York", "Asia/Tokyo", "Not/AZone"]
DEPARTMENTS = ["Sales", "Data", "Legal", ""]
CHECK = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@st.composite
def programs(draw, max_people: int = 8):
    """Random people (some left), earlier pairs (active and ended) and settings."""
    count = draw(st.integers(2, max_people))
    ids = [f"p{i}" for i in range(count)]
    people = []
    for pid in ids:
        role = draw(st.sampled_from(["mentor", "mentee", "both", "both"]))
        people.append(
            Person(
                person_id=pid,
                name=pid,
                email=f"{pid}@example.org",
                role=role,
                generation=draw(st.sampled_from(GENERATIONS)),
                department=draw(st.sampled_from(DEPARTMENTS)),
                manager_id=draw(st.none() | st.sampled_from(ids).filter(lambda m, p=pid: m != p)),
                timezone=draw(st.sampled_from(ZONES)),
                skills_offered=draw(st.lists(st.sampled_from(SKILLS), max_size=3)),
                skills_sought=draw(st.lists(st.sampled_from(SKILLS), max_size=3)),
                goals=draw(st.lists(st.sampled_from(["grow", "lead", "ship"]), max_size=2)),
                capacity=draw(st.integers(0, 2)) if role != "mentee" else 0,
                status=draw(st.sampled_from(["active"] * 6 + ["left"])),
            )
        )
    pairs = []
    for n, (a, b) in enumerate(
        draw(st.lists(st.tuples(st.sampled_from(ids), st.sampled_from(ids)), max_size=4))
    ):
        if a != b:
            status = draw(st.sampled_from(["active", "ended"]))
            pairs.append(Pair(pair_id=f"x{n}", mentor_id=a, mentee_id=b, status=status))
    config = {
        "matching_skills.min_score": draw(st.sampled_from([0.5, 1.0, 2.5])),
        "matching_skills.career_stage": draw(st.sampled_from([0.0, 2.0])),
        "matching_skills.mentee_skills": draw(st.sampled_from([1.0, 0.5])),
    }
    if draw(st.booleans()):
        config["matching_skills.reverse_only"] = True
    return people, pairs, config


# Small programs take the dense path (every pair solved at once) when ``lap`` is installed;
# the sparse path (candidates, pricing) serves larger ones. Both must keep every property.
PATHS = pytest.mark.parametrize(
    "path",
    [
        pytest.param(
            "dense",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("lap") is None, reason="the dense path needs lap"
            ),
        ),
        "sparse",
    ],
)


@contextlib.contextmanager
def solver_path(path: str):
    """Run the strategy on one path: ``dense`` (the default for small programs) or ``sparse``."""
    with pytest.MonkeyPatch.context() as patch:
        if path == "sparse":
            patch.setattr(dense, "DENSE_SIDE", 0)
        yield patch


def run(people, pairs, config, score_pair=None) -> dict:
    """The strategy's answer, as the engine would receive it."""
    return rmcore_match(
        program="p", people=people, pairs=pairs, config=config, score_pair=score_pair,
        progress=None,
    )  # fmt: skip


def places(people, pairs):
    """Per the rules: who may be a mentee, mentors' free places, ``both`` people's budgets."""
    active = {p.person_id: p for p in people if p.status == "active"}
    load = Counter(p.mentor_id for p in pairs if p.status == "active")
    mentored = {p.mentee_id for p in pairs if p.status == "active"}
    mentees, free, budget = [], {}, {}
    for pid, p in sorted(active.items()):
        if p.role == "both":
            budget[pid] = p.capacity - load[pid] - (pid in mentored)
            if pid not in mentored and budget[pid] >= 1:
                mentees.append(pid)
            if budget[pid] > 0:
                free[pid] = budget[pid]
        elif p.role == "mentee" and pid not in mentored:
            mentees.append(pid)
        elif p.role == "mentor" and p.capacity - load[pid] > 0:
            free[pid] = p.capacity - load[pid]
    return active, mentees, free, budget


def breaks_a_rule(chosen, people, pairs) -> str | None:
    """The first hard rule a set of ``(mentor, mentee)`` proposals breaks, if any."""
    active, mentees, free, budget = places(people, pairs)
    before = {frozenset((p.mentor_id, p.mentee_id)) for p in pairs}
    as_mentor = Counter(m for m, _ in chosen)
    as_mentee = Counter(e for _, e in chosen)
    for mentor, mentee in chosen:
        a, b = active.get(mentor), active.get(mentee)
        if mentor == mentee:
            return "paired with themselves"
        if a is None or b is None:
            return "someone is not active"
        if mentee not in mentees or mentor not in free:
            return "someone is not free to take part"
        if a.manager_id == mentee or b.manager_id == mentor:
            return "manager and direct report"
        if frozenset((mentor, mentee)) in before:
            return "paired before"
        if (mentee, mentor) in chosen:
            return "the two mentor each other"
    for pid, count in as_mentee.items():
        if count > 1:
            return f"{pid} gets two mentors"
    for pid, count in as_mentor.items():
        if count > free[pid]:
            return f"{pid} over capacity"
    for pid, left in budget.items():
        if as_mentor[pid] + as_mentee[pid] > max(left, 0):
            return f"{pid} is mentor and mentee beyond their capacity"
    return None


def brute_force(people, pairs, config) -> float:
    """The best total score over every assignment that keeps the rules (exhaustive search,
    skipping only branches that cannot beat the best total found so far)."""
    settings_ = load_settings(config)
    active, mentees, free, budget = places(people, pairs)
    before = {frozenset((p.mentor_id, p.mentee_id)) for p in pairs}
    profiles = {pid: profile(p, settings_) for pid, p in active.items()}
    options = {}
    for mentee in mentees:
        options[mentee] = []
        for mentor in free:
            a, b = active[mentor], active[mentee]
            if mentor == mentee or a.manager_id == mentee or b.manager_id == mentor:
                continue
            if frozenset((mentor, mentee)) in before:
                continue
            explained = explain(profiles[mentor], profiles[mentee], settings_)
            if eligible(explained, settings_):
                options[mentee].append((explained.score, mentor))
        options[mentee].sort(reverse=True)
    upper = [0.0] * (len(mentees) + 1)
    for k in range(len(mentees) - 1, -1, -1):
        upper[k] = upper[k + 1] + max([0.0] + [score for score, _ in options[mentees[k]]])
    best = 0.0
    as_mentor: Counter = Counter()
    taken: set[tuple[str, str]] = set()

    def fits(mentor: str, mentee: str) -> bool:
        if as_mentor[mentor] + 1 > free[mentor] or (mentee, mentor) in taken:
            return False
        if mentor in budget and as_mentor[mentor] + 1 + ((mentor, "in") in taken) > budget[mentor]:
            return False
        return not (mentee in budget and as_mentor[mentee] + 1 > budget[mentee])

    def search(k: int, total: float) -> None:
        nonlocal best
        if total + upper[k] <= best + 1e-9:
            return
        if k == len(mentees):
            best = total
            return
        mentee = mentees[k]
        for score, mentor in options[mentee]:
            if fits(mentor, mentee):
                as_mentor[mentor] += 1
                taken.update({(mentor, mentee), (mentee, "in")})
                search(k + 1, total + score)
                as_mentor[mentor] -= 1
                taken.difference_update({(mentor, mentee), (mentee, "in")})
        search(k + 1, total)

    search(0, 0.0)
    return best


@PATHS
@CHECK
@given(programs())
def test_the_proposal_is_as_good_as_the_best_assignment_found_by_brute_force(path, program):
    """No assignment that keeps the rules has a higher total score."""
    people, pairs, config = program
    with solver_path(path):
        result = run(people, pairs, config)
    total = math.fsum(p["score"] for p in result["pairs"])
    assert total == pytest.approx(brute_force(people, pairs, config), abs=1e-6)
    assert result["summary"]["exact"]


@CHECK
@given(programs())
def test_pricing_proves_the_optimum_even_from_a_single_candidate_per_person(program):
    """With one candidate each, the pricing pass must add whatever the optimum needs."""
    people, pairs, config = program
    config = {**config, "matching_skills.candidates": 1}
    with solver_path("sparse"):
        total = math.fsum(p["score"] for p in run(people, pairs, config)["pairs"])
    assert total == pytest.approx(brute_force(people, pairs, config), abs=1e-6)


@PATHS
@CHECK
@given(programs(max_people=24), st.sampled_from([1, 64]))
def test_hard_rules_are_never_broken(path, program, search_nodes):
    """Whatever the population, and even with a search cut short, no rule is broken."""
    people, pairs, config = program
    config = {**config, "matching_skills.search_nodes": search_nodes}
    with solver_path(path):
        result = run(people, pairs, config)
    chosen = [(p["mentor_id"], p["mentee_id"]) for p in result["pairs"]]
    assert breaks_a_rule(chosen, people, pairs) is None
    assert len(set(chosen)) == len(chosen)
    settings_ = load_settings(config)
    for proposal in result["pairs"]:
        assert proposal["score"] >= settings_.min_score


@PATHS
@CHECK
@given(programs(max_people=16))
def test_every_proposal_explains_its_score_and_everyone_left_out_is_listed(path, program):
    """Reasons add up to the score; each person on a side without a pair has a reason."""
    people, pairs, config = program
    with solver_path(path):
        result = run(people, pairs, config)
    for proposal in result["pairs"]:
        reasons = proposal["reasons"]
        assert math.fsum(reasons["terms"].values()) == pytest.approx(proposal["score"], abs=1e-9)
        assert reasons["terms"]["mentor_skills"] >= 0
        assert len(reasons["mentor_to_mentee"]) + len(reasons["mentee_to_mentor"]) >= 1
    _, mentees, free, _ = places(people, pairs)
    paired = {p["mentor_id"] for p in result["pairs"]} | {p["mentee_id"] for p in result["pairs"]}
    waiting = (set(mentees) | set(free)) - paired
    listed = {u["person_id"]: u for u in result["unmatched"]}
    assert set(listed) == waiting
    assert all(u["reason"] and u["side"] in ("mentor", "mentee", "both") for u in listed.values())


@PATHS
@CHECK
@given(programs(max_people=16), st.randoms(use_true_random=False))
def test_the_same_program_gives_the_same_pairs_in_any_order(path, program, rng: random.Random):
    """Determinism: ties are broken by person id, never by input order or chance."""
    people, pairs, config = program
    shuffled_people, shuffled_pairs = list(people), list(pairs)
    rng.shuffle(shuffled_people)
    rng.shuffle(shuffled_pairs)
    with solver_path(path):
        first = run(people, pairs, config)
        again = run(shuffled_people, shuffled_pairs, config)
    assert again["pairs"] == first["pairs"]
    assert again["unmatched"] == first["unmatched"]


@PATHS
def test_ties_are_broken_the_same_way_every_time(path):
    """Four identical mentors, four identical mentees: one fixed answer."""
    people = [
        Person(person_id=f"m{i}", name="m", email="m@example.org", role="mentor", capacity=1,
               skills_offered=("SQL",), generation="Gen Z")
        for i in range(4)
    ] + [
        Person(person_id=f"e{i}", name="e", email="e@example.org", role="mentee",
               skills_sought=("sql",), generation="Gen X")
        for i in range(4)
    ]  # fmt: skip
    with solver_path(path):
        answers = {
            tuple((p["mentor_id"], p["mentee_id"]) for p in run(people, [], {})["pairs"])
            for _ in range(5)
        }
    assert len(answers) == 1
    assert len(next(iter(answers))) == 4


@PATHS
def test_a_both_person_with_capacity_one_is_mentor_or_mentee_not_both(path):
    """Capacity counts pairs on either side for role ``both``."""

    def make(capacity: int) -> list[Person]:
        return [
            Person(person_id="bo", name="Bo", email="bo@example.org", role="both",
                   capacity=capacity, generation="Millennial", skills_offered=("SQL",),
                   skills_sought=("leadership",)),
            Person(person_id="jun", name="Jun", email="jun@example.org", role="mentor",
                   capacity=1, generation="Gen Z", skills_offered=("leadership",)),
            Person(person_id="val", name="Val", email="val@example.org", role="mentee",
                   generation="Gen X", skills_sought=("SQL",)),
        ]  # fmt: skip

    with solver_path(path):
        one = run(make(1), [], {"matching_skills.min_score": 0.5})
        cut_short = run(
            make(1), [], {"matching_skills.min_score": 0.5, "matching_skills.search_nodes": 1}
        )
        two = run(make(2), [], {"matching_skills.min_score": 0.5})
    bo_pairs = [p for p in one["pairs"] if "bo" in (p["mentor_id"], p["mentee_id"])]
    assert len(bo_pairs) == 1
    assert one["summary"]["exact"]
    assert cut_short["summary"]["method"] == "best found"
    assert not cut_short["summary"]["exact"]
    assert len([p for p in cut_short["pairs"] if "bo" in (p["mentor_id"], p["mentee_id"])]) == 1
    assert cut_short["summary"]["upper_bound"] >= one["summary"]["total_score"]
    chosen = {(p["mentor_id"], p["mentee_id"]) for p in two["pairs"]}
    assert chosen == {("jun", "bo"), ("bo", "val")}


@PATHS
@CHECK
@given(programs(max_people=16))
def test_sparse_skills_unfolded_tables_and_small_blocks_give_the_same_answer(path, program):
    """The representations chosen for large programs score exactly like the small ones."""
    from rmcore_plugins.matching_skills import problem as problem_module

    people, pairs, config = program
    with solver_path(path) as patch:
        expected = run(people, pairs, config)
        patch.setattr(problem_module, "DENSE_VOCABULARY", 0)
        patch.setattr(problem_module, "FOLDED_TABLE_CELLS", 0)
        patch.setattr(problem_module, "BLOCK_CELLS", 7)
        again = run(people, pairs, config)
    assert again["pairs"] == expected["pairs"]
    assert again["unmatched"] == expected["unmatched"]


@CHECK
@given(programs(max_people=12))
def test_if_the_sparse_solver_refuses_best_pair_first_still_keeps_every_rule(program):
    """The fallback: a solver that finds no full matching leaves a valid, unproven answer."""
    from rmcore_plugins.matching_skills import solver

    def refuse(n, width, rows, cols, costs):
        raise ValueError("no full matching exists")

    people, pairs, config = program
    with solver_path("sparse") as patch:
        patch.setattr(solver, "full_matching", refuse)
        result = run(people, pairs, config)
    chosen = [(p["mentor_id"], p["mentee_id"]) for p in result["pairs"]]
    assert breaks_a_rule(chosen, people, pairs) is None
    if chosen:
        assert not result["summary"]["exact"]


@CHECK
@given(programs())
def test_a_dense_answer_that_is_not_optimal_is_caught_and_the_optimum_still_found(program):
    """The proof refuses a wrong dense assignment (nobody paired); the sparse path then
    finds and proves the optimum."""
    pytest.importorskip("lap")
    people, pairs, config = program
    with solver_path("dense") as patch:
        patch.setattr(dense, "assign", lambda weights, slots: np.full(len(weights), -1))
        result = run(people, pairs, config)
    total = math.fsum(p["score"] for p in result["pairs"])
    assert total == pytest.approx(brute_force(people, pairs, config), abs=1e-6)
    assert result["summary"]["exact"]


def test_the_dense_proof_accepts_the_optimum_and_refuses_a_worse_assignment():
    """Two mentees, two mentors: crossing the pairs loses 2 points, and the dual prices
    that prove the straight assignment cannot be found for the crossed one."""
    pytest.importorskip("lap")
    weights = np.array([[3.0, 1.0], [1.0, 1.0]])
    slots = np.array([1, 1])
    proven = dense.prove(weights, slots, dense.assign(weights, slots))
    assert proven.mentor_of.tolist() == [0, 1]
    assert proven.value == 4.0 and proven.proven
    prices = proven.row_price[:, None] + proven.col_price[None, :]
    assert np.all(prices >= weights - 1e-12)
    assert proven.row_price.sum() + (slots * proven.col_price).sum() == pytest.approx(4.0)
    with pytest.raises(dense.Unproven):
        dense.prove(weights, slots, np.array([1, 0]))
    with pytest.raises(dense.Unproven):
        dense.prove(weights, slots, np.array([-1, 1]))
