"""Concurrency soak: many processes issue random valid and invalid commands at one database.

    python benchmarks/soak.py                  # 8 processes for 120 s
    python benchmarks/soak.py --seconds 600 --workers 8 --db soak.db

Each worker is a separate Python process that runs ``rmcore`` commands (join, pair,
session, feedback, end-pair, leave, config set, and now and then a listing) through the
CLI's own entry point, each with an idempotency key of its own, picking its targets from
what the database holds at that moment so that many commands are accepted and many are
refused by the rules. Now and then it retries an accepted command with the same key.
Every command is written down with its outcome.

Afterwards the script checks that:
- ``verify`` and ``replay --check`` pass;
- every refusal is a rule's refusal (a DomainError or a date error), never "database is
  locked", a busy store or a traceback;
- every accepted command's events are in the log exactly once, at the positions it
  reported, under its idempotency key; a refused command left no event and no key;
- a retry appended nothing; every event in the log belongs to an accepted command.

It prints the figures and exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

PROGRAM = "default"
RULE_ERRORS = {"DomainError", "WhenError"}
POSITIONS = re.compile(r"\(positions? (\d+)(?:-(\d+))?\)")
ALREADY = re.compile(r"^Already recorded(?: at position (\d+))? \(same idempotency key\)")
CONFIG_KEYS = ("matching_skills.min_score", "soak.level", "notify_email.sender", "kpi.window")
BAD_CONFIG_KEYS = ("Soak Level", "notify_email.password", "nodots", "matching.api_key")
SKILLS = ("AI tools", "prompt engineering", "leadership", "negotiation", "automation")
WEIGHTS = {
    "join": 20,
    "pair": 18,
    "session": 20,
    "feedback": 14,
    "end-pair": 7,
    "leave": 4,
    "config": 12,
    "listing": 5,
}


# --- the worker -----------------------------------------------------------------------


class Targets:
    """What the database holds now, read straight from its read models."""

    def __init__(self, db: str) -> None:
        self.conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)

    def active_people(self) -> list[tuple[str, str]]:
        """(person_id, role) of everyone active."""
        return self.conn.execute(
            "SELECT person_id, role FROM people WHERE program = ? AND status = 'active'",
            (PROGRAM,),
        ).fetchall()

    def pairs(self, status: str | None = None) -> list[tuple[str, str, str]]:
        """(pair_id, mentor_id, mentee_id), active ones or all."""
        where = "" if status is None else " AND status = ?"
        return self.conn.execute(
            f"SELECT pair_id, mentor_id, mentee_id FROM pairs WHERE program = ?{where}",
            (PROGRAM,) if status is None else (PROGRAM, status),
        ).fetchall()


def random_command(rng: random.Random, targets: Targets, elapsed: float) -> tuple[str, list]:
    """A kind and an ``rmcore`` argument list; roughly one in five is invalid on purpose."""
    kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    invalid = rng.random() < 0.2
    if kind == "join":
        n = rng.randrange(0, 40 + int(30 * elapsed))  # new people keep arriving
        role = ("mentor", "mentee", "both")[n % 3]
        email = "not-an-address" if invalid else f"p{n}@example.org"
        return kind, ["join", f"p{n}", "--name", f"Person {n}", "--email", email,
                      "--role", "boss" if invalid and rng.random() < 0.5 else role,
                      "--capacity", str(rng.randint(1, 3)),
                      "--offers", rng.choice(SKILLS), "--seeks", rng.choice(SKILLS)]  # fmt: skip
    if kind == "pair":
        people = targets.active_people()
        mentors = [p for p, role in people if role != "mentee"] or ["nobody"]
        mentees = [p for p, role in people if role != "mentor"] or ["nobody"]
        mentor = rng.choice(mentors)
        mentee = mentor if invalid else rng.choice(mentees)
        return kind, ["pair", mentor, mentee, "--goal", "use AI assistants weekly"]
    if kind in ("session", "feedback", "end-pair"):
        pairs = targets.pairs("active") if rng.random() < 0.9 else targets.pairs()
        pair_id, mentor, mentee = rng.choice(pairs or [("no-such-pair", "x", "y")])
        if kind == "session":
            minutes = rng.choice([0, 601, -5]) if invalid else rng.randint(15, 120)
            return kind, ["session", pair_id, "--minutes", str(minutes), "--topic", "prompting",
                          "--mode", rng.choice(["virtual", "in-person"])]  # fmt: skip
        if kind == "feedback":
            rating = rng.choice([0, 6, 42]) if invalid else rng.randint(1, 5)
            by = "outsider" if invalid and rng.random() < 0.5 else rng.choice([mentor, mentee])
            args = ["feedback", pair_id, "--by", by, "--rating", str(rating),
                    "--gained", rng.choice(SKILLS), "--comment", "useful; more soon"]  # fmt: skip
            return kind, args + (["--fresh-perspective"] if rng.random() < 0.5 else [])
        return kind, ["end-pair", pair_id, "--reason", "" if invalid else "goals met"]
    if kind == "leave":
        people = targets.active_people()
        person = "ghost" if invalid or not people else rng.choice(people)[0]
        return kind, ["leave", person, "--reason", "changed teams"]
    if kind == "config":
        if invalid:
            return kind, ["config", "set", rng.choice(BAD_CONFIG_KEYS), "1"]
        key = rng.choice(CONFIG_KEYS)
        value = str(rng.choice([0.2, 0.3, 0.4])) if "score" in key else str(rng.randint(1, 4))
        return kind, ["config", "set", key, value]
    return kind, [rng.choice(["people", "pairs", "programs"]), "--format", "json"]


def invoke(cli, db: str, actor: str, args: list[str]) -> dict:
    """Run one command through the CLI's entry point in this process; describe the outcome."""
    import click

    out = io.StringIO()
    started = time.monotonic()
    record: dict = {"args": args}
    try:
        with contextlib.redirect_stdout(out):
            cli.main(["--db", db, "--actor", actor, *args], "rmcore", standalone_mode=False)
        record.update(code=0)
    except click.ClickException as exc:
        cause = exc.__context__
        record.update(
            code=exc.exit_code,
            message=exc.format_message(),
            cause=type(cause).__name__ if cause is not None else type(exc).__name__,
        )
    except click.exceptions.Exit as exc:
        record.update(code=exc.exit_code)
    except BaseException:  # anything else is exactly what the soak hunts for
        record.update(code="crash", message=traceback.format_exc())
    record["stdout"] = out.getvalue()[-400:]
    record["seconds"] = round(time.monotonic() - started, 4)
    return record


def worker(db: str, number: int, seconds: float, seed: int, out: str) -> None:
    """Issue random commands until the time is up, one JSON line per command in ``out``."""
    from rmcore.cli import cli

    rng = random.Random(f"{seed}-{number}")
    targets = Targets(db)
    actor = f"soak-{number}"
    started = time.monotonic()
    count = 0
    with open(out, "w", encoding="utf-8") as log:
        while (elapsed := time.monotonic() - started) < seconds:
            count += 1
            kind, args = random_command(rng, targets, elapsed)
            key = f"w{number}-{count}"
            if kind != "listing":
                args = [*args, "--idempotency-key", key]
            record = {"worker": number, "key": key, "kind": kind, "retry": False}
            record.update(invoke(cli, db, actor, args))
            log.write(json.dumps(record) + "\n")
            if record["code"] == 0 and kind != "listing" and rng.random() < 0.1:
                again = {"worker": number, "key": key, "kind": kind, "retry": True}
                again.update(invoke(cli, db, actor, args))
                log.write(json.dumps(again) + "\n")
            log.flush()


# --- the run and the audit ------------------------------------------------------------


def run_workers(db: Path, *, workers: int, seconds: float, seed: int, folder: Path) -> list[dict]:
    """Start ``workers`` processes on ``db`` and return every command they recorded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMCORE_")}
    outputs = [folder / f"worker-{n}.jsonl" for n in range(workers)]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                str(n),
                "--db",
                str(db),
                "--seconds",
                str(seconds),
                "--seed",
                str(seed),
                "--out",
                str(outputs[n]),
            ],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for n in range(workers)
    ]
    failures = []
    for n, process in enumerate(processes):
        _, err = process.communicate(timeout=seconds + 300)
        if process.returncode != 0:
            failures.append(f"worker {n} exited {process.returncode}: {err[-2000:]}")
    if failures:
        raise RuntimeError("\n".join(failures))
    return [json.loads(line) for path in outputs for line in path.read_text().splitlines()]


def reported_positions(stdout: str) -> list[int]:
    """The positions an accepted command printed: ``(position 7)`` or ``(positions 8-11)``."""
    found = POSITIONS.search(stdout)
    if not found:
        return []
    first = int(found.group(1))
    return list(range(first, int(found.group(2) or first) + 1))


def refusal_problem(record: dict) -> str | None:
    """Why a refusal is not a rule's refusal, or None."""
    message = record.get("message", "")
    lowered = message.lower()
    if record["code"] != 1:
        return f"exit {record['code']}"
    if record.get("cause") not in RULE_ERRORS:
        return f"refused by {record.get('cause')}, not by a rule"
    for word in ("locked", "busy", "traceback", "database error"):
        if word in lowered:
            return f"the message mentions {word!r}"
    return None


def audit(db: Path, records: list[dict], preset: dict[str, list[int]]) -> tuple[list[str], Counter]:
    """Check the records against the log; ``preset`` maps the preparation's keys to their
    positions. Returns the problems found and the figures."""
    from click.testing import CliRunner

    from rmcore.cli import cli

    problems: list[str] = []
    figures: Counter = Counter()
    for check in (["verify"], ["replay", "--check"]):
        result = CliRunner().invoke(cli, ["--db", str(db), *check])
        if result.exit_code != 0:
            problems.append(f"`rmcore {' '.join(check)}` failed: {result.output}")
    conn = sqlite3.connect(db)
    try:
        by_key: dict[str, list[int]] = {}
        unkeyed = 0
        for position, key in conn.execute("SELECT position, idempotency_key FROM events"):
            if key is None:
                unkeyed += 1
            else:
                by_key.setdefault(key, []).append(position)
        remembered = {row[0] for row in conn.execute("SELECT key FROM command_keys")}
        total = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()
    if unkeyed:
        problems.append(f"{unkeyed} event(s) in the log carry no idempotency key")
    accounted = 0
    accepted_keys: set[str] = set()
    for key, positions in preset.items():
        if by_key.get(key) != positions:
            problems.append(f"the preparation's {key} is not at {positions}")
        accounted += len(positions)
        accepted_keys.add(key)
    for record in records:
        where = f"{record['key']} {' '.join(map(str, record['args']))!r}"
        figures["issued"] += 1
        if not record["retry"]:
            figures[f"{record['kind']} issued"] += 1
        if record["code"] == "crash":
            figures["crashed"] += 1
            problems.append(f"{where} raised:\n{record['message']}")
            continue
        if record["kind"] == "listing":
            figures["listings"] += 1
            if record["code"] != 0:
                problems.append(f"{where}: a listing failed: {record.get('message')}")
            continue
        if record["retry"]:
            figures["retries"] += 1
            if record["code"] != 0 or not ALREADY.match(record["stdout"]):
                problems.append(f"{where}: a retry was not recognised: {record}")
            continue
        if record["code"] == 0:
            figures["accepted"] += 1
            figures[f"{record['kind']} accepted"] += 1
            accepted_keys.add(record["key"])
            expected = reported_positions(record["stdout"])
            if not expected:
                figures["accepted, nothing to change"] += 1
                if not record["stdout"].startswith("Nothing to record"):
                    problems.append(f"{where}: accepted but printed no positions")
            if by_key.get(record["key"], []) != expected:
                problems.append(
                    f"{where}: reported positions {expected}, the log holds "
                    f"{by_key.get(record['key'], [])} under its key"
                )
            if record["key"] not in remembered:
                problems.append(f"{where}: accepted but its key was not remembered")
            accounted += len(expected)
            figures["events appended"] += len(expected)
        else:
            figures["refused"] += 1
            figures[f"{record['kind']} refused"] += 1
            problem = refusal_problem(record)
            if problem:
                problems.append(f"{where}: {problem}: {record.get('message')}")
            if record["key"] in by_key or record["key"] in remembered:
                problems.append(f"{where}: refused, yet its key is in the log")
    if accounted != total:
        problems.append(f"the log holds {total} events; accepted commands account for {accounted}")
    stray = set(by_key) - accepted_keys
    if stray:
        problems.append(f"events under keys no accepted command used: {sorted(stray)[:10]}")
    figures["log events"] = total
    return problems, figures


def prepare(db: Path) -> dict[str, list[int]]:
    """A fresh database with a few people already in it; their keys and positions."""
    from rmcore.commands import Join
    from rmcore.engine import Engine

    preset = {}
    with Engine.open(db, create=True) as engine:
        for n in range(12):
            role = ("mentor", "mentee", "both")[n % 3]
            outcome = engine.execute(
                PROGRAM,
                Join(person_id=f"p{n}", name=f"Person {n}", email=f"p{n}@example.org",
                     role=role, capacity=2, skills_offered=(SKILLS[n % 5],),
                     at="2025-01-06T09:00:00Z"),
                actor="setup",
                idempotency_key=f"setup-{n}",
            )  # fmt: skip
            preset[f"setup-{n}"] = [event.position for event in outcome.events]
    return preset


def soak(
    db: Path, *, workers: int = 8, seconds: float = 120.0, seed: int = 0
) -> tuple[list[dict], list[str], Counter]:
    """Prepare ``db``, run the workers, audit; returns the records, problems and figures."""
    preset = prepare(db)
    with tempfile.TemporaryDirectory(prefix="rmcore-soak-") as folder:
        started = time.monotonic()
        records = run_workers(db, workers=workers, seconds=seconds, seed=seed, folder=Path(folder))
        figures_time = time.monotonic() - started
    problems, figures = audit(db, records, preset)
    figures["wall seconds"] = round(figures_time, 1)
    return records, problems, figures


def main() -> None:
    """Command line: run a soak, or (``--worker``) be one of its workers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--db", help="database to create (default: a temporary file)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker is not None:
        worker(options.db, options.worker, options.seconds, options.seed, options.out)
        return
    seed = options.seed if options.seed is not None else random.randrange(2**32)
    with tempfile.TemporaryDirectory(prefix="rmcore-soak-db-") as scratch:
        db = Path(options.db) if options.db else Path(scratch) / "soak.db"
        if db.exists():
            parser.error(f"{db} exists; the soak needs a fresh database")
        _, problems, figures = soak(db, workers=options.workers, seconds=options.seconds,
                                    seed=seed)  # fmt: skip
        print_figures(figures, options.workers, options.seconds, seed)
        for problem in problems[:50]:
            print("PROBLEM:", problem)
        if problems:
            print(f"{len(problems)} problem(s) found")
            sys.exit(1)
        print("All checks passed: nothing lost, nothing doubled, every refusal a rule's.")


def print_figures(figures: Counter, workers: int, seconds: float, seed: int) -> None:
    """The run's figures, one per line."""
    issued = figures["issued"]
    wall = figures["wall seconds"]
    print(f"soak: {workers} processes, {seconds:g} s requested, {wall} s wall, seed {seed}")
    print(f"commands issued     {issued} ({issued / max(wall, 1e-9):.1f}/s, retries and "
          "listings included)")  # fmt: skip
    print(f"  accepted          {figures['accepted']} "
          f"({figures['accepted, nothing to change']} of them changed nothing)")  # fmt: skip
    print(f"  refused by a rule {figures['refused']}")
    print(f"  retries (no-ops)  {figures['retries']}")
    print(f"  listings          {figures['listings']}")
    print(f"  crashed           {figures['crashed']}")
    print(
        f"events in the log   {figures['log events']} ({figures['events appended']} appended by "
        f"accepted commands, {figures['log events'] - figures['events appended']} by the setup)"
    )
    for kind in WEIGHTS:
        if kind == "listing":
            continue
        issued, accepted = figures[f"{kind} issued"], figures[f"{kind} accepted"]
        refused = figures[f"{kind} refused"]
        print(f"  {kind:<9} issued {issued:>6}  accepted {accepted:>6}  refused {refused:>6}")


if __name__ == "__main__":
    main()
