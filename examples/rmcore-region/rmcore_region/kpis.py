"""The ``region_kpis`` plugin: how many pairs stay within one region, who has no region."""

from __future__ import annotations

from collections import Counter

from rmcore import hookimpl
from rmcore_region import enabled, region_of


@hookimpl
def rmcore_kpis(conn, program, as_of, config, by) -> list[dict] | None:
    """Two KPIs, program-wide or per group; None unless region.enabled is true."""
    if not enabled(config):
        return None
    column = {"generation": "generation", "department": "department"}.get(by, "''")
    people = {
        person_id: (region_of(timezone, config), group, joined_at, left_at)
        for person_id, timezone, group, joined_at, left_at in conn.execute(
            f"SELECT person_id, timezone, {column}, joined_at, left_at FROM people"
            " WHERE program = ? AND joined_at <= ?",
            (program, as_of),
        )
    }
    pairs, within, without_region = Counter(), Counter(), Counter()
    for mentor_id, mentee_id in conn.execute(
        "SELECT mentor_id, mentee_id FROM pairs WHERE program = ? AND paired_at <= ?",
        (program, as_of),
    ):
        mentor, mentee = people[mentor_id], people[mentee_id]
        for group in {mentor[1], mentee[1]}:  # a pair counts once in each member's group
            pairs[group] += 1
            within[group] += mentor[0] is not None and mentor[0] == mentee[0]
    groups = set(pairs) | ({""} if by is None else set())
    for region, group, _joined_at, left_at in people.values():
        groups.add(group)
        if region is None and (left_at is None or left_at > as_of):
            without_region[group] += 1
    return [
        kpi
        for group in sorted(groups)
        for kpi in (
            {
                "name": "within_region_pair_rate",
                "value": within[group] / pairs[group] if pairs[group] else None,
                "unit": "fraction",
                "description": "Share of pairs formed whose two members are in one region",
                "group": group if by else None,
            },
            {
                "name": "participants_without_region",
                "value": without_region[group],
                "unit": "people",
                "description": "Participants whose time zone names no region (see region.map)",
                "group": group if by else None,
            },
        )
    ]
