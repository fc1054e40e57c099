"""Audit commands on a large log: history, point-in-time replay and log streaming, one run.

    python benchmarks/audit.py                  # 1,000,000 events (several minutes)
    python benchmarks/audit.py --events 200000
    python benchmarks/audit.py --db kept/big.db --rounds 5   # a log kept by --keep

Builds a synthetic program log (benchmarks/synthetic.py) through rmcore's store and
projector, with ``recorded_at`` advancing batch by batch over the program's year, then
measures:
- ``rmcore history`` of one person: the whole command in a fresh process (median of 5)
  and ``rmcore.history.history`` in-process, for a person and for a pair;
- ``rmcore replay --known-at`` (and ``--as-of``) into a new file, against a full
  ``rmcore replay`` of the live read models, both as events folded per second;
- ``rmcore log`` streamed to a file: events per second and peak memory (RSS, the
  largest of the command's processes), for the whole log (built by one worker process
  per CPU) and for its last tenth (too short for workers), next to raw sqlite3 in one
  process scanning the same rows and building the same JSON lines two ways:
  ``json_object`` with the payload parsed by ``json(data)``, one row at a time (the plain
  way), and rmcore's own line SQL in blocks that SQLite joins (the way ``rmcore log``
  does it). The whole-log output must be byte-for-byte the ``json_object`` file.
"""

from __future__ import annotations

import argparse
import filecmp
import itertools
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from measure import peak_run  # noqa: E402
from store import PROGRAM, fresh_engine, rate, raw_scan  # noqa: E402
from synthetic import synthetic_events  # noqa: E402

from rmcore import db as rmcore_db  # noqa: E402
from rmcore.engine import Engine  # noqa: E402
from rmcore.history import history  # noqa: E402
from rmcore.plugins import make_plugin_manager  # noqa: E402
from rmcore.queries import mostly_program  # noqa: E402
from rmcore.store import COLUMNS, ENVELOPE_JSON_SQL, EventFilter  # noqa: E402

BATCH = 10_000
RECORDED_START = datetime(2024, 1, 1, 18, tzinfo=timezone.utc)
RECORDED_SPAN = timedelta(days=400)
PERSON = "p000001"  # a mentor with one pair; the synthetic log spreads sessions evenly


def recorded_at(batch_index: int, batches: int) -> str:
    """The ``recorded_at`` of one build batch: batches are spread evenly over the span."""
    moment = RECORDED_START + RECORDED_SPAN * (batch_index / max(1, batches))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build(path: Path, total: int) -> float:
    """Append ``total`` synthetic events with their read models, in batches; seconds taken.

    Personal fields are sealed as the events are drawn, inside each batch's transaction.
    """
    engine = fresh_engine(path)
    engine.conn.execute("PRAGMA synchronous = NORMAL")
    batches = -(-total // BATCH)
    events = synthetic_events(total, seal=partial(engine.keyring.seal, PROGRAM))
    started = time.perf_counter()
    for index in range(batches):
        chunk = list(itertools.islice(events, BATCH))
        with engine.store.transaction():
            stored = engine.store.append(
                PROGRAM, chunk, actor="bench", recorded_at=recorded_at(index, batches)
            )
            engine.projector.apply(stored)
    engine.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.close()
    return time.perf_counter() - started


def rmcore(db: Path, *args: str, stdout=subprocess.DEVNULL) -> float:
    """Run one rmcore command in a fresh process; wall-clock seconds."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rmcore", "--db", str(db), "--program", PROGRAM, *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        check=True,
    )
    return time.perf_counter() - started


def median_of(runs: int, measure) -> float:
    """The median of ``runs`` measurements."""
    return statistics.median(measure() for _ in range(runs))


def bench_history(db: Path) -> None:
    """``rmcore history`` of one person and one pair: a fresh process and in-process."""
    engine = Engine.open(db, pm=make_plugin_manager(load_entry_points=False))
    pair = engine.conn.execute(
        "SELECT pair_id FROM pairs WHERE program = ? AND mentor_id = ?", (PROGRAM, PERSON)
    ).fetchone()[0]
    print("\nHistory of one entity (median of 5):")
    for entity in (PERSON, pair):
        count = len(list(history(engine, PROGRAM, entity)))

        def in_process(entity=entity) -> float:
            started = time.perf_counter()
            list(history(engine, PROGRAM, entity))
            return time.perf_counter() - started

        inner = median_of(5, in_process)
        argv = ("history", entity, "--format", "json")
        whole = median_of(5, lambda argv=argv: rmcore(db, *argv))
        print(f"  {entity:<16} {count:>5} events   rmcore.history.history {inner * 1000:7.1f} ms"
              f"   `rmcore history` process {whole * 1000:7.0f} ms")  # fmt: skip
    engine.close()
    startup = median_of(5, lambda: rmcore(db, "--version"))
    print(f"  (`rmcore --version`, the cost of starting a process: {startup * 1000:.0f} ms)")


def alternated_full_and_known(
    db: Path, workdir: Path, moment: str, rounds: int
) -> tuple[float, float, list[float]]:
    """A full ``rmcore replay`` and ``replay --known-at moment`` alternated, each round
    starting with the other one, so both meet the same moments of a shared machine:
    (median seconds of the full replay, of the copy, the ratio of throughputs per round)."""
    full, known = [], []
    for number in range(rounds):
        out = workdir / f"known-all-{number}.db"
        pair = [
            (full, ("replay",)),
            (known, ("replay", "--known-at", moment, "--out", str(out))),
        ]
        for seconds, args in pair[number % 2 :] + pair[: number % 2]:
            seconds.append(rmcore(db, *args))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{out}{suffix}").unlink(missing_ok=True)
    ratios = [f / k for f, k in zip(full, known)]
    return statistics.median(full), statistics.median(known), ratios


def bench_replay(db: Path, workdir: Path, total: int, rounds: int = 3) -> None:
    """Point-in-time copies against a full replay of the live read models."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    last = conn.execute("SELECT max(recorded_at) FROM events").fetchone()[0]
    middle_position = total // 2
    middle, occurred = conn.execute(
        "SELECT recorded_at, occurred_at FROM events WHERE position = ?", (middle_position,)
    ).fetchone()
    known_half = conn.execute(
        "SELECT count(*) FROM events WHERE recorded_at <= ?", (middle,)
    ).fetchone()[0]
    as_of_day = occurred[:10]
    as_of_count = conn.execute(
        "SELECT count(*) FROM events WHERE occurred_at <= ?", (f"{as_of_day}T23:59:59Z",)
    ).fetchone()[0]
    conn.close()

    full, known_all, ratios = alternated_full_and_known(db, workdir, last, rounds)
    runs = [
        ("rmcore replay (live read models)", total, full),
        ("replay --known-at <last recording>", total, known_all),
        ("replay --known-at <half way>", known_half,
         rmcore(db, "replay", "--known-at", middle, "--out", str(workdir / "known-half.db"))),
        (f"replay --as-of {as_of_day}", as_of_count,
         rmcore(db, "replay", "--as-of", as_of_day, "--out", str(workdir / "as-of.db"))),
    ]  # fmt: skip
    print(
        "\nReplay (whole command in a fresh process; events folded into the read models;"
        f"\n full replay and --known-at <last recording> alternated, median of {rounds} each):"
    )
    print(f"  {'command':<46} {'events':>10} {'seconds':>8} {'events/s':>11}")
    for label, count, seconds in runs:
        ratio = f"  ({rate(count, seconds) / rate(total, full):.2f}x full replay)"
        print(f"  {label:<46} {count:>10,} {seconds:>8.1f} {rate(count, seconds):>11,.0f}{ratio}")
    print(f"  (--known-at <last recording> against the full replay of its round: "
          f"{', '.join(f'{r:.2f}x' for r in ratios)})")  # fmt: skip
    for label, copy in (
        ("raw sqlite3: copy the log rows to a new file", raw_copy),
        ("raw sqlite3: copy the file's pages (backup)", raw_page_copy),
    ):
        copied = copy(db, workdir / "raw-copy.db")
        print(f"  {label:<46} {total:>10,} {total / copied:>8.1f} {copied:>11,.0f}"
              "  (the copy alone, no journal)")  # fmt: skip
        (workdir / "raw-copy.db").unlink()
    print("  (--as-of, and --known-at after the last recording, copy the file's pages and")
    print("   empty all but the log; --known-at earlier copies the log rows up to the moment;")
    print("   then the copy's log is folded like `rmcore replay`'s, --as-of up to its day)")


def raw_copy(db: Path, out: Path) -> float:
    """Raw sqlite3 copying every log row into a new rmcore file without a journal, as a
    point-in-time copy does before its fold; events per second."""
    conn = rmcore_db.connect(out, create=True)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    rmcore_db.migrate(conn)
    conn.execute("ATTACH DATABASE ? AS live", (f"file:{db}?mode=ro",))
    started = time.perf_counter()
    conn.execute("BEGIN")
    count = conn.execute("INSERT INTO main.events SELECT * FROM live.events").rowcount
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return rate(count, elapsed)


def raw_page_copy(db: Path, out: Path) -> float:
    """Raw sqlite3 copying the whole file page by page with SQLite's backup, as a copy of
    the whole log starts; events per second."""
    live = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn = sqlite3.connect(out)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    started = time.perf_counter()
    live.backup(conn)
    elapsed = time.perf_counter() - started
    count = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    conn.close()
    live.close()
    return rate(count, elapsed)


def streamed(db: Path, out: Path, *args: str) -> tuple[float, float]:
    """``rmcore log`` into a file in a child process: (seconds, peak RSS in MB)."""
    with out.open("wb") as handle:
        code, seconds, peak = peak_run(
            [sys.executable, "-m", "rmcore", "--db", str(db), "--program", PROGRAM, "log", *args],
            stdout=handle,
        )
    if code != 0:
        raise SystemExit(f"rmcore log failed with exit {code}")
    return seconds, peak


# The plain way to build an envelope line in SQLite: a JSON object, the payload parsed.
JSON_OBJECT_SQL = (
    "json_object("
    + ", ".join(f"'{name}', {'json(data)' if name == 'data' else name}" for name in COLUMNS)
    + ")"
)


def raw_json_lines(db: Path, out: Path) -> float:
    """Raw sqlite3 building the JSON lines with ``json_object``, a row at a time, and
    writing them; events per second."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    started = time.perf_counter()
    count = 0
    with out.open("w", encoding="utf-8") as handle:
        cursor = conn.execute(f"SELECT {JSON_OBJECT_SQL} FROM events ORDER BY position")
        while rows := cursor.fetchmany(5000):
            handle.write("\n".join(row[0] for row in rows))
            handle.write("\n")
            count += len(rows)
    conn.close()
    return rate(count, time.perf_counter() - started)


def raw_json_blocks(db: Path, out: Path, batch: int = 2000) -> float:
    """Raw sqlite3 building the same lines with rmcore's ``ENVELOPE_JSON_SQL``, joined into
    blocks by SQLite and written a block at a time; events per second."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    started = time.perf_counter()
    count = last = 0
    query = (
        "SELECT count(*), max(position), CAST(group_concat(line, char(10)) || char(10) AS BLOB)"
        f" FROM (SELECT position, {ENVELOPE_JSON_SQL} AS line FROM events WHERE position > ?"
        f" ORDER BY position LIMIT {batch})"
    )
    with out.open("wb") as handle:
        while True:
            rows, last, block = conn.execute(query, (last,)).fetchone()
            if not rows:
                break
            handle.write(block)
            count += rows
    conn.close()
    return rate(count, time.perf_counter() - started)


def count_lines(path: Path) -> int:
    """Lines in a file."""
    with path.open("rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def bench_log(db: Path, workdir: Path, total: int) -> None:
    """``rmcore log`` streamed to a file, whole and last tenth, next to raw sqlite3."""
    scan = raw_scan(db)
    raw_out = workdir / "raw.jsonl"
    raw = raw_json_lines(db, raw_out)
    blocks_out = workdir / "raw-blocks.jsonl"
    blocks = raw_json_blocks(db, blocks_out)
    assert filecmp.cmp(blocks_out, raw_out, shallow=False), "the two raw baselines differ"
    blocks_out.unlink()
    tenth = total - total // 10
    print(f"\nLog streaming to a file ({raw_out.stat().st_size / 1e6:,.0f} MB of JSON lines):")
    print(f"  {'raw sqlite3 scan of every row (no output)':<48} {scan:>10,.0f} events/s")
    print(f"  {'raw sqlite3 json_object lines, row by row':<48} {raw:>10,.0f} events/s")
    print(f"  {'raw sqlite3 rmcore line SQL, blocks':<48} {blocks:>10,.0f} events/s")
    for label, args in (
        ("rmcore log > file", ()),
        ("rmcore log --all-programs > file", ("--all-programs",)),
        (f"rmcore log --since {tenth:,} > file", ("--since", str(tenth))),
        (f"rmcore log --all-programs --since {tenth:,}", ("--all-programs", "--since", str(tenth))),
    ):
        out = workdir / "log.jsonl"
        seconds, peak = streamed(db, out, *args)
        lines = count_lines(out)
        if "--since" not in args:
            assert lines == total, f"rmcore log wrote {lines} lines for {total} events"
            assert filecmp.cmp(out, raw_out, shallow=False), "rmcore log and raw JSON differ"
        speed = rate(lines, seconds)
        print(f"  {label:<48} {speed:>10,.0f} events/s  ({lines:>9,} events,"
              f" {speed / raw:.2f}x json_object, {speed / blocks:.2f}x blocks)"
              f"  peak RSS {peak:,.0f} MB")  # fmt: skip
        out.unlink()
    engine = Engine.open(db, pm=make_plugin_manager(load_entry_points=False))
    print("  One --follow poll with nothing new (in-process, median of 5):")
    for label, program in (("this program", PROGRAM), ("--all-programs", None)):
        # the filter `rmcore log --follow` builds: a program holding most of the log is
        # read by position rather than through its (program, stream) index
        walk = program is not None and mostly_program(engine.conn, program)
        where = EventFilter(since=total, program=program, walk_positions=walk)

        def poll(where=where) -> float:
            started = time.perf_counter()
            list(engine.store.json_line_blocks(where))
            return time.perf_counter() - started

        print(f"    {label:<46} {median_of(5, poll) * 1000:10.1f} ms")
    engine.close()


def main() -> None:
    """Build the log, run every measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="keep the databases in this folder")
    parser.add_argument(
        "--db",
        type=Path,
        help="measure this log (a big.db kept by --keep) instead of building one, whatever "
        "--events says; its read models are replayed in place, its log is left as it is",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternated replay rounds")
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rmcore-audit-bench-"))
    try:
        run(options.events, workdir, options.db, options.rounds)
    finally:
        if options.keep:
            options.keep.mkdir(parents=True, exist_ok=True)
            for item in workdir.iterdir():
                shutil.move(str(item), options.keep / item.name)
        shutil.rmtree(workdir, ignore_errors=True)


def run(total: int, workdir: Path, existing: Path | None = None, rounds: int = 3) -> None:
    """The measurements, in one run so every ratio compares like with like."""
    if existing is not None:
        db = existing
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        total = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
        conn.close()
        if not total:
            raise SystemExit(f"{db} holds no events to measure")
    print(
        f"rmcore audit benchmark: {total:,} events, Python {sys.version.split()[0]}, "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs"
    )
    if existing is None:
        db = workdir / "big.db"
        seconds = build(db, total)
        size = db.stat().st_size / 1e6
        print(f"  (built the log and its read models in {seconds:.1f} s, "
              f"{rate(total, seconds):,.0f} events/s; {size:,.0f} MB)")  # fmt: skip
    bench_history(db)
    bench_replay(db, workdir, total, rounds)
    bench_log(db, workdir, total)


if __name__ == "__main__":
    main()
