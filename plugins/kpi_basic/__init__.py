"""The standard program KPIs (the built-in ``rmcore_kpis`` plugin); see ``standard``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmcore.hookspecs import hookimpl

if TYPE_CHECKING:
    import sqlite3

    from rmcore.kpis import Kpi


@hookimpl
def rmcore_kpis(conn: sqlite3.Connection, program: str, as_of: str, by: str | None) -> list[Kpi]:
    """The standard program KPIs, program-wide or one set per group."""
    from .standard import standard_kpis  # loaded when KPIs are asked for, not at start-up

    return standard_kpis(conn, program, as_of, by)
