"""Shared fixtures: fresh database files, an engine, the CLI runner and a small program."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rmcore.cli import cli
from rmcore.commands import (
    EndPair,
    GiveFeedback,
    Join,
    Leave,
    MakePair,
    RecordSession,
    SetConfig,
)
from rmcore.engine import Engine

ACTOR = "hr-ops"

# The small program built by ``populated_db`` (all dates in the past, UTC):
#
#   ada     mentor, early-career, AI tools / prompt engineering, capacity 2
#   linus   mentor, early-career, data visualisation / automation, manager ken
#   mei     both,   early-career, generative AI
#   raj     both,   tenured, leadership, manager of barbara
#   grace   mentee, tenured, leadership / judgement
#   ken     mentee, tenured, negotiation / communication (unpaired)
#   barbara mentee, tenured, stakeholder management, manager raj
#   tom     mentee, tenured, left on 2025-03-15
#
#   ada-grace      active, sessions 2025-02-10 and 2025-02-24, feedback from both
#   ada-raj        active (ada is now at her capacity of 2)
#   mei-tom        ended on 2025-03-15 when tom left
#   linus-barbara  ended by hand on 2025-04-01
PEOPLE: tuple[dict, ...] = (
    {
        "person_id": "ada",
        "name": "Ada Lovelace",
        "email": "ada@example.org",
        "role": "mentor",
        "generation": "early-career",
        "department": "Engineering",
        "skills_offered": ("AI tools", "prompt engineering"),
        "skills_sought": ("leadership", "stakeholder communication"),
        "goals": ("learn to lead a team",),
        "capacity": 2,
    },
    {
        "person_id": "linus",
        "name": "Linus Okafor",
        "email": "linus@example.org",
        "role": "mentor",
        "generation": "early-career",
        "department": "Data",
        "manager_id": "ken",
        "timezone": "Europe/Berlin",
        "skills_offered": ("data visualisation", "automation"),
        "skills_sought": ("negotiation",),
        "capacity": 1,
    },
    {
        "person_id": "mei",
        "name": "Mei Tanaka",
        "email": "mei@example.org",
        "role": "both",
        "generation": "early-career",
        "department": "Marketing",
        "timezone": "Asia/Tokyo",
        "skills_offered": ("generative AI", "social media"),
        "skills_sought": ("strategic thinking",),
        "capacity": 1,
    },
    {
        "person_id": "raj",
        "name": "Raj Patel",
        "email": "raj@example.org",
        "role": "both",
        "generation": "tenured",
        "department": "Operations",
        "skills_offered": ("leadership",),
        "skills_sought": ("AI tools",),
        "capacity": 1,
    },
    {
        "person_id": "grace",
        "name": "Grace Hopper",
        "email": "grace@example.org",
        "role": "mentee",
        "generation": "tenured",
        "department": "Engineering",
        "skills_offered": ("leadership", "judgement"),
        "skills_sought": ("AI tools",),
    },
    {
        "person_id": "ken",
        "name": "Ken Adams",
        "email": "ken@example.org",
        "role": "mentee",
        "generation": "tenured",
        "department": "Finance",
        "skills_offered": ("negotiation", "communication"),
        "skills_sought": ("automation",),
    },
    {
        "person_id": "barbara",
        "name": "Barbara Liskov",
        "email": "barbara@example.org",
        "role": "mentee",
        "generation": "tenured",
        "department": "Operations",
        "manager_id": "raj",
        "skills_offered": ("stakeholder management",),
        "skills_sought": ("generative AI",),
    },
    {
        "person_id": "tom",
        "name": "Tomás Núñez",
        "email": "tom@example.org",
        "role": "mentee",
        "generation": "tenured",
        "department": "Sales",
        "skills_offered": ("negotiation",),
        "skills_sought": ("generative AI",),
    },
)


def program_commands() -> list:
    """The commands that build the ``populated_db`` program, in order."""
    commands: list = [
        SetConfig(key="matching_skills.min_score", value=0.3, at="2025-01-02T09:00:00Z"),
        SetConfig(key="notify_email.sender", value="hr@example.org", at="2025-01-02T09:00:00Z"),
    ]
    commands += [Join(at="2025-01-06T09:00:00Z", **person) for person in PEOPLE]
    commands += [
        MakePair(
            mentor_id="ada",
            mentee_id="grace",
            goals=("use AI assistants every week",),
            at="2025-02-03T10:00:00Z",
        ),
        MakePair(mentor_id="mei", mentee_id="tom", at="2025-02-05T10:00:00Z"),
        MakePair(mentor_id="linus", mentee_id="barbara", at="2025-02-10T10:00:00Z"),
        MakePair(mentor_id="ada", mentee_id="raj", at="2025-02-11T10:00:00Z"),
        RecordSession(
            pair_id="ada-grace", minutes=45, topics=("prompting",), at="2025-02-10T15:00:00Z"
        ),
        RecordSession(
            pair_id="ada-grace",
            minutes=60,
            topics=("AI tools", "delegation"),
            mode="in_person",
            at="2025-02-24T15:00:00Z",
        ),
        RecordSession(pair_id="mei-tom", minutes=30, at="2025-02-12T08:00:00Z"),
        RecordSession(pair_id="linus-barbara", minutes=50, at="2025-02-20T13:00:00Z"),
        GiveFeedback(
            pair_id="ada-grace",
            by="grace",
            rating=5,
            fresh_perspective=True,
            skills_gained=("prompt engineering",),
            comment="Eye-opening.",
            at="2025-03-01T12:00:00Z",
        ),
        GiveFeedback(
            pair_id="ada-grace",
            by="ada",
            rating=4,
            skills_gained=("stakeholder communication",),
            at="2025-03-01T12:30:00Z",
        ),
        Leave(person_id="tom", reason="moved to another company", at="2025-03-15T09:00:00Z"),
        EndPair(pair_id="linus-barbara", reason="project finished", at="2025-04-01T09:00:00Z"),
    ]
    return commands


def read_event_rows(path: str | Path) -> list[tuple]:
    """Every row of the ``events`` table, read with plain sqlite3, in position order."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM events ORDER BY position").fetchall()
    finally:
        conn.close()


def temporary_files() -> list[str]:
    """Files SQLite holds open in the system's temporary folder (they are deleted at
    once, so only the process's open descriptors show them; needs /proc)."""
    found = []
    for descriptor in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if "etilqs_" in os.readlink(f"/proc/self/fd/{descriptor}"):
                found.append(descriptor)
    return found


def read_event_count(path: str | Path) -> int:
    """How many rows the ``events`` table holds, read with plain sqlite3."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()


class RawLog:
    """Reads a database's log table straight from the file, bypassing the engine."""

    def __init__(self, default_path: Path) -> None:
        """Read ``default_path`` unless a call names another file."""
        self.default_path = default_path

    def count(self, path: str | Path | None = None) -> int:
        """The number of rows in ``events``."""
        return read_event_count(path or self.default_path)

    def rows(self, path: str | Path | None = None) -> list[tuple]:
        """All rows of ``events`` in position order."""
        return read_event_rows(path or self.default_path)

    def query(self, sql: str, params: Sequence = (), path: str | Path | None = None) -> list:
        """Any read-only query against the file."""
        conn = sqlite3.connect(path or self.default_path)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh, initialised, empty database file."""
    path = tmp_path / "rmcore.db"
    Engine.open(path, create=True).close()
    return path


@pytest.fixture
def engine(db_path: Path) -> Iterator[Engine]:
    """An engine on ``db_path``, closed after the test."""
    with Engine.open(db_path) as opened:
        yield opened


RunCli = Callable[..., Result]


@pytest.fixture
def run_cli(db_path: Path) -> RunCli:
    """Invoke ``rmcore`` in-process with ``--db db_path`` (or ``db=...``) prepended."""

    def run(*args: str, db: str | Path | None = None, input: str | None = None) -> Result:
        """Run one rmcore command line; stdout and stderr are kept apart on the result."""
        runner = CliRunner()
        target = db_path if db is None else db
        return runner.invoke(cli, ["--db", str(target), "--actor", ACTOR, *args], input=input)

    return run


@pytest.fixture
def raw_log(db_path: Path) -> RawLog:
    """Raw sqlite3 access to the ``events`` table of ``db_path`` (or another file)."""
    return RawLog(db_path)


@pytest.fixture(scope="session")
def populated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small program built once per test run through the engine; copied per test."""
    path = tmp_path_factory.mktemp("template") / "populated.db"
    with Engine.open(path, create=True) as opened:
        for command in program_commands():
            opened.execute("default", command, actor=ACTOR)
    for suffix in ("-wal", "-shm"):
        assert not Path(f"{path}{suffix}").exists(), "the template was not checkpointed"
    return path


@pytest.fixture
def populated_db(db_path: Path, populated_template: Path) -> Path:
    """``db_path`` holding the small program described at the top of this module."""
    shutil.copyfile(populated_template, db_path)
    return db_path


def assert_refused_output(run_cli, folder: Path, command: str, out: str, reason: str) -> None:
    """``rmcore COMMAND --out OUT`` run in ``folder`` (which holds a regular file
    ``a-file``): exit 1 naming OUT and the reason, no traceback, and no file left."""
    (folder / "a-file").write_text("not a folder")
    before = sorted(p.name for p in folder.iterdir())
    result = run_cli(command, "--out", out)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert reason in result.stderr and out in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == before
