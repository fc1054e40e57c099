"""``rmcore demo``: build a realistic program in a fresh database and show its KPIs."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rmcore.engine import Engine

NEXT_STEPS = (
    ("rmcore --db {db} people", "who takes part"),
    ("rmcore --db {db} pairs", "pairs, sessions, last meeting"),
    ("rmcore --db {db} kpi --by department", "KPIs per department (small groups hidden)"),
    ("rmcore --db {db} history {person}", "everything that happened to one person"),
    ("rmcore --db {db} report --out report.html", "a printable report with charts"),
    ("rmcore --db {db} verify", "prove nobody rewrote the log"),
    ("rmcore --db new.db init", "then start your own program"),
    ("rmcore --db new.db import {export}", "from the demo's HR export"),
)


@click.command()
@click.option("--people", type=click.IntRange(10, 20_000), default=200, show_default=True,
              help="How many employees the organisation has.")  # fmt: skip
@click.option("--months", type=click.IntRange(1, 36), default=6, show_default=True,
              help="How many months of the program to simulate.")  # fmt: skip
@click.option("--seed", type=int, default=42, show_default=True,
              help="The same seed builds the same program.")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace an existing database (and its export).")
@click.pass_obj
def demo(app, people: int, months: int, seed: int, force: bool) -> None:
    """Build a realistic demo program in a fresh database and show its KPIs."""
    from rmcore import demo as builder
    from rmcore import matching
    from rmcore.kpis import collect_kpis
    from rmcore.output import write_rows

    db = Path(app.db_path)
    export = db.with_name(f"{db.stem}-people.csv")
    existing = [p for p in (db, export) if p.exists()]
    if existing and not force:
        raise click.ClickException(
            f"{', '.join(map(str, existing))} already exist(s); the demo builds a fresh "
            "database (use --force to replace it, or --db to choose another file)"
        )
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), export):
        if path.exists():
            os.unlink(path)
    built = (db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}-journal"), export,
             export.with_name(f"{export.name}.partial"))  # fmt: skip
    try:
        engine = app.engine(create=True)
        click.echo(
            f"Building a {months}-month program for {people} people (seed {seed})...", err=True
        )

        def match(engine: Engine, program: str, at: str) -> int:
            result = matching.propose(engine, program)
            matching.apply(engine, result, actor=app.actor, at=at)
            return len(result.proposals)

        summary = builder.build_demo(
            engine, app.program, people=people, months=months, seed=seed, export=export,
            actor=app.actor, match=match,
        )  # fmt: skip
    except BaseException:
        # Interrupted (Ctrl-C) or failed: a half-built demo must not block the rerun.
        app.close()
        for path in built:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        raise
    click.echo(
        f"Built program '{app.program}' in {db}: {summary.people} people, {summary.pairs} pairs, "
        f"{summary.sessions} sessions, {summary.feedback} feedback, {summary.left} leavers "
        f"({summary.events} events, {summary.start[:10]} to {summary.end[:10]}).\n"
        f"The HR export of its {summary.exported} active people is {export}.\n"
    )
    kpis = collect_kpis(engine, app.program, summary.end)
    write_rows(
        ({"kpi": k.name, "value": _shown(k.value, k.unit), "meaning": k.description}
         for k in kpis),
        ("kpi", "value", "meaning"),
        "table",
    )  # fmt: skip
    first = engine.conn.execute(
        "SELECT mentee_id FROM pairs WHERE program = ? ORDER BY pair_id LIMIT 1", (app.program,)
    ).fetchone()
    values = {"db": db, "export": export, "person": first[0] if first else "PERSON"}
    steps = [(command.format(**values), why) for command, why in NEXT_STEPS]
    width = max(len(command) for command, _ in steps)
    click.echo("\nTry next:")
    for command, why in steps:
        click.echo(f"  {command.ljust(width)}   {why}")


def _shown(value, unit: str) -> str:
    """A KPI value for a person: rates as percentages, hours and averages rounded."""
    if value is None:
        return "n/a"
    if unit in ("ratio", "rate", "fraction", "share"):
        return f"{value:.0%}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)
