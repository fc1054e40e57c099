"""The ``matching_skills`` strategy: who may be paired, the best assignment, and why.

Who takes part in a round (decisions recorded in docs/matching.md):
- a ``mentee`` without an active mentor is on the mentee side;
- a ``mentor`` with free capacity (capacity minus their active mentees) is on the mentor
  side, once per free place;
- for a person with role ``both``, capacity counts every active pair they are in, on
  either side. With a free place they sit on both sides, but the answer never uses more
  places than they have: with capacity 1 they are proposed as a mentor or as a mentee,
  not both. Nobody is paired with themselves, and two people are never proposed to
  mentor each other.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from attrs import define, evolve, field
from rmcore_plugins.matching_skills import dense, solver
from rmcore_plugins.matching_skills.problem import Problem
from rmcore_plugins.matching_skills.scoring import eligible, explain, profile
from rmcore_plugins.matching_skills.settings import Settings, load_settings

NAME = "matching_skills"
MAX_GOALS = 50
PROGRESS_STEPS = 1000

ScorePair = Callable[[Any, Any], Mapping[str, float]]


@define
class Sides:
    """The two sides of one round and the pairs no rule allows."""

    mentees: list[Any] = field(factory=list)
    mentors: list[Any] = field(factory=list)
    slots: list[int] = field(factory=list)
    duals: list[solver.Dual] = field(factory=list)
    forbidden: dict[tuple[int, int], str] = field(factory=dict)
    already_mentored: int = 0
    at_capacity: int = 0


def sides(people: Sequence[Any], pairs: Sequence[Any]) -> Sides:
    """Split the active participants into the mentee side and the mentor side."""
    mentor_load = Counter(p.mentor_id for p in pairs if p.active)
    mentored = {p.mentee_id for p in pairs if p.active}
    found = Sides()
    budgets: dict[str, int] = {}
    for person in sorted((p for p in people if p.active), key=lambda p: p.person_id):
        pid = person.person_id
        has_mentor = pid in mentored
        if person.role == "both":
            free = person.capacity - mentor_load[pid] - (1 if has_mentor else 0)
            as_mentor, as_mentee = free, not has_mentor and free >= 1
            budgets[pid] = free
        else:
            as_mentor = person.capacity - mentor_load[pid] if person.can_mentor else 0
            as_mentee = person.can_be_mentored and not has_mentor
        if not as_mentee and as_mentor <= 0:
            if person.can_be_mentored and has_mentor:
                found.already_mentored += 1
            elif person.can_mentor:
                found.at_capacity += 1
        if as_mentee:
            found.mentees.append(person)
        if as_mentor > 0:
            found.mentors.append(person)
            found.slots.append(as_mentor)
    row = {p.person_id: i for i, p in enumerate(found.mentees)}
    col = {p.person_id: j for j, p in enumerate(found.mentors)}
    cap = len(found.mentees)
    found.slots = [min(s, cap) for s in found.slots]
    for pid, budget in budgets.items():
        if pid in row and pid in col:
            found.duals.append(solver.Dual(row[pid], col[pid], budget))
            found.forbidden[(row[pid], col[pid])] = "themselves"
    for j, mentor in enumerate(found.mentors):
        if mentor.manager_id in row:
            found.forbidden[(row[mentor.manager_id], j)] = "reporting line"
    for i, mentee in enumerate(found.mentees):
        if mentee.manager_id in col:
            found.forbidden[(i, col[mentee.manager_id])] = "reporting line"
    for pair in pairs:
        for a, b in ((pair.mentor_id, pair.mentee_id), (pair.mentee_id, pair.mentor_id)):
            if b in row and a in col:
                found.forbidden.setdefault((row[b], col[a]), "paired before")
    return found


class Meter:
    """Turns phase fractions into ``progress(done, total)`` calls."""

    def __init__(self, progress: Callable[[int, int], None] | None) -> None:
        self.progress = progress
        self.done = 0

    def phase(self, start: float, end: float) -> Callable[[float], None]:
        """A ``tick(fraction)`` for the part of the work from ``start`` to ``end``."""

        def tick(fraction: float) -> None:
            """Report that ``fraction`` of this phase is done."""
            if self.progress is None:
                return
            done = int(PROGRESS_STEPS * (start + (end - start) * min(1.0, fraction)))
            if done > self.done:
                self.done = done
                self.progress(done, PROGRESS_STEPS)

        return tick


def _extra_total(terms: Mapping[str, float]) -> float:
    return float(sum(terms[name] for name in sorted(terms)))


def propose(
    program: str,
    people: Sequence[Any],
    pairs: Sequence[Any],
    config: Mapping[str, Any],
    score_pair: ScorePair | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The maximum-score set of pairs for the program's unpaired participants, with reasons."""
    started = time.perf_counter()
    settings = load_settings(config)
    meter = Meter(progress)
    split = sides(people, pairs)
    n, m = len(split.mentees), len(split.mentors)
    mentee_profiles = [profile(p, settings) for p in split.mentees]
    mentor_profiles = [profile(p, settings) for p in split.mentors]
    pricing = max(n, m) <= settings.exact_limit
    extras = None
    every_pair_extras = score_pair is not None and n * m <= settings.extra_terms_limit
    if every_pair_extras:
        extras = _extras(split, score_pair, meter.phase(0.0, 0.2))
    problem = Problem(mentee_profiles, mentor_profiles, settings, split.forbidden, extras)
    slots = np.array(split.slots, np.int64)
    solved = None
    if pricing and (score_pair is None or every_pair_extras) and dense.usable(problem, slots):
        solved = _dense(problem, split, slots, settings, meter)
    if solved is None:
        solved = _sparse(problem, split, slots, settings, meter, pricing, score_pair, extras)
    found, solution, candidate_pairs = solved
    proposals, dropped = _proposals(solution, split, mentee_profiles, mentor_profiles, settings,
                                    score_pair)  # fmt: skip
    unmatched = _unmatched(
        solution, split, problem, found, mentee_profiles, mentor_profiles, settings, dropped
    )
    meter.phase(0.95, 1.0)(1.0)
    method = "exact" if solution.exact else ("best found" if solution.repaired else "top-k")
    return {
        "pairs": proposals,
        "unmatched": unmatched,
        "summary": {
            "method": method,
            "exact": solution.exact,
            "total_score": math.fsum(p["score"] for p in proposals),
            "upper_bound": solution.upper_bound,
            "mentees": n,
            "mentors": m,
            "places": int(slots.sum()),
            "candidate_pairs": candidate_pairs,
            "branches": solution.branches,
            "already_mentored": split.already_mentored,
            "mentors_at_capacity": split.at_capacity,
            "extra_terms": "none"
            if score_pair is None
            else ("every pair" if every_pair_extras else "candidates only"),
            "seconds": round(time.perf_counter() - started, 3),
        },
    }


def _dense(problem: Problem, split: Sides, slots: np.ndarray, settings: Settings, meter: Meter):
    """Every pair scored and solved at once (small programs); None if not proven optimal."""
    weights, found = dense.score(problem)
    meter.phase(0.2, 0.6)(1.0)
    try:
        solution = dense.solve(
            weights,
            slots,
            split.duals,
            max_branches=settings.search_nodes,
            tick=meter.phase(0.6, 0.95),
        )
    except dense.Unproven:
        return None
    return found, solution, int(np.count_nonzero(weights))


def _sparse(problem, split, slots, settings, meter, pricing, score_pair, extras):
    """Candidates, an exact sparse solve and, with ``pricing``, the proof over all pairs."""
    k = settings.candidates * (2 if score_pair is not None and extras is None else 1)
    found = solver.candidates(problem, k, meter.phase(0.2, 0.6))
    if score_pair is not None and extras is None:
        found = _candidate_extras(found, split, score_pair, settings)
        pricing = False
    solution = solver.solve(
        problem,
        found,
        slots,
        split.duals,
        pricing=pricing,
        max_branches=settings.search_nodes,
        tick=meter.phase(0.6, 0.95),
    )
    return found, solution, len(found.rows)


def _extras(split: Sides, score_pair: ScorePair, tick) -> np.ndarray:
    """Other plugins' terms for every allowed pair (small programs only)."""
    n, m = len(split.mentees), len(split.mentors)
    extras = np.zeros((n, m))
    for i, mentee in enumerate(split.mentees):
        for j, mentor in enumerate(split.mentors):
            if (i, j) not in split.forbidden:
                extras[i, j] = _extra_total(score_pair(mentor, mentee))
        tick((i + 1) / max(1, n))
    return extras


def _candidate_extras(found, split: Sides, score_pair: ScorePair, settings: Settings):
    """Other plugins' terms added to the candidate pairs only (large programs)."""
    extra = np.array(
        [
            _extra_total(score_pair(split.mentors[c], split.mentees[r]))
            for r, c in zip(found.rows.tolist(), found.cols.tolist())
        ],
        np.float64,
    )
    weights = found.weights + extra
    keep = (weights >= settings.min_score) & (weights > 0)
    return evolve(found, rows=found.rows[keep], cols=found.cols[keep], weights=weights[keep])


def _goals(mentee: Any, mentor: Any) -> list[str]:
    goals = list(dict.fromkeys([*mentee.goals, *mentor.goals]))
    return goals[:MAX_GOALS]


def _proposals(solution, split, mentee_profiles, mentor_profiles, settings, score_pair):
    """Each chosen pair with its score and reasons, ordered by mentor then mentee."""
    proposals, dropped = [], set()
    for i, j in enumerate(solution.mentor_of.tolist()):
        if j < 0:
            continue
        mentee, mentor = split.mentees[i], split.mentors[j]
        extra = score_pair(mentor, mentee) if score_pair is not None else None
        explained = explain(mentor_profiles[j], mentee_profiles[i], settings, extra)
        if not eligible(explained, settings):
            dropped.add(i)
            continue
        proposals.append(
            {
                "mentor_id": mentor.person_id,
                "mentee_id": mentee.person_id,
                "score": explained.score,
                "reasons": explained.reasons(),
                "goals": _goals(mentee, mentor),
            }
        )
    proposals.sort(key=lambda p: (p["mentor_id"], p["mentee_id"]))
    return proposals, dropped


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def _best_partners(problem: Problem, settings: Settings, rows=None, cols=None) -> list:
    """For each given row (or column), the allowed partner with enough shared skills and
    the best score, or None when nobody qualifies."""
    out: list[int | None] = []
    if rows is not None:
        step = problem.block_rows()
        blocks = [(rows[k : k + step], None) for k in range(0, len(rows), step)]
        axis = 1
    else:
        step = max(1, 2_000_000 // max(1, problem.n))
        blocks = [(slice(None), cols[k : k + step]) for k in range(0, len(cols), step)]
        axis = 0
    for block_rows, block_cols in blocks:
        allowed = problem.allowed(block_rows, block_cols)
        usable = np.isfinite(allowed) & (
            problem.shared(block_rows, block_cols) >= settings.min_shared_skills
        )
        best = np.argmax(np.where(usable, allowed, -np.inf), axis=axis)
        found = usable.any(axis=axis)
        out.extend(int(b) if f else None for b, f in zip(best.tolist(), found.tolist()))
    return out


class Why:
    """Explains, for each person left out, why the round has no pair for them."""

    def __init__(self, split, problem, found, mentee_profiles, mentor_profiles, settings):
        self.split, self.problem, self.found, self.settings = split, problem, found, settings
        self.mentee_profiles, self.mentor_profiles = mentee_profiles, mentor_profiles
        self.by_row: dict[int, Counter] = defaultdict(Counter)
        self.by_col: dict[int, Counter] = defaultdict(Counter)
        for (r, c), kind in split.forbidden.items():
            self.by_row[r][kind] += 1
            self.by_col[c][kind] += 1

    def mentees(self, rows: list[int]) -> dict[int, str]:
        """Why each of these mentee rows got no mentor."""
        if not self.split.mentors:
            return {i: "no mentor has a free place" for i in rows}
        out, open_rows = {}, []
        for i in rows:
            if np.isfinite(self.found.row_best_allowed[i]):
                open_rows.append(i)
            else:
                out[i] = "every mentor with a free place is ruled out: " + self._ruled_out(
                    self.by_row[i], len(self.split.mentors)
                )
        best = _best_partners(self.problem, self.settings, rows=np.array(open_rows, np.int64))
        for i, j in zip(open_rows, best):
            if j is None:
                out[i] = self._no_skills("mentor")
                continue
            explained = explain(self.mentor_profiles[j], self.mentee_profiles[i], self.settings)
            who = self.split.mentors[j].person_id
            if np.isfinite(self.found.row_best_eligible[i]):
                out[i] = self._taken("mentors", who, explained)
            else:
                out[i] = self._below(explained, who)
        for i in open_rows:
            out[i] += self._also(self.by_row[i])
        return out

    def mentors(self, cols: list[int]) -> dict[int, str]:
        """Why each of these mentor columns got no mentee."""
        if not self.split.mentees:
            return {j: "nobody is waiting for a mentor" for j in cols}
        out, open_cols = {}, []
        for j in cols:
            if np.isfinite(self.found.col_best_allowed[j]):
                open_cols.append(j)
            else:
                out[j] = "every mentee waiting for a mentor is ruled out: " + self._ruled_out(
                    self.by_col[j], len(self.split.mentees)
                )
        best = _best_partners(self.problem, self.settings, cols=np.array(open_cols, np.int64))
        for j, i in zip(open_cols, best):
            if i is None:
                out[j] = self._no_skills("mentee")
                continue
            explained = explain(self.mentor_profiles[j], self.mentee_profiles[i], self.settings)
            who = self.split.mentees[i].person_id
            if np.isfinite(self.found.col_best_eligible[j]):
                out[j] = self._taken("mentees", who, explained)
            else:
                out[j] = self._below(explained, who)
        for j in open_cols:
            out[j] += self._also(self.by_col[j])
        return out

    @staticmethod
    def _also(kinds: Counter) -> str:
        if not kinds:
            return ""
        return "; also ruled out: " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))

    @staticmethod
    def _taken(others: str, who: str, explained) -> str:
        return (
            f"their possible {others} (best: {who}, {_fmt(explained.score)}) are proposed to "
            "others, which gives the program a higher total"
        )

    def _no_skills(self, other: str) -> str:
        needed = self.settings.min_shared_skills
        if needed == 1:
            return f"no available {other} offers a skill they seek or seeks a skill they offer"
        return f"no available {other} shares the {needed} skills needed, in either direction"

    def _below(self, explained, who: str) -> str:
        return (
            f"the best possible score is {_fmt(explained.score)} (with {who}), below the "
            f"minimum {_fmt(self.settings.min_score)}"
        )

    def _ruled_out(self, kinds: Counter, total: int) -> str:
        parts = [f"{count} {kind}" for kind, count in sorted(kinds.items())]
        rest = total - sum(kinds.values())
        if rest > 0 and self.settings.reverse_only:
            parts.append(f"{rest} not earlier in their career than the mentee (reverse_only)")
        elif rest > 0:
            parts.append(f"{rest} other")
        return ", ".join(parts)


def _unmatched(solution, split, problem, found, mentee_profiles, mentor_profiles, settings,
               dropped) -> list[dict[str, Any]]:  # fmt: skip
    """Everyone on a side who got no pair this round, with the reason."""
    mentor_of = solution.mentor_of
    new_mentees = Counter(j for j in mentor_of.tolist() if j >= 0)
    for i in dropped:
        new_mentees[int(mentor_of[i])] -= 1
    matched_rows = {i for i, j in enumerate(mentor_of.tolist()) if j >= 0 and i not in dropped}
    matched_cols = {j for j, count in new_mentees.items() if count > 0}
    dual_of_row = {d.row: d for d in split.duals}
    dual_of_col = {d.col: d for d in split.duals}
    rows = [
        i
        for i in range(len(split.mentees))
        if i not in matched_rows and not (i in dual_of_row and dual_of_row[i].col in matched_cols)
    ]
    cols = [
        j
        for j in range(len(split.mentors))
        if j not in matched_cols and not (j in dual_of_col and dual_of_col[j].row in matched_rows)
    ]
    why = Why(split, problem, found, mentee_profiles, mentor_profiles, settings)
    row_reasons = why.mentees([i for i in rows if i not in dropped])
    for i in dropped:
        row_reasons[i] = "their proposed pair fell below the minimum score when checked"
    reasons: dict[str, dict[str, str]] = defaultdict(dict)
    for i, reason in row_reasons.items():
        reasons[split.mentees[i].person_id]["mentee"] = reason
    for j, reason in why.mentors(cols).items():
        reasons[split.mentors[j].person_id]["mentor"] = reason
    out = []
    for pid in sorted(reasons):
        by_side = reasons[pid]
        if len(by_side) == 2:
            reason = f"as a mentee: {by_side['mentee']}; as a mentor: {by_side['mentor']}"
            out.append({"person_id": pid, "side": "both", "reason": reason})
        else:
            ((side, reason),) = by_side.items()
            out.append({"person_id": pid, "side": side, "reason": reason})
    return out
