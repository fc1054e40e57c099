"""Delivering new events to ``rmcore_on_event`` plugins, each from a checkpoint of its own.

How delivery works (``rmcore notify`` drives it; see docs/notifications.md):

- Every plugin that implements ``rmcore_on_event`` has one checkpoint **per program**
  in the ``delivery_checkpoints`` table: the last log position it has seen in that
  program. Programs are delivered separately (``rmcore --program NAME notify``), each
  with its own settings, so one program's broken SMTP setting never holds back another.
- Events after the checkpoint are read from the log in batches (never the whole log in
  memory), decoded with the engine's codec, and handed to that plugin's implementation
  only. Each batch runs in one write transaction and each event in a savepoint inside
  it: whatever the plugin writes through ``conn`` commits together with the checkpoint
  that moves past the event, or not at all. A plugin that raises stops its own delivery
  at that event (its writes for that event are rolled back, the checkpoint stays just
  before it and the error is stored with it); other plugins go on. The next run starts
  again at that event, so each event reaches a plugin at least once and, for what a
  plugin records through ``conn``, exactly once.
- Implementations that accept a ``run`` argument are called once more at the end of
  every run with ``event=None`` and ``envelope=None``: the moment to send what they
  queued, retry what failed, and derive time-based notices (the email plugin's nudges).
  That call runs outside any transaction; a plugin writes with ``run.transaction()``.
- The first time a plugin is seen in a program it starts at the beginning of the log,
  which is what a new installation wants. ``from_now`` (``rmcore notify --from-now``)
  makes plugins with no checkpoint yet start after the current last event instead,
  for installing a notifier into a program with a long history. A plugin that is
  disabled keeps its checkpoint and resumes from it when it is enabled again.
- An event whose type no installed code knows (the plugin that registered it was
  removed) is passed over; a payload that cannot be decoded is a failure, reported.
- Replays and rebuilds never read or write these tables: they are not read models.
  That is why ``rmcore replay`` never makes a notification go out again.
- Before a run delivers anything, implementations marked with :func:`checks_settings`
  (which take ``run``) are called once with ``event=None``, ``run.checking`` and
  ``run.status_only`` set, inside a transaction that is rolled back: the moment to check
  their settings and credentials. If one raises (or calls ``run.fail``), the run is
  refused: nothing is delivered in that program and no checkpoint moves.
- A dry run (and ``--status``) runs everything inside one transaction that is rolled
  back at the end: checkpoints and plugin tables are left as they were. ``--status``
  writes nothing at all, so it works on a database file this user cannot write; a dry
  run or a real run refuses such a file before it starts.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from attrs import define, field

from rmcore.codec import DecodeError
from rmcore.commands import DomainError
from rmcore.store import StoredEvent, utc_now
from rmcore.when import OCCURRED_FORMAT

if TYPE_CHECKING:
    import pluggy
    from sqlite_utils import Database

    from rmcore.engine import Engine

HOOK = "rmcore_on_event"
DEFAULT_BATCH = 200


def create_delivery_checkpoints(db: Database) -> None:
    """One row per (plugin, program): the last position delivered and the last failure."""
    db.execute(
        """
        CREATE TABLE delivery_checkpoints (
            plugin TEXT NOT NULL,
            program TEXT NOT NULL,
            position INTEGER NOT NULL,
            updated_at TEXT NOT NULL,
            failed_position INTEGER,
            error TEXT,
            PRIMARY KEY (plugin, program)
        )
        """
    )


# Named, ordered schema steps of delivery; applied by rmcore.db.migrate. Append, never edit.
DELIVERY_MIGRATIONS = (("create_delivery_checkpoints", create_delivery_checkpoints),)


class DeliveryError(Exception):
    """A plugin could not deliver; the message is shown to the operator as it is."""


def describe(exc: BaseException) -> str:
    """An exception as one line: a DeliveryError's message, else its type and message."""
    if isinstance(exc, DeliveryError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


@define
class PluginResult:
    """What one run did for one plugin in one program."""

    plugin: str
    program: str
    delivered: int = 0
    checkpoint: int = 0
    started: str | None = None  # "beginning" or "now" when the plugin was first seen
    failures: list[str] = field(factory=list)

    @property
    def ok(self) -> bool:
        """Nothing failed."""
        return not self.failures


@define
class DeliveryReport:
    """The outcome of a run: per-plugin results, what plugins said, and status counts."""

    program: str
    dry_run: bool = False
    results: list[PluginResult] = field(factory=list)
    notes: list[tuple[str, str]] = field(factory=list)  # (plugin, text)
    counts: list[dict[str, Any]] = field(factory=list)
    refused: bool = False  # a plugin's check failed: nothing was delivered

    @property
    def ok(self) -> bool:
        """No plugin failed."""
        return all(result.ok for result in self.results)

    def failures(self) -> list[tuple[str, str]]:
        """Every failure as ``(plugin, text)``."""
        return [(r.plugin, text) for r in self.results for text in r.failures]


class DeliveryRun:
    """What a plugin's ``rmcore_on_event`` gets as ``run``: the run's settings and channels.

    ``now`` is the business time of the run (``YYYY-MM-DDTHH:MM:SSZ``), ``options`` the
    settings given to ``rmcore notify`` (``smtp_url``, ``outbox``), ``dry_run`` and
    ``status_only`` say that nothing may be sent (the database changes are rolled back
    anyway); ``checking`` marks the call before delivery, made with ``status_only`` set,
    in which a plugin checks its settings and raises to refuse the run. ``say`` prints
    a line, ``fail`` reports a problem without stopping delivery (the command then exits
    1), ``count`` adds a row to ``rmcore notify --status``, ``transaction`` is the way to
    write outside event delivery, and ``memo`` is scratch space for the current plugin
    that lasts for the run.
    """

    def __init__(
        self,
        engine: Engine,
        report: DeliveryReport,
        *,
        now: str,
        dry_run: bool = False,
        status_only: bool = False,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.program = report.program
        self.now = now
        self.dry_run = dry_run
        self.status_only = status_only
        self.checking = False
        self.options: Mapping[str, Any] = dict(options or {})
        self.plugin = ""
        self._engine = engine
        self._report = report
        self._result: PluginResult | None = None
        self._memos: dict[str, dict[str, Any]] = {}
        self._savepoints = itertools.count(1)

    @property
    def memo(self) -> dict[str, Any]:
        """Scratch space of the plugin being called, kept for the whole run."""
        return self._memos.setdefault(self.plugin, {})

    def say(self, text: str) -> None:
        """A line for the operator, printed under the plugin's name."""
        self._report.notes.append((self.plugin, text))

    def fail(self, text: str) -> None:
        """Report a problem without stopping delivery; the command exits 1."""
        if self._result is not None:
            self._result.failures.append(text)

    def count(self, item: str, *, pending: int, sent: int, failed: int, detail: str = "") -> None:
        """A row of ``rmcore notify --status`` for this plugin."""
        self._report.counts.append(
            {
                "program": self.program,
                "plugin": self.plugin,
                "item": item,
                "pending": pending,
                "sent": sent,
                "failed": failed,
                "detail": detail,
            }
        )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, or a savepoint when one is already open; yields ``conn``."""
        conn = self._engine.conn
        if not conn.in_transaction:
            with self._engine.store.transaction():
                yield conn
            return
        with savepoint(conn, f"rmcore_run_{next(self._savepoints)}"):
            yield conn


@contextmanager
def savepoint(conn: sqlite3.Connection, name: str) -> Iterator[None]:
    """A nested transaction: released on success, rolled back to on any exception."""
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        conn.execute(f"ROLLBACK TO {name}")
        conn.execute(f"RELEASE {name}")
        raise
    conn.execute(f"RELEASE {name}")


@contextmanager
def rolled_back(conn: sqlite3.Connection, *, write: bool = True) -> Iterator[None]:
    """A transaction that is always rolled back (dry runs, checks and ``--status``).

    With ``write`` it takes the write lock at once; without, it starts as a read
    transaction, which also works on a database file this user cannot write.
    """
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def writable(conn: sqlite3.Connection) -> bool:
    """Whether this connection may write its database (False for a read-only file)."""
    if conn.in_transaction:
        raise RuntimeError("writable() needs a connection outside any transaction")
    conn.execute("BEGIN")
    try:
        conn.execute("DELETE FROM delivery_checkpoints WHERE 0")  # a write that changes nothing
    except sqlite3.OperationalError as exc:
        if not getattr(exc, "sqlite_errorname", "").startswith("SQLITE_READONLY"):
            raise
        return False
    finally:
        conn.execute("ROLLBACK")
    return True


def now_text() -> str:
    """The current time as an ``occurred_at``-style text."""
    return datetime.now(timezone.utc).strftime(OCCURRED_FORMAT)


@define
class Receiver:
    """One plugin's ``rmcore_on_event``, callable on its own."""

    name: str
    call: Callable[..., Any]
    takes_run: bool
    checks: bool = False  # marked with @checks_settings: called to check before delivery


CHECKS_MARK = "rmcore_checks_settings"


def checks_settings(function: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an ``rmcore_on_event`` implementation that takes ``run`` as wanting the check
    call before each run delivers anything (``run.checking``); see the module docstring."""
    setattr(function, CHECKS_MARK, True)
    return function


def receivers(pm: pluggy.PluginManager) -> list[Receiver]:
    """Each registered plugin implementing ``rmcore_on_event``, in name order."""
    hook = getattr(pm.hook, HOOK)
    impls = hook.get_hookimpls()
    found = []
    for impl in impls:
        others = [other.plugin for other in impls if other.plugin is not impl.plugin]
        caller = pm.subset_hook_caller(HOOK, remove_plugins=others)
        takes_run = "run" in impl.argnames
        checks = takes_run and getattr(impl.function, CHECKS_MARK, False) is True
        found.append(Receiver(impl.plugin_name, caller, takes_run, checks))
    return sorted(found, key=lambda r: r.name)


def checkpoint_rows(conn: sqlite3.Connection, program: str) -> dict[str, dict[str, Any]]:
    """Every plugin's delivery checkpoint in a program, by plugin name."""
    rows = conn.execute(
        "SELECT plugin, position, updated_at, failed_position, error FROM delivery_checkpoints"
        " WHERE program = ? ORDER BY plugin",
        (program,),
    ).fetchall()
    names = ("plugin", "position", "updated_at", "failed_position", "error")
    return {row[0]: dict(zip(names, row)) for row in rows}


def checkpoint(conn: sqlite3.Connection, plugin: str, program: str) -> int | None:
    """The last position delivered to a plugin in a program; None if it was never seen."""
    row = conn.execute(
        "SELECT position FROM delivery_checkpoints WHERE plugin = ? AND program = ?",
        (plugin, program),
    ).fetchone()
    return row[0] if row else None


def _save_checkpoint(
    conn: sqlite3.Connection,
    plugin: str,
    program: str,
    position: int,
    failed_position: int | None = None,
    error: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO delivery_checkpoints (plugin, program, position, updated_at,"
        " failed_position, error) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (plugin, program)"
        " DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at,"
        " failed_position = excluded.failed_position, error = excluded.error",
        (plugin, program, position, utc_now(), failed_position, error),
    )


def mark_imported(engine: Engine, programs: set[str], head_before: int, head_after: int) -> None:
    """Treat events brought in by ``import-log`` as already delivered at their source.

    A plugin that had received everything of a program before the import (or had never
    run for it) moves past the imported events; one that was behind keeps its place and
    gets them with its pending ones. Runs inside the import's transaction.
    """
    for receiver in receivers(engine.pm):
        for program in programs:
            position = checkpoint(engine.conn, receiver.name, program)
            if position is None or position >= head_before:
                _save_checkpoint(engine.conn, receiver.name, program, head_after)


def events_after(conn: sqlite3.Connection, program: str, since: int) -> int:
    """How many events of the program lie after position ``since``."""
    return conn.execute(
        "SELECT count(*) FROM events WHERE program = ? AND position > ?", (program, since)
    ).fetchone()[0]


def _next_batch(engine: Engine, program: str, since: int, until: int, size: int) -> list:
    """Up to ``size`` events of the program in ``(since, until]``, the cursor closed after."""
    reader = engine.store.read(since, program=program, until=until, batch=size)
    try:
        return list(itertools.islice(reader, size))
    finally:
        reader.close()


def _decode(engine: Engine, stored: StoredEvent) -> Any:
    """The event object, or None for a type no installed code knows."""
    if engine.registry.get(stored.type) is None:
        return None
    return engine.read_event(stored)


def _deliver_events(
    engine: Engine,
    run: DeliveryRun,
    receiver: Receiver,
    result: PluginResult,
    config: dict[str, Any],
    *,
    from_now: bool,
    batch: int,
    progress: Callable[[int], None] | None,
) -> None:
    """Hand one plugin every event of the program after its checkpoint, batch by batch."""
    conn, program = engine.conn, run.program
    while True:
        failure: str | None = None
        with run.transaction():
            head = engine.store.head()[0]
            since = checkpoint(conn, receiver.name, program)
            if since is None:
                since = head if from_now else 0
                result.started = "now" if from_now else "beginning"
                _save_checkpoint(conn, receiver.name, program, since)
            events = _next_batch(engine, program, since, head, batch)
            done, failed_at = since, None
            for stored in events:
                try:
                    event = _decode(engine, stored)
                    if event is not None:
                        with savepoint(conn, "rmcore_event"):
                            receiver.call(
                                event=event,
                                envelope=stored,
                                program=program,
                                config=config,
                                conn=conn,
                                run=run,
                            )
                except Exception as exc:
                    kind = "cannot decode" if isinstance(exc, DecodeError) else HOOK
                    failure = f"{kind} at position {stored.position} ({stored.type}): " + (
                        describe(exc)
                    )
                    failed_at = stored.position
                    break
                done = stored.position
                if event is not None:
                    result.delivered += 1
                if progress:
                    progress(1)
            complete = failure is None and len(events) < batch
            if complete:
                done = head  # nothing of this program lies between the last event and head
            _save_checkpoint(conn, receiver.name, program, done, failed_at, failure)
            result.checkpoint = done
        if failure is not None:
            result.failures.append(failure)
            return
        if complete:
            return


def _close(engine: Engine, run: DeliveryRun, receiver: Receiver, config: dict[str, Any]) -> None:
    """The closing call of a run, for plugins that take ``run``."""
    try:
        receiver.call(
            event=None, envelope=None, program=run.program, config=config, conn=engine.conn, run=run
        )
    except Exception as exc:
        assert run._result is not None
        run._result.failures.append(f"{HOOK} (closing call): {describe(exc)}")
    finally:
        if not (run.dry_run or run.status_only) and engine.conn.in_transaction:
            engine.conn.execute("ROLLBACK")  # a plugin left its own transaction open


def deliver(
    engine: Engine,
    program: str,
    *,
    now: str | None = None,
    dry_run: bool = False,
    from_now: bool = False,
    options: Mapping[str, Any] | None = None,
    batch: int = DEFAULT_BATCH,
    progress: Callable[[int], None] | None = None,
) -> DeliveryReport:
    """Deliver the program's new events to every ``rmcore_on_event`` plugin, then close the run.

    Each plugin is delivered from its own checkpoint (see the module docstring). A dry
    run does everything inside one transaction and rolls it back.
    """
    if engine.snapshot is not None:
        raise DomainError(
            f"{engine.path} is a point-in-time copy; notifications go out from the live database"
        )
    if not writable(engine.conn):
        # A dry run also writes (in a transaction it rolls back); previewing from a copy
        # would put the names and keys of the whole database in a temporary file.
        what = (
            "a dry run writes too, and rolls back"
            if dry_run
            else "notify records what it delivers there"
        )
        raise DomainError(
            f"{engine.path} is read-only for this user: {what}; run it as a user who may "
            "write the file (--status works without writing)"
        )
    report = DeliveryReport(program, dry_run=dry_run)
    run = DeliveryRun(engine, report, now=now or now_text(), dry_run=dry_run, options=options)
    found = receivers(engine.pm)
    if _refused(engine, run, report, found):
        return report
    if dry_run:
        with rolled_back(engine.conn):
            _run_all(engine, run, report, found, from_now, batch, progress)
    else:
        _run_all(engine, run, report, found, from_now, batch, progress)
    return report


def _refused(
    engine: Engine, run: DeliveryRun, report: DeliveryReport, found: list[Receiver]
) -> bool:
    """Ask each plugin taking ``run`` to check its settings; True (and the report says
    why) if one refused. Runs in a transaction that is rolled back, before any delivery."""
    checking = [receiver for receiver in found if receiver.checks]
    if not checking:
        return False
    scratch = DeliveryReport(run.program)  # counts and notes of the check are not shown
    check = DeliveryRun(engine, scratch, now=run.now, dry_run=run.dry_run, status_only=True,
                        options=run.options)  # fmt: skip
    check.checking = True
    failed = []
    with rolled_back(engine.conn, write=False):
        config = engine.config(run.program)
        for receiver in checking:
            result = PluginResult(receiver.name, run.program)
            check.plugin, check._result = receiver.name, result
            try:
                receiver.call(event=None, envelope=None, program=run.program, config=config,
                              conn=engine.conn, run=check)  # fmt: skip
            except Exception as exc:
                result.failures.append(f"{HOOK} (check before delivery): {describe(exc)}")
            if result.failures:
                failed.append(result)
    if not failed:
        return False
    report.refused = True
    report.results = failed
    return True


def _run_all(
    engine: Engine,
    run: DeliveryRun,
    report: DeliveryReport,
    found: list[Receiver],
    from_now: bool,
    batch: int,
    progress: Callable[[int], None] | None,
) -> None:
    config = engine.config(run.program)
    for receiver in found:
        result = PluginResult(receiver.name, run.program)
        report.results.append(result)
        run.plugin, run._result = receiver.name, result
        _deliver_events(
            engine, run, receiver, result, config, from_now=from_now, batch=batch,
            progress=progress,
        )  # fmt: skip
    for receiver, result in zip(found, report.results):
        if receiver.takes_run:
            run.plugin, run._result = receiver.name, result
            _close(engine, run, receiver, config)


def pending_events(engine: Engine, program: str) -> int:
    """Events still to deliver in a program, summed over the installed plugins."""
    rows = checkpoint_rows(engine.conn, program)
    return sum(
        events_after(engine.conn, program, (rows.get(r.name) or {}).get("position", 0))
        for r in receivers(engine.pm)
    )


def status(
    engine: Engine,
    program: str,
    *,
    now: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> DeliveryReport:
    """Counts for ``rmcore notify --status``: events per plugin, and what plugins add.

    Changes nothing: plugins are asked inside a read transaction that is rolled back,
    so it also works on a database file this user cannot write.
    """
    report = DeliveryReport(program)
    run = DeliveryRun(engine, report, now=now or now_text(), status_only=True, options=options)
    conn = engine.conn
    found = receivers(engine.pm)
    with rolled_back(conn, write=False):
        saved = checkpoint_rows(conn, program)
        config = engine.config(program)
        for receiver in found:
            result = PluginResult(receiver.name, program)
            report.results.append(result)
            run.plugin, run._result = receiver.name, result
            row = saved.get(receiver.name)
            run.count("events", **_event_counts(conn, program, row))
            if receiver.takes_run:
                _close(engine, run, receiver, config)
        installed = {r.name for r in found}
        for name, row in saved.items():
            if name not in installed:
                run.plugin = name
                counts = _event_counts(conn, program, row)
                counts["detail"] = "not installed or disabled; " + counts["detail"]
                run.count("events", **counts)
    return report


def _event_counts(
    conn: sqlite3.Connection, program: str, row: dict[str, Any] | None
) -> dict[str, Any]:
    """Delivered and pending events of one plugin, with its last failure."""
    total = events_after(conn, program, 0)
    if row is None:
        return {
            "pending": total,
            "sent": 0,
            "failed": 0,
            "detail": "never delivered: starts at the beginning (or after --from-now)",
        }
    pending = events_after(conn, program, row["position"])
    detail = f"delivered up to position {row['position']}"
    if row["error"]:
        detail = f"stopped at position {row['failed_position']}: {row['error']}"
    return {
        "pending": pending,
        "sent": total - pending,
        "failed": 1 if row["error"] else 0,
        "detail": detail,
    }
