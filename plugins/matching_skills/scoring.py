"""A pair's score, term by term, for one mentor and one mentee (plain Python, no numpy).

The solver computes the same score for every candidate pair at once; this module is the
reference it must agree with, and it writes the reasons an operator reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import frozen
from rmcore_plugins.matching_skills.settings import Settings, normalise, overlap, utc_offsets

# The built-in terms, in the order they are added up.
TERMS = ("mentor_skills", "mentee_skills", "cross_department", "career_stage", "timezone_overlap")


@frozen
class Profile:
    """A participant as the strategy sees them: canonical skills, stage, department, zone."""

    person_id: str
    offers: frozenset[str]
    seeks: frozenset[str]
    stage: float | None
    department: str
    offsets: tuple[float, ...] | None
    manager_id: str | None


def profile(person: Any, settings: Settings) -> Profile:
    """The strategy's view of a ``Person``."""
    return Profile(
        person_id=person.person_id,
        offers=settings.skills(person.skills_offered),
        seeks=settings.skills(person.skills_sought),
        stage=settings.stage(person.generation),
        department=normalise(person.department),
        offsets=utc_offsets(person.timezone),
        manager_id=person.manager_id,
    )


def stage_direction(mentor_stage: float | None, mentee_stage: float | None) -> int:
    """+1 when the mentor is earlier in their career than the mentee, -1 when later, else 0."""
    if mentor_stage is None or mentee_stage is None or mentor_stage == mentee_stage:
        return 0
    return 1 if mentor_stage < mentee_stage else -1


def reporting_line(mentor: Profile, mentee: Profile) -> bool:
    """Whether one of the two manages the other."""
    return mentor.manager_id == mentee.person_id or mentee.manager_id == mentor.person_id


@frozen
class Explained:
    """Why a pair scores what it scores: the skills each way and each term's contribution."""

    mentor_to_mentee: tuple[str, ...]
    mentee_to_mentor: tuple[str, ...]
    terms: dict[str, float]
    direction: int = 0

    @property
    def score(self) -> float:
        """The sum of the terms, added in their fixed order."""
        return sum(self.terms.values())

    @property
    def shared_skills(self) -> int:
        """How many skills flow, both directions together."""
        return len(self.mentor_to_mentee) + len(self.mentee_to_mentor)

    def reasons(self) -> dict[str, Any]:
        """The ``reasons`` recorded in the ``paired`` event."""
        return {
            "mentor_to_mentee": list(self.mentor_to_mentee),
            "mentee_to_mentor": list(self.mentee_to_mentor),
            "terms": dict(self.terms),
        }


def explain(
    mentor: Profile,
    mentee: Profile,
    settings: Settings,
    extra: Mapping[str, float] | None = None,
) -> Explained:
    """Every term of the pair's score; ``extra`` holds other plugins' terms, added last."""
    forward = tuple(sorted(mentor.offers & mentee.seeks))
    backward = tuple(sorted(mentee.offers & mentor.seeks))
    direction = stage_direction(mentor.stage, mentee.stage)
    crosses = bool(mentor.department and mentee.department) and (
        mentor.department != mentee.department
    )
    terms = {
        "mentor_skills": settings.mentor_skills * len(forward),
        "mentee_skills": settings.mentee_skills * len(backward),
        "cross_department": settings.cross_department if crosses else 0.0,
        "career_stage": settings.career_stage * direction,
        "timezone_overlap": settings.timezone_overlap
        * overlap(mentor.offsets, mentee.offsets, settings.working_hours),
    }
    for name in sorted(extra or ()):
        terms[name] = terms.get(name, 0.0) + float(extra[name])
    return Explained(forward, backward, terms, direction)


def eligible(explained: Explained, settings: Settings) -> bool:
    """Enough skills flow, the score reaches the minimum (and is above zero), and with
    ``reverse_only`` the mentor is earlier in their career than the mentee."""
    score = explained.score
    return (
        (explained.direction > 0 or not settings.reverse_only)
        and explained.shared_skills >= settings.min_shared_skills
        and score >= settings.min_score
        and score > 0
    )
