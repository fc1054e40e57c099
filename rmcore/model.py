"""The current-state views that rules, plugins and the CLI read: people and pairs."""

from __future__ import annotations

from typing import Any

import attrs
from attrs import field, frozen

ROLES = ("mentor", "mentee", "both")


@frozen(kw_only=True)
class Person:
    """A participant as the read model knows them now."""

    person_id: str
    name: str
    email: str
    role: str
    generation: str = ""
    department: str = ""
    manager_id: str | None = None
    timezone: str = "UTC"
    skills_offered: tuple[str, ...] = field(default=(), converter=tuple)
    skills_sought: tuple[str, ...] = field(default=(), converter=tuple)
    goals: tuple[str, ...] = field(default=(), converter=tuple)
    capacity: int = 0
    status: str = "active"
    joined_at: str = ""
    left_at: str | None = None

    @property
    def active(self) -> bool:
        """Still in the program."""
        return self.status == "active"

    @property
    def can_mentor(self) -> bool:
        """May take the mentor side of a pair."""
        return self.role in ("mentor", "both")

    @property
    def can_be_mentored(self) -> bool:
        """May take the mentee side of a pair."""
        return self.role in ("mentee", "both")


PERSON_COLUMNS: tuple[str, ...] = tuple(f.name for f in attrs.fields(Person))
"""Every field of a person, in the order listings print them."""

PROFILE_FIELDS: tuple[str, ...] = tuple(
    name for name in PERSON_COLUMNS if name not in ("person_id", "status", "joined_at", "left_at")
)
"""The fields a person gives when joining and may change later (an HR re-import)."""

LIST_FIELDS: tuple[str, ...] = ("skills_offered", "skills_sought", "goals")
"""The profile fields that hold a list of text."""


@frozen(kw_only=True)
class Pair:
    """A mentoring pair as the read model knows it now."""

    pair_id: str
    mentor_id: str
    mentee_id: str
    status: str = "active"
    paired_at: str = ""
    ended_at: str | None = None
    strategy: str = "manual"
    score: float | None = None
    reasons: dict[str, Any] = field(factory=dict)
    goals: tuple[str, ...] = field(default=(), converter=tuple)

    @property
    def active(self) -> bool:
        """Not ended."""
        return self.status == "active"

    def has_member(self, person_id: str) -> bool:
        """Whether the person is the mentor or the mentee of this pair."""
        return person_id in (self.mentor_id, self.mentee_id)
