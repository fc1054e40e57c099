"""The email plugin's program settings (``rmcore config set notify_email.KEY VALUE``).

Settings are program configuration, recorded as events, so an audit shows which sender,
templates and nudge interval were in force when. Secrets (the SMTP user and password)
are never settings: they come from the environment only (see ``smtp.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import frozen

from rmcore.delivery import DeliveryError

from .message import address_problem

PREFIX = "notify_email."
DEFAULTS: dict[str, Any] = {
    "sender": None,
    "sender_name": "",
    "program_title": "",
    "nudge_days": 21,
    "template_dir": None,
    "invite": True,
    "first_session_days": 7,
    "first_session_time": "10:00",
    "max_attempts": 5,
}


@frozen
class Settings:
    """The settings one program's messages are built and sent with."""

    sender: str | None
    sender_name: str
    program_title: str
    nudge_days: int
    template_dir: str | None
    invite: bool
    first_session_days: int
    first_session_time: tuple[int, int]
    max_attempts: int

    def require_sender(self) -> str:
        """The From address, or a clear error when it is missing."""
        if not self.sender:
            raise DeliveryError(
                "no sender address: set one with "
                "`rmcore config set notify_email.sender hr@example.org`"
            )
        return self.sender


def _int(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DeliveryError(f"{PREFIX}{key} must be a whole number from {low} to {high}")
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise DeliveryError(f"{PREFIX}{key} must be text")
    return value


def _time(value: Any) -> tuple[int, int]:
    text = _text("first_session_time", value)
    hours, _, minutes = text.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
        raise DeliveryError(f"{PREFIX}first_session_time must look like 10:00, not {text!r}")
    return int(hours), int(minutes)


def load_settings(config: Mapping[str, Any], program: str) -> Settings:
    """Read and check the ``notify_email.*`` settings of a program, defaults filled in."""
    raw = {key: config.get(PREFIX + key, default) for key, default in DEFAULTS.items()}
    sender = raw["sender"]
    if sender is not None:
        sender = _text("sender", sender).strip()
        problem = address_problem(sender)
        if problem:
            raise DeliveryError(
                f"{PREFIX}sender {sender!r} is not usable: {problem} (a display name goes in "
                f"{PREFIX}sender_name)"
            )
    template_dir = raw["template_dir"]
    if template_dir is not None:
        template_dir = _text("template_dir", template_dir)
    if not isinstance(raw["invite"], bool):
        raise DeliveryError(f"{PREFIX}invite must be true or false")
    return Settings(
        sender=sender,
        sender_name=_text("sender_name", raw["sender_name"]),
        program_title=_text("program_title", raw["program_title"]) or program,
        nudge_days=_int("nudge_days", raw["nudge_days"], 0, 3650),
        template_dir=template_dir,
        invite=raw["invite"],
        first_session_days=_int("first_session_days", raw["first_session_days"], 0, 365),
        first_session_time=_time(raw["first_session_time"]),
        max_attempts=_int("max_attempts", raw["max_attempts"], 1, 1000),
    )
