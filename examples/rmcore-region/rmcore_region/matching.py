"""The ``region`` plugin: pair people only within their region, best pairs first."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import click

from rmcore import hookimpl
from rmcore.output import format_option, write_rows
from rmcore_region import enabled, region_of


def skills(names: Iterable[str]) -> set[str]:
    """Skill names compared without case, spaces, hyphens or underscores mattering."""
    return {re.sub(r"[\s_-]+", " ", name).strip().casefold() for name in names}


def candidates(mentor, mentees, region, before, config, score_pair) -> Iterator[tuple]:
    """Every mentee of the mentor's region they may be paired with, and why."""
    for mentee in mentees:
        if region is None or region_of(mentee.timezone, config) != region:
            continue
        if mentee.person_id == mentor.person_id:
            continue
        if frozenset((mentor.person_id, mentee.person_id)) in before:
            continue  # paired before in this program
        if mentee.person_id == mentor.manager_id or mentor.person_id == mentee.manager_id:
            continue  # one manages the other
        teaches = sorted(skills(mentor.skills_offered) & skills(mentee.skills_sought))
        learns = sorted(skills(mentee.skills_offered) & skills(mentor.skills_sought))
        if not teaches and not learns:
            continue
        terms = {"mentor_skills": float(len(teaches)), "mentee_skills": float(len(learns))}
        for name, value in (score_pair(mentor, mentee) if score_pair else {}).items():
            terms[name] = terms.get(name, 0.0) + value
        reasons = {
            "region": region,
            "mentor_to_mentee": teaches,
            "mentee_to_mentor": learns,
            "terms": terms,
        }
        yield sum(terms.values()), mentor, mentee, reasons


@hookimpl
def rmcore_match(people, pairs, config, score_pair) -> dict[str, Any] | None:
    """Propose pairs within each region; None (another strategy answers) unless enabled."""
    if not enabled(config):
        return None
    before = {frozenset((p.mentor_id, p.mentee_id)) for p in pairs}
    load = Counter(p.mentor_id for p in pairs if p.active)
    mentored = {p.mentee_id for p in pairs if p.active}
    mentors = [p for p in people if p.can_mentor and load[p.person_id] < p.capacity]
    mentees = [p for p in people if p.can_be_mentored and p.person_id not in mentored]

    found = [
        candidate
        for mentor in mentors
        for candidate in candidates(
            mentor, mentees, region_of(mentor.timezone, config), before, config, score_pair
        )
    ]
    found.sort(key=lambda c: (-c[0], c[1].person_id, c[2].person_id))

    proposed, couples = [], set()
    for score, mentor, mentee, reasons in found:
        couple = frozenset((mentor.person_id, mentee.person_id))
        if score <= 0 or mentee.person_id in mentored or couple in couples:
            continue  # two people never mentor each other in the same round
        if load[mentor.person_id] >= mentor.capacity:
            continue
        proposed.append(
            {
                "mentor_id": mentor.person_id,
                "mentee_id": mentee.person_id,
                "score": score,
                "reasons": reasons,
            }
        )
        load[mentor.person_id] += 1
        mentored.add(mentee.person_id)
        couples.add(couple)

    paired = {pair[side] for pair in proposed for side in ("mentor_id", "mentee_id")}
    considered = {person.person_id for _, mentor, mentee, _ in found for person in (mentor, mentee)}
    unmatched = []
    for person in {p.person_id: p for p in mentors + mentees}.values():
        if person.person_id in paired:
            continue
        region = region_of(person.timezone, config)
        if region is None:
            reason = f"time zone {person.timezone} names no region; add it to region.map"
        elif person.person_id in considered:
            reason = f"their possible partners in {region} were paired with others"
        else:
            reason = f"nobody in {region} offers a skill they seek or seeks a skill they offer"
        side = {(True, True): "both", (True, False): "mentor"}.get(
            (person in mentors, person in mentees), "mentee"
        )
        unmatched.append({"person_id": person.person_id, "side": side, "reason": reason})
    summary = {"method": "best pairs first, within each region"}
    return {"pairs": proposed, "unmatched": unmatched, "summary": summary}


@hookimpl
def rmcore_register_commands(cli: click.Group) -> None:
    """Add ``rmcore regions``."""

    @cli.command()
    @format_option
    @click.pass_obj
    def regions(app, fmt: str | None) -> None:
        """Count the active participants of each region (see the region.map setting)."""
        from rmcore import queries

        engine = app.engine()
        config = engine.config(app.program)
        counts: dict[str, Counter] = {}
        for person in queries.people(engine.conn, app.program):
            region = region_of(person.timezone, config) or "(none)"
            count = counts.setdefault(region, Counter(people=0, mentors=0, mentees=0))
            count.update(people=1, mentors=person.can_mentor, mentees=person.can_be_mentored)
        rows = [{"region": name, **counts[name]} for name in sorted(counts)]
        write_rows(rows, ("region", "people", "mentors", "mentees"), fmt)
