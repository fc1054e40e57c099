"""Checking the hash chain and the log's invariants, in segments that may run in parallel.

Each row's hash depends only on its own fields and its stored ``prev_hash``, so ranges of
positions can be checked independently; what links them (the last hash of one range is
the first ``prev_hash`` of the next, and stream versions continue across the boundary)
is checked when the segments are merged in order.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator

from attrs import field, frozen

from rmcore.codec import Codec, DecodeError
from rmcore.store import GENESIS_HASH, SQLiteEventStore, connect_read_only

PARALLEL_THRESHOLD = 200_000
SEGMENT_SIZE = 100_000
BATCH = 1000  # rows per fetch: smaller batches stay in the CPU caches

StreamKey = tuple[str, str]
Decoder = Callable[[str, int, str], object]


@frozen
class Problem:
    """The first bad position found and why."""

    position: int
    reason: str


@frozen
class Segment:
    """What checking positions ``since+1 .. until`` found."""

    since: int
    until: int
    checked: int
    first_prev_hash: str | None
    last_hash: str | None
    problem: Problem | None
    stream_first: dict[StreamKey, tuple[int, int]] = field(factory=dict)
    stream_last: dict[StreamKey, int] = field(factory=dict)


def check_segment(
    store: SQLiteEventStore,
    since: int,
    until: int,
    decode: Decoder | None = None,
    *,
    batch: int = BATCH,
) -> Segment:
    """Check hashes, gap-free positions, stream versions and (with ``decode``) payloads
    within one range of positions."""
    state = _State(since)
    for rows in store.chain_rows(since, until, batch=batch, with_payload=decode is not None):
        if not _check_batch(rows, state, decode):
            _check_rows(rows, state, decode)
        if state.problem:
            break
    expected = state.expected
    problem = state.problem
    if problem is None and expected < until:
        problem = Problem(expected + 1, f"positions {expected + 1}-{until} are missing")
    return Segment(
        since,
        until,
        expected - since,
        state.first_prev,
        state.prev,
        problem,
        state.stream_first,
        state.stream_last,
    )


class _State:
    """Where the check of one segment has got to."""

    def __init__(self, since: int) -> None:
        self.expected = since
        self.prev: str | None = None
        self.first_prev: str | None = None
        self.stream_first: dict[StreamKey, tuple[int, int]] = {}
        self.stream_last: dict[StreamKey, int] = {}
        self.problem: Problem | None = None


def _check_batch(rows: list[tuple], state: _State, decode: Decoder | None) -> bool:
    """Check a batch, comparing positions, links and hashes for all its rows at once;
    False, with ``state`` untouched, when one of those may be wrong, for
    :func:`_check_rows` to find which."""
    expected = state.expected
    prev = state.prev
    count = len(rows)
    try:
        # Positions come sorted and unique: the first and last in place means no gap.
        if rows[0][0] != expected + 1 or rows[-1][0] != expected + count:
            return False
        prevs = [row[4] for row in rows]
        digests = [row[5] for row in rows]
        if prevs[1:] != digests[:-1] or (prev is not None and prevs[0] != prev):
            return False
        sha256 = hashlib.sha256
        hashed = [row[6] for row in rows]
        if [sha256(text).hexdigest() for text in hashed] != digests:
            return False
        if list(map(len, hashed)) != [row[7] for row in rows]:
            return False
    except Exception:  # a malformed row: the row-by-row check reports or raises it
        return False
    if prev is None:
        state.first_prev = prevs[0]
    stream_first = state.stream_first
    stream_last = state.stream_last
    get = stream_last.get
    for row in rows:
        key = (row[1], row[2])
        version = row[3]
        last = get(key)
        if last is None:
            stream_first[key] = (version, row[0])
        elif version != last + 1:
            state.expected = row[0]
            state.prev = prev
            state.problem = Problem(row[0], _version_jump(key, last, version))
            return True
        stream_last[key] = version
        prev = row[5]
        if decode is not None:
            try:
                decode(row[8], row[9], row[10])
            except DecodeError as exc:
                state.expected = row[0]
                state.prev = prev
                state.problem = Problem(row[0], f"its payload does not decode: {exc}")
                return True
    state.expected = expected + count
    state.prev = prev
    return True


def _check_rows(rows: list[tuple], state: _State, decode: Decoder | None) -> None:
    """Check a batch row by row, stopping at its first problem."""
    sha256 = hashlib.sha256
    expected = state.expected
    prev = state.prev
    stream_first = state.stream_first
    stream_last = state.stream_last
    problem = None
    for position, program, stream, version, prev_hash, digest, hashed, length, *payload in rows:
        expected += 1
        if position != expected:
            problem = Problem(expected, f"position {expected} is missing (next is {position})")
            break
        if prev is None:
            state.first_prev = prev_hash
        elif prev_hash != prev:
            problem = Problem(position, "its prev_hash is not the hash of the event before it")
            break
        if sha256(hashed).hexdigest() != digest:
            problem = Problem(position, "its contents do not match its hash (the row changed)")
            break
        if len(hashed) != length:
            problem = Problem(
                position,
                "a field holds text its hash does not cover (after a NUL character, or a"
                " number stored as text): the row changed",
            )
            break
        key = (program, stream)
        last = stream_last.get(key)
        if last is None:
            stream_first[key] = (version, position)
        elif version != last + 1:
            problem = Problem(position, _version_jump(key, last, version))
            break
        stream_last[key] = version
        prev = digest
        if decode is not None:
            try:
                decode(*payload)
            except DecodeError as exc:
                problem = Problem(position, f"its payload does not decode: {exc}")
                break
    state.expected = expected
    state.prev = prev
    state.problem = problem


def _version_jump(key: StreamKey, last: int, version: int) -> str:
    program, stream = key
    return f"{stream} in {program} jumps from version {last} to {version}"


def merge(segments: Iterator[Segment]) -> tuple[int, str, Problem | None]:
    """Link segments in order: ``(events checked, last hash, first problem or None)``."""
    prev_hash = GENESIS_HASH
    versions: dict[StreamKey, int] = {}
    checked = 0
    for segment in segments:
        found = [segment.problem] if segment.problem else []
        if segment.checked and segment.first_prev_hash != prev_hash:
            found.append(
                Problem(segment.since + 1, "its prev_hash is not the hash of the event before it")
            )
        for key, (version, position) in segment.stream_first.items():
            last = versions.get(key, 0)
            if version != last + 1:
                found.append(Problem(position, _version_jump(key, last, version)))
        if found:
            return checked, prev_hash, min(found, key=lambda p: p.position)
        checked += segment.checked
        if segment.last_hash is not None:
            prev_hash = segment.last_hash
        versions.update(segment.stream_last)
    return checked, prev_hash, None


def _ranges(head: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, head)) for start in range(0, head, size)] or [(0, 0)]


# The decoder of the process that forks the workers; spawned workers build their own.
_DECODER: Decoder | None = None


def _worker_decoder() -> Decoder:
    if _DECODER is not None:
        return _DECODER
    from rmcore.engine import build_registry
    from rmcore.plugins import make_plugin_manager

    return Codec(build_registry(make_plugin_manager())).check


def _check_file_segment(path: str, since: int, until: int, decode: bool) -> Segment:
    conn = connect_read_only(path)
    try:
        conn.execute("PRAGMA cache_size = -16384")
        decoder = _worker_decoder() if decode else None
        return check_segment(SQLiteEventStore(conn), since, until, decoder)
    finally:
        conn.close()


def check_chain(
    store: SQLiteEventStore,
    head: int,
    *,
    path: str | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    decode: Decoder | None = None,
) -> tuple[int, str, Problem | None]:
    """Check positions ``1..head``; large logs in a file are split across processes."""
    global _DECODER
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if path is None or workers < 2 or head < PARALLEL_THRESHOLD:
        ranges = _ranges(head, SEGMENT_SIZE)

        def sequential() -> Iterator[Segment]:
            for since, until in ranges:
                segment = check_segment(store, since, until, decode)
                if progress:
                    progress(segment.checked)
                yield segment

        return merge(sequential())
    ranges = _ranges(head, max(SEGMENT_SIZE, head // (workers * 4)))
    from rmcore.workers import process_pool

    _DECODER = decode
    with process_pool(workers) as pool:
        futures = [
            pool.submit(_check_file_segment, path, since, until, decode is not None)
            for since, until in ranges
        ]

        def in_order() -> Iterator[Segment]:
            for future in futures:
                segment = future.result()
                if progress:
                    progress(segment.checked)
                yield segment

        try:
            return merge(in_order())
        finally:
            for future in futures:
                future.cancel()
