"""Matching quality and speed: ``rmcore match`` next to the true optimum and greedy.

    python benchmarks/match.py                      # 1,000, 5,000 and 10,000 per side
    python benchmarks/match.py --sizes 1000,5000
    python benchmarks/match.py --no-reference       # skip the dense optimum (slow at 10,000)

For each size it builds a program of N mentors and N mentees through the engine: about
60 skills with Zipf-like popularity (digital skills common among the early-career
mentors, leadership and communication skills among the tenured mentees), 12
departments, five time zones, a few reporting lines, capacities of 1 to 3. Then, each
in a process of its own so that peak memory is measured per run:

- ``rmcore match --format json``, end to end from the database file;
- the same strategy without its pricing pass (the top-K graph only, as used above
  ``matching_skills.exact_limit`` people per side);
- greedy best-pair-first over every eligible pair;
- the reference optimum: every pair scored into a dense matrix (one column per free
  place) and solved by scipy's ``linear_sum_assignment``.

It prints time, peak memory and total score as a fraction of the reference optimum,
and the machine's load average. ``rmcore match`` and ``rmcore --help`` (start-up alone)
run alternately, best of ``--repeat`` each, so a busy moment slows both. Every process
runs with compiled bytecode cached, as after a normal install (the cache goes to a
temporary folder; ``PYTHONDONTWRITEBYTECODE`` is ignored, as in benchmarks/startup.py).
The other measurements import their libraries before the clock starts.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from measure import peak_run

PROGRAM = "bench"
DIGITAL = [
    "AI tools", "prompt engineering", "data analytics", "automation", "spreadsheets",
    "social media", "cybersecurity", "cloud services", "python", "SQL", "dashboards",
    "generative AI", "no-code apps", "video editing", "online collaboration", "UX research",
    "machine learning", "digital marketing", "agile tools", "chatbots", "data visualisation",
    "mobile apps", "content creation", "API basics", "search engine optimisation",
    "remote facilitation", "CRM systems", "open source", "web3", "low-code",
]  # fmt: skip
HUMAN = [
    "leadership", "communication", "negotiation", "judgement", "strategy",
    "stakeholder management", "public speaking", "coaching", "conflict resolution",
    "decision making", "delegation", "budgeting", "storytelling", "influencing",
    "change management", "hiring", "mentoring", "networking", "crisis management",
    "time management", "business acumen", "feedback", "ethics", "resilience",
    "presenting to the board", "customer empathy", "writing", "prioritisation",
    "organisational politics", "long-term planning",
]  # fmt: skip
ZONES = [
    ("Europe/London", 0.40), ("Europe/Berlin", 0.20), ("America/New_York", 0.20),
    ("Asia/Singapore", 0.10), ("America/Los_Angeles", 0.10),
]  # fmt: skip
JUNIOR = [("Gen Z", 0.55), ("early-career", 0.15), ("Millennial", 0.30)]
SENIOR = [("Gen X", 0.40), ("Baby Boomer", 0.20), ("tenured", 0.15), ("Millennial", 0.25)]


def _zipf(rng: random.Random, pool: list[str], count: int) -> list[str]:
    weights = [1 / (rank + 1) ** 1.07 for rank in range(len(pool))]
    chosen: list[str] = []
    while len(chosen) < count:
        skill = rng.choices(pool, weights)[0]
        if skill not in chosen:
            chosen.append(skill)
    return chosen


def _spelling(rng: random.Random, skill: str) -> str:
    """Operators type skills many ways; normalisation must see through it."""
    roll = rng.random()
    if roll < 0.1:
        return skill.lower().replace(" ", "-")
    if roll < 0.2:
        return skill.upper()
    return skill


def _pick(rng: random.Random, options: list[tuple[str, float]]) -> str:
    return rng.choices([o for o, _ in options], [w for _, w in options])[0]


def population(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """N mentors and N mentees as ``Join`` keyword arguments."""
    rng = random.Random(seed)
    people = []
    for i in range(n):
        offers = _zipf(rng, DIGITAL, rng.randint(2, 4))
        seeks = _zipf(rng, HUMAN, rng.randint(1, 3))
        if rng.random() < 0.15:
            offers.append(_zipf(rng, HUMAN, 1)[0])
        people.append(
            {
                "person_id": f"m{i:05d}",
                "name": f"Mentor {i}",
                "email": f"m{i}@example.org",
                "role": "mentor",
                "generation": _pick(rng, JUNIOR),
                "department": f"dept-{rng.randrange(12):02d}",
                "timezone": _pick(rng, ZONES),
                "skills_offered": [_spelling(rng, s) for s in offers],
                "skills_sought": [_spelling(rng, s) for s in seeks if s not in offers],
                "capacity": rng.choices([1, 2, 3], [0.70, 0.25, 0.05])[0],
            }
        )
    for i in range(n):
        offers = _zipf(rng, HUMAN, rng.randint(2, 4))
        seeks = _zipf(rng, DIGITAL, rng.randint(1, 3))
        if rng.random() < 0.15:
            seeks.append(_zipf(rng, HUMAN, 1)[0])
        mentor_report = rng.randrange(n) if rng.random() < 0.05 else None
        people.append(
            {
                "person_id": f"e{i:05d}",
                "name": f"Mentee {i}",
                "email": f"e{i}@example.org",
                "role": "mentee",
                "generation": _pick(rng, SENIOR),
                "department": f"dept-{rng.randrange(12):02d}",
                "timezone": _pick(rng, ZONES),
                "skills_offered": [_spelling(rng, s) for s in offers],
                "skills_sought": [_spelling(rng, s) for s in dict.fromkeys(seeks)
                                  if s not in offers],
                "capacity": 0,
            }
        )  # fmt: skip
        if mentor_report is not None:
            people[mentor_report]["manager_id"] = f"e{i:05d}"
    return people


def build(path: Path, n: int, seed: int) -> None:
    """A database holding the program (reused when it already exists)."""
    from rmcore.commands import Join
    from rmcore.engine import Engine

    if path.exists():
        return
    people = population(n, seed)
    with Engine.open(path, create=True) as engine:
        for start in range(0, len(people), 5000):
            batch = people[start : start + 5000]
            commands = [Join(at="2026-01-05T09:00:00Z", **p) for p in batch]
            engine.execute(PROGRAM, commands, actor="bench")


def _libraries(reference: bool = False) -> None:
    """Import every library a measurement may use, so that no timing includes an import."""
    import importlib.util

    import numpy  # noqa: F401
    import rmcore_plugins.matching_skills.strategy  # noqa: F401
    import scipy.sparse.csgraph  # noqa: F401

    if importlib.util.find_spec("lap") is not None:
        import lap  # noqa: F401
    if reference:
        import scipy.optimize  # noqa: F401


def _child(mode: str, db: str) -> None:
    """Run one measured computation and print its result as JSON."""
    if mode == "cli":
        _in_process(db)
        return
    _libraries(reference=mode == "reference")
    from rmcore.engine import Engine
    from rmcore.matching import snapshot

    with Engine.open(db) as engine:
        people, pairs, config, _ = snapshot(engine.conn, PROGRAM)
    if mode == "topk":
        from rmcore_plugins.matching_skills.strategy import propose

        started = time.perf_counter()
        result = propose(PROGRAM, people, pairs, {**config, "matching_skills.exact_limit": 0})
        seconds = time.perf_counter() - started
        print(json.dumps({"total": result["summary"]["total_score"], "seconds": seconds}))
        return
    problem, slots = _problem(people, pairs, config)
    if mode == "greedy":
        started = time.perf_counter()
        total = greedy(problem, slots)
        print(json.dumps({"total": total, "seconds": time.perf_counter() - started}))
        return
    started = time.perf_counter()
    total, solve = optimum(problem, slots)
    print(json.dumps({"total": total, "seconds": time.perf_counter() - started, "lsa": solve}))


def _in_process(db: str) -> None:
    """``rmcore match`` once in this process, after the imports: the work without start-up."""
    import contextlib
    import io

    from rmcore.match_command import single_threaded_blas

    single_threaded_blas()  # as the command does before numpy loads
    _libraries()
    from rmcore.cli import cli

    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        cli(["--db", db, "--program", PROGRAM, "match", "--format", "json"], standalone_mode=False)
    seconds = time.perf_counter() - started
    rows = json.loads(out.getvalue())
    total = sum(row["score"] for row in rows if row["kind"] == "pair")
    print(json.dumps({"total": total, "seconds": seconds}))


def _problem(people, pairs, config):
    import numpy as np
    from rmcore_plugins.matching_skills.problem import Problem
    from rmcore_plugins.matching_skills.scoring import profile
    from rmcore_plugins.matching_skills.settings import load_settings
    from rmcore_plugins.matching_skills.strategy import sides

    settings = load_settings(config)
    split = sides(people, pairs)
    problem = Problem(
        [profile(p, settings) for p in split.mentees],
        [profile(p, settings) for p in split.mentors],
        settings,
        split.forbidden,
    )
    return problem, np.array(split.slots, np.int64)


def dense_block(problem, start: int, stop: int):
    """Float64 scores of mentee rows ``start:stop`` against every mentor; 0 if not eligible.

    Written independently of the strategy's solver: the same terms in the same order
    as ``scoring.explain``, straight from the problem's skill matrices and tables.
    """
    import numpy as np

    s = problem.settings
    rows = slice(start, stop)
    forward = np.asarray(problem.mentee_seeks[rows], np.float64) @ problem.mentor_offers_t
    backward = np.asarray(problem.mentee_offers[rows], np.float64) @ problem.mentor_seeks_t
    w = s.mentor_skills * forward
    w = w + s.mentee_skills * backward
    dept_e, dept_m = problem.dept_e[rows][:, None], problem.dept_m[None, :]
    w = w + np.where((dept_e != dept_m) & (dept_e > 0) & (dept_m > 0), s.cross_department, 0.0)
    w = w + problem.stage_table[problem.stage_e[rows]][:, problem.stage_m]
    w = w + problem.tz_table[problem.tz_e[rows]][:, problem.tz_m]
    ok = (forward + backward >= s.min_shared_skills) & (w >= s.min_score) & (w > 0)
    ok &= problem.stage_ok[problem.stage_e[rows]][:, problem.stage_m]
    inside = (problem.forbidden_rows >= start) & (problem.forbidden_rows < stop)
    ok[problem.forbidden_rows[inside] - start, problem.forbidden_cols[inside]] = False
    return np.where(ok, w, 0.0)


def optimum(problem, slots) -> tuple[float, float]:
    """The true optimum: a dense mentees x places matrix solved by linear_sum_assignment."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    places = int(slots.sum())
    owner = np.repeat(np.arange(problem.m), slots)
    cost = np.empty((problem.n, places), np.float64)  # minimise -score, rows <= columns
    step = max(1, 2_000_000 // max(1, problem.m))
    for start in range(0, problem.n, step):
        stop = min(problem.n, start + step)
        np.negative(dense_block(problem, start, stop)[:, owner], out=cost[start:stop])
    started = time.perf_counter()
    rows, cols = linear_sum_assignment(cost)
    solve = time.perf_counter() - started
    return float(-cost[rows, cols].sum()), solve


def greedy(problem, slots) -> float:
    """Best pair first: repeatedly take the highest-scoring pair whose two people are free."""
    import numpy as np

    top = 64
    heap: list[tuple[float, int, int]] = []
    lists: dict[int, list[tuple[float, int]]] = {}
    step = max(1, 2_000_000 // max(1, problem.m))

    def ranked(block, start: int) -> None:
        """Each row's best mentors, best first, and the row's first offer on the heap."""
        k = min(top, problem.m)
        idx = np.argpartition(-block, k - 1, axis=1)[:, :k]
        for offset, row in enumerate(idx):
            i = start + offset
            pairs = sorted((-block[offset, j], j) for j in row if block[offset, j] > 0)
            lists[i] = pairs
            if pairs:
                heap.append((pairs[0][0], i, 0))

    for start in range(0, problem.n, step):
        ranked(dense_block(problem, start, min(problem.n, start + step)), start)
    heapq.heapify(heap)
    left = slots.copy()
    total = 0.0
    while heap:
        negative, i, k = heapq.heappop(heap)
        j = lists[i][k][1]
        if left[j] > 0:
            left[j] -= 1
            total -= negative
            continue
        k += 1
        if k == len(lists[i]) and len(lists[i]) == min(top, problem.m):
            row = dense_block(problem, i, i + 1)[0]
            lists[i] = sorted((-row[j], j) for j in np.flatnonzero(row > 0))
        if k < len(lists[i]):
            heapq.heappush(heap, (lists[i][k][0], i, k))
    return total


def environment(cache: str) -> dict[str, str]:
    """This environment, with bytecode cached in ``cache`` and rmcore's own settings left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMCORE_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = cache
    return env


def load_average() -> float:
    """The machine's load average over the last minute."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def measured(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run a process; its wall time, peak memory in MB and standard output."""
    with tempfile.TemporaryFile() as out:
        code, seconds, peak = peak_run(command, stdout=out, stderr=subprocess.DEVNULL, env=env)
        out.seek(0)
        text = out.read().decode()
    if code:
        raise SystemExit(f"{command} exited {code}")
    return seconds, peak, text


def run(
    n: int, folder: Path, seed: int, reference: bool, repeat: int, env: dict[str, str]
) -> list[dict]:
    """Every measurement for one size."""
    db = folder / f"match-{n}.db"
    build(db, n, seed)
    python = sys.executable
    match = [python, "-m", "rmcore", "--db", str(db), "--program", PROGRAM, "match",
             "--format", "json"]  # fmt: skip
    start_up = [python, "-m", "rmcore", "--help"]
    for command in (start_up, match):  # warm-up: fills the bytecode cache
        measured(command, env)
    best = {"match": None, "help": None}
    peak, text, loads = 0.0, "", [load_average()]
    for _ in range(repeat):
        for name, command in (("help", start_up), ("match", match)):
            seconds, memory, output = measured(command, env)
            best[name] = seconds if best[name] is None else min(best[name], seconds)
            if name == "match":
                peak, text = max(peak, memory), output
        loads.append(load_average())
    found = json.loads(text)
    total = sum(row["score"] for row in found if row["kind"] == "pair")
    rows = [
        {"what": "rmcore match (end to end)", "seconds": best["match"], "mb": peak,
         "total": total, "pairs": sum(r["kind"] == "pair" for r in found),
         "load": (min(loads), max(loads))},
        {"what": "rmcore --help (start-up only)", "seconds": best["help"], "mb": 0.0,
         "total": 0.0},
    ]  # fmt: skip
    for mode, label in (
        ("cli", "rmcore match (after start-up)"),
        ("topk", "top-K graph only"),
        ("greedy", "greedy best-pair-first"),
    ):
        seconds, memory, text = measured([python, __file__, "--child", mode, str(db)], env)
        result = json.loads(text)
        rows.append({"what": label, "seconds": result["seconds"], "mb": memory,
                     "total": result["total"]})  # fmt: skip
    if reference:
        seconds, memory, text = measured([python, __file__, "--child", "reference", str(db)], env)
        result = json.loads(text)
        rows.append({"what": "linear_sum_assignment (dense)", "seconds": result["seconds"],
                     "mb": memory, "total": result["total"], "solve": result["lsa"]})  # fmt: skip
        for row in rows:
            if row["total"]:
                row["ratio"] = row["total"] / result["total"] if result["total"] else 1.0
    return rows


def main() -> None:
    """Parse arguments, run every size, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000", help="people per side")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs of rmcore match (best)")
    parser.add_argument("--no-reference", action="store_true", help="skip the dense optimum")
    parser.add_argument("--folder", default=None, help="keep the databases here")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    with (
        tempfile.TemporaryDirectory() as scratch,
        tempfile.TemporaryDirectory(prefix="rmcore-pycache-") as cache,
    ):
        env = environment(cache)
        folder = Path(args.folder or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        header = f"{'per side':>8}  {'':<31}{'seconds':>8}  {'peak MB':>8}  {'total':>10}  ratio"
        print(header)
        print("-" * len(header))
        for n in sizes:
            for row in run(n, folder, args.seed, not args.no_reference, args.repeat, env):
                ratio = f"{row['ratio']:.4%}" if "ratio" in row else "-"
                extra = f"  (solve {row['solve']:.1f} s)" if "solve" in row else ""
                extra += f"  {row['pairs']} pairs" if "pairs" in row else ""
                if "load" in row:
                    extra += f"  (load average {row['load'][0]:.2f}-{row['load'][1]:.2f})"
                mb = f"{row['mb']:>8.0f}" if row["mb"] else f"{'-':>8}"
                total = f"{row['total']:>10.1f}" if row["total"] else f"{'-':>10}"
                print(
                    f"{n:>8}  {row['what']:<31}{row['seconds']:>8.2f}  {mb}  "
                    f"{total}  {ratio}{extra}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
