"""Program KPIs: every plugin's ``rmcore_kpis`` results, merged, at any business date.

The contract (docs/kpis.md has the long form):

- a plugin's ``rmcore_kpis(conn, program, as_of, config, by)`` returns a list of
  :class:`Kpi` records (or mappings with the same fields), or None;
- ``as_of`` is an ``occurred_at`` text (``YYYY-MM-DDTHH:MM:SSZ``): count what had
  happened by then, using the business dates the read models keep;
- with ``by`` (``generation`` or ``department``) a plugin returns one record per group,
  ``group`` set to the people's ``generation`` / ``department`` value as stored; a
  plugin that cannot break its KPIs down returns program-wide records (``group=None``);
- the core, not the plugin, hides every group with fewer than :data:`MIN_GROUP_SIZE`
  people (people of the group who had joined by ``as_of``, leavers included): its
  records come back with ``value=None`` and ``suppressed=True``;
- a plugin that raises or returns something malformed stops the collection with a
  :class:`KpiError` naming it, so no report is ever silently missing a plugin.

Every plugin reads the same snapshot: the collection runs in one read transaction, with
the connection set to ``query_only`` so that a plugin cannot change the database.
"""

from __future__ import annotations

import math
import sqlite3
from typing import TYPE_CHECKING, Any

import attrs
from attrs import frozen

from rmcore.constants import GROUP_BY, MIN_GROUP_SIZE

if TYPE_CHECKING:
    from rmcore.engine import Engine

HOOK = "rmcore_kpis"


class KpiError(Exception):
    """A KPI could not be collected: a bad ``by``, or a plugin failed (named in the message)."""


def _number(value: Any) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"a KPI value is a number or None, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"a KPI value must be finite, not {value}")
    return value


@frozen(kw_only=True)
class Kpi:
    """One named figure: a count, total, rate (0-1) or mean; None when nothing is measured."""

    name: str
    value: int | float | None = attrs.field(converter=_number)
    unit: str = ""
    description: str = ""
    group: str | None = None
    plugin: str | None = None
    suppressed: bool = False

    def as_row(self) -> dict[str, Any]:
        """The record as a flat dict for output."""
        return attrs.asdict(self)


def group_sizes(conn: sqlite3.Connection, program: str, as_of: str, by: str) -> dict[str, int]:
    """How many people of each group had joined the program by ``as_of`` (leavers included)."""
    column = GROUP_BY[by]
    rows = conn.execute(
        f"SELECT {column}, count(*) FROM people WHERE program = ? AND joined_at <= ?"
        f" GROUP BY {column}",
        (program, as_of),
    )
    return dict(rows.fetchall())


def collect_kpis(engine: Engine, program: str, as_of: str, by: str | None = None) -> list[Kpi]:
    """Every KPI plugin's records for ``program`` as of ``as_of``, plugins in name order."""
    if by is not None and by not in GROUP_BY:
        raise KpiError(f"cannot break KPIs down by {by!r}; choose {' or '.join(GROUP_BY)}")
    conn = engine.conn
    own_transaction = not conn.in_transaction
    (read_only,) = conn.execute("PRAGMA query_only").fetchone()
    conn.execute("PRAGMA query_only = ON")  # plugins read; a write fails in the plugin
    if own_transaction:
        conn.execute("BEGIN")
    try:
        config = engine.config(program)
        collected: list[Kpi] = []
        for name, caller in _callers(engine.pm):
            try:
                results = caller(conn=conn, program=program, as_of=as_of, config=config, by=by)
            except Exception as exc:
                raise KpiError(
                    f"KPI plugin {name} failed: {type(exc).__name__}: {exc} "
                    f"(--disable-plugin {name} skips it)"
                ) from exc
            for result in results:
                collected.extend(_records(name, result, by))
        _refuse_duplicates(collected)
        if by is not None:
            sizes = group_sizes(conn, program, as_of, by)
            collected = [_suppress_small(kpi, sizes) for kpi in collected]
        return collected
    finally:
        if own_transaction and conn.in_transaction:
            conn.execute("COMMIT")
        conn.execute(f"PRAGMA query_only = {int(read_only)}")


def _callers(pm) -> list[tuple[str, Any]]:
    """One hook caller per implementing plugin, so results and failures carry its name."""
    hook = getattr(pm.hook, HOOK)
    impls = [i for i in hook.get_hookimpls() if not (i.hookwrapper or i.wrapper)]
    callers = []
    for impl in impls:
        others = [i.plugin for i in impls if i.plugin is not impl.plugin]
        callers.append((impl.plugin_name, pm.subset_hook_caller(HOOK, remove_plugins=others)))
    return sorted(callers, key=lambda pair: pair[0])


def _records(plugin: str, result: Any, by: str | None) -> list[Kpi]:
    if not isinstance(result, (list, tuple)):
        raise KpiError(f"KPI plugin {plugin} returned {type(result).__name__}, not a list of Kpi")
    records = []
    for item in result:
        try:
            kpi = item if isinstance(item, Kpi) else Kpi(**item)
        except (TypeError, ValueError) as exc:
            raise KpiError(f"KPI plugin {plugin} returned a malformed KPI: {exc}") from None
        if not isinstance(kpi.name, str) or not kpi.name.strip():
            raise KpiError(f"KPI plugin {plugin} returned a KPI without a name")
        if kpi.group is not None and not isinstance(kpi.group, str):
            raise KpiError(f"KPI plugin {plugin} returned {kpi.name} with a group that is no text")
        if kpi.group is not None and by is None:
            raise KpiError(
                f"KPI plugin {plugin} returned {kpi.name} for group {kpi.group!r} "
                "though no breakdown was asked for"
            )
        records.append(attrs.evolve(kpi, plugin=plugin, suppressed=False))
    return records


def _refuse_duplicates(records: list[Kpi]) -> None:
    seen: dict[tuple[str, str | None], str | None] = {}
    for kpi in records:
        key = (kpi.name, kpi.group)
        if key in seen:
            first = seen[key]
            if first == kpi.plugin:
                raise KpiError(f"KPI plugin {first} reported {kpi.name} twice")
            raise KpiError(f"KPI {kpi.name} is reported by both {first} and {kpi.plugin}")
        seen[key] = kpi.plugin


def _suppress_small(kpi: Kpi, sizes: dict[str, int]) -> Kpi:
    if kpi.group is None or sizes.get(kpi.group, 0) >= MIN_GROUP_SIZE:
        return kpi
    return attrs.evolve(kpi, value=None, suppressed=True)
