"""``rmcore match``: what the operator reads, what --apply records, and what it refuses."""

from __future__ import annotations

import csv
import gc
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rmcore import cli as cli_module
from rmcore import hookimpl
from rmcore.commands import Join
from rmcore.engine import Engine
from rmcore.match_command import BLAS_THREAD_VARIABLES, DelayedProgress
from rmcore.matching import strategies

PEOPLE = [
    ("ada", "mentor", "Gen Z", "Data", "AI tools, SQL", "negotiation", "1", None),
    ("bea", "mentor", "Millennial", "Sales", "prompt engineering", "budgeting", "1", None),
    ("cyd", "mentee", "Gen X", "Finance", "negotiation", "ai-tools, sql", "0", None),
    ("dan", "mentee", "Baby Boomer", "Legal", "budgeting", "Prompt Engineering", "0", None),
    ("eve", "mentee", "tenured", "Data", "knitting", "origami", "0", None),
    ("fay", "mentor", "Gen Z", "Data", "python", "coaching", "1", "gus"),
    ("gus", "mentee", "Gen X", "Data", "coaching", "Python", "0", None),
]


@pytest.fixture
def program(run_cli):
    """Seven people joined through the CLI; returns the runner."""
    for pid, role, generation, dept, offers, seeks, capacity, manager in PEOPLE:
        args = ["join", pid, "--name", pid.title(), "--email", f"{pid}@example.org",
                "--role", role, "--generation", generation, "--department", dept,
                "--offers", offers, "--seeks", seeks, "--capacity", capacity,
                "--at", "2025-03-01"]  # fmt: skip
        if manager:
            args += ["--manager", manager]
        result = run_cli(*args)
        assert result.exit_code == 0, result.stderr
    return run_cli


def json_rows(result) -> list[dict]:
    """The JSON rows of a successful ``rmcore match``."""
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_a_dry_run_table_shows_pairs_skills_each_way_terms_and_the_unmatched(program, raw_log):
    """The operator sees who, how good, why, and who is left out and why; nothing is recorded."""
    before = raw_log.count()
    result = program("match", "--format", "table")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    lines = out.splitlines()
    assert lines[1].split() == ["mentor", "mentee", "score", "mentor_teaches", "mentee_teaches",
                                "terms"]  # fmt: skip
    ada = next(line for line in lines if line.startswith("ada "))
    assert "cyd" in ada and "ai tools; sql" in ada and "negotiation" in ada
    assert "mentor_skills +2, mentee_skills +1, cross_department +0.5, career_stage +2" in ada
    assert "Unmatched (3):" in out
    eve = next(line for line in lines if line.startswith("eve "))
    assert "no available mentor offers a skill they seek" in eve
    fay = next(line for line in lines if line.startswith("fay "))
    assert "no available mentee offers a skill they seek" in fay
    assert "also ruled out: 1 reporting line" in fay
    assert "2 pair(s) proposed (matching_skills, proven optimal)" in out
    assert "Nothing recorded (dry run)" in out
    assert raw_log.count() == before


def test_json_rows_hold_pairs_with_reasons_then_the_unmatched(program):
    """One row per pair and per unmatched person; the summary goes to stderr."""
    result = program("match", "--format", "json")
    rows = json_rows(result)
    pairs = [r for r in rows if r["kind"] == "pair"]
    assert [(r["mentor_id"], r["mentee_id"]) for r in pairs] == [("ada", "cyd"), ("bea", "dan")]
    for row in pairs:
        assert sum(row["terms"].values()) == pytest.approx(row["score"])
        assert row["pair_id"] is None
    assert pairs[1]["mentor_to_mentee"] == ["prompt engineering"]
    assert pairs[1]["mentee_to_mentor"] == ["budgeting"]
    unmatched = {r["person_id"]: r for r in rows if r["kind"] == "unmatched"}
    assert set(unmatched) == {"eve", "fay", "gus"}
    assert unmatched["gus"]["side"] == "mentee"
    assert "2 pair(s) proposed" in result.stderr


def test_csv_has_one_header_and_a_row_per_pair_or_person(program):
    """CSV joins skill lists with semicolons and writes terms as JSON."""
    result = program("match", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["kind"] for r in rows] == ["pair", "pair", "unmatched", "unmatched", "unmatched"]
    assert rows[0]["mentor_to_mentee"] == "ai tools;sql"
    assert json.loads(rows[0]["terms"])["mentor_skills"] == 2.0


def test_apply_records_the_pairs_and_the_next_run_has_nothing_left_to_pair(program, raw_log):
    """--apply appends one paired event per pair, in one go, with the strategy's reasons."""
    before = raw_log.count()
    result = program("match", "--apply", "--format", "json", "--at", "2025-04-01")
    rows = json_rows(result)
    assert "Recorded 2 pair(s)" in result.stderr
    assert {r["pair_id"] for r in rows if r["kind"] == "pair"} == {"ada-cyd", "bea-dan"}
    events = raw_log.query("SELECT type, occurred_at, data FROM events WHERE position > ?",
                           (before,))  # fmt: skip
    assert [(t, at) for t, at, _ in events] == [("paired", "2025-04-01T00:00:00Z")] * 2
    data = json.loads(events[0][2])
    assert data["strategy"] == "matching_skills"
    assert data["reasons"]["terms"]["career_stage"] == 2.0
    listing = json.loads(program("pairs", "--format", "json").stdout)
    assert {(p["pair_id"], p["strategy"]) for p in listing} == {
        ("ada-cyd", "matching_skills"),
        ("bea-dan", "matching_skills"),
    }
    again = program("match", "--format", "json")
    assert [r for r in json_rows(again) if r["kind"] == "pair"] == []


class Interloper:
    """A strategy during whose run another operator changes the program."""

    def __init__(self, db: Path) -> None:
        self.db = db

    @hookimpl(tryfirst=True)
    def rmcore_match(self, people):
        """Someone joins while the proposal is computed; then propose a valid pair."""
        with Engine.open(self.db) as other:
            other.execute(
                "default",
                Join(person_id="zed", name="Zed", email="zed@example.org", role="mentee",
                     at="2025-03-02T00:00:00Z"),
                actor="someone-else",
            )  # fmt: skip
        return {"pairs": [{"mentor_id": "ada", "mentee_id": "cyd", "score": 1.0}]}


@pytest.fixture
def interloper(db_path):
    """The Interloper strategy installed in the CLI's plugin manager for one test."""
    plugin = Interloper(db_path)
    cli_module.PLUGIN_MANAGER.register(plugin, name="interloper")
    yield plugin
    cli_module.PLUGIN_MANAGER.unregister(plugin)


def test_apply_is_refused_entirely_if_the_program_changed_while_matching(
    program, interloper, raw_log
):
    """Exit 1, a clear message, and not a single pair recorded."""
    result = program("match", "--apply", "--format", "json")
    assert result.exit_code == 1
    assert "changed since the proposal was made" in result.stderr
    assert "Traceback" not in result.output
    assert raw_log.query("SELECT count(*) FROM events WHERE type = 'paired'") == [(0,)]
    assert raw_log.query("SELECT count(*) FROM events WHERE type = 'joined'") == [(8,)]


def test_strategy_picks_an_installed_strategy_by_plugin_name(program, interloper):
    """--strategy matching_skills skips the interloper, which would otherwise answer first."""
    rows = json_rows(program("match", "--strategy", "matching_skills", "--format", "json"))
    assert len([r for r in rows if r["kind"] == "pair"]) == 2
    rows = json_rows(program("match", "--strategy", "interloper", "--format", "json"))
    assert [(r["mentor_id"], r["mentee_id"]) for r in rows] == [("ada", "cyd")]


def test_an_unknown_strategy_is_a_usage_error(program):
    """Exit 2, naming the installed strategies."""
    result = program("match", "--strategy", "nope")
    assert result.exit_code == 2
    assert "no installed matching strategy is called nope" in result.stderr
    assert "matching_skills" in result.stderr


def test_match_with_the_strategy_disabled_is_refused(program, raw_log):
    """With matching_skills and every other installed strategy blocked, nothing proposes."""
    before = raw_log.count()
    blocked = []
    for name in strategies(cli_module.PLUGIN_MANAGER):
        blocked += ["--disable-plugin", name]
    assert "matching_skills" in blocked
    result = program(*blocked, "match", "--apply")
    assert result.exit_code == 1
    assert "no matching strategy is installed" in result.stderr
    assert raw_log.count() == before


def test_a_bad_matching_setting_is_refused_with_its_name(program):
    """Settings are checked before any matching is done."""
    assert program("config", "set", "matching_skills.reverse_only", "maybe").exit_code == 0
    result = program("match")
    assert result.exit_code == 1
    assert "matching_skills.reverse_only must be true or false" in result.stderr


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        """Yes."""
        return True


def test_progress_shows_on_a_terminal_only_once_matching_takes_longer_than_the_delay(
    monkeypatch,
):
    """No bar for quick runs; a bar on stderr once the delay has passed."""
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    quick = DelayedProgress("Matching", delay=3600)
    quick(500, 1000)
    quick.close()
    assert screen.getvalue() == ""
    slow = DelayedProgress("Matching", delay=0)
    slow(500, 1000)
    slow(1000, 1000)
    slow.close()
    assert "Matching" in screen.getvalue()


def test_the_command_line_loads_without_numpy_or_scipy():
    """``rmcore --help`` stays fast: the solver's libraries load only when matching."""
    code = (
        "import sys, rmcore.cli, rmcore_plugins.matching_skills, rmcore.matching;"
        "heavy = sorted(m for m in ('numpy', 'scipy') if m in sys.modules);"
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
    helped = subprocess.run([sys.executable, "-m", "rmcore", "match", "--help"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert helped.returncode == 0
    assert "--apply" in helped.stdout and "--strategy" in helped.stdout


PROBE = """
import json, sys
sys.argv = ["rmcore", *sys.argv[1:]]
from rmcore.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in ("numpy", "lap", "scipy") if m in sys.modules)), file=sys.stderr)
"""


def test_a_small_program_is_matched_and_proven_without_loading_scipy(program, db_path):
    """scipy's graph solver takes longer to import than a small program takes to match:
    the dense path needs only numpy and ``lap``."""
    pytest.importorskip("lap")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "--db", str(db_path), "match", "--format", "json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "proven optimal" in done.stderr
    assert len([row for row in json.loads(done.stdout) if row["kind"] == "pair"]) == 2
    assert json.loads(done.stderr.strip().splitlines()[-1]) == ["lap", "numpy"]


SHOW_BLAS = (
    "import os; from rmcore.match_command import single_threaded_blas;"
    "single_threaded_blas(); print(os.environ.get('OPENBLAS_NUM_THREADS'))"
)


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [({}, "1"), ({"OPENBLAS_NUM_THREADS": "4"}, "4"), ({"OMP_NUM_THREADS": "2"}, "None")],
)
def test_matching_runs_blas_on_one_thread_unless_the_operator_chose_a_number(chosen, expected):
    """The operator's own thread settings win; otherwise one BLAS thread."""
    env = {k: v for k, v in os.environ.items() if k not in BLAS_THREAD_VARIABLES}
    done = subprocess.run([sys.executable, "-c", SHOW_BLAS], env={**env, **chosen},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_matching_leaves_the_garbage_collector_on_even_when_refused(program):
    """The collector is paused while matching only."""
    assert gc.isenabled()
    assert json_rows(program("match", "--format", "json"))
    assert gc.isenabled()
    refused = program("match", "--strategy", "nobody")
    assert refused.exit_code != 0
    assert gc.isenabled()
    bad = program("config", "set", "matching_skills.min_score", '"high"')
    assert bad.exit_code == 0, bad.stderr
    assert program("match").exit_code == 1
    assert gc.isenabled()


def test_a_retried_apply_with_the_same_idempotency_key_records_nothing_more(program, raw_log):
    """The key names the batch: a retry reports the earlier batch, even if the program has
    changed since, and appends nothing."""
    first = program("match", "--apply", "--idempotency-key", "round-1", "--format", "json")
    assert "Recorded 2 pair(s)" in first.stderr
    (position,) = raw_log.query("SELECT min(position) FROM events WHERE type = 'paired'")[0]
    joined = program(
        "join", "hal", "--name", "Hal", "--email", "hal@example.org", "--role", "mentee",
        "--generation", "Gen X", "--seeks", "python", "--at", "2025-03-02",
    )  # fmt: skip
    assert joined.exit_code == 0, joined.stderr
    count = raw_log.count()
    retry = program("match", "--apply", "--idempotency-key", "round-1", "--format", "json")
    assert retry.exit_code == 0, retry.stderr
    assert f"Already recorded at position {position}" in retry.stderr
    assert raw_log.count() == count
    fresh = program("match", "--apply", "--idempotency-key", "round-2", "--format", "json")
    assert "Recorded 1 pair(s)" in fresh.stderr
