"""Matching through the engine: proposals from the read models, checks, and ``apply``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmcore import hookimpl, queries
from rmcore.commands import DomainError, EndPair, Join, MakePair, SetConfig
from rmcore.engine import Engine
from rmcore.matching import MatchError, apply, propose, strategies
from rmcore.plugins import make_plugin_manager

AT = "2025-05-01T09:00:00Z"
ACTOR = "hr-ops"


def join(person_id: str, role: str, **fields) -> Join:
    """A Join with sensible defaults, dated before AT."""
    values = {
        "name": person_id.title(),
        "email": f"{person_id}@example.org",
        "role": role,
        "at": "2025-04-01T09:00:00Z",
    }
    return Join(person_id=person_id, **{**values, **fields})


TRIO = [
    join("ada", "mentor", generation="Gen Z", department="Data", capacity=1,
         skills_offered=("AI tools",), skills_sought=("negotiation",)),
    join("bea", "mentor", generation="Gen Z", department="Sales", capacity=1,
         skills_offered=("AI tools", "SQL"), skills_sought=("budgeting",)),
    join("cyd", "mentee", generation="Gen X", department="Finance",
         skills_offered=("negotiation", "budgeting"), skills_sought=("ai-tools", "sql")),
]  # fmt: skip


def engine_with(path: Path, commands, pm=None) -> Engine:
    """A fresh database holding ``commands``."""
    engine = Engine.open(path, create=True, pm=pm)
    engine.execute("default", commands, actor=ACTOR)
    return engine


def paired_events(engine: Engine) -> list[dict]:
    """Payloads of every ``paired`` event, in log order."""
    return [json.loads(e.data) for e in engine.store.read(0, types=["paired"])]


def test_apply_records_one_paired_event_per_proposal_with_strategy_score_and_reasons(tmp_path):
    """Each proposal becomes a ``paired`` event carrying what the operator saw."""
    engine = engine_with(tmp_path / "m.db", TRIO)
    result = propose(engine, "default")
    assert [(p.mentor_id, p.mentee_id) for p in result.proposals] == [("bea", "cyd")]
    outcome = apply(engine, result, actor=ACTOR, at=AT)
    (event,) = paired_events(engine)
    proposal = result.proposals[0]
    assert event["strategy"] == "matching_skills"
    assert event["score"] == proposal.score
    assert event["reasons"] == proposal.reasons
    assert event["reasons"]["mentor_to_mentee"] == ["ai tools", "sql"]
    assert event["reasons"]["mentee_to_mentor"] == ["budgeting"]
    assert outcome.events[0].actor == ACTOR
    (pair,) = queries.pairs(engine.conn, "default")
    assert (pair.mentor_id, pair.mentee_id, pair.strategy) == ("bea", "cyd", "matching_skills")
    engine.close()


def test_apply_is_refused_whole_when_the_program_changed_after_the_proposal(tmp_path):
    """A proposal computed on an older state records nothing at all."""
    engine = engine_with(tmp_path / "m.db", [*TRIO, join("dee", "mentee", skills_sought=("SQL",))])
    result = propose(engine, "default")
    assert len(result.proposals) == 2
    engine.execute("default", SetConfig(key="matching_skills.min_score", value=2, at=AT),
                   actor=ACTOR)  # fmt: skip
    before = engine.store.head()
    with pytest.raises(DomainError, match="changed since the proposal was made"):
        apply(engine, result, actor=ACTOR, at=AT)
    assert engine.store.head() == before
    assert paired_events(engine) == []
    fresh = propose(engine, "default")
    apply(engine, fresh, actor=ACTOR, at=AT)
    assert len(paired_events(engine)) == len(fresh.proposals)
    engine.close()


def test_an_ended_pair_is_not_proposed_again(tmp_path):
    """The two best partners, once paired and ended, are never proposed to each other again."""
    engine = engine_with(tmp_path / "m.db", TRIO)
    engine.execute("default", MakePair(mentor_id="bea", mentee_id="cyd", at=AT), actor=ACTOR)
    engine.execute("default", EndPair(pair_id="bea-cyd", reason="moved", at=AT), actor=ACTOR)
    result = propose(engine, "default")
    assert [(p.mentor_id, p.mentee_id) for p in result.proposals] == [("ada", "cyd")]
    unmatched = {u.person_id: u for u in result.unmatched}
    assert "paired before" in unmatched["bea"].reason
    engine.close()


def test_the_proposal_records_the_position_it_was_computed_at(tmp_path):
    """The snapshot position is the program's last event."""
    engine = engine_with(tmp_path / "m.db", TRIO)
    assert propose(engine, "default").position == queries.program_position(engine.conn, "default")
    engine.close()


class SameSite:
    """An organisation's own term: people at the same site get 5 points."""

    @hookimpl
    def rmcore_score_pair(self, mentor, mentee, config):
        """+5 when both work in the same department (the "site" of this test)."""
        return {"same_site": 5.0} if mentor.department == mentee.department else {}


class Flat:
    """A second plugin adding a constant term: all plugins' terms are summed."""

    @hookimpl
    def rmcore_score_pair(self, mentor, mentee):
        """+0.25 for every pair."""
        return {"same_site": 0.25, "program_bonus": 0.25}


def test_terms_from_other_plugins_change_the_pairs_and_appear_in_the_reasons(tmp_path):
    """rmcore_score_pair terms are added to the score; every plugin's terms are summed."""
    people = [*TRIO[:2], join("cyd", "mentee", generation="Gen X", department="Data",
                              skills_offered=("negotiation", "budgeting"),
                              skills_sought=("ai-tools", "sql"))]  # fmt: skip
    plain = engine_with(tmp_path / "plain.db", people)
    assert [p.mentor_id for p in propose(plain, "default").proposals] == ["bea"]
    plain.close()
    pm = make_plugin_manager()
    pm.register(SameSite(), name="same_site")
    pm.register(Flat(), name="flat")
    engine = engine_with(tmp_path / "terms.db", people, pm=pm)
    (proposal,) = propose(engine, "default").proposals
    assert proposal.mentor_id == "ada"
    terms = proposal.reasons["terms"]
    assert terms["same_site"] == 5.25 and terms["program_bonus"] == 0.25
    assert sum(terms.values()) == pytest.approx(proposal.score)
    engine.close()


class Fixed:
    """A house strategy that always proposes ada for cyd."""

    @hookimpl
    def rmcore_match(self, program, people):
        """One fixed pair, in the plain-data form."""
        ids = {p.person_id for p in people}
        if {"ada", "cyd"} <= ids:
            return {"pairs": [{"mentor_id": "ada", "mentee_id": "cyd", "score": 1.0,
                               "reasons": {"why": "house rule"}}]}  # fmt: skip
        return None


class Abstains:
    """A strategy that never answers."""

    @hookimpl
    def rmcore_match(self):
        """Let the next strategy answer."""
        return None


def test_an_installed_strategy_that_answers_wins_over_matching_skills(tmp_path):
    """matching_skills is trylast: another strategy's answer is used, and recorded as its."""
    pm = make_plugin_manager()
    pm.register(Fixed(), name="fixed")
    engine = engine_with(tmp_path / "m.db", TRIO, pm=pm)
    assert strategies(pm)[-1] == "matching_skills"
    result = propose(engine, "default")
    assert result.strategy == "fixed"
    apply(engine, result, actor=ACTOR, at=AT)
    assert paired_events(engine)[0]["strategy"] == "fixed"
    engine.close()


def test_a_strategy_that_abstains_lets_the_next_one_answer(tmp_path):
    """None means 'not me'."""
    pm = make_plugin_manager()
    pm.register(Abstains(), name="abstains")
    engine = engine_with(tmp_path / "m.db", TRIO, pm=pm)
    assert propose(engine, "default").strategy == "matching_skills"
    with pytest.raises(MatchError, match="strategy abstains proposed nothing"):
        propose(engine, "default", strategy="abstains")
    engine.close()


def test_a_strategy_can_be_chosen_by_plugin_name(tmp_path):
    """``strategy=`` asks that plugin only."""
    pm = make_plugin_manager()
    pm.register(Fixed(), name="fixed")
    engine = engine_with(tmp_path / "m.db", TRIO, pm=pm)
    assert propose(engine, "default", strategy="matching_skills").strategy == "matching_skills"
    with pytest.raises(MatchError, match="no installed matching strategy is called nope"):
        propose(engine, "default", strategy="nope")
    engine.close()


def test_a_strategy_proposing_a_pair_the_rules_forbid_is_refused(tmp_path):
    """The engine checks every strategy's answer against the hard rules."""
    pm = make_plugin_manager()
    pm.register(Fixed(), name="fixed")
    people = [
        join("cyd", "mentee", skills_sought=("sql",)),
        join("ada", "mentor", manager_id="cyd", capacity=1, skills_offered=("SQL",)),
    ]
    engine = engine_with(tmp_path / "m.db", people, pm=pm)
    with pytest.raises(MatchError, match="strategy fixed proposed ada to mentor cyd.*manages"):
        propose(engine, "default")
    engine.close()


def test_without_a_strategy_matching_is_refused_with_advice(tmp_path):
    """With no strategy registered at all, the operator is told."""
    engine = engine_with(tmp_path / "m.db", TRIO, pm=make_plugin_manager(load_entry_points=False))
    with pytest.raises(MatchError, match="no matching strategy is installed"):
        propose(engine, "default")
    engine.close()


def test_a_bad_setting_reaches_the_operator_as_a_refusal(tmp_path):
    """A strategy's ValueError becomes a MatchError naming the strategy."""
    engine = engine_with(
        tmp_path / "m.db",
        [*TRIO, SetConfig(key="matching_skills.min_score", value="high", at=AT)],
    )
    with pytest.raises(MatchError, match="matching_skills: matching_skills.min_score must be a"):
        propose(engine, "default")
    engine.close()


class Broken:
    """A score plugin returning text where a number belongs."""

    @hookimpl
    def rmcore_score_pair(self):
        """Not a number."""
        return {"seniority": "high"}


def test_a_score_term_that_is_not_a_number_is_refused(tmp_path):
    """Other plugins' terms must be finite numbers; the message names the term."""
    pm = make_plugin_manager()
    pm.register(Broken(), name="broken")
    engine = engine_with(tmp_path / "m.db", TRIO, pm=pm)
    with pytest.raises(MatchError, match="term 'seniority' = 'high' is not a finite number"):
        propose(engine, "default")
    engine.close()
