"""``rmcore demo``: a realistic reverse-mentoring program, built through the real engine.

An organisation with departments, managers, career stages and time zones is written as
an HR export (CSV) and imported; the installed matching strategy pairs people; months
of sessions and feedback are then simulated with realistic variation (pairs that
thrive, pairs that stall, a few leavers, feedback sometimes missing) and recorded as
commands, so every rule applies. The same seed always gives the same program.

Once the months are simulated, the HR export is written again as HR would send it that
day: the people still in the program, as the program knows them. Importing it back into
the demo records nothing; importing it into a new database starts a program with them.
"""

from __future__ import annotations

import contextlib
import csv
import os
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO

from attrs import frozen

from rmcore import queries
from rmcore.commands import EndPair, GiveFeedback, Leave, RecordSession
from rmcore.engine import Engine
from rmcore.importer import import_people
from rmcore.model import Person
from rmcore.when import OCCURRED_FORMAT

DEPARTMENTS = (
    "Marketing", "Finance", "Engineering", "Data", "Sales", "People", "Legal",
    "Operations", "Product", "Security", "Customer Success", "Research",
)  # fmt: skip
DIGITAL_SKILLS = (
    ("AI tools", 10), ("prompt engineering", 9), ("data analytics", 7), ("social media", 6),
    ("automation", 5), ("cybersecurity", 4), ("no-code apps", 3), ("data visualisation", 3),
    ("collaboration tools", 2), ("content creation", 2),
)  # fmt: skip
LEADERSHIP_SKILLS = (
    ("leadership", 10), ("communication", 9), ("stakeholder management", 7),
    ("negotiation", 6), ("strategic thinking", 5), ("judgement", 5), ("coaching", 4),
    ("presenting", 3), ("conflict resolution", 3), ("career navigation", 2),
)  # fmt: skip
TIMEZONES = (
    ("Europe/London", 5), ("Europe/Berlin", 4), ("Europe/Paris", 3), ("America/New_York", 3),
    ("America/Chicago", 1), ("Asia/Singapore", 1), ("Asia/Kolkata", 2),
)  # fmt: skip
FIRST_NAMES = (
    "Amara", "Jonas", "Priya", "Lena", "David", "Sofia", "Kwame", "Mei", "Lucas", "Aisha",
    "Mateo", "Hana", "Oliver", "Zara", "Noah", "Ines", "Ravi", "Elena", "Tomasz", "Yuki",
    "Femi", "Clara", "Omar", "Freya", "Diego", "Nadia", "Hugo", "Leila", "Arjun", "Maya",
)  # fmt: skip
LAST_NAMES = (
    "Okafor", "Weber", "Raman", "Fischer", "Moreau", "Rossi", "Mensah", "Chen", "Silva",
    "Haddad", "Garcia", "Sato", "Brown", "Ahmed", "Kowalski", "Nguyen", "Dubois", "Larsen",
    "Costa", "Novak", "Adeyemi", "Jensen", "Patel", "Kim", "Murphy", "Schmidt", "Ali",
)  # fmt: skip
STAGES = ("early-career", "mid-career", "tenured")
EXPORT_COLUMNS = (
    "person_id", "name", "email", "role", "generation", "department", "manager_id",
    "timezone", "skills_offered", "skills_sought", "goals", "capacity", "joined_at",
)  # fmt: skip


@frozen
class DemoSummary:
    """What the demo built."""

    people: int
    pairs: int
    sessions: int
    feedback: int
    left: int
    events: int
    export: Path
    exported: int
    start: str
    end: str


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...], k: int) -> list[str]:
    """``k`` distinct items, popular ones more often (a Zipf-like draw)."""
    chosen: list[str] = []
    items = list(table)
    while len(chosen) < k and items:
        pick = rng.choices(items, weights=[w for _, w in items])[0]
        items.remove(pick)
        chosen.append(pick[0])
    return chosen


def write_organisation(path: Path, people: int, rng: random.Random, start: datetime) -> list[str]:
    """An HR export of ``people`` employees, in the import format (docs/import.md);
    returns their ids in the file's order."""
    rows = []
    used: set[str] = set()
    for i in range(people):
        stage = rng.choices(STAGES, weights=(45, 15, 40))[0]
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        handle = f"{first}.{last}".lower()
        person_id = handle if handle not in used else f"{handle}{i}"
        used.add(person_id)
        department = DEPARTMENTS[rng.randrange(len(DEPARTMENTS))]
        if stage == "early-career":
            role, offers, seeks = "mentor", _weighted(rng, DIGITAL_SKILLS, rng.randint(2, 3)), \
                _weighted(rng, LEADERSHIP_SKILLS, rng.randint(1, 2))  # fmt: skip
            capacity = rng.choice((1, 1, 1, 2))
        elif stage == "tenured":
            role, offers, seeks = "mentee", _weighted(rng, LEADERSHIP_SKILLS, rng.randint(2, 3)), \
                _weighted(rng, DIGITAL_SKILLS, rng.randint(1, 2))  # fmt: skip
            capacity = 0
        else:
            role = "both"
            offers = _weighted(rng, DIGITAL_SKILLS, 1) + _weighted(rng, LEADERSHIP_SKILLS, 1)
            seeks = _weighted(rng, LEADERSHIP_SKILLS + DIGITAL_SKILLS, 2)
            seeks = [s for s in seeks if s not in offers] or seeks[:1]
            capacity = 1
        joined = start + timedelta(days=rng.randint(0, 10), hours=rng.randint(8, 17))
        rows.append({
            "person_id": person_id, "name": f"{first} {last}",
            "email": f"{person_id}@example.com", "role": role, "generation": stage,
            "department": department, "manager_id": "",
            "timezone": _weighted(rng, TIMEZONES, 1)[0],
            "skills_offered": ";".join(offers), "skills_sought": ";".join(seeks),
            "goals": "", "capacity": capacity,
            "joined_at": joined.strftime(OCCURRED_FORMAT),
        })  # fmt: skip
    # Tenured people manage some early- and mid-career colleagues of their department.
    managers: dict[str, list[str]] = {}
    for row in rows:
        if row["generation"] == "tenured":
            managers.setdefault(row["department"], []).append(row["person_id"])
    for row in rows:
        candidates = managers.get(row["department"], [])
        if row["generation"] != "tenured" and candidates and rng.random() < 0.7:
            row["manager_id"] = rng.choice(candidates)
    with _owner_only(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return [row["person_id"] for row in rows]


def write_active_people(engine: Engine, program: str, path: Path, order: list[str]) -> int:
    """Rewrite the HR export with the people still in the program, as the read model holds
    them, in ``order`` (ids missing from it last); returns how many rows it wrote."""
    rank = {person_id: i for i, person_id in enumerate(order)}
    people = sorted(
        queries.people(engine.conn, program, status="active"),
        key=lambda p: (rank.get(p.person_id, len(rank)), p.person_id),
    )
    partial = path.with_name(f"{path.name}.partial")
    with _owner_only(partial) as handle:
        writer = csv.writer(handle)
        writer.writerow(EXPORT_COLUMNS)
        writer.writerows(_export_row(person) for person in people)
    os.replace(partial, path)
    return len(people)


def _owner_only(path: Path) -> IO[str]:
    """``path`` opened for writing as a CSV file readable by its owner only, like the
    database: the HR export holds names and emails."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a leftover keeps its mode; a new file gets 0600
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    return os.fdopen(fd, "w", newline="", encoding="utf-8")


def _export_row(person: Person) -> tuple:
    """One person in the import format: lists joined by ';', no manager as an empty cell."""
    return (
        person.person_id, person.name, person.email, person.role, person.generation,
        person.department, person.manager_id or "", person.timezone,
        ";".join(person.skills_offered), ";".join(person.skills_sought),
        ";".join(person.goals), person.capacity, person.joined_at,
    )  # fmt: skip


def _at(moment: datetime) -> str:
    return moment.strftime(OCCURRED_FORMAT)


def simulate(
    engine: Engine,
    program: str,
    *,
    start: datetime,
    end: datetime,
    rng: random.Random,
    actor: str,
) -> tuple[int, int, int]:
    """Simulate the program until ``end``; returns (sessions, feedback, leavers) recorded."""
    pairs = queries.pairs(engine.conn, program, status="active")
    people = {p.person_id: p for p in queries.people(engine.conn, program, status=None)}
    plans: list[tuple[datetime, int, object]] = []
    order = 0

    def plan(moment: datetime, command: object) -> None:
        nonlocal order
        if moment < end:
            plans.append((moment, order, command))
            order += 1

    for pair in pairs:
        paired = datetime.strptime(pair.paired_at, OCCURRED_FORMAT).replace(tzinfo=timezone.utc)
        temperament = rng.choices(("thriving", "steady", "stalling"), weights=(35, 45, 20))[0]
        gap_days = {"thriving": (7, 14), "steady": (14, 28), "stalling": (10, 30)}[temperament]
        sessions_planned = {"thriving": 40, "steady": 40, "stalling": rng.randint(0, 2)}[
            temperament
        ]
        moment = paired + timedelta(days=rng.randint(3, 12), hours=rng.randint(0, 6))
        flows = pair.reasons or {}
        to_mentee = list(flows.get("mentor_to_mentee") or people[pair.mentor_id].skills_offered)
        to_mentor = list(flows.get("mentee_to_mentor") or people[pair.mentee_id].skills_offered)
        for _ in range(sessions_planned):
            if moment >= end:
                break
            topics = [rng.choice(to_mentee or ["AI tools"])]
            if to_mentor and rng.random() < 0.6:
                topics.append(rng.choice(to_mentor))
            minutes = rng.choice((30, 45, 45, 60, 60, 90))
            plan(moment, RecordSession(pair_id=pair.pair_id, minutes=minutes, topics=topics,
                                       mode=rng.choice(("virtual", "virtual", "in_person")),
                                       at=_at(moment)))  # fmt: skip
            if rng.random() < 0.55:
                good = temperament != "stalling"
                for member, gains in ((pair.mentee_id, to_mentee), (pair.mentor_id, to_mentor)):
                    if rng.random() < 0.6:
                        rating = rng.choice((4, 5, 5) if good else (2, 3, 4))
                        gained = [g for g in gains if rng.random() < (0.5 if good else 0.2)]
                        plan(moment + timedelta(hours=20), GiveFeedback(
                            pair_id=pair.pair_id, by=member, rating=rating,
                            fresh_perspective=member == pair.mentee_id and rng.random() < 0.7,
                            skills_gained=gained[:2], at=_at(moment + timedelta(hours=20)),
                        ))  # fmt: skip
            moment += timedelta(days=rng.randint(*gap_days), hours=rng.randint(-3, 3))
        if temperament == "stalling" and rng.random() < 0.5:
            ending = paired + timedelta(days=rng.randint(60, 100))
            plan(ending, EndPair(pair_id=pair.pair_id, reason="no time to meet", at=_at(ending)))
    leavers = rng.sample(sorted(people), k=max(1, len(people) // 30)) if people else []
    for person_id in leavers:
        moment = start + (end - start) * rng.uniform(0.35, 0.9)
        plan(moment, Leave(person_id=person_id, reason=rng.choice(
            ("left the company", "parental leave", "changed role")), at=_at(moment)))  # fmt: skip
    plans.sort(key=lambda item: (item[0], item[1]))
    return _record(engine, program, [command for _, _, command in plans], actor)


def _record(engine: Engine, program: str, commands: list, actor: str) -> tuple[int, int, int]:
    """Record the simulated commands in date order; ones the rules refuse are skipped."""
    from rmcore.commands import DomainError, decide

    counts = {"session_held": 0, "feedback_given": 0, "left": 0}
    with engine.unit_of_work(program, actor=actor, keep_events=False) as unit:
        state = queries.SqlState(engine.conn, program)
        for command in commands:
            try:
                events = decide(state, command)
            except DomainError:
                continue  # e.g. a session planned after one of the pair left
            unit.record(command.at, events)
            unit.flush()
            for event in events:
                if event.type in counts:
                    counts[event.type] += 1
    return counts["session_held"], counts["feedback_given"], counts["left"]


def build_demo(
    engine: Engine,
    program: str,
    *,
    people: int,
    months: int,
    seed: int,
    export: Path,
    actor: str,
    match: Callable[[Engine, str, str], int],
    today: datetime | None = None,
) -> DemoSummary:
    """Build the whole demo program in ``engine``'s database; ``export`` ends up holding
    the HR export of the people still in it."""
    rng = random.Random(seed)
    end = (today or datetime.now(timezone.utc)).replace(minute=0, second=0, microsecond=0)
    end = end - timedelta(hours=1)
    start = end - timedelta(days=round(months * 30.4))
    order = write_organisation(export, people, rng, start)
    import_people(engine, program, export, actor=actor, at=_at(start))
    pairs = match(engine, program, _at(start + timedelta(days=14)))
    sessions, feedback, left = simulate(engine, program, start=start, end=end, rng=rng,
                                        actor=actor)  # fmt: skip
    exported = write_active_people(engine, program, export, order)
    return DemoSummary(
        people=people,
        pairs=pairs,
        sessions=sessions,
        feedback=feedback,
        left=left,
        events=engine.store.head()[0],
        export=export,
        exported=exported,
        start=_at(start),
        end=_at(end),
    )
