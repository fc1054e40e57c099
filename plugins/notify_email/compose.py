"""What to say to whom: message drafts from events and from the read models.

Recipients, names and profiles come from the read models as they are when the message
is built (the event only says who is concerned). A message goes only to people who are
still active participants; an introduction only for a pair that is still active.

- ``joined``: a welcome to the person;
- ``paired``: one introduction to the mentor and one to the mentee, with the skills
  flowing each way (the ``reasons`` matching recorded, or, for a pair made by hand, the
  case-insensitive overlap of what one offers and the other seeks), the pair's goals,
  and a suggested first session with a calendar file;
- ``session_held``: a feedback request to each member;
- ``pair_ended``: a closing message to each member;
- a nudge to each member of an active pair with no session for ``nudge_days`` days
  (counted from the pairing when there was none), once per stalled period: the message
  key holds the day the stall began, so a new session starts a new period.
"""

from __future__ import annotations

import sqlite3
import zoneinfo
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from attrs import field, frozen

from rmcore.model import Pair, Person
from rmcore.queries import SqlState
from rmcore.store import StoredEvent
from rmcore.when import OCCURRED_FORMAT

from .message import calendar_invite
from .settings import Settings

NOTHING = "none recorded yet"
ROLE_TEXT = {"mentor": "mentor", "mentee": "mentee", "both": "mentor and mentee"}
MODE_TEXT = {"virtual": "virtual", "in_person": "in person"}


@frozen
class Draft:
    """A message to build: its key, kind, recipient and template values."""

    key: str
    kind: str
    position: int | None
    person: Person
    values: dict[str, str] = field(factory=dict)
    calendar: str | None = None


def moment(occurred_at: str) -> datetime:
    """An ``occurred_at`` text as an aware UTC datetime."""
    return datetime.strptime(occurred_at, OCCURRED_FORMAT).replace(tzinfo=timezone.utc)


def listing(values: Iterable[str]) -> str:
    """Items joined with commas, or a short note when there are none."""
    items = [v for v in values if v]
    return ", ".join(items) if items else NOTHING


def display_name(person: Person) -> str:
    """The person's name, or their id when the name is blank."""
    return person.name.strip() or person.person_id


def _zone(name: str) -> timezone | zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name) if name and name != "UTC" else timezone.utc
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def _flow(giver: Person, taker: Person) -> tuple[str, ...]:
    """Skills the giver offers that the taker seeks, compared case-insensitively."""
    sought = {skill.casefold().strip() for skill in taker.skills_sought}
    return tuple(skill for skill in giver.skills_offered if skill.casefold().strip() in sought)


def _spelled(skills: Sequence[Any], giver: Person) -> tuple[str, ...]:
    """Skills from ``reasons`` in the giver's own spelling where it matches."""
    own = {skill.casefold().strip(): skill for skill in giver.skills_offered}
    return tuple(own.get(str(s).casefold().strip(), str(s)) for s in skills if str(s).strip())


def skill_flows(reasons: dict[str, Any], mentor: Person, mentee: Person) -> tuple[tuple, tuple]:
    """``(mentor -> mentee, mentee -> mentor)`` skills: matching's reasons, else the overlap."""
    forward, backward = reasons.get("mentor_to_mentee"), reasons.get("mentee_to_mentor")
    if isinstance(forward, list) or isinstance(backward, list):
        return (
            _spelled(forward if isinstance(forward, list) else [], mentor),
            _spelled(backward if isinstance(backward, list) else [], mentee),
        )
    return _flow(mentor, mentee), _flow(mentee, mentor)


def common_values(person: Person, settings: Settings) -> dict[str, str]:
    """Values every template may use."""
    program = settings.program_title
    return {
        "name": display_name(person),
        "program": program,
        "sender_name": settings.sender_name,
        "signature": settings.sender_name or f"The {program} team",
    }


def _active(state: SqlState, person_id: str) -> Person | None:
    person = state.person(person_id)
    return person if person is not None and person.active else None


def welcome(state: SqlState, event: Any, envelope: StoredEvent, settings: Settings) -> list[Draft]:
    """A welcome for a person who joined."""
    person = _active(state, event.person_id)
    if person is None:
        return []
    values = common_values(person, settings) | {
        "role": ROLE_TEXT.get(person.role, person.role),
        "skills_offered": listing(person.skills_offered),
        "skills_sought": listing(person.skills_sought),
        "goals": listing(person.goals),
    }
    key = f"e{envelope.position}.welcome.{person.person_id}"
    return [Draft(key, "welcome", envelope.position, person, values)]


def first_session(pair_at: datetime, now: datetime, mentor: Person, settings: Settings) -> datetime:
    """A suggested first session: a weekday some days after pairing, at the mentor's morning."""
    zone = _zone(mentor.timezone)
    day = (max(pair_at, now) + timedelta(days=settings.first_session_days)).astimezone(zone)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    hour, minute = settings.first_session_time
    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
    return local.astimezone(timezone.utc)


def introductions(
    state: SqlState, event: Any, envelope: StoredEvent, settings: Settings, now: str
) -> list[Draft]:
    """One introduction to the mentor and one to the mentee of a new pair."""
    pair = state.pair(event.pair_id)
    mentor, mentee = _active(state, event.mentor_id), _active(state, event.mentee_id)
    if pair is None or not pair.active or mentor is None or mentee is None:
        return []
    forward, backward = skill_flows(dict(event.reasons or {}), mentor, mentee)
    goals = listing(event.goals or pair.goals)
    start = calendar = None
    if settings.invite:
        start = first_session(moment(envelope.occurred_at), moment(now), mentor, settings)
        calendar = calendar_invite(
            uid=f"{envelope.program}.{pair.pair_id}.first-session@"
            + (settings.sender or "rmcore").rpartition("@")[2],
            start=start,
            minutes=60,
            summary=f"Reverse mentoring: {display_name(mentor)} and {display_name(mentee)}",
            description=(
                f"First session of {settings.program_title}, suggested by the programme "
                "team. Move it to a time that suits you both."
            ),
            stamp=moment(now),
        )
    drafts = []
    sides = ((mentor, mentee, "mentor", "mentee", forward, backward),
             (mentee, mentor, "mentee", "mentor", backward, forward))  # fmt: skip
    for person, partner, role, partner_role, share, gain in sides:
        suggestion = ""
        if start is not None:
            local = start.astimezone(_zone(person.timezone))
            suggestion = (
                f"A first session is suggested for {local:%A %d %B %Y} at {local:%H:%M} "
                f"({person.timezone or 'UTC'} time); the attached invitation adds it to your "
                "calendar."
            )
        values = common_values(person, settings) | {
            "partner_name": display_name(partner),
            "partner_email": partner.email,
            "partner_department": partner.department or "department not recorded",
            "your_role": role,
            "partner_role": partner_role,
            "you_share": listing(share),
            "you_gain": listing(gain),
            "goals": goals,
            "first_session": suggestion,
        }
        key = f"e{envelope.position}.introduction.{person.person_id}"
        drafts.append(Draft(key, "introduction", envelope.position, person, values, calendar))
    return drafts


def _members(state: SqlState, pair: Pair) -> list[tuple[Person, Person]]:
    """``(recipient, partner)`` for each active member of the pair."""
    mentor, mentee = state.person(pair.mentor_id), state.person(pair.mentee_id)
    if mentor is None or mentee is None:
        return []
    return [(p, q) for p, q in ((mentor, mentee), (mentee, mentor)) if p.active]


def feedback_requests(
    state: SqlState, event: Any, envelope: StoredEvent, settings: Settings
) -> list[Draft]:
    """A feedback request to each member of a pair that held a session."""
    pair = state.pair(event.pair_id)
    if pair is None:
        return []
    drafts = []
    for person, partner in _members(state, pair):
        values = common_values(person, settings) | {
            "partner_name": display_name(partner),
            "pair_id": pair.pair_id,
            "session_date": envelope.occurred_at[:10],
            "minutes": str(event.minutes),
            "topics": listing(event.topics),
            "mode": MODE_TEXT.get(event.mode, event.mode),
        }
        key = f"e{envelope.position}.feedback_request.{person.person_id}"
        drafts.append(Draft(key, "feedback_request", envelope.position, person, values))
    return drafts


def closings(state: SqlState, event: Any, envelope: StoredEvent, settings: Settings) -> list[Draft]:
    """A closing message to each remaining member of a pair that ended."""
    pair = state.pair(event.pair_id)
    if pair is None:
        return []
    count, minutes = state.conn.execute(
        "SELECT count(*), coalesce(sum(minutes), 0) FROM sessions"
        " WHERE program = ? AND pair_id = ? AND held_at <= ?",
        (state.program, pair.pair_id, envelope.occurred_at),
    ).fetchone()
    drafts = []
    for person, partner in _members(state, pair):
        values = common_values(person, settings) | {
            "partner_name": display_name(partner),
            "pair_id": pair.pair_id,
            "reason": event.reason.strip() or "no reason given",
            "sessions": f"{count} session" + ("" if count == 1 else "s"),
            "hours": f"{minutes / 60:.1f}",
        }
        key = f"e{envelope.position}.closing.{person.person_id}"
        drafts.append(Draft(key, "closing", envelope.position, person, values))
    return drafts


def for_event(
    conn: sqlite3.Connection,
    program: str,
    event: Any,
    envelope: StoredEvent,
    settings: Settings,
    now: str,
) -> list[Draft]:
    """The messages one event calls for (none for most event types, none about someone
    forgotten since)."""
    state = SqlState(conn, program)
    if _about_someone_forgotten(state, event):
        return []
    if envelope.type == "joined":
        return welcome(state, event, envelope, settings)
    if envelope.type == "paired":
        return introductions(state, event, envelope, settings, now)
    if envelope.type == "session_held":
        return feedback_requests(state, event, envelope, settings)
    if envelope.type == "pair_ended":
        return closings(state, event, envelope, settings)
    return []


def _about_someone_forgotten(state: SqlState, event: Any) -> bool:
    """Whether the event concerns a person, or a pair with a member, who was forgotten."""
    ids = [getattr(event, "person_id", None)]
    pair = state.pair(event.pair_id) if getattr(event, "pair_id", None) else None
    if pair is not None:
        ids += [pair.mentor_id, pair.mentee_id]
    people = (state.person(person_id) for person_id in ids if person_id)
    return any(person is not None and person.status == "forgotten" for person in people)


def stalled_pairs(
    conn: sqlite3.Connection, program: str, now: str, days: int
) -> list[tuple[Pair, datetime, datetime, bool]]:
    """Active pairs with no session for ``days`` days: ``(pair, last, stall began, had one)``."""
    if days <= 0:
        return []
    rows = conn.execute(
        "SELECT p.pair_id, max(s.held_at) FROM pairs p LEFT JOIN sessions s"
        " ON s.program = p.program AND s.pair_id = p.pair_id"
        " WHERE p.program = ? AND p.status = 'active' GROUP BY p.pair_id ORDER BY p.pair_id",
        (program,),
    ).fetchall()
    state, current, found = SqlState(conn, program), moment(now), []
    for pair_id, last_session in rows:
        pair = state.pair(pair_id)
        if pair is None:
            continue
        last = max(pair.paired_at, last_session or "")
        began = moment(last) + timedelta(days=days)
        if began <= current:
            found.append((pair, moment(last), began, last_session is not None))
    return found


def nudges(conn: sqlite3.Connection, program: str, settings: Settings, now: str) -> list[Draft]:
    """A nudge to each member of every stalled pair, keyed by the day its stall began."""
    state, current = SqlState(conn, program), moment(now)
    drafts = []
    for pair, last, began, had_session in stalled_pairs(conn, program, now, settings.nudge_days):
        for person, partner in _members(state, pair):
            values = common_values(person, settings) | {
                "partner_name": display_name(partner),
                "pair_id": pair.pair_id,
                "days": str((current - last).days),
                "last": "your last session" if had_session else "you were paired",
                "last_date": f"{last:%Y-%m-%d}",
            }
            key = f"nudge.{pair.pair_id}.{began:%Y-%m-%d}.{person.person_id}"
            drafts.append(Draft(key, "nudge", None, person, values))
    return drafts
