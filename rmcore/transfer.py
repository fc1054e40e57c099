"""Moving a log between databases: ``rmcore export`` and ``rmcore import-log``.

An export is JSON lines: a header line, one envelope per event (as ``rmcore log``
prints it, hashes included), and a trailer line with the number of events and a
digest over their hashes in order. On the way in every line is checked: the JSON, the
event's own hash against its contents, that positions only increase, that consecutive
events of a whole-log export link, that every payload decodes, and the trailer (so a
removed, added or reordered line is caught). A bad file is refused whole, naming the
line. Events already present (same program, stream, version and event id) are skipped,
so importing the same file twice appends nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from attrs import frozen

from rmcore.codec import DecodeError
from rmcore.commands import DomainError
from rmcore.delivery import mark_imported
from rmcore.engine import Engine
from rmcore.memory import scratch_in_memory
from rmcore.output import (
    check_new_target,
    publish,
    refuse,
    remove_scratch,
    scratch_file,
    scratch_name,
)
from rmcore.personal import KeyFileError, export_keys, import_keys
from rmcore.projections import rebuild
from rmcore.queries import mostly_program
from rmcore.store import (
    COLUMNS,
    ConcurrencyError,
    EventFilter,
    StoredEvent,
    canonical_envelope,
    chain_hash,
    utc_now,
)

FORMAT = "rmcore-log"
VERSION = 1
CHUNK = 2000


class TransferError(DomainError):
    """An export file was refused; nothing was imported."""


@frozen
class ImportSummary:
    """What ``import-log`` did."""

    events: int
    appended: int
    skipped: int


EXISTS_HINT = "export to a new file"


def export_log(
    engine: Engine,
    out: str | Path,
    *,
    program: str | None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the program's events (or every program's, with ``program=None``) to ``out``,
    a new file; returns how many events it holds."""
    return export_files(engine, out, None, program=program, progress=progress)[0]


def export_files(
    engine: Engine,
    out: str | Path,
    keys_out: str | Path | None,
    *,
    program: str | None,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Write the export to ``out`` and, given ``keys_out``, its keys there: (events, keys).

    Both targets are checked before anything is written, each is written under a
    temporary name next to it, and both get their names only once both are complete; on
    any failure (or Ctrl-C) neither file is left behind.
    """
    targets = [check_new_target(out, EXISTS_HINT)]
    if keys_out is not None:
        targets.append(check_new_target(keys_out, EXISTS_HINT))
        if targets[1].resolve() == targets[0].resolve():
            refuse("--keys-out must be another file than --out")
    scratches: list[Path] = []
    published: list[Path] = []
    try:
        fd, scratch = scratch_file(targets[0])
        scratches.append(scratch)
        try:
            count = _write_export(engine, fd, program, progress)
        except OSError as exc:
            refuse(f"cannot write {out}: {exc.strerror}")
        keys = 0
        if keys_out is not None:
            scratches.append(scratch_name(targets[1]))
            try:
                keys = export_keys(engine.conn, scratches[1], program)
            except OSError as exc:
                refuse(f"cannot create {keys_out}: {exc.strerror}")
        for scratch, target in zip(scratches, targets):
            publish(scratch, target, EXISTS_HINT)
            published.append(target)
    except BaseException:
        for path in scratches:
            remove_scratch(path)
        for path in published:
            path.unlink(missing_ok=True)
        raise
    return count, keys


def _write_export(
    engine: Engine, fd: int, program: str | None, progress: Callable[[int], None] | None
) -> int:
    """Write the export's lines to the open file ``fd`` (closed after); returns the events."""
    digest = hashlib.sha256()
    count = 0
    head = engine.store.head()[0]
    # Owner-only, like the database: an export names people by id and holds their profiles.
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        header = {"format": FORMAT, "version": VERSION, "program": program,
                  "exported_at": utc_now(), "source_head": head}  # fmt: skip
        handle.write(json.dumps(header) + "\n")
        where = EventFilter(
            program=program,
            until=head,
            walk_positions=program is not None and mostly_program(engine.conn, program),
        )
        for rows in engine.store.json_lines(where):
            for _, hash_, line in rows:
                handle.write(line)
                handle.write("\n")
                digest.update(hash_.encode())
            count += len(rows)
            if progress:
                progress(len(rows))
        handle.write(json.dumps({"end": True, "events": count, "digest": digest.hexdigest()}))
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    return count


def _event_from(line_number: int, row: object) -> StoredEvent:
    if not isinstance(row, dict) or set(row) != set(COLUMNS):
        raise TransferError(f"line {line_number}: not an event envelope")
    values = dict(row)
    values["data"] = json.dumps(values["data"], sort_keys=True, separators=(",", ":"),
                                ensure_ascii=False)  # fmt: skip
    try:
        return StoredEvent(**values)
    except TypeError as exc:
        raise TransferError(f"line {line_number}: {exc}") from None


def _check_event(line_number: int, event: StoredEvent) -> None:
    fields = event[1:12]
    canonical = canonical_envelope(event.position, *fields)
    if chain_hash(event.prev_hash, canonical) != event.hash:
        raise TransferError(
            f"line {line_number}: the event's contents do not match its hash (edited?)"
        )


def import_log(
    engine: Engine,
    path: str | Path,
    *,
    keys: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Append a verified export's events to this database, in one transaction; ``keys``
    (from ``export --keys-out``) lets the copy read names, emails and comments."""
    path = Path(path)
    if not path.is_file():
        raise TransferError(f"no file at {path}")
    if engine.snapshot is not None:
        raise TransferError(f"{engine.path} is a point-in-time copy; it is read-only")
    digest = hashlib.sha256()
    seen = appended = skipped = 0
    whole_log = False
    previous: StoredEvent | None = None
    trailer: dict | None = None
    pending: list[StoredEvent] = []
    head_before = engine.store.head()[0]
    programs: set[str] = set()
    with scratch_in_memory(engine.conn), engine.store.transaction():
        engine.projector.catch_up(engine.store)
        keys_added = 0
        if keys is not None:
            try:
                keys_added = import_keys(engine.conn, keys)
            except KeyFileError as exc:
                raise TransferError(str(exc)) from None
            engine.keyring.drop_cache()
        forgotten: list[tuple[str, str]] = []

        def flush() -> None:
            nonlocal appended, pending
            if not pending:
                return
            try:
                stored = engine.store.append_copies(pending)
            except ConcurrencyError as exc:
                raise TransferError(f"cannot add the events here: {exc}") from None
            engine.projector.apply(stored)
            forgotten.extend((e.program, e.stream.removeprefix("person:")) for e in stored
                             if e.type == "forgotten")  # fmt: skip
            appended += len(stored)
            programs.update(event.program for event in stored)
            pending = []

        with path.open("rb") as handle:
            for line_number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise TransferError(f"{path} is not a JSON-lines export (line "
                                        f"{line_number} is not UTF-8 text)") from None  # fmt: skip
                if trailer is not None:
                    raise TransferError(f"line {line_number}: text after the end of the export")
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TransferError(f"line {line_number}: not valid JSON ({exc.msg})") from None
                if line_number == 1:
                    if not isinstance(row, dict) or row.get("format") != FORMAT:
                        raise TransferError("line 1: not an rmcore log export")
                    if row.get("version") != VERSION:
                        raise TransferError(f"line 1: export version {row.get('version')} "
                                            "is not supported")  # fmt: skip
                    whole_log = row.get("program") is None
                    continue
                if isinstance(row, dict) and row.get("end") is True:
                    trailer = row
                    continue
                event = _event_from(line_number, row)
                _check_event(line_number, event)
                if previous is not None:
                    if event.position <= previous.position:
                        raise TransferError(f"line {line_number}: positions go backwards")
                    if whole_log and event.prev_hash != previous.hash:
                        raise TransferError(
                            f"line {line_number}: does not follow the line before it in the chain"
                        )
                elif whole_log and event.position == 1 and event.prev_hash != "0" * 64:
                    raise TransferError(
                        f"line {line_number}: the first event does not start a chain"
                    )
                try:
                    engine.codec.check(event.type, event.schema, event.data)
                except DecodeError as exc:
                    raise TransferError(f"line {line_number}: {exc}") from None
                digest.update(event.hash.encode())
                previous = event
                seen += 1
                if _already_here(engine, event):
                    skipped += 1
                    continue
                pending.append(event)
                if len(pending) >= CHUNK:
                    flush()
                if progress:
                    progress(1)
        if trailer is None:
            raise TransferError(f"the export ends without its closing line (after line {seen + 1})")
        if trailer.get("events") != seen or trailer.get("digest") != digest.hexdigest():
            raise TransferError(
                "the closing line does not match the events in the file (lines were removed, "
                "added or reordered)"
            )
        flush()
        for program, person_id in forgotten:  # erased there, so erased here too
            engine.keyring.erase(program, person_id)
        if keys_added and skipped:
            # Events folded before their keys arrived show [sealed]: fold them again.
            rebuild(engine.store, engine.projector, log_file=engine.path)
        if appended:
            mark_imported(engine, programs, head_before, engine.store.head()[0])
    return ImportSummary(seen, appended, skipped)


def _already_here(engine: Engine, event: StoredEvent) -> bool:
    """Whether this very event (by id) is already at its stream version; a different event
    there is a conflict."""
    row = engine.conn.execute(
        "SELECT event_id FROM events WHERE program = ? AND stream = ? AND version = ?",
        (event.program, event.stream, event.version),
    ).fetchone()
    if row is None:
        return False
    if row[0] != event.event_id:
        raise TransferError(
            f"{event.stream} version {event.version} in {event.program} is already another "
            "event in this database; the logs have diverged"
        )
    return True
