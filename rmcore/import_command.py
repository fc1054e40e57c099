"""``rmcore import FILE``: people from an HR export, all rows or none."""

from __future__ import annotations

import sys

import click

from rmcore.options import Silent, at_option, idempotency_option, progress_bar


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--ignore-extra", is_flag=True, help="Skip columns rmcore does not know.")
@click.option(
    "--leave-missing", is_flag=True, help="Active people absent from the file leave the program."
)
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@at_option
@idempotency_option
@click.pass_obj
def import_command(app, file, ignore_extra, leave_missing, quiet, at, idempotency_key):
    """Import people from an HR export (CSV or JSON lines): all rows or none."""
    from rmcore.importer import ImportRefused, import_people

    engine = app.engine()
    bar_context = Silent() if quiet else _progress(file)
    with bar_context as bar:
        try:
            result = import_people(
                engine,
                app.program,
                file,
                actor=app.actor,
                at=at,
                ignore_extra=ignore_extra,
                leave_missing=leave_missing,
                idempotency_key=idempotency_key,
                progress=bar.update,
            )
        except ImportRefused as exc:
            raise click.ClickException(str(exc)) from None
    if quiet:
        return
    if result.duplicate:
        where = f" at position {result.first_position}" if result.first_position else ""
        click.echo(f"Already recorded{where} (same idempotency key); nothing appended.")
    else:
        click.echo(
            f"Imported {result.rows} rows: {result.joined} joined, {result.updated} updated, "
            f"{result.unchanged} unchanged, {result.left} left ({result.events} events)."
        )
        if result.had_left:
            click.echo(
                f"{result.had_left} row(s) for people no longer in the program (left or "
                "forgotten): nothing recorded."
            )


def _progress(file: str):
    """A progress bar as long as the file's data rows, counted only when a terminal shows it."""
    if not sys.stderr.isatty():
        return Silent()
    from rmcore.importer import count_rows

    try:
        rows = count_rows(file)
    except OSError:
        rows = 0  # the import itself says what is wrong with the file
    return progress_bar("Importing", rows)
