"""Killing ``rmcore`` with SIGKILL at random moments never leaves half a command behind.

Each round copies a prepared database, starts a real ``python -m rmcore`` process on it
and kills it after a random delay that falls between the interpreter's start-up and the
command's normal end. The database is then opened afresh (SQLite recovers the WAL) and
must pass ``verify`` and ``replay --check``, and the command's events must be all there
or none. Finally the same command is retried with the same idempotency key: it must
complete the work exactly once.

``RMCORE_CRASH_KILLS`` sets the total number of kills (spread over the scenarios);
``RMCORE_CRASH_SEED`` replays a particular run.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import read_event_count

from rmcore.cli import cli
from rmcore.commands import Join, MakePair
from rmcore.engine import Engine
from rmcore.plugins import make_plugin_manager

KILLS = int(os.environ.get("RMCORE_CRASH_KILLS", "18"))
SEED = int(os.environ.get("RMCORE_CRASH_SEED", str(random.randrange(2**32))))
KEY = "crash-retry-1"
IMPORT_ROWS = 3000
HUB_MENTEES = 20
MATCH_PEOPLE = 60  # of each side


def environment() -> dict[str, str]:
    """The test's environment without settings that would redirect the CLI."""
    env = dict(os.environ)
    for name in ("RMCORE_DB", "RMCORE_PROGRAM", "RMCORE_DISABLE_PLUGINS", "RMCORE_ACTOR"):
        env.pop(name, None)
    return env


def rmcore_argv(db: Path, args: list[str]) -> list[str]:
    """The command line of one real ``rmcore`` process."""
    return [sys.executable, "-m", "rmcore", "--db", str(db), "--actor", "crash", *args]


def bare_engine(path: Path) -> Engine:
    """An engine with no plugins, for building the starting databases quickly."""
    return Engine.open(path, create=True, pm=make_plugin_manager(load_entry_points=False))


def build_hub(path: Path, _: Path) -> None:
    """A mentor in ``HUB_MENTEES`` active pairs: their leaving ends every one of them."""
    with bare_engine(path) as engine:
        commands: list = [
            Join(person_id="hub", name="Hub", email="hub@example.org", role="mentor",
                 capacity=HUB_MENTEES, skills_offered=("AI tools",), at="2025-01-06T09:00:00Z")
        ]  # fmt: skip
        for n in range(HUB_MENTEES):
            commands.append(
                Join(person_id=f"e{n}", name=f"Mentee {n}", email=f"e{n}@example.org",
                     role="mentee", at="2025-01-06T09:00:00Z")
            )  # fmt: skip
            commands.append(MakePair(mentor_id="hub", mentee_id=f"e{n}", at="2025-02-01T09:00:00Z"))
        engine.execute("default", commands, actor="setup")


def build_empty(path: Path, _: Path) -> None:
    """An initialised database with nothing in it."""
    bare_engine(path).close()


def build_unpaired(path: Path, _: Path) -> None:
    """Mentors and mentees with complementary skills, nobody paired yet."""
    with bare_engine(path) as engine:
        commands = []
        for n in range(MATCH_PEOPLE):
            commands.append(
                Join(person_id=f"m{n}", name=f"Mentor {n}", email=f"m{n}@example.org",
                     role="mentor", generation="early-career", department=f"D{n % 5}",
                     skills_offered=("AI tools", f"skill {n % 7}"), skills_sought=("leadership",),
                     at="2025-01-06T09:00:00Z")
            )  # fmt: skip
            commands.append(
                Join(person_id=f"t{n}", name=f"Tenured {n}", email=f"t{n}@example.org",
                     role="mentee", generation="tenured", department=f"D{(n + 2) % 5}",
                     skills_offered=("leadership",), skills_sought=("AI tools", f"skill {n % 3}"),
                     at="2025-01-06T09:00:00Z")
            )  # fmt: skip
        engine.execute("default", commands, actor="setup")


def write_people_csv(path: Path, rows: int) -> None:
    """An HR export of ``rows`` new people."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["person_id", "name", "email", "role", "generation", "department",
                         "skills_offered", "skills_sought", "joined_at"])  # fmt: skip
        for n in range(rows):
            mentor = n % 2 == 0
            writer.writerow([
                f"p{n}", f"Person Nr {n}", f"p{n}@example.org", "mentor" if mentor else "mentee",
                "early-career" if mentor else "tenured", f"Dept {n % 9}",
                "AI tools;automation" if mentor else "leadership",
                "leadership" if mentor else "AI tools", "2025-01-06",
            ])  # fmt: skip


class Scenario:
    """A prepared database and one multi-event command to run (and kill) against it."""

    def __init__(self, name: str, build: Callable[[Path, Path], None], args: list[str]):
        self.name = name
        self.build = build
        self.args = args


SCENARIOS = [
    Scenario("leave", build_hub, ["leave", "hub", "--reason", "moved on", "--at", "2025-06-01"]),
    Scenario("import", build_empty, ["import", "{csv}", "--quiet", "--at", "2025-01-06"]),
    Scenario("match", build_unpaired, ["match", "--apply", "--at", "2025-03-01"]),
]


class Prepared:
    """A scenario's starting database, its command line and what a clean run appends."""

    def __init__(self, scenario: Scenario, folder: Path) -> None:
        self.scenario = scenario
        self.template = folder / f"{scenario.name}-template.db"
        csv_path = folder / "people.csv"
        if not csv_path.exists():
            write_people_csv(csv_path, IMPORT_ROWS)
        scenario.build(self.template, csv_path)
        self.args = [a.replace("{csv}", str(csv_path)) for a in scenario.args]
        self.args += ["--idempotency-key", KEY]
        self.base = read_event_count(self.template)
        durations = []
        for attempt in range(2):  # the first run pays for cold caches: keep the quicker
            clean = folder / f"{scenario.name}-clean-{attempt}.db"
            shutil.copyfile(self.template, clean)
            start = time.monotonic()
            done = subprocess.run(
                rmcore_argv(clean, self.args), capture_output=True, text=True, env=environment()
            )
            durations.append(time.monotonic() - start)
            assert done.returncode == 0, done.stderr
        self.duration = min(durations)
        self.expected = new_event_types(clean, self.base)
        assert sum(self.expected.values()) > 1, "the command should append several events"


def new_event_types(db: Path, base: int) -> Counter:
    """How many events of each type follow position ``base``."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT type FROM events WHERE position > ?", (base,)).fetchall()
    finally:
        conn.close()
    return Counter(row[0] for row in rows)


def transactions_after(db: Path, base: int) -> set[tuple]:
    """The distinct (idempotency key, recorded_at, actor) of the events after ``base``."""
    conn = sqlite3.connect(db)
    try:
        return set(
            conn.execute(
                "SELECT DISTINCT idempotency_key, recorded_at, actor FROM events"
                " WHERE position > ?",
                (base,),
            ).fetchall()
        )
    finally:
        conn.close()


def cli_ok(db: Path, *args: str) -> None:
    """Run one command in-process on a fresh connection and insist it succeeds."""
    result = CliRunner().invoke(cli, ["--db", str(db), "--actor", "check", *args])
    assert result.exit_code == 0, (args, result.output, result.exception)


@pytest.fixture(scope="module")
def startup_seconds() -> float:
    """How long the interpreter takes to load rmcore and its plugins (nothing opened yet)."""
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "rmcore", "--version"], capture_output=True, env=environment()
    )
    return time.monotonic() - start


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Prepared]:
    """Every scenario's template and clean-run figures, built once."""
    folder = tmp_path_factory.mktemp("crash")
    return {s.name: Prepared(s, folder) for s in SCENARIOS}


def kill_rounds(scenario: str) -> int:
    """This scenario's share of ``RMCORE_CRASH_KILLS``."""
    names = [s.name for s in SCENARIOS]
    share, extra = divmod(KILLS, len(names))
    return share + (1 if names.index(scenario) < extra else 0)


@pytest.mark.parametrize("scenario", [s.name for s in SCENARIOS])
def test_a_command_killed_at_a_random_moment_leaves_all_of_its_events_or_none(
    scenario: str, prepared: dict[str, Prepared], startup_seconds: float, tmp_path: Path
):
    """After each SIGKILL: verify and replay --check pass, the events are all or none,
    and a retry with the same idempotency key completes the command exactly once."""
    setup = prepared[scenario]
    rng = random.Random(f"{SEED}-{scenario}")
    outcomes: Counter = Counter()
    rounds = kill_rounds(scenario)
    for n in range(rounds):
        db = tmp_path / f"round-{n}.db"
        shutil.copyfile(setup.template, db)
        delay = rng.uniform(0.8 * startup_seconds, setup.duration + 0.02)
        process = subprocess.Popen(
            rmcore_argv(db, setup.args),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=environment(),
        )
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        _, err = process.communicate(timeout=60)
        where = f"seed {SEED}, {scenario} round {n}, killed after {delay:.3f}s"
        assert process.returncode in (0, -signal.SIGKILL), (where, err)

        cli_ok(db, "verify")
        cli_ok(db, "replay", "--check")
        found = new_event_types(db, setup.base)
        assert found in (Counter(), setup.expected), (where, found, setup.expected)
        if found:
            [(key, _, _)] = transactions_after(db, setup.base)  # one transaction
            assert key == KEY, where
        killed = process.returncode == -signal.SIGKILL
        outcomes["finished" if not killed else "all" if found else "none"] += 1

        cli_ok(db, *setup.args)
        assert new_event_types(db, setup.base) == setup.expected, where
        assert len(transactions_after(db, setup.base)) == 1, where
    assert sum(outcomes.values()) == rounds
    assert outcomes["all"] + outcomes["none"] > 0, f"no process was killed: {dict(outcomes)}"
    print(f"{scenario}: {dict(outcomes)} (seed {SEED})")
