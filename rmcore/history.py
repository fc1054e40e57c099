"""Everything that happened to one person or one pair, in log order."""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from typing import Any

from rmcore.commands import DomainError
from rmcore.engine import Engine
from rmcore.store import StoredEvent


def entity_streams(engine: Engine, program: str, entity: str) -> tuple[str, list[str]]:
    """``("person" | "pair", streams)`` for an id: a pair's own stream, or a person's
    stream plus the streams of every pair they were in."""
    conn = engine.conn
    if conn.execute(
        "SELECT 1 FROM pairs WHERE program = ? AND pair_id = ?", (program, entity)
    ).fetchone():
        return "pair", [f"pair:{entity}"]
    if engine.store.stream_version(program, f"person:{entity}") == 0:
        raise DomainError(f"there is no person or pair {entity!r} in program {program}")
    pair_ids = [
        row[0]
        for row in conn.execute(
            "SELECT pair_id FROM pairs WHERE program = ?1 AND (mentor_id = ?2 OR mentee_id = ?2)",
            (program, entity),
        )
    ]
    return "person", [f"person:{entity}", *(f"pair:{pair_id}" for pair_id in pair_ids)]


def history(engine: Engine, program: str, entity: str) -> Iterator[StoredEvent]:
    """Every event touching the person or pair, oldest first (a few indexed reads)."""
    _, streams = entity_streams(engine, program, entity)
    per_stream = [engine.store.read_stream(program, stream) for stream in streams]
    return heapq.merge(*per_stream, key=lambda event: event.position)


def opened_payload(engine: Engine, event: StoredEvent) -> dict[str, Any]:
    """The event's payload with its personal fields readable (``[erased]`` once forgotten)."""
    try:
        payload = json.loads(event.data)
        if not isinstance(payload, dict):
            raise TypeError("not an object")
    except (ValueError, TypeError):  # not text, not UTF-8, not a JSON object
        raise DomainError(
            f"position {event.position}: its payload is not the JSON object rmcore wrote, so"
            " the log was changed outside rmcore; `rmcore verify` names the first bad position"
        ) from None
    engine.keyring.open(event.program, event.stream, event.type, payload)
    return payload
