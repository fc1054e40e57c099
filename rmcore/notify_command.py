"""``rmcore notify``: deliver new events to every ``rmcore_on_event`` plugin and close the run.

The command is thin: it reads the options, calls :func:`rmcore.delivery.deliver` (or
:func:`rmcore.delivery.status`) for the selected program, prints what each plugin said,
and exits 1 naming the plugin and hook when anything failed. Options that only some
plugins use (``--smtp``, ``--outbox``) reach them as ``run.options``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from rmcore.options import progress_bar
from rmcore.output import format_option, write_rows

if TYPE_CHECKING:
    from rmcore import delivery

STATUS_COLUMNS = ("program", "plugin", "item", "pending", "sent", "failed", "detail")


@click.command()
@click.option(
    "--smtp",
    "smtp_url",
    envvar="RMCORE_SMTP_URL",
    metavar="URL",
    default=None,
    help="SMTP server: smtp://host[:port], smtp+starttls://host[:port] or smtps://host[:port]"
    " (env RMCORE_SMTP_URL). User and password: RMCORE_SMTP_USER, RMCORE_SMTP_PASSWORD.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Build what would be sent and show it; send nothing and change nothing.",
)
@click.option(
    "--outbox",
    metavar="DIR",
    type=click.Path(file_okay=False),
    default=None,
    help="With --dry-run: write each message as an .eml file into DIR.",
)
@click.option(
    "--from-now",
    is_flag=True,
    help="Plugins that never delivered in this program start after its last event"
    " (skip the history).",
)
@click.option(
    "--status",
    "show_status",
    is_flag=True,
    help="Show pending, sent and failed counts per plugin; change nothing.",
)
@click.option("--all-programs", is_flag=True, help="Every program in the database, one by one.")
@format_option
@click.pass_obj
def notify(
    app,
    smtp_url: str | None,
    dry_run: bool,
    outbox: str | None,
    from_now: bool,
    show_status: bool,
    all_programs: bool,
    fmt: str | None,
) -> None:
    """Deliver pending notifications: new events to each plugin, then what they queued.

    Each plugin has its own checkpoint per program, so a message goes out at least once
    and `rmcore replay` never sends it again. Exit 1 if any plugin failed; the next run
    retries only what was not done.
    """
    from rmcore import delivery, queries

    if outbox and not dry_run:
        raise click.UsageError("--outbox only goes with --dry-run")
    if show_status and (dry_run or from_now):
        raise click.UsageError("--status shows counts; it does not go with --dry-run or --from-now")
    engine = app.engine()
    programs = (
        [row["program"] for row in queries.programs(engine.conn)] if all_programs else [app.program]
    )
    options = {"smtp_url": smtp_url, "outbox": outbox}
    if show_status:
        rows = []
        failed = False
        for program in programs:
            report = delivery.status(engine, program, options=options)
            rows.extend(report.counts)
            failed = _print_failures(report, all_programs) or failed
        write_rows(rows, STATUS_COLUMNS, fmt)
        if failed:
            click.get_current_context().exit(1)
        return
    failed = False
    for program in programs:
        report = _deliver(engine, program, dry_run, from_now, options)
        _print_report(report, all_programs)
        failed = _print_failures(report, all_programs) or failed
    if dry_run:
        click.echo("Dry run: nothing was sent and nothing was recorded.")
    if failed:
        click.get_current_context().exit(1)


def _deliver(engine, program: str, dry_run: bool, from_now: bool, options: dict):
    from rmcore import delivery

    with progress_bar("Delivering", delivery.pending_events(engine, program)) as bar:
        return delivery.deliver(
            engine,
            program,
            dry_run=dry_run,
            from_now=from_now,
            options=options,
            progress=bar.update,
        )


def _prefix(report: delivery.DeliveryReport, plugin: str, all_programs: bool) -> str:
    return f"[{report.program}] {plugin}" if all_programs else plugin


def _print_report(report: delivery.DeliveryReport, all_programs: bool) -> None:
    """One line per plugin: events delivered and where it started; then its notes."""
    if report.refused:
        where = f" in program {report.program}" if all_programs else ""
        click.echo(f"Nothing was delivered{where} and no checkpoint moved: a plugin refused"
                   " the run's settings, as follows.", err=True)  # fmt: skip
        return
    if not report.results:
        click.echo("No installed plugin receives events (rmcore_on_event).")
    for result in report.results:
        name = _prefix(report, result.plugin, all_programs)
        started = ""
        if result.started == "beginning":
            started = " (first delivery in this program: from the beginning of the log)"
        elif result.started == "now":
            started = " (first delivery in this program: history skipped)"
        click.echo(
            f"{name}: {result.delivered} new event(s) delivered, checkpoint at position "
            f"{result.checkpoint}{started}"
        )
    for plugin, text in report.notes:
        click.echo(f"{_prefix(report, plugin, all_programs)}: {text}")


def _print_failures(report: delivery.DeliveryReport, all_programs: bool) -> bool:
    """Each failure on stderr as ``Error: PLUGIN: ...``; True if there was one."""
    failures = report.failures()
    for plugin, text in failures:
        click.echo(f"Error: {_prefix(report, plugin, all_programs)}: {text}", err=True)
    return bool(failures)
