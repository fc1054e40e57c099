"""Which program, actor and idempotency-key names an event's envelope cannot record.

Kept free of heavy imports: the command line checks the global options with it before
any subcommand runs, ``--help`` included.
"""

from __future__ import annotations

import re

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters that reorder the text around them: a name holding one can read as another.
BIDI_CONTROL = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")
MAX_NAME = 200


def name_problem(label: str, value: str) -> str | None:
    """What makes a name impossible to record (or to print back), or None. Names the log
    may already hold, such as one with spaces around it, pass."""
    if not value:
        return f"the {label} is empty"
    if any("\udc80" <= char <= "\udcff" for char in value):
        return f"the {label} is not valid UTF-8 text"
    if CONTROL.search(value):
        return f"the {label} {value!r} holds a control character"
    if len(value) > MAX_NAME:
        return f"the {label} is longer than {MAX_NAME} characters"
    return None


def new_name_problem(label: str, value: str) -> str | None:
    """What, beyond :func:`name_problem`, keeps a name from being given to something new
    (a program's first event): spaces around it, which make a second program of a
    mistyped one, or characters that reorder how it reads; or None."""
    if value != value.strip():
        return f"the {label} {value!r} starts or ends with a space"
    if BIDI_CONTROL.search(value):
        return f"the {label} {value!r} holds a character that reorders how it reads"
    return None
