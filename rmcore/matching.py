"""Matching, engine side: ask a strategy for proposals, check them, record them.

``propose`` reads one consistent snapshot of the program (active people, every pair
ever made, settings, and the position of its last event), calls ``rmcore_match`` and
checks the answer against the hard rules, whoever wrote the strategy. ``apply``
records the proposals as ``paired`` events in one transaction, refused as a whole if
the program changed after the snapshot.

A strategy answers with plain data, so a plugin needs nothing from rmcore to write it::

    {"pairs": [{"mentor_id": "ada", "mentee_id": "grace", "score": 6.5,
                "reasons": {...}, "goals": [...]}],
     "unmatched": [{"person_id": "ken", "side": "mentee", "reason": "..."}],
     "summary": {...}}

(a bare list of pairs is accepted too). A strategy reports a bad setting by raising
``ValueError``; the message reaches the operator as a refusal.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pluggy
from attrs import field, frozen

from rmcore import queries
from rmcore.commands import DomainError, MakePair
from rmcore.engine import Engine, Outcome
from rmcore.model import Pair, Person
from rmcore.plugins import PluginLoadError, each_call

HOOK = "rmcore_match"
SIDES = ("mentor", "mentee", "both")

Progress = Callable[[int, int], None]
ScorePair = Callable[[Person, Person], dict[str, float]]


class MatchError(DomainError):
    """No strategy answered, or one answered with something the rules refuse."""


@frozen
class Proposal:
    """One proposed pair, with the score and the reasons the strategy gave."""

    mentor_id: str
    mentee_id: str
    score: float | None = None
    reasons: dict[str, Any] = field(factory=dict)
    goals: tuple[str, ...] = field(default=(), converter=tuple)


@frozen
class Unmatched:
    """Someone the proposal leaves without a pair, and why."""

    person_id: str
    side: str
    reason: str


@frozen
class MatchResult:
    """A strategy's proposal for a program, as of the program's event ``position``."""

    program: str
    strategy: str
    position: int
    proposals: tuple[Proposal, ...] = ()
    unmatched: tuple[Unmatched, ...] = ()
    summary: dict[str, Any] = field(factory=dict)

    @property
    def total_score(self) -> float:
        """The sum of the proposals' scores."""
        return math.fsum(p.score for p in self.proposals if p.score is not None)


def strategies(pm: pluggy.PluginManager) -> list[str]:
    """Names of the plugins implementing ``rmcore_match``, in the order they are asked."""
    return [impl.plugin_name for impl in reversed(pm.hook.rmcore_match.get_hookimpls())]


def _callers(pm: pluggy.PluginManager, strategy: str | None) -> list[tuple[str, Any]]:
    """One hook caller per strategy to ask, each reaching only that plugin."""
    impls = list(reversed(pm.hook.rmcore_match.get_hookimpls()))
    if strategy is not None:
        impls = [impl for impl in impls if impl.plugin_name == strategy]
        if not impls:
            installed = ", ".join(strategies(pm)) or "none"
            raise MatchError(
                f"no installed matching strategy is called {strategy} (installed: {installed})"
            )
    callers = []
    for impl in impls:
        others = [other.plugin for other in pm.hook.rmcore_match.get_hookimpls()]
        others = [plugin for plugin in others if plugin is not impl.plugin]
        callers.append((impl.plugin_name, pm.subset_hook_caller(HOOK, remove_plugins=others)))
    return callers


def score_pair_caller(pm: pluggy.PluginManager, config: Mapping[str, Any]) -> ScorePair | None:
    """The summed ``rmcore_score_pair`` terms for a pair, or None when no plugin adds any."""
    if not pm.hook.rmcore_score_pair.get_hookimpls():
        return None

    def score_pair(mentor: Person, mentee: Person) -> dict[str, float]:
        """Every plugin's terms for this pair, summed by name; a failure names its plugin."""
        totals: dict[str, float] = {}
        arguments = {"mentor": mentor, "mentee": mentee, "config": config}
        for impl, terms in each_call(pm, "rmcore_score_pair", arguments):
            if terms is None:
                continue
            plugin = impl.plugin_name
            if not isinstance(terms, Mapping):
                raise MatchError(
                    f"plugin {plugin}: rmcore_score_pair returned {terms!r}, not a mapping of terms"
                )
            for name, value in terms.items():
                if not isinstance(name, str) or not _finite(value):
                    raise MatchError(
                        f"plugin {plugin}: rmcore_score_pair term {name!r} = {value!r} is not a "
                        "finite number"
                    )
                totals[name] = totals.get(name, 0.0) + float(value)
        return totals

    return score_pair


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def snapshot(
    conn: sqlite3.Connection, program: str
) -> tuple[list[Person], list[Pair], dict[str, Any], int]:
    """Active people, every pair, the settings and the last position, read consistently."""
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        people = list(queries.people(conn, program))
        pairs = queries.pairs(conn, program, status=None)
        config = queries.program_config(conn, program)
        position = queries.program_position(conn, program)
    finally:
        if own:
            conn.execute("COMMIT")
    return people, pairs, config, position


def propose(
    engine: Engine,
    program: str,
    strategy: str | None = None,
    progress: Progress | None = None,
) -> MatchResult:
    """Ask the strategy (the first that answers, or the one named) for pairs, and check them."""
    people, pairs, config, position = snapshot(engine.conn, program)
    arguments = {
        "program": program,
        "people": people,
        "pairs": pairs,
        "config": config,
        "score_pair": score_pair_caller(engine.pm, config),
        "progress": progress,
    }
    callers = _callers(engine.pm, strategy)
    if not callers:
        raise MatchError(
            "no matching strategy is installed (is matching_skills disabled?); "
            "pair people by hand with `rmcore pair`"
        )
    for name, caller in callers:
        try:
            raw = caller(**arguments)
        except (MatchError, PluginLoadError):
            raise  # another plugin's failure inside the strategy, already named
        except ValueError as exc:
            raise MatchError(f"{name}: {exc}") from None
        except Exception as exc:
            raise PluginLoadError(
                f"plugin {name} failed in {HOOK}: {type(exc).__name__}: {exc}"
            ) from exc
        if raw is not None:
            result = _result(program, name, position, raw)
            check(result, people, pairs)
            return result
    if strategy is not None:
        raise MatchError(f"strategy {strategy} proposed nothing for program {program}")
    raise MatchError(f"no installed strategy proposed anything for program {program}")


def _result(program: str, name: str, position: int, raw: Any) -> MatchResult:
    """The strategy's plain-data answer as a MatchResult, refusing malformed data."""
    if isinstance(raw, Mapping):
        pairs, unmatched, summary = (
            raw.get("pairs", ()),
            raw.get("unmatched", ()),
            raw.get("summary", {}),
        )
    else:
        pairs, unmatched, summary = raw, (), {}
    try:
        proposals = tuple(_proposal(p) for p in pairs)
        left = tuple(_unmatched(u) for u in unmatched)
        summary = dict(summary)
    except (TypeError, KeyError, ValueError) as exc:
        raise MatchError(f"strategy {name} answered with malformed data: {exc}") from None
    return MatchResult(program, name, position, proposals, left, summary)


def _proposal(raw: Mapping[str, Any]) -> Proposal:
    score = raw.get("score")
    if score is not None and not _finite(score):
        raise ValueError(f"score {score!r} is not a finite number")
    reasons = raw.get("reasons") or {}
    if not isinstance(reasons, Mapping):
        raise ValueError("reasons must be a mapping")
    goals = raw.get("goals") or ()
    if isinstance(goals, str) or not all(isinstance(g, str) for g in goals):
        raise ValueError("goals must be a list of text")
    return Proposal(
        mentor_id=_text(raw["mentor_id"]),
        mentee_id=_text(raw["mentee_id"]),
        score=None if score is None else float(score),
        reasons=dict(reasons),
        goals=tuple(goals),
    )


def _unmatched(raw: Mapping[str, Any]) -> Unmatched:
    side = raw.get("side", "both")
    if side not in SIDES:
        raise ValueError(f"side {side!r} is not one of {', '.join(SIDES)}")
    return Unmatched(_text(raw["person_id"]), side, _text(raw.get("reason", "")))


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not text")
    return value


def check(result: MatchResult, people: Sequence[Person], pairs: Sequence[Pair]) -> None:
    """Refuse a proposal that breaks a hard rule, naming the strategy and the pair."""
    active = {p.person_id: p for p in people if p.active}
    before = {frozenset((p.mentor_id, p.mentee_id)) for p in pairs}
    load = Counter(p.mentor_id for p in pairs if p.active)
    mentored = {p.mentee_id for p in pairs if p.active}
    proposed: set[frozenset[str]] = set()
    for proposal in result.proposals:
        mentor_id, mentee_id = proposal.mentor_id, proposal.mentee_id
        problem = _violation(active, before, load, mentored, proposed, mentor_id, mentee_id)
        if problem:
            raise MatchError(
                f"strategy {result.strategy} proposed {mentor_id} to mentor {mentee_id}, "
                f"which the rules refuse: {problem}"
            )
        load[mentor_id] += 1
        mentored.add(mentee_id)
        proposed.add(frozenset((mentor_id, mentee_id)))


def _violation(active, before, load, mentored, proposed, mentor_id, mentee_id) -> str | None:
    """What rule pairing these two would break, or None."""
    mentor, mentee = active.get(mentor_id), active.get(mentee_id)
    if mentor_id == mentee_id:
        return "nobody is paired with themselves"
    if mentor is None or mentee is None:
        return f"{mentor_id if mentor is None else mentee_id} is not an active participant"
    if not mentor.can_mentor:
        return f"{mentor_id} joined as a {mentor.role}"
    if not mentee.can_be_mentored:
        return f"{mentee_id} joined as a {mentee.role}"
    if mentor.manager_id == mentee_id or mentee.manager_id == mentor_id:
        return "one manages the other"
    if frozenset((mentor_id, mentee_id)) in before:
        return "they were paired before in this program"
    if frozenset((mentor_id, mentee_id)) in proposed:
        return "the two are proposed twice"
    if mentee_id in mentored:
        return f"{mentee_id} already has a mentor"
    if load[mentor_id] >= mentor.capacity:
        return f"{mentor_id} has no free place (capacity {mentor.capacity})"
    return None


def apply(
    engine: Engine,
    result: MatchResult,
    *,
    actor: str,
    at: str,
    idempotency_key: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Outcome:
    """Record the proposals as ``paired`` events in one transaction, or refuse them all."""
    commands = [
        MakePair(
            mentor_id=p.mentor_id,
            mentee_id=p.mentee_id,
            at=at,
            goals=p.goals,
            strategy=result.strategy,
            score=p.score,
            reasons=p.reasons,
        )
        for p in result.proposals
    ]
    if not commands:
        return Outcome([])
    return engine.execute(
        result.program,
        commands,
        actor=actor,
        idempotency_key=idempotency_key,
        expected_program_position=result.position,
        progress=progress,
    )
