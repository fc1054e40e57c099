"""The contract of every hook in rmcore.hookspecs, each exercised through the code that calls it.

One section per hook: what an implementation receives, what rmcore does with its answer,
and what an operator sees when it raises (the plugin and the hook named, no traceback,
nothing half-recorded). ``COVERED`` maps each hook to its tests here; tests/test_meta.py
fails when a hook has none. The hooks are tested in depth elsewhere as well:

- rmcore_match, rmcore_score_pair: tests/test_matching_engine.py, tests/test_matching_cli.py
- rmcore_on_event: tests/test_notify_delivery.py, tests/test_notify_email.py
- rmcore_kpis: tests/test_kpi_plugins.py
- rmcore_register_commands, unknown hooks and import failures: tests/test_plugin_failures.py
- the example plugin project: examples/rmcore-region/tests/
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
from attrs import frozen
from plugin_site import install, rmcore

from rmcore import audit, delivery, hookimpl, matching, queries
from rmcore.cli import PLUGIN_MANAGER
from rmcore.commands import EndPair, Join, MakePair, SetConfig
from rmcore.delivery import DeliveryRun
from rmcore.engine import Engine
from rmcore.events import Joined, PairEvent
from rmcore.kpis import Kpi, collect_kpis
from rmcore.model import Pair, Person
from rmcore.plugins import make_plugin_manager

ACTOR = "hr-ops"
AT = "2025-01-06T09:00:00Z"
COVERED: dict[str, list[str]] = {}


def covers(hook: str) -> Callable:
    """Record that the decorated test exercises ``hook``."""

    def mark(test: Callable) -> Callable:
        COVERED.setdefault(hook, []).append(test.__name__)
        return test

    return mark


def person(person_id: str, role: str, offers=(), seeks=(), **extra: Any) -> Join:
    """A Join command with the fields these tests care about."""
    return Join(person_id=person_id, name=person_id.title(), email=f"{person_id}@example.org",
                role=role, skills_offered=offers, skills_sought=seeks, at=AT, **extra)  # fmt: skip


PROGRAM = [
    SetConfig(key="acme.threshold", value=3, at=AT),
    person("ada", "mentor", offers=("AI tools",), seeks=("leadership",), generation="gen-z"),
    person("bo", "mentee", offers=("leadership",), seeks=("AI tools",), generation="boomer"),
    person("cy", "mentor", offers=("SQL",), generation="gen-z"),
    person("di", "mentee", seeks=("SQL",), generation="boomer"),
]


def build(path: Path, pm=None) -> Engine:
    """An engine on a new database holding PROGRAM (and an ended pair ada-di)."""
    engine = Engine.open(path, create=True, pm=pm or make_plugin_manager(load_entry_points=False))
    engine.execute("default", PROGRAM, actor=ACTOR)
    engine.execute("default", MakePair(mentor_id="ada", mentee_id="di", at=AT), actor=ACTOR)
    engine.execute("default", EndPair(pair_id="ada-di", reason="moved", at=AT), actor=ACTOR)
    return engine


def manager(*plugins: tuple[str, object]):
    """A plugin manager holding only the given plugins, validated as at start-up."""
    pm = make_plugin_manager(load_entry_points=False)
    for name, plugin in plugins:
        pm.register(plugin, name=name)
    pm.check_pending()
    return pm


@contextmanager
def in_the_cli(name: str, plugin: object) -> Iterator[None]:
    """``plugin`` registered in the CLI's own plugin manager for the duration."""
    PLUGIN_MANAGER.register(plugin, name=name)
    try:
        yield
    finally:
        PLUGIN_MANAGER.unregister(plugin)


def log_is_intact(run_cli, raw_log, count: int) -> None:
    """The log still holds ``count`` events and verifies."""
    assert raw_log.count() == count
    result = run_cli("verify")
    assert result.exit_code == 0, result.output
    assert f"OK: {count} events" in result.stdout


def refused_by_name(result, plugin: str, hook: str) -> None:
    """Exit 1 with a one-line error naming the plugin and the hook, and no traceback."""
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    assert plugin in result.stderr and hook in result.stderr, result.stderr


# ------------------------------------------------------------------------------ rmcore_match


class Strategy:
    """Accepts every argument of rmcore_match, remembers them, proposes ``answer``."""

    def __init__(self, answer: Any) -> None:
        """Answer with ``answer`` (None lets the next strategy answer)."""
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    @hookimpl
    def rmcore_match(self, program, people, pairs, config, score_pair, progress):
        """Remember the arguments; answer."""
        self.calls.append(dict(program=program, people=people, pairs=pairs, config=config,
                               score_pair=score_pair, progress=progress))  # fmt: skip
        return self.answer


@covers("rmcore_match")
def test_a_strategy_gets_the_program_snapshot_and_its_answer_is_recorded_under_its_name(tmp_path):
    answer = {"pairs": [{"mentor_id": "cy", "mentee_id": "bo", "score": 1.5}], "summary": {}}
    strategy = Strategy(answer)
    engine = build(tmp_path / "m.db", manager(("acme_match", strategy)))

    def progress(done: int, total: int) -> None:
        """Passed through to the strategy untouched."""

    result = matching.propose(engine, "default", progress=progress)
    [call] = strategy.calls
    assert call["program"] == "default"
    assert [p.person_id for p in call["people"]] == ["ada", "bo", "cy", "di"]
    assert all(isinstance(p, Person) and p.active for p in call["people"])
    assert [(p.pair_id, p.status) for p in call["pairs"]] == [("ada-di", "ended")]
    assert all(isinstance(p, Pair) for p in call["pairs"])
    assert call["config"] == {"acme.threshold": 3}
    assert call["score_pair"] is None  # no plugin adds score terms
    assert call["progress"] is progress
    outcome = matching.apply(engine, result, actor=ACTOR, at=AT)
    [pair] = queries.pairs(engine.conn, "default")
    expected = ("cy", "bo", "acme_match", 1.5)
    assert (pair.mentor_id, pair.mentee_id, pair.strategy, pair.score) == expected
    assert outcome.events[0].type == "paired"
    engine.close()


class Fallback(Strategy):
    """A strategy asked last, as matching_skills is."""

    @hookimpl(trylast=True)
    def rmcore_match(self, program, people, pairs, config, score_pair, progress):
        """Answer only when every other strategy passed."""
        return super().rmcore_match(program, people, pairs, config, score_pair, progress)


@covers("rmcore_match")
def test_the_first_strategy_that_answers_wins_and_none_passes_the_turn(tmp_path):
    silent, fallback = Strategy(None), Fallback([{"mentor_id": "ada", "mentee_id": "bo"}])
    engine = build(tmp_path / "m.db", manager(("acme_fallback", fallback), ("acme", silent)))
    result = matching.propose(engine, "default")
    assert (result.strategy, len(silent.calls), len(fallback.calls)) == ("acme_fallback", 1, 1)
    assert [(p.mentor_id, p.mentee_id) for p in result.proposals] == [("ada", "bo")]
    named = matching.propose(engine, "default", strategy="acme_fallback")
    assert named.strategy == "acme_fallback" and len(silent.calls) == 1  # only the one named
    engine.close()


@covers("rmcore_match")
def test_an_answer_that_breaks_a_rule_is_refused_naming_the_strategy(tmp_path):
    again = Strategy([{"mentor_id": "ada", "mentee_id": "di"}])  # they were paired before
    engine = build(tmp_path / "m.db", manager(("acme", again)))
    with pytest.raises(matching.MatchError, match="strategy acme proposed ada to mentor di"):
        matching.propose(engine, "default")
    engine.close()


class Raising:
    """Raises ``error`` from whichever hook it implements."""

    def __init__(self, error: Exception) -> None:
        """Raise ``error``."""
        self.error = error


class RaisingStrategy(Raising):
    """A strategy with a bug."""

    @hookimpl
    def rmcore_match(self, people):
        """Fail."""
        raise self.error


@covers("rmcore_match")
def test_a_strategy_refusing_a_setting_is_reported_by_name(populated_db, run_cli, raw_log):
    before = raw_log.count()
    with in_the_cli("acme_broken", RaisingStrategy(ValueError("acme.threshold must be > 5"))):
        result = run_cli("match", "--apply")
    assert result.exit_code == 1
    assert "Error: acme_broken: acme.threshold must be > 5" in result.stderr
    log_is_intact(run_cli, raw_log, before)


@covers("rmcore_match")
def test_a_strategy_that_raises_is_reported_by_name_and_hook(populated_db, run_cli, raw_log):
    before = raw_log.count()
    with in_the_cli("acme_broken", RaisingStrategy(RuntimeError("solver crashed"))):
        result = run_cli("match", "--apply")
    log_is_intact(run_cli, raw_log, before)
    refused_by_name(result, "acme_broken", "rmcore_match")


# ------------------------------------------------------------------------- rmcore_score_pair


class Terms:
    """Adds fixed terms to every pair, and remembers whom it scored."""

    def __init__(self, terms: dict[str, float] | None) -> None:
        """Return ``terms`` for every pair."""
        self.terms = terms
        self.seen: list[tuple[str, str, dict]] = []

    @hookimpl
    def rmcore_score_pair(self, mentor, mentee, config):
        """The fixed terms."""
        assert isinstance(mentor, Person) and isinstance(mentee, Person)
        self.seen.append((mentor.person_id, mentee.person_id, config))
        return self.terms


class ScoringStrategy:
    """Proposes ada -> bo with whatever score_pair says."""

    @hookimpl
    def rmcore_match(self, people, score_pair):
        """One pair, its terms as its reasons."""
        ada, bo = (p for p in people if p.person_id in ("ada", "bo"))
        terms = score_pair(ada, bo)
        return [{"mentor_id": "ada", "mentee_id": "bo", "score": sum(terms.values()),
                 "reasons": {"terms": terms}}]  # fmt: skip


@covers("rmcore_score_pair")
def test_every_plugins_terms_are_summed_by_name_for_the_strategy(tmp_path):
    site, same = Terms({"same_site": 2.0, "tenure": 0.5}), Terms({"tenure": 1.0})
    silent = Terms(None)
    pm = manager(("acme_site", site), ("acme_tenure", same), ("acme_silent", silent),
                 ("acme_match", ScoringStrategy()))  # fmt: skip
    engine = build(tmp_path / "m.db", pm)
    result = matching.propose(engine, "default")
    assert result.proposals[0].reasons["terms"] == {"same_site": 2.0, "tenure": 1.5}
    assert result.proposals[0].score == 3.5
    assert site.seen == [("ada", "bo", {"acme.threshold": 3})] == silent.seen
    engine.close()


@covers("rmcore_score_pair")
def test_a_term_that_is_not_a_number_is_refused(tmp_path):
    pm = manager(("acme_bad", Terms({"x": float("nan")})), ("acme_match", ScoringStrategy()))
    engine = build(tmp_path / "m.db", pm)
    with pytest.raises(matching.MatchError, match="term 'x' = nan is not a finite number"):
        matching.propose(engine, "default")
    engine.close()


class RaisingTerms(Raising):
    """A score term with a bug."""

    @hookimpl
    def rmcore_score_pair(self, mentor):
        """Fail."""
        raise self.error


@covers("rmcore_score_pair")
def test_a_score_term_that_raises_is_reported_by_name_and_hook(populated_db, run_cli, raw_log):
    before = raw_log.count()
    with in_the_cli("acme_broken", RaisingTerms(RuntimeError("HR system unreachable"))):
        result = run_cli("match", "--apply", "--strategy", "matching_skills")
    log_is_intact(run_cli, raw_log, before)
    refused_by_name(result, "acme_broken", "rmcore_score_pair")


# --------------------------------------------------------------------------- rmcore_on_event


class Listener:
    """Accepts every argument of rmcore_on_event and remembers each call."""

    def __init__(self) -> None:
        """No calls yet."""
        self.calls: list[dict[str, Any]] = []

    @hookimpl
    def rmcore_on_event(self, event, envelope, program, config, conn, run):
        """Remember the call."""
        self.calls.append(dict(event=event, envelope=envelope, program=program, config=config,
                               conn=conn, run=run, in_transaction=conn.in_transaction))  # fmt: skip


@covers("rmcore_on_event")
def test_each_new_event_arrives_once_with_its_envelope_then_the_closing_call(tmp_path):
    listener = Listener()
    engine = build(tmp_path / "e.db", manager(("acme_listener", listener)))
    report = delivery.deliver(engine, "default")
    *events, closing = listener.calls
    assert [c["envelope"].position for c in events] == list(range(1, 8))
    assert [c["envelope"].type for c in events][:2] == ["configured", "joined"]
    assert isinstance(events[1]["event"], Joined) and events[1]["event"].person_id == "ada"
    assert all(c["program"] == "default" and c["config"] == {"acme.threshold": 3}
               for c in listener.calls)  # fmt: skip
    assert all(c["conn"] is engine.conn and c["in_transaction"] for c in events)
    assert all(isinstance(c["run"], DeliveryRun) for c in listener.calls)
    assert closing["event"] is None and closing["envelope"] is None
    assert not closing["in_transaction"]
    assert report.ok and report.results[0].delivered == 7
    delivery.deliver(engine, "default")
    assert len(listener.calls) == 9  # nothing new: only another closing call
    engine.close()


class RaisingListener(Raising):
    """A notifier that cannot handle the third event; its write for it must not stay."""

    @hookimpl
    def rmcore_on_event(self, envelope, conn):
        """Write, then fail at position 3."""
        conn.execute("CREATE TABLE IF NOT EXISTS acme_seen (position INTEGER)")
        conn.execute("INSERT INTO acme_seen VALUES (?)", (envelope.position,))
        if envelope.position == 3:
            raise self.error


@covers("rmcore_on_event")
def test_a_notifier_that_raises_is_reported_by_name_and_hook_and_keeps_what_it_did(tmp_path):
    engine = build(tmp_path / "e.db", manager(("acme_broken", RaisingListener(OSError("down")))))
    report = delivery.deliver(engine, "default")
    assert report.failures() == [
        ("acme_broken", "rmcore_on_event at position 3 (joined): OSError: down")
    ]
    seen = [row[0] for row in engine.conn.execute("SELECT position FROM acme_seen")]
    assert seen == [1, 2]  # the write for position 3 was rolled back with it
    assert delivery.checkpoint(engine.conn, "acme_broken", "default") == 2
    assert audit.verify(engine).ok and audit.event_count(engine) == 7
    engine.close()


# ------------------------------------------------------------------------------- rmcore_kpis


class Measure:
    """Accepts every argument of rmcore_kpis; reports the people count per group."""

    def __init__(self) -> None:
        """No calls yet."""
        self.calls: list[dict[str, Any]] = []

    @hookimpl
    def rmcore_kpis(self, conn, program, as_of, config, by):
        """People who had joined by ``as_of``, per ``by`` group."""
        (read_only,) = conn.execute("PRAGMA query_only").fetchone()
        self.calls.append(dict(program=program, as_of=as_of, config=config, by=by,
                               read_only=read_only))  # fmt: skip
        column = by or "''"
        rows = conn.execute(
            f"SELECT {column}, count(*) FROM people WHERE program = ? AND joined_at <= ?"
            f" GROUP BY {column}",
            (program, as_of),
        ).fetchall()
        return [Kpi(name="acme_people", value=n, unit="people", group=g if by else None)
                for g, n in rows]  # fmt: skip


@covers("rmcore_kpis")
def test_kpis_of_a_plugin_are_collected_under_its_name_read_only(tmp_path):
    measure = Measure()
    engine = build(tmp_path / "k.db", manager(("acme_kpis", measure)))
    [kpi] = collect_kpis(engine, "default", "2025-01-31T23:59:59Z")
    assert (kpi.name, kpi.value, kpi.plugin, kpi.group) == ("acme_people", 4, "acme_kpis", None)
    assert collect_kpis(engine, "default", "2025-01-01T00:00:00Z") == []  # nobody had joined
    grouped = collect_kpis(engine, "default", "2025-01-31T23:59:59Z", by="generation")
    assert {(k.group, k.value, k.suppressed) for k in grouped} == {
        ("boomer", None, True),  # two people: fewer than 5, hidden by the core
        ("gen-z", None, True),
    }
    assert [(c["program"], c["as_of"], c["by"], c["read_only"]) for c in measure.calls] == [
        ("default", "2025-01-31T23:59:59Z", None, 1),
        ("default", "2025-01-01T00:00:00Z", None, 1),
        ("default", "2025-01-31T23:59:59Z", "generation", 1),
    ]
    assert measure.calls[0]["config"] == {"acme.threshold": 3}
    engine.close()


class RaisingMeasure(Raising):
    """A KPI with a bug."""

    @hookimpl
    def rmcore_kpis(self, program):
        """Fail."""
        raise self.error


@covers("rmcore_kpis")
def test_a_kpi_plugin_that_raises_is_reported_by_name(populated_db, run_cli, raw_log):
    before = raw_log.count()
    with in_the_cli("acme_broken", RaisingMeasure(ZeroDivisionError("division by zero"))):
        result = run_cli("kpi", "--format", "json")
    refused_by_name(result, "acme_broken", "KPI plugin")
    assert "KPI plugin acme_broken failed: ZeroDivisionError: division by zero" in result.stderr
    log_is_intact(run_cli, raw_log, before)


# ------------------------------------------------------------------ rmcore_register_commands

COMMAND_PLUGIN = '''
import click

from rmcore import hookimpl


@hookimpl
def rmcore_register_commands(cli):
    @cli.command()
    @click.argument("name")
    @click.pass_obj
    def greet(app, name):
        """Greet NAME on behalf of the program."""
        click.echo(f"Hello {name}, from program {app.program}")
'''


@covers("rmcore_register_commands")
def test_a_plugin_command_is_added_at_start_up_and_runs_like_the_others(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install(site, "acme_greet", COMMAND_PLUGIN)
    shown = rmcore(site, "--help")
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"greet\s+Greet NAME on behalf of the program\.", shown.stdout)
    greeted = rmcore(site, "--program", "pilot", "greet", "Ada")
    assert (greeted.returncode, greeted.stdout) == (0, "Hello Ada, from program pilot\n")
    blocked = rmcore(site, "greet", "Ada", RMCORE_DISABLE_PLUGINS="acme_greet")
    assert blocked.returncode == 2 and "No such command 'greet'" in blocked.stderr
    listed = rmcore(site, "plugins", "--hook", "rmcore_register_commands", "--format", "json")
    assert '"name": "acme_greet"' in listed.stdout


# --------------------------------------------------------------- rmcore_register_event_types


@frozen(kw_only=True)
class MilestoneReached(PairEvent):
    """A pair reached a milestone of the organisation's own program."""

    type: ClassVar[str] = "acme_milestone_reached"
    schema: ClassVar[int] = 2
    milestone: str
    note: str = ""


def milestone_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 called the milestone ``name``."""
    payload = dict(payload)
    payload["milestone"] = payload.pop("name")
    return payload


class Milestones:
    """Registers MilestoneReached with its upcaster."""

    @hookimpl
    def rmcore_register_event_types(self, register):
        """One event type."""
        register(MilestoneReached, upcasters={1: milestone_v1_to_v2})


@covers("rmcore_register_event_types")
def test_a_plugin_event_type_is_stored_read_back_upcast_and_verified(tmp_path):
    engine = build(tmp_path / "t.db", manager(("acme_milestones", Milestones())))
    assert engine.registry.get("acme_milestone_reached") is MilestoneReached
    event = MilestoneReached(pair_id="ada-di", milestone="first month", note="on track")
    with engine.unit_of_work("default", actor=ACTOR) as unit:
        unit.record(AT, [event])
    stored = list(engine.store.read(0))[-1]
    assert (stored.type, stored.schema, stored.stream) == ("acme_milestone_reached", 2,
                                                           "pair:ada-di")  # fmt: skip
    assert engine.codec.decode(stored.type, stored.schema, stored.data) == event
    old = engine.codec.decode("acme_milestone_reached", 1, '{"name":"kick-off","pair_id":"x"}')
    assert old == MilestoneReached(pair_id="x", milestone="kick-off")
    assert audit.verify(engine, workers=1).ok
    assert audit.replay_check(engine) == []
    engine.close()


class RaisingTypes(Raising):
    """An event-type plugin with a bug."""

    @hookimpl
    def rmcore_register_event_types(self, register):
        """Fail."""
        raise self.error


@covers("rmcore_register_event_types")
def test_an_event_type_plugin_that_raises_is_reported_by_name_and_hook(
    populated_db, run_cli, raw_log
):
    before = raw_log.count()
    with in_the_cli("acme_broken", RaisingTypes(RuntimeError("schema server down"))):
        result = run_cli("people")
    refused_by_name(result, "acme_broken", "rmcore_register_event_types")
    log_is_intact(run_cli, raw_log, before)


# ------------------------------------------------------------------------------------ tracing


def test_rmcore_trace_plugins_prints_each_hook_call_with_its_timing(populated_db, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    traced = rmcore(site, "--db", str(populated_db), "kpi", "--format", "json",
                    RMCORE_TRACE_PLUGINS="1")  # fmt: skip
    assert traced.returncode == 0, traced.stderr
    assert re.search(r"^\[rmcore\] rmcore_kpis \(kpi_basic\) \d+\.\d\d ms$", traced.stderr, re.M)
    assert re.search(
        r"^\[rmcore\] rmcore_register_commands \(notify_email\) \d+\.\d\d ms$", traced.stderr, re.M
    )
    quiet = rmcore(site, "--db", str(populated_db), "kpi", "--format", "json")
    assert "[rmcore]" not in quiet.stderr


# ----------------------------------------------------------------------------- rmcore_forget


class Shredder:
    """Keeps a copy of names in a table of its own and deletes it when asked."""

    def __init__(self, fail: bool = False) -> None:
        """Fail in the hook when ``fail``."""
        self.fail = fail
        self.calls: list[dict[str, Any]] = []

    @hookimpl
    def rmcore_forget(self, conn, program, person_id, pair_ids):
        """Delete the person's card; remember the call."""
        self.calls.append(dict(program=program, person_id=person_id, pair_ids=pair_ids,
                               in_transaction=conn.in_transaction))  # fmt: skip
        if self.fail:
            raise RuntimeError("card index offline")
        conn.execute("DELETE FROM acme_cards WHERE program = ? AND person_id = ?",
                     (program, person_id))  # fmt: skip


@covers("rmcore_forget")
def test_a_forget_plugin_gets_the_person_and_every_pair_and_deletes_inside_the_transaction(
    tmp_path,
):
    from rmcore.forget import forget

    shredder = Shredder()
    engine = build(tmp_path / "x.db", manager(("acme_cards", shredder)))
    engine.conn.execute("CREATE TABLE acme_cards (program TEXT, person_id TEXT, name TEXT)")
    engine.conn.executemany("INSERT INTO acme_cards VALUES ('default', ?, ?)",
                            [("ada", "Ada"), ("bo", "Bo")])  # fmt: skip
    engine.execute("default", MakePair(mentor_id="ada", mentee_id="bo", at=AT), actor=ACTOR)
    forget(engine, "default", "ada", actor=ACTOR, at=AT)
    assert shredder.calls == [dict(program="default", person_id="ada",
                                   pair_ids=["ada-bo", "ada-di"], in_transaction=True)]  # fmt: skip
    left = engine.conn.execute("SELECT person_id FROM acme_cards").fetchall()
    assert left == [("bo",)]
    forget(engine, "default", "ada", actor=ACTOR, at=AT)  # a repeat asks the plugins again
    assert len(shredder.calls) == 2 and shredder.calls[1] == shredder.calls[0]


@covers("rmcore_forget")
def test_a_forget_plugin_that_raises_refuses_the_whole_erasure_by_name(tmp_path):
    from rmcore.forget import forget

    engine = build(tmp_path / "x.db", manager(("acme_cards", Shredder(fail=True))))
    before = audit.event_count(engine)
    with pytest.raises(Exception) as refused:
        forget(engine, "default", "bo", actor=ACTOR, at=AT)
    assert "plugin acme_cards failed in rmcore_forget" in str(refused.value)
    assert audit.event_count(engine) == before
    assert queries.SqlState(engine.conn, "default").person("bo").name == "Bo"
    keys = engine.conn.execute("SELECT count(*) FROM subject_keys WHERE subject = 'person:bo'")
    assert keys.fetchone() == (1,)
