"""The notify_email plugin against a real SMTP server (aiosmtpd) listening on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner
from rmcore_plugins.notify_email.compose import skill_flows
from rmcore_plugins.notify_email.message import address_problem
from rmcore_plugins.notify_email.smtp import SmtpTarget, parse_url
from rmcore_plugins.notify_email.templates import NAMES, Templates

from rmcore.cli import cli
from rmcore.engine import Engine
from rmcore.events import Joined

ACTOR = "hr-ops"
SENDER = "hr@example.org"


class Received:
    """One message as the server got it: envelope and parsed content."""

    def __init__(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> None:
        """Keep the envelope and parse the bytes."""
        self.mail_from = mail_from
        self.rcpt_tos = rcpt_tos
        self.content = content
        self.message: EmailMessage = email.message_from_bytes(content, policy=email.policy.default)

    @property
    def to(self) -> str:
        """The single envelope recipient."""
        [recipient] = self.rcpt_tos
        return recipient

    @property
    def subject(self) -> str:
        """The Subject header."""
        return str(self.message["Subject"])

    def text(self) -> str:
        """The plain-text body."""
        return self.message.get_body(("plain",)).get_content()

    def html(self) -> str:
        """The HTML alternative."""
        return self.message.get_body(("html",)).get_content()


class Inbox:
    """An aiosmtpd handler that keeps every accepted message and can refuse recipients."""

    def __init__(self) -> None:
        """Start empty, refusing nobody."""
        self.received: list[Received] = []
        self.refuse: set[str] = set()
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        """Refuse the addresses in ``refuse`` with a permanent error."""
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        """Accept and keep the message."""
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          envelope.content))  # fmt: skip
        return "250 Message accepted for delivery"

    def take(self) -> list[Received]:
        """The messages received since the last call."""
        with self.lock:
            taken, self.received = self.received, []
        return taken


class Logins:
    """An aiosmtpd authenticator that accepts one user and remembers every attempt."""

    def __init__(self, user: str, password: str) -> None:
        """Accept only this user and password."""
        self.user, self.password = user, password
        self.attempts: list[tuple[str, str]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        """Check a LOGIN or PLAIN attempt."""
        assert isinstance(auth_data, LoginPassword)
        attempt = (auth_data.login.decode(), auth_data.password.decode())
        self.attempts.append(attempt)
        return AuthResult(success=attempt == (self.user, self.password), handled=False)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that a test can stop and start again on one port."""

    def __init__(self, logins: Logins | None = None) -> None:
        """Pick a port; not listening until ``start``."""
        self.port = free_port()
        self.inbox = Inbox()
        self.logins = logins
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        """The ``--smtp`` URL of this server."""
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen (again) on the same port."""
        options = {}
        if self.logins is not None:
            options = {
                "authenticator": self.logins,
                "auth_require_tls": False,
            }
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **options)
        self.controller.start()

    def stop(self) -> None:
        """Stop listening; connections are refused until ``start``."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A running SMTP server, stopped after the test."""
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def ok(result) -> str:
    """The stdout of a command that must have succeeded."""
    assert result.exit_code == 0, result.stderr or result.output
    return result.stdout


def days_ago(days: int) -> str:
    """An ISO date-time ``days`` days before now (UTC)."""
    moment = datetime.now(timezone.utc) - timedelta(days=days)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def notify(run_cli, smtp_server):
    """Run `rmcore notify` against the test server; extra arguments are appended."""

    def run(*args: str):
        """One notify run."""
        return run_cli("notify", "--smtp", smtp_server.url, *args)

    return run


@pytest.fixture
def program(run_cli) -> None:
    """A sender, a mentor and a mentee who joined today."""
    ok(run_cli("config", "set", "notify_email.sender", SENDER))
    ok(run_cli("join", "ada", "--name", "Ada Lovelace", "--email", "ada@example.org",
               "--role", "mentor", "--department", "Engineering", "--timezone", "Europe/Berlin",
               "--offers", "AI tools,Prompt engineering", "--seeks", "Leadership,negotiation",
               "--goal", "lead a team"))  # fmt: skip
    ok(run_cli("join", "grace", "--name", "Grace Hopper", "--email", "grace@example.org",
               "--role", "mentee", "--department", "Operations",
               "--offers", "leadership,Judgement", "--seeks", "ai TOOLS"))  # fmt: skip


def by_recipient(messages: list[Received]) -> dict[str, list[Received]]:
    """Messages grouped by their envelope recipient."""
    grouped: dict[str, list[Received]] = {}
    for message in messages:
        grouped.setdefault(message.to, []).append(message)
    return grouped


def test_a_welcome_goes_to_each_person_who_joined(program, notify, smtp_server):
    """One welcome per person, from the configured sender, with their profile."""
    out = ok(notify())
    messages = smtp_server.inbox.take()
    assert sorted(m.to for m in messages) == ["ada@example.org", "grace@example.org"]
    ada = by_recipient(messages)["ada@example.org"][0]
    assert ada.mail_from == SENDER
    assert ada.subject == "Welcome to default, Ada Lovelace"
    assert str(ada.message["To"]) == "Ada Lovelace <ada@example.org>"
    assert "What you can share: AI tools, Prompt engineering" in ada.text()
    assert "<li>Your goals: lead a team</li>" in ada.html()
    assert ada.message["Auto-Submitted"] == "auto-generated"
    assert "sent 2 message(s)" in out


def test_pairing_introduces_mentor_and_mentee_to_each_other(program, run_cli, notify, smtp_server):
    """Each side hears who the partner is, the skills flowing both ways and the goals."""
    ok(notify())
    smtp_server.inbox.take()
    ok(run_cli("pair", "ada", "grace", "--goal", "use AI assistants every week"))
    ok(notify())
    messages = by_recipient(smtp_server.inbox.take())
    [to_ada] = messages["ada@example.org"]
    [to_grace] = messages["grace@example.org"]
    assert to_ada.subject == "default: meet Grace Hopper, your new partner"
    assert to_grace.subject == "default: meet Ada Lovelace, your new partner"
    ada_text = to_ada.text()
    assert "What you can share with Grace Hopper: AI tools" in ada_text
    assert "What Grace Hopper can share with you: leadership" in ada_text
    assert "Goals for the pair: use AI assistants every week" in ada_text
    assert "grace@example.org, Operations" in ada_text
    grace_text = to_grace.text()
    assert "What you can share with Ada Lovelace: leadership" in grace_text
    assert "What Ada Lovelace can share with you: AI tools" in grace_text
    assert "mailto:ada@example.org" in to_grace.html()
    for message in (to_ada, to_grace):
        [invite] = list(message.message.iter_attachments())
        assert invite.get_content_type() == "text/calendar"
        assert invite.get_filename() == "first-session.ics"
        calendar = invite.get_content()
        assert "BEGIN:VEVENT" in calendar and "UID:default.ada-grace.first-session@" in calendar
        start = datetime.strptime(calendar.split("DTSTART:")[1][:16], "%Y%m%dT%H%M%SZ")
        assert start.replace(tzinfo=timezone.utc) > datetime.now(timezone.utc)
        assert start.weekday() < 5
    # 10:00 in the mentor's time zone, shown to each in their own.
    assert " at 10:00 (Europe/Berlin time)" in ada_text
    assert " (UTC time)" in grace_text


def test_skills_each_way_come_from_matching_reasons_when_recorded():
    """A matched pair's reasons win; a hand-made pair gets the case-insensitive overlap."""
    from rmcore.model import Person

    mentor = Person(
        person_id="m",
        name="M",
        email="m@example.org",
        role="mentor",
        skills_offered=("AI tools", "Python"),
        skills_sought=("Leadership",),
    )
    mentee = Person(
        person_id="e",
        name="E",
        email="e@example.org",
        role="mentee",
        skills_offered=("leadership",),
        skills_sought=("python", "ai tools"),
    )
    assert skill_flows({}, mentor, mentee) == (("AI tools", "Python"), ("leadership",))
    reasons = {"mentor_to_mentee": ["python"], "mentee_to_mentor": [], "terms": {}}
    assert skill_flows(reasons, mentor, mentee) == (("Python",), ())


def test_a_session_brings_a_feedback_request_and_an_ending_a_closing_message(
    program, run_cli, notify, smtp_server
):
    """Both members are asked for feedback, and both hear when the pair ends."""
    ok(run_cli("pair", "ada", "grace"))
    ok(notify())
    smtp_server.inbox.take()
    ok(run_cli("session", "ada-grace", "--minutes", "45", "--topic", "prompting",
               "--mode", "in_person"))  # fmt: skip
    ok(notify())
    requests = smtp_server.inbox.take()
    assert sorted(m.to for m in requests) == ["ada@example.org", "grace@example.org"]
    to_grace = by_recipient(requests)["grace@example.org"][0]
    assert to_grace.subject == "How did your session with Ada Lovelace go?"
    assert "45 minutes, in person" in to_grace.text() and "topics: prompting" in to_grace.text()
    ok(run_cli("end-pair", "ada-grace", "--reason", "goals reached"))
    ok(notify())
    closing = smtp_server.inbox.take()
    assert sorted(m.to for m in closing) == ["ada@example.org", "grace@example.org"]
    to_ada = by_recipient(closing)["ada@example.org"][0]
    assert to_ada.subject == "Your pairing with Grace Hopper has ended"
    assert "(goals reached)" in to_ada.text() and "1 session, 0.8 hours" in to_ada.text()


def test_nobody_who_has_left_gets_a_message(program, run_cli, notify, smtp_server):
    """A person who left before delivery gets no welcome; the partner still hears the end."""
    ok(run_cli("pair", "ada", "grace"))
    ok(run_cli("leave", "grace", "--reason", "retired"))
    ok(notify())
    messages = smtp_server.inbox.take()
    assert [m.to for m in messages if m.to == "grace@example.org"] == []
    kinds = sorted(m.subject.split(",")[0].split(":")[0] for m in messages)
    assert kinds == ["Welcome to default", "Your pairing with Grace Hopper has ended"]


def test_a_second_notify_sends_nothing_new(program, run_cli, notify, smtp_server):
    """Delivered events and sent messages are not sent again."""
    ok(run_cli("pair", "ada", "grace"))
    ok(notify())
    assert len(smtp_server.inbox.take()) == 4
    out = ok(notify())
    assert smtp_server.inbox.take() == []
    assert "0 new event(s) delivered" in out


def test_replay_then_notify_sends_nothing(program, run_cli, notify, smtp_server):
    """Rebuilding the read models never makes a message go out again."""
    ok(run_cli("pair", "ada", "grace"))
    ok(notify())
    first = smtp_server.inbox.take()
    ok(run_cli("replay"))
    ok(run_cli("replay", "--check"))
    ok(notify())
    assert first and smtp_server.inbox.take() == []


def test_with_the_server_down_notify_fails_cleanly_then_sends_each_message_once(
    program, run_cli, notify, smtp_server
):
    """Nothing counts as sent until the server accepts it; a later run sends the rest once."""
    ok(run_cli("pair", "ada", "grace"))
    smtp_server.stop()
    down = notify()
    assert down.exit_code == 1
    assert "Traceback" not in down.output
    assert f"could not reach the SMTP server smtp://127.0.0.1:{smtp_server.port}" in down.stderr
    assert "4 message(s) stay queued" in down.stderr
    status = json.loads(ok(notify("--status", "--format", "json")))
    messages = next(row for row in status if row["item"] == "messages")
    assert (messages["pending"], messages["sent"]) == (4, 0)
    again_down = notify()
    assert again_down.exit_code == 1
    smtp_server.start()
    ok(notify())
    received = smtp_server.inbox.take()
    assert Counter((m.to, m.subject) for m in received) == Counter(
        {
            ("ada@example.org", "Welcome to default, Ada Lovelace"): 1,
            ("grace@example.org", "Welcome to default, Grace Hopper"): 1,
            ("ada@example.org", "default: meet Grace Hopper, your new partner"): 1,
            ("grace@example.org", "default: meet Ada Lovelace, your new partner"): 1,
        }
    )
    ok(notify())
    assert smtp_server.inbox.take() == []


def test_a_refused_recipient_is_reported_and_only_that_message_is_retried(
    program, notify, smtp_server
):
    """A 550 for one address fails the run; the next run resends only that message."""
    smtp_server.inbox.refuse.add("grace@example.org")
    refused = notify()
    assert refused.exit_code == 1
    assert "welcome to grace@example.org: recipient refused: 550" in refused.stderr
    assert [m.to for m in smtp_server.inbox.take()] == ["ada@example.org"]
    smtp_server.inbox.refuse.clear()
    ok(notify())
    [retried] = smtp_server.inbox.take()
    assert (retried.to, retried.subject) == (
        "grace@example.org",
        "Welcome to default, Grace Hopper",
    )
    ok(notify())
    assert smtp_server.inbox.take() == []


def append_joined(db_path: Path, person_id: str, name: str, address: str) -> None:
    """Append a `joined` event straight through the unit of work, as an imported log could
    hold one, without the command's checks on names and addresses."""
    with Engine.open(db_path) as engine, engine.unit_of_work("default", actor=ACTOR) as unit:
        unit.record(
            "2025-01-06T09:00:00Z",
            [Joined(person_id=person_id, name=name, email=address, role="mentee")],
        )


def test_a_name_with_cr_lf_cannot_add_a_header(program, db_path, notify, smtp_server):
    """CR/LF in a name becomes a space: no Bcc header, no extra recipient."""
    append_joined(
        db_path, "eve", "Eve\r\nBcc: attacker@evil.example\r\nX-Evil: 1", "eve@example.org"
    )
    ok(notify())
    [to_eve] = [m for m in smtp_server.inbox.take() if m.to == "eve@example.org"]
    assert to_eve.rcpt_tos == ["eve@example.org"]
    headers = to_eve.content.split(b"\r\n\r\n", 1)[0].decode()
    assert "Bcc" not in to_eve.message and "X-Evil" not in to_eve.message
    assert "\nBcc:" not in headers and "\nX-Evil:" not in headers
    assert to_eve.subject == "Welcome to default, Eve Bcc: attacker@evil.example X-Evil: 1"
    assert to_eve.message["To"].addresses[0].addr_spec == "eve@example.org"
    assert len(to_eve.message["To"].addresses) == 1


@pytest.mark.parametrize(
    "address",
    ["eve@example.org\r\nBcc: attacker@evil.example", "eve@@example.org", "eve@example.org, x@y.z"],
)
def test_an_invalid_address_is_reported_and_never_sent(
    program, db_path, notify, smtp_server, address
):
    """The run names the bad address and exits 1; nothing goes to it, then or later."""
    append_joined(db_path, "eve", "Eve", address)
    first = notify()
    assert first.exit_code == 1
    assert f"welcome for eve not sent: invalid address {address!r}" in first.stderr
    received = smtp_server.inbox.take()
    assert sorted(m.to for m in received) == ["ada@example.org", "grace@example.org"]
    assert all(rcpt.endswith("@example.org") for m in received for rcpt in m.rcpt_tos)
    ok(notify())
    assert smtp_server.inbox.take() == []
    status = json.loads(ok(notify("--status", "--format", "json")))
    messages = next(row for row in status if row["item"] == "messages")
    assert (messages["pending"], messages["sent"], messages["failed"]) == (0, 2, 1)


def test_the_nudge_goes_out_once_per_stalled_period(run_cli, notify, smtp_server):
    """A stalled pair is nudged once; a session starts a new period with its own nudge."""
    ok(run_cli("config", "set", "notify_email.sender", SENDER))
    ok(run_cli("join", "ada", "--name", "Ada", "--email", "ada@example.org", "--role", "mentor",
               "--at", days_ago(100)))  # fmt: skip
    ok(run_cli("join", "raj", "--name", "Raj", "--email", "raj@example.org", "--role", "mentee",
               "--at", days_ago(100)))  # fmt: skip
    ok(run_cli("join", "mei", "--name", "Mei", "--email", "mei@example.org", "--role", "mentor",
               "--at", days_ago(100)))  # fmt: skip
    ok(run_cli("join", "ken", "--name", "Ken", "--email", "ken@example.org", "--role", "mentee",
               "--at", days_ago(100)))  # fmt: skip
    ok(run_cli("pair", "ada", "raj", "--at", days_ago(90)))
    ok(run_cli("pair", "mei", "ken", "--at", days_ago(90)))
    ok(run_cli("session", "mei-ken", "--minutes", "30", "--at", days_ago(5)))
    ok(notify())

    def nudges() -> list[Received]:
        return [m for m in smtp_server.inbox.take() if m.subject.startswith("Time to catch up")]

    first = nudges()
    assert sorted(m.to for m in first) == ["ada@example.org", "raj@example.org"]
    assert "It has been 90 days since you were paired with Raj" in first[0].text() + first[1].text()
    ok(notify())
    assert nudges() == []
    # A session 30 days ago ends that stall; 21 days later a new one began (9 days ago).
    ok(run_cli("session", "ada-raj", "--minutes", "30", "--at", days_ago(30)))
    ok(notify())
    second = nudges()
    assert sorted(m.to for m in second) == ["ada@example.org", "raj@example.org"]
    assert "It has been 30 days since your last session with Raj" in second[0].text() + (
        second[1].text()
    )
    ok(notify())
    assert nudges() == []


def test_nudge_days_sets_how_long_a_pair_may_go_without_a_session(run_cli, notify, smtp_server):
    """With notify_email.nudge_days 60 a 40-day gap is fine; 30 makes it stalled; 0 turns off."""
    ok(run_cli("config", "set", "notify_email.sender", SENDER))
    ok(run_cli("config", "set", "notify_email.nudge_days", "0"))
    for person, role in (("ada", "mentor"), ("raj", "mentee")):
        ok(run_cli("join", person, "--name", person.title(), "--email", f"{person}@example.org",
                   "--role", role, "--at", days_ago(50)))  # fmt: skip
    ok(run_cli("pair", "ada", "raj", "--at", days_ago(40)))
    ok(notify())
    assert not [m for m in smtp_server.inbox.take() if m.subject.startswith("Time to catch up")]
    ok(run_cli("config", "set", "notify_email.nudge_days", "60"))
    ok(notify())
    assert smtp_server.inbox.take() == []
    ok(run_cli("config", "set", "notify_email.nudge_days", "30"))
    ok(notify())
    assert len(smtp_server.inbox.take()) == 2


def test_a_dry_run_writes_eml_files_and_sends_and_records_nothing(
    program, run_cli, notify, smtp_server, tmp_path
):
    """--dry-run --outbox DIR writes the messages a real run would send, and only that."""
    ok(run_cli("pair", "ada", "grace"))
    folder = tmp_path / "preview"
    out = ok(notify("--dry-run", "--outbox", str(folder)))
    assert "Dry run: nothing was sent and nothing was recorded." in out
    files = sorted(folder.glob("*.eml"))
    assert len(files) == 4
    parsed = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
    assert sorted(str(m["To"]) for m in parsed) == sorted(
        ["Ada Lovelace <ada@example.org>", "Grace Hopper <grace@example.org>"] * 2
    )
    assert smtp_server.inbox.take() == []
    ok(notify())
    sent = smtp_server.inbox.take()
    assert sorted(m.subject for m in sent) == sorted(str(m["Subject"]) for m in parsed)


def test_a_dry_run_without_an_outbox_lists_what_would_be_sent(program, notify, smtp_server):
    """Without a folder, each message is listed by kind, recipient and subject."""
    out = ok(notify("--dry-run"))
    assert "would send welcome to ada@example.org: Welcome to default, Ada Lovelace" in out
    assert smtp_server.inbox.take() == []


def test_status_shows_pending_sent_and_failed_counts(program, run_cli, notify, smtp_server):
    """Counts per plugin: events waiting for delivery, then messages by outcome."""
    ok(run_cli("pair", "ada", "grace"))
    before = json.loads(ok(notify("--status", "--format", "json")))
    events = next(r for r in before if r["plugin"] == "notify_email" and r["item"] == "events")
    assert (events["pending"], events["sent"], events["failed"]) == (4, 0, 0)
    smtp_server.inbox.refuse.add("grace@example.org")
    assert notify().exit_code == 1
    after = json.loads(ok(notify("--status", "--format", "json")))
    events = next(r for r in after if r["plugin"] == "notify_email" and r["item"] == "events")
    messages = next(r for r in after if r["item"] == "messages")
    assert (events["pending"], events["sent"]) == (0, 4)
    assert (messages["pending"], messages["sent"], messages["failed"]) == (0, 2, 2)
    assert "2 to retry" in messages["detail"] and "550" in messages["detail"]
    table = ok(notify("--status", "--format", "table"))
    assert table.splitlines()[0].split() == [
        "program", "plugin", "item", "pending", "sent", "failed", "detail"
    ]  # fmt: skip


def test_an_organisation_folder_overrides_the_built_in_templates(
    program, run_cli, notify, smtp_server, tmp_path
):
    """Files in notify_email.template_dir replace the built-in ones they name."""
    folder = tmp_path / "acme"
    folder.mkdir()
    (folder / "welcome.subject.txt").write_text("ACME welcomes $name", encoding="utf-8")
    (folder / "welcome.body.html").write_text("<h1>Hi $name</h1>", encoding="utf-8")
    ok(run_cli("config", "set", "notify_email.template_dir", str(folder)))
    ok(notify())
    received = by_recipient(smtp_server.inbox.take())
    [to_ada] = received["ada@example.org"]
    assert to_ada.subject == "ACME welcomes Ada Lovelace"
    assert to_ada.html().strip() == "<h1>Hi Ada Lovelace</h1>"
    assert "What you can share: AI tools" in to_ada.text()  # the built-in text body


def test_a_template_with_an_unknown_placeholder_is_refused_by_name(
    program, run_cli, notify, smtp_server, tmp_path
):
    """A typo in a placeholder stops delivery with the file and the known names."""
    folder = tmp_path / "typo"
    folder.mkdir()
    (folder / "welcome.subject.txt").write_text("Welcome $nmae", encoding="utf-8")
    ok(run_cli("config", "set", "notify_email.template_dir", str(folder)))
    result = notify()
    assert result.exit_code == 1
    assert "welcome.subject.txt uses $nmae, which welcome messages do not provide" in result.stderr
    assert smtp_server.inbox.take() == []
    (folder / "welcome.subject.txt").write_text("Welcome $name", encoding="utf-8")
    ok(notify())
    assert sorted(m.subject for m in smtp_server.inbox.take()) == [
        "Welcome Ada Lovelace", "Welcome Grace Hopper"
    ]  # fmt: skip


def test_html_values_are_escaped(run_cli, notify, smtp_server):
    """A name with markup is text in the HTML body."""
    ok(run_cli("config", "set", "notify_email.sender", SENDER))
    ok(run_cli("join", "bob", "--name", "Bob <b>Tables</b>", "--email", "bob@example.org",
               "--role", "mentee"))  # fmt: skip
    ok(notify())
    [message] = smtp_server.inbox.take()
    assert "Hello Bob &lt;b&gt;Tables&lt;/b&gt;," in message.html()
    assert "Hello Bob <b>Tables</b>," in message.text()


def test_email_templates_writes_the_built_in_set_to_start_from(run_cli, tmp_path):
    """`rmcore email-templates DIR` gives every template file, which loads as it is."""
    folder = tmp_path / "mine"
    ok(run_cli("email-templates", str(folder)))
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)
    assert Templates.load(str(folder)).texts == Templates.load().texts


def test_from_now_skips_the_history(program, run_cli, notify, smtp_server):
    """Installing into a program with history: only what happens afterwards is sent."""
    out = ok(notify("--from-now"))
    assert "history skipped" in out
    assert smtp_server.inbox.take() == []
    ok(run_cli("join", "ken", "--name", "Ken Adams", "--email", "ken@example.org",
               "--role", "mentee"))  # fmt: skip
    ok(notify())
    assert [m.to for m in smtp_server.inbox.take()] == ["ken@example.org"]


def test_without_a_sender_notify_says_how_to_set_one(run_cli, notify, smtp_server):
    """No From address configured: exit 1 with the command that fixes it."""
    ok(run_cli("join", "ken", "--name", "Ken", "--email", "ken@example.org", "--role", "mentee"))
    result = notify()
    assert result.exit_code == 1
    assert "rmcore config set notify_email.sender" in result.stderr
    ok(run_cli("config", "set", "notify_email.sender", SENDER))
    ok(notify())
    assert [m.to for m in smtp_server.inbox.take()] == ["ken@example.org"]


def test_without_a_server_messages_wait_in_the_outbox(program, db_path, smtp_server):
    """No --smtp and no RMCORE_SMTP_URL: exit 1, and the messages go out on a later run."""
    args = ["--db", str(db_path), "notify"]
    result = CliRunner().invoke(cli, args, env={"RMCORE_SMTP_URL": None})
    assert result.exit_code == 1
    assert "2 message(s) waiting and no SMTP server" in result.stderr
    with_env = CliRunner().invoke(cli, args, env={"RMCORE_SMTP_URL": smtp_server.url})
    assert with_env.exit_code == 0, with_env.stderr
    assert len(smtp_server.inbox.take()) == 2


def test_the_login_comes_from_the_environment_and_never_reaches_the_database(
    program, db_path, tmp_path
):
    """RMCORE_SMTP_USER / RMCORE_SMTP_PASSWORD log in; the password is stored nowhere."""
    logins = Logins("mailer", "s3cret-pass")
    server = SmtpServer(logins)
    server.start()
    try:
        args = ["--db", str(db_path), "notify", "--smtp", server.url]
        wrong = CliRunner().invoke(
            cli, args, env={"RMCORE_SMTP_USER": "mailer", "RMCORE_SMTP_PASSWORD": "wrong-pass-77"}
        )
        assert wrong.exit_code == 1
        assert "refused the login of 'mailer'" in wrong.stderr
        right = CliRunner().invoke(
            cli, args, env={"RMCORE_SMTP_USER": "mailer", "RMCORE_SMTP_PASSWORD": "s3cret-pass"}
        )
        assert right.exit_code == 0, right.stderr
        assert len(server.inbox.take()) == 2
    finally:
        server.stop()
    assert set(logins.attempts) == {("mailer", "wrong-pass-77"), ("mailer", "s3cret-pass")}
    conn = sqlite3.connect(db_path)
    try:
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    assert "s3cret-pass" not in dump and "wrong-pass-77" not in dump


def test_a_url_with_credentials_is_refused(program, run_cli, smtp_server):
    """Credentials belong in the environment, not in a URL others can see."""
    url = f"smtp://mailer:pw@127.0.0.1:{smtp_server.port}"
    result = run_cli("notify", "--smtp", url)
    assert result.exit_code == 1
    assert "must not contain a user or password" in result.stderr
    assert smtp_server.inbox.take() == []


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("smtp://mail.example.org", SmtpTarget("mail.example.org", 25, "plain")),
        ("smtp+starttls://mail.example.org", SmtpTarget("mail.example.org", 587, "starttls")),
        ("smtps://mail.example.org", SmtpTarget("mail.example.org", 465, "tls")),
        ("smtps://mail.example.org:2465?timeout=5", SmtpTarget("mail.example.org", 2465, "tls", 5)),
    ],
)
def test_smtp_urls_choose_port_and_tls(url, target):
    """The scheme picks plain, STARTTLS or implicit TLS and the usual port."""
    assert parse_url(url) == target


@pytest.mark.parametrize(
    "url", ["http://mail.example.org", "smtp://", "smtp://h/path", "smtp://h?tls=1", "smtp://h:x"]
)
def test_malformed_smtp_urls_are_refused(url):
    """Anything but scheme, host, port and timeout is refused with a message."""
    from rmcore.delivery import DeliveryError

    with pytest.raises(DeliveryError):
        parse_url(url)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a@b",
        "a b@example.org",
        "a@example.org\n",
        "a@example.org>",
        "Ádá@example.org",
        "a@@b.c",
    ],
)
def test_address_problem_refuses_anything_but_one_plain_address(value):
    """Addresses that could carry a header or a second recipient are refused."""
    assert address_problem(value) is not None
    assert address_problem("ada.lovelace+rm@example.org") is None


def test_disabling_the_plugin_sends_nothing_and_keeps_its_place(program, run_cli, smtp_server):
    """--disable-plugin notify_email: no message, and no events skipped for later."""
    off = run_cli("--disable-plugin", "notify_email", "notify", "--smtp", smtp_server.url)
    assert off.exit_code == 0, off.stderr
    assert smtp_server.inbox.take() == []
    ok(run_cli("notify", "--smtp", smtp_server.url))
    assert len(smtp_server.inbox.take()) == 2


def test_a_stalled_pair_is_nudged_once_however_many_days_the_runs_are_apart(db_path, smtp_server):
    """Runs on later days of the same stall send nothing; a new stall does."""
    from rmcore import delivery
    from rmcore.commands import Join, MakePair, RecordSession, SetConfig

    with Engine.open(db_path) as engine:
        commands = [
            SetConfig(key="notify_email.sender", value=SENDER, at="2025-01-01T00:00:00Z"),
            Join(person_id="ada", name="Ada", email="ada@example.org", role="mentor",
                 at="2025-01-01T00:00:00Z"),
            Join(person_id="raj", name="Raj", email="raj@example.org", role="mentee",
                 at="2025-01-01T00:00:00Z"),
            MakePair(mentor_id="ada", mentee_id="raj", at="2025-01-02T00:00:00Z"),
        ]  # fmt: skip
        for command in commands:
            engine.execute("default", command, actor=ACTOR)
        options = {"smtp_url": smtp_server.url}

        def nudged_on(day: str) -> list[str]:
            report = delivery.deliver(engine, "default", now=day, options=options)
            assert report.ok, report.failures()
            received = smtp_server.inbox.take()
            return sorted(m.to for m in received if m.subject.startswith("Time to catch up"))

        assert nudged_on("2025-01-22T23:00:00Z") == []  # 20 days: not yet stalled
        assert nudged_on("2025-01-23T00:00:00Z") == ["ada@example.org", "raj@example.org"]
        assert nudged_on("2025-01-24T00:00:00Z") == []
        assert nudged_on("2025-03-30T00:00:00Z") == []
        session = RecordSession(pair_id="ada-raj", minutes=30, at="2025-04-01T00:00:00Z")
        engine.execute("default", session, actor=ACTOR)
        assert nudged_on("2025-04-21T00:00:00Z") == []
        assert nudged_on("2025-04-22T00:00:00Z") == ["ada@example.org", "raj@example.org"]
        assert nudged_on("2025-05-30T00:00:00Z") == []


def test_a_message_claimed_by_a_run_that_died_is_sent_by_a_later_run(
    program, db_path, notify, smtp_server
):
    """A fresh claim belongs to a run in progress; a stale one is taken over, at least once."""
    smtp_server.stop()
    assert notify().exit_code == 1
    smtp_server.start()
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            conn.execute(
                "UPDATE notify_email_outbox SET status = 'sending', "
                "claimed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
            )
        ok(notify())
        assert smtp_server.inbox.take() == []  # another run is sending them right now
        with conn:
            conn.execute(
                "UPDATE notify_email_outbox SET claimed_at = '2025-01-01T00:00:00.000000Z'"
            )
        ok(notify())
        assert sorted(m.to for m in smtp_server.inbox.take()) == [
            "ada@example.org",
            "grace@example.org",
        ]
        statuses = conn.execute("SELECT DISTINCT status FROM notify_email_outbox").fetchall()
    finally:
        conn.close()
    assert statuses == [("sent",)]


def test_all_programs_delivers_each_program_with_its_own_sender(run_cli, smtp_server):
    """--all-programs runs every program in turn, each with its own settings."""
    for program, sender in (("spring", "spring@example.org"), ("autumn", "autumn@example.org")):
        ok(run_cli("--program", program, "config", "set", "notify_email.sender", sender))
        ok(run_cli("--program", program, "join", "ada", "--name", "Ada",
                   "--email", "ada@example.org", "--role", "mentor"))  # fmt: skip
    out = ok(run_cli("notify", "--smtp", smtp_server.url, "--all-programs"))
    assert "[spring] notify_email: 2 new event(s) delivered" in out
    assert "[autumn] notify_email: 2 new event(s) delivered" in out
    received = smtp_server.inbox.take()
    assert sorted((m.mail_from, m.subject) for m in received) == [
        ("autumn@example.org", "Welcome to autumn, Ada"),
        ("spring@example.org", "Welcome to spring, Ada"),
    ]


# --- refusing before anything is delivered ---------------------------------------------


def delivery_state(db_path: Path) -> tuple[list, list]:
    """Every delivery checkpoint and every outbox row, to compare before and after."""
    conn = sqlite3.connect(db_path)
    try:
        checkpoints = conn.execute(
            "SELECT * FROM delivery_checkpoints ORDER BY plugin, program"
        ).fetchall()
        messages = conn.execute("SELECT * FROM notify_email_outbox ORDER BY id").fetchall()
    finally:
        conn.close()
    return checkpoints, messages


NO_LOGIN = {"RMCORE_SMTP_USER": None, "RMCORE_SMTP_PASSWORD": None, "RMCORE_SMTP_URL": None}


@pytest.mark.parametrize(
    ("smtp", "env", "setting", "expected"),
    [
        ("nope", {}, None, "SMTP URL 'nope' must start with smtp://"),
        ("{url}", {"RMCORE_SMTP_USER": "mailer"}, None,
         "set both RMCORE_SMTP_USER and RMCORE_SMTP_PASSWORD, or neither"),
        ("{url}", {"RMCORE_SMTP_PASSWORD": "s3cret"}, None,
         "set both RMCORE_SMTP_USER and RMCORE_SMTP_PASSWORD, or neither"),
        ("smtp://mail.example.org", {"RMCORE_SMTP_USER": "mailer", "RMCORE_SMTP_PASSWORD": "pw"},
         None, "refusing to send the SMTP password unencrypted"),
        ("{url}", {}, ("notify_email.first_session_time", "25:00"),
         "first_session_time must look like 10:00"),
        ("{url}", {}, ("notify_email.template_dir", "no-such-folder"), "no-such-folder"),
    ],
    ids=["url", "user-only", "password-only", "unencrypted-password", "setting", "templates"],
)  # fmt: skip
def test_a_bad_smtp_setting_is_refused_before_anything_is_delivered(
    program, run_cli, db_path, smtp_server, smtp, env, setting, expected
):
    """A bad URL, half a login or a bad program setting: exit 1 saying why; no event is
    delivered, no checkpoint moves and no message is queued or sent."""
    ok(run_cli("notify", "--smtp", smtp_server.url))
    smtp_server.inbox.take()
    ok(run_cli("join", "ken", "--name", "Ken Adams", "--email", "ken@example.org",
               "--role", "mentee"))  # fmt: skip
    if setting is not None:
        ok(run_cli("config", "set", *setting))
    before = delivery_state(db_path)
    args = ["--db", str(db_path), "notify", "--smtp", smtp.format(url=smtp_server.url)]
    result = CliRunner().invoke(cli, args, env={**NO_LOGIN, **env})
    assert result.exit_code == 1, result.output
    assert expected in result.stderr
    assert "Nothing was delivered and no checkpoint moved" in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert delivery_state(db_path) == before
    assert smtp_server.inbox.take() == []


# --- a database file this user cannot write ---------------------------------------------


def run_without_write_access(db: Path, *args: str) -> subprocess.CompletedProcess:
    """`rmcore --db DB ARGS` in a child process that may read ``db`` but not write it:
    the file is made read-only and, as root, the child runs without the capability that
    overrides file permissions (util-linux ``setpriv``)."""
    db.chmod(0o444)
    command = [sys.executable, "-m", "rmcore", "--db", str(db), "--actor", ACTOR, *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        drop = [setpriv or "setpriv", "--bounding-set", "-dac_override", "--"]
        if setpriv is None or subprocess.run([*drop, "true"], capture_output=True).returncode:
            pytest.skip("running as root and cannot drop the right to write any file")
        command = [*drop, *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMCORE_")}
    return subprocess.run(command, capture_output=True, text=True, env=env)


def test_status_works_on_a_database_file_this_user_cannot_write_and_runs_are_refused(
    program, db_path, tmp_path
):
    """--status writes nothing at all; a dry run and a real run are refused before they
    start, naming the file, and nothing is written anywhere."""
    before = db_path.read_bytes()
    status = run_without_write_access(db_path, "notify", "--status", "--format", "json")
    assert status.returncode == 0, status.stderr
    rows = {(r["plugin"], r["item"]): r for r in json.loads(status.stdout)}
    assert rows[("notify_email", "events")]["pending"] == 3
    assert rows[("notify_email", "messages")]["sent"] == 0
    folder = tmp_path / "preview"
    dry = run_without_write_access(db_path, "notify", "--dry-run", "--outbox", str(folder))
    assert dry.returncode == 1
    assert f"{db_path} is read-only for this user: a dry run writes too" in dry.stderr
    assert not folder.exists()
    real = run_without_write_access(db_path, "notify", "--smtp", "smtp://127.0.0.1:1")
    assert real.returncode == 1
    assert f"{db_path} is read-only for this user" in real.stderr
    assert "Traceback" not in real.stderr
    assert db_path.read_bytes() == before


# --- email-templates mistakes -------------------------------------------------------------


def test_email_templates_refuses_an_empty_folder_and_writes_nothing(run_cli, tmp_path, monkeypatch):
    """An empty FOLDER is a usage error, not the current folder."""
    monkeypatch.chdir(tmp_path)
    result = run_cli("email-templates", "")
    assert result.exit_code == 2
    assert "FOLDER" in result.stderr and "empty" in result.stderr
    assert "template_dir" not in result.stdout
    assert list(tmp_path.iterdir()) == [tmp_path / "rmcore.db"]


def test_email_templates_into_a_folder_it_cannot_make_says_why_without_a_traceback(
    run_cli, tmp_path
):
    """An operating-system error is one line: cannot write FOLDER: reason; exit 1."""
    (tmp_path / "a-file").write_text("not a folder")
    target = tmp_path / "a-file" / "templates"
    result = run_cli("email-templates", str(target))
    assert result.exit_code == 1
    assert f"Error: cannot write {target}: Not a directory" in result.stderr
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit


def test_email_templates_into_a_read_only_folder_says_so_and_leaves_nothing(tmp_path):
    """Permission denied: exit 1 with the folder and the reason, no file and no folder left."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    db = tmp_path / "unused.db"
    db.write_bytes(b"")
    ran = run_without_write_access(db, "email-templates", str(folder / "mine"))
    folder.chmod(0o755)
    assert ran.returncode == 1
    assert f"Error: cannot write {folder / 'mine'}: Permission denied" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert list(folder.iterdir()) == []
