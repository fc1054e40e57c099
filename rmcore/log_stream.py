"""The log as blocks of JSON lines, a long stretch of it built by several processes.

SQLite builds each block's lines in C (``SQLiteEventStore.json_line_blocks``), so on a
large log the work is SQLite's and splits across processes by position range: each
worker builds whole blocks from its own read-only connection and the blocks come back
in order. Only a few blocks are ever in flight, so memory stays flat however long the
log, and a slow reader (``| jq``) holds the workers back instead of piling blocks up.
"""

from __future__ import annotations

import os
import sqlite3
from collections import deque
from collections.abc import Iterator

import attrs

from rmcore.store import EventFilter, SQLiteEventStore, connect_read_only

PARALLEL_THRESHOLD = 200_000  # events to walk before forking workers pays for itself
BLOCK = 5000
IN_FLIGHT_PER_WORKER = 2


def json_line_blocks(
    store: SQLiteEventStore,
    where: EventFilter,
    *,
    path: str | None,
    workers: int | None = None,
) -> Iterator[tuple[int, bytes]]:
    """``(last position, UTF-8 lines)`` blocks of the events ``where`` selects, in order;
    a walk over more than ``PARALLEL_THRESHOLD`` positions of a file is built by
    ``workers`` processes (one per CPU by default) up to the head found at the start."""
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    walking = where.program is None or where.walk_positions
    head = store.head()[0] if walking else 0
    if where.until is not None:
        head = min(head, where.until)
    if path is None or workers < 2 or not walking or head - where.since < PARALLEL_THRESHOLD:
        yield from store.json_line_blocks(where)
        return
    yield from _in_parallel(path, where, head, workers)
    yield from store.json_line_blocks(attrs.evolve(where, since=max(where.since, head)))


def _in_parallel(
    path: str, where: EventFilter, head: int, workers: int
) -> Iterator[tuple[int, bytes]]:
    """The blocks of positions ``where.since+1 .. head``, built by worker processes."""
    from rmcore.workers import process_pool

    size = BLOCK
    starts = iter(range(where.since, head, size))
    pool = process_pool(workers)
    pending: deque = deque()

    def submit_next() -> None:
        since = next(starts, None)
        if since is not None:
            pending.append(pool.submit(_block, path, where, since, min(since + size, head)))

    try:
        for _ in range(workers * IN_FLIGHT_PER_WORKER):
            submit_next()
        while pending:
            last, block = pending.popleft().result()
            submit_next()
            if block:
                yield last, block
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_CONNECTIONS: dict[str, sqlite3.Connection] = {}


def _block(path: str, where: EventFilter, since: int, until: int) -> tuple[int, bytes]:
    """In a worker: the lines of positions ``since+1 .. until`` that ``where`` selects."""
    conn = _CONNECTIONS.get(path)
    if conn is None:
        conn = _CONNECTIONS[path] = connect_read_only(path)
    store = SQLiteEventStore(conn)
    block = attrs.evolve(where, since=since, until=until)
    for last, lines in store.json_line_blocks(block, batch=until - since):
        return last, lines
    return until, b""
