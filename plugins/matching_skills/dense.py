"""Small programs: every pair scored at once, one exact dense solve, and its proof.

When neither the mentees nor the mentors' free places number more than ``DENSE_SIDE``,
the whole score matrix is cheap to hold, so there are no candidates and no pricing rounds:

1. ``score`` scores every pair exactly (float64, the terms added as in
   :func:`scoring.explain`) and marks the eligible ones.
2. ``assign`` finds the maximum-score assignment over all eligible pairs at once with
   the Jonker-Volgenant solver of the ``lap`` package (a dense matrix with one column
   per free place; a mentee placed on a pair that is not eligible stays unmatched).
3. ``prove`` derives LP dual prices from that assignment (shortest paths over every
   eligible pair, as in :func:`solver._column_prices`) and checks them against every
   pair: when they hold, LP duality proves the answer optimal.

``lap`` imports in a millisecond, where scipy's sparse graph solver takes about 0.3 s to
import: longer than a program of 1,000 per side takes to match. If ``lap`` is not
installed or its answer is not proven, the strategy takes the sparse path of
:mod:`solver`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import numpy as np
from rmcore_plugins.matching_skills.problem import Problem
from rmcore_plugins.matching_skills.solver import (
    PRICE_TOLERANCE,
    Candidates,
    Dual,
    Relaxed,
    Restrictions,
    Solution,
    Tick,
    search,
)

# Largest side of the square matrix the dense solver works on (mentees or free places).
# At 2,000 per side (2,700 places) both paths took about as long end to end, the dense
# one with half as much memory again (195 MB); below, the dense path is faster.
DENSE_SIDE = 2500


class Unproven(Exception):
    """The dense solver's answer could not be proven optimal; use the sparse path."""


def usable(problem: Problem, slots: np.ndarray) -> bool:
    """Whether this program is small enough for the dense path and ``lap`` is installed."""
    side = max(problem.n, int(slots.sum()))
    return side <= DENSE_SIDE and importlib.util.find_spec("lap") is not None


def score(problem: Problem) -> tuple[np.ndarray, Candidates]:
    """Every pair's exact score (0 where the pair is not eligible), and what the scoring
    learnt about every row and column, as ``solver.candidates`` reports it."""
    s = problem.settings
    scores, shared, allowed = problem.every_pair()
    best_row = _best(scores, allowed, axis=1)
    best_col = _best(scores, allowed, axis=0)
    eligible = np.greater_equal(shared, s.min_shared_skills)
    eligible &= allowed
    # Who has a partner the float32 screen of the sparse path would call eligible: allowed,
    # enough skills, a score within SCREEN_TOLERANCE of the minimum. Only the reasons for
    # people left unmatched depend on it.
    near = scores >= float(problem.screen_threshold)
    near &= eligible
    eligible &= scores >= s.min_score
    eligible &= scores > 0
    scores[~eligible] = 0.0
    found = Candidates(
        rows=np.zeros(0, np.int64),
        cols=np.zeros(0, np.int64),
        weights=np.zeros(0),
        row_best_allowed=best_row,
        col_best_allowed=best_col,
        row_best_eligible=np.where(near.any(axis=1), best_row, -np.inf),
        col_best_eligible=np.where(near.any(axis=0), best_col, -np.inf),
        row_kth=np.full(problem.n, -np.inf),
        col_kth=np.full(problem.m, -np.inf),
    )
    return scores, found


def _best(scores: np.ndarray, where: np.ndarray, axis: int) -> np.ndarray:
    """The largest score where ``where`` holds, along an axis (-inf where it never does)."""
    return np.max(scores, axis=axis, where=where, initial=-np.inf)


def assign(weights: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """The mentor column of each mentee row (-1: unmatched) in a maximum-score assignment."""
    n, m = weights.shape
    mentor_of = np.full(n, -1, np.int64)
    positive = weights > 0
    rows = np.flatnonzero(positive.any(axis=1))
    cols = np.flatnonzero((slots > 0) & positive.any(axis=0))
    if not rows.size or not cols.size:
        return mentor_of
    import lap

    owner = np.repeat(cols, slots[cols])
    block = weights if rows.size == n else weights[rows]
    side = max(rows.size, owner.size)
    # A square cost matrix, padded with zeros: one row per mentee, one column per free
    # place. Costs above every padding entry make the solver's augmenting phase several
    # times faster than negated scores would.
    cost = np.empty((side, side))
    if owner.size == side:
        np.take(block, owner, axis=1, out=cost[: rows.size])
        cost[rows.size :] = 0.0
    else:
        cost[: rows.size, : owner.size] = np.take(block, owner, axis=1)
        cost[:, owner.size :] = 0.0
    real = cost[: rows.size, : owner.size]
    np.subtract(block.max() + 1.0, real, out=real)
    _, x, _ = lap.lapjv(cost)
    x = x[: rows.size]
    placed = (x >= 0) & (x < owner.size)
    placed[placed] = block[np.flatnonzero(placed), owner[x[placed]]] > 0
    mentor_of[rows[placed]] = owner[x[placed]]
    return mentor_of


def prove(weights: np.ndarray, slots: np.ndarray, mentor_of: np.ndarray) -> Relaxed:
    """The assignment with LP dual prices that prove it optimal, or ``Unproven``.

    Each mentor's price is the least ``p[j]`` with ``p[j] >= w(i, j) - u[i]`` for every
    eligible pair, where ``u[i] = w(i, mentor_of[i]) - p[mentor_of[i]]`` (0 unmatched):
    a shortest-path problem over mentors, solved by Bellman-Ford a frontier of mentees
    at a time. A mentor with a free place must end at price 0, and every ``u`` at 0 or
    more; then ``u`` and ``p`` are a feasible dual whose total equals the assignment's,
    which a last pass over every eligible pair checks.
    """
    n, m = weights.shape
    rows = np.arange(n)
    matched = mentor_of >= 0
    if not m:
        return Relaxed(mentor_of, np.zeros(n), 0.0, np.zeros(n), np.zeros(0), True)
    head = np.where(matched, mentor_of, 0)
    value_of = np.where(matched, weights[rows, head], 0.0)
    live = slots > 0
    # arcs[i, j] = -w(i, j) for eligible pairs, +inf elsewhere.
    arcs = np.negative(weights)
    arcs[weights <= 0] = np.inf
    arcs[:, ~live] = np.inf
    dist = np.zeros(m)
    frontier = rows
    for _ in range(m + 2):
        if not frontier.size:
            break
        reach = np.where(matched, dist[head], 0.0)[frontier] + value_of[frontier]
        best = _column_min(arcs, frontier, reach)
        better = best < dist - 1e-12 * (1.0 + np.abs(best))
        if not better.any():
            break
        dist[better] = best[better]
        frontier = np.flatnonzero(matched & better[head])
    else:
        raise Unproven("the assignment admits an improving cycle")
    price = -dist
    load = np.bincount(mentor_of[matched], minlength=m)
    free = live & (load < slots)
    scale = 1.0 + np.abs(price[live]).max(initial=0.0)
    if np.any(price[free] > 1e-9 * scale):
        raise Unproven("a mentor with a free place has a positive price")
    price[free] = 0.0
    row_price = value_of - np.where(matched, price[head], 0.0)
    if np.any(row_price < -1e-9 * scale):
        raise Unproven("a mentee would rather be unmatched")
    col_price = np.where(live, price, np.inf)
    # Dual feasibility: no eligible pair scores more than its mentee's and mentor's prices.
    arcs += price
    gain = -arcs.min(axis=1) - row_price
    if np.any(gain > PRICE_TOLERANCE * (scale + np.abs(row_price))):
        raise Unproven("a pair beats its prices")
    return Relaxed(mentor_of, value_of, float(value_of.sum()), row_price, col_price, True)


BLOCK = 65_536  # cells per block in ``_column_min``: small enough to stay in cache


def _column_min(arcs: np.ndarray, rows: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """``min over k of reach[k] + arcs[rows[k], j]`` for every column ``j``."""
    step = max(1, BLOCK // max(1, arcs.shape[1]))
    every = rows.size == arcs.shape[0]
    best = np.full(arcs.shape[1], np.inf)
    for start in range(0, rows.size, step):
        block = arcs[start : start + step] if every else arcs[rows[start : start + step]]
        np.minimum(best, (block + reach[start : start + step, None]).min(axis=0), out=best)
    return best


def solve(
    weights: np.ndarray,
    slots: np.ndarray,
    duals: Sequence[Dual],
    *,
    max_branches: int,
    time_budget: float = 10.0,
    tick: Tick | None = None,
) -> Solution:
    """The best assignment that respects every rule; ``Unproven`` if a branch's dense
    answer cannot be proven optimal."""

    def branch(limits: Restrictions, tick: Tick | None = None) -> Relaxed:
        """The proven optimum of one branch of the search."""
        w = weights
        if limits.removed or limits.banned:
            w = weights.copy()
            w[sorted(limits.removed)] = 0.0
            for r, c in limits.banned:
                w[r, c] = 0.0
        branch_slots = limits.slots(slots)
        relaxed = prove(w, branch_slots, assign(w, branch_slots))
        if tick:
            tick(1.0)
        return relaxed

    return search(branch, duals, max_branches=max_branches, time_budget=time_budget, tick=tick)
