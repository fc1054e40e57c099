"""Two-way skill-complementarity matching (the built-in ``rmcore_match`` strategy).

A pair's score adds up the skills the mentor offers that the mentee seeks, the skills
the mentee offers that the mentor seeks, and the organisation's terms (department,
career-stage direction, time-zone overlap, and any other plugin's ``rmcore_score_pair``).
The strategy proposes the set of pairs with the highest total score; see
docs/matching.md.

This module stays light: ``rmcore`` loads it for every command, while numpy (with the
``lap`` solver for small programs, scipy for larger ones) is imported only when a match is
computed.
"""

from __future__ import annotations

from typing import Any

from rmcore import hookimpl


@hookimpl(trylast=True)
def rmcore_match(program, people, pairs, config, score_pair, progress) -> dict[str, Any]:
    """Propose the maximum-score pairs for the program's unpaired participants."""
    from rmcore_plugins.matching_skills.strategy import propose

    return propose(program, people, pairs, config, score_pair, progress)
