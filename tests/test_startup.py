"""Start-up stays light: ``rmcore --help`` loads click, pluggy and the plugins, nothing heavy.

Timings belong in benchmarks/startup.py; this checks what the time depends on, the set of
modules a bare start imports, so a heavy import creeping back fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# What commands need only once they run: the engine and its codecs, the mail and report
# machinery, and any numerical library.
HEAVY = (
    "attrs",
    "cattrs",
    "sqlite3",
    "smtplib",
    "ssl",
    "rmcore.engine",
    "rmcore.store",
    "rmcore.commands",
    "rmcore.audit",
    "rmcore.report",
    "rmcore.matching",
    "rmcore.kpis",
    "rmcore_plugins.notify_email.notifier",
    "rmcore_plugins.kpi_basic.standard",
    "rmcore_plugins.matching_skills.solver",
    "numpy",
    "scipy",
)

PROBE = """
import json, sys
sys.argv = ["rmcore", *json.loads(sys.argv[1])]
try:
    from rmcore.cli import main
    main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def imported_by(*args: str) -> set[str]:
    """The modules loaded by ``rmcore ARGS`` in a fresh interpreter, every plugin installed."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("RMCORE_")},
    )
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [("--help",), ("kpi", "--help"), ("match", "--help")])
def test_help_imports_nothing_heavy(args):
    loaded = imported_by(*args)
    assert "rmcore.cli" in loaded and "rmcore_plugins.notify_email" in loaded
    assert sorted(loaded.intersection(HEAVY)) == []


def test_a_command_that_runs_loads_the_engine(tmp_path):
    loaded = imported_by("--db", str(tmp_path / "x.db"), "init")
    assert {"rmcore.engine", "rmcore.store", "sqlite3"} <= loaded
