"""rmcore backup: an online copy that verifies, taken while another process keeps writing."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_refused_output

WRITER = """
import sys
from rmcore.commands import Join
from rmcore.engine import Engine
from rmcore.plugins import make_plugin_manager
engine = Engine.open(sys.argv[1], pm=make_plugin_manager(load_entry_points=False))
for i in range(int(sys.argv[2])):
    engine.execute("default", Join(person_id=f"w{i}", name="W", email="w@example.org",
                   role="mentee", at="2025-01-01T00:00:00Z"), actor="writer")
"""


def test_a_backup_taken_while_another_process_writes_verifies(run_cli, db_path: Path, tmp_path):
    """The copy is a consistent moment of a database that kept changing underneath."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db_path), "400"])
    try:
        time.sleep(0.3)
        out = tmp_path / "backup.db"
        result = run_cli("backup", "--out", str(out))
        assert result.exit_code == 0, result.stderr
        assert "the copy verifies" in result.stdout
    finally:
        assert writer.wait(timeout=60) == 0
    copied = sqlite3.connect(out).execute("SELECT count(*) FROM events").fetchone()[0]
    assert 0 < copied <= 400
    verified = run_cli("verify", "--deep", db=out)
    assert verified.exit_code == 0, verified.stderr
    assert out.stat().st_mode & 0o777 == 0o600


def test_a_backup_never_overwrites_a_file(run_cli, db_path: Path, tmp_path):
    """An existing file is refused and left as it was."""
    out = tmp_path / "keep.db"
    out.write_bytes(b"precious")
    result = run_cli("backup", "--out", str(out))
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize(
    ("out", "reason"),
    [
        ("", "empty"),
        ("missing-folder/copy.db", "No such file or directory"),
        ("a-file/copy.db", "Not a directory"),
    ],
)
def test_a_backup_to_a_path_that_cannot_be_created_is_refused_naming_it(
    run_cli, db_path: Path, tmp_path, monkeypatch, out: str, reason: str
):
    """A clear message and exit 1, never a traceback, and no file left anywhere."""
    monkeypatch.chdir(tmp_path)
    assert_refused_output(run_cli, tmp_path, "backup", out, reason)


def test_an_interrupted_backup_is_never_under_its_name_and_the_rerun_works(
    run_cli, populated_db: Path, tmp_path, monkeypatch
):
    """While the copy runs nothing is at --out yet (a killed backup leaves no half file
    there); Ctrl-C midway leaves nothing, and the next backup works."""
    from rmcore import backup, options

    out = tmp_path / "copy.db"
    seen_at_out: list[bool] = []

    def interrupted(self, steps: int) -> None:
        seen_at_out.append(out.exists())
        raise KeyboardInterrupt

    monkeypatch.setattr(backup, "PAGES_PER_STEP", 1)
    monkeypatch.setattr(options.Silent, "update", interrupted)
    result = run_cli("backup", "--out", str(out))
    assert result.exit_code == 1
    assert seen_at_out == [False]
    assert list(tmp_path.iterdir()) == [populated_db]
    monkeypatch.undo()
    again = run_cli("backup", "--out", str(out))
    assert again.exit_code == 0, again.output
    assert "the copy verifies" in again.stdout
