"""``rmcore import FILE``: people from an HR export, all rows or none."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from rmcore.options import Silent, at_option, idempotency_option, progress_bar


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--ignore-extra", is_flag=True, help="Skip columns rmcore does not know.")
@click.option(
    "--leave-missing",
    is_flag=True,
    help="Active people absent from the file leave the program (see --dry-run first).",
)
@click.option(
    "--dry-run", is_flag=True, help="Check the file and say what it would record; append nothing."
)
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@at_option
@idempotency_option
@click.pass_obj
def import_command(app, file, ignore_extra, leave_missing, dry_run, quiet, at, idempotency_key):
    """Import people from an HR export, CSV or JSON lines (- reads stdin): all rows or none."""
    from rmcore.importer import ImportRefused, import_people

    engine = app.engine()
    with _readable(file) as path:
        bar_context = Silent() if quiet else _progress(path)
        with bar_context as bar:
            try:
                result = import_people(
                    engine,
                    app.program,
                    path,
                    actor=app.actor,
                    at=at,
                    ignore_extra=ignore_extra,
                    leave_missing=leave_missing,
                    idempotency_key=idempotency_key,
                    progress=bar.update,
                    dry_run=dry_run,
                )
            except ImportRefused as exc:
                raise click.ClickException(str(exc)) from None
    if quiet:
        return
    if result.duplicate:
        where = f" at position {result.first_position}" if result.first_position else ""
        click.echo(f"Already recorded{where} (same idempotency key); nothing appended.")
    else:
        counts = (
            f"{result.joined} joined, {result.updated} updated, {result.unchanged} unchanged, "
            f"{result.left} left ({result.events} events)"
        )
        if result.dry_run:
            click.echo(f"Checked {result.rows} rows; importing would record {counts}.")
            if result.leavers:
                more = result.left - len(result.leavers)
                click.echo(
                    f"Would leave: {', '.join(result.leavers)}"
                    + (f" and {more} more." if more else ".")
                )
            click.echo("Dry run: nothing was appended.")
        else:
            click.echo(f"Imported {result.rows} rows: {counts}.")
        if result.had_left:
            click.echo(
                f"{result.had_left} row(s) for people no longer in the program (left or "
                "forgotten): nothing recorded."
            )


@contextmanager
def _readable(file: str) -> Iterator[str]:
    """The file to import. Standard input (``-``) and a pipe given by name (``/dev/stdin``
    in a pipeline, a shell's ``<(...)``) are copied to a temporary file that only this
    user can read, removed at the end: the import reads its file more than once."""
    if file != "-":
        try:
            is_pipe = stat.S_ISFIFO(os.stat(file).st_mode)
        except OSError:
            is_pipe = False  # the import itself says what is wrong with the path
        if not is_pipe:
            yield file
            return
    with tempfile.TemporaryDirectory(prefix="rmcore-import-") as folder:
        path = Path(folder) / ("stdin" if file == "-" else Path(file).name)
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with open(descriptor, "wb") as out:
            if file == "-":
                shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
            else:
                with open(file, "rb") as source:
                    shutil.copyfileobj(source, out, 1 << 20)
        yield str(path)


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
