"""Email notifications delivered from the log (the built-in ``rmcore_on_event`` plugin).

``rmcore notify`` hands this plugin each new event of a program once (from the plugin's
own delivery checkpoint, never again after a replay). For the events that call for a
message it renders the templates and records the finished message in its outbox table,
in the same transaction that moves the checkpoint: a message is built exactly once.
At the end of the run (the closing call, ``event=None``) it adds the nudges that are
due, then sends every message not yet accepted by the SMTP server, one recipient per
message, marking each one sent only after the server accepted it. A message that the
server refuses, or that could not be tried because the server was down, stays in the
outbox and is tried again on the next run; the run reports it and exits 1.

See docs/notifications.md for the settings, the templates and the guarantees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from rmcore.hookspecs import hookimpl

if TYPE_CHECKING:
    import sqlite3

    from rmcore.delivery import DeliveryRun
    from rmcore.store import StoredEvent


@hookimpl
def rmcore_on_event(
    event: Any,
    envelope: StoredEvent | None,
    program: str,
    config: dict[str, Any],
    conn: sqlite3.Connection,
    run: DeliveryRun,
) -> None:
    """Queue the messages an event calls for; on the closing call, add nudges and send.

    Before a run delivers anything (``run.checking``) it checks the settings, the
    templates and the SMTP URL and login, so that a mistake there changes nothing.
    """
    from .notifier import on_event  # the mail machinery loads only when there is mail

    on_event(event, envelope, program, config, conn, run)


# What rmcore.delivery.checks_settings does, without importing delivery at start-up.
rmcore_on_event.rmcore_checks_settings = True  # type: ignore[attr-defined]


@hookimpl
def rmcore_register_commands(cli: click.Group) -> None:
    """Add ``rmcore email-templates FOLDER``: a copy of the built-in templates to edit."""

    @cli.command("email-templates")
    @click.argument("folder", type=click.Path(file_okay=False))
    @click.option("--overwrite", is_flag=True, help="Replace files that already exist.")
    def email_templates(folder: str, overwrite: bool) -> None:
        """Write the built-in email templates into FOLDER, to edit and use as template_dir."""
        from pathlib import Path

        from .templates import write_built_in

        if not folder.strip():
            raise click.BadParameter(
                "it is empty; name the folder to write the templates into", param_hint="FOLDER"
            )
        try:
            written = write_built_in(Path(folder), overwrite=overwrite)
        except OSError as exc:
            raise click.ClickException(f"cannot write {folder}: {exc.strerror or exc}") from None
        click.echo(f"Wrote {len(written)} template(s) to {folder}.")
        click.echo(f"Use them with: rmcore config set notify_email.template_dir {folder}")


@hookimpl
def rmcore_forget(conn: sqlite3.Connection, program: str, person_id: str, pair_ids: list[str]):
    """Delete the outbox's messages to and about a person being forgotten."""
    from .outbox import forget

    forget(conn, program, person_id, pair_ids)
