"""``audit.verify`` on an existing log, each run in a fresh process, with and without
decoding every payload.

    python benchmarks/verify.py --db big.db --rounds 5
    python benchmarks/verify.py --db big.db --decode-cost   # also the per-event decode CPU

Prints events/s (wall clock of ``audit.verify`` alone, start-up left out) and the CPU
seconds of the whole process, including its worker processes, for each run, next to raw
sqlite3 reading every row of the same log in the same round (the floor for any verify);
then the medians, ranges and ratios. ``--decode-cost`` adds the in-process CPU time per event of
``Codec.decode`` and ``Codec.check`` over the stored payloads of 100,000 events.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

from store import raw_scan

CHILD = """
import resource, sys, time
from rmcore import audit
from rmcore.engine import Engine
from rmcore.plugins import make_plugin_manager
engine = Engine.open(sys.argv[1], pm=make_plugin_manager(load_entry_points=False))
count = audit.event_count(engine)
started = time.perf_counter()
verdict = audit.verify(engine, decode=sys.argv[2] == "decode")
elapsed = time.perf_counter() - started
assert verdict.ok, verdict
print(count / elapsed)
"""


def one_run(path: str, mode: str) -> tuple[float, float]:
    """(events/s, CPU seconds of the child and its workers) for one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, path, mode], capture_output=True, text=True, check=True
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(out.split()[0]), cpu


def decode_cost(path: str, events: int = 100_000) -> dict[str, float]:
    """In-process CPU microseconds per event of ``decode`` and ``check`` (best of 3)."""
    from rmcore.codec import Codec
    from rmcore.engine import build_registry
    from rmcore.plugins import make_plugin_manager

    codec = Codec(build_registry(make_plugin_manager(load_entry_points=False)))
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT type, schema, data FROM events ORDER BY position DESC LIMIT ?", (events,)
    ).fetchall()
    conn.close()
    costs = {}
    for name in ("decode", "check"):
        fn = getattr(codec, name, None)
        if fn is None:  # a version of rmcore without it
            continue
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            for row in rows:
                fn(*row)
            best = min(best, time.process_time() - started)
        costs[name] = best / len(rows) * 1e6
    return costs


def main() -> None:
    """Alternate the runs, round by round, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="a sealed log, such as one built by store.py")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--decode-cost", action="store_true")
    options = parser.parse_args()
    figures: dict[str, list[tuple[float, float]]] = {"decode": [], "chain-only": []}
    scans = []
    for _ in range(options.rounds):
        scans.append(raw_scan(Path(options.db)))
        print(f"{'raw scan':<10} {scans[-1]:>10,.0f} events/s", flush=True)
        for mode in figures:
            rate, cpu = one_run(options.db, mode)
            figures[mode].append((rate, cpu))
            print(f"{mode:<10} {rate:>10,.0f} events/s  {cpu:6.2f} s CPU", flush=True)
    scan = statistics.median(scans)
    print(f"{'raw scan':<10} median {scan:,.0f} events/s ({min(scans):,.0f}-{max(scans):,.0f})")
    for mode, runs in figures.items():
        rates = [rate for rate, _ in runs]
        cpus = [cpu for _, cpu in runs]
        print(
            f"{mode:<10} median {statistics.median(rates):,.0f} events/s"
            f" ({min(rates):,.0f}-{max(rates):,.0f}), CPU {statistics.median(cpus):.2f} s"
            f" ({min(cpus):.2f}-{max(cpus):.2f}); {statistics.median(rates) / scan:.2f}x raw scan"
        )
    if options.decode_cost:
        for name, micros in decode_cost(options.db).items():
            print(f"Codec.{name}: {micros:.2f} us CPU per event")
    print("load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
