"""Building one email safely: checked addresses, one-line headers, text + HTML, calendar file.

Nothing that comes from an event (names, emails, free text) is ever written into a
header as raw text. Names and subjects are reduced to one line (every control
character, CR and LF included, becomes a space) and headers are set through
``email.headerregistry`` objects, which refuse CR and LF on top of that. Recipients of
the SMTP envelope are the checked address alone, never parsed back from headers.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from rmcore.commands import EMAIL

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_SUBJECT = 200
MAX_NAME = 120


def one_line(text: str, limit: int = MAX_SUBJECT) -> str:
    """The text on one line: control characters (CR and LF too) become single spaces."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def address_problem(value: object) -> str | None:
    """Why a value cannot be used as a recipient or sender address, or None if it can."""
    if not isinstance(value, str) or not value:
        return "no address"
    if _CONTROL.search(value) or not value.isascii():
        return "it contains line breaks, control or non-ASCII characters"
    if len(value) > 254 or not EMAIL.match(value):
        return "it is not a single well-formed address like ada@example.org"
    try:
        parsed = Address(addr_spec=value)
    except Exception:
        return "it is not a single well-formed address like ada@example.org"
    if parsed.addr_spec != value:
        return "it is not a single well-formed address like ada@example.org"
    return None


def mailbox(name: str, address: str) -> Address:
    """A header address with a one-line display name (the address must be checked first)."""
    return Address(display_name=one_line(name, MAX_NAME), addr_spec=address)


def message_id(program: str, key: str, sender: str) -> str:
    """A Message-ID derived from the message key: a resent copy carries the same one."""
    digest = hashlib.sha256(f"{program}\x1f{key}".encode()).hexdigest()[:32]
    return f"<{digest}@{sender.rpartition('@')[2]}>"


def build(
    *,
    sender: Address,
    recipient: Address,
    subject: str,
    text: str,
    html: str,
    msgid: str,
    date: datetime,
    calendar: str | None = None,
) -> bytes:
    """The whole message as bytes with CRLF line ends, ready for SMTP or an .eml file."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = one_line(subject)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = msgid
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    if calendar is not None:
        message.add_attachment(
            calendar,
            subtype="calendar",
            filename="first-session.ics",
            params={"method": "PUBLISH"},
        )
    return message.as_bytes(policy=SMTP)


def ics_text(value: str) -> str:
    """Text escaped for an iCalendar property value (RFC 5545 3.3.11), on one line."""
    value = one_line(value, 500)
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")


def ics_fold(line: str) -> str:
    """Fold a content line at 75 octets, continuation lines starting with a space."""
    encoded = line.encode()
    if len(encoded) <= 75:
        return line
    parts, start, limit = [], 0, 75
    while start < len(encoded):
        end = min(start + limit, len(encoded))
        while end < len(encoded) and (encoded[end] & 0xC0) == 0x80:
            end -= 1  # never split a UTF-8 sequence
        parts.append(encoded[start:end].decode())
        start, limit = end, 74
    return "\r\n ".join(parts)


def calendar_invite(
    *,
    uid: str,
    start: datetime,
    minutes: int,
    summary: str,
    description: str,
    stamp: datetime,
) -> str:
    """A one-event calendar (METHOD:PUBLISH) proposing a session; times are UTC."""
    fmt = "%Y%m%dT%H%M%SZ"
    end = start.timestamp() + minutes * 60
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//rmcore//notify_email//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:{ics_text(uid)}",
        f"DTSTAMP:{stamp.strftime(fmt)}",
        f"DTSTART:{start.strftime(fmt)}",
        f"DTEND:{datetime.fromtimestamp(end, start.tzinfo).strftime(fmt)}",
        f"SUMMARY:{ics_text(summary)}",
        f"DESCRIPTION:{ics_text(description)}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(ics_fold(line) + "\r\n" for line in lines)
