"""Several real processes appending to one database file at the same time."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

WORKERS = 4
PER_WORKER = 25
# Launching the interpreter costs far more than an append, so the test with one launch per
# command keeps its workload small enough to stay fast on two cores.
PER_LAUNCHING_WORKER = 8


def worker_commands(worker: int, count: int = PER_WORKER) -> list[list[str]]:
    """A mentor and a mentee join, pair, then hold sessions: ``count`` appends in all."""
    mentor, mentee = f"m{worker}", f"e{worker}"
    commands = [
        ["join", mentor, "--name", f"Mentor {worker}", "--email", f"{mentor}@example.org",
         "--role", "mentor", "--generation", "early-career", "--offers", "AI tools",
         "--at", "2025-01-06"],
        ["join", mentee, "--name", f"Mentee {worker}", "--email", f"{mentee}@example.org",
         "--role", "mentee", "--generation", "tenured", "--offers", "leadership",
         "--at", "2025-01-06"],
        ["pair", mentor, mentee, "--at", "2025-01-10"],
    ]  # fmt: skip
    first_session = date(2025, 1, 11)
    for n in range(count - len(commands)):
        day = (first_session + timedelta(days=n)).isoformat()
        commands.append(["session", f"{mentor}-{mentee}", "--minutes", str(20 + n), "--at", day])
    return commands


def environment() -> dict[str, str]:
    """The test's environment without settings that would redirect the CLI."""
    env = dict(os.environ)
    for name in ("RMCORE_DB", "RMCORE_PROGRAM", "RMCORE_DISABLE_PLUGINS"):
        env.pop(name, None)
    return env


def run_worker(db: Path, worker: int) -> list[subprocess.CompletedProcess]:
    """Run one worker's commands in order, each as ``python -m rmcore``."""
    env = environment()
    return [
        subprocess.run(
            [sys.executable, "-m", "rmcore", "--db", str(db), "--actor", f"w{worker}", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        for args in worker_commands(worker, PER_LAUNCHING_WORKER)
    ]


# Each driver process runs ``rmcore``'s __main__ module once per command, exactly as
# ``python -m rmcore`` does, but without a new interpreter each time: the commands follow
# each other at once, so the processes collide on the write lock far more often.
DRIVER = textwrap.dedent(
    """
    import json, runpy, sys
    db, actor, commands = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    for args in commands:
        sys.argv = ["rmcore", "--db", db, "--actor", actor, *args]
        try:
            runpy.run_module("rmcore", run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            if exc.code:
                sys.exit(exc.code)
    """
)


def assert_log_is_whole(db: Path, expected: int) -> None:
    """Positions 1..expected with no gap, and each pair stream's versions contiguous."""
    conn = sqlite3.connect(db)
    try:
        positions = [row[0] for row in conn.execute("SELECT position FROM events ORDER BY 1")]
        streams = conn.execute(
            "SELECT stream, count(*), min(version), max(version) FROM events GROUP BY stream"
        ).fetchall()
    finally:
        conn.close()
    assert positions == list(range(1, expected + 1))
    for stream, count, low, high in streams:
        assert (low, high) == (1, count), stream


def test_four_workers_launching_rmcore_per_command_keep_the_log_whole(db_path: Path, run_cli):
    """Every launch succeeds, nobody sees 'locked', positions are gap-free, audits pass."""
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(lambda w: run_worker(db_path, w), range(WORKERS)))
    for worker_results in results:
        for done in worker_results:
            assert done.returncode == 0, (done.args, done.stderr)
            assert "locked" not in done.stderr.lower()
            assert "busy" not in done.stderr.lower()
    assert_log_is_whole(db_path, WORKERS * PER_LAUNCHING_WORKER)
    verify = run_cli("verify")
    assert verify.exit_code == 0, verify.stderr
    check = run_cli("replay", "--check")
    assert check.exit_code == 0, check.stderr
    people = run_cli("people", "--format", "json")
    assert people.stdout.count('"person_id"') == 2 * WORKERS


def test_four_processes_appending_25_events_each_at_once_keep_the_log_whole(db_path: Path, run_cli):
    """Every command succeeds, nobody sees 'locked', positions are gap-free, audits pass."""
    env = environment()
    drivers = [
        subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(db_path), f"d{w}", json.dumps(worker_commands(w))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for w in range(WORKERS)
    ]
    for driver in drivers:
        out, err = driver.communicate(timeout=120)
        assert driver.returncode == 0, err
        assert "locked" not in err.lower()
        assert out.count("\n") == PER_WORKER
    assert_log_is_whole(db_path, WORKERS * PER_WORKER)
    verify = run_cli("verify")
    assert verify.exit_code == 0, verify.stderr
    check = run_cli("replay", "--check")
    assert check.exit_code == 0, check.stderr
    actors = sqlite3.connect(db_path).execute(
        "SELECT actor, count(*) FROM events GROUP BY actor ORDER BY actor"
    )
    assert actors.fetchall() == [(f"d{w}", PER_WORKER) for w in range(WORKERS)]
