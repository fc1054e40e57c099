"""Business time: parsing the operator's ISO 8601 dates into one sortable form.

``occurred_at`` is stored as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC so that text order is
time order. A date without a time means midnight UTC; a time without an offset is
taken as UTC.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

OCCURRED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# The earliest moment accepted: every date from here on has a four-digit year, which
# keeps text order equal to time order (and no date arithmetic near year 1 overflows).
EARLIEST = datetime(1900, 1, 1, tzinfo=timezone.utc)


class WhenError(ValueError):
    """A date or time the operator gave could not be understood."""


def to_utc(text: str) -> datetime:
    """Parse an ISO 8601 date or date-time into an aware UTC datetime."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        if len(value) == 10:
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(value)
    except ValueError:
        raise WhenError(
            f"{text!r} is not an ISO 8601 date (2026-03-01) or date-time "
            "(2026-03-01T14:30:00+01:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        moment = parsed.astimezone(timezone.utc)
    except OverflowError:
        raise WhenError(f"{text!r} is outside the calendar rmcore can count in") from None
    if moment < EARLIEST:
        raise WhenError(f"{text!r} is before 1900; rmcore records dates from 1900 on")
    return moment


def parse_occurred(text: str | None, *, now: datetime | None = None) -> str:
    """The normalised ``occurred_at`` for ``--at`` (None means now)."""
    current = now or datetime.now(timezone.utc)
    moment = current if text is None else to_utc(text)
    if moment - current > timedelta(days=1):
        raise WhenError(f"{text} is in the future; record things once they have happened")
    return moment.strftime(OCCURRED_FORMAT)


def end_of_day(text: str) -> str:
    """For ``--as-of DATE``: the last second of that day (a date-time is kept as is)."""
    moment = to_utc(text)
    if len(text.strip()) == 10:
        moment = moment + timedelta(days=1, seconds=-1)
    return moment.strftime(OCCURRED_FORMAT)


def day(occurred_at: str) -> str:
    """The date part of an ``occurred_at``."""
    return occurred_at[:10]


RECORDED_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def recorded_cut(text: str) -> str:
    """For ``--known-at``: a ``recorded_at`` bound (a date alone means the end of that day)."""
    moment = to_utc(text)
    if len(text.strip()) == 10:
        moment = moment + timedelta(days=1, microseconds=-1)
    return moment.strftime(RECORDED_FORMAT)
