"""``rmcore match``: propose pairs with the installed matching strategy, optionally record them."""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from rmcore.options import at_option, idempotency_option, progress_bar
from rmcore.output import format_option, resolve_format, write_rows
from rmcore.when import parse_occurred

if TYPE_CHECKING:
    from rmcore import matching

PROGRESS_DELAY = 1.0  # seconds before a progress bar appears on a terminal
PAIR_COLUMNS = ("mentor", "mentee", "score", "mentor_teaches", "mentee_teaches", "terms")
UNMATCHED_COLUMNS = ("person", "side", "reason")
ROW_COLUMNS = (
    "kind",
    "pair_id",
    "mentor_id",
    "mentee_id",
    "score",
    "mentor_to_mentee",
    "mentee_to_mentor",
    "terms",
    "goals",
    "person_id",
    "side",
    "reason",
)
# What BLAS libraries read, when numpy loads, for how many threads to use.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
METHODS = {
    "exact": "proven optimal",
    "top-k": "optimal among each person's best candidates",
    "best found": "best found within the search budget",
}


def single_threaded_blas() -> None:
    """Have numpy's BLAS use one thread in this process, unless the operator chose a number.

    The strategy multiplies matrices of a few million cells; on a machine shared with
    other work, BLAS threads wait for each other longer than they save (a 1,000 x 1,000
    product takes 4 ms on one thread and 10-20 ms on two). Only a process that has not
    loaded numpy yet is affected.
    """
    if "numpy" not in sys.modules and not any(os.environ.get(v) for v in BLAS_THREAD_VARIABLES):
        os.environ["OPENBLAS_NUM_THREADS"] = "1"


class DelayedProgress:
    """``progress(done, total)`` that shows a bar on a terminal once a second has passed."""

    def __init__(self, label: str, delay: float = PROGRESS_DELAY) -> None:
        self.label = label
        self.delay = delay
        self.started = time.monotonic()
        self.bar: Any = None
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        """Report that ``done`` of ``total`` steps are finished."""
        if self.bar is None:
            if time.monotonic() - self.started < self.delay:
                return
            self.bar = progress_bar(self.label, total).__enter__()
        if done > self.shown:
            self.bar.update(done - self.shown)
            self.shown = done

    def close(self) -> None:
        """Finish the bar if one is showing."""
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _signed(value: float) -> str:
    text = f"{value:+.2f}".rstrip("0").rstrip(".")
    return text if text not in ("+", "-") else "0"


def _terms_text(terms: dict[str, Any]) -> str:
    """``mentor_skills +2, cross_department +0.5``: the non-zero terms of a score."""
    shown = [f"{name} {_signed(value)}" for name, value in terms.items() if value]
    return ", ".join(shown) or "none"


def pair_rows(result: matching.MatchResult) -> Iterator[dict[str, Any]]:
    """Proposals as table rows an operator reads."""
    for p in result.proposals:
        reasons = p.reasons
        yield {
            "mentor": p.mentor_id,
            "mentee": p.mentee_id,
            "score": None if p.score is None else round(p.score, 2),
            "mentor_teaches": reasons.get("mentor_to_mentee") or "-",
            "mentee_teaches": reasons.get("mentee_to_mentor") or "-",
            "terms": _terms_text(reasons.get("terms") or {}),
        }


def result_rows(
    result: matching.MatchResult, pair_ids: dict[tuple[str, str], str]
) -> Iterator[dict[str, Any]]:
    """Proposals and unmatched people as one list of rows (JSON and CSV)."""
    for p in result.proposals:
        yield {
            "kind": "pair",
            "pair_id": pair_ids.get((p.mentor_id, p.mentee_id)),
            "mentor_id": p.mentor_id,
            "mentee_id": p.mentee_id,
            "score": p.score,
            "mentor_to_mentee": p.reasons.get("mentor_to_mentee"),
            "mentee_to_mentor": p.reasons.get("mentee_to_mentor"),
            "terms": p.reasons.get("terms"),
            "goals": list(p.goals),
        }
    for u in result.unmatched:
        yield {"kind": "unmatched", "person_id": u.person_id, "side": u.side, "reason": u.reason}


def summary_line(result: matching.MatchResult) -> str:
    """One sentence: how many pairs, how good, who is left."""
    s = result.summary
    method = METHODS.get(s.get("method"), s.get("method"))
    how = f"{result.strategy}, {method}" if method else result.strategy
    if s.get("method") == "best found" and s.get("upper_bound") is not None:
        how += f"; no assignment can exceed {s['upper_bound']:.2f}"
    line = (
        f"{len(result.proposals)} pair(s) proposed ({how}), total score "
        f"{result.total_score:.2f}; {len(result.unmatched)} unmatched."
    )
    waiting = []
    if s.get("already_mentored"):
        waiting.append(f"{s['already_mentored']} already have a mentor")
    if s.get("mentors_at_capacity"):
        waiting.append(f"{s['mentors_at_capacity']} mentor(s) have no free place")
    if waiting:
        line += f" Not in this round: {'; '.join(waiting)}."
    return line


@click.command()
@click.option("--apply", "apply_", is_flag=True, help="Record the proposed pairs.")
@click.option(
    "--strategy",
    default=None,
    metavar="NAME",
    help="Use the matching strategy of this plugin (default: the first that answers).",
)
@format_option
@at_option
@idempotency_option
@click.pass_obj
def match(app, apply_: bool, strategy: str | None, fmt: str | None, at, idempotency_key) -> None:
    """Propose pairs for the unpaired participants (dry run unless --apply).

    Prints each proposed pair with its score, the skills flowing each way and each
    term's contribution, then the people left unmatched and why. With --apply, the
    pairs are recorded as `paired` events in one transaction, refused as a whole if
    the program changed while they were computed.
    """
    from rmcore import matching

    engine = app.engine()
    installed = matching.strategies(engine.pm)
    if strategy is not None and strategy not in installed:
        raise click.BadParameter(
            f"no installed matching strategy is called {strategy} "
            f"(installed: {', '.join(installed) or 'none'})",
            param_hint="--strategy",
        )
    occurred = parse_occurred(at)
    if apply_ and idempotency_key is not None:
        earlier = engine.store.find_by_idempotency_key(app.program, idempotency_key)
        if earlier:
            # A retry of a batch already recorded: report it, compute nothing, append nothing.
            click.echo(
                f"Already recorded at position {earlier[0].position} (same idempotency key); "
                "nothing appended.",
                err=resolve_format(fmt) != "table",
            )
            return
    single_threaded_blas()
    progress = DelayedProgress("Matching")
    # Matching allocates many small objects and frees them all at the end: the cyclic
    # garbage collector would walk them over and over (about 30 ms for 1,000 per side).
    collecting = gc.isenabled()
    gc.disable()
    try:
        try:
            result = matching.propose(engine, app.program, strategy=strategy, progress=progress)
        finally:
            progress.close()
        recorded = None
        if apply_ and result.proposals:
            recorded = _record(engine, app, result, occurred, idempotency_key)
        _print(result, _pair_ids(recorded), fmt)
        _conclude(result, apply_, recorded, fmt)
    finally:
        if collecting:
            gc.enable()


def _record(engine, app, result: matching.MatchResult, occurred: str, key: str | None):
    """Apply the proposal, with a progress bar for large batches."""
    from rmcore import matching

    bar = DelayedProgress("Recording pairs")
    total = len(result.proposals)
    done = 0

    def step(count: int) -> None:
        """``count`` more pairs were recorded."""
        nonlocal done
        done += count
        bar(done, total)

    try:
        return matching.apply(
            engine, result, actor=app.actor, at=occurred, idempotency_key=key, progress=step
        )
    finally:
        bar.close()


def _pair_ids(outcome) -> dict[tuple[str, str], str]:
    """The pair id recorded for each (mentor, mentee)."""
    ids: dict[tuple[str, str], str] = {}
    for event in outcome.events if outcome is not None else ():
        if event.type == "paired":
            data = json.loads(event.data)
            ids[(data["mentor_id"], data["mentee_id"])] = data["pair_id"]
    return ids


def _print(result: matching.MatchResult, pair_ids, fmt: str | None) -> None:
    fmt = resolve_format(fmt)
    if fmt != "table":
        write_rows(result_rows(result, pair_ids), ROW_COLUMNS, fmt)
        return
    out = sys.stdout
    if result.proposals:
        out.write(f"Proposed pairs for program {result.program} (as of event {result.position}):\n")
        write_rows(pair_rows(result), PAIR_COLUMNS, "table")
    else:
        out.write(f"No pairs proposed for program {result.program}.\n")
    if result.unmatched:
        out.write(f"\nUnmatched ({len(result.unmatched)}):\n")
        rows = (
            {"person": u.person_id, "side": u.side, "reason": u.reason} for u in result.unmatched
        )
        write_rows(rows, UNMATCHED_COLUMNS, "table")
    out.write("\n")


def _conclude(result: matching.MatchResult, applied: bool, recorded, fmt: str | None) -> None:
    """The summary: on stdout under a table, on stderr beside JSON or CSV."""
    to_stderr = resolve_format(fmt) != "table"
    lines = [summary_line(result)]
    if not applied:
        if result.proposals:
            lines.append("Nothing recorded (dry run): add --apply to record these pairs.")
    elif recorded is None or not recorded.events:
        lines.append("Nothing to record.")
    elif recorded.duplicate:
        first = recorded.events[0].position
        lines.append(f"Already recorded at position {first} (same idempotency key).")
    else:
        first, last = recorded.events[0].position, recorded.events[-1].position
        span = f"position {first}" if first == last else f"positions {first}-{last}"
        lines.append(f"Recorded {len(recorded.events)} pair(s) ({span}).")
    for line in lines:
        click.echo(line, err=to_stderr)
