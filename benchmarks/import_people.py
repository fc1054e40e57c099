"""People import throughput: `rmcore import` end to end next to raw sqlite3, one run.

    python benchmarks/import_people.py                # 100,000 rows, memory at 25,000 too
    python benchmarks/import_people.py --rows 20000 --small 5000 --repeat 1

Measures, on one generated HR export (CSV, the columns of docs/import.md):
- `rmcore import FILE --quiet` into a fresh database, as a separate process: start-up,
  reading and validating every row, the hash chain and the read models, all included;
- the same file imported again (every row unchanged: read, compared, nothing appended);
- raw sqlite3 reading the same CSV and inserting the rows into a plain ``people`` table,
  with rmcore's durability settings (WAL, synchronous=FULL), in one transaction;
- raw sqlite3 writing exactly the rows rmcore's import wrote (log rows, ``people`` rows
  and keys, taken from rmcore's database beforehand) into a fresh file with rmcore's
  schema and settings, in one transaction: the floor for any import that keeps this
  schema and durability, with no reading, checking, sealing or hashing at all;
- peak memory (max RSS of the child process) for a smaller file and the full one: the
  import streams, so it should barely grow with the file.
Each timing is the fastest of ``--repeat`` runs (a shared machine adds noise, never
removes it). The target is at least 50,000 rows/s for the first import.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import peak_run

TARGET_ROWS_PER_SECOND = 50_000
COLUMNS = (
    "person_id", "name", "email", "role", "generation", "department", "manager_id",
    "timezone", "skills_offered", "skills_sought", "goals", "capacity", "joined_at",
)  # fmt: skip
DEPARTMENTS = ("Marketing", "Finance", "Engineering", "Data", "Sales", "Legal", "Operations")
TIMEZONES = ("Europe/London", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC")
DIGITAL = ("AI tools", "prompt engineering", "data analytics", "automation", "social media")
LEADERSHIP = ("leadership", "communication", "negotiation", "judgement", "coaching")
NAMES = ("Amara", "Jonas", "Priya", "Lena", "Søren", "Zoë", "Kwame", "Mei", "José", "Aisha")
SURNAMES = ("Okafor", "Weber", "Raman", "Fischer", "Núñez", "Chen", "Łukasik", "Haddad")


def write_export(path: Path, rows: int, seed: int = 1) -> None:
    """An HR export of ``rows`` people: a third early-career mentors, the rest mentees/both."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for i in range(rows):
            kind = i % 3
            role = ("mentor", "mentee", "both")[kind]
            offers = rng.sample(DIGITAL if kind == 0 else LEADERSHIP, 2)
            seeks = rng.sample(LEADERSHIP if kind == 0 else DIGITAL, 1)
            manager = (i + 1 + rng.randrange(rows - 1)) % rows if rows > 1 else i
            writer.writerow((
                f"e{i:07d}", f"{rng.choice(NAMES)} {rng.choice(SURNAMES)}",
                f"e{i:07d}@example.org", role,
                ("early-career", "tenured", "mid-career")[kind], rng.choice(DEPARTMENTS),
                f"e{manager:07d}" if kind and manager != i and rng.random() < 0.5 else "",
                rng.choice(TIMEZONES), ";".join(offers), ";".join(seeks), "",
                (1, 0, 1)[kind], f"2026-01-{1 + i % 28:02d}",
            ))  # fmt: skip


def rmcore_command() -> list[str]:
    """The ``rmcore`` console script beside this Python, else ``python -m rmcore``."""
    script = Path(sys.executable).parent / "rmcore"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rmcore"]


def run_child(argv: list[str]) -> tuple[float, float]:
    """Run a command to completion: (wall-clock seconds, peak RSS of that process in MB)."""
    with tempfile.TemporaryFile() as out:
        code, elapsed, peak = peak_run(argv, stdout=out, stderr=subprocess.STDOUT)
        if code != 0:
            out.seek(0)
            raise SystemExit(f"{' '.join(argv)} failed ({code}):\n{out.read().decode()}")
    return elapsed, peak


def rmcore_import(db: Path, export: Path) -> tuple[float, float]:
    """`rmcore import` into ``db`` (initialised first, not timed): (seconds, peak MB)."""
    if not db.exists():
        subprocess.run([*rmcore_command(), "--db", str(db), "init"], check=True,
                       capture_output=True)  # fmt: skip
    return run_child([*rmcore_command(), "--db", str(db), "--actor", "bench", "import",
                      str(export), "--quiet", "--at", "2026-01-01"])  # fmt: skip


def raw_sqlite(db: Path, export: Path) -> float:
    """Seconds for raw sqlite3 to read the CSV and insert its rows into a plain table."""
    started = time.perf_counter()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        f"CREATE TABLE people ({', '.join(COLUMNS)}, PRIMARY KEY (person_id)) WITHOUT ROWID"
    )
    placeholders = ", ".join("?" * len(COLUMNS))
    with export.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(f"INSERT INTO people VALUES ({placeholders})", reader)
        conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - started


WRITTEN_TABLES = ("events", "people", "subject_keys")


def raw_same_rows(source: Path, db: Path) -> float:
    """Seconds for raw sqlite3 to insert the rows ``source``'s import wrote, as rmcore does."""
    from rmcore.importer import IMPORT_CACHE_KIB

    origin = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    schema = [
        sql
        for (sql,) in origin.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND tbl_name IN"
            f" ({', '.join('?' * len(WRITTEN_TABLES))}) ORDER BY type = 'table' DESC",
            WRITTEN_TABLES,
        )
    ]
    tables = {name: origin.execute(f"SELECT * FROM {name}").fetchall() for name in WRITTEN_TABLES}
    origin.close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA cache_size = -{IMPORT_CACHE_KIB}")
    for sql in schema:
        conn.execute(sql)
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    for table, rows in tables.items():
        if rows:
            placeholders = ", ".join("?" * len(rows[0]))
            conn.executemany(f"INSERT INTO {table} VALUES ({placeholders})", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def baseline_rss(db: Path) -> tuple[float, float]:
    """A command that reads almost nothing, for the fixed cost of starting rmcore."""
    return run_child([*rmcore_command(), "--db", str(db), "programs", "--format", "json"])


def event_count(db: Path) -> int:
    """Rows in the log, read with plain sqlite3."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()


def main() -> None:
    """Generate the files, run every measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=25_000, help="rows of the memory check")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing; the fastest counts")
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rmcore-import-bench-"))
    try:
        run(options.rows, options.small, workdir, max(1, options.repeat))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def fresh(path: Path) -> Path:
    """``path`` with no database (nor its side files) left from an earlier run."""
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    return path


def best(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """The fastest run's seconds, and the highest peak memory of all runs."""
    return min(seconds for seconds, _ in runs), max(mb for _, mb in runs)


def run(rows: int, small: int, workdir: Path, repeat: int) -> None:
    """The measurements, in one run so every ratio compares like with like."""
    print(
        f"rmcore import benchmark: {rows:,} rows, Python {sys.version.split()[0]}, "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, best of {repeat}"
    )
    export, small_export = workdir / "people.csv", workdir / "people-small.csv"
    write_export(export, rows)
    write_export(small_export, small)
    print(f"  file: {export.stat().st_size / 1e6:,.1f} MB; small file {small:,} rows")

    raw_seconds = min(raw_sqlite(fresh(workdir / "raw.db"), export) for _ in range(repeat))
    db = workdir / "rmcore.db"
    first, again = [], []
    for _ in range(repeat):
        first.append(rmcore_import(fresh(db), export))
        events = event_count(db)
        if events != rows:
            raise SystemExit(f"expected {rows:,} joined events, the log holds {events:,}")
        again.append(rmcore_import(db, export))
        if event_count(db) != rows:
            raise SystemExit("importing the same file again appended events")
    (first_seconds, first_mb), (again_seconds, again_mb) = best(first), best(again)
    _, small_mb = best([rmcore_import(fresh(workdir / "small.db"), small_export)
                        for _ in range(repeat)])  # fmt: skip
    _, idle_mb = baseline_rss(db)
    same_seconds = min(raw_same_rows(db, fresh(workdir / "same.db")) for _ in range(repeat))

    raw_rate, first_rate, again_rate = (
        rows / raw_seconds,
        rows / first_seconds,
        rows / again_seconds,
    )
    print("\nEnd to end (rows/s; rmcore runs as a separate process, start-up included):")
    print(f"  {'raw sqlite3: read CSV + INSERT into a plain table':<52} {raw_rate:>10,.0f}")
    same_rate = rows / same_seconds
    print(f"  {'raw sqlite3: INSERT the rows rmcore wrote (no start-up)':<52} {same_rate:>10,.0f}"
          f"  ({same_seconds:.2f} s)")  # fmt: skip
    print(f"  {'rmcore import, fresh database':<52} {first_rate:>10,.0f}"
          f"  ({first_seconds:.2f} s, {first_rate / raw_rate:.2f}x raw,"
          f" {first_rate / same_rate:.2f}x the same rows)")  # fmt: skip
    print(f"  {'rmcore import, same file again (all unchanged)':<52} {again_rate:>10,.0f}"
          f"  ({again_seconds:.2f} s, {again_rate / raw_rate:.2f}x raw)")  # fmt: skip
    print("\nPeak memory of the rmcore process (max RSS):")
    print(f"  {'rmcore programs (start-up only)':<52} {idle_mb:>8,.0f} MB")
    print(f"  {f'import {small:,} rows':<52} {small_mb:>8,.0f} MB")
    print(f"  {f'import {rows:,} rows':<52} {first_mb:>8,.0f} MB")
    print(f"  {f'import {rows:,} rows again (no changes)':<52} {again_mb:>8,.0f} MB")
    growth = (first_mb - small_mb) / max(small_mb, 1)
    print(f"  growth from {small:,} to {rows:,} rows: {growth:+.0%}")
    print(f"\nDatabase: {db.stat().st_size / 1e6:,.1f} MB, {events:,} events")
    verdict = "meets" if first_rate >= TARGET_ROWS_PER_SECOND else "MISSES"
    print(f"Target {TARGET_ROWS_PER_SECOND:,} rows/s: {verdict} ({first_rate:,.0f} rows/s)")


if __name__ == "__main__":
    main()
