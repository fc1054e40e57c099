"""``rmcore notify``: deliver pending notifications from the log."""

from __future__ import annotations

import click


@click.command()
def notify() -> None:
    """Deliver pending notifications (every rmcore_on_event plugin)."""
    raise click.ClickException("notifications are not available yet")
