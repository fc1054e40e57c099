"""Event-log throughput: rmcore next to raw sqlite3 and the eventsourcing library, one run.

    python benchmarks/store.py              # 1,000,000 events (a few minutes)
    python benchmarks/store.py --events 100000

Measures, on the same synthetic program log (benchmarks/synthetic.py):
- appends in batches of 1,000 events: rmcore's store (hash chain, versions) against raw
  sqlite3 inserting the very same rows into the same table, and against eventsourcing's
  SQLite application recorder; also rmcore with its read models updated in the same
  transaction, as every command does;
- one event per transaction, the same three ways;
- a full replay into the read models, against raw sqlite3 scanning the log;
- verify (hash chain and invariants), against the same raw scan;
- single CLI commands on the large database and on an empty one.
Personal fields are sealed with the large database's keys before the appends, as commands
seal them; sealing, like encoding, is not timed with the appends but on its own.
``--no-seal`` leaves them in plain text, to see what sealing costs the reads.
Needs the bench extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from synthetic import synthetic_events  # noqa: E402

from rmcore.engine import Engine  # noqa: E402
from rmcore.plugins import make_plugin_manager  # noqa: E402
from rmcore.store import COLUMNS, create_event_log  # noqa: E402

PROGRAM = "bench"
BATCH = 1_000
SINGLE_ROUNDS = 20  # one-event-per-transaction slices per contender


def fresh_engine(path: Path) -> Engine:
    """An rmcore database with no plugins loaded (plugins play no part in the log)."""
    return Engine.open(path, create=True, pm=make_plugin_manager(load_entry_points=False))


def raw_connection(path: Path) -> sqlite3.Connection:
    """A raw sqlite3 database with rmcore's events table and the same durability settings."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA cache_size = -65536")

    class _Db:
        def execute(self, sql, params=()):
            return conn.execute(sql, params)

    create_event_log(_Db())
    return conn


def rate(count: int, seconds: float) -> float:
    """Events per second."""
    return count / seconds if seconds else float("inf")


def line(label: str, value: float, baseline: float | None = None, base_label: str = "") -> None:
    """Print one figure, with its ratio to a baseline."""
    ratio = f"  ({value / baseline:.2f}x {base_label})" if baseline else ""
    print(f"  {label:<46} {value:>12,.0f} events/s{ratio}")


def bench_rmcore_batched(path: Path, events: list, *, project: bool) -> float:
    """rmcore's store.append in batches, optionally with the read models in the transaction."""
    engine = fresh_engine(path)
    started = time.perf_counter()
    for start in range(0, len(events), BATCH):
        with engine.store.transaction():
            stored = engine.store.append(PROGRAM, events[start : start + BATCH], actor="bench")
            if project:
                engine.projector.apply(stored)
    elapsed = time.perf_counter() - started
    engine.close()
    return rate(len(events), elapsed)


def bench_raw_batched(path: Path, rows: list[tuple]) -> float:
    """Raw sqlite3 inserting the rows rmcore wrote, in the same batches."""
    conn = raw_connection(path)
    sql = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows[start : start + BATCH])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return rate(len(rows), elapsed)


def eventsourcing_recorder(path: Path):
    """eventsourcing's SQLite application recorder on a fresh file."""
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    recorder = SQLiteApplicationRecorder(SQLiteDatastore(str(path)))
    recorder.create_table()
    return recorder


def eventsourcing_events(rows: list[tuple]) -> list:
    """The same events as eventsourcing StoredEvents (one originator per rmcore stream)."""
    from eventsourcing.persistence import StoredEvent

    originators: dict[str, uuid.UUID] = {}
    out = []
    for row in rows:
        stream, version, type_name, data = row[3], row[4], row[5], row[11]
        originator = originators.setdefault(stream, uuid.uuid5(uuid.NAMESPACE_URL, stream))
        out.append(StoredEvent(originator, version, type_name, data.encode()))
    return out


def bench_eventsourcing_batched(path: Path, stored: list) -> float:
    """eventsourcing inserting the same events in the same batches."""
    recorder = eventsourcing_recorder(path)
    started = time.perf_counter()
    for start in range(0, len(stored), BATCH):
        recorder.insert_events(stored[start : start + BATCH])
    return rate(len(stored), time.perf_counter() - started)


def bench_single(path: Path, events: list, rows: list[tuple], es_events: list) -> dict:
    """One event per transaction, the three ways, interleaved in rounds.

    Each round commits a slice of events with each contender in turn, so the three see
    the same moments of the disk (whose flush time drifts a lot on a shared machine);
    each contender's rate is its events over the sum of its own rounds' times.
    """
    engine = fresh_engine(path / "rmcore.db")
    conn = raw_connection(path / "raw.db")
    recorder = eventsourcing_recorder(path / "es.db")
    sql = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"

    def rmcore_round(start: int, stop: int) -> None:
        for event in events[start:stop]:
            with engine.store.transaction():
                engine.store.append(PROGRAM, [event], actor="bench")

    def raw_round(start: int, stop: int) -> None:
        for row in rows[start:stop]:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(sql, row)
            conn.execute("COMMIT")

    def es_round(start: int, stop: int) -> None:
        for event in es_events[start:stop]:
            recorder.insert_events([event])

    contenders = {"rmcore": rmcore_round, "raw": raw_round, "eventsourcing": es_round}
    spent = dict.fromkeys(contenders, 0.0)
    step = max(1, len(events) // SINGLE_ROUNDS)
    for number, start in enumerate(range(0, len(events), step)):
        names = list(contenders)
        shift = number % len(names)  # who goes first changes from round to round
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            contenders[name](start, start + step)
            spent[name] += time.perf_counter() - started
    engine.close()
    conn.close()
    return {name: rate(len(events), seconds) for name, seconds in spent.items()}


def raw_scan(path: Path) -> float:
    """Raw sqlite3 reading every row of the log, the floor for any replay or verify."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    started = time.perf_counter()
    count = 0
    cursor = conn.execute("SELECT * FROM events ORDER BY position")
    while rows := cursor.fetchmany(5000):
        count += len(rows)
    conn.close()
    return rate(count, time.perf_counter() - started)


CHILD = """
import sys, time
from rmcore import audit
from rmcore.engine import Engine
from rmcore.plugins import make_plugin_manager
engine = Engine.open(sys.argv[1], pm=make_plugin_manager(load_entry_points=False))
count = audit.event_count(engine)
started = time.perf_counter()
if sys.argv[2] == "replay":
    audit.replay(engine)
else:
    assert audit.verify(engine).ok
elapsed = time.perf_counter() - started
# VmHWM, not ru_maxrss: the latter starts at the parent's peak, carried over fork and exec
with open("/proc/self/status") as status:
    peak = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
print(count / elapsed, peak / 1024)
"""


def in_child(path: Path, what: str) -> tuple[float, float]:
    """Run replay or verify in a fresh process: (events/s, peak memory in MB)."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), what], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1])


def cli_commands(big: Path, workdir: Path) -> None:
    """Single commands on the large database and on an empty one."""
    empty = workdir / "empty.db"
    subprocess.run([sys.executable, "-m", "rmcore", "--db", str(empty), "init"], check=True)
    for db in (big, empty):
        subprocess.run(
            [sys.executable, "-m", "rmcore", "--db", str(db), "--program", PROGRAM, "join",
             "cli-mentor", "--name", "M", "--email", "m@example.org", "--role", "mentor",
             "--capacity", "20", "--at", "2025-01-01"],
            check=True, capture_output=True,
        )  # fmt: skip
    commands = {
        "join (append + projections)": (
            "join", "cli-{i}", "--name", "N", "--email", "n@example.org", "--role", "mentee",
            "--at", "2025-01-02",
        ),
        "pair (rules read the read models)": (
            "pair", "cli-mentor", "cli-{i}", "--at", "2025-01-03",
        ),
        "config get": ("config", "get", "missing.key"),
        "people --status left": ("people", "--status", "left", "--format", "json"),
        "--help": ("--help",),
    }  # fmt: skip
    print("\nSingle CLI commands (median of 5, seconds):")
    print(f"  {'command':<36} {'empty db':>10} {'large db':>10}")
    for label, argv in commands.items():
        run_empty = _median_allow_refusal(empty, argv)
        run_big = _median_allow_refusal(big, argv)
        print(f"  {label:<36} {run_empty:>10.3f} {run_big:>10.3f}")


def _median_allow_refusal(db: Path, argv: tuple[str, ...]) -> float:
    times = []
    for i in range(5):
        args = [a.replace("{i}", str(i)) for a in argv]
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "rmcore", "--db", str(db), "--program", PROGRAM, *args],
            capture_output=True,
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    """Run every measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--single", type=int, default=5_000, help="events for one-per-txn")
    parser.add_argument("--keep", type=Path, help="keep the databases in this folder")
    parser.add_argument(
        "--no-seal", action="store_true", help="personal fields in plain text, to compare"
    )
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rmcore-bench-"))
    try:
        run(options, workdir)
    finally:
        if options.keep:
            options.keep.mkdir(parents=True, exist_ok=True)
            for item in workdir.iterdir():
                shutil.move(str(item), options.keep / item.name)
        shutil.rmtree(workdir, ignore_errors=True)


def run(options: argparse.Namespace, workdir: Path) -> None:
    """The measurements, in one run so every ratio compares like with like."""
    n = options.events
    print(
        f"rmcore store benchmark: {n:,} events, batches of {BATCH:,}, "
        f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs"
    )
    started = time.perf_counter()
    for _ in synthetic_events(n):
        pass
    plain = time.perf_counter() - started
    # Personal fields are sealed with the keys of the database that is later replayed and
    # verified, as commands seal them; sealing and encoding stay outside the timed appends.
    full = workdir / "full.db"
    started = time.perf_counter()
    with fresh_engine(full) as keyed, keyed.store.transaction():
        seal = None if options.no_seal else partial(keyed.keyring.seal, PROGRAM)
        events = list(synthetic_events(n, seal=seal))
    sealed = time.perf_counter() - started
    values = sum(event.data.count('"rmenc1:') for event in events)
    print(
        f"  (generated, sealed and encoded the synthetic log in {sealed:.1f} s; without sealing"
        f" {plain:.1f} s: {values:,} sealed values, {(sealed - plain) / max(1, values) * 1e6:.1f}"
        " µs each, keys included)"
        if seal
        else f"  (generated and encoded the synthetic log in {plain:.1f} s; nothing sealed)"
    )

    log_only = workdir / "log-only.db"
    rmcore_log = bench_rmcore_batched(log_only, events, project=False)
    source = sqlite3.connect(log_only)
    rows = source.execute(f"SELECT {', '.join(COLUMNS)} FROM events ORDER BY position").fetchall()
    source.close()
    raw = bench_raw_batched(workdir / "raw.db", rows)
    es_events = eventsourcing_events(rows)
    es = bench_eventsourcing_batched(workdir / "es.db", es_events)
    rmcore_full = bench_rmcore_batched(full, events, project=True)
    print("\nAppend, batches of 1,000 events per transaction:")
    line("raw sqlite3 (same rows, same table)", raw)
    line("eventsourcing SQLite recorder", es, raw, "raw")
    line("rmcore store (chain, versions)", rmcore_log, raw, "raw")
    print(f"  {'':<46} {'':>12}           ({rmcore_log / es:.2f}x eventsourcing)")
    line("rmcore store + read models in the transaction", rmcore_full, raw, "raw")

    k = min(options.single, n)
    single_dir = workdir / "single"
    single_dir.mkdir()
    single = bench_single(single_dir, events[:k], rows[:k], es_events[:k])
    print(f"\nAppend, one event per transaction ({k:,} events, synchronous=FULL):")
    line("raw sqlite3", single["raw"])
    line("eventsourcing SQLite recorder", single["eventsourcing"], single["raw"], "raw")
    line("rmcore store", single["rmcore"], single["raw"], "raw")
    del events, rows, es_events

    scan = raw_scan(full)
    replay_rate, replay_mb = in_child(full, "replay")
    verify_rate, verify_mb = in_child(full, "verify")
    print(f"\nRead the whole log ({n:,} events):")
    line("raw sqlite3 scan of every row", scan)
    line("rmcore replay into the read models", replay_rate, scan, "raw scan")
    print(f"  {'':<46} peak memory {replay_mb:,.0f} MB")
    line("rmcore verify (hash chain, invariants)", verify_rate, scan, "raw scan")
    print(f"  {'':<46} peak memory {verify_mb:,.0f} MB")

    cli_commands(full, workdir)
    print(f"\nDatabase size: {full.stat().st_size / 1e6:,.0f} MB for {n:,} events")


if __name__ == "__main__":
    main()
