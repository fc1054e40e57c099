"""``rmcore match``: propose pairs with the installed matching strategy, optionally record them."""

from __future__ import annotations

import click


@click.command()
def match() -> None:
    """Propose pairs for the unpaired participants (dry run unless --apply)."""
    raise click.ClickException("matching is not available yet")
