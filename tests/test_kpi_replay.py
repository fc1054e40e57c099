"""The SQL KPIs equal a plain replay-and-count of the log, for random programs at any moment."""

from __future__ import annotations

import importlib.util
import json
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmcore.commands import (
    DomainError,
    EndPair,
    GiveFeedback,
    Join,
    Leave,
    MakePair,
    RecordSession,
)
from rmcore.engine import Engine
from rmcore.kpis import collect_kpis

_SPEC = importlib.util.spec_from_file_location(
    "kpi_benchmark", Path(__file__).parents[1] / "benchmarks" / "kpi.py"
)
baseline = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(baseline)

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
FORMAT = "%Y-%m-%dT%H:%M:%SZ"
SKILLS = ["AI tools", "ai-tools", "Leadership", "prompt engineering", "Prompt  Engineering",
          "negotiation", "data_analytics", "\uff21\uff29 \u2013 tools"]  # fmt: skip

people = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["mentor", "mentee", "both"]),
            "generation": st.sampled_from(["early-career", "Early-Career", "tenured", ""]),
            "department": st.sampled_from(["Eng", "eng ", "Ops"]),
            "offers": st.lists(st.sampled_from(SKILLS), max_size=3, unique=True),
            "seeks": st.lists(st.sampled_from(SKILLS), max_size=3, unique=True),
            "capacity": st.integers(1, 3),
        }
    ),
    min_size=2,
    max_size=7,
)
KINDS = ["pair"] * 2 + ["session"] * 4 + ["feedback"] * 2 + ["end", "leave"]
actions = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.integers(0, 50),
        st.integers(0, 50),
        st.integers(0, 20 * 24 * 3600),  # seconds since the previous action
        st.integers(1, 5),
        st.booleans(),
        st.lists(st.sampled_from(SKILLS), max_size=3, unique=True),
    ),
    min_size=8,
    max_size=40,
)


def stamp(moment: datetime) -> str:
    """The engine's occurred_at text."""
    return moment.strftime(FORMAT)


def run_program(engine: Engine, members: list[dict], steps: list[tuple]) -> list[datetime]:
    """Execute the generated commands (refused ones are skipped); returns the event times."""
    ids = [f"p{i}" for i in range(len(members))]
    members[0]["role"], members[1]["role"] = "mentor", "mentee"  # someone can always pair
    mentors = [i for i, m in zip(ids, members) if m["role"] in ("mentor", "both")]
    mentees = [i for i, m in zip(ids, members) if m["role"] in ("mentee", "both")]
    for person_id, person in zip(ids, members):
        engine.execute("prog", Join(person_id=person_id, name="N", email=f"{person_id}@x.org",
                                    role=person["role"], generation=person["generation"],
                                    department=person["department"],
                                    skills_offered=person["offers"], skills_sought=person["seeks"],
                                    capacity=person["capacity"], at=stamp(START)),
                       actor="t")  # fmt: skip
    pair_ids: list[str] = []
    moment, times = START, [START]
    for kind, a, b, gap, rating, flag, gained in steps:
        moment += timedelta(seconds=gap)
        at = stamp(moment)
        pair = pair_ids[a % len(pair_ids)] if pair_ids else None
        if kind == "pair":
            command = MakePair(
                mentor_id=mentors[a % len(mentors)], mentee_id=mentees[b % len(mentees)], at=at
            )
        elif kind == "leave":
            command = Leave(person_id=ids[a % len(ids)], reason="gone", at=at)
        elif pair is None:
            continue
        elif kind == "session":
            command = RecordSession(pair_id=pair, minutes=15 * rating, at=at)
        elif kind == "end":
            command = EndPair(pair_id=pair, reason="done", at=at)
        else:
            mentor, mentee = engine.conn.execute(
                "SELECT mentor_id, mentee_id FROM pairs WHERE pair_id = ?", (pair,)
            ).fetchone()
            command = GiveFeedback(
                pair_id=pair,
                by=mentee if flag else mentor,
                rating=rating,
                fresh_perspective=b % 2 == 0,
                skills_gained=gained,
                at=at,
            )
        try:
            outcome = engine.execute("prog", command, actor="t")
        except DomainError:
            continue
        times.append(moment)
        if kind == "pair":
            pair_ids.append(json.loads(outcome.events[0].data)["pair_id"])
    return times


def moments(times: list[datetime]) -> list[str]:
    """Moments worth checking: each event, a second either side, and 30 days on."""
    found = {START - timedelta(days=1)}
    for t in times:
        for delta in (
            timedelta(0),
            timedelta(seconds=-1),
            timedelta(seconds=1),
            timedelta(days=30),
            timedelta(days=30, seconds=1),
            timedelta(days=3),
        ):
            found.add(t + delta)  # fmt: skip
    return sorted(stamp(m) for m in found)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(members=people, steps=actions)
def test_sql_kpis_equal_a_replay_of_the_log_at_every_moment(members, steps):
    with (
        tempfile.TemporaryDirectory() as folder,
        Engine.open(Path(folder) / "p.db", create=True) as engine,
    ):
        times = run_program(engine, members, steps)
        for as_of in moments(times):
            sql = {
                k.name: k.value
                for k in collect_kpis(engine, "prog", as_of)
                if k.plugin == "kpi_basic"
            }
            replayed = baseline.replay_kpis(engine, "prog", as_of)
            assert baseline.same_values(sql, replayed) == [], as_of


def test_the_replay_baseline_notices_a_wrong_value():
    assert baseline.same_values({"a": 1, "b": None}, {"a": 1, "b": 0.0}) == ["b: None != 0.0"]
    assert baseline.same_values({"a": 0.5}, {"a": 0.5000001}) == ["a: 0.5 != 0.5000001"]
