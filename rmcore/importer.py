"""Bulk import of people from an HR export (CSV or JSON lines): all rows or none.

Each row is a person. New people join; people already in the program whose profile
changed get a ``profile_updated`` event with only the changed fields; unchanged rows
record nothing, so importing the same file twice appends nothing. With
``leave_missing``, active people absent from the file leave the program.

The file is read once, as a stream, inside one write transaction: events are appended
and projected in chunks as rows are accepted, and if any row is bad the transaction is
rolled back, so nothing is appended and memory stays flat whatever the file's size.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
from attrs import frozen

from rmcore import queries
from rmcore.commands import PROFILE_FIELDS, DomainError, Join, Leave, UpdateProfile, decide
from rmcore.engine import Engine
from rmcore.events import Joined, ProfileUpdated
from rmcore.model import Person
from rmcore.queries import SqlState
from rmcore.when import WhenError, parse_occurred

MAX_LISTED_ERRORS = 50
CHUNK = 2000
SKILL_SEPARATOR = ";"

# Accepted header names for each field (compared lower-case, spaces and hyphens as "_").
COLUMNS: dict[str, tuple[str, ...]] = {
    "person_id": ("person_id", "person", "id", "employee_id"),
    "name": ("name", "full_name"),
    "email": ("email", "email_address"),
    "role": ("role",),
    "generation": ("generation", "career_stage"),
    "department": ("department", "dept"),
    "manager_id": ("manager_id", "manager"),
    "timezone": ("timezone", "time_zone", "tz"),
    "skills_offered": ("skills_offered", "offers"),
    "skills_sought": ("skills_sought", "seeks"),
    "goals": ("goals",),
    "capacity": ("capacity",),
    "joined_at": ("joined_at", "joined", "start_date"),
    # What `rmcore people --format csv` adds; read back, they are ignored.
    "status": ("status",),
    "left_at": ("left_at",),
}
REQUIRED = ("person_id", "name", "email", "role")
LIST_FIELDS = ("skills_offered", "skills_sought", "goals")
_ALIASES = {alias: field for field, aliases in COLUMNS.items() for alias in aliases}


class ImportRefused(Exception):
    """The file was refused; nothing was appended. ``errors`` lists what was wrong."""

    def __init__(self, errors: list[RowError], total: int) -> None:
        self.errors = errors
        self.total = total
        shown = "\n".join(str(e) for e in errors)
        more = total - len(errors)
        tail = f"\n... and {more} more problem(s)" if more > 0 else ""
        super().__init__(
            f"the file was refused, nothing was imported ({total} problem(s)):\n{shown}{tail}"
        )


@frozen
class RowError:
    """One problem: the line in the file, the column (if any) and why."""

    line: int
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.reason}"


@frozen
class ImportResult:
    """What an import did."""

    rows: int
    joined: int
    updated: int
    unchanged: int
    left: int
    events: int


def normalise_header(name: str) -> str:
    """``"Skills Offered"`` -> ``"skills_offered"``."""
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _split(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(SKILL_SEPARATOR) if part.strip()]


class _ImportState(SqlState):
    """The rules' view during an import: people come from memory, kept current row by row."""

    def __init__(self, conn: sqlite3.Connection, program: str) -> None:
        super().__init__(conn, program)
        self.known = {p.person_id: p for p in queries.people(conn, program, status=None)}

    def person(self, person_id: str) -> Person | None:
        """The person as of the rows accepted so far."""
        return self.known.get(person_id)

    def remember(self, event: Joined | ProfileUpdated, at: str) -> None:
        """Reflect an accepted row in memory (the read models catch up chunk by chunk)."""
        if isinstance(event, Joined):
            fields = {name: getattr(event, name) for name in PROFILE_FIELDS}
            self.known[event.person_id] = Person(person_id=event.person_id, joined_at=at, **fields)
        else:
            person = self.known[event.person_id]
            self.known[event.person_id] = attrs.evolve(person, **event.changes)


_SURROGATES = re.compile("[\udc80-\udcff]")


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """``(line number, row)`` from a CSV or JSON-lines file, streamed; a str row is an error.

    Bytes that are not UTF-8 are kept as surrogates and reported with their line and column.
    """
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as text:
        first = text.read(1)
        text.seek(0)
        jsonl = path.suffix.lower() in (".jsonl", ".ndjson") or first == "{"
        yield from (_jsonl_rows(text) if jsonl else _csv_rows(text))


def _csv_rows(text) -> Iterator[tuple[int, dict[str, Any] | str]]:
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        return
    yield 1, {"": header}
    width = len(header)
    for cells in reader:
        if len(cells) != width:
            if any(cell.strip() for cell in cells):
                yield reader.line_num, f"the row has {len(cells)} fields, the header has {width}"
            continue
        yield reader.line_num, dict(zip(header, cells))


def _jsonl_rows(text) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"the line is not valid JSON ({exc.msg})"
            continue
        yield number, row if isinstance(row, dict) else "the line is not a JSON object"


def map_columns(names: list[str], ignore_extra: bool) -> tuple[dict[str, str], list[tuple]]:
    """Map header names to fields: ``(mapping, [(column, reason), ...])``."""
    mapping: dict[str, str] = {}
    problems: list[tuple[str | None, str]] = []
    for name in names:
        field = _ALIASES.get(normalise_header(str(name)))
        if field is None:
            if not ignore_extra:
                problems.append((name, "unknown column (use --ignore-extra to skip it)"))
        elif field in mapping.values():
            problems.append((name, f"a second column for {field}"))
        else:
            mapping[name] = field
    problems.extend(
        (None, f"required column {field} is missing")
        for field in REQUIRED
        if field not in mapping.values()
    )
    return mapping, problems


def _convert(field: str, value: Any) -> Any:
    """A cell as the command expects it: lists split on ';', capacity as an integer."""
    if field in LIST_FIELDS:
        return _split(value)
    if field == "capacity":
        if value in (None, ""):
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            raise DomainError(f"{value!r} is not a whole number", field=field) from None
    if field == "manager_id" and value in (None, ""):
        return None
    return "" if value is None else str(value)


class _Errors:
    """Problems found so far: every one counted, the first MAX_LISTED_ERRORS kept."""

    def __init__(self) -> None:
        self.listed: list[RowError] = []
        self.count = 0

    def add(self, line: int, column: str | None, reason: str) -> None:
        """Note one problem."""
        self.count += 1
        if len(self.listed) < MAX_LISTED_ERRORS:
            self.listed.append(RowError(line, column, reason))


def import_people(
    engine: Engine,
    program: str,
    path: str | Path,
    *,
    actor: str,
    at: str | None = None,
    ignore_extra: bool = False,
    leave_missing: bool = False,
    idempotency_key: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import the file in one transaction; raise ImportRefused (nothing appended) on bad rows."""
    path = Path(path)
    if not path.is_file():
        raise DomainError(f"no file at {path}")
    default_at = parse_occurred(at)
    errors = _Errors()
    seen: dict[str, int] = {}
    counts = {"joined": 0, "updated": 0, "unchanged": 0, "left": 0}
    rows = 0
    fingerprint = _file_fingerprint(path, ignore_extra, leave_missing) if idempotency_key else None
    with engine.unit_of_work(
        program,
        actor=actor,
        idempotency_key=idempotency_key,
        keep_events=False,
        fingerprint=fingerprint,
    ) as unit:
        if unit.duplicate:
            return ImportResult(0, 0, 0, 0, 0, 0)
        state = _ImportState(engine.conn, program)
        mapping: dict[str, str] | None = None
        for line, row in _rows(path):
            if isinstance(row, str):
                errors.add(line, None, row)
                continue
            if mapping is None or "" in row:
                names = row[""] if "" in row else list(row)
                row_mapping, problems = map_columns(names, ignore_extra)
                for column, reason in problems:
                    errors.add(line, column, reason)
                if "" in row:
                    if not set(REQUIRED) <= set(row_mapping.values()):
                        break  # without the required columns no row can be read
                    mapping = row_mapping
                    continue
                if problems:
                    continue
            else:
                row_mapping = mapping
            rows += 1
            if progress and rows % 1000 == 0:
                progress(1000)
            _import_row(line, row, row_mapping, state, unit, errors, seen, counts, default_at)
            if unit.pending >= CHUNK and not errors.count:
                unit.flush()
        if progress:
            progress(rows % 1000)
        if leave_missing and not errors.count:
            unit.flush()
            for person_id, person in sorted(state.known.items()):
                if person.active and person_id not in seen:
                    leave = Leave(
                        person_id=person_id, reason="missing from the HR import", at=default_at
                    )
                    unit.record(default_at, decide(state, leave))
                    unit.flush()
                    counts["left"] += 1
        if errors.count:
            raise ImportRefused(errors.listed, errors.count)
    return ImportResult(rows, counts["joined"], counts["updated"], counts["unchanged"],
                        counts["left"], unit.count)  # fmt: skip


def _import_row(line, row, mapping, state, unit, errors, seen, counts, default_at) -> None:
    """Validate one row against the rules and queue what it changes."""
    fields: dict[str, Any] = {}
    for column, value in row.items():
        field = mapping.get(column)
        if field is None:
            continue
        if isinstance(value, str) and _SURROGATES.search(value):
            errors.add(line, column, "is not valid UTF-8 text")
            return
        fields[field] = value
    for field in REQUIRED:
        if fields.get(field) in (None, ""):
            errors.add(line, _column(mapping, field), "is empty")
            return
    person_id = str(fields["person_id"]).strip()
    if person_id in seen:
        errors.add(line, _column(mapping, "person_id"),
                   f"{person_id} already appears on line {seen[person_id]}")  # fmt: skip
        return
    seen[person_id] = line
    try:
        at = default_at
        if fields.get("joined_at") not in (None, ""):
            try:
                at = parse_occurred(str(fields.pop("joined_at")))
            except WhenError as exc:
                raise DomainError(str(exc), field="joined_at") from None
        for ignored in ("joined_at", "status", "left_at"):
            fields.pop(ignored, None)
        profile = {field: _convert(field, value) for field, value in fields.items()}
        profile["person_id"] = person_id
        existing = state.person(person_id)
        if existing is None:
            command: Join | UpdateProfile = Join(at=at, **profile)
        else:
            changes = {k: v for k, v in profile.items() if k != "person_id"}
            if changes.get("capacity") is None:
                changes.pop("capacity", None)
            command = UpdateProfile(person_id=person_id, changes=changes, at=default_at)
        events = decide(state, command)
    except DomainError as exc:
        column = _column(mapping, exc.field) if exc.field else None
        errors.add(line, column, str(exc))
        return
    if existing is None:
        counts["joined"] += 1
    elif events:
        counts["updated"] += 1
    else:
        counts["unchanged"] += 1
    if events and not errors.count:
        unit.record(command.at, events)
    for event in events:
        state.remember(event, command.at)


def _file_fingerprint(path: Path, *options: bool) -> str:
    """A digest of the file's bytes and the options, so a reused key cannot hide a new file."""
    digest = hashlib.sha256(repr(options).encode())
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _column(mapping: dict[str, str], field: str) -> str:
    for column, mapped in mapping.items():
        if mapped == field:
            return column
    return field
