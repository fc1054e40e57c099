"""Bulk import of people from an HR export (CSV or JSON lines): all rows or none.

Each row is a person. New people join; people already in the program whose profile
changed get a ``profile_updated`` event with only the changed fields; unchanged rows
record nothing, so importing the same file twice appends nothing. With
``leave_missing``, active people absent from the file leave the program.

The file is read once, as a stream, inside one write transaction, ``CHUNK`` rows at a
time: the people of a chunk already in the program are looked up in a few queries, its
rows are checked, and its events are appended and folded into the read models before
the next chunk is read. Once a row is refused, the rest of the file is still checked,
so that every problem is listed, but nothing more is appended, and the transaction is
rolled back at the end: nothing is imported. What the import keeps for the whole file
is each person id and its line (to refuse an id given twice and, with
``leave_missing``, to know who is missing); rows are dropped once their chunk is done,
and SQLite's page cache is held to ``IMPORT_CACHE_KIB`` meanwhile.

Rows are checked against the rules of :mod:`rmcore.commands`. A plain text cell (the
usual case) is checked inline by the same conditions; anything else (a control
character, a value out of range, a JSON number or list) goes through the rules' own
functions, so the outcome and the message are theirs. New people's ``joined`` payloads
are written directly in canonical form, their name and email sealed by the engine's
keyring, and their read-model rows inserted as built; profile changes and leavers go
through :func:`rmcore.commands.decide` and the unit of work like any other command.
"""

from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Container, Iterator
from contextlib import contextmanager
from json.encoder import encode_basestring
from operator import itemgetter
from pathlib import Path
from typing import Any

import attrs
from attrs import frozen

from rmcore.commands import (
    EMAIL,
    MAX_CAPACITY,
    PERSON_ID,
    DomainError,
    Leave,
    UpdateProfile,
    check_person_id,
    decide,
    profile_value,
)
from rmcore.engine import Engine, UnitOfWork
from rmcore.events import ProfileUpdated
from rmcore.model import LIST_FIELDS, PROFILE_FIELDS, ROLES, Person
from rmcore.personal import PERSONAL_FIELDS
from rmcore.queries import SqlState, stored_json
from rmcore.when import WhenError, parse_occurred

MAX_LISTED_ERRORS = 50
MAX_LISTED_LEAVERS = 20  # the leavers a dry run names (it counts them all)
CHUNK = 5000
IMPORT_CACHE_KIB = 16 * 1024  # SQLite page cache while importing (see _page_cache)
PROGRESS_STEP = 1000
SKILL_SEPARATOR = ";"
SEPARATORS = (",", ";", "\t")  # a CSV file's cells are separated by one of these

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
_ALIASES = {alias: field for field, aliases in COLUMNS.items() for alias in aliases}
# A joining person's fields in the order the rules check them, with the value used when
# the file has no such column (capacity comes last, its default depends on the role).
_JOIN_DEFAULTS: dict[str, Any] = {
    "name": "",
    "email": "",
    "role": "",
    "generation": "",
    "department": "",
    "manager_id": None,
    "timezone": "UTC",
    "skills_offered": (),
    "skills_sought": (),
    "goals": (),
}
# No accepted value holds a control character, and surrogate escapes stand for bytes that
# were not UTF-8: a row holding either is checked field by field by the rules.
_SUSPECT = re.compile("[\x00-\x1f\x7f\udc80-\udcff]")
_SURROGATES = re.compile("[\udc80-\udcff]")
_CACHE_LIMIT = 10_000  # distinct dates, time zones and JSON key sets remembered per file
_LOOKUP_BATCH = 500
# The read-model columns compared with a row, in this order (status last).
_PERSON_COLUMNS = (*PROFILE_FIELDS, "status")
_PERSON_AT = {field: i for i, field in enumerate(_PERSON_COLUMNS, start=1)}
_PEOPLE_SQL = (
    f"SELECT person_id, {', '.join(_PERSON_COLUMNS)} FROM people"
    " WHERE program = ? AND person_id IN ({})"
)


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
    duplicate: bool = False  # an earlier import used the same idempotency key
    first_position: int | None = None  # of the events that earlier import appended
    had_left: int = 0  # rows of people no longer in the program: nothing recorded
    dry_run: bool = False  # checked and counted, then rolled back: nothing appended
    leavers: tuple[str, ...] = ()  # the first MAX_LISTED_LEAVERS people who left (by id)


class _DryRun(Exception):
    """Raised inside the import's transaction to roll it back, carrying what it found."""

    def __init__(self, result: ImportResult) -> None:
        super().__init__("dry run")
        self.result = result


def normalise_header(name: str) -> str:
    """``"Skills Offered"`` -> ``"skills_offered"``."""
    return name.strip().lower().replace(" ", "_").replace("-", "_")


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


# -- reading the file ------------------------------------------------------------------------


class _Header(list):
    """The header record: the column names as the file gives them."""


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line, record)`` from a CSV or JSON-lines file, streamed; the line is where the
    record starts.

    A record is a :class:`_Header`, a CSV row (list of cells), a JSON object (dict) or a
    str saying why it cannot be read. An empty or blank file yields a header without
    columns. Bytes that are not UTF-8 are kept as surrogate escapes, for the checks to
    report with their line and column. A file that is not UTF-8 text at all yields one
    str, and nothing more.
    """
    with path.open("rb") as raw:
        start = raw.read(4096)
    if start.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        yield 1, "the file is UTF-32 text; save or export it as UTF-8"
        return
    head = start[:200]
    half = len(head) // 2
    nuls = sorted((head[1::2].count(0), head[::2].count(0)))
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (
        half >= 2 and nuls[1] >= 0.8 * half and nuls[0] <= 0.2 * half
    ):  # UTF-16 without a byte-order mark: a NUL byte beside (almost) every character
        yield 1, "the file is UTF-16 text; save or export it as UTF-8"
        return
    if b"\0" in start:
        yield 1, "the file is not text (it holds NUL bytes); give a CSV or JSON-lines file"
        return
    with _open(path) as text:
        yield from (_jsonl_records(text) if _is_jsonl(path, text) else _csv_records(text))


def _open(path: Path):
    return path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")


def _is_jsonl(path: Path, text) -> bool:
    """JSON lines by the extension or a first character ``{``; CSV otherwise."""
    first = text.read(1)
    text.seek(0)
    return path.suffix.lower() in (".jsonl", ".ndjson") or first == "{"


def _separator(text) -> str:
    """The CSV file's separator: of ``,``, ``;`` and tab, the one its first non-blank
    line (the header) holds most often, a comma when it holds none."""
    sample = text.read(65536)
    text.seek(0)
    header = next((line for line in sample.splitlines() if line.strip()), "")
    counts = {separator: header.count(separator) for separator in SEPARATORS}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def _csv_records(text) -> Iterator[tuple[int, Any]]:
    reader = csv.reader(text, delimiter=_separator(text))
    width = None
    end = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # The reader cannot tell where the next row starts: stop at this one.
            if "field limit" in str(exc):
                reason = (
                    f"a cell is longer than {csv.field_size_limit():,} characters"
                    " (is a closing quote missing?); the rest of the file was not read"
                )
            else:
                reason = f"the file cannot be read as CSV here ({exc}); the rest was not read"
            yield end + 1, reason
            return
        start, end = end + 1, reader.line_num
        if width is None:
            if any(cell.strip() for cell in cells):  # blank lines before the header are skipped
                if any(_SURROGATES.search(cell) for cell in cells):
                    yield start, "the header is not valid UTF-8 text; save the file as UTF-8"
                    return
                width = len(cells)
                yield start, _Header(cells)
        elif len(cells) == width:
            yield start, cells
        elif any(cell.strip() for cell in cells):
            reason = f"the row has {len(cells)} fields, the header has {width}"
            if end > start and len(cells) < width:
                reason += f"; its quoted cell runs on to line {end}: is a closing quote missing?"
            yield start, reason
    if width is None:
        yield 1, _Header()


def _jsonl_records(text) -> Iterator[tuple[int, Any]]:
    empty = True
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        empty = False
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"the line is not valid JSON ({exc.msg})"
            continue
        except RecursionError:
            yield number, "the line is not valid JSON (it is nested too deeply)"
            continue
        except ValueError:  # an integer of more digits than Python converts
            yield number, "the line holds a number too long to read"
            continue
        yield number, row if isinstance(row, dict) else "the line is not a JSON object"
    if empty:
        yield 1, _Header()


def count_rows(path: str | Path) -> int:
    """How many data rows an import of the file reads (for a progress bar's length)."""
    path = Path(path)
    with _open(path) as text:
        if _is_jsonl(path, text):
            return sum(1 for line in text if line.strip())
    return sum(1 for _, record in _records(path) if not isinstance(record, _Header))


class _Layout:
    """Where a file's (or a JSON key set's) fields are, and how to pick their values."""

    def __init__(self, mapping: dict[str, str], keys: list, *, text: bool) -> None:
        self.columns = list(mapping)  # mapped columns in file order; keys[i] picks columns[i]
        self.text = text  # every value is a str (CSV)
        fields = [mapping[column] for column in self.columns]
        self.index = {field: i for i, field in enumerate(fields)}
        self.column_of = dict(zip(fields, self.columns))
        getter = itemgetter(*keys) if keys else None
        self.pick: Callable[[Any], tuple] = (
            getter if len(keys) > 1 else lambda record: (getter(record),) if getter else ()
        )
        self.join_fields = [(field, self.index.get(field)) for field in _JOIN_DEFAULTS]
        self.given = [(field, i) for field, i in self.index.items() if field in PROFILE_FIELDS]
        if text:  # a CSV row gets an empty cell appended, which stands for absent columns
            at = dict(zip(fields, keys))
            self._fixed = itemgetter(*(at.get(field, -1) for field in _JOIN_DEFAULTS))
        else:
            self._fixed = itemgetter(*(self.index.get(field, -1) for field in _JOIN_DEFAULTS))

    def fixed(self, record: Any, values: tuple) -> tuple:
        """The raw values of every profile field but capacity, in the rules' order, an
        absent column as an empty cell (which the rules read as its default)."""
        if self.text:
            record.append("")
            return self._fixed(record)
        return self._fixed((*values, ""))

    def column(self, field: str) -> str:
        """The file's name for a field."""
        return self.column_of.get(field, field)


def _csv_layout(header: list[str], ignore_extra: bool) -> tuple[_Layout, list[tuple]]:
    mapping, problems = map_columns(header, ignore_extra)
    positions, taken = [], set()
    for i, name in enumerate(header):
        if name in mapping and name not in taken:
            taken.add(name)
            positions.append(i)
    return _Layout(mapping, positions, text=True), problems


# -- checking values -----------------------------------------------------------------------


class _Problem(Exception):
    """A row is refused: the column at fault (if any) and why."""

    def __init__(self, column: str | None, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


def _text(value: Any) -> str | None:
    """A cell's text: a JSON number that is an integer (an employee number) as its digits;
    None for anything else that is not text (true, 1.5, an object, an array)."""
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    return None


def _as_json(value: Any) -> str:
    """A value as the file spells it: text quoted, anything else as JSON."""
    return repr(value) if isinstance(value, str) else json.dumps(value)


def _split(field: str, value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    parts = []
    for item in items:
        text = _text(item)
        if text is None:
            raise DomainError(
                f"{field} holds {_as_json(item)}; give text separated by"
                f" {SKILL_SEPARATOR!r} or a JSON array of text",
                field=field,
            )
        # a cell of the file is split on ';', an item of a JSON array is kept whole
        for part in [text] if items is value else text.split(SKILL_SEPARATOR):
            if part.strip():
                parts.append(part.strip())
    return parts


def _convert(field: str, value: Any) -> Any:
    """A cell as the rules expect it: lists split on ';', capacity as an integer; a value
    that is not text (in JSON lines) is left for the rules to refuse."""
    if field in LIST_FIELDS:
        return _split(field, value)
    if field == "capacity":
        if value in (None, ""):
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return int(value.strip() if isinstance(value, str) else _text(value) or "")
        except ValueError:
            raise DomainError(f"{_as_json(value)} is not a whole number", field=field) from None
    if field == "manager_id" and value in (None, ""):
        return None
    if value is None:
        return ""
    text = _text(value)
    return value if text is None else text


class _Zones:
    """The time zone names the rules accept, remembered as they are met (``in`` checks)."""

    def __init__(self) -> None:
        self.valid = {"UTC"}

    def __contains__(self, name: object) -> bool:
        if name in self.valid:
            return True
        try:
            profile_value("", "timezone", name)
        except DomainError:
            return False
        if len(self.valid) < _CACHE_LIMIT:
            self.valid.add(name)
        return True


def _plain_profile(
    fixed: tuple, person_id: str, timezones: Container[str]
) -> dict[str, Any] | None:
    """The profile (every field but capacity) of a row of plain text, without control
    characters, when inline checks can vouch that ``profile_value`` accepts each value and
    normalises it so; None when only the rules can tell."""
    name, email, role, generation, department, manager, timezone, offered, sought, goals = fixed
    name, email, role = name.strip(), email.strip(), role.strip()
    generation, department, timezone = generation.strip(), department.strip(), timezone.strip()
    timezone = timezone or "UTC"
    if not (
        name
        and len(name) <= 200
        and role in ROLES
        and len(generation) <= 100
        and len(department) <= 100
        and timezone in timezones
        and len(email) <= 254
        and EMAIL.fullmatch(email)
    ):
        return None
    if not manager:
        manager = None
    elif manager == person_id or not PERSON_ID.fullmatch(manager):
        return None
    lists = []
    for raw in (offered, sought, goals):
        items = tuple(filter(None, map(str.strip, raw.split(SKILL_SEPARATOR)))) if raw else ()
        # Up to 100 characters hold at most 50 items of at most 100 characters each.
        if len(raw) > 100 and (len(items) > 50 or any(len(item) > 100 for item in items)):
            return None
        lists.append(items)
    return {
        "name": name,
        "email": email,
        "role": role,
        "generation": generation,
        "department": department,
        "manager_id": manager,
        "timezone": timezone,
        "skills_offered": lists[0],
        "skills_sought": lists[1],
        "goals": lists[2],
    }


# -- canonical payloads --------------------------------------------------------------------


def _json_list(values: tuple[str, ...]) -> str:
    """Checked items (no control characters) as a canonical JSON array."""
    if not values:
        return "[]"
    text = '","'.join(values)
    if "\\" not in text and text.count('"') == 2 * len(values) - 2:
        return f'["{text}"]'  # nothing to escape
    return "[" + ",".join(map(encode_basestring, values)) + "]"


def joined_payload(person_id: str, profile: dict[str, Any], lists: tuple[str, str, str]) -> str:
    """The canonical JSON of a ``joined`` event, as ``canonical_json`` gives it, written
    directly: ``profile`` holds every profile field, normalised, as stored, and ``lists``
    the JSON of skills offered, skills sought and goals."""
    manager = profile["manager_id"]
    return (
        f'{{"capacity":{profile["capacity"]:d},'
        f'"department":{encode_basestring(profile["department"])},'
        f'"email":{encode_basestring(profile["email"])},'
        f'"generation":{encode_basestring(profile["generation"])},'
        f'"goals":{lists[2]},'
        f'"manager_id":{"null" if manager is None else encode_basestring(manager)},'
        f'"name":{encode_basestring(profile["name"])},'
        f'"person_id":{encode_basestring(person_id)},'
        f'"role":{encode_basestring(profile["role"])},'
        f'"skills_offered":{lists[0]},'
        f'"skills_sought":{lists[1]},'
        f'"timezone":{encode_basestring(profile["timezone"])}}}'
    )


# -- the import ----------------------------------------------------------------------------


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


class _ImportState(SqlState):
    """The rules' view during an import: the read models, and the profile changes of rows
    accepted but not appended yet."""

    def __init__(self, conn: sqlite3.Connection, program: str) -> None:
        super().__init__(conn, program)
        self.pending: dict[str, Person] = {}

    def person(self, person_id: str) -> Person | None:
        """The person as of the rows accepted so far."""
        pending = self.pending.get(person_id)
        return pending if pending is not None else super().person(person_id)


class _Import:
    """One import in progress, inside its unit of work."""

    def __init__(
        self,
        engine: Engine,
        unit: UnitOfWork,
        program: str,
        at: str,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.engine = engine
        self.progress = progress
        self.unit = unit
        self.program = program
        self.default_at = at
        self.state = _ImportState(engine.conn, program)
        self.timezones = _Zones()
        self.errors = _Errors()
        self.seen: dict[str, int] = {}  # person id -> its line
        self.dates: dict[str, str] = {}
        self.counts = {"joined": 0, "updated": 0, "unchanged": 0, "left": 0, "had_left": 0}
        self.leavers: list[str] = []  # the first MAX_LISTED_LEAVERS of them
        self.rows = 0
        self.appended = 0  # events of new people (the unit counts the others)
        self.known: dict[str, tuple] = {}  # the chunk's people already in the program
        self.joins: list[tuple[str, str, dict[str, Any]]] = []  # (person id, at, profile)
        # Without anyone in the program yet, nobody in the file can be in it already.
        self.anyone = (
            engine.conn.execute("SELECT 1 FROM people WHERE program = ? LIMIT 1", (program,))
            .fetchone() is not None
        )  # fmt: skip

    def chunk(self, rows: list[tuple[int, _Layout | None, Any]]) -> None:
        """Check rows ``(line, layout, values)`` (a str for a record that could not be read)
        and append what they change while the file has no problem."""
        self.known = self._lookup(rows) if self.anyone else {}
        progress = self.progress
        for done, (line, layout, record) in enumerate(rows, start=1):
            if progress and done % PROGRESS_STEP == 0:
                progress(PROGRESS_STEP)
            if layout is None:  # a record that could not be read, or a JSON row's keys
                for column, reason in record:
                    self.errors.add(line, column, reason)
                continue
            self.rows += 1
            try:
                self._row(line, layout, record)
            except _Problem as problem:
                # The checks stop at a row's first problem; look for all of them.
                for column, reason in self._problems(line, layout, record, problem):
                    self.errors.add(line, column, reason)
        if progress and len(rows) % PROGRESS_STEP:
            progress(len(rows) % PROGRESS_STEP)
        self.flush()

    def _lookup(self, rows: list[tuple[int, _Layout | None, Any]]) -> dict[str, tuple]:
        """The chunk's people already in the program, as read-model rows."""
        ids = sorted({
            str(person_id).strip()
            for _, layout, record in rows
            if layout is not None
            and _text(person_id := layout.pick(record)[layout.index["person_id"]]) is not None
        })  # fmt: skip
        found = {}
        for start in range(0, len(ids), _LOOKUP_BATCH):
            batch = ids[start : start + _LOOKUP_BATCH]
            sql = _PEOPLE_SQL.format(", ".join("?" * len(batch)))
            for row in self.engine.conn.execute(sql, (self.program, *batch)):
                found[row[0]] = row
        return found

    def flush(self) -> None:
        """Append the accepted rows' events in file order, unless a row was refused."""
        if self.errors.count:
            self.joins.clear()
            return
        if self.unit.pending:
            self.unit.flush()
            self.state.pending.clear()
        if self.joins:
            self._append_joins()

    def _row(self, line: int, layout: _Layout, record: Any) -> None:
        """Check one row, in the order of the rules, and queue what it changes."""
        values = layout.pick(record)
        plain = False
        if layout.text or all(type(value) is str for value in values):
            text = "".join(values)
            plain = text.isprintable() or not _SUSPECT.search(text)  # the first is quicker
        if not plain:
            for column, value in zip(layout.columns, values):
                if isinstance(value, str) and _SURROGATES.search(value):
                    raise _Problem(column, "is not valid UTF-8 text")
        index = layout.index
        for field in REQUIRED:
            if values[index[field]] in (None, ""):
                raise _Problem(layout.column(field), "is empty")
        person_id = _text(values[index["person_id"]])
        if person_id is None:
            raise _Problem(layout.column("person_id"), "person_id must be text")
        person_id = person_id.strip()
        first = self.seen.get(person_id)
        if first is not None:
            raise _Problem(
                layout.column("person_id"), f"{person_id} already appears on line {first}"
            )
        self.seen[person_id] = line
        at = self.default_at
        i = index.get("joined_at")
        if i is not None and values[i] not in (None, ""):
            if _text(values[i]) is None:
                raise _Problem(layout.column("joined_at"), "joined_at must be an ISO 8601 date")
            at = self._when(_text(values[i]), layout)
        i = index.get("capacity")
        capacity = None
        if i is not None:
            try:
                capacity = _convert("capacity", values[i])
            except DomainError as exc:
                raise _Problem(layout.column("capacity"), str(exc)) from None
        profile = None
        if plain:
            profile = _plain_profile(layout.fixed(record, values), person_id, self.timezones)
        existing = self.known.get(person_id)
        try:
            if existing is None:
                self._join(person_id, at, layout, values, capacity, profile)
            else:
                self._update(existing, layout, values, capacity, profile)
        except DomainError as exc:
            raise _Problem(layout.column(exc.field) if exc.field else None, str(exc)) from None

    def _problems(
        self, line: int, layout: _Layout, record: Any, first: _Problem
    ) -> list[tuple[str | None, str]]:
        """Every problem of a refused row whose first problem is ``first``: each column is
        checked on its own, as the rules check it, in the file's order of columns."""
        values, index = layout.pick(record), layout.index
        found: list[tuple[str | None, str]] = []

        def check(field: str, test: Callable[[Any], object]) -> None:
            i = index.get(field)
            if i is None or values[i] in (None, "") and field not in REQUIRED:
                return
            if isinstance(values[i], str) and _SURROGATES.search(values[i]):
                found.append((layout.columns[i], "is not valid UTF-8 text"))
            elif values[i] in (None, ""):
                found.append((layout.columns[i], "is empty"))
            else:
                try:
                    test(values[i])
                except (DomainError, _Problem) as exc:
                    found.append((layout.columns[i], str(exc)))

        person_id = _text(values[index["person_id"]])
        person_id = "" if person_id is None else person_id.strip()
        earlier = self.seen.get(person_id)
        if person_id and earlier is None:  # refused early: a later row may repeat the id
            self.seen[person_id] = line

        def check_id(value: Any) -> None:
            if _text(value) is None:
                raise DomainError("person_id must be text")
            check_person_id(person_id)
            if earlier is not None and earlier != line:
                raise DomainError(f"{person_id} already appears on line {earlier}")

        def check_at(value: Any) -> None:
            if _text(value) is None:
                raise DomainError("joined_at must be an ISO 8601 date")
            self._when(_text(value), layout)

        def check_capacity(value: Any) -> None:
            capacity = _convert("capacity", value)
            if capacity is not None:
                profile_value(person_id, "capacity", capacity)

        for field in layout.index:
            if field == "person_id":
                check(field, check_id)
            elif field == "joined_at":
                check(field, check_at)
            elif field == "capacity":
                check(field, check_capacity)
            elif field in PROFILE_FIELDS:
                check(field, functools.partial(self._value, person_id, field))
        if (first.column, first.reason) not in found:  # a rule across fields
            found.append((first.column, first.reason))
        order = {column: i for i, column in enumerate(layout.columns)}
        return sorted(found, key=lambda problem: order.get(problem[0], -1))

    def _when(self, text: str, layout: _Layout) -> str:
        """A ``joined_at`` cell as ``occurred_at`` (the few distinct dates are remembered)."""
        at = self.dates.get(text)
        if at is None:
            try:
                at = parse_occurred(text)
            except WhenError as exc:
                raise _Problem(layout.column("joined_at"), str(exc)) from None
            if len(self.dates) < _CACHE_LIMIT:
                self.dates[text] = at
        return at

    def _join(self, person_id, at, layout, values, capacity, profile) -> None:
        """A new person, checked as ``decide_join`` checks a Join."""
        if not PERSON_ID.fullmatch(person_id):
            try:
                check_person_id(person_id)
            except DomainError as exc:
                exc.field = "person_id"
                raise
        if profile is None:
            profile = {
                field: default if i is None else self._value(person_id, field, values[i])
                for (field, i), default in zip(layout.join_fields, _JOIN_DEFAULTS.values())
            }
        if capacity is None:
            capacity = 1 if profile["role"] in ("mentor", "both") else 0
        if type(capacity) is not int or not 0 <= capacity <= MAX_CAPACITY:
            capacity = profile_value(person_id, "capacity", capacity)  # the rules' message
        profile["capacity"] = capacity
        self.counts["joined"] += 1
        if not self.errors.count:
            self.joins.append((person_id, at, profile))

    def _value(self, person_id: str, field: str, raw: Any) -> Any:
        """One profile field normalised by the rules (DomainError naming it if refused)."""
        return profile_value(person_id, field, _convert(field, raw))

    def _update(self, existing, layout, values, capacity, profile) -> None:
        """Someone already in the program: nothing if the row matches them or they have left
        (an HR export still lists people who left the program, and nobody joins twice),
        else decide."""
        if existing[_PERSON_AT["status"]] != "active":
            self._check_values(existing[0], layout, values, capacity, profile)
            self.counts["had_left"] += 1
            return
        if profile is not None and _matches(existing, layout, profile, capacity):
            self.counts["unchanged"] += 1
            return
        changes = {
            field: capacity if field == "capacity" else _convert(field, values[i])
            for field, i in layout.given
        }
        if changes.get("capacity") is None:
            changes.pop("capacity", None)
        command = UpdateProfile(person_id=existing[0], changes=changes, at=self.default_at)
        events = decide(self.state, command)
        if not events:
            self.counts["unchanged"] += 1
            return
        self.counts["updated"] += 1
        if not self.errors.count:
            if self.joins:
                self._append_joins()  # the log follows the file's order
            self.unit.record(command.at, events)
        for event in events:
            if isinstance(event, ProfileUpdated):
                person = self.state.person(event.person_id)
                self.state.pending[event.person_id] = attrs.evolve(person, **event.changes)

    def _check_values(self, person_id, layout, values, capacity, profile) -> None:
        """Check a row's values as the rules would for a join, recording nothing."""
        if profile is None:  # the inline checks could not vouch for the text fields
            for field, i in layout.given:
                if field != "capacity":
                    self._value(person_id, field, values[i])
        if capacity is not None:
            profile_value(person_id, "capacity", capacity)

    def _append_joins(self) -> None:
        """Append the queued ``joined`` events and insert their people rows as built."""
        engine, program, unit = self.engine, self.program, self.unit
        if unit.pending:
            unit.flush()
            self.state.pending.clear()
        joins = self.joins
        events: list[Any] = [None] * len(joins)  # in the file's order
        people = []
        # Keys and read-model rows go in by person id: their indexes take sorted inserts
        # much faster than random ones when the file is in no particular order.
        order = sorted(range(len(joins)), key=lambda i: joins[i][0])
        streams = [f"person:{joins[i][0]}" for i in order]
        personal = PERSONAL_FIELDS["joined"]
        sealed = engine.keyring.seal_new_subjects(
            program,
            personal,
            [
                (stream, tuple(map(joins[i][2].__getitem__, personal)))
                for stream, i in zip(streams, order)
            ],
        )
        for i, stream, values in zip(order, streams, sealed):
            person_id, at, profile = joins[i]
            name, email = profile["name"], profile["email"]
            lists = (
                _json_list(profile["skills_offered"]),
                _json_list(profile["skills_sought"]),
                _json_list(profile["goals"]),
            )
            profile.update(zip(personal, values))
            events[i] = (stream, "joined", 1, at, joined_payload(person_id, profile, lists))
            people.append((
                program, person_id, name, email, profile["role"], profile["generation"],
                profile["department"], profile["manager_id"], profile["timezone"],
                *lists, profile["capacity"], "active", at,
            ))  # fmt: skip
        self.joins.clear()
        stored_events = engine.store.append_encoded(
            program, events, actor=unit.actor, idempotency_key=unit.idempotency_key,
            recorded_at=unit.recorded_at,
        )  # fmt: skip
        engine.projector.apply(stored_events, people=people)
        self.appended += len(stored_events)

    def leave_missing(self) -> None:
        """Active people absent from the file leave the program (their active pairs end)."""
        self.flush()
        state = SqlState(self.engine.conn, self.program)
        active = self.engine.conn.execute(
            "SELECT person_id FROM people WHERE program = ? AND status = 'active'"
            " ORDER BY person_id",
            (self.program,),
        ).fetchall()
        at = self.default_at
        for (person_id,) in active:
            if person_id not in self.seen:
                leave = Leave(person_id=person_id, reason="missing from the HR import", at=at)
                self.unit.record(at, decide(state, leave))
                self.unit.flush()
                self.counts["left"] += 1
                if len(self.leavers) < MAX_LISTED_LEAVERS:
                    self.leavers.append(person_id)


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
    dry_run: bool = False,
) -> ImportResult:
    """Import the file in one transaction; raise ImportRefused (nothing appended) on bad rows.

    With ``dry_run`` the file is checked and its changes counted exactly as an import
    would, then the transaction is rolled back.
    """
    path = Path(path)
    if not path.is_file():
        raise DomainError(f"no file at {path}")
    try:
        path.open("rb").close()
    except OSError as exc:
        raise DomainError(f"cannot read {path}: {exc.strerror}") from None
    default_at = parse_occurred(at)
    fingerprint = None
    if idempotency_key is not None:
        fingerprint = _file_fingerprint(path, ignore_extra, leave_missing)
        earlier = _earlier_import(engine, program, idempotency_key, fingerprint)
        if earlier is not None:
            return ImportResult(0, 0, 0, 0, 0, 0, duplicate=True, first_position=earlier or None)
    try:
        with (
            _page_cache(engine.conn, IMPORT_CACHE_KIB),
            engine.unit_of_work(
                program,
                actor=actor,
                idempotency_key=idempotency_key,
                keep_events=False,
                fingerprint=fingerprint,
            ) as unit,
        ):
            if unit.duplicate:  # recorded by another writer since the check above
                return ImportResult(0, 0, 0, 0, 0, 0, duplicate=True)
            run = _Import(engine, unit, program, default_at, progress)
            _read(run, path, ignore_extra)
            if leave_missing and not run.errors.count:
                if not run.rows:
                    raise DomainError(
                        f"{path.name} has no rows: with --leave-missing everyone would leave"
                    )
                run.leave_missing()
            if run.errors.count:
                raise ImportRefused(run.errors.listed, run.errors.count)
            if dry_run:
                unit.flush()  # what is still pending is counted too
                raise _DryRun(_result(run, unit.count, dry_run=True))
    except _DryRun as rolled_back:  # raised inside, so that the transaction rolls back
        return rolled_back.result
    return _result(run, unit.count)


def _result(run: _Import, recorded: int, *, dry_run: bool = False) -> ImportResult:
    """What ``run`` did, ``recorded`` events having gone through its unit of work."""
    counts = run.counts
    return ImportResult(run.rows, counts["joined"], counts["updated"], counts["unchanged"],
                        counts["left"], recorded + run.appended, had_left=counts["had_left"],
                        dry_run=dry_run, leavers=tuple(run.leavers))  # fmt: skip


def _read(run: _Import, path: Path, ignore_extra: bool) -> None:
    """Feed the file's records to ``run`` chunk by chunk."""
    layout: _Layout | None = None
    layouts: dict[tuple, tuple[_Layout, list]] = {}  # per JSON key set
    chunk: list[tuple[int, _Layout | None, Any]] = []
    for line, record in _records(path):
        if isinstance(record, _Header):
            layout, problems = _csv_layout(record, ignore_extra)
            for column, reason in problems:
                run.errors.add(line, column, reason)
            if not set(REQUIRED) <= layout.index.keys():
                break  # without the required columns no row can be read
            continue
        if isinstance(record, str):
            chunk.append((line, None, [(None, record)]))
        elif isinstance(record, dict):
            keys = tuple(record)
            known = layouts.get(keys)
            if known is None:
                mapping, problems = map_columns(list(keys), ignore_extra)
                known = (_Layout(mapping, list(mapping), text=False), problems)
                if len(layouts) < _CACHE_LIMIT:
                    layouts[keys] = known
            row_layout, problems = known
            if problems:
                chunk.append((line, None, problems))
            else:
                chunk.append((line, row_layout, record))
        else:
            chunk.append((line, layout, record))
        if len(chunk) >= CHUNK:
            run.chunk(chunk)
            chunk = []
    run.chunk(chunk)


@contextmanager
def _page_cache(conn: sqlite3.Connection, kib: int) -> Iterator[None]:
    """At most ``kib`` KiB of SQLite page cache while the block runs.

    An import writes a large, mostly sequential transaction; SQLite spills what does not
    fit to the write-ahead log as it goes, so a small cache costs little time and keeps
    the process's memory from growing with the file up to the connection's usual cache.
    """
    before = conn.execute("PRAGMA cache_size").fetchone()[0]
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    current = -before if before < 0 else before * page // 1024
    if current <= kib:
        yield
        return
    conn.execute(f"PRAGMA cache_size = -{kib}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA cache_size = {before}")


def _earlier_import(engine: Engine, program: str, key: str, fingerprint: str) -> int | None:
    """If an import of this file already used ``key``: the first position it appended (0 if
    it appended nothing). None if the key is unused, or was used for something else (the
    unit of work then refuses the import, naming the key)."""
    recalled = engine.store.recall_key(program, key)
    if recalled is None or (recalled[0] and recalled[0] != fingerprint):
        return None
    row = engine.conn.execute(
        "SELECT min(position) FROM events WHERE program = ? AND idempotency_key = ?",
        (program, key),
    ).fetchone()
    return row[0] or 0


def _file_fingerprint(path: Path, *options: bool) -> str:
    """A digest of the file's bytes and the options, so a reused key cannot hide a new file."""
    digest = hashlib.sha256(repr(options).encode())
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _matches(existing: tuple, layout: _Layout, profile: dict[str, Any], capacity) -> bool:
    """Whether every profile field the row gives equals the person's current one."""
    for field, _ in layout.given:
        current = existing[_PERSON_AT[field]]
        if field == "capacity":
            if capacity is not None and capacity != current:
                return False
        elif field in LIST_FIELDS:
            value = profile[field]
            if _json_list(value) != current and list(value) != stored_json(
                current, f"people.{field}", list
            ):
                return False
        elif profile[field] != current:
            return False
    return True
