"""Faults around the database file: missing, damaged, foreign, read-only, a full disk.

Every fault must end in a one-line ``Error: ...`` on stderr and exit 1 (never a
traceback), leave the file exactly as it was, and leave a sound database sound.
Permission tests need a user whom the permission bits bind: when the tests run as
root they drop to ``nobody`` in the child process.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from rmcore import db as rmcore_db
from rmcore.cli import cli
from rmcore.commands import DomainError, Join, MakePair, RecordSession
from rmcore.engine import Engine
from rmcore.importer import import_people
from rmcore.plugins import make_plugin_manager

NOBODY = 65534
JOIN = ["join", "zoe", "--name", "Zoe", "--email", "zoe@example.org", "--role", "mentee"]
COMMANDS = {
    "people": ["people", "--format", "json"],
    "verify": ["verify"],
    "join": JOIN,
    "replay": ["replay", "--check"],
}


@attrs.frozen
class Ran:
    """What one ``rmcore`` invocation printed and how it ended."""

    code: int
    stdout: str
    stderr: str


def environment() -> dict[str, str]:
    """The test's environment without settings that would redirect the CLI."""
    env = dict(os.environ)
    for name in ("RMCORE_DB", "RMCORE_PROGRAM", "RMCORE_DISABLE_PLUGINS", "RMCORE_ACTOR"):
        env.pop(name, None)
    return env


def run_rmcore(db: Path, *args: str, preexec_fn=None) -> Ran:
    """Run ``python -m rmcore --db DB ARGS`` as a real process."""
    done = subprocess.run(
        [sys.executable, "-m", "rmcore", "--db", str(db), "--actor", "ops", *args],
        capture_output=True,
        text=True,
        env=environment(),
        preexec_fn=preexec_fn,
        timeout=120,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def assert_refused_cleanly(ran: Ran, *words: str) -> None:
    """Exit 1 with one ``Error:`` message naming ``words``, and no traceback."""
    assert ran.code == 1, ran
    assert ran.stderr.startswith("Error: "), ran
    assert "Traceback" not in ran.stderr + ran.stdout, ran
    for word in words:
        assert word in ran.stderr, (word, ran.stderr)


def folder_listing(folder: Path) -> set[str]:
    """The names in a folder."""
    return {p.name for p in folder.iterdir()}


def database_content(path: Path) -> dict[str, list]:
    """Every table's rows (and the schema), to show nothing at all changed."""
    conn = sqlite3.connect(path)
    try:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        content = {t: sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"'))) for t in tables}
        content["sqlite_master"] = sorted(map(repr, conn.execute("SELECT * FROM sqlite_master")))
        return content
    finally:
        conn.close()


def cli_ok(db: Path, *args: str) -> None:
    """An in-process command on a fresh connection that must succeed."""
    result = CliRunner().invoke(cli, ["--db", str(db), "--actor", "ops", *args])
    assert result.exit_code == 0, (args, result.output, result.exception)


def write_people_csv(path: Path, rows: int) -> Path:
    """An HR export of ``rows`` new people."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["person_id", "name", "email", "role", "department", "skills_offered"])
        for n in range(rows):
            writer.writerow([f"new{n}", f"New Person {n}", f"new{n}@example.org", "mentee",
                             f"Department {n % 11}", "leadership;judgement"])  # fmt: skip
    return path


# --- missing and unusable files -------------------------------------------------------


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_missing_database_is_named_and_not_created(tmp_path: Path, command: str):
    """Only ``init`` creates a database; every other command says how to get one."""
    missing = tmp_path / "nowhere.db"
    ran = run_rmcore(missing, *COMMANDS[command])
    assert_refused_cleanly(ran, "no database at", "rmcore init")
    assert folder_listing(tmp_path) == set()


def test_database_names_that_look_like_uris_are_plain_file_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """``file:program.db`` in the working folder is that file, for the database itself,
    the scratch of ``replay --check``, a point-in-time copy and a backup; nothing else
    appears beside them."""
    monkeypatch.chdir(tmp_path)
    live = Path("file:program.db")
    cli_ok(live, "init")
    cli_ok(live, "join", "ada", "--name", "Ada", "--email", "ada@example.org",
           "--role", "mentor", "--capacity", "1")  # fmt: skip
    cli_ok(live, "replay", "--check")
    cli_ok(live, "replay", "--known-at", "2100-01-01T00:00:00", "--out", "file:then.db")
    cli_ok(live, "backup", "--out", "file:kept.db")
    for copy in ("file:then.db", "file:kept.db"):
        result = CliRunner().invoke(cli, ["--db", copy, "people", "--format", "csv"])
        assert result.exit_code == 0 and "ada," in result.output, result.output
    assert {p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))} == {
        "file:program.db",
        "file:then.db",
        "file:kept.db",
    }


def test_init_in_a_folder_that_does_not_exist_is_refused_with_a_message(tmp_path: Path):
    """No traceback and no folder created on the way."""
    ran = run_rmcore(tmp_path / "no" / "such" / "folder.db", "init")
    assert_refused_cleanly(ran, "cannot create")
    assert folder_listing(tmp_path) == set()


DAMAGE = {
    "random bytes": lambda real: random.Random(7).randbytes(16 * 1024),
    "a text file": lambda real: b"person_id,name\nada,Ada Lovelace\n" * 40,
    "a database cut in half": lambda real: real[: len(real) // 2],
    "a database cut after its first page": lambda real: real[:4096],
    "a database with its header overwritten": lambda real: b"\0" * 100 + real[100:],
}
DAMAGE_WORDS = {
    "random bytes": "not a database",
    "a text file": "not a database",
    "a database cut in half": "malformed",
    "a database cut after its first page": "malformed",
    "a database with its header overwritten": "not a database",
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_database_file_is_refused_and_left_as_it_was(
    populated_db: Path, tmp_path: Path, damage: str
):
    """Reading and writing commands alike exit 1 naming the problem; the bytes stay."""
    folder = tmp_path / "damaged"
    folder.mkdir()
    path = folder / "program.db"
    garbage = DAMAGE[damage](populated_db.read_bytes())
    path.write_bytes(garbage)
    for command in ("people", "join", "verify"):
        ran = run_rmcore(path, *COMMANDS[command])
        assert_refused_cleanly(ran, f"cannot open {path}", DAMAGE_WORDS[damage], "backup")
        assert path.read_bytes() == garbage
        assert folder_listing(folder) == {"program.db"}


@pytest.fixture(scope="module")
def larger_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpointed database of a few hundred pages: people, pairs and sessions."""
    path = tmp_path_factory.mktemp("larger") / "larger.db"
    with Engine.open(path, create=True, pm=make_plugin_manager(load_entry_points=False)) as eng:
        commands: list = []
        for n in range(300):
            commands.append(Join(person_id=f"m{n}", name=f"Mentor {n}", email=f"m{n}@example.org",
                                 role="mentor", at="2025-01-06T09:00:00Z"))  # fmt: skip
            commands.append(Join(person_id=f"t{n}", name=f"Mentee {n}", email=f"t{n}@example.org",
                                 role="mentee", at="2025-01-06T09:00:00Z"))  # fmt: skip
            commands.append(MakePair(mentor_id=f"m{n}", mentee_id=f"t{n}",
                                     at="2025-01-10T09:00:00Z"))  # fmt: skip
            commands.append(RecordSession(pair_id=f"m{n}-t{n}", minutes=30,
                                          at="2025-01-20T09:00:00Z"))  # fmt: skip
        eng.execute("default", commands, actor="setup")
    return path


@pytest.mark.parametrize("seed", range(8))
def test_pages_overwritten_inside_a_database_give_messages_never_tracebacks(
    larger_template: Path, tmp_path: Path, seed: int
):
    """Random damage deep in the file: each command works or exits 1 with a message."""
    path = tmp_path / "damaged.db"
    shutil.copyfile(larger_template, path)
    rng = random.Random(seed)
    pages = path.stat().st_size // 4096
    with path.open("r+b") as handle:
        for _ in range(3):
            handle.seek(rng.randrange(1, pages) * 4096 + rng.randrange(0, 4000))
            handle.write(rng.randbytes(64))
    for args in (["people"], ["pairs"], ["verify"], ["log", "--since", "1000"], ["kpi"],
                 ["session", "m1-t1", "--minutes", "20"], ["replay", "--check"]):  # fmt: skip
        result = CliRunner().invoke(cli, ["--db", str(path), "--actor", "ops", *args])
        assert result.exit_code in (0, 1), (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            args,
            "".join(traceback.format_exception(result.exception)),
        )
        if result.exit_code == 1:  # replay --check lists the differences it found first
            assert result.stderr.splitlines()[-1].startswith("Error: "), (args, result.stderr)
        # the bytes of a damaged value never reach the terminal as they are
        assert all(line.isprintable() for line in result.stderr.splitlines()), (args, result.stderr)


def test_a_damaged_text_value_is_named_by_its_column_not_printed(populated_db: Path):
    """Bytes that are not UTF-8 where SQLite keeps text: the column and a hint, never the
    bytes themselves (a newline and control characters among them)."""
    with contextlib.closing(sqlite3.connect(populated_db)) as conn, conn:
        conn.execute("UPDATE people SET name = CAST(x'ff0a1b5b324a41fe' AS TEXT)")
    result = CliRunner().invoke(cli, ["--db", str(populated_db), "people", "--format", "csv"])
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: database error: column 'name' holds text that is not UTF-8: the file is "
        "damaged; restore it from a backup\n"
    )


def test_a_damaged_value_in_the_log_is_not_named_by_the_sql_that_read_it(
    populated_db: Path, tmp_path: Path
):
    """The export's lines are built in SQL: Python's error names that expression, not a
    column; the message says a stored value."""
    with contextlib.closing(sqlite3.connect(populated_db, isolation_level=None)) as conn:
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET actor = CAST(x'726f6fb8' AS TEXT) WHERE position = 3")
    out = tmp_path / "export.jsonl"
    result = CliRunner().invoke(cli, ["--db", str(populated_db), "export", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        "Error: database error: a stored value holds text that is not UTF-8: the file is "
        "damaged; restore it from a backup\n"
    )
    assert not out.exists()


# --- read models changed outside rmcore -------------------------------------------------

READ_MODEL_DAMAGE = [
    ("UPDATE config SET value = '{\"a\":'", ("config", "list")),
    ("UPDATE config SET value = x'00ff10'", ("kpi",)),
    ("UPDATE people SET skills_offered = '{\"a\":'", ("people",)),
    ("UPDATE people SET skills_sought = 12", ("pair", "linus", "barbara", "--at", "2025-04-02")),
    ("UPDATE pairs SET goals = 'not json'",
     ("session", "ada-grace", "--minutes", "20", "--at", "2025-03-03")),
    ("UPDATE checkpoints SET position = 5",
     ("session", "ada-grace", "--minutes", "20", "--at", "2025-03-03")),
    ("UPDATE checkpoints SET position = 'abc'", ("verify",)),
    ("UPDATE pairs SET paired_at = x'00ff10' WHERE pair_id = 'ada-grace'",
     ("session", "ada-grace", "--minutes", "20", "--at", "2025-03-03")),
    ("UPDATE people SET joined_at = x'00ff10' WHERE person_id = 'grace'", ("people",)),
]  # fmt: skip


@pytest.mark.parametrize(("damage", "args"), READ_MODEL_DAMAGE)
def test_read_models_changed_outside_rmcore_are_named_and_a_replay_mends_them(
    populated_db: Path, damage: str, args: tuple[str, ...]
):
    """A value no fold writes: one line naming the way out, nothing appended; after
    ``rmcore replay`` the same command works."""
    with contextlib.closing(sqlite3.connect(populated_db)) as conn, conn:
        conn.execute(damage)
    before = database_content(populated_db)
    damaged = CliRunner().invoke(cli, ["--db", str(populated_db), *args])
    assert damaged.exit_code == 1, damaged.output
    assert isinstance(damaged.exception, SystemExit)
    assert damaged.stderr.startswith("Error: ") and damaged.stderr.count("\n") == 1
    assert damaged.stderr.endswith("`rmcore replay` rebuilds them from the log\n")
    assert database_content(populated_db) == before
    cli_ok(populated_db, "replay")
    cli_ok(populated_db, *args)


@pytest.mark.parametrize("key", ["12", "'text'", "x'00ff10'", "randomblob(16)"])
@pytest.mark.parametrize("args", [("history", "grace"), ("replay",), ("verify", "--deep")])
def test_a_damaged_personal_key_is_named_not_read_as_erased_or_a_crash(
    populated_db: Path, key: str, args: tuple[str, ...]
):
    """A key that is not 32 bytes: the person it belongs to, and nothing appended."""
    with contextlib.closing(sqlite3.connect(populated_db)) as conn, conn:
        changed = conn.execute(
            f"UPDATE subject_keys SET key = {key} WHERE subject = 'person:grace'"
        ).rowcount
    assert changed == 1
    before = database_content(populated_db)
    result = CliRunner().invoke(cli, ["--db", str(populated_db), *args])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stderr == (
        "Error: the key of person:grace in default is damaged, so their name, email and "
        "comments cannot be read; restore the database from a backup\n"
    )
    assert database_content(populated_db) == before


def test_damaged_program_counters_do_not_stop_the_log_from_being_read(populated_db: Path, raw_log):
    """They only choose how the log is walked."""
    with contextlib.closing(sqlite3.connect(populated_db)) as conn, conn:
        conn.execute("UPDATE programs SET events = x'00ff10', last_position = 'x'")
    result = CliRunner().invoke(cli, ["--db", str(populated_db), "log"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == raw_log.count(populated_db)


def test_an_import_meeting_a_damaged_skills_list_names_it(populated_db: Path, tmp_path: Path):
    """The importer compares rows with the read models by its own reads."""
    with contextlib.closing(sqlite3.connect(populated_db)) as conn, conn:
        conn.execute(
            "UPDATE people SET skills_sought = 'A' || char(0) || 'B' WHERE person_id = 'grace'"
        )
    export = tmp_path / "people.csv"
    export.write_text(
        "person_id,name,email,role,skills_sought\n"
        "grace,Grace Hopper,grace@example.org,mentee,compilers\n",
        encoding="utf-8",
    )
    before = database_content(populated_db)
    result = CliRunner().invoke(cli, ["--db", str(populated_db), "import", str(export)])
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        "Error: people.skills_sought holds a value that is not JSON: the read models are "
        "damaged; `rmcore replay` rebuilds them from the log\n"
    )
    assert database_content(populated_db) == before


def test_json_output_meeting_bytes_says_the_file_was_changed(populated_db: Path):
    with contextlib.closing(sqlite3.connect(populated_db)) as conn, conn:
        conn.execute("UPDATE config SET set_at = x'00ff10'")
    result = CliRunner().invoke(
        cli, ["--db", str(populated_db), "config", "list", "--format", "json"]
    )
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        "Error: a value to print is bytes, not text: the file was changed outside rmcore; "
        "`rmcore verify --deep` checks the log and the read models\n"
    )


# --- permissions ----------------------------------------------------------------------


def drop_to_nobody() -> None:
    """In a child process: become ``nobody``, whom the permission bits bind."""
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


@functools.cache
def nobody_can_run_the_interpreter() -> bool:
    """Whether ``nobody`` may execute this Python (it may live in root's home)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", "import rmcore.cli"],
            preexec_fn=drop_to_nobody,
            capture_output=True,
            env=environment(),
            timeout=60,
        )
    except OSError:
        return False
    return done.returncode == 0


def run_forked_as_nobody(db: Path, args: list[str], warm_folder: Path) -> Ran:
    """Run the CLI in a forked child that has become ``nobody``.

    Used when ``nobody`` may not execute the interpreter: the child keeps the parent's
    loaded modules, so the same command runs first as root on a scratch copy to import
    everything it needs before the child loses access to the interpreter's library.
    """
    warm = warm_folder / "warm.db"
    shutil.copyfile(db, warm)
    CliRunner().invoke(cli, ["--db", str(warm), "--actor", "ops", *args])
    for suffix in ("", "-wal", "-shm"):
        Path(f"{warm}{suffix}").unlink(missing_ok=True)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            drop_to_nobody()
            result = CliRunner().invoke(cli, ["--db", str(db), "--actor", "ops", *args])
            stderr = result.stderr
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                stderr += "".join(traceback.format_exception(result.exception))
            payload = {"code": result.exit_code, "stdout": result.stdout, "stderr": stderr}
        except BaseException:
            payload = {"code": 99, "stdout": "", "stderr": traceback.format_exc()}
        data = json.dumps(payload).encode()
        while data:
            data = data[os.write(write_end, data) :]
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 1 << 16):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return Ran(**json.loads(b"".join(chunks)))


class Unprivileged:
    """Runs rmcore as a user without write access to files it does not own."""

    def __init__(self, scratch: Path) -> None:
        self.root = os.geteuid() == 0
        self.scratch = scratch
        self.mode = "self"
        if self.root:
            self.mode = "exec" if nobody_can_run_the_interpreter() else "fork"

    def run(self, db: Path, *args: str) -> Ran:
        """One command on ``db`` as the unprivileged user."""
        if self.mode == "self":
            return run_rmcore(db, *args)
        if self.mode == "exec":
            return run_rmcore(db, *args, preexec_fn=drop_to_nobody)
        return run_forked_as_nobody(db, list(args), self.scratch)

    def read_only_file(self, path: Path) -> None:
        """Make ``path`` readable but not writable for the unprivileged user."""
        path.chmod(0o644 if self.root else 0o444)


@pytest.fixture
def unprivileged(tmp_path: Path) -> Iterator[Unprivileged]:
    """An :class:`Unprivileged` runner; skips where no such user can be had."""
    if os.geteuid() == 0 and not hasattr(os, "fork"):
        pytest.skip("cannot become an unprivileged user here")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    yield Unprivileged(scratch)


@pytest.fixture
def folders(unprivileged: Unprivileged) -> Iterator:
    """Make folders with given permissions; restore and remove them afterwards."""
    made: list[Path] = []

    def make(mode: str, db_source: Path, name: str = "program.db") -> Path:
        """A folder in ``mode`` holding a read-only copy of ``db_source``; returns the copy."""
        folder = Path(tempfile.mkdtemp(prefix="rmcore-faults-"))
        made.append(folder)
        path = folder / name
        shutil.copyfile(db_source, path)
        unprivileged.read_only_file(path)
        if unprivileged.root:
            folder.chmod({"enter": 0o755, "write": 0o1777, "none": 0o700}[mode])
        else:
            folder.chmod({"enter": 0o555, "write": 0o755, "none": 0o000}[mode])
        return path

    yield make
    for folder in made:
        folder.chmod(0o700)
        for child in folder.iterdir():
            child.chmod(0o600)
        shutil.rmtree(folder)


@pytest.mark.parametrize("command", ["people", "verify", "join"])
def test_a_read_only_database_in_a_read_only_folder_is_refused_with_a_message(
    populated_db: Path, unprivileged: Unprivileged, folders, command: str
):
    """SQLite cannot create the -wal and -shm files: say so; leave the file alone."""
    path = folders("enter", populated_db)
    before = path.read_bytes()
    ran = unprivileged.run(path, *COMMANDS[command])
    assert_refused_cleanly(ran, f"cannot open {path}", "may not create files", "-wal")
    assert path.read_bytes() == before
    assert folder_listing(path.parent) == {path.name}


def test_a_read_only_database_file_can_be_read_but_refuses_writes(
    populated_db: Path, unprivileged: Unprivileged, folders
):
    """Listings and verify work; a command that appends exits 1 and appends nothing."""
    path = folders("write", populated_db)
    before = path.read_bytes()
    for command in ("people", "verify"):
        ran = unprivileged.run(path, *COMMANDS[command])
        assert ran.code == 0, ran
    ran = unprivileged.run(path, *JOIN)
    assert_refused_cleanly(ran, "readonly")
    assert path.read_bytes() == before
    assert "zoe" not in run_rmcore(path, "people").stdout


def test_a_database_in_a_folder_the_user_may_not_enter_is_refused_with_a_message(
    populated_db: Path, unprivileged: Unprivileged, folders
):
    """Permission denied on the way to the file: a message, not a traceback."""
    path = folders("none", populated_db)
    for command in ("people", "join"):
        ran = unprivileged.run(path, *COMMANDS[command])
        assert_refused_cleanly(ran, f"cannot open {path}", "ermission denied")


# --- a full disk ----------------------------------------------------------------------


def cap_pages(conn: sqlite3.Connection) -> None:
    """Let the file grow by no more than a page: the next big write finds the disk full."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 1}")


def test_a_full_disk_during_an_import_appends_nothing(populated_db: Path, tmp_path: Path):
    """SQLITE_FULL mid-import: the transaction is rolled back, read models included."""
    people = write_people_csv(tmp_path / "people.csv", 2000)
    before = database_content(populated_db)
    with Engine.open(populated_db) as engine:
        cap_pages(engine.conn)
        with pytest.raises(sqlite3.OperationalError) as raised:
            import_people(engine, "default", people, actor="ops")
        assert raised.value.sqlite_errorname == "SQLITE_FULL"
        assert not engine.conn.in_transaction
        assert database_content(populated_db) == before
    cli_ok(populated_db, "verify")
    cli_ok(populated_db, "replay", "--check")
    cli_ok(populated_db, "import", str(people))  # a new process, once there is room
    cli_ok(populated_db, "replay", "--check")


def test_the_same_engine_imports_the_file_once_the_disk_has_room_again(
    populated_db: Path, tmp_path: Path
):
    """A long-lived engine (a service, not the CLI) retries after the full disk."""
    people = write_people_csv(tmp_path / "people.csv", 300)
    with Engine.open(populated_db) as engine:
        cap_pages(engine.conn)
        with pytest.raises(sqlite3.OperationalError):
            import_people(engine, "default", people, actor="ops")
        engine.conn.execute("PRAGMA max_page_count = 1073741823")
        assert import_people(engine, "default", people, actor="ops").joined == 300
    cli_ok(populated_db, "verify")
    cli_ok(populated_db, "replay", "--check")


def test_a_refused_batch_retried_on_the_same_engine_keeps_the_personal_data_readable(
    db_path: Path,
):
    """The smallest form: a batch refused by a rule, then its valid part alone."""
    zoe = Join(person_id="zoe", name="Zoe Zhang", email="zoe@example.org", role="mentee",
               at="2025-01-06T09:00:00Z")  # fmt: skip
    bad = Join(person_id="bad", name="B", email="not-an-address", role="mentee",
               at="2025-01-06T09:00:00Z")  # fmt: skip
    with Engine.open(db_path) as engine:
        with pytest.raises(DomainError):
            engine.execute("default", [zoe, bad], actor="ops")
        engine.execute("default", zoe, actor="ops")
    listed = CliRunner().invoke(cli, ["--db", str(db_path), "people", "--format", "csv"])
    assert "Zoe Zhang" in listed.stdout
    cli_ok(db_path, "replay", "--check")


@pytest.mark.parametrize(
    "args",
    [
        ["import", "{csv}"],
        ["join", "zoe", "--name", "Zoe " + "Z" * 190, "--email", "zoe@example.org", "--role",
         "mentor", "--offers", ",".join(f"skill {n} " + "x" * 80 for n in range(50)),
         "--seeks", ",".join(f"want {n} " + "y" * 80 for n in range(50))],
    ],
    ids=["import", "join"],
)  # fmt: skip
def test_a_full_disk_is_a_message_with_exit_1_and_nothing_half_written(
    populated_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
):
    """The CLI names the full disk; the log and the read models are as they were."""
    people = write_people_csv(tmp_path / "people.csv", 2000)
    real_connect = rmcore_db.connect

    def connect_to_a_full_disk(path, *, create=False):
        conn = real_connect(path, create=create)
        conn.execute("PRAGMA max_page_count = 1")  # never grow, whatever the size now
        return conn

    before = database_content(populated_db)
    with monkeypatch.context() as patched:
        patched.setattr(rmcore_db, "connect", connect_to_a_full_disk)
        result = CliRunner().invoke(
            cli, ["--db", str(populated_db), *[a.replace("{csv}", str(people)) for a in args]]
        )
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("Error: ")
    assert "disk is full" in result.stderr
    assert database_content(populated_db) == before
    cli_ok(populated_db, "verify")
    cli_ok(populated_db, "replay", "--check")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE semantics")
def test_a_write_refused_by_the_operating_system_mid_import_appends_nothing(
    populated_db: Path, tmp_path: Path
):
    """A real process whose file writes start failing (the file size limit is reached):
    exit 1 with a message, and the database still verifies with nothing appended."""
    import resource

    people = write_people_csv(tmp_path / "people.csv", 3000)
    limit = populated_db.stat().st_size + 16 * 1024
    before = database_content(populated_db)

    def small_file_limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a dead process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    ran = run_rmcore(populated_db, "import", str(people), preexec_fn=small_file_limit)
    assert_refused_cleanly(ran, "error")
    assert database_content(populated_db) == before
    cli_ok(populated_db, "verify")
    cli_ok(populated_db, "replay", "--check")


# --- file modes -----------------------------------------------------------------------

HOLD_OPEN = """
import os, sys
from rmcore.commands import Join
from rmcore.engine import Engine
path = sys.argv[1]
engine = Engine.open(path, create=True)
engine.execute("default", Join(person_id="ada", name="Ada", email="ada@example.org",
               role="mentor", at="2025-01-06T09:00:00Z"), actor="ops")
print(" ".join(oct(os.stat(path + s).st_mode & 0o777) for s in ("", "-wal", "-shm")))
engine.close()
"""


def test_the_database_and_its_wal_and_shm_files_are_created_owner_only(tmp_path: Path):
    """Even with a permissive umask: 0600 for the file, its -wal and its -shm."""
    path = tmp_path / "private.db"
    done = subprocess.run(
        [sys.executable, "-c", HOLD_OPEN, str(path)],
        capture_output=True,
        text=True,
        env=environment(),
        preexec_fn=lambda: os.umask(0),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0o600", "0o600", "0o600"]
    assert path.stat().st_mode & 0o777 == 0o600


def test_init_makes_the_database_owner_only_with_a_permissive_umask(tmp_path: Path):
    """``rmcore init`` in a real process with umask 000, on a new and on an empty file."""
    new, empty = tmp_path / "new.db", tmp_path / "empty.db"
    empty.write_bytes(b"")
    empty.chmod(0o666)
    for path in (new, empty):
        ran = run_rmcore(path, "init", preexec_fn=lambda: os.umask(0))
        assert ran.code == 0, ran
        assert path.stat().st_mode & 0o777 == 0o600
