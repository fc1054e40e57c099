"""Every hook a plugin may implement. Implementations may accept any subset of the arguments."""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("rmcore")
hookimpl = pluggy.HookimplMarker("rmcore")


@hookspec(firstresult=True)
def rmcore_match(program, people, pairs, config, score_pair, progress) -> Any:
    """Propose pairs for the unpaired participants as ``{"pairs", "unmatched"}``; first wins."""


@hookspec
def rmcore_score_pair(mentor, mentee, config) -> dict[str, float] | None:
    """Extra score terms for a candidate pair, as ``{term: value}``; all results are summed."""


@hookspec
def rmcore_on_event(event, envelope, program, config, conn, run) -> None:
    """React to a newly delivered event (never a replay); ``run`` takers get event=None calls."""


@hookspec
def rmcore_kpis(conn, program, as_of, config, by) -> list | None:
    """Contribute ``rmcore.kpis.Kpi`` records as of a business date; with ``by``, one per group."""


@hookspec
def rmcore_register_commands(cli) -> None:
    """Add click commands to the ``rmcore`` command group."""


@hookspec
def rmcore_register_event_types(register) -> None:
    """Add event classes: call ``register(cls, upcasters=None)`` for each."""


@hookspec
def rmcore_forget(conn, program, person_id, pair_ids) -> None:
    """Delete what the plugin stored about a forgotten person, in the forget transaction."""
