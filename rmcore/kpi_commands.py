"""``rmcore kpi`` and ``rmcore report``: program KPIs from every KPI plugin."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rmcore.constants import GROUP_BY, MIN_GROUP_SIZE
from rmcore.output import format_option, resolve_format, write_rows
from rmcore.when import OCCURRED_FORMAT, end_of_day, parse_occurred, to_utc

if TYPE_CHECKING:
    from rmcore.kpis import Kpi
    from rmcore.queries import Snapshot

NOT_SET = "(not set)"
ALL = "(all)"


def resolve_as_of(text: str | None, snapshot: Snapshot | None = None) -> str:
    """``--as-of DATE``: the end of that day (a date-time is kept); no date means now, or in
    a point-in-time copy the copy's moment."""
    if text is not None:
        return end_of_day(text)
    if snapshot is not None:
        return to_utc(snapshot.moment).strftime(OCCURRED_FORMAT)
    return parse_occurred(None)


def kpi_row(record: Kpi, fmt: str) -> dict[str, Any]:
    """One KPI for output: JSON keeps null and a ``suppressed`` flag, text says "suppressed"."""
    row = record.as_row()
    if fmt != "json" and record.suppressed:
        row["value"] = "suppressed"
    if fmt == "table":
        if row["value"] is None:
            row["value"] = "n/a"
        if row["group"] == "":
            row["group"] = NOT_SET
        elif row["group"] is None:
            row["group"] = ALL
    return row


@click.command()
@click.option(
    "--as-of",
    "as_of",
    metavar="DATE",
    default=None,
    help="Count what had happened by the end of DATE (ISO 8601); default now.",
)
@click.option(
    "--by",
    type=click.Choice(tuple(GROUP_BY)),
    default=None,
    help=f"Break each KPI down; groups of fewer than {MIN_GROUP_SIZE} people are suppressed.",
)
@format_option
@click.pass_obj
def kpi(app, as_of: str | None, by: str | None, fmt: str | None) -> None:
    """Show the program's KPIs from every installed KPI plugin."""
    from rmcore.kpis import KpiError, collect_kpis

    moment = resolve_as_of(as_of, app.engine().snapshot)
    try:
        records = collect_kpis(app.engine(), app.program, moment, by)
    except KpiError as exc:
        raise click.ClickException(str(exc)) from None
    fmt = resolve_format(fmt)
    rows = [kpi_row(record, fmt) for record in records]
    if fmt == "table":
        click.echo(f"Program {app.program}, as of {moment}")
        if by:
            rows, columns = pivot(rows)
        else:
            columns = ("name", "value", "unit", "description")
    else:
        columns = ("name", "value", "unit", "description", "plugin")
        if by:
            columns = ("name", "group", "value", "suppressed", "unit", "description", "plugin")
    write_rows(rows, columns, fmt)


def pivot(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Grouped KPI rows as one line per KPI and one column per group, for a table."""

    def label(group: str) -> str:
        return f"{group} (group)" if group in ("name", "unit") else group

    groups = sorted({row["group"] for row in rows}, key=lambda g: (g == ALL, g == NOT_SET, g))
    lines: dict[str, dict[str, Any]] = {}
    for row in rows:
        line = lines.setdefault(row["name"], {"name": row["name"], "unit": row["unit"]})
        line[label(row["group"])] = row["value"]
    return list(lines.values()), ["name", *map(label, groups), "unit"]


@click.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="The HTML file to write (an existing file is replaced).",
)
@click.option(
    "--from",
    "start",
    metavar="DATE",
    default=None,
    help="First month of the trends (default: the program's first join).",
)
@click.option(
    "--to", "end", metavar="DATE", default=None, help="KPIs as of the end of DATE (default: now)."
)
@click.pass_obj
def report(app, out: str, start: str | None, end: str | None) -> None:
    """Write a self-contained HTML report of the program's KPIs."""
    import tempfile

    from rmcore.kpis import KpiError
    from rmcore.report import build_report

    if not out:
        raise click.BadParameter("is empty; name the HTML file to write", param_hint="--out")
    target = Path(out)
    if os.path.lexists(target) and not target.is_file():
        # A device, pipe or socket there is not a report to replace (``/dev/full`` was).
        raise click.ClickException(f"cannot write {out}: it is not a regular file")
    try:
        html = build_report(app.engine(), app.program, start=start, end=end)
    except KpiError as exc:
        raise click.ClickException(str(exc)) from None
    folder = target.parent if str(target.parent) else Path(".")
    try:
        fd, scratch = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=folder)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(html)
        os.chmod(scratch, 0o644)
        # An existing regular file is replaced whole, never half-written.
        os.replace(scratch, target)
    except BaseException as exc:
        Path(scratch).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise click.ClickException(f"cannot write {out}: {exc.strerror}") from None
        raise
    click.echo(f"Report for program {app.program} written to {out}")
