"""The ``matching_skills.*`` settings, skill normalisation, career stages and time zones.

Nothing here imports numpy: the plugin is loaded by every ``rmcore`` command, and only
``rmcore match`` needs the solver.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from attrs import field, frozen

PREFIX = "matching_skills."

DEFAULT_STAGES: tuple[str, ...] = ("early-career", "mid-career", "tenured")

# Generation names and where they sit on the career scale when the configured scale does
# not name them: the default scale reads early-career 0, mid-career 1, tenured 2.
GENERATIONS: dict[str, float] = {
    "gen z": 0,
    "generation z": 0,
    "genz": 0,
    "zoomer": 0,
    "zoomers": 0,
    "millennial": 1,
    "millennials": 1,
    "gen y": 1,
    "generation y": 1,
    "gen x": 2,
    "generation x": 2,
    "genx": 2,
    "baby boomer": 3,
    "baby boomers": 3,
    "boomer": 3,
    "boomers": 3,
    "silent generation": 4,
}

# Two fixed instants, one in northern winter and one in northern summer, so that the
# overlap of working hours counts daylight-saving time and never depends on today's date.
REFERENCE_INSTANTS = (
    datetime(2025, 1, 15, 12, tzinfo=timezone.utc),
    datetime(2025, 7, 15, 12, tzinfo=timezone.utc),
)

_SEPARATORS = re.compile(r"[\s\-_\u2010-\u2015\u2212]+")  # spaces, hyphens, dashes


class SettingsError(ValueError):
    """A ``matching_skills.*`` setting has a value the strategy cannot use."""


@lru_cache(maxsize=65536)
def normalise(text: str) -> str:
    """Case-, space- and hyphen-blind form: ``"AI  Tools"``, ``"ai-tools"`` -> ``"ai tools"``."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _SEPARATORS.sub(" ", folded).strip()


@frozen
class Settings:
    """Weights and limits of one matching run, read from the program's config."""

    mentor_skills: float = 1.0
    mentee_skills: float = 1.0
    cross_department: float = 0.5
    career_stage: float = 2.0
    reverse_only: bool = False
    timezone_overlap: float = 1.0
    working_hours: tuple[float, float] = (9.0, 17.0)
    min_score: float = 1.0
    min_shared_skills: int = 1
    career_stages: tuple[tuple[str, ...], ...] = tuple((normalise(s),) for s in DEFAULT_STAGES)
    skill_aliases: tuple[tuple[str, str], ...] = ()
    exact_limit: int = 10_000
    candidates: int = 16
    extra_terms_limit: int = 250_000
    search_nodes: int = 64
    # Canonical names already worked out, by the text as typed: most skills recur.
    _names: dict[str, str] = field(factory=dict, init=False, eq=False, repr=False)

    def skill(self, text: str) -> str:
        """The canonical name of a skill: normalised, then mapped through the aliases."""
        name = normalise(text)
        return self._aliases().get(name, name)

    def skills(self, values: Iterable[str]) -> frozenset[str]:
        """The canonical set of a person's skills (blank entries dropped)."""
        names = self._names
        found = set()
        for value in values:
            name = names.get(value)
            if name is None:
                name = names[value] = self.skill(value)
            if name:
                found.add(name)
        return frozenset(found)

    def stage(self, generation: str) -> float | None:
        """Where a generation or career stage sits on the scale (None when unknown)."""
        return _stage_rank(self.career_stages, normalise(generation))

    def _aliases(self) -> dict[str, str]:
        return _alias_map(self.skill_aliases)


@lru_cache(maxsize=16)
def _alias_map(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return dict(pairs)


@lru_cache(maxsize=4096)
def _stage_rank(stages: tuple[tuple[str, ...], ...], name: str) -> float | None:
    if not name:
        return None
    for rank, names in enumerate(stages):
        if name in names:
            return float(rank)
    rank = GENERATIONS.get(name)
    return None if rank is None else float(rank)


def _number(key: str, value: Any, *, low: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SettingsError(f"{PREFIX}{key} must be a number, not {value!r}")
    if low is not None and value < low:
        raise SettingsError(f"{PREFIX}{key} must be at least {low:g}, not {value!r}")
    return float(value)


def _whole(key: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SettingsError(f"{PREFIX}{key} must be a whole number of at least {low}")
    return value


def _stages(value: Any) -> tuple[tuple[str, ...], ...]:
    key = f"{PREFIX}career_stages"
    if not isinstance(value, list) or len(value) < 2:
        raise SettingsError(f"{key} must be a list of at least two stages, earliest first")
    stages: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for entry in value:
        names = [entry] if isinstance(entry, str) else entry
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise SettingsError(f"{key}: each stage is a name or a list of synonyms")
        normalised = tuple(normalise(n) for n in names)
        if not all(normalised) or seen & set(normalised):
            raise SettingsError(f"{key}: stage names must be non-empty and appear once")
        seen.update(normalised)
        stages.append(normalised)
    return tuple(stages)


def _aliases(value: Any) -> tuple[tuple[str, str], ...]:
    key = f"{PREFIX}skill_aliases"
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise SettingsError(f'{key} must be an object of names, like {{"genai": "AI tools"}}')
    return tuple(sorted((normalise(k), normalise(v)) for k, v in value.items()))


def _hours(value: Any) -> tuple[float, float]:
    key = f"{PREFIX}working_hours"
    if (
        not isinstance(value, list)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
        or not 0 <= value[0] < value[1] <= 24
    ):
        raise SettingsError(f"{key} must be [start, end] in local hours, like [9, 17]")
    return (float(value[0]), float(value[1]))


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(f"{PREFIX}{key} must be true or false")
    return value


_PARSERS = {
    "mentor_skills": lambda v: _number("mentor_skills", v),
    "mentee_skills": lambda v: _number("mentee_skills", v),
    "cross_department": lambda v: _number("cross_department", v),
    "career_stage": lambda v: _number("career_stage", v),
    "reverse_only": lambda v: _flag("reverse_only", v),
    "timezone_overlap": lambda v: _number("timezone_overlap", v),
    "working_hours": _hours,
    "min_score": lambda v: _number("min_score", v),
    "min_shared_skills": lambda v: _whole("min_shared_skills", v, low=0),
    "career_stages": _stages,
    "skill_aliases": _aliases,
    "exact_limit": lambda v: _whole("exact_limit", v, low=0),
    "candidates": lambda v: _whole("candidates", v, low=1),
    "extra_terms_limit": lambda v: _whole("extra_terms_limit", v, low=0),
    "search_nodes": lambda v: _whole("search_nodes", v, low=1),
}

SETTING_NAMES: tuple[str, ...] = tuple(sorted(_PARSERS))


def load_settings(config: Mapping[str, Any]) -> Settings:
    """The settings in force: defaults overridden by ``matching_skills.*`` keys."""
    values: dict[str, Any] = {}
    for key, value in config.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :]
        parser = _PARSERS.get(name)
        if parser is None:
            raise SettingsError(
                f"{key} is not a matching_skills setting; known: {', '.join(SETTING_NAMES)}"
            )
        values[name] = parser(value)
    return Settings(**values)


@lru_cache(maxsize=1024)
def utc_offsets(name: str) -> tuple[float, ...] | None:
    """The zone's UTC offsets in hours at the reference instants (None if unknown)."""
    try:
        zone = ZoneInfo(name or "UTC")
    except (ValueError, KeyError, OSError):
        return None
    return tuple(i.astimezone(zone).utcoffset().total_seconds() / 3600 for i in REFERENCE_INSTANTS)


@lru_cache(maxsize=65536)
def overlap(
    a: tuple[float, ...] | None, b: tuple[float, ...] | None, hours: tuple[float, float]
) -> float:
    """Share of local working hours two people have in common, averaged over the year (0-1)."""
    if a is None or b is None:
        return 0.0
    start, end = hours
    length = end - start
    shares = []
    for offset_a, offset_b in zip(a, b):
        lo_a, hi_a = start - offset_a, end - offset_a
        common = 0.0
        for shift in (-24.0, 0.0, 24.0):
            lo_b, hi_b = start - offset_b + shift, end - offset_b + shift
            common += max(0.0, min(hi_a, hi_b) - max(lo_a, lo_b))
        shares.append(min(common, length) / length)
    return sum(shares) / len(shares)
