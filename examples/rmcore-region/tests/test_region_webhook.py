"""The ``region_webhook`` plugin through ``rmcore notify``, posting to a real HTTP server."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

# notify_email, installed with rmcore, would stop at its first message without a sender.
NOTIFY = ("--disable-plugin", "notify_email", "notify")


class Receiver(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 that keeps every JSON body posted to it."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.bodies: list[dict] = []
        self.content_types: list[str] = []
        self.status = 204  # what it answers; set 500 to make posts fail

    @property
    def url(self) -> str:
        """Where to post, with a path that stands for a secret token."""
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/s3cr3t"


class Handler(BaseHTTPRequestHandler):
    """Records the body when the server's status is a success, then answers with it."""

    server: Receiver

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers["Content-Length"]))
        if self.server.status < 300:
            self.server.bodies.append(json.loads(data))
            self.server.content_types.append(self.headers["Content-Type"])
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args) -> None:
        """Quiet."""


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A running receiver; proxies are switched off so that posts reach it directly."""
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                     "ALL_PROXY", "RMCORE_WEBHOOK_URL"):  # fmt: skip
        monkeypatch.delenv(variable, raising=False)
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def outbox(db) -> list[tuple]:
    """The plugin's table, read straight from the file; [] when it was never created."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT position, sent_at IS NOT NULL, attempts, error FROM region_webhook_outbox"
            " ORDER BY position"
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def test_without_a_url_nothing_is_posted_or_stored(tutorial, receiver, db):
    result = tutorial(*NOTIFY)
    assert result.exit_code == 0, result.output
    assert "region_webhook: 4 new event(s) delivered" in result.stdout
    assert receiver.bodies == []
    assert outbox(db) == []


def test_each_event_is_posted_once_in_log_order_without_personal_data(
    tutorial, receiver, db, monkeypatch
):
    monkeypatch.setenv("RMCORE_WEBHOOK_URL", receiver.url)
    result = tutorial(*NOTIFY)
    assert result.exit_code == 0, result.output
    assert "region_webhook: posted 4 event(s) to http://127.0.0.1:" in result.stdout
    assert "s3cr3t" not in result.output  # the path of the URL is never printed
    assert [b["position"] for b in receiver.bodies] == [1, 2, 3, 4]
    first = receiver.bodies[0]
    assert first["type"] == "joined" and first["program"] == "default"
    assert first["stream"] == "person:ada" and first["occurred_at"] == "2026-01-05T00:00:00Z"
    assert first["data"]["skills_offered"] == ["AI tools", "prompting"]
    assert not {"name", "email"} & set(first["data"])
    assert len({b["event_id"] for b in receiver.bodies}) == 4
    assert set(receiver.content_types) == {"application/json"}

    assert tutorial("replay").exit_code == 0
    assert tutorial(*NOTIFY).exit_code == 0
    assert len(receiver.bodies) == 4  # a replay never posts anything again
    tutorial("pair", "ada", "hugo", "--at", "2026-01-12")
    assert tutorial(*NOTIFY).exit_code == 0
    assert [b["type"] for b in receiver.bodies[4:]] == ["paired"]
    assert receiver.bodies[4]["data"]["mentor_id"] == "ada"


def test_a_failed_post_stays_queued_and_is_sent_in_order_by_the_next_run(
    tutorial, receiver, db, monkeypatch
):
    tutorial("config", "set", "webhook.url", receiver.url)
    receiver.status = 500
    failed = tutorial(*NOTIFY)
    assert failed.exit_code == 1
    assert "Error: region_webhook: could not post position 1 to http://127.0.0.1:" in failed.stderr
    assert "HTTP Error 500" in failed.stderr and "5 event(s) stay queued" in failed.stderr
    assert "Traceback" not in failed.output
    assert [row[:3] for row in outbox(db)] == [(1, 0, 1)] + [(p, 0, 0) for p in range(2, 6)]
    status = json.loads(tutorial(*NOTIFY, "--status", "--format", "json").stdout)
    [posts] = [row for row in status if row["item"] == "posts"]
    assert (posts["pending"], posts["sent"], posts["failed"]) == (5, 0, 1)

    receiver.status = 200
    again = tutorial(*NOTIFY)
    assert again.exit_code == 0, again.output
    assert [b["position"] for b in receiver.bodies] == [1, 2, 3, 4, 5]
    assert [b["type"] for b in receiver.bodies] == ["joined"] * 4 + ["configured"]
    assert all(sent and error is None for _, sent, _, error in outbox(db))


def test_an_unreachable_server_is_reported_by_plugin_name(tutorial, monkeypatch):
    monkeypatch.setenv("RMCORE_WEBHOOK_URL", "http://127.0.0.1:9/nowhere")
    failed = tutorial(*NOTIFY)
    assert failed.exit_code == 1
    assert "Error: region_webhook: could not post position 1 to http://127.0.0.1:9" in (
        failed.stderr
    )


def test_webhook_events_limits_what_is_posted(tutorial, receiver, monkeypatch):
    monkeypatch.setenv("RMCORE_WEBHOOK_URL", receiver.url)
    tutorial("config", "set", "webhook.events", '["paired", "pair_ended"]')
    tutorial("pair", "ada", "hugo", "--at", "2026-01-12")
    assert tutorial(*NOTIFY).exit_code == 0
    assert [b["type"] for b in receiver.bodies] == ["paired"]


def test_a_dry_run_posts_nothing_and_a_real_run_afterwards_posts_everything(
    tutorial, receiver, db, monkeypatch
):
    monkeypatch.setenv("RMCORE_WEBHOOK_URL", receiver.url)
    dry = tutorial(*NOTIFY, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "region_webhook: 4 event(s) would be posted to http://127.0.0.1:" in dry.stdout
    assert receiver.bodies == [] and outbox(db) == []
    assert tutorial(*NOTIFY).exit_code == 0
    assert len(receiver.bodies) == 4


def test_a_url_that_is_not_http_stops_delivery_naming_the_plugin_and_hook(tutorial, monkeypatch):
    monkeypatch.setenv("RMCORE_WEBHOOK_URL", "ftp://example.org/drop")
    failed = tutorial(*NOTIFY)
    assert failed.exit_code == 1
    assert (
        "Error: region_webhook: rmcore_on_event at position 1 (joined): "
        "the webhook URL must start with http:// or https://"
    ) in failed.stderr


def test_status_reads_only_even_before_the_first_post(tutorial, receiver, db, monkeypatch):
    """--status may run on a file this user cannot write: it creates no table."""
    monkeypatch.setenv("RMCORE_WEBHOOK_URL", receiver.url)
    status = tutorial("notify", "--status", "--format", "json")
    assert status.exit_code == 0, status.output
    posts = next(row for row in json.loads(status.stdout) if row["item"] == "posts")
    assert (posts["pending"], posts["sent"], posts["failed"]) == (0, 0, 0)
    conn = sqlite3.connect(db)
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert "region_webhook_outbox" not in tables
    assert tutorial(*NOTIFY).exit_code == 0
    again = tutorial("notify", "--status", "--format", "json")
    posts = next(row for row in json.loads(again.stdout) if row["item"] == "posts")
    assert (posts["pending"], posts["sent"]) == (0, 4)
