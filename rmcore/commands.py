"""Commands and the domain rules: ``decide(state, command) -> events``.

Each rule is a plain function of the current state and a command. A command that
breaks a rule raises :class:`DomainError` with a sentence an operator understands,
and nothing is appended. ``at`` on every command is the normalised ``occurred_at``.

Decisions recorded here (where DESIGN.md is silent):
- a mentee has at most one active mentor, as matching assumes;
- a session or feedback may be logged late, also after the pair ended, as long as
  its date lies within the pair's life (on or after pairing, not after the ending);
- a person who left cannot join the same program again under the same id;
- capacity defaults to 1 for mentors and ``both``, 0 for mentees.
"""

from __future__ import annotations

import functools
import json
import re
import zoneinfo
from collections.abc import Callable
from typing import Any, Protocol

import attrs
from attrs import field, frozen

from rmcore.events import (
    Configured,
    Event,
    FeedbackGiven,
    Forgotten,
    Joined,
    Left,
    Paired,
    PairEnded,
    ProfileUpdated,
    SessionHeld,
)
from rmcore.model import PROFILE_FIELDS, ROLES, Pair, Person


class DomainError(Exception):
    """A command broke a rule; the message says which, in plain words.

    ``field`` names the command field at fault when there is one, so a bulk import can
    point at the right column.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class State(Protocol):
    """What the rules may ask about the current state of one program."""

    def person(self, person_id: str) -> Person | None:
        """The person with this id, active or not."""

    def pair(self, pair_id: str) -> Pair | None:
        """The pair with this id, active or not."""

    def active_pairs_of(self, person_id: str) -> list[Pair]:
        """Active pairs in which the person is mentor or mentee."""

    def pairs_between(self, a: str, b: str) -> list[Pair]:
        """Every pair, active or ended, between two people (either direction)."""

    def pairs_of(self, person_id: str) -> list[Pair]:
        """Every pair, active or ended, in which the person is mentor or mentee."""

    def last_activity(self, pair_id: str) -> str | None:
        """The date of the pair's latest session or feedback, if any."""

    program: str
    """The program the rules look at (named in some refusals)."""

    def config(self, key: str) -> Any:
        """A program setting, or None."""


PERSON_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")
EMAIL = re.compile(r"^[^@\s\"<>(),;:\\\[\]]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
CONFIG_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
# Secret detection for setting names (a key is split into words on ``.``, ``_`` and ``-``):
# - SECRET_WORDS refuse a key wherever they stand as a whole word (``smtp.password``,
#   ``webhook.token``); whole words only, so ``matching.tokenizer`` and
#   ``matching_skills.secretary_weight`` are not secrets;
# - SECRET_INFIXES are unambiguous even inside a word (``smtppassword``, ``mailapikey``);
# - SECRET_LAST_WORDS are secrets only as the key's last word: ``smtp_pass`` and
#   ``webhook.auth`` hold one, but ``kpi_basic.pass_mark``, ``notify_email.passes`` and
#   ``auth_method`` do not. A harmless key that ends in them (``matching.second_pass``)
#   is refused too: name it otherwise (``matching.second_round``);
# - SECRET_KEY_QUALIFIERS name a secret when followed by ``key``: ``api_key``,
#   ``private_key``, ``access_key``, but not ``sort_key``.
SECRET_WORDS = frozenset({
    "password", "passwd", "passphrase", "passcode", "pwd", "secret", "secrets", "token",
    "tokens", "apikey", "apikeys", "credential", "credentials", "bearer", "authorization",
    "privatekey", "secretkey", "accesskey",
})  # fmt: skip
SECRET_INFIXES = ("password", "passwd", "passphrase", "apikey", "privatekey")
SECRET_LAST_WORDS = frozenset({"pass", "auth"})
SECRET_KEY_QUALIFIERS = frozenset({"api", "private", "access", "signing", "encryption", "ssh"})
# ``scheme://user:password@host`` (the user may be empty, as in ``redis://:pw@host``).
URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/?#@:]*:[^\s/?#@]+@", re.IGNORECASE)
SECRETS_ELSEWHERE = "secrets are read from the environment and never stored in the log"
_NOT_TEXT = re.compile(r"[\ud800-\udfff]")  # lone surrogates: undecodable input bytes
_ONE_LINE_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")
_MULTILINE_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MODES = ("virtual", "in_person")
MAX_CAPACITY = 20


@frozen(kw_only=True)
class Join:
    """A person joins the program."""

    person_id: str
    name: str
    email: str
    role: str
    at: str
    generation: str = ""
    department: str = ""
    manager_id: str | None = None
    timezone: str = "UTC"
    skills_offered: tuple[str, ...] = field(default=(), converter=tuple)
    skills_sought: tuple[str, ...] = field(default=(), converter=tuple)
    goals: tuple[str, ...] = field(default=(), converter=tuple)
    capacity: int | None = None


@frozen(kw_only=True)
class UpdateProfile:
    """Change some of a person's profile fields (an HR re-import, a new skill)."""

    person_id: str
    changes: dict[str, Any]
    at: str


@frozen(kw_only=True)
class MakePair:
    """Record a mentor-mentee pair (by hand or from a matching proposal)."""

    mentor_id: str
    mentee_id: str
    at: str
    goals: tuple[str, ...] = field(default=(), converter=tuple)
    strategy: str = "manual"
    score: float | None = None
    reasons: dict[str, Any] = field(factory=dict)


@frozen(kw_only=True)
class RecordSession:
    """A pair held a session."""

    pair_id: str
    minutes: int
    at: str
    topics: tuple[str, ...] = field(default=(), converter=tuple)
    mode: str = "virtual"


@frozen(kw_only=True)
class GiveFeedback:
    """A member of a pair gives feedback."""

    pair_id: str
    by: str
    rating: int
    at: str
    fresh_perspective: bool = False
    skills_gained: tuple[str, ...] = field(default=(), converter=tuple)
    comment: str = ""


@frozen(kw_only=True)
class EndPair:
    """A pair ends."""

    pair_id: str
    reason: str
    at: str


@frozen(kw_only=True)
class Leave:
    """A person leaves the program; their active pairs end with them."""

    person_id: str
    reason: str
    at: str


@frozen(kw_only=True)
class Forget:
    """Erase a person's personal data; an active person leaves first, in the same command."""

    person_id: str
    at: str


@frozen(kw_only=True)
class SetConfig:
    """Set (or, with ``None``, remove) a program setting; ``None`` for a key that is not
    set records nothing (``UnsetConfig`` refuses that instead)."""

    key: str
    value: Any
    at: str


@frozen(kw_only=True)
class UnsetConfig:
    """Remove a program setting, so plugins fall back to their defaults; refused if it is
    not set (``rmcore config unset``)."""

    key: str
    at: str


Command = (
    Join
    | UpdateProfile
    | MakePair
    | RecordSession
    | GiveFeedback
    | EndPair
    | Leave
    | Forget
    | SetConfig
    | UnsetConfig
)


def check_text(
    label: str, value: str, *, limit: int, required: bool = False, multiline: bool = False
) -> None:
    """Refuse empty required text, control characters, and text over ``limit`` chars."""
    if required and not value.strip():
        raise DomainError(f"{label} is required")
    if _NOT_TEXT.search(value):
        raise DomainError(f"{label} is not valid UTF-8 text")
    if len(value) > limit:
        raise DomainError(f"{label} is longer than {limit} characters")
    forbidden = _MULTILINE_FORBIDDEN if multiline else _ONE_LINE_FORBIDDEN
    if forbidden.search(value):
        what = "control characters" if multiline else "line breaks or control characters"
        raise DomainError(f"{label} contains {what}")


def check_person_id(value: str, label: str = "person id") -> None:
    """Person ids are 1-100 letters, digits and ``._@+-``, starting with a letter or digit."""
    if not PERSON_ID.fullmatch(value):
        raise DomainError(
            f"{label} {value!r} is not valid: use 1-100 letters, digits and . _ @ + -, "
            "starting with a letter or digit"
        )


def check_email(value: str) -> None:
    """A well-formed single address (no display name, no spaces)."""
    if len(value) > 254:
        raise DomainError("email is longer than 254 characters")
    if not EMAIL.fullmatch(value) or not value.isprintable():
        raise DomainError(f"email {value!r} is not a well-formed address like ada@example.org")


def check_list(label: str, values: tuple[str, ...]) -> None:
    """Every item is non-empty one-line text of at most 100 characters."""
    if len(values) > 50:
        raise DomainError(f"{label} has more than 50 entries")
    for value in values:
        check_text(f"{label} entry", value, limit=100, required=True)


def _require_person(state: State, person_id: str, label: str = "") -> Person:
    if not person_id.strip():
        raise DomainError(f"the {label or 'person '}id is empty")
    person = state.person(person_id)
    if person is None:
        raise DomainError(f"{label}{person_id} has not joined this program")
    return person


def _require_active_person(state: State, person_id: str, label: str = "") -> Person:
    person = _require_person(state, person_id, label)
    if not person.active:
        raise DomainError(f"{label}{person_id} left the program on {person.left_at[:10]}")
    return person


def _require_pair(state: State, pair_id: str) -> Pair:
    pair = state.pair(pair_id)
    if pair is None:
        raise DomainError(f"there is no pair {pair_id!r} in this program")
    for member_id in (pair.mentor_id, pair.mentee_id):
        member = state.person(member_id)
        if member is not None and member.status == "forgotten":
            raise DomainError(
                f"{member_id} was forgotten; nothing more is recorded about pair {pair_id}"
            )
    return pair


def _within_pair_life(pair: Pair, at: str, what: str) -> None:
    if at < pair.paired_at:
        raise DomainError(
            f"{what} is dated {at[:10]}, before pair {pair.pair_id} was formed on "
            f"{pair.paired_at[:10]}"
        )
    if pair.ended_at is not None and at > pair.ended_at:
        raise DomainError(
            f"{what} is dated {at[:10]}, after pair {pair.pair_id} ended on {pair.ended_at[:10]}"
        )


_LIST_FIELDS = {
    "skills_offered": "skills offered",
    "skills_sought": "skills sought",
    "goals": "goals",
}


def check_timezone(value: str) -> None:
    """An IANA time zone name such as Europe/Paris (or UTC)."""
    if value == "UTC":
        return
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        if _tz_database_present():
            raise DomainError(
                f"timezone {value!r} is not an IANA time zone name like Europe/Paris"
            ) from None


@functools.cache
def _tz_database_present() -> bool:
    try:
        zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:
        return False
    return True


def profile_value(person_id: str, field_name: str, value: Any) -> Any:
    """Validate one profile field and return it normalised (stripped text, tuples)."""
    try:
        return _profile_value(person_id, field_name, value)
    except DomainError as exc:
        exc.field = field_name
        raise


def _profile_value(person_id: str, field_name: str, value: Any) -> Any:
    if field_name in _LIST_FIELDS:
        values = tuple(value or ())
        check_list(_LIST_FIELDS[field_name], values)
        return values
    if field_name == "capacity":
        if isinstance(value, bool) or not isinstance(value, int):
            raise DomainError(f"capacity must be a whole number from 0 to {MAX_CAPACITY}")
        if not 0 <= value <= MAX_CAPACITY:
            raise DomainError(f"capacity {value} is outside 0-{MAX_CAPACITY}")
        return value
    if field_name == "manager_id":
        if value in (None, ""):
            return None
        check_person_id(value, "manager id")
        if value == person_id:
            raise DomainError(f"{person_id} cannot be their own manager")
        return value
    if not isinstance(value, str):
        raise DomainError(f"{field_name} must be text")
    value = value.strip()
    if field_name == "name":
        check_text("name", value, limit=200, required=True)
    elif field_name == "email":
        check_email(value)
    elif field_name == "role":
        if value not in ROLES:
            raise DomainError(f"role {value!r} is not one of {', '.join(ROLES)}")
    elif field_name == "timezone":
        value = value or "UTC"
        check_text("timezone", value, limit=100)
        check_timezone(value)
    else:
        check_text(field_name, value, limit=100)
    return value


def decide_join(state: State, cmd: Join) -> list[Event]:
    """A person joins once per program with a valid profile."""
    try:
        check_person_id(cmd.person_id)
    except DomainError as exc:
        exc.field = "person_id"
        raise
    existing = state.person(cmd.person_id)
    if existing is not None:
        when = existing.joined_at[:10]
        if existing.active:
            raise DomainError(f"{cmd.person_id} already joined this program on {when}")
        raise DomainError(
            f"{cmd.person_id} joined on {when} and left on {existing.left_at[:10]}; "
            "a person joins a program once"
        )
    profile = {
        name: profile_value(cmd.person_id, name, getattr(cmd, name))
        for name in PROFILE_FIELDS
        if name != "capacity"
    }
    capacity = cmd.capacity
    if capacity is None:
        capacity = 1 if profile["role"] in ("mentor", "both") else 0
    profile["capacity"] = profile_value(cmd.person_id, "capacity", capacity)
    return [Joined(person_id=cmd.person_id, **profile)]


def decide_update_profile(state: State, cmd: UpdateProfile) -> list[Event]:
    """Record the fields that really changed; roles and capacity must fit active pairs."""
    person = _require_active_person(state, cmd.person_id)
    changes: dict[str, Any] = {}
    for name, value in cmd.changes.items():
        if name not in PROFILE_FIELDS:
            raise DomainError(f"{name!r} is not a profile field")
        value = profile_value(person.person_id, name, value)
        if value != getattr(person, name):
            changes[name] = list(value) if isinstance(value, tuple) else value
    if not changes:
        return []
    updated = attrs.evolve(person, **changes)
    pairs = state.active_pairs_of(person.person_id)
    mentoring = sum(1 for p in pairs if p.mentor_id == person.person_id)
    mentored = any(p.mentee_id == person.person_id for p in pairs)

    # ``field`` names the changed field behind a refusal, so an import names its column.
    def changed(name: str) -> str | None:
        return name if name in changes else None

    if mentoring and not updated.can_mentor:
        raise DomainError(
            f"{person.person_id} mentors in {mentoring} active pair(s) and cannot become a "
            f"{updated.role}; end those pairs first",
            field=changed("role"),
        )
    if mentored and not updated.can_be_mentored:
        raise DomainError(
            f"{person.person_id} is mentored in an active pair and cannot become a "
            f"{updated.role}; end that pair first",
            field=changed("role"),
        )
    for pair in pairs:
        other_id = pair.mentee_id if pair.mentor_id == person.person_id else pair.mentor_id
        other = state.person(other_id)
        if updated.manager_id == other_id or (
            other is not None and other.manager_id == person.person_id
        ):
            raise DomainError(
                f"{person.person_id} and {other_id} are paired ({pair.pair_id}) and a pair "
                "cannot cross a reporting line; end that pair first",
                field=changed("manager_id") if updated.manager_id == other_id else None,
            )
    if updated.capacity < mentoring:
        raise DomainError(
            f"capacity {updated.capacity} is below the {mentoring} mentee(s) "
            f"{person.person_id} has now",
            field=changed("capacity"),
        )
    return [ProfileUpdated(person_id=person.person_id, changes=changes)]


def _new_pair_id(state: State, mentor_id: str, mentee_id: str) -> str:
    base = f"{mentor_id}-{mentee_id}"
    candidate, n = base, 1
    while state.pair(candidate) is not None:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _overlaps(pair: Pair, at: str) -> bool:
    """Whether a pair was still running at ``at`` or started later (business time)."""
    return pair.ended_at is None or pair.ended_at > at


def _until(pair: Pair) -> str:
    if pair.active:
        return ""
    return (
        f" until {pair.ended_at[:10]}; a new pairing must be dated after that"
        if pair.ended_at
        else ""
    )


def _not_before_activity(state: State, pair: Pair, at: str, what: str) -> None:
    last = state.last_activity(pair.pair_id)
    if last is not None and at < last:
        raise DomainError(
            f"{what} is dated {at[:10]}, before pair {pair.pair_id}'s last recorded "
            f"session or feedback ({last[:10]})"
        )


def decide_pair(state: State, cmd: MakePair) -> list[Event]:
    """Both active, right roles, different people, no manager line, capacity left."""
    mentor = _require_active_person(state, cmd.mentor_id, "mentor ")
    mentee = _require_active_person(state, cmd.mentee_id, "mentee ")
    if cmd.mentor_id == cmd.mentee_id:
        raise DomainError(f"{cmd.mentor_id} cannot be paired with themselves")
    if not mentor.can_mentor:
        raise DomainError(f"{mentor.person_id} joined as a {mentor.role} and cannot mentor")
    if not mentee.can_be_mentored:
        raise DomainError(f"{mentee.person_id} joined as a {mentee.role} and cannot be mentored")
    if mentor.manager_id == mentee.person_id or mentee.manager_id == mentor.person_id:
        manager, report = (
            (mentee, mentor) if mentor.manager_id == mentee.person_id else (mentor, mentee)
        )
        raise DomainError(
            f"{manager.person_id} is {report.person_id}'s manager; "
            "reverse mentoring pairs people outside a reporting line"
        )
    later = max((mentor, mentee), key=lambda p: p.joined_at)
    if cmd.at < later.joined_at:
        # The same day on both sides would read as a contradiction: show the times then.
        cut = None if cmd.at[:10] == later.joined_at[:10] else 10
        raise DomainError(
            f"the pairing is dated {cmd.at[:cut]}, before {later.person_id} joined "
            f"({later.joined_at[:cut]})"
        )
    # Pairs are judged in business time: a back-dated pairing must not overlap a pair
    # that was still running on its date, even if that pair has ended since.
    for pair in state.pairs_between(mentor.person_id, mentee.person_id):
        if _overlaps(pair, cmd.at):
            raise DomainError(
                f"{mentor.person_id} and {mentee.person_id} are already paired ({pair.pair_id})"
                + _until(pair)
            )
    running = [p for p in state.pairs_of(mentor.person_id) if _overlaps(p, cmd.at)]
    load = sum(1 for p in running if p.mentor_id == mentor.person_id)
    if mentor.capacity == 0:
        raise DomainError(f"{mentor.person_id} has a capacity of 0 and cannot mentor")
    if load >= mentor.capacity:
        raise DomainError(
            f"{mentor.person_id} already mentors {load} of a capacity of {mentor.capacity}"
            + (f" on {cmd.at[:10]}" if any(not p.active for p in running) else "")
        )
    for pair in state.pairs_of(mentee.person_id):
        if pair.mentee_id == mentee.person_id and _overlaps(pair, cmd.at):
            raise DomainError(
                f"{mentee.person_id} already has an active mentor ({pair.pair_id})"
                + (_until(pair) if not pair.active else "; end that pair first")
            )
    check_list("goals", cmd.goals)
    check_text("strategy", cmd.strategy, limit=100, required=True)
    return [
        Paired(
            pair_id=_new_pair_id(state, mentor.person_id, mentee.person_id),
            mentor_id=mentor.person_id,
            mentee_id=mentee.person_id,
            strategy=cmd.strategy,
            score=cmd.score,
            reasons=dict(cmd.reasons),
            goals=cmd.goals,
        )
    ]


def decide_session(state: State, cmd: RecordSession) -> list[Event]:
    """A session belongs to a pair, lasts 1-600 minutes, and falls within the pair's life."""
    pair = _require_pair(state, cmd.pair_id)
    _within_pair_life(pair, cmd.at, "the session")
    if isinstance(cmd.minutes, bool) or not isinstance(cmd.minutes, int):
        raise DomainError("minutes must be a whole number")
    if not 1 <= cmd.minutes <= 600:
        raise DomainError(f"a session lasts 1 to 600 minutes, not {cmd.minutes}")
    mode = cmd.mode.replace("-", "_").replace(" ", "_").lower()
    if mode not in MODES:
        raise DomainError(f"mode {cmd.mode!r} is not one of virtual, in-person")
    check_list("topics", cmd.topics)
    return [SessionHeld(pair_id=pair.pair_id, minutes=cmd.minutes, topics=cmd.topics, mode=mode)]


def decide_feedback(state: State, cmd: GiveFeedback) -> list[Event]:
    """Feedback comes from a member of the pair, rating 1-5, within the pair's life."""
    pair = _require_pair(state, cmd.pair_id)
    if not pair.has_member(cmd.by):
        raise DomainError(
            f"{cmd.by} is not a member of pair {pair.pair_id} "
            f"({pair.mentor_id} mentors {pair.mentee_id})"
        )
    if isinstance(cmd.rating, bool) or not isinstance(cmd.rating, int):
        raise DomainError("rating must be a whole number from 1 to 5")
    if not 1 <= cmd.rating <= 5:
        raise DomainError(f"rating {cmd.rating} is outside 1-5")
    _within_pair_life(pair, cmd.at, "the feedback")
    check_list("skills gained", cmd.skills_gained)
    check_text("comment", cmd.comment, limit=5000, multiline=True)
    return [
        FeedbackGiven(
            pair_id=pair.pair_id,
            by=cmd.by,
            rating=cmd.rating,
            fresh_perspective=bool(cmd.fresh_perspective),
            skills_gained=cmd.skills_gained,
            comment=cmd.comment,
        )
    ]


def decide_end_pair(state: State, cmd: EndPair) -> list[Event]:
    """Only an active pair can end, and not before it began."""
    pair = _require_pair(state, cmd.pair_id)
    if not pair.active:
        raise DomainError(f"pair {pair.pair_id} already ended on {pair.ended_at[:10]}")
    if cmd.at < pair.paired_at:
        raise DomainError(
            f"the ending is dated {cmd.at[:10]}, before the pair was formed ({pair.paired_at[:10]})"
        )
    _not_before_activity(state, pair, cmd.at, "the ending")
    check_text("reason", cmd.reason, limit=500, required=True)
    return [PairEnded(pair_id=pair.pair_id, reason=cmd.reason)]


def decide_leave(state: State, cmd: Leave) -> list[Event]:
    """An active person leaves; each of their active pairs ends in the same command."""
    person = _require_active_person(state, cmd.person_id)
    check_text("reason", cmd.reason, limit=500, required=True)
    if cmd.at < person.joined_at:
        raise DomainError(
            f"leaving is dated {cmd.at[:10]}, before {person.person_id} joined "
            f"({person.joined_at[:10]})"
        )
    active = sorted(state.active_pairs_of(person.person_id), key=lambda p: p.pair_id)
    for pair in active:
        if cmd.at < pair.paired_at:
            raise DomainError(
                f"leaving is dated {cmd.at[:10]}, before pair {pair.pair_id} was formed "
                f"({pair.paired_at[:10]})"
            )
    for pair in active:
        _not_before_activity(state, pair, cmd.at, "leaving")
    for pair in state.pairs_of(person.person_id):
        if pair.ended_at is not None and cmd.at < pair.ended_at:
            raise DomainError(
                f"leaving is dated {cmd.at[:10]}, not before the end of one of their pairs "
                f"({pair.pair_id} ended {pair.ended_at[:10]})"
            )
    events: list[Event] = [
        PairEnded(pair_id=pair.pair_id, reason=f"{person.person_id} left") for pair in active
    ]
    events.append(Left(person_id=person.person_id, reason=cmd.reason))
    return events


ERASURE_REASON = "erasure request"


def decide_forget(state: State, cmd: Forget) -> list[Event]:
    """Erase a person once; an active person leaves first (their pairs end), then is forgotten."""
    person = _require_person(state, cmd.person_id)
    if person.status == "forgotten":
        raise DomainError(f"{person.person_id} was already forgotten")
    events: list[Event] = []
    if person.active:
        events = decide_leave(state, Leave(person_id=person.person_id, reason=ERASURE_REASON,
                                           at=cmd.at))  # fmt: skip
    elif cmd.at < (person.left_at or ""):
        raise DomainError(
            f"forgetting is dated {cmd.at[:10]}, before {person.person_id} left "
            f"({(person.left_at or '')[:10]})"
        )
    events.append(Forgotten(person_id=person.person_id))
    return events


def looks_like_secret(name: str) -> bool:
    """Whether a setting's name (or a field name inside its value) suggests a secret; the
    word lists above say which names do."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)  # smtpPassword -> smtp_Password
    words = [w for w in re.split(r"[._\-\s]+", spaced.lower()) if w]
    if not words:
        return False
    return (
        any(w in SECRET_WORDS for w in words)
        or any(infix in w for w in words for infix in SECRET_INFIXES)
        or words[-1] in SECRET_LAST_WORDS
        or any(a in SECRET_KEY_QUALIFIERS and b.startswith("key") for a, b in zip(words, words[1:]))
    )


def _check_no_secret_value(key: str, value: Any) -> None:
    """Refuse a value that carries a secret: credentials inside a URL, or a field (of an
    object value) whose name looks like a secret. The secret itself is never echoed."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if URL_CREDENTIALS.search(item):
                raise DomainError(
                    f"the value of {key} has a password in a URL (user:password@host); "
                    f"give the URL without it: {SECRETS_ELSEWHERE}"
                )
        elif isinstance(item, dict):
            for name, inner in item.items():
                if looks_like_secret(str(name)):
                    raise DomainError(
                        f"the value of {key} has a field {str(name)!r} that looks like a "
                        f"secret; {SECRETS_ELSEWHERE}"
                    )
                stack.append(inner)
        elif isinstance(item, list | tuple):
            stack.extend(item)


def decide_config(state: State, cmd: SetConfig) -> list[Event]:
    """Keys are dotted lower-case names; secrets never go into the log; no-op if unchanged."""
    if not CONFIG_KEY.fullmatch(cmd.key):
        raise DomainError(
            f"setting {cmd.key!r} is not a dotted lower-case name like matching_skills.min_score"
        )
    if looks_like_secret(cmd.key):
        raise DomainError(f"{cmd.key} looks like a secret; {SECRETS_ELSEWHERE}")
    if isinstance(cmd.value, str):
        check_text("value", cmd.value, limit=2000)
    _check_no_secret_value(cmd.key, cmd.value)
    current = state.config(cmd.key)
    # Compared as JSON: in Python False == 0 and 1 == 1.0, but they are different settings.
    if json.dumps(current, sort_keys=True) == json.dumps(cmd.value, sort_keys=True):
        return []
    return [Configured(key=cmd.key, value=cmd.value)]


def decide_unset_config(state: State, cmd: UnsetConfig) -> list[Event]:
    """Only a setting that is set can be removed. A name that looks like a secret is not
    refused here: a key recorded before the rules knew it for one can still be removed."""
    if state.config(cmd.key) is None:
        raise DomainError(f"{cmd.key} is not set in program {state.program}")
    return [Configured(key=cmd.key, value=None)]


DECIDERS: dict[type, Callable[[State, Any], list[Event]]] = {
    Join: decide_join,
    UpdateProfile: decide_update_profile,
    MakePair: decide_pair,
    RecordSession: decide_session,
    GiveFeedback: decide_feedback,
    EndPair: decide_end_pair,
    Leave: decide_leave,
    Forget: decide_forget,
    SetConfig: decide_config,
    UnsetConfig: decide_unset_config,
}


def decide(state: State, command: Command) -> list[Event]:
    """The events a command produces against the current state, or a DomainError."""
    return DECIDERS[type(command)](state, command)
