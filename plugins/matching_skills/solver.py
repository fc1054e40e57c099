"""The maximum-score assignment: candidates, an exact sparse solve, and a proof of optimality.

1. ``candidates`` scores every pair once, a block at a time, and keeps each mentee's and
   each mentor's best eligible partners (a top-K graph).
2. ``assign`` solves that graph exactly: each mentor is repeated once per free slot and
   each mentee gets a private "stay unmatched" column of weight 0, so a full matching
   always exists, and scipy's sparse Jonker-Volgenant solver
   (``min_weight_full_bipartite_matching``) finds the best one. Shortest paths in the
   solution's residual graph then give LP dual prices for every mentee and mentor.
3. ``price`` checks every pair left out of the graph against those prices. A pair
   that could improve the total is added and the graph solved again; when none is
   left, LP duality proves the answer optimal over all pairs, not only the candidates.

Above ``exact_limit`` people per side the pricing pass is skipped: the answer is the
optimum of the top-K graph (within 0.2% of the true optimum on the benchmark, where the
target is 0.5%).

People with role ``both`` may sit on both sides. The solve above treats the two sides
independently; ``search`` then looks (best-first branch and bound on that relaxation)
for the best assignment in which no such person exceeds their capacity across both
sides and no two people are paired both ways round.

Small programs skip steps 1-3: :mod:`dense` solves every pair at once and proves the
answer with the same kind of dual prices, then shares ``search``. scipy is imported
only when this module's ``full_matching`` runs.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence

import numpy as np
from attrs import define, field, frozen
from rmcore_plugins.matching_skills.problem import SCREEN_TOLERANCE, Problem

Tick = Callable[[float], None]
PRICE_TOLERANCE = 1e-9
MAX_PRICING_ROUNDS = 25
PRICE_MARGIN = 0.5  # also add pairs this close to their prices: fewer pricing rounds


@frozen
class Candidates:
    """The top-K graph and what the scoring pass learnt about every row and column."""

    rows: np.ndarray
    cols: np.ndarray
    weights: np.ndarray
    row_best_allowed: np.ndarray
    col_best_allowed: np.ndarray
    row_best_eligible: np.ndarray
    col_best_eligible: np.ndarray
    row_kth: np.ndarray  # no pair outside the row's top K scores more (-inf: none outside)
    col_kth: np.ndarray


def candidates(problem: Problem, k: int, tick: Tick | None = None) -> Candidates:
    """Each mentee's ``k`` best eligible mentors, and each mentor's ``k`` best mentees where
    the mentees' lists name that mentor fewer than ``k`` times; scored exactly."""
    n, m = problem.n, problem.m
    threshold = problem.screen_threshold
    row_k = min(k, m)
    rows, cols, values = [], [], []
    row_allowed = np.full(n, -np.inf, np.float32)
    row_eligible = np.full(n, -np.inf, np.float32)
    row_kth = np.full(n, -np.inf, np.float32)
    col_allowed = np.full(m, -np.inf, np.float32)
    step = problem.block_rows()
    for start in range(0, n, step):
        stop = min(n, start + step)
        scores, r_max, c_max = problem.screen(slice(start, stop), maxima=True)
        row_allowed[start:stop] = r_max
        np.maximum(col_allowed, c_max, out=col_allowed)
        if row_k:
            idx = np.argpartition(scores, m - row_k, axis=1)[:, m - row_k :]
            vals = np.take_along_axis(scores, idx, axis=1)
            ok = vals >= threshold
            row_eligible[start:stop] = np.where(ok, vals, -np.inf).max(axis=1)
            if row_k < m:
                kth = vals.min(axis=1)
                row_kth[start:stop] = np.where(kth >= threshold, kth, -np.inf)
            rows.append(np.broadcast_to(np.arange(start, stop)[:, None], idx.shape)[ok])
            cols.append(idx[ok])
            values.append(vals[ok])
        if tick:
            tick(0.8 * stop / max(1, n))
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    col_eligible = np.full(m, -np.inf, np.float32)
    col_kth = np.full(m, np.inf, np.float32)
    if len(c):
        np.maximum.at(col_eligible, c, np.concatenate(values))
    sparse = np.flatnonzero(np.bincount(c, minlength=m) < min(k, n))
    if sparse.size and n:
        top_r, top_c, best, kth = _column_tops(problem, sparse, min(k, n), tick)
        col_eligible[sparse] = np.maximum(col_eligible[sparse], best)
        col_kth[sparse] = kth
        r = np.concatenate([r, top_r])
        c = np.concatenate([c, top_c])
    r, c = _unique_pairs(r, c, m)
    weights, eligible = problem.exact(r, c)
    return Candidates(
        r[eligible],
        c[eligible],
        weights[eligible],
        row_allowed,
        col_allowed,
        row_eligible,
        col_eligible,
        row_kth,
        col_kth,
    )


def _column_tops(problem: Problem, cols: np.ndarray, k: int, tick: Tick | None):
    """For the given mentors: their ``k`` best eligible mentees, the best score and the
    ``k``-th best (-inf when they have fewer than ``k`` eligible mentees)."""
    n = problem.n
    threshold = problem.screen_threshold
    out_r, out_c, best, kth = [], [], [], []
    step = max(1, 2_000_000 // max(1, n))
    for start in range(0, len(cols), step):
        block = cols[start : start + step]
        scores = np.ascontiguousarray(problem.screen(slice(None), block).T)
        idx = np.argpartition(scores, n - k, axis=1)[:, n - k :]
        vals = np.take_along_axis(scores, idx, axis=1)
        ok = vals >= threshold
        out_r.append(idx[ok])
        out_c.append(np.broadcast_to(block[:, None], idx.shape)[ok])
        best.append(np.where(ok, vals, -np.inf).max(axis=1))
        low = vals.min(axis=1)
        kth.append(np.where((low >= threshold) & (k < n), low, -np.inf))
        if tick:
            tick(0.8 + 0.2 * min(1.0, (start + step) / len(cols)))
    return (
        np.concatenate(out_r),
        np.concatenate(out_c),
        np.concatenate(best),
        np.concatenate(kth),
    )


def _unique_pairs(r: np.ndarray, c: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    key = np.unique(r.astype(np.int64) * max(1, m) + c)
    return key // max(1, m), key % max(1, m)


@frozen
class Restrictions:
    """A branch of the search: mentees kept off the mentee side, lowered slots, banned pairs."""

    removed: frozenset[int] = frozenset()
    caps: tuple[tuple[int, int], ...] = ()
    banned: frozenset[tuple[int, int]] = frozenset()

    def slots(self, slots: np.ndarray) -> np.ndarray:
        """The mentors' slots in this branch."""
        out = slots.copy()
        for col, cap in self.caps:
            out[col] = min(out[col], cap)
        return out

    def keep(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Which of these pairs the branch still allows."""
        keep = np.ones(len(rows), bool)
        if self.removed:
            keep &= ~np.isin(rows, np.fromiter(self.removed, np.int64))
        for r, c in self.banned:
            keep &= ~((rows == r) & (cols == c))
        return keep


@frozen
class Relaxed:
    """An optimal assignment of one branch, with its dual prices."""

    mentor_of: np.ndarray  # per mentee row: mentor column or -1
    weight_of: np.ndarray  # per mentee row: the pair's score (0 when unmatched)
    value: float
    row_price: np.ndarray
    col_price: np.ndarray
    proven: bool  # the dual prices hold for every eligible pair, not only the candidates


def assign(n: int, slots: np.ndarray, rows, cols, weights) -> Relaxed:
    """The maximum-weight assignment over the given pairs, with LP dual prices."""
    m = len(slots)
    live = slots[cols] > 0
    rows, cols, weights = rows[live], cols[live], weights[live]
    offsets = np.concatenate([[0], np.cumsum(slots)]).astype(np.int64)
    total_slots = int(offsets[-1])
    reps = slots[cols].astype(np.int64)
    edge_rows = np.repeat(rows, reps)
    edge_weights = np.repeat(weights, reps)
    first = np.repeat(offsets[cols], reps)
    starts = np.repeat(np.cumsum(reps) - reps, reps)
    edge_cols = first + (np.arange(len(edge_rows)) - starts)
    all_rows = np.concatenate([edge_rows, np.arange(n)])
    all_cols = np.concatenate([edge_cols, total_slots + np.arange(n)])
    all_weights = np.concatenate([edge_weights, np.zeros(n)])
    ceiling = (all_weights.max() if len(all_weights) else 0.0) + 1.0
    width = total_slots + n
    try:
        row_ind, col_ind = (
            full_matching(n, width, all_rows, all_cols, ceiling - all_weights)
            if n
            else (all_rows[:0],) * 2
        )
    except ValueError:
        # Every mentee has a column of its own, so a full matching exists; should the
        # solver still refuse, fall back to best-pair-first and claim nothing about it.
        mentor_of, weight_of = greedy(n, slots, rows, cols, weights)
        value = float(weight_of.sum())
        return Relaxed(mentor_of, weight_of, value, np.zeros(n), np.zeros(m), False)
    matched_col = np.empty(n, np.int64)
    matched_col[row_ind] = col_ind
    order = np.lexsort((all_cols, all_rows))
    keys = all_rows[order] * width + all_cols[order]
    pos = np.searchsorted(keys, np.arange(n) * width + matched_col)
    matched_weight = all_weights[order][pos]
    prices = _column_prices(width, all_rows, all_cols, all_weights, matched_col, matched_weight)
    proven = prices is not None
    if prices is None:
        prices = np.zeros(width)
    owner = np.repeat(np.arange(m), slots)
    real = matched_col < total_slots
    mentor_of = np.full(n, -1, np.int64)
    mentor_of[real] = owner[matched_col[real]]
    weight_of = np.where(real, matched_weight, 0.0)
    row_price = matched_weight - prices[matched_col]
    col_price = np.full(m, np.inf)
    if total_slots:
        col_price[slots > 0] = np.minimum.reduceat(prices[:total_slots], offsets[:-1][slots > 0])
    return Relaxed(mentor_of, weight_of, float(weight_of.sum()), row_price, col_price, proven)


def full_matching(n: int, width: int, rows, cols, costs) -> tuple[np.ndarray, np.ndarray]:
    """scipy's sparse Jonker-Volgenant solver on an ``n x width`` graph: the minimum-cost
    matching that covers every row (ValueError when none exists)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    graph = sp.csr_array((costs, (rows, cols)), shape=(n, width))
    graph.sort_indices()
    return min_weight_full_bipartite_matching(graph)


def _column_prices(width, rows, cols, weights, matched_col, matched_weight):
    """The smallest dual prices of the columns (None if the matching is not optimal).

    A column's price ``p`` must satisfy ``p[j] >= p[matched_col[i]] + w(i, j) - w(i, matched)``
    for every candidate pair ``(i, j)``, be 0 on a free column and never negative. The
    least such prices are longest paths, found as shortest paths (Bellman-Ford on a
    frontier) over arcs ``matched_col[i] -> j`` of length ``w(i, matched) - w(i, j)``.
    Small column prices leave each mentee the largest share of its pair's score, so the
    fewest left-out pairs look worth adding.
    """
    heads = matched_col[rows]
    arcs = cols != heads
    src, dst = heads[arcs], cols[arcs]
    length = matched_weight[rows[arcs]] - weights[arcs]
    order = np.argsort(src, kind="stable")
    src, dst, length = src[order], dst[order], length[order]
    indptr = np.searchsorted(src, np.arange(width + 1))
    dist = np.zeros(width)
    frontier = np.arange(width)
    for _ in range(width + 2):
        begin = indptr[frontier]
        count = indptr[frontier + 1] - begin
        total = int(count.sum())
        if not total:
            break
        arc = np.repeat(begin - np.concatenate([[0], np.cumsum(count)[:-1]]), count)
        arc += np.arange(total)
        best = np.zeros(width)
        np.minimum.at(best, dst[arc], dist[src[arc]] + length[arc])
        better = best < dist - 1e-12 * (1.0 + np.abs(best))
        dist[better] = best[better]
        frontier = np.flatnonzero(better)
        if not frontier.size:
            break
    else:
        return None
    prices = -dist
    used = np.zeros(width, bool)
    used[matched_col] = True
    if np.any(prices[~used] > 1e-9 * (1.0 + np.abs(prices).max(initial=0.0))):
        return None
    prices[~used] = 0.0
    return prices


@define
class Pool:
    """The growing set of candidate pairs shared by every branch of one solve."""

    rows: np.ndarray
    cols: np.ndarray
    weights: np.ndarray
    m: int
    keys: set[int] = field(factory=set)

    def __attrs_post_init__(self) -> None:
        self.keys = set((self.rows * max(1, self.m) + self.cols).tolist())

    def add(self, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray) -> int:
        """Add pairs not yet in the pool; returns how many were new."""
        keys = rows * max(1, self.m) + cols
        new = np.array([k not in self.keys for k in keys.tolist()], bool)
        if not new.any():
            return 0
        self.rows = np.concatenate([self.rows, rows[new]])
        self.cols = np.concatenate([self.cols, cols[new]])
        self.weights = np.concatenate([self.weights, weights[new]])
        self.keys.update(keys[new].tolist())
        return int(new.sum())


def price(
    problem: Problem,
    found: Candidates,
    relaxed: Relaxed,
    slots: np.ndarray,
    limits: Restrictions,
    margin: float = 0.0,
):
    """Eligible pairs outside the pool whose score beats, or comes within ``margin`` of,
    their mentee's and mentor's dual prices, and which of them beat the prices outright.

    A pair outside the pool lies outside its mentee's top K, so it scores at most that
    mentee's ``row_kth`` (and its mentor's ``col_kth``, where known). Mentees are taken
    in order of how far that bound exceeds their price, and each block of them is
    scored only against the mentors cheap enough to matter.
    """
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool))
    live = np.flatnonzero(slots > 0)
    if not live.size or not problem.n:
        return empty
    threshold = problem.screen_threshold
    row_price, col_price = relaxed.row_price, relaxed.col_price
    bound = found.row_kth.astype(np.float64)
    with np.errstate(invalid="ignore"):
        gap = bound - row_price
    slack = SCREEN_TOLERANCE * (1.0 + np.abs(np.where(np.isfinite(bound), bound, 0.0)))
    worth = np.isfinite(bound) & (gap > col_price[live].min() - margin - slack)
    if limits.removed:
        worth[list(limits.removed)] = False
    rows = np.flatnonzero(worth)
    if not rows.size:
        return empty
    rows = rows[np.argsort(-gap[rows], kind="stable")]
    cols = live[np.argsort(col_price[live], kind="stable")]
    prices = col_price[cols]
    col_room = found.col_kth[cols].astype(np.float64) - prices
    out_r, out_c = [], []
    step = problem.block_rows(len(cols))
    for start in range(0, len(rows), step):
        block = rows[start : start + step]
        reach = gap[block].max() + margin + slack[block].max()
        upto = int(np.searchsorted(prices, reach, side="left"))
        lowest = row_price[block].min() - margin - SCREEN_TOLERANCE
        block_cols = cols[:upto][col_room[:upto] > lowest]
        if not block_cols.size:
            continue
        scores = problem.screen(block, block_cols)
        bar = row_price[block][:, None] + col_price[block_cols][None, :] - margin
        bar -= SCREEN_TOLERANCE * (1.0 + np.abs(bar))
        hit_r, hit_c = np.nonzero((scores >= threshold) & (scores > bar))
        out_r.append(block[hit_r])
        out_c.append(block_cols[hit_c])
    if not out_r:
        return empty
    r, c = np.concatenate(out_r), np.concatenate(out_c)
    if limits.banned:
        keep = limits.keep(r, c)
        r, c = r[keep], c[keep]
    weights, eligible = problem.exact(r, c)
    bar = row_price[r] + col_price[c]
    beats = weights > bar + PRICE_TOLERANCE * (1.0 + np.abs(bar))
    near = eligible & (weights > bar - margin)
    return r[near], c[near], weights[near], beats[near]


def relax(
    problem: Problem,
    found: Candidates,
    pool: Pool,
    slots: np.ndarray,
    limits: Restrictions,
    pricing: bool,
    tick: Tick | None = None,
) -> Relaxed:
    """The optimum of one branch; with ``pricing``, proven over every eligible pair."""
    branch_slots = limits.slots(slots)
    for round_ in range(MAX_PRICING_ROUNDS):
        if tick:
            tick(1.0 - 0.5**round_)
        keep = limits.keep(pool.rows, pool.cols)
        relaxed = assign(
            problem.n, branch_slots, pool.rows[keep], pool.cols[keep], pool.weights[keep]
        )
        if not pricing or not relaxed.proven:
            return _unproven(relaxed)
        r, c, w, beats = price(problem, found, relaxed, branch_slots, limits, PRICE_MARGIN)
        if not beats.any():
            return relaxed
        if not pool.add(r, c, w):
            return _unproven(relaxed)
    return _unproven(relaxed)


def _unproven(relaxed: Relaxed) -> Relaxed:
    return Relaxed(
        relaxed.mentor_of,
        relaxed.weight_of,
        relaxed.value,
        relaxed.row_price,
        relaxed.col_price,
        False,
    )


@frozen
class Dual:
    """A person with role ``both`` on both sides: their row, column and shared budget."""

    row: int
    col: int
    budget: int


@frozen
class Solution:
    """The chosen assignment and how sure we are of it."""

    mentor_of: np.ndarray
    weight_of: np.ndarray
    value: float
    exact: bool
    upper_bound: float
    branches: int
    repaired: bool = False  # the search ran out of budget; conflicts were dropped by hand


def conflicts(mentor_of: np.ndarray, duals: Sequence[Dual]) -> list[tuple]:
    """Where an assignment breaks a rule the relaxation ignores, in a stable order.

    ``("budget", dual)``: the person mentors their whole budget and is also mentored.
    ``("mutual", a, b)``: ``a`` and ``b`` would mentor each other.
    """
    if not duals:
        return []
    load = np.bincount(mentor_of[mentor_of >= 0], minlength=max(d.col for d in duals) + 1)
    found: list[tuple] = []
    by_col = {d.col: d for d in duals}
    for d in duals:
        if mentor_of[d.row] >= 0 and load[d.col] + 1 > d.budget:
            found.append(("budget", d))
        other = by_col.get(int(mentor_of[d.row]))
        mutual = other is not None and other.row != d.row and mentor_of[other.row] == d.col
        if mutual and d.row < other.row:
            found.append(("mutual", d, other))
    return found


def _children(conflict: tuple, limits: Restrictions) -> list[Restrictions]:
    """The two branches that each rule out the conflict."""
    if conflict[0] == "budget":
        d = conflict[1]
        caps = dict(limits.caps)
        lowered = min(caps.get(d.col, d.budget), d.budget) - 1
        not_mentee = Restrictions(limits.removed | {d.row}, limits.caps, limits.banned)
        fewer_mentees = Restrictions(
            limits.removed, tuple(sorted({**caps, d.col: lowered}.items())), limits.banned
        )
        return [not_mentee, fewer_mentees]
    _, a, b = conflict
    return [
        Restrictions(limits.removed, limits.caps, limits.banned | {(b.row, a.col)}),
        Restrictions(limits.removed, limits.caps, limits.banned | {(a.row, b.col)}),
    ]


def _repair(relaxed: Relaxed, duals: Sequence[Dual]) -> tuple[np.ndarray, np.ndarray]:
    """A feasible assignment from a relaxed one: drop the cheaper pair of each conflict."""
    mentor_of, weight_of = relaxed.mentor_of.copy(), relaxed.weight_of.copy()
    while True:
        found = conflicts(mentor_of, duals)
        if not found:
            return mentor_of, weight_of
        conflict = found[0]
        if conflict[0] == "budget":
            d = conflict[1]
            mentees = np.flatnonzero(mentor_of == d.col)
            weakest = mentees[np.lexsort((mentees, weight_of[mentees]))[0]]
            drop = d.row if weight_of[d.row] <= weight_of[weakest] else weakest
        else:
            _, a, b = conflict
            drop = a.row if weight_of[a.row] <= weight_of[b.row] else b.row
        mentor_of[drop], weight_of[drop] = -1, 0.0


def solve(
    problem: Problem,
    found: Candidates,
    slots: np.ndarray,
    duals: Sequence[Dual],
    *,
    pricing: bool,
    max_branches: int,
    time_budget: float = 10.0,
    tick: Tick | None = None,
) -> Solution:
    """The best assignment that respects every rule, by best-first branch and bound."""
    pool = Pool(found.rows.copy(), found.cols.copy(), found.weights.copy(), problem.m)

    def branch(limits: Restrictions, tick: Tick | None = None) -> Relaxed:
        """The optimum of one branch over the shared pool of candidate pairs."""
        return relax(problem, found, pool, slots, limits, pricing, tick)

    return search(branch, duals, max_branches=max_branches, time_budget=time_budget, tick=tick)


Branch = Callable[..., Relaxed]


def search(
    branch: Branch,
    duals: Sequence[Dual],
    *,
    max_branches: int,
    time_budget: float = 10.0,
    tick: Tick | None = None,
) -> Solution:
    """Best-first branch and bound over the conflicts of ``both`` participants.

    ``branch(limits, tick=None)`` returns the optimum of the relaxation restricted by
    ``limits``; the first conflict-free optimum taken from the heap is the answer.
    """
    started = time.monotonic()
    root = branch(Restrictions(), (lambda f: tick(0.5 * f)) if tick else None)
    proven = root.proven
    heap: list[tuple[float, int, Restrictions, Relaxed]] = [(-root.value, 0, Restrictions(), root)]
    counter = 1
    best: Relaxed | None = None
    while heap:
        _, _, limits, relaxed = heap[0]
        found_conflicts = conflicts(relaxed.mentor_of, duals)
        if not found_conflicts:
            best = relaxed
            break
        if counter >= max_branches or time.monotonic() - started > time_budget:
            break
        heapq.heappop(heap)
        for child in _children(found_conflicts[0], limits):
            result = branch(child)
            proven = proven and result.proven
            heapq.heappush(heap, (-result.value, counter, child, result))
            counter += 1
        if tick:
            tick(0.5 + 0.5 * min(1.0, counter / max_branches))
    upper = -heap[0][0] if heap else 0.0
    if best is not None:
        return Solution(best.mentor_of, best.weight_of, best.value, proven, upper, counter)
    mentor_of, weight_of = _repair(heap[0][3], duals)
    value = float(weight_of.sum())
    return Solution(mentor_of, weight_of, value, False, upper, counter, repaired=True)


def greedy(n: int, slots: np.ndarray, rows, cols, weights) -> tuple[np.ndarray, np.ndarray]:
    """Best pair first over the given pairs: the fallback should the exact solver refuse."""
    order = np.lexsort((cols, rows, -weights))
    left = slots.copy()
    mentor_of = np.full(n, -1, np.int64)
    weight_of = np.zeros(n)
    for k in order.tolist():
        r, c = rows[k], cols[k]
        if mentor_of[r] < 0 and left[c] > 0:
            mentor_of[r], weight_of[r] = c, weights[k]
            left[c] -= 1
    return mentor_of, weight_of
