"""``rmcore kpi`` and ``rmcore report``: program KPIs from every KPI plugin."""

from __future__ import annotations

import click


@click.command()
def kpi() -> None:
    """Show the program's KPIs from every installed KPI plugin."""
    raise click.ClickException("KPIs are not available yet")


@click.command()
def report() -> None:
    """Write a self-contained HTML report of the program's KPIs."""
    raise click.ClickException("reports are not available yet")
