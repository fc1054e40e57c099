"""Which program, actor and idempotency-key names an event's envelope cannot record.

Kept free of heavy imports: the command line checks the global options with it before
any subcommand runs, ``--help`` included.
"""

from __future__ import annotations

import re

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
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
