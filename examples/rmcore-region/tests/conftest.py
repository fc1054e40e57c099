"""Fixtures: a real rmcore database in a temporary folder and the real ``rmcore`` CLI."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rmcore.cli import cli

PLUGINS = {"region", "region_kpis", "region_webhook"}

# The tutorial's program (docs/plugins.md): two mentors and two mentees on two continents.
PEOPLE = [
    ("ada", "mentor", "early-career", "Europe/London", "AI tools, prompting", "leadership"),
    ("ben", "mentor", "early-career", "America/New_York", "AI tools", ""),
    ("grace", "mentee", "tenured", "America/Chicago", "leadership", "AI tools, prompting"),
    ("hugo", "mentee", "tenured", "Europe/Berlin", "", "AI tools"),
]


@pytest.fixture(scope="session", autouse=True)
def installed() -> None:
    """The tests exercise the installed plugins, found by entry point like any other."""
    names = {ep.name for ep in importlib.metadata.entry_points(group="rmcore")}
    if not names >= PLUGINS:
        pytest.fail("rmcore-region is not installed: run `pip install -e examples/rmcore-region`")


Rmcore = Callable[..., Result]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A fresh rmcore database file."""
    path = tmp_path / "rmcore.db"
    assert CliRunner().invoke(cli, ["--db", str(path), "init"]).exit_code == 0
    return path


@pytest.fixture
def rmcore(db: Path) -> Rmcore:
    """Run one ``rmcore`` command line on ``db``; stdout and stderr are kept apart."""

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, ["--db", str(db), "--actor", "hr-ops", *args])

    return run


Join = Callable[..., None]


@pytest.fixture
def join(rmcore: Rmcore) -> Join:
    """``join(person, role, generation, timezone, offers, seeks, *options)`` on 5 January 2026."""

    def add(person: str, role: str, generation: str, timezone: str, offers: str = "",
            seeks: str = "", *options: str) -> None:  # fmt: skip
        result = rmcore(
            "join", person, "--name", person.title(), "--email", f"{person}@example.org",
            "--role", role, "--generation", generation, "--timezone", timezone,
            "--offers", offers, "--seeks", seeks, "--at", "2026-01-05", *options,
        )  # fmt: skip
        assert result.exit_code == 0, result.output

    return add


@pytest.fixture
def tutorial(rmcore: Rmcore, join: Join) -> Rmcore:
    """The tutorial's four people, joined; returns the CLI runner."""
    for person in PEOPLE:
        join(*person)
    return rmcore
