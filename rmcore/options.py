"""Options and terminal helpers shared by the command modules (no CLI imports here)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click


def idempotency_option(func: Callable) -> Callable:
    """``--idempotency-key``: a retry with the same key appends nothing."""
    return click.option(
        "--idempotency-key",
        default=None,
        help="A key for this command; a retry with the same key appends nothing and exits 0.",
    )(func)


def at_option(func: Callable) -> Callable:
    """``--at DATE``: when it happened (ISO 8601); default now."""
    return click.option(
        "--at", "at", default=None, metavar="DATE", help="When it happened (ISO 8601); default now."
    )(func)


class Silent:
    """Stands in for a progress bar when stderr is not a terminal."""

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def update(self, steps: int) -> None:
        """Ignore progress."""


def progress_bar(label: str, length: int):
    """A progress bar on stderr when it is a terminal; silent in scripts and pipes."""
    if not sys.stderr.isatty():
        return Silent()
    return click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True)


def count_lines(path: str) -> int:
    """Lines in the file, for a progress bar (0 if it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return 0
