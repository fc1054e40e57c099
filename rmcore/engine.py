"""The engine: runs commands against one database, with plugins, in one transaction each."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import attrs
import pluggy
from attrs import frozen

from rmcore import db, queries
from rmcore.codec import Codec, canonical_json
from rmcore.commands import Command, DomainError, decide
from rmcore.events import Event, EventRegistry
from rmcore.names import name_problem, new_name_problem
from rmcore.personal import Keyring
from rmcore.plugins import call_each, make_plugin_manager
from rmcore.projections import Projector
from rmcore.store import NewEvent, SQLiteEventStore, StoredEvent, utc_now


@frozen
class Outcome:
    """What a command did: the events it appended, or those of an earlier identical retry."""

    events: list[StoredEvent]
    duplicate: bool = False


class UnitOfWork:
    """Buffers decided events and appends them, read models included, in its transaction."""

    def __init__(
        self,
        engine: Engine,
        program: str,
        actor: str,
        idempotency_key: str | None,
        earlier: list[StoredEvent],
        keep_events: bool,
    ) -> None:
        self.engine = engine
        self.program = program
        self.actor = actor
        self.idempotency_key = idempotency_key
        self.earlier = earlier
        self.duplicate = False  # the idempotency key was used before: record nothing
        self.keep_events = keep_events
        self.recorded_at = utc_now()
        self.appended: list[StoredEvent] = []
        self.count = 0
        self._pending: list[NewEvent] = []

    @property
    def pending(self) -> int:
        """How many events are queued for the next flush."""
        return len(self._pending)

    def record(self, at: str, events: Sequence[Event]) -> None:
        """Queue events that occurred at ``at``; they are appended on the next flush."""
        if self.duplicate:
            raise DomainError("this command was already recorded under its idempotency key")
        unstructure, seal = self.engine.codec.unstructure, self.engine.keyring.seal
        for event in events:
            payload = unstructure(event)
            seal(self.program, event.stream, event.type, payload)  # before it is hashed
            self._pending.append(
                NewEvent(event.stream, event.type, event.schema, at, canonical_json(payload))
            )

    def flush(self) -> None:
        """Append what is queued and fold it into the read models (same transaction)."""
        if not self._pending:
            return
        stored = self.engine.store.append(
            self.program,
            self._pending,
            actor=self.actor,
            idempotency_key=self.idempotency_key,
            recorded_at=self.recorded_at,
        )
        self._pending = []
        self.engine.projector.apply(stored)
        self.count += len(stored)
        if self.keep_events:
            self.appended.extend(stored)


def command_fingerprint(commands: Sequence[Command]) -> str:
    """A digest of what the commands ask for, their business dates left out (a retry
    without ``--at`` is the same command a moment later)."""
    described = [
        [type(c).__name__, {k: v for k, v in attrs.asdict(c).items() if k != "at"}]
        for c in commands
    ]
    for description in described:
        # `config unset` recorded SetConfig(value=None) before it had a command of its
        # own: its keys must keep matching their retries.
        if description[0] == "UnsetConfig":
            description[:] = ["SetConfig", {**description[1], "value": None}]
    return hashlib.sha256(canonical_json(described).encode()).hexdigest()


def build_registry(pm: pluggy.PluginManager) -> EventRegistry:
    """The core event types plus every type plugins register."""
    registry = EventRegistry()
    call_each(pm, "rmcore_register_event_types", register=registry.register)
    return registry


class Engine:
    """One open database with its store, read models, codec and plugins."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        pm: pluggy.PluginManager,
        *,
        path: str | os.PathLike | None = None,
    ) -> None:
        self.conn = conn
        self.pm = pm
        self.path = path
        self.registry = build_registry(pm)
        self.codec = Codec(self.registry)
        self.store = SQLiteEventStore(conn)
        self.keyring = Keyring(conn)
        self.store.on_rollback.append(self.keyring.drop_cache)
        self.projector = Projector(conn, self.registry, self.keyring)
        self.store.on_rollback.append(self.projector.forget_deferred_indexes)
        self.snapshot = queries.snapshot_of(conn)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        create: bool = False,
        pm: pluggy.PluginManager | None = None,
    ) -> Engine:
        """Open the database at ``path`` (creating it if asked) and bring its schema up to date."""
        conn = db.connect(path, create=create)
        try:
            db.migrate(conn)
        except BaseException:
            conn.close()
            raise
        return cls(conn, pm if pm is not None else make_plugin_manager(), path=path)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def unit_of_work(
        self,
        program: str,
        *,
        actor: str,
        idempotency_key: str | None = None,
        expected_program_position: int | None = None,
        keep_events: bool = True,
        fingerprint: str | None = None,
    ) -> Iterator[UnitOfWork]:
        """One write transaction: everything recorded in it commits together or not at all.

        The read models are brought up to date first. If the idempotency key was used
        before, the unit is marked ``duplicate`` and the caller must record nothing; if it
        was used for a command with another ``fingerprint``, the command is refused.
        """
        _check_name("program", program)
        _check_name("actor", actor)
        if idempotency_key is not None:
            _check_name("idempotency key", idempotency_key)
        if self.snapshot is not None:
            raise DomainError(
                f"{self.path} is a point-in-time copy ({self.snapshot.kind} "
                f"{self.snapshot.moment}); it is read-only"
            )
        with self.store.transaction():
            duplicate, earlier = False, []
            if idempotency_key is not None:
                duplicate, earlier = self._earlier_use(program, idempotency_key, fingerprint)
            if not duplicate:
                self.projector.catch_up(self.store)
                # Old names stay usable; a new program cannot start under a doubtful one.
                problem = new_name_problem("program name", program)
                if problem and not queries.program_position(self.conn, program):
                    raise DomainError(f"{problem}; a new program needs a plain name")
            if expected_program_position is not None and not duplicate:
                current = queries.program_position(self.conn, program)
                if current != expected_program_position:
                    raise DomainError(
                        f"program {program} changed since the proposal was made (its last "
                        f"event was {expected_program_position}, now {current}); "
                        "compute it again"
                    )
            unit = UnitOfWork(self, program, actor, idempotency_key, earlier, keep_events)
            unit.duplicate = duplicate
            yield unit
            unit.flush()
            if idempotency_key is not None and not duplicate:
                self.store.remember_key(
                    program, idempotency_key, fingerprint or "", self.store.head()[0]
                )

    def _earlier_use(
        self, program: str, key: str, fingerprint: str | None
    ) -> tuple[bool, list[StoredEvent]]:
        """Whether ``key`` was used before, and the events that use appended."""
        earlier = self.store.find_by_idempotency_key(program, key)
        recalled = self.store.recall_key(program, key)
        if recalled is None:
            return bool(earlier), earlier
        used_for, _ = recalled
        if fingerprint and used_for and used_for != fingerprint:
            recorded = (
                f"recorded at position {earlier[0].position}" if earlier else "it appended nothing"
            )
            raise DomainError(
                f"idempotency key {key!r} was already used for a different command "
                f"({recorded}); use a new key for a new command"
            )
        return True, earlier

    def execute(
        self,
        program: str,
        commands: Command | Sequence[Command],
        *,
        actor: str,
        idempotency_key: str | None = None,
        expected_program_position: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Outcome:
        """Decide and append the commands' events in one transaction: all or nothing.

        Each command is decided against the state left by the ones before it. A retry
        carrying an idempotency key that is already in the log appends nothing. With
        ``expected_program_position``, the commands are refused if the program's last
        event is no longer that position (someone changed it since a proposal was made).
        """
        if not isinstance(commands, Sequence):
            commands = [commands]
        with self.unit_of_work(
            program,
            actor=actor,
            idempotency_key=idempotency_key,
            expected_program_position=expected_program_position,
            fingerprint=command_fingerprint(commands) if idempotency_key else None,
        ) as unit:
            if unit.duplicate:
                return Outcome(unit.earlier, duplicate=True)
            state = queries.SqlState(self.conn, program)
            for command in commands:
                unit.record(command.at, decide(state, command))
                unit.flush()
                if progress:
                    progress(1)
        return Outcome(unit.appended)

    def read_event(self, stored: StoredEvent) -> Event:
        """A stored event as an object, its personal fields opened for in-process readers."""
        payload = json.loads(stored.data)
        self.keyring.open(stored.program, stored.stream, stored.type, payload)
        return self.codec.decode_payload(stored.type, stored.schema, payload)

    def config(self, program: str) -> dict[str, Any]:
        """The program's current settings, as plugins receive them."""
        return queries.program_config(self.conn, program)


def _check_name(label: str, value: str) -> None:
    problem = name_problem(label, value)
    if problem:
        raise DomainError(problem)
