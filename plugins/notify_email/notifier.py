"""Queueing, previewing and sending the messages of one delivery run."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rmcore.delivery import DeliveryError, DeliveryRun
from rmcore.store import StoredEvent

from . import compose, outbox
from .message import address_problem, build, mailbox, message_id, one_line
from .settings import Settings, load_settings
from .smtp import (
    CONNECTION_ERRORS,
    MESSAGE_ERRORS,
    Mailer,
    check_setup,
    credentials,
    error_text,
    parse_url,
)
from .templates import Templates

EVENT_TYPES = frozenset({"joined", "paired", "session_held", "pair_ended"})
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._@+-]")


def on_event(
    event: Any,
    envelope: StoredEvent | None,
    program: str,
    config: dict[str, Any],
    conn: sqlite3.Connection,
    run: DeliveryRun,
) -> None:
    """Queue the messages an event calls for; on the closing call, add nudges and send."""
    if event is None:
        if getattr(run, "checking", False):
            check(program, config, run)
        else:
            close(conn, program, config, run)
        return
    if envelope is None or envelope.type not in EVENT_TYPES:
        return
    settings, templates = prepared(run, config, program)
    outbox.ensure_table(conn)
    for draft in compose.for_event(conn, program, event, envelope, settings, run.now):
        record(conn, program, draft, settings, templates, run)


def prepared(run: DeliveryRun, config: dict[str, Any], program: str) -> tuple[Settings, Templates]:
    """The program's settings and templates, loaded once per run."""
    memo = run.memo
    if "settings" not in memo:
        settings = load_settings(config, program)
        memo["templates"] = Templates.load(settings.template_dir)
        memo["settings"] = settings
    return memo["settings"], memo["templates"]


def record(
    conn: sqlite3.Connection,
    program: str,
    draft: compose.Draft,
    settings: Settings,
    templates: Templates,
    run: DeliveryRun,
) -> None:
    """Render a draft and put it in the outbox once; an invalid address is reported."""
    if outbox.exists(conn, program, draft.key):
        return
    sender = settings.require_sender()
    rendered = templates.render(draft.kind, draft.values)
    subject = one_line(rendered.subject)
    recipient = draft.person.email
    fields = {
        "key": draft.key,
        "kind": draft.kind,
        "position": draft.position,
        "person_id": draft.person.person_id,
        "sender": sender,
        "recipient": recipient,
        "subject": subject,
    }
    problem = address_problem(recipient)
    if problem:
        error = f"invalid address {recipient!r}: {problem}"
        outbox.enqueue(conn, program, message=b"", error=error, **fields)
        run.fail(f"{draft.kind} for {draft.person.person_id} not sent: {error}")
        return
    data = build(
        sender=mailbox(settings.sender_name, sender),
        recipient=mailbox(compose.display_name(draft.person), recipient),
        subject=subject,
        text=rendered.text,
        html=rendered.html,
        msgid=message_id(program, draft.key, sender),
        date=datetime.now(timezone.utc),
        calendar=draft.calendar,
    )
    outbox.enqueue(conn, program, message=data, **fields)


def check(program: str, config: dict[str, Any], run: DeliveryRun) -> None:
    """Before anything is delivered: the settings, the templates and, for a real run, the
    SMTP URL and login must be usable, or the run is refused (a DeliveryError says why).

    A missing sender is not refused here: a program may have nothing to send yet; the
    first message to build says how to set one.
    """
    prepared(run, config, program)
    if not run.dry_run:
        check_setup(run.options.get("smtp_url"))


def close(conn: sqlite3.Connection, program: str, config: dict[str, Any], run: DeliveryRun) -> None:
    """The end of a run: count for ``--status``, else add due nudges and send the outbox."""
    if run.status_only:
        report_status(conn, program, config, run)  # writes nothing: works on read-only files
        return
    with run.transaction():
        outbox.ensure_table(conn)
    settings, templates = prepared(run, config, program)
    with run.transaction():
        for draft in compose.nudges(conn, program, settings, run.now):
            record(conn, program, draft, settings, templates, run)
    if run.dry_run:
        preview(conn, program, run)
    else:
        send(conn, program, settings, run)


def report_status(
    conn: sqlite3.Connection, program: str, config: dict[str, Any], run: DeliveryRun
) -> None:
    """The ``messages`` row of ``rmcore notify --status``; reads only."""
    ready = outbox.has_table(conn)  # none before the first run: nothing recorded yet
    counts = outbox.counts(conn, program) if ready else {}
    due_nudges = 0
    try:
        settings = load_settings(config, program)
    except DeliveryError as exc:
        run.fail(str(exc))
    else:
        due_nudges = sum(
            1
            for draft in compose.nudges(conn, program, settings, run.now)
            if not (ready and outbox.exists(conn, program, draft.key))
        )
    retry, gave_up = counts.get("failed", 0), counts.get("undeliverable", 0)
    detail = []
    if due_nudges:
        detail.append(f"{due_nudges} nudge(s) due")
    if retry:
        detail.append(f"{retry} to retry")
    if gave_up:
        detail.append(f"{gave_up} undeliverable")
    problems = outbox.problems(conn, program, limit=1) if ready else []
    if problems:
        detail.append(f"last error: {problems[0][0]!r}: {problems[0][1]}")
    run.count(
        "messages",
        pending=counts.get("pending", 0) + counts.get("sending", 0) + due_nudges,
        sent=counts.get("sent", 0),
        failed=retry + gave_up,
        detail="; ".join(detail),
    )


def preview(conn: sqlite3.Connection, program: str, run: DeliveryRun) -> None:
    """A dry run: write each waiting message as an .eml file, or list it."""
    folder = run.options.get("outbox")
    written = 0
    for row in outbox.due(conn, program):
        if folder:
            path = Path(folder)
            path.mkdir(parents=True, exist_ok=True)
            (path / f"{_UNSAFE_FILE_CHARS.sub('_', row.key)}.eml").write_bytes(row.message)
            written += 1
        else:
            run.say(f"would send {row.kind} to {row.recipient}: {row.subject}")
    if folder:
        run.say(f"wrote {written} message(s) to {folder}")


def send(conn: sqlite3.Connection, program: str, settings: Settings, run: DeliveryRun) -> None:
    """Send every waiting message; each is marked sent only once the server accepted it."""
    counts = outbox.counts(conn, program)
    waiting = sum(counts.get(status, 0) for status in ("pending", "failed", "sending"))
    if not waiting:
        return
    url = run.options.get("smtp_url")
    if not url:
        raise DeliveryError(
            f"{waiting} message(s) waiting and no SMTP server: give --smtp URL or set "
            "RMCORE_SMTP_URL (or preview them with --dry-run --outbox DIR)"
        )
    target = parse_url(url)
    mailer = Mailer(target, credentials())
    try:
        mailer.open()
    except DeliveryError as exc:
        raise DeliveryError(f"{exc}; {waiting} message(s) stay queued for the next run") from None
    sent, refused, lost, after = 0, [], None, 0
    try:
        while True:
            with run.transaction():
                row = outbox.next_due(conn, program, after)
                claimed = row is not None and outbox.claim(conn, row)
            if row is None:
                break
            after = row.id
            if not claimed:
                continue  # another run took it
            try:
                mailer.send(row.sender, row.recipient, row.message)
            except MESSAGE_ERRORS as exc:
                with run.transaction():
                    status = outbox.mark_failed(conn, row, error_text(exc), settings.max_attempts)
                note = " (given up)" if status == "undeliverable" else ""
                refused.append(f"{row.kind} to {row.recipient}: {error_text(exc)}{note}")
                continue
            except CONNECTION_ERRORS as exc:
                with run.transaction():
                    outbox.mark_failed(conn, row, error_text(exc), settings.max_attempts)
                lost = error_text(exc)
                break
            with run.transaction():
                outbox.mark_sent(conn, row)
            sent += 1
    finally:
        mailer.close()
    run.say(f"sent {sent} message(s) through {target}")
    problems = []
    if refused:
        shown = "; ".join(refused[:5]) + (
            f"; and {len(refused) - 5} more" if len(refused) > 5 else ""
        )
        problems.append(f"{len(refused)} message(s) not accepted ({shown})")
    if lost is not None:
        left = sum(outbox.counts(conn, program).get(s, 0) for s in ("pending", "failed"))
        problems.append(f"lost the connection to {target} ({lost}); {left} message(s) queued")
    if problems:
        raise DeliveryError("; ".join(problems) + "; they are tried again on the next run")
