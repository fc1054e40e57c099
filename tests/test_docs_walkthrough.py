"""docs/operators.md, followed as written: every command it shows, in order, in an empty
folder, through the real CLI.

The commands are read from the doc's ``console`` blocks (a ``$ `` line, its ``\\``
continuations, then what it printed), so editing the doc is what changes the test. A
line of shown output may hold ``...`` for text that differs on every run (hashes, system
times, long table rules); a line that is only ``...`` stands for lines left out.

``rmcore`` runs in-process through click's CliRunner, as in ``conftest.py``, with its
standard output taken for a terminal unless the doc pipes or redirects it, so listings
print the tables the doc shows. Other commands (``sed``, ``diff``, ``head``) run as
subprocesses. The demo counts its months back from the present hour; the test runs it
as of the moment the doc says its run ended, so the doc's dates hold on any day.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rmcore import demo
from rmcore.cli import cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "operators.md"

CONSOLE_BLOCK = re.compile(r"^```console\n(.*?)^```", re.S | re.M)
DEMO_END = re.compile(r"this run ended at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")
REFUSAL = ("Error:", "Usage:")
GLOBAL_OPTIONS_WITH_VALUE = {"--db", "--program", "--actor", "--disable-plugin"}
# Subcommands whose arguments name a pair, or people, that must already exist.
NAMES_A_PAIR = {"session", "feedback", "end-pair"}
NAMES_A_PERSON = {"leave", "forget", "history"}
NAMES_TWO_PEOPLE = {"pair"}
# A shown line that states a headline figure: people, pairs, rows or events counted.
FIGURE = re.compile(
    r"\b\d+ (?:people|active people|pairs?|pair\(s\)|rows|events?|sessions|feedback|leavers)\b"
)


@dataclass
class Step:
    """One ``$`` command of the doc and the output the doc shows for it."""

    line: int
    command: str
    shown: list[str]

    @property
    def refused(self) -> bool:
        """The doc shows this command being refused."""
        return bool(self.shown) and self.shown[0].startswith(REFUSAL)


@dataclass
class Ran:
    """What one step did: what it printed, how each rmcore call exited, and the ids it
    named that did not exist when it ran."""

    step: Step
    terminal: str = ""
    rmcore_exits: list[tuple[str, int]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def walkthrough(text: str) -> list[Step]:
    """The ``$`` commands of every console block, in order, with their shown output."""
    steps = []
    for block in CONSOLE_BLOCK.finditer(text):
        first = text.count("\n", 0, block.start(1)) + 1
        lines = block.group(1).splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                i += 1
                continue
            start, command = i, lines[i][2:]
            while command.endswith("\\"):
                i += 1
                command = command[:-1].rstrip() + " " + lines[i].strip()
            i += 1
            shown = []
            while i < len(lines) and not lines[i].startswith("$ "):
                shown.append(lines[i].rstrip())
                i += 1
            while shown and not shown[-1]:
                shown.pop()
            steps.append(Step(first + start, command, shown))
    return steps


def shown_pattern(shown: list[str]) -> re.Pattern[str]:
    """A pattern for printed lines: ``...`` in a line matches anything, and a line that is
    only ``...`` matches any number of lines. It matches from the start of a line."""
    parts = []
    for line in shown:
        if line.strip() == "...":
            parts.append(r"(?:.*\n)*?")
        else:
            pieces = re.split(r"\.\.\. *", line)
            parts.append(".*".join(re.escape(piece) for piece in pieces) + r"\n")
    return re.compile("^" + "".join(parts), re.M)


def printed(text: str) -> str:
    """Output as a terminal shows it: no carriage returns, no trailing spaces or lines."""
    lines = [line.rstrip() for line in text.replace("\r", "").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "".join(line + "\n" for line in lines)


class TerminalRunner(CliRunner):
    """A CliRunner whose standard output says it is a terminal while ``terminal`` is set."""

    terminal = False

    @contextlib.contextmanager
    def isolation(self, *args, **kwargs) -> Iterator:
        """Click's isolation, with ``sys.stdout.isatty()`` true if ``terminal`` is set."""
        with super().isolation(*args, **kwargs) as streams:
            if self.terminal:
                sys.stdout.isatty = lambda: True
            yield streams


class Shell:
    """Runs the doc's command lines (``&&``, ``|``, ``>``, ``>>``, ``cd``, ``export``,
    ``unset``), with ``rmcore`` in-process and any other command as a subprocess."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Start in ``folder`` with this process's environment minus any ``RMCORE_*``."""
        self.cwd = folder
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RMCORE_")}
        self.monkeypatch = monkeypatch
        self.runner = TerminalRunner()

    def run(self, step: Step) -> Ran:
        """Run one command line; after ``&&``, only while the previous part exits 0."""
        ran = Ran(step)
        words = shlex.shlex(step.command, posix=True, punctuation_chars=True)
        words.whitespace_split = True
        for part in split_on(list(words), "&&"):
            if self.pipeline(part, ran) != 0:
                break
        return ran

    def pipeline(self, tokens: list[str], ran: Ran) -> int:
        """Run ``a | b > file``; what the last stage prints goes to the terminal."""
        stages = split_on(tokens, "|")
        data: str | None = None
        code = 0
        for index, stage in enumerate(stages):
            argv, target, mode = stage, None, "w"
            for redirect, how in ((">", "w"), (">>", "a")):
                if redirect in stage:
                    at = stage.index(redirect)
                    argv, target, mode = stage[:at], stage[at + 1], how
            to_terminal = target is None and index == len(stages) - 1
            out, err, code = self.command(argv, data, to_terminal, ran)
            ran.terminal += err + (out if to_terminal else "")
            data = out if target is None else None
            if target is not None:
                with open(self.cwd / target, mode, newline="") as handle:
                    handle.write(out)
        return code

    def command(
        self, argv: list[str], data: str | None, to_terminal: bool, ran: Ran
    ) -> tuple[str, str, int]:
        """Run one command; returns its standard output, standard error and exit code."""
        name = argv[0]
        if name == "cd":
            self.cwd = (self.cwd / argv[1]).resolve()
            return "", "", 0
        if name == "export":
            self.env.update(word.split("=", 1) for word in argv[1:])
            return "", "", 0
        if name == "unset":
            for key in argv[1:]:
                self.env.pop(key, None)
            return "", "", 0
        if name == "rmcore":
            ran.missing += self.missing_names(argv[1:])
            result = self.rmcore(argv[1:], data, to_terminal)
            ran.rmcore_exits.append((" ".join(argv), result.exit_code))
            crash = ""
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                crash = "".join(traceback.format_exception(*result.exc_info))
            if to_terminal:
                return result.output, crash, result.exit_code
            return result.stdout, result.stderr + crash, result.exit_code
        # Bytes, so that a file's CRLF line ends pass through a pipe or a redirection intact.
        done = subprocess.run(
            argv,
            cwd=self.cwd,
            env=self.env,
            input=None if data is None else data.encode(),
            capture_output=True,
        )
        return done.stdout.decode(), done.stderr.decode(), done.returncode

    def rmcore(self, args: list[str], data: str | None = None, to_terminal: bool = False) -> Result:
        """Invoke the CLI in the shell's folder with the shell's environment."""
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("RMCORE_")}
        env.update(self.env)
        self.monkeypatch.chdir(self.cwd)
        self.runner.terminal = to_terminal
        return self.runner.invoke(cli, args, input=data, env=env)

    def missing_names(self, args: list[str]) -> list[str]:
        """The pair and person ids these rmcore arguments name that do not exist now."""
        i = 0
        while i < len(args) and args[i].startswith("-"):
            i += 2 if args[i] in GLOBAL_OPTIONS_WITH_VALUE else 1
        options, rest = args[:i], args[i:]
        if not rest:
            return []
        positional = [word for word in rest[1:] if not word.startswith("-")]
        wanted: dict[str, list[str]] = {"pair": [], "person": []}
        if rest[0] in NAMES_A_PAIR:
            wanted["pair"] = positional[:1]
            if "--by" in rest:
                wanted["person"] = [rest[rest.index("--by") + 1]]
        elif rest[0] in NAMES_A_PERSON:
            wanted["person"] = positional[:1]
        elif rest[0] in NAMES_TWO_PEOPLE:
            wanted["person"] = positional[:2]
        missing = []
        for kind, listing, key in (("pair", "pairs", "pair_id"), ("person", "people", "person_id")):
            if wanted[kind]:
                rows = self.rmcore([*options, listing, "--status", "all", "--format", "json"])
                known = {row[key] for row in json.loads(rows.stdout)}
                missing += [f"{kind} {name}" for name in wanted[kind] if name not in known]
        return missing


def split_on(tokens: list[str], separator: str) -> list[list[str]]:
    """``tokens`` cut into runs at each ``separator``."""
    runs: list[list[str]] = [[]]
    for token in tokens:
        if token == separator:
            runs.append([])
        else:
            runs[-1].append(token)
    return runs


def demo_run_end(doc_text: str) -> datetime | None:
    """The moment the doc says its demo run ended, if it says so."""
    stated = DEMO_END.search(doc_text)
    return datetime.fromisoformat(stated.group(1).replace("Z", "+00:00")) if stated else None


def where(ran: Ran) -> str:
    """Where a step is in the doc, for a failure message."""
    return f"operators.md line {ran.step.line}: $ {ran.step.command}"


def shortened(text: str, lines: int = 30) -> str:
    """At most ``lines`` lines of ``text``, for a failure message."""
    kept = text.splitlines()
    more = [f"[{len(kept) - lines} more lines]"] if len(kept) > lines else []
    return "\n".join(kept[:lines] + more)


def shows_what_it_printed(ran: Ran) -> bool:
    """The doc's shown output matches what the step printed."""
    text = printed(ran.terminal)
    if ran.rmcore_exits:
        return bool(shown_pattern(ran.step.shown).fullmatch(text))
    # Other tools lay out columns for the terminal they find (ls): compare their words.
    words = " ".join(" ".join(ran.step.shown).split())
    return bool(shown_pattern([words]).fullmatch(" ".join(text.split()) + "\n"))


@pytest.fixture(scope="module")
def doc_text() -> str:
    """The text of docs/operators.md."""
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def runs(doc_text: str, tmp_path_factory: pytest.TempPathFactory) -> list[Ran]:
    """Every step of the walkthrough, run once, in order, in an empty folder."""
    steps = walkthrough(doc_text)
    assert len(steps) > 50, "the walkthrough's console blocks were not found"
    ended = demo_run_end(doc_text)
    with pytest.MonkeyPatch.context() as monkeypatch:
        if ended is not None:
            # The demo's last simulated hour is the one before the hour it runs in.
            run_at = ended + timedelta(hours=1, minutes=30)
            monkeypatch.setattr(demo, "build_demo", partial(demo.build_demo, today=run_at))
        shell = Shell(tmp_path_factory.mktemp("operators-walkthrough"), monkeypatch)
        return [shell.run(step) for step in steps]


def test_the_walkthrough_says_when_its_demo_run_ended_so_its_dates_hold(doc_text: str) -> None:
    assert demo_run_end(doc_text) is not None, (
        "operators.md should say 'this run ended at YYYY-MM-DDTHH:00:00Z' after its demo run"
    )


def test_every_command_of_the_operators_walkthrough_runs_as_written(runs: list[Ran]) -> None:
    wrong = []
    for ran in runs:
        for command, code in ran.rmcore_exits:
            if (code != 0) != ran.step.refused:
                expected = "a refusal" if ran.step.refused else "0"
                wrong.append(f"{where(ran)}\n  {command} exited {code}, not {expected}:\n"
                             f"{shortened(printed(ran.terminal))}")  # fmt: skip
    assert sum(len(ran.rmcore_exits) for ran in runs) > 50
    assert not wrong, "\n".join(wrong)


def test_the_pairs_and_people_the_walkthrough_names_exist_when_it_names_them(
    runs: list[Ran],
) -> None:
    missing = [f"{where(ran)}\n  no {name}" for ran in runs for name in ran.missing]
    assert not missing, "\n".join(missing)


def test_the_headline_figures_the_walkthrough_states_are_what_a_run_gives(
    runs: list[Ran],
) -> None:
    stated = 0
    wrong = []
    for ran in runs:
        for line in ran.step.shown:
            if FIGURE.search(line):
                stated += 1
                if not shown_pattern([line]).search(printed(ran.terminal)):
                    wrong.append(f"{where(ran)}\n  the doc says: {line}\n  the run gave:\n"
                                 f"{shortened(printed(ran.terminal))}")  # fmt: skip
    assert stated > 10, "the walkthrough no longer states its figures where the test looks"
    assert not wrong, "\n".join(wrong)


def test_every_output_the_walkthrough_shows_is_what_the_command_prints(
    runs: list[Ran],
) -> None:
    wrong = []
    for ran in runs:
        if ran.step.shown and not shows_what_it_printed(ran):
            shown = "\n".join(ran.step.shown)
            wrong.append(f"{where(ran)}\n--- the doc shows:\n{shortened(shown)}\n"
                         f"--- the run printed:\n{shortened(printed(ran.terminal))}")  # fmt: skip
    assert not wrong, "\n".join(wrong)
