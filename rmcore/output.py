"""Writing listings as an aligned table, a JSON array or CSV, and new output files.

A command that writes a file (``export``, ``backup``, ``report``) writes it under a
temporary name in the target's folder and puts it in place only once it is complete, so
a failure or Ctrl-C midway leaves nothing behind and a rerun is not refused.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

import click

FORMATS = ("table", "json", "csv")


def format_option(func):
    """The ``--format table|json|csv`` option every listing command takes."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default=None,
        help="Output format (default: table on a terminal, json otherwise).",
    )(func)


def resolve_format(fmt: str | None, stream: IO[str] | None = None) -> str:
    """The explicit format, else table on a terminal and json in a pipe."""
    if fmt:
        return fmt
    stream = stream or sys.stdout
    return "table" if stream.isatty() else "json"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "; ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def write_rows(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[str],
    fmt: str | None,
    out: IO[str] | None = None,
    *,
    table_columns: Sequence[str] | None = None,
) -> int:
    """Write rows in the chosen format; JSON and CSV stream, a table is aligned. Returns count.

    ``table_columns`` narrows what a terminal table shows; JSON and CSV keep every column.
    """
    out = out or sys.stdout
    fmt = resolve_format(fmt, out)
    if fmt == "table" and table_columns:
        columns = table_columns
    count = 0
    if fmt == "json":
        out.write("[")
        for row in rows:
            out.write(",\n " if count else "\n ")
            out.write(
                json.dumps({c: row.get(c) for c in columns}, ensure_ascii=False, default=_not_text)
            )
            count += 1
        out.write("\n]\n" if count else "]\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(row.get(c)) for c in columns])
            count += 1
    else:
        table = [[_cell(row.get(c)) for c in columns] for row in rows]
        count = len(table)
        widths = [max([len(c)] + [len(r[i]) for r in table]) for i, c in enumerate(columns)]
        out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip() + "\n")
        out.write("  ".join("-" * w for w in widths) + "\n")
        for r in table:
            out.write("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")
    return count


def _not_text(value: Any) -> NoReturn:
    """Bytes met by JSON output (only a file changed outside rmcore holds them); any other
    value JSON cannot hold is a bug, and stays Python's error."""
    if isinstance(value, bytes):
        raise click.ClickException(
            "a value to print is bytes, not text: the file was changed outside rmcore;"
            " `rmcore verify --deep` checks the log and the read models"
        )
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def refuse(message: str) -> NoReturn:
    """Raise a refusal the CLI shows as ``Error: message`` (exit 1)."""
    from rmcore.commands import DomainError  # not at import: a bare start stays light

    raise DomainError(message)


def check_new_target(out: str | os.PathLike, exists_hint: str) -> Path:
    """``out`` as a path that names a file to create, or a refusal: empty, already there
    (``exists_hint`` says what to do), or in a folder that is missing or not a folder."""
    if not os.fspath(out):
        refuse("the output file name is empty; name a file to write")
    path = Path(out)
    if os.path.lexists(path):
        refuse(f"{out} already exists; {exists_hint}")
    folder = path.parent
    if not folder.is_dir():
        reason = "No such file or directory" if not os.path.lexists(folder) else "Not a directory"
        refuse(f"cannot create {out}: {reason}")
    return path


def scratch_name(out: Path) -> Path:
    """A fresh temporary name in ``out``'s folder for the file that becomes ``out``."""
    return out.with_name(f".{out.name}.{os.urandom(4).hex()}.tmp")


def scratch_file(out: Path, mode: int = 0o600) -> tuple[int, Path]:
    """Create a new empty temporary file (``mode``) next to ``out``: (descriptor, path)."""
    while True:
        scratch = scratch_name(out)
        try:
            return os.open(scratch, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode), scratch
        except FileExistsError:
            continue
        except OSError as exc:
            refuse(f"cannot create {out}: {exc.strerror}")


def remove_scratch(scratch: Path) -> None:
    """Remove a temporary file and any SQLite side files it has; missing ones are fine."""
    for path in (scratch, Path(f"{scratch}-wal"), Path(f"{scratch}-shm"),
                 Path(f"{scratch}-journal")):  # fmt: skip
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def publish(scratch: Path, out: Path, exists_hint: str) -> None:
    """Give the complete ``scratch`` its final name ``out``, never replacing a file there
    (refused with ``exists_hint``); ``scratch`` is gone afterwards either way."""
    try:
        try:
            os.link(scratch, out)
        except FileExistsError:
            refuse(f"{out} already exists; {exists_hint}")
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK,
                                 errno.ENOSYS):  # fmt: skip
                refuse(f"cannot create {out}: {exc.strerror}")
            # A file system without hard links: rename, after checking nothing is there.
            if os.path.lexists(out):
                refuse(f"{out} already exists; {exists_hint}")
            try:
                os.replace(scratch, out)
            except OSError as exc2:
                refuse(f"cannot create {out}: {exc2.strerror}")
    finally:
        remove_scratch(scratch)
