"""The standard program KPIs (the built-in ``rmcore_kpis`` plugin).

Everything is read from the read models with SQL at a business date ``as_of``: a person
counts from ``joined_at`` until ``left_at``, a pair from ``paired_at`` until the first of
``ended_at`` and either member's ``left_at``, a session or feedback from ``held_at`` /
``given_at``. SQLite does the heavy work (filtering, and folding sessions and feedback
into one row per pair); Python only adds those rows up per group.

Counts and totals are 0 when there is nothing to count; rates and means are None when
their denominator is empty. With ``by``, a person counts in their own group, a pair in
the group of each of its members (once if they share it), feedback in the group of the
person who gave it. Profiles (roles, generations, departments, skills) are the current
ones. See docs/kpis.md for every definition.
"""

from __future__ import annotations

import json
import re
import sqlite3
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from attrs import define

from rmcore.kpis import GROUP_BY, Kpi

ENGAGED_DAYS = 30
STALLED_DAYS = 30
OCCURRED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# name, unit, description: the names are part of the CLI contract.
DEFINITIONS: tuple[tuple[str, str, str], ...] = (
    ("participants", "people", "People who joined and have not left"),
    ("mentors", "people", "Active participants who can mentor (role mentor or both)"),
    ("mentees", "people", "Active participants who can be mentored (role mentee or both)"),
    ("active_pairs", "pairs", "Pairs formed and not ended (nor ended by a member leaving)"),
    ("match_rate", "fraction", "Share of active participants in at least one active pair"),
    ("sessions", "sessions", "Sessions held"),
    ("mentoring_hours", "hours", "Total session minutes / 60"),
    (
        "sessions_per_pair_month",
        "sessions/pair-month",
        "Sessions / (total days all pairs were active, up to the date, / 30)",
    ),
    (
        "engaged_pairs_30d",
        "fraction",
        "Share of active pairs with a session in the 30 days up to the date",
    ),
    (
        "stalled_pairs",
        "pairs",
        "Active pairs whose last session (or pairing, if none) is more than 30 days old",
    ),
    ("avg_rating", "rating 1-5", "Mean feedback rating"),
    (
        "fresh_perspective_rate",
        "fraction",
        "Share of feedback from a pair's mentee that reports a fresh perspective",
    ),
    (
        "two_way_rate",
        "fraction",
        "Share of pairs ever formed in which both members reported a skill gained",
    ),
    (
        "skills_transfer_rate",
        "fraction",
        "Share of the skills that can flow in a pair (one offers, the other seeks) "
        "that the receiving member reported gained",
    ),
    ("retention_rate", "fraction", "Share of everyone who ever joined who has not left"),
    (
        "cross_generation_rate",
        "fraction",
        "Share of pairs ever formed whose members' generations differ",
    ),
    (
        "cross_department_rate",
        "fraction",
        "Share of pairs ever formed whose members' departments differ",
    ),
)


_SEPARATORS = re.compile(r"[\s\-_\u2010-\u2015\u2212]+")  # spaces, hyphens, dashes


def skill_key(skill: str) -> str:
    """A skill's comparison key: ``"AI  Tools"``, ``"ai-tools"``, ``"AI_tools"`` -> ``"ai tools"``.

    NFKC, case folding, and any run of spaces, hyphens, underscores or dashes as one
    space: the matching plugin compares skills the same way.
    """
    folded = unicodedata.normalize("NFKC", skill).casefold()
    return _SEPARATORS.sub(" ", folded).strip()


def _same(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


@define
class _Person:
    group: str
    generation: str
    department: str
    offered: set[str]
    sought: set[str]


@define
class _Tally:
    """Running sums for one group; ``values()`` turns them into the KPIs."""

    ever_joined: int = 0
    participants: int = 0
    mentors: int = 0
    mentees: int = 0
    matched: int = 0
    pairs_formed: int = 0
    active_pairs: int = 0
    pair_days: float = 0.0
    sessions: int = 0
    minutes: int = 0
    engaged: int = 0
    stalled: int = 0
    two_way: int = 0
    flowable: int = 0
    transferred: int = 0
    cross_generation: int = 0
    cross_department: int = 0
    feedback: int = 0
    rating_sum: int = 0
    mentee_feedback: int = 0
    fresh: int = 0

    def values(self) -> dict[str, int | float | None]:
        """Each KPI by name."""
        return {
            "participants": self.participants,
            "mentors": self.mentors,
            "mentees": self.mentees,
            "active_pairs": self.active_pairs,
            "match_rate": _ratio(self.matched, self.participants),
            "sessions": self.sessions,
            "mentoring_hours": self.minutes / 60,
            "sessions_per_pair_month": _ratio(self.sessions, self.pair_days / 30),
            "engaged_pairs_30d": _ratio(self.engaged, self.active_pairs),
            "stalled_pairs": self.stalled,
            "avg_rating": _ratio(self.rating_sum, self.feedback),
            "fresh_perspective_rate": _ratio(self.fresh, self.mentee_feedback),
            "two_way_rate": _ratio(self.two_way, self.pairs_formed),
            "skills_transfer_rate": _ratio(self.transferred, self.flowable),
            "retention_rate": _ratio(self.participants, self.ever_joined),
            "cross_generation_rate": _ratio(self.cross_generation, self.pairs_formed),
            "cross_department_rate": _ratio(self.cross_department, self.pairs_formed),
        }


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _shift(as_of: str, days: int) -> str:
    moment = datetime.strptime(as_of, OCCURRED_FORMAT).replace(tzinfo=timezone.utc)
    return (moment - timedelta(days=days)).strftime(OCCURRED_FORMAT)


_PEOPLE_SQL = """
SELECT person_id, {group} AS grp, role, left_at IS NULL OR left_at > :as_of AS active,
       generation, department, skills_offered, skills_sought
FROM people
WHERE program = :program AND joined_at <= :as_of
"""

# Pairs formed by the date. A pair ends at the first of its own ending and either
# member leaving; ``days`` is how long it was active up to the date.
_PAIRS_SQL = """
SELECT pair_id, mentor_id, mentee_id, paired_at, end_at > :as_of AS active,
       max(0, strftime('%s', min(end_at, :as_of)) - strftime('%s', paired_at)) / 86400.0
           AS days
FROM (
    SELECT q.pair_id, q.mentor_id, q.mentee_id, q.paired_at,
           min(coalesce(q.ended_at, :never), coalesce(m.left_at, :never),
               coalesce(e.left_at, :never)) AS end_at
    FROM pairs q
    JOIN people m ON m.program = q.program AND m.person_id = q.mentor_id
    JOIN people e ON e.program = q.program AND e.person_id = q.mentee_id
    WHERE q.program = :program AND q.paired_at <= :as_of
)
"""

# Sessions held by the date, per pair: answered from the (program, pair_id, held_at)
# index alone, without touching the table.
_HELD_SQL = """
SELECT pair_id, count(*), max(held_at)
FROM sessions
WHERE program = :program AND held_at <= :as_of
GROUP BY pair_id
"""

# Minutes need the table rows. Reading the table in order (and, per pair, sorting the
# groups) beats following the pair index into the table row by row, several times over
# on a large log; hence NOT INDEXED here and for feedback.
_MINUTES_SQL = """
SELECT coalesce(sum(minutes), 0)
FROM sessions NOT INDEXED
WHERE program = :program AND held_at <= :as_of
"""

_MINUTES_BY_PAIR_SQL = """
SELECT pair_id, sum(minutes)
FROM sessions NOT INDEXED
WHERE program = :program AND held_at <= :as_of
GROUP BY pair_id
"""

# Feedback given by the date, one row per pair and member who gave it; the last column
# joins the distinct canonical JSON skill arrays into one JSON array of arrays.
_FEEDBACK_SQL = """
SELECT pair_id, by_person, count(*), sum(rating), sum(fresh_perspective != 0),
       '[' || coalesce(group_concat(DISTINCT skills_gained)
                       FILTER (WHERE skills_gained != '[]'), '') || ']'
FROM feedback NOT INDEXED
WHERE program = :program AND given_at <= :as_of
GROUP BY pair_id, by_person
"""


def basic_kpis(
    conn: sqlite3.Connection, program: str, as_of: str, by: str | None = None
) -> dict[str | None, dict[str, int | float | None]]:
    """The standard KPIs as of ``as_of``: ``{group: {name: value}}`` (group None without ``by``)."""
    group_sql = "''" if by is None else GROUP_BY[by]
    params = {"program": program, "as_of": as_of, "never": "9999-12-31T23:59:59Z"}
    engaged_since = _shift(as_of, ENGAGED_DAYS)
    stalled_before = _shift(as_of, STALLED_DAYS)
    skill_sets: dict[str, set[str]] = {}
    skill_keys: dict[str, str] = {}

    def keys(skills: Iterable[str]) -> set[str]:
        found = set()
        for skill in skills:
            key = skill_keys.get(skill)
            if key is None:
                key = skill_keys[skill] = skill_key(skill)
            if key:
                found.add(key)
        return found

    def profile_skills(text: str) -> set[str]:
        found = skill_sets.get(text)
        if found is None:
            found = skill_sets[text] = keys(json.loads(text))
        return found

    tallies: dict[str, _Tally] = defaultdict(_Tally)
    if by is None:
        tallies[""] = _Tally()
    people: dict[str, _Person] = {}
    active_people: list[str] = []
    for row in conn.execute(_PEOPLE_SQL.format(group=group_sql), params):
        person_id, group, role, active, generation, department, offered, sought = row
        people[person_id] = _Person(
            group, generation, department, profile_skills(offered), profile_skills(sought)
        )
        tally = tallies[group]
        tally.ever_joined += 1
        if active:
            active_people.append(person_id)
            tally.participants += 1
            tally.mentors += role in ("mentor", "both")
            tally.mentees += role in ("mentee", "both")

    held = {pair_id: (count, last) for pair_id, count, last in conn.execute(_HELD_SQL, params)}
    if by is None:
        tallies[""].minutes = conn.execute(_MINUTES_SQL, params).fetchone()[0]
        minutes: dict[str, int] = {}
    else:
        minutes = dict(conn.execute(_MINUTES_BY_PAIR_SQL, params).fetchall())
    feedback_rows = conn.execute(_FEEDBACK_SQL, params).fetchall()
    gained: dict[tuple[str, str], set[str]] = {}
    for pair_id, by_person, _, _, _, batches in feedback_rows:
        if batches != "[]":
            gained[(pair_id, by_person)] = {s for batch in json.loads(batches) for s in batch}

    mentee_of: dict[str, str] = {}
    in_active_pair: set[str] = set()
    for pair_id, mentor_id, mentee_id, paired_at, active, days in conn.execute(_PAIRS_SQL, params):
        mentor, mentee = people[mentor_id], people[mentee_id]
        mentee_of[pair_id] = mentee_id
        sessions, last = held.get(pair_id, (0, None))
        mentor_gains = gained.get((pair_id, mentor_id), ())
        mentee_gains = gained.get((pair_id, mentee_id), ())
        to_mentee = mentor.offered & mentee.sought
        to_mentor = mentee.offered & mentor.sought
        transferred = 0
        if to_mentee and mentee_gains:
            transferred += len(to_mentee & keys(mentee_gains))
        if to_mentor and mentor_gains:
            transferred += len(to_mentor & keys(mentor_gains))
        if active:
            in_active_pair.update((mentor_id, mentee_id))
        for group in {mentor.group, mentee.group}:
            tally = tallies[group]
            tally.pairs_formed += 1
            tally.pair_days += days
            tally.sessions += sessions
            tally.minutes += minutes.get(pair_id, 0)
            tally.two_way += bool(mentor_gains and mentee_gains)
            tally.flowable += len(to_mentee) + len(to_mentor)
            tally.transferred += transferred
            tally.cross_generation += not _same(mentor.generation, mentee.generation)
            tally.cross_department += not _same(mentor.department, mentee.department)
            if active:
                tally.active_pairs += 1
                tally.engaged += last is not None and last >= engaged_since
                tally.stalled += (last or paired_at) < stalled_before

    for person_id in active_people:
        if person_id in in_active_pair:
            tallies[people[person_id].group].matched += 1

    for pair_id, by_person, count, rating_sum, fresh, _ in feedback_rows:
        tally = tallies[people[by_person].group]
        tally.feedback += count
        tally.rating_sum += rating_sum
        if mentee_of.get(pair_id) == by_person:
            tally.mentee_feedback += count
            tally.fresh += fresh

    return {
        (None if by is None else group): tally.values() for group, tally in sorted(tallies.items())
    }


def standard_kpis(conn: sqlite3.Connection, program: str, as_of: str, by: str | None) -> list[Kpi]:
    """The standard program KPIs as records, program-wide or one set per group."""
    results = basic_kpis(conn, program, as_of, by)
    return [
        Kpi(name=name, value=values[name], unit=unit, description=description, group=group)
        for name, unit, description in DEFINITIONS
        for group, values in results.items()
    ]
