"""The event classes and their registry.

Every event is a frozen attrs class with a stable ``type`` name (what is stored, never
the Python class name) and a payload ``schema`` version. Upcasters turn a payload
stored under an older schema into the current one before it is structured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from attrs import field, frozen

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


def _strings(value: Any) -> tuple[str, ...]:
    """Accept any iterable of strings (lists from JSON, tuples from code)."""
    if isinstance(value, str):
        return (value,) if value else ()
    return tuple(value)


@frozen(kw_only=True)
class Event:
    """Base of every event: a payload with a stable type name and schema version."""

    type: ClassVar[str] = ""
    schema: ClassVar[int] = 1

    @property
    def stream(self) -> str:
        """The entity this event belongs to, such as ``person:ada``."""
        raise NotImplementedError


@frozen(kw_only=True)
class PersonEvent(Event):
    """An event in a person's stream."""

    person_id: str

    @property
    def stream(self) -> str:
        """The person's stream."""
        return f"person:{self.person_id}"


@frozen(kw_only=True)
class PairEvent(Event):
    """An event in a pair's stream."""

    pair_id: str

    @property
    def stream(self) -> str:
        """The pair's stream."""
        return f"pair:{self.pair_id}"


@frozen(kw_only=True)
class Joined(PersonEvent):
    """A person joined the program."""

    type: ClassVar[str] = "joined"
    name: str
    email: str
    role: str
    generation: str = ""
    department: str = ""
    manager_id: str | None = None
    timezone: str = "UTC"
    skills_offered: tuple[str, ...] = field(default=(), converter=_strings)
    skills_sought: tuple[str, ...] = field(default=(), converter=_strings)
    goals: tuple[str, ...] = field(default=(), converter=_strings)
    capacity: int = 0


@frozen(kw_only=True)
class ProfileUpdated(PersonEvent):
    """Some of a person's profile fields changed; ``changes`` holds only the new values."""

    type: ClassVar[str] = "profile_updated"
    changes: dict[str, Any] = field(factory=dict)


@frozen(kw_only=True)
class Paired(PairEvent):
    """A mentor and a mentee were paired."""

    type: ClassVar[str] = "paired"
    mentor_id: str
    mentee_id: str
    strategy: str = "manual"
    score: float | None = None
    reasons: dict[str, Any] = field(factory=dict)
    goals: tuple[str, ...] = field(default=(), converter=_strings)


@frozen(kw_only=True)
class SessionHeld(PairEvent):
    """A pair held a mentoring session."""

    type: ClassVar[str] = "session_held"
    schema: ClassVar[int] = 2
    minutes: int
    topics: tuple[str, ...] = field(default=(), converter=_strings)
    mode: str = "virtual"


@frozen(kw_only=True)
class FeedbackGiven(PairEvent):
    """A member of a pair gave feedback on it."""

    type: ClassVar[str] = "feedback_given"
    by: str
    rating: int
    fresh_perspective: bool = False
    skills_gained: tuple[str, ...] = field(default=(), converter=_strings)
    comment: str = ""


@frozen(kw_only=True)
class PairEnded(PairEvent):
    """A pair ended."""

    type: ClassVar[str] = "pair_ended"
    reason: str = ""


@frozen(kw_only=True)
class Left(PersonEvent):
    """A person left the program."""

    type: ClassVar[str] = "left"
    reason: str = ""


@frozen(kw_only=True)
class Forgotten(PersonEvent):
    """A person's personal data was erased: their keys, and their pairs' keys, are gone."""

    type: ClassVar[str] = "forgotten"


@frozen(kw_only=True)
class Configured(Event):
    """A program setting was set (``value`` is JSON) or, with ``None``, removed."""

    type: ClassVar[str] = "configured"
    key: str
    value: Any = None

    @property
    def stream(self) -> str:
        """All of a program's settings share one stream."""
        return "program"


def session_held_v1_to_v2(payload: Payload) -> Payload:
    """Schema 1 recorded ``hours`` (a float) and had no ``mode``."""
    upgraded = {k: v for k, v in payload.items() if k != "hours"}
    upgraded["minutes"] = round(float(payload["hours"]) * 60)
    upgraded.setdefault("mode", "virtual")
    return upgraded


CORE_EVENT_TYPES: tuple[type[Event], ...] = (
    Joined,
    ProfileUpdated,
    Paired,
    SessionHeld,
    FeedbackGiven,
    PairEnded,
    Left,
    Forgotten,
    Configured,
)

CORE_UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("session_held", 1): session_held_v1_to_v2,
}


class EventRegistry:
    """The event types known to this process: the core ones plus any from plugins."""

    def __init__(self) -> None:
        self._types: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        for cls in CORE_EVENT_TYPES:
            self.register(cls)
        for (name, schema), fn in CORE_UPCASTERS.items():
            self.register_upcaster(name, schema, fn)

    def register(self, cls: type[Event], upcasters: dict[int, Upcaster] | None = None) -> None:
        """Add an event class; ``upcasters`` maps an old schema to its one-step upgrade."""
        if not cls.type:
            raise ValueError(f"{cls.__name__} has no type name")
        known = self._types.get(cls.type)
        if known is not None and known is not cls:
            raise ValueError(f"event type {cls.type!r} is already registered by {known.__module__}")
        self._types[cls.type] = cls
        for schema, fn in (upcasters or {}).items():
            self.register_upcaster(cls.type, schema, fn)

    def register_upcaster(self, type_name: str, from_schema: int, fn: Upcaster) -> None:
        """Register the upgrade of a ``type_name`` payload from ``from_schema`` to the next."""
        self._upcasters[(type_name, from_schema)] = fn

    def get(self, type_name: str) -> type[Event] | None:
        """The class for a type name, or None if no installed code knows it."""
        return self._types.get(type_name)

    def names(self) -> list[str]:
        """Every registered type name, sorted."""
        return sorted(self._types)

    def classes(self) -> list[type[Event]]:
        """Every registered event class."""
        return list(self._types.values())

    def upcast(self, type_name: str, schema: int, payload: Payload) -> Payload:
        """Bring a payload from ``schema`` up to the current schema of its type."""
        cls = self._types[type_name]
        while schema < cls.schema:
            step = self._upcasters.get((type_name, schema))
            if step is None:
                raise ValueError(f"no upcaster for {type_name} from schema {schema}")
            payload = step(payload)
            schema += 1
        if schema > cls.schema:
            raise ValueError(
                f"{type_name} schema {schema} is newer than this code knows ({cls.schema})"
            )
        return payload
