"""Every candidate pair scored at once with numpy, a block of mentees at a time.

Rows are mentees, columns are mentors. ``screen`` scores a block in float32 to find
candidates and to price the solver's answer; ``exact`` recomputes chosen pairs in
float64, adding the terms in the same order as :func:`scoring.explain`, so the solver
optimises exactly the scores the reasons show; ``every_pair`` does the same for a whole
small program at once. Only ``rmcore match`` imports this module, and scipy is imported
only for a vocabulary too large for dense skill matrices.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from rmcore_plugins.matching_skills.scoring import Profile, stage_direction
from rmcore_plugins.matching_skills.settings import Settings, overlap

BLOCK_CELLS = 2_000_000  # cells scored per block: about 8 MB per float32 array
DENSE_VOCABULARY = 1024  # above this many skills, skill sets are multiplied as sparse matrices
FOLDED_TABLE_CELLS = 4_000_000
SCREEN_TOLERANCE = 1e-3  # float32 screening keeps everything this close to a threshold
PENALTY = 1e6  # what a pair sharing too few skills loses in screening


def _codes(values: Sequence) -> tuple[np.ndarray, list]:
    """Integer codes for values, in order of first appearance, and the distinct values."""
    index: dict = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), np.int64, len(values))
    return codes, list(index)


def _is_sparse(matrix) -> bool:
    """Whether a skill matrix is a scipy sparse array (only ever built for a large vocabulary)."""
    return not isinstance(matrix, np.ndarray)


def _incidence(sets: Sequence[frozenset[str]], vocabulary: dict[str, int]):
    """A people x skills 0/1 matrix (dense float32, or CSR for a large vocabulary)."""
    rows, cols = [], []
    for i, skills in enumerate(sets):
        for skill in skills:
            j = vocabulary.get(skill)
            if j is not None:
                rows.append(i)
                cols.append(j)
    shape = (len(sets), len(vocabulary))
    rows_, cols_ = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    if len(vocabulary) <= DENSE_VOCABULARY:
        matrix = np.zeros(shape, np.float32)
        matrix[rows_, cols_] = 1.0
        return matrix
    import scipy.sparse as sp

    return sp.csr_array((np.ones(len(rows), np.float32), (rows_, cols_)), shape)


def _times(left, right) -> np.ndarray:
    """``left @ right`` as a dense float32 array, whichever operands are sparse."""
    product = left @ right
    if _is_sparse(product):
        product = product.toarray()
    return np.asarray(product, dtype=np.float32)


def _columns(matrix, cols: np.ndarray | None):
    """Some columns of a dense or sparse matrix (all when ``cols`` is None)."""
    return matrix if cols is None else matrix[:, cols]


def _stack(blocks: list, horizontal: bool):
    """Dense or sparse blocks side by side (or one above the other)."""
    if any(_is_sparse(b) for b in blocks):
        import scipy.sparse as sp

        return (sp.hstack if horizontal else sp.vstack)(blocks, format="csr")
    return np.hstack(blocks) if horizontal else np.vstack(blocks)


def _vocabulary(offered: Iterable[frozenset[str]], sought: Iterable[frozenset[str]]):
    """Skills that someone on one side offers and someone on the other side seeks."""
    common = set().union(*offered) & set().union(*sought)
    return {skill: i for i, skill in enumerate(sorted(common))}


class Problem:
    """Mentees (rows) and mentors (columns) with everything needed to score any pair."""

    def __init__(
        self,
        mentees: Sequence[Profile],
        mentors: Sequence[Profile],
        settings: Settings,
        forbidden: Iterable[tuple[int, int]] = (),
        extras: np.ndarray | None = None,
    ) -> None:
        self.settings = settings
        self.n, self.m = len(mentees), len(mentors)
        forward = _vocabulary((p.offers for p in mentors), (p.seeks for p in mentees))
        backward = _vocabulary((p.offers for p in mentees), (p.seeks for p in mentors))
        self.vocabulary = len(forward) + len(backward)
        self.mentee_seeks = _incidence([p.seeks for p in mentees], forward)
        self.mentor_offers_t = _incidence([p.offers for p in mentors], forward).T.copy()
        self.mentee_offers = _incidence([p.offers for p in mentees], backward)
        self.mentor_seeks_t = _incidence([p.seeks for p in mentors], backward).T.copy()
        # Both directions in one product: mentee (seeks | offers) x mentor (offers | seeks).
        self.mentee_both = _stack([self.mentee_seeks, self.mentee_offers], horizontal=True)
        self.mentor_both_t = _stack([self.mentor_offers_t, self.mentor_seeks_t], horizontal=False)
        if _is_sparse(self.mentor_both_t):
            self.mentor_both_t = self.mentor_both_t.tocsc()
        self._tables(mentees, mentors)
        pairs = np.array(sorted(set(forbidden)), np.int64).reshape(-1, 2)
        self.forbidden_rows, self.forbidden_cols = pairs[:, 0].copy(), pairs[:, 1].copy()
        self.extras = extras
        self.extras32 = None if extras is None else extras.astype(np.float32)
        floor = settings.min_score if settings.min_score > 0 else 0.0
        slack = SCREEN_TOLERANCE * max(1.0, abs(floor))
        self.screen_threshold = np.float32(floor - slack)

    def _tables(self, mentees: Sequence[Profile], mentors: Sequence[Profile]) -> None:
        """Small lookup tables for the department, career-stage and time-zone terms."""
        s = self.settings
        # Departments get codes shared by both sides; code 0 is "unknown" (empty).
        depts, _ = _codes(["", *(p.department for p in mentees), *(p.department for p in mentors)])
        self.dept_e, self.dept_m = depts[1 : 1 + len(mentees)], depts[1 + len(mentees) :]
        self.stage_e, stages_e = _codes([p.stage for p in mentees])
        self.stage_m, stages_m = _codes([p.stage for p in mentors])
        self.tz_e, zones_e = _codes([p.offsets for p in mentees])
        self.tz_m, zones_m = _codes([p.offsets for p in mentors])
        direction = np.array(
            [[stage_direction(b, a) for b in stages_m] for a in stages_e], np.float64
        ).reshape(len(stages_e), len(stages_m))
        self.stage_table = s.career_stage * direction
        self.stage_ok = direction > 0 if s.reverse_only else np.ones(direction.shape, bool)
        self.tz_table = np.array(
            [
                [s.timezone_overlap * overlap(b, a, s.working_hours) for b in zones_m]
                for a in zones_e
            ],
            np.float64,
        ).reshape(len(zones_e), len(zones_m))
        # Screening folds the small tables into one over (department, stage, zone) groups
        # when that table stays small, else over (stage, zone) with departments apart.
        # Codes are small counts; np.unique would load numpy.ma (10 ms) to find them.
        depts_e = np.count_nonzero(np.bincount(self.dept_e))
        depts_m = np.count_nonzero(np.bincount(self.dept_m))
        size = depts_e * len(stages_e) * len(zones_e) * depts_m * len(stages_m) * len(zones_m)
        self.fold_dept = size <= FOLDED_TABLE_CELLS
        fold = 1 if self.fold_dept else 0
        self.group_e, groups_e = _codes(
            list(zip(self.dept_e * fold, self.stage_e, self.tz_e)) if mentees else []
        )
        self.group_m, groups_m = _codes(
            list(zip(self.dept_m * fold, self.stage_m, self.tz_m)) if mentors else []
        )
        ge = np.array(groups_e, np.int64).reshape(-1, 3)
        gm = np.array(groups_m, np.int64).reshape(-1, 3)
        table = self.stage_table[ge[:, 1]][:, gm[:, 1]] + self.tz_table[ge[:, 2]][:, gm[:, 2]]
        if self.fold_dept:
            table += self.departments(ge[:, 0][:, None], gm[:, 0][None, :])
        table[~self.stage_ok[ge[:, 1]][:, gm[:, 1]]] = -np.inf
        self.group_table = table.astype(np.float32)

    def departments(self, mentee_dept: np.ndarray, mentor_dept: np.ndarray) -> np.ndarray:
        """The cross-department term for department codes (broadcast like numpy)."""
        crosses = (mentee_dept != mentor_dept) & (mentee_dept > 0) & (mentor_dept > 0)
        return np.where(crosses, self.settings.cross_department, 0.0)

    def block_rows(self, columns: int | None = None) -> int:
        """How many mentee rows to score per block."""
        return max(1, BLOCK_CELLS // max(1, self.m if columns is None else columns))

    def _block(self, rows, cols) -> tuple[np.ndarray, np.ndarray]:
        """Float32 scores of a block (-inf where a hard constraint forbids the pair) and
        how many skills flow in each pair, both directions together."""
        s = self.settings
        if s.mentor_skills == s.mentee_skills:
            counts = _times(self.mentee_both[rows], _columns(self.mentor_both_t, cols))
            scores = counts if s.mentor_skills == 1 else counts * np.float32(s.mentor_skills)
            if scores is counts:
                counts = counts.copy()
        else:
            forward = _times(self.mentee_seeks[rows], _columns(self.mentor_offers_t, cols))
            backward = _times(self.mentee_offers[rows], _columns(self.mentor_seeks_t, cols))
            scores = forward * np.float32(s.mentor_skills)
            scores += backward * np.float32(s.mentee_skills)
            forward += backward
            counts = forward
        group_m = self.group_m if cols is None else self.group_m[cols]
        scores += np.take(self.group_table[self.group_e[rows]], group_m, axis=1)
        if not self.fold_dept:
            dept_m = self.dept_m if cols is None else self.dept_m[cols]
            scores += self.departments(self.dept_e[rows][:, None], dept_m[None, :]).astype(
                np.float32
            )
        if self.extras32 is not None:
            block = self.extras32[rows]
            scores += block if cols is None else block[:, cols]
        self._forbid(scores, rows, cols)
        return scores, counts

    def shared(self, rows, cols: np.ndarray | None = None) -> np.ndarray:
        """How many skills flow between the pairs of a block, both directions together."""
        return _times(self.mentee_both[rows], _columns(self.mentor_both_t, cols))

    def allowed(self, rows, cols: np.ndarray | None = None) -> np.ndarray:
        """Float32 scores of a block, -inf only where a hard constraint forbids the pair."""
        return self._block(rows, cols)[0]

    def screen(
        self, rows: np.ndarray | slice, cols: np.ndarray | None = None, *, maxima: bool = False
    ):
        """Float32 scores of a block; a pair that is not eligible scores below
        ``screen_threshold`` (-inf when a hard constraint forbids it).

        With ``maxima``, also return the best *allowed* score of each row and of each
        column: the best pair that no hard constraint forbids, whatever its score.
        """
        scores, counts = self._block(rows, cols)
        if maxima:
            row_max = scores.max(axis=1) if scores.shape[1] else np.full(len(scores), -np.inf)
            col_max = scores.max(axis=0) if scores.shape[0] else np.full(scores.shape[1], -np.inf)
        needed = self.settings.min_shared_skills
        if needed > 0:
            # Too few shared skills: push the score far below any threshold.
            np.minimum(counts, np.float32(needed), out=counts)
            counts -= np.float32(needed)
            counts *= np.float32(PENALTY)
            scores += counts
        if maxima:
            return scores, row_max, col_max
        return scores

    def _forbid(self, scores: np.ndarray, rows, cols) -> None:
        """Set -inf where a hard constraint forbids the pair."""
        if not len(self.forbidden_rows) or not scores.size:
            return
        row_ids = np.arange(self.n)[rows]
        lo, hi = np.searchsorted(self.forbidden_rows, [row_ids.min(), row_ids.max() + 1])
        if lo == hi:
            return
        fr, fc = self.forbidden_rows[lo:hi], self.forbidden_cols[lo:hi]
        local_row = np.full(self.n, -1, np.int64)
        local_row[row_ids] = np.arange(len(row_ids))
        if cols is None:
            local_col = fc
        else:
            where = np.full(self.m, -1, np.int64)
            where[cols] = np.arange(len(cols))
            local_col = where[fc]
        keep = (local_row[fr] >= 0) & (local_col >= 0)
        scores[local_row[fr[keep]], local_col[keep]] = -np.inf

    def exact(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float64 scores of the pairs ``(rows[k], cols[k])`` and whether each is eligible.

        Hard constraints other than ``reverse_only`` are not checked here: callers pass
        pairs that ``screen`` allowed.
        """
        s = self.settings
        count = len(rows)
        scores = np.empty(count, np.float64)
        eligible = np.empty(count, bool)
        step = 50_000
        for start in range(0, count, step):
            r, c = rows[start : start + step], cols[start : start + step]
            forward = _pair_counts(self.mentee_seeks, self.mentor_offers_t, r, c)
            backward = _pair_counts(self.mentee_offers, self.mentor_seeks_t, r, c)
            w = s.mentor_skills * forward
            w = w + s.mentee_skills * backward
            w = w + self.departments(self.dept_e[r], self.dept_m[c])
            w = w + self.stage_table[self.stage_e[r], self.stage_m[c]]
            w = w + self.tz_table[self.tz_e[r], self.tz_m[c]]
            if self.extras is not None:
                w = w + self.extras[r, c]
            ok = (forward + backward >= s.min_shared_skills) & (w >= s.min_score) & (w > 0)
            ok &= self.stage_ok[self.stage_e[r], self.stage_m[c]]
            scores[start : start + step] = w
            eligible[start : start + step] = ok
        return scores, eligible

    def every_pair(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Float64 scores of every pair, bit for bit those of ``exact``; how many skills
        flow in each pair, both directions together; and whether the hard constraints
        (``reverse_only``, reporting lines, earlier pairs, themselves) allow it.

        Dense ``n x m`` arrays: for small programs only.
        """
        s = self.settings
        forward = _times(self.mentee_seeks, self.mentor_offers_t)
        backward = _times(self.mentee_offers, self.mentor_seeks_t)
        # Each term added in turn as ``exact`` adds them, through one scratch array (a
        # weight of 1 multiplies nothing: x * 1.0 == x exactly).
        scores = np.multiply(forward, s.mentor_skills, dtype=np.float64)
        term = np.empty_like(scores)
        if s.mentee_skills == 1.0:
            scores += backward
        else:
            scores += np.multiply(backward, s.mentee_skills, out=term, dtype=np.float64)
        crosses = np.not_equal(self.dept_e[:, None], self.dept_m[None, :])
        crosses &= (self.dept_e > 0)[:, None]
        crosses &= (self.dept_m > 0)[None, :]
        np.add(scores, s.cross_department, out=scores, where=crosses)
        scores += np.take(self.stage_table[self.stage_e], self.stage_m, axis=1, out=term)
        scores += np.take(self.tz_table[self.tz_e], self.tz_m, axis=1, out=term)
        if self.extras is not None:
            scores += self.extras
        forward += backward
        allowed = np.take(self.stage_ok[self.stage_e], self.stage_m, axis=1)
        allowed[self.forbidden_rows, self.forbidden_cols] = False
        return scores, forward, allowed


def _pair_counts(left, right_t, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """For each k, how many skills row ``rows[k]`` of ``left`` shares with column ``cols[k]``."""
    if left.shape[1] == 0 or not len(rows):
        return np.zeros(len(rows), np.float64)
    if _is_sparse(left):
        import scipy.sparse as sp

        a = left[rows]
        b = sp.csr_array(right_t.T)[cols]
        return np.asarray(a.multiply(b).sum(axis=1), np.float64).ravel()
    return np.einsum("ij,ji->i", left[rows], right_t[:, cols], dtype=np.float64)
