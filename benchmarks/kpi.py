"""KPI speed: ``collect_kpis`` (SQL over the read models) next to replaying the log.

    python benchmarks/kpi.py                     # 1,000,000 events (about a minute to build)
    python benchmarks/kpi.py --events 100000
    python benchmarks/kpi.py --db big.db         # keep the database (reused when it exists)

Builds the synthetic program (benchmarks/synthetic.py) through the store and the
projector, then times, for today and for a past date:
- ``collect_kpis`` with every installed KPI plugin (kpi_basic), program-wide and
  ``--by department``;
- the baseline: read the whole log, decode every payload and count in Python
  (``replay_kpis`` below, which also serves the tests as an independent oracle);
- ``rmcore kpi`` as a real process, and a 12-month ``rmcore report``.
It checks that the SQL and the replay give the same values before printing anything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

PROGRAM = "bench"
BATCH = 10_000
PAST = "2024-06-30T23:59:59Z"
FORMAT = "%Y-%m-%dT%H:%M:%SZ"
FOLDED = ("joined", "left", "paired", "pair_ended", "session_held", "feedback_given")


# ---------------------------------------------------------------- the baseline


def _key(skill: str) -> str:
    folded = unicodedata.normalize("NFKC", skill).casefold()
    return re.sub(r"[\s\-_\u2010-\u2015\u2212]+", " ", folded).strip()


def _moment(text: str) -> datetime:
    return datetime.strptime(text, FORMAT).replace(tzinfo=timezone.utc)


def fold_log(rows: Iterable[tuple], program: str, as_of: str, upcast: Callable) -> dict:
    """Replay ``(position, program, type, schema, occurred_at, recorded_at, data)`` rows."""
    people: dict[str, dict] = {}
    pairs: dict[str, dict] = {}
    sessions: list[tuple[str, str, int]] = []
    feedback: list[dict] = []
    for _, event_program, type_name, schema, occurred_at, _, data in rows:
        if event_program != program or occurred_at > as_of:
            continue
        if type_name not in FOLDED:
            continue
        payload = upcast(type_name, schema, json.loads(data))
        if type_name == "joined":
            people[payload["person_id"]] = dict(payload, left_at=None)
        elif type_name == "left":
            people[payload["person_id"]]["left_at"] = occurred_at
        elif type_name == "paired":
            pairs[payload["pair_id"]] = dict(payload, paired_at=occurred_at, ended_at=None)
        elif type_name == "pair_ended":
            pairs[payload["pair_id"]]["ended_at"] = occurred_at
        elif type_name == "session_held":
            sessions.append((payload["pair_id"], occurred_at, payload["minutes"]))
        else:
            feedback.append(dict(payload, given_at=occurred_at))
    return {"people": people, "pairs": pairs, "sessions": sessions, "feedback": feedback}


def count_kpis(state: dict, as_of: str) -> dict[str, Any]:
    """The kpi_basic KPIs (program-wide) from a replayed state, plainly in Python."""
    people, pairs = state["people"], state["pairs"]
    now = _moment(as_of)
    window = now - timedelta(days=30)

    def ends(pair: dict) -> str | None:
        dates = [pair["ended_at"]] + [
            people[pair[m]]["left_at"] for m in ("mentor_id", "mentee_id")
        ]
        dates = [d for d in dates if d is not None]
        return min(dates) if dates else None

    def ratio(part: float, whole: float) -> float | None:
        return part / whole if whole else None

    active_people = [p for p in people.values() if p["left_at"] is None]
    active_pairs = {i: p for i, p in pairs.items() if ends(p) is None}
    members = {p[m] for p in active_pairs.values() for m in ("mentor_id", "mentee_id")}
    last_session: dict[str, str] = {}
    for pair_id, held_at, _ in state["sessions"]:
        if held_at > last_session.get(pair_id, ""):
            last_session[pair_id] = held_at
    days = 0.0
    for pair in pairs.values():
        end = ends(pair)
        stop = _moment(end) if end is not None else now
        days += max(0.0, (stop - _moment(pair["paired_at"])).total_seconds() / 86400)
    engaged = stalled = 0
    for pair_id, pair in active_pairs.items():
        last = last_session.get(pair_id)
        if last is not None and _moment(last) >= window:
            engaged += 1
        if _moment(last or pair["paired_at"]) < window:
            stalled += 1
    gains: dict[tuple[str, str], list[str]] = {}
    for item in state["feedback"]:
        gains.setdefault((item["pair_id"], item["by"]), []).extend(item["skills_gained"])
    two_way = flowable = transferred = 0
    for pair_id, pair in pairs.items():
        mentor, mentee = people[pair["mentor_id"]], people[pair["mentee_id"]]
        mentor_gains = gains.get((pair_id, pair["mentor_id"]), [])
        mentee_gains = gains.get((pair_id, pair["mentee_id"]), [])
        two_way += bool(mentor_gains) and bool(mentee_gains)
        directions = ((mentor, mentee, mentee_gains), (mentee, mentor, mentor_gains))
        for giver, receiver, got in directions:
            offered = {_key(s) for s in giver["skills_offered"]}
            can_flow = offered & {_key(s) for s in receiver["skills_sought"]}
            flowable += len(can_flow)
            transferred += len(can_flow & {_key(s) for s in got})
    mentee_feedback = [f for f in state["feedback"] if f["by"] == pairs[f["pair_id"]]["mentee_id"]]
    minutes = sum(m for _, _, m in state["sessions"])

    def differ(field: str) -> int:
        return sum(
            people[p["mentor_id"]].get(field, "").strip().casefold()
            != people[p["mentee_id"]].get(field, "").strip().casefold()
            for p in pairs.values()
        )

    return {
        "participants": len(active_people),
        "mentors": sum(p["role"] in ("mentor", "both") for p in active_people),
        "mentees": sum(p["role"] in ("mentee", "both") for p in active_people),
        "active_pairs": len(active_pairs),
        "match_rate": ratio(
            sum(p["person_id"] in members for p in active_people), len(active_people)
        ),
        "sessions": len(state["sessions"]),
        "mentoring_hours": minutes / 60,
        "sessions_per_pair_month": ratio(len(state["sessions"]), days / 30),
        "engaged_pairs_30d": ratio(engaged, len(active_pairs)),
        "stalled_pairs": stalled,
        "avg_rating": ratio(sum(f["rating"] for f in state["feedback"]), len(state["feedback"])),
        "fresh_perspective_rate": ratio(
            sum(bool(f.get("fresh_perspective")) for f in mentee_feedback), len(mentee_feedback)
        ),
        "two_way_rate": ratio(two_way, len(pairs)),
        "skills_transfer_rate": ratio(transferred, flowable),
        "retention_rate": ratio(len(active_people), len(people)),
        "cross_generation_rate": ratio(differ("generation"), len(pairs)),
        "cross_department_rate": ratio(differ("department"), len(pairs)),
    }


def replay_kpis(engine, program: str, as_of: str) -> dict[str, Any]:
    """The baseline: read every event of the log, decode it and count, with no read model."""
    rows = (row for batch in engine.store.scan(0) for row in batch)
    return count_kpis(fold_log(rows, program, as_of, engine.registry.upcast), as_of)


def same_values(left: dict[str, Any], right: dict[str, Any]) -> list[str]:
    """Names whose values differ (floats compared to 1e-9 relative)."""
    differences = []
    for name in sorted(set(left) | set(right)):
        a, b = left.get(name), right.get(name)
        if a is None or b is None:
            if a is not b:
                differences.append(f"{name}: {a!r} != {b!r}")
        elif not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
            differences.append(f"{name}: {a!r} != {b!r}")
    return differences


# ---------------------------------------------------------------- the benchmark


def build(path: Path, total: int) -> float:
    """Append ``total`` synthetic events, personal fields sealed, through the store and the
    projector; seconds taken."""
    from synthetic import synthetic_events

    from rmcore.engine import Engine
    from rmcore.plugins import make_plugin_manager

    started = time.perf_counter()
    with Engine.open(path, create=True, pm=make_plugin_manager(load_entry_points=False)) as engine:
        events = synthetic_events(total, seal=partial(engine.keyring.seal, PROGRAM))
        while True:
            with engine.store.transaction():  # sealing creates keys: inside the transaction
                batch = [event for _, event in zip(range(BATCH), events)]
                if not batch:
                    break
                stored = engine.store.append(PROGRAM, batch, actor="benchmark")
                engine.projector.apply(stored)
    return time.perf_counter() - started


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, float, Any]:
    """First run, median wall and median CPU seconds of ``repeat`` runs, and the last result.

    CPU time is what the computation costs; wall time also counts waiting for a core,
    which a busy machine adds.
    """
    walls, cpus = [], []
    result = None
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return walls[0], statistics.median(walls), statistics.median(cpus), result


def main() -> None:
    """Build (or reuse) the database, time KPIs against the replay baseline, print figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=None, help="keep the database here")
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory() as scratch:
        path = options.db or Path(scratch) / "kpi.db"
        if not path.exists():
            seconds = build(path, options.events)
            print(f"built {options.events:,} events in {seconds:.1f} s ({path})")
        run(path, options.repeat, Path(scratch))


def run(path: Path, repeat: int, scratch: Path) -> None:
    """Time everything on the database at ``path``."""
    from rmcore.engine import Engine
    from rmcore.kpis import collect_kpis

    today = datetime.now(timezone.utc).strftime(FORMAT)
    with Engine.open(path) as engine:
        events = engine.conn.execute("SELECT count(*) FROM events").fetchone()[0]
        sizes = engine.conn.execute(
            "SELECT (SELECT count(*) FROM people), (SELECT count(*) FROM pairs),"
            " (SELECT count(*) FROM sessions), (SELECT count(*) FROM feedback)"
        ).fetchone()
        print(
            f"{events:,} events: {sizes[0]:,} people, {sizes[1]:,} pairs, "
            f"{sizes[2]:,} sessions, {sizes[3]:,} feedback; {platform()}"
        )
        print(f"{'':34}{'first':>9}{'median':>9}{'cpu':>9}")
        for label, as_of in (("today", today), (f"as of {PAST[:10]}", PAST)):
            first, median, cpu, records = timed(
                lambda a=as_of: collect_kpis(engine, PROGRAM, a), repeat
            )
            sql = {k.name: k.value for k in records if k.plugin == "kpi_basic"}
            print(f"collect_kpis {label:<21}{first:9.3f}{median:9.3f}{cpu:9.3f} s")
            first, median_by, cpu, _ = timed(
                lambda a=as_of: collect_kpis(engine, PROGRAM, a, by="department"), repeat
            )
            print(f"collect_kpis --by department{'':6}{first:9.3f}{median_by:9.3f}{cpu:9.3f} s")
            started, cpu = time.perf_counter(), time.process_time()
            replayed = replay_kpis(engine, PROGRAM, as_of)
            baseline = time.perf_counter() - started
            cpu = time.process_time() - cpu
            print(
                f"replay-and-count {label:<17}{baseline:9.3f}{'':9}{cpu:9.3f} s"
                f"  ({baseline / median:.0f}x the SQL median)"
            )
            differences = same_values(sql, replayed)
            if differences:
                raise SystemExit("SQL and replay disagree: " + "; ".join(differences))
            print(
                f"  values agree ({len(sql)} KPIs): sessions={sql['sessions']:,} "
                f"active_pairs={sql['active_pairs']:,} avg_rating={sql['avg_rating']:.3f}"
            )
    env = dict(os.environ, RMCORE_DB=str(path), RMCORE_PROGRAM=PROGRAM)
    for label, argv in (
        ("rmcore kpi (process)", ["kpi", "--format", "json"]),
        ("rmcore kpi --as-of (process)", ["kpi", "--as-of", PAST[:10], "--format", "json"]),
        (
            "rmcore report, 12 months",
            [
                "report",
                "--out",
                str(scratch / "r.html"),
                "--from",
                "2024-01-01",
                "--to",
                "2024-12-31",
            ],
        ),
    ):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "rmcore", *argv], env=env, check=True, capture_output=True
        )
        print(f"{label:<34}{time.perf_counter() - started:9.3f}{'':9} s")


def platform() -> str:
    """Python, SQLite and CPU count, for the record."""
    import sqlite3

    python = sys.version.split()[0]
    return f"Python {python}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs"


if __name__ == "__main__":
    main()
