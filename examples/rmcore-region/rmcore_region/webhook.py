"""The ``region_webhook`` plugin: post each new event as JSON to a webhook URL.

Nothing happens until a URL is set: ``RMCORE_WEBHOOK_URL`` or the ``webhook.url``
setting. Events are queued in the plugin's own table while they are delivered, and
posted in log order at the end of ``rmcore notify``; a post that fails stays queued for
the next run. Each body carries ``event_id``, so a receiver can drop a repeat.

Every ``rmcore`` command, ``--help`` included, imports every installed plugin before it
starts, so this module imports what it needs for posting only where it posts.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rmcore import hookimpl

if TYPE_CHECKING:
    import sqlite3

URL_VARIABLE = "RMCORE_WEBHOOK_URL"
# Never posted, so nothing is left to erase downstream: the fields docs/security.md
# calls personal (names, emails, comments, reasons for leaving or ending a pair).
PERSONAL = {"name", "email", "comment", "reason"}
OUTBOX = """
    CREATE TABLE IF NOT EXISTS region_webhook_outbox (
        program TEXT NOT NULL,
        position INTEGER NOT NULL,
        body TEXT NOT NULL,
        sent_at TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        PRIMARY KEY (program, position)
    )"""


def webhook_url(config: Mapping[str, Any]) -> str | None:
    """Where to post: ``RMCORE_WEBHOOK_URL``, else ``webhook.url``; None turns posting off."""
    url = os.environ.get(URL_VARIABLE) or config.get("webhook.url")
    if url and urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        from rmcore.delivery import DeliveryError  # shown to the operator as it is

        raise DeliveryError("the webhook URL must start with http:// or https://")
    return url or None


def where(url: str) -> str:
    """The URL without its path, which may hold a token: safe to print."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def scrub(value: Any) -> Any:
    """The value with every personal field left out, however deep."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in PERSONAL}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def body(event: Any, envelope: Any) -> str:
    """The JSON posted for one event: its envelope and its payload, without personal data."""
    from attrs import asdict

    return json.dumps(
        {
            "event_id": envelope.event_id,
            "program": envelope.program,
            "position": envelope.position,
            "type": envelope.type,
            "stream": envelope.stream,
            "occurred_at": envelope.occurred_at,
            "data": scrub(asdict(event)),
        },
        sort_keys=True,
    )


@hookimpl
def rmcore_on_event(event, envelope, program, config, conn, run) -> None:
    """Queue each new event; on the closing call (event None), post what is queued."""
    url = webhook_url(config)
    if url is None:
        return  # posting is off: events pass by
    if event is None:
        post_queued(conn, program, url, run)
        return
    wanted = config.get("webhook.events")
    if wanted and envelope.type not in wanted:
        return
    conn.execute(OUTBOX)
    conn.execute(
        "INSERT OR IGNORE INTO region_webhook_outbox (program, position, body) VALUES (?, ?, ?)",
        (program, envelope.position, body(event, envelope)),
    )


def post_queued(conn: sqlite3.Connection, program: str, url: str, run: Any) -> None:
    """Post the program's queued events in log order; stop at the first failure."""
    import http.client
    import urllib.request

    if run.status_only:  # reads only: --status may run on a file it cannot write
        has_outbox = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'region_webhook_outbox'"
        ).fetchone()
        pending, sent, failed = (
            conn.execute(
                "SELECT count(*) - count(sent_at), count(sent_at), count(error)"
                " FROM region_webhook_outbox WHERE program = ?",
                (program,),
            ).fetchone()
            if has_outbox
            else (0, 0, 0)
        )
        run.count("posts", pending=pending, sent=sent, failed=failed, detail=where(url))
        return
    with run.transaction():
        conn.execute(OUTBOX)
    queued = conn.execute(
        "SELECT position, body FROM region_webhook_outbox"
        " WHERE program = ? AND sent_at IS NULL ORDER BY position",
        (program,),
    ).fetchall()
    if run.dry_run:
        run.say(f"{len(queued)} event(s) would be posted to {where(url)}")
        return
    for done, (position, text) in enumerate(queued):
        request = urllib.request.Request(
            url, data=text.encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except (OSError, http.client.HTTPException) as exc:  # refused, timed out, HTTP error
            with run.transaction():
                conn.execute(
                    "UPDATE region_webhook_outbox SET attempts = attempts + 1, error = ?"
                    " WHERE program = ? AND position = ?",
                    (str(exc), program, position),
                )
            run.fail(
                f"could not post position {position} to {where(url)}: {exc}; "
                f"{len(queued) - done} event(s) stay queued"
            )
            return
        with run.transaction():
            conn.execute(
                "UPDATE region_webhook_outbox SET sent_at = ?, attempts = attempts + 1,"
                " error = NULL WHERE program = ? AND position = ?",
                (run.now, program, position),
            )
    if queued:
        run.say(f"posted {len(queued)} event(s) to {where(url)}")
