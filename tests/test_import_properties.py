"""Properties of the people import.

Whatever CSV the importer accepts, its export imports back appending nothing and its read
models equal a replay; the payloads it writes directly are the codec's; and its inline
checks of plain text accept only what the rules accept, normalised as the rules do.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from click.testing import CliRunner
from conftest import ACTOR, read_event_count, read_event_rows
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rmcore import importer
from rmcore.cli import cli
from rmcore.codec import Codec, canonical_json
from rmcore.commands import PROFILE_FIELDS, DomainError, profile_value
from rmcore.engine import build_registry
from rmcore.events import Joined
from rmcore.plugins import make_plugin_manager

TIMEZONES = ("UTC", "Europe/Paris", "Europe/London", "America/New_York", "Asia/Kolkata", "")
ROLES = ("mentor", "mentee", "both")
COLUMNS = (
    "person_id", "name", "email", "role", "generation", "department", "manager_id", "timezone",
    "skills_offered", "skills_sought", "goals", "capacity",
)  # fmt: skip

# Printable text from all of Unicode: no control characters (the rules refuse them), no
# surrogates (not encodable) and no ';' inside list items (it separates them).
text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=";"),
    min_size=1,
    max_size=20,
)
ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,12}", fullmatch=True)
emails = st.from_regex(r"[a-z0-9._+-]{1,10}@[a-z0-9-]{1,8}\.(org|com|io)", fullmatch=True)
items = st.lists(text, max_size=4)


@st.composite
def hr_rows(draw) -> list[dict[str, str]]:
    """Rows of a valid HR export: unique ids, unicode names and skills, optional cells."""
    people = draw(st.lists(ids, min_size=1, max_size=8, unique=True))
    rows = []
    for person_id in people:
        others = [p for p in people if p != person_id]
        manager = draw(st.sampled_from(["", *others, "someone.outside"]))
        capacity = draw(st.one_of(st.just(""), st.integers(0, 20).map(str)))
        rows.append({
            "person_id": person_id,
            "name": draw(text),
            "email": draw(emails),
            "role": draw(st.sampled_from(ROLES)),
            "generation": draw(st.sampled_from(["", "early-career", "tenured", "Gen Z"])),
            "department": draw(st.one_of(st.just(""), text)),
            "manager_id": manager,
            "timezone": draw(st.sampled_from(TIMEZONES)),
            "skills_offered": ";".join(draw(items)),
            "skills_sought": ";".join(draw(items)),
            "goals": ";".join(draw(st.lists(text, max_size=2))),
            "capacity": capacity,
        })  # fmt: skip
    return rows


def fresh_database(folder: str) -> Path:
    """A new, initialised database file in ``folder``."""
    db = Path(folder) / "rmcore.db"
    assert rmcore(db, "init").exit_code == 0
    return db


def rmcore(db: Path, *args: str):
    """Run one rmcore command line in-process against ``db``."""
    return CliRunner().invoke(cli, ["--db", str(db), "--actor", ACTOR, *args])


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    """Write rows as a CSV file with every column."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(rows=hr_rows())
def test_an_accepted_csv_exported_and_imported_again_appends_nothing(rows):
    with tempfile.TemporaryDirectory() as folder:
        db, source = fresh_database(folder), Path(folder) / "hr.csv"
        write_csv(source, rows)
        first = rmcore(db, "import", str(source), "--at", "2026-01-05")
        assume(first.exit_code == 0)
        assert read_event_count(db) == len(rows)
        exported = rmcore(db, "people", "--format", "csv")
        assert exported.exit_code == 0, exported.output
        export = Path(folder) / "export.csv"
        export.write_text(exported.stdout, encoding="utf-8")
        before = read_event_rows(db)
        again = rmcore(db, "import", str(export), "--at", "2026-02-01")
        assert again.exit_code == 0, again.output
        assert read_event_rows(db) == before
        assert f"{len(rows)} unchanged" in again.stdout
        source_again = rmcore(db, "import", str(source), "--at", "2026-03-01")
        assert source_again.exit_code == 0, source_again.output
        assert read_event_rows(db) == before


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=hr_rows())
def test_the_export_lists_each_accepted_row_as_written(rows):
    with tempfile.TemporaryDirectory() as folder:
        db, source = fresh_database(folder), Path(folder) / "hr.csv"
        write_csv(source, rows)
        result = rmcore(db, "import", str(source))
        assume(result.exit_code == 0)
        exported = rmcore(db, "people", "--format", "csv")
        listed = {row["person_id"]: row for row in csv.DictReader(io.StringIO(exported.stdout))}
        assert sorted(listed) == sorted(row["person_id"] for row in rows)
        for row in rows:
            out = listed[row["person_id"]]
            assert out["name"] == row["name"].strip()
            for field in ("skills_offered", "skills_sought", "goals"):
                written = [s.strip() for s in row[field].split(";") if s.strip()]
                assert (out[field].split(";") if out[field] else []) == written
            assert out["timezone"] == (row["timezone"] or "UTC")
            assert out["manager_id"] == row["manager_id"]
        people = json.loads(rmcore(db, "people", "--format", "json").stdout)
        assert len(people) == len(rows)
        replay = rmcore(db, "replay", "--check")
        assert replay.exit_code == 0, replay.output


# Any text at all, quotes, backslashes, control characters and non-BMP characters included.
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    person_id=ids,
    values=st.fixed_dictionaries(
        {
            "name": any_text,
            "email": any_text,
            "role": st.sampled_from(ROLES),
            "generation": any_text,
            "department": any_text,
            "manager_id": st.one_of(st.none(), ids),
            "timezone": any_text,
            "skills_offered": st.lists(any_text, max_size=3).map(tuple),
            "skills_sought": st.lists(any_text, max_size=3).map(tuple),
            "goals": st.lists(any_text, max_size=3).map(tuple),
            "capacity": st.integers(0, 20),
        }
    ),  # fmt: skip
)
def test_a_joined_payload_written_directly_is_the_codecs_canonical_json(person_id, values):
    codec = Codec(build_registry(make_plugin_manager()))
    lists = tuple(
        canonical_json(list(values[f])) for f in ("skills_offered", "skills_sought", "goals")
    )
    written = importer.joined_payload(person_id, values, lists)
    assert written == canonical_json(codec.unstructure(Joined(person_id=person_id, **values)))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cc", "Cs"))), max_size=5))
def test_a_list_written_directly_is_its_canonical_json(items):
    assert importer._json_list(tuple(items)) == canonical_json(items)


# Cells as an HR export may hold them: padding, separators, long runs, odd characters.
cell = st.text(
    st.one_of(
        st.sampled_from(["a", "Z", "é", "Ω", " ", ";", "@", ".", "-", "_", "+", "\u00a0"]),
        st.characters(blacklist_categories=("Cs", "Cc")),
    ),
    max_size=30,
) | st.sampled_from(["", "mentor", " both ", "Europe/Paris", "a@b.io", "x" * 101, "y;" * 60])
FIELDS = [field for field in PROFILE_FIELDS if field != "capacity"]
# Mostly valid values, so that every field is reached, with any cell now and then.
CELLS = {
    "name": cell,
    "email": emails | emails.map(lambda e: f" {e} ") | cell,
    "role": st.sampled_from([*ROLES, " mentee ", "Mentor"]) | cell,
    "generation": cell,
    "department": cell,
    "manager_id": ids | st.just("") | cell,
    "timezone": st.sampled_from(["", " Europe/Paris ", "UTC", "Mars/Olympus"]) | cell,
    "skills_offered": cell,
    "skills_sought": cell,
    "goals": cell,
}


@settings(max_examples=300, deadline=None)
@given(person_id=ids, cells=st.fixed_dictionaries(CELLS))
def test_the_inline_checks_vouch_only_for_what_the_rules_accept_as_they_normalise_it(
    person_id, cells
):
    fixed = tuple(cells[field] for field in FIELDS)
    assume(not importer._SUSPECT.search("".join(fixed)))
    profile = importer._plain_profile(fixed, person_id, importer._Zones())
    if profile is None:
        return  # the import asks the rules themselves
    for field in FIELDS:
        try:
            expected = profile_value(person_id, field, importer._convert(field, cells[field]))
        except DomainError as exc:
            raise AssertionError(f"{field}={cells[field]!r} passed inline: {exc}") from None
        assert profile[field] == expected, field


def test_the_inline_checks_vouch_for_an_ordinary_row():
    fixed = ("Zoë Núñez ", "zoe@example.org", "mentor", "early-career", "Data", "ada",
             "Europe/Paris", "AI tools; automation", "", "lead a team")  # fmt: skip
    assert importer._plain_profile(fixed, "zoe", importer._Zones()) == {
        "name": "Zoë Núñez", "email": "zoe@example.org", "role": "mentor",
        "generation": "early-career", "department": "Data", "manager_id": "ada",
        "timezone": "Europe/Paris", "skills_offered": ("AI tools", "automation"),
        "skills_sought": (), "goals": ("lead a team",),
    }  # fmt: skip
