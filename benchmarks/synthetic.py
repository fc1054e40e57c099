"""A realistic synthetic program log, written straight through the store for speed.

People join, pairs form, then sessions and feedback make up the bulk of the log, as in
a real program. Every event is a valid payload of its type, so replay, verify and the
projections see what they would see in production. Given a ``seal`` callable (an engine's
keyring, as ``functools.partial(engine.keyring.seal, program)``), the personal fields are
sealed before the payload is encoded, as commands do, so the log holds ciphertext.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from rmcore.codec import Codec, canonical_json
from rmcore.events import (
    Event,
    EventRegistry,
    FeedbackGiven,
    Joined,
    Paired,
    SessionHeld,
)
from rmcore.store import NewEvent

DIGITAL = ["AI tools", "prompt engineering", "data analytics", "social media", "cybersecurity"]
LEADERSHIP = ["leadership", "communication", "negotiation", "strategy", "judgement"]
COMMENTS = [
    "",
    "",
    "Useful session, we will meet again next month.",
    "Went through the new analytics dashboard together; I now see why the board asks for it.",
    "Good questions on how decisions get made here.",
]
START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _at(days: float) -> str:
    return (START + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


Sealer = Callable[[str, str, dict[str, Any]], None]
"""Seals, in place, the personal fields of a payload: ``(stream, type_name, payload)``."""


def synthetic_events(
    total: int, *, people: int = 20_000, seed: int = 7, seal: Sealer | None = None
) -> Iterator[NewEvent]:
    """``total`` encoded events: joins, then pairs, then sessions and feedback.

    With ``seal``, each payload is sealed before it is encoded. Sealing creates keys in the
    keyring's database: consume the events inside a write transaction, or each new key
    commits on its own.
    """
    rng = random.Random(seed)
    codec = Codec(EventRegistry())
    people = min(people, max(2, total // 10))
    half = people // 2

    def new(event: Event, days: float) -> NewEvent:
        if seal is None:
            data = codec.encode(event)
        else:
            payload = codec.unstructure(event)
            seal(event.stream, event.type, payload)
            data = canonical_json(payload)
        return NewEvent(event.stream, event.type, event.schema, _at(days), data)

    emitted = 0
    for i in range(people):
        if emitted >= total:
            return
        junior = i < half
        yield new(
            Joined(
                person_id=f"p{i:06d}",
                name=f"Person {i}",
                email=f"p{i}@example.org",
                role="mentor" if junior else "mentee",
                generation="early-career" if junior else "tenured",
                department=f"dept-{i % 12}",
                timezone="Europe/London",
                skills_offered=rng.sample(DIGITAL if junior else LEADERSHIP, 2),
                skills_sought=rng.sample(LEADERSHIP if junior else DIGITAL, 2),
                capacity=1 if junior else 0,
            ),
            rng.random() * 10,
        )
        emitted += 1
    pair_ids = []
    for i in range(half):
        if emitted >= total:
            return
        pair_id = f"p{i:06d}-p{i + half:06d}"
        pair_ids.append(pair_id)
        yield new(
            Paired(
                pair_id=pair_id,
                mentor_id=f"p{i:06d}",
                mentee_id=f"p{i + half:06d}",
                strategy="matching_skills",
                score=3.5,
                reasons={"mentor_to_mentee": ["AI tools"], "mentee_to_mentor": ["leadership"]},
            ),
            11,
        )
        emitted += 1
    day = 12.0
    while emitted < total:
        pair_id = rng.choice(pair_ids)
        day += 300 / max(1, total)
        if rng.random() < 0.7:
            event: Event = SessionHeld(
                pair_id=pair_id,
                minutes=rng.choice([30, 45, 60, 90]),
                topics=[rng.choice(DIGITAL + LEADERSHIP)],
                mode=rng.choice(["virtual", "in_person"]),
            )
        else:
            mentor, mentee = pair_id.split("-")
            event = FeedbackGiven(
                pair_id=pair_id,
                by=rng.choice([mentor, mentee]),
                rating=rng.randint(3, 5),
                fresh_perspective=rng.random() < 0.6,
                skills_gained=[rng.choice(DIGITAL + LEADERSHIP)],
                comment=rng.choice(COMMENTS),
            )
        yield new(event, day)
        emitted += 1
