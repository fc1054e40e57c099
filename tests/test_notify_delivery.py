"""Delivery of new events to ``rmcore_on_event`` plugins, each from its own checkpoint."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from rmcore import audit, delivery, hookimpl, hookspecs
from rmcore.cli import PLUGIN_MANAGER
from rmcore.commands import DomainError, Join, SetConfig
from rmcore.engine import Engine
from rmcore.plugins import make_plugin_manager
from rmcore.store import NewEvent

ACTOR = "hr-ops"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "notifications.md"


class Recorder:
    """Writes every event it receives into a table of its own, through ``conn``."""

    def __init__(self, table: str, fail_at: int | None = None) -> None:
        """Record into ``table``; raise on the event at position ``fail_at``."""
        self.table = table
        self.fail_at = fail_at

    @hookimpl
    def rmcore_on_event(self, event, envelope, program, conn) -> None:
        """Insert ``(position, program, type)``, then fail if told to."""
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (position INTEGER, program TEXT, type TEXT)"
        )
        conn.execute(
            f"INSERT INTO {self.table} VALUES (?, ?, ?)", (envelope.position, program, event.type)
        )
        if envelope.position == self.fail_at:
            raise RuntimeError(f"cannot handle position {envelope.position}")


class Closer:
    """Takes ``run``, so it also gets the closing call of every run."""

    def __init__(self) -> None:
        """Remember what it was called with."""
        self.events: list[int] = []
        self.closings = 0

    @hookimpl
    def rmcore_on_event(self, event, envelope, run) -> None:
        """Count events and closing calls; say something on closing."""
        if event is None:
            self.closings += 1
            run.say(f"closing after {len(self.events)} event(s)")
        else:
            self.events.append(envelope.position)


def seen(engine: Engine, table: str) -> list[int]:
    """Positions a Recorder stored, in insertion order."""
    try:
        return [
            row[0] for row in engine.conn.execute(f"SELECT position FROM {table} ORDER BY rowid")
        ]
    except Exception:
        return []


def open_with(path: Path, *plugins: tuple[str, object]) -> Engine:
    """An engine whose plugin manager holds only the given plugins."""
    pm = make_plugin_manager(load_entry_points=False)
    for name, plugin in plugins:
        pm.register(plugin, name=name)
    pm.check_pending()
    return Engine.open(path, pm=pm)


def join(engine: Engine, person: str, program: str = "default") -> int:
    """One person joins; returns the event's position."""
    outcome = engine.execute(
        program,
        Join(person_id=person, name=person.title(), email=f"{person}@example.org", role="mentor",
             at="2025-01-06T09:00:00Z"),
        actor=ACTOR,
    )  # fmt: skip
    return outcome.events[-1].position


@pytest.fixture
def positions(db_path: Path) -> list[int]:
    """Five people joined program ``default``; their positions."""
    with Engine.open(db_path) as engine:
        return [join(engine, name) for name in ("ada", "bo", "cy", "di", "ed")]


def test_each_new_event_reaches_a_plugin_once_in_log_order(db_path, positions):
    """The first delivery hands over every event; the next one finds nothing new."""
    with open_with(db_path, ("recorder", Recorder("seen"))) as engine:
        first = delivery.deliver(engine, "default")
        second = delivery.deliver(engine, "default")
        assert seen(engine, "seen") == positions
    assert first.ok and second.ok
    assert [r.delivered for r in first.results] == [5]
    assert [r.delivered for r in second.results] == [0]
    assert first.results[0].started == "beginning"
    assert second.results[0].started is None


def test_new_events_after_a_delivery_are_delivered_next_time(db_path, positions):
    """Only what was appended since the last run is handed over."""
    with open_with(db_path, ("recorder", Recorder("seen"))) as engine:
        delivery.deliver(engine, "default")
        later = [join(engine, "fay"), join(engine, "gus")]
        report = delivery.deliver(engine, "default")
        assert seen(engine, "seen") == positions + later
    assert report.results[0].delivered == 2
    assert report.results[0].checkpoint == later[-1]


def test_replay_never_delivers_an_event_again(db_path, positions):
    """Rebuilding the read models, or checking them, leaves delivery checkpoints alone."""
    with open_with(db_path, ("recorder", Recorder("seen"))) as engine:
        delivery.deliver(engine, "default")
        audit.replay(engine)
        assert audit.replay_check(engine) == []
        report = delivery.deliver(engine, "default")
        assert seen(engine, "seen") == positions
    assert report.results[0].delivered == 0


def test_a_plugin_that_raises_stops_at_that_event_and_the_others_go_on(db_path, positions):
    """The failing plugin keeps its checkpoint before the event; the other gets everything."""
    bad = positions[2]
    failing = Recorder("failing", fail_at=bad)
    with open_with(db_path, ("failing", failing), ("steady", Recorder("steady"))) as engine:
        report = delivery.deliver(engine, "default")
        assert seen(engine, "steady") == positions
        # The failing event's own write was rolled back with it.
        assert seen(engine, "failing") == positions[:2]
        assert delivery.checkpoint(engine.conn, "failing", "default") == positions[1]
        failing.fail_at = None
        again = delivery.deliver(engine, "default")
        assert seen(engine, "failing") == positions
    assert not report.ok
    [(plugin, text)] = report.failures()
    assert plugin == "failing"
    assert f"rmcore_on_event at position {bad} (joined)" in text
    assert f"RuntimeError: cannot handle position {bad}" in text
    assert again.ok
    assert {r.plugin: r.delivered for r in again.results} == {"failing": 3, "steady": 0}


def test_a_failure_is_kept_with_the_checkpoint_until_the_plugin_gets_past_it(db_path, positions):
    """``status`` shows the stopped plugin and its error; a successful run clears it."""
    failing = Recorder("failing", fail_at=positions[-1])
    with open_with(db_path, ("failing", failing)) as engine:
        delivery.deliver(engine, "default")
        [row] = delivery.status(engine, "default").counts
        assert (row["pending"], row["sent"], row["failed"]) == (1, 4, 1)
        assert "cannot handle position" in row["detail"]
        failing.fail_at = None
        delivery.deliver(engine, "default")
        [row] = delivery.status(engine, "default").counts
    assert (row["pending"], row["sent"], row["failed"]) == (0, 5, 0)


def test_delivery_commits_batch_by_batch(db_path, positions):
    """With small batches, a failure late in the log keeps the earlier batches delivered."""
    with open_with(db_path, ("recorder", Recorder("seen", fail_at=positions[4]))) as engine:
        report = delivery.deliver(engine, "default", batch=2)
        assert seen(engine, "seen") == positions[:4]
        assert delivery.checkpoint(engine.conn, "recorder", "default") == positions[3]
    assert report.results[0].delivered == 4


def test_checkpoints_are_kept_per_program(db_path):
    """Delivering one program hands over none of another program's events."""
    with open_with(db_path, ("recorder", Recorder("seen"))) as engine:
        spring = [join(engine, "ada", "spring"), join(engine, "bo", "spring")]
        autumn = [join(engine, "ada", "autumn")]
        spring.append(join(engine, "cy", "spring"))
        delivery.deliver(engine, "spring")
        assert seen(engine, "seen") == spring
        delivery.deliver(engine, "autumn")
        assert seen(engine, "seen") == spring + autumn
        rows = engine.conn.execute("SELECT DISTINCT program FROM seen ORDER BY 1").fetchall()
    assert rows == [("autumn",), ("spring",)]


def test_from_now_starts_a_new_plugin_after_the_history(db_path, positions):
    """A plugin installed into a program with history can skip it."""
    with open_with(db_path, ("recorder", Recorder("seen"))) as engine:
        report = delivery.deliver(engine, "default", from_now=True)
        assert seen(engine, "seen") == []
        later = join(engine, "fay")
        delivery.deliver(engine, "default")
        assert seen(engine, "seen") == [later]
    assert report.results[0].started == "now"
    assert report.results[0].checkpoint == positions[-1]


def test_from_now_does_not_skip_events_for_a_plugin_that_already_delivered(db_path, positions):
    """Only plugins without a checkpoint start after the history."""
    with open_with(db_path, ("recorder", Recorder("seen"))) as engine:
        delivery.deliver(engine, "default")
        later = join(engine, "fay")
        delivery.deliver(engine, "default", from_now=True)
        assert seen(engine, "seen") == [*positions, later]


def test_a_dry_run_rolls_back_checkpoints_and_plugin_writes(db_path, positions):
    """A dry run delivers into a transaction that is thrown away."""
    with open_with(db_path, ("recorder", Recorder("seen"))) as engine:
        report = delivery.deliver(engine, "default", dry_run=True)
        assert report.results[0].delivered == 5
        assert seen(engine, "seen") == []
        assert delivery.checkpoint(engine.conn, "recorder", "default") is None
        delivery.deliver(engine, "default")
        assert seen(engine, "seen") == positions


def test_the_closing_call_reaches_only_plugins_that_accept_run(db_path, positions):
    """A plugin taking ``run`` is closed once per run, even with nothing new to deliver."""
    closer = Closer()
    with open_with(db_path, ("closer", closer), ("recorder", Recorder("seen"))) as engine:
        first = delivery.deliver(engine, "default")
        second = delivery.deliver(engine, "default")
        assert seen(engine, "seen") == positions  # never called with event=None
    assert closer.events == positions
    assert closer.closings == 2
    assert first.notes == [("closer", "closing after 5 event(s)")]
    assert second.notes == [("closer", "closing after 5 event(s)")]


def test_an_event_type_no_installed_code_knows_is_passed_over(db_path, positions):
    """An event from a removed plugin's type does not stall delivery."""
    with open_with(db_path, ("recorder", Recorder("seen"))) as engine:
        with engine.store.transaction():
            engine.store.append(
                "default",
                [NewEvent("badge:1", "badge_awarded", 1, "2025-02-01T00:00:00Z", '{"id":"1"}')],
                actor=ACTOR,
            )
        later = join(engine, "fay")
        report = delivery.deliver(engine, "default")
        assert seen(engine, "seen") == [*positions, later]
    assert report.ok and report.results[0].checkpoint == later


def test_an_undecodable_payload_stops_delivery_and_is_reported(db_path, positions):
    """A known type whose payload does not fit is a failure, never silently skipped."""
    with open_with(db_path, ("recorder", Recorder("seen"))) as engine:
        with engine.store.transaction():
            [bad] = engine.store.append(
                "default",
                [NewEvent("person:zed", "joined", 1, "2025-02-01T00:00:00Z", '{"who":"zed"}')],
                actor=ACTOR,
            )
        report = delivery.deliver(engine, "default")
        assert seen(engine, "seen") == positions
        assert delivery.checkpoint(engine.conn, "recorder", "default") == positions[-1]
    [(plugin, text)] = report.failures()
    assert plugin == "recorder" and f"cannot decode at position {bad.position}" in text


def test_a_disabled_plugin_keeps_its_checkpoint_and_resumes_from_it(db_path, positions):
    """Switching a plugin off pauses its delivery; switching it on resumes it."""
    with open_with(db_path, ("recorder", Recorder("seen"))) as engine:
        delivery.deliver(engine, "default")
    with open_with(db_path) as engine:
        later = join(engine, "fay")
        assert delivery.deliver(engine, "default").results == []
        [row] = delivery.status(engine, "default").counts
        assert row["plugin"] == "recorder" and row["pending"] == 1
        assert row["detail"].startswith("not installed or disabled")
    with open_with(db_path, ("recorder", Recorder("seen"))) as engine:
        delivery.deliver(engine, "default")
        assert seen(engine, "seen") == [*positions, later]


def test_status_changes_nothing(db_path, positions):
    """Asking for counts neither delivers nor creates a checkpoint."""
    closer = Closer()
    with open_with(db_path, ("closer", closer)) as engine:
        report = delivery.status(engine, "default")
        assert delivery.checkpoint_rows(engine.conn, "default") == {}
    assert closer.events == []
    [row] = report.counts
    assert (row["plugin"], row["item"], row["pending"], row["sent"]) == ("closer", "events", 5, 0)


@pytest.fixture
def cli_plugin() -> Iterator[Recorder]:
    """A Recorder registered in the CLI's plugin manager for one test."""
    plugin = Recorder("cli_seen")
    PLUGIN_MANAGER.register(plugin, name="cli_recorder")
    try:
        yield plugin
    finally:
        PLUGIN_MANAGER.unregister(plugin)


def test_notify_exits_1_naming_the_plugin_the_hook_and_the_position(run_cli, db_path, cli_plugin):
    """A failing plugin makes `rmcore notify` exit 1 with a one-line error, no traceback."""
    with Engine.open(db_path) as engine:
        for key in ("kpi_basic.window_days", "matching_skills.min_score"):
            engine.execute("default", SetConfig(key=key, value=3, at="2025-01-02T09:00:00Z"),
                           actor=ACTOR)  # fmt: skip
    cli_plugin.fail_at = 2
    result = run_cli("notify")
    assert result.exit_code == 1
    assert (
        "Error: cli_recorder: rmcore_on_event at position 2 (configured): "
        "RuntimeError: cannot handle position 2"
    ) in result.stderr
    assert "Traceback" not in result.output
    assert "cli_recorder: 1 new event(s) delivered, checkpoint at position 1" in result.stdout
    cli_plugin.fail_at = None
    again = run_cli("notify")
    assert again.exit_code == 0, again.stderr
    assert "cli_recorder: 1 new event(s) delivered, checkpoint at position 2" in again.stdout


def test_notify_rejects_outbox_without_dry_run(run_cli):
    """--outbox only previews: without --dry-run it is a usage error."""
    result = run_cli("notify", "--outbox", "somewhere")
    assert result.exit_code == 2
    assert "--outbox only goes with --dry-run" in result.stderr


def test_the_hook_signature_is_documented():
    """docs/notifications.md shows the hook exactly as specified."""
    arguments = ", ".join(inspect.signature(hookspecs.rmcore_on_event).parameters)
    assert f"rmcore_on_event({arguments})" in DOCS.read_text(encoding="utf-8")


class Checker:
    """Takes ``run`` and is marked to check its settings before each run delivers."""

    def __init__(self, problem: str | None = None) -> None:
        """Refuse every run with ``problem``, if given."""
        self.problem = problem
        self.checks = 0
        self.events: list[int] = []

    @hookimpl
    @delivery.checks_settings
    def rmcore_on_event(self, event, envelope, run) -> None:
        """Refuse on the check call if told to; otherwise remember the events."""
        if event is None and run.checking:
            assert run.status_only  # a check sends nothing
            self.checks += 1
            if self.problem:
                raise delivery.DeliveryError(self.problem)
        elif event is not None:
            self.events.append(envelope.position)


def test_a_plugin_that_refuses_its_settings_stops_the_run_before_anything_is_delivered(
    db_path, positions
):
    """A marked plugin raising in its check: no plugin gets an event, no checkpoint is made."""
    checker = Checker("the webhook URL must start with https://")
    with open_with(db_path, ("checker", checker), ("recorder", Recorder("seen"))) as engine:
        report = delivery.deliver(engine, "default")
        assert report.refused and not report.ok
        assert report.failures() == [
            ("checker", "rmcore_on_event (check before delivery): "
                        "the webhook URL must start with https://"),
        ]  # fmt: skip
        assert seen(engine, "seen") == []
        assert delivery.checkpoint_rows(engine.conn, "default") == {}
        checker.problem = None
        assert delivery.deliver(engine, "default").ok
        assert seen(engine, "seen") == positions
    assert checker.events == positions and checker.checks == 2


def test_a_run_or_a_dry_run_on_a_database_it_may_not_write_is_refused_up_front(db_path, positions):
    """A connection that cannot write: both are refused naming the file, before any plugin
    is called, and nothing is copied elsewhere to preview from."""
    closer = Closer()
    with open_with(db_path, ("closer", closer), ("recorder", Recorder("seen"))) as engine:
        engine.conn.execute("PRAGMA query_only = 1")  # every write is refused, as read-only
        for dry_run in (True, False):
            with pytest.raises(DomainError, match=re.escape(f"{db_path} is read-only")):
                delivery.deliver(engine, "default", dry_run=dry_run)
        engine.conn.execute("PRAGMA query_only = 0")
        assert seen(engine, "seen") == []
        assert delivery.checkpoint_rows(engine.conn, "default") == {}
