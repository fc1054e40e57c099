"""``rmcore import FILE``: people from an HR export, all rows or none."""

from __future__ import annotations

import click

from rmcore.options import Silent, at_option, count_lines, idempotency_option, progress_bar


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
    bar_context = Silent() if quiet else progress_bar("Importing", count_lines(file))
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
    if not quiet:
        click.echo(
            f"Imported {result.rows} rows: {result.joined} joined, {result.updated} updated, "
            f"{result.unchanged} unchanged, {result.left} left ({result.events} events)."
        )
