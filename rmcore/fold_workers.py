"""Planning a full replay in worker processes while the main process writes.

A fold has two halves: reading the log and working out each event's statements, with its
sealed fields opened (:func:`rmcore.projections.plan_fold`), and running those statements
(:meth:`rmcore.projections.Projector.execute`). Only the second half needs the write
connection, so on a large log the first half runs in forked workers, each planning every
Nth range of positions from its own read-only connection, while the main process runs
the plans in log order as they arrive. A worker is at most one plan ahead of the main
process (a pipe send waits for the reader), so memory stays flat whatever the log's size.

The workers read the log and the keys as last committed. That is the main process's view
only while it holds the write lock and has changed neither, as ``rmcore replay`` does:
other callers plan in-process.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from multiprocessing import get_all_start_methods, get_context
from typing import TYPE_CHECKING

from rmcore.personal import Keyring
from rmcore.projections import FoldPlan, Projector, plan_fold
from rmcore.store import SQLiteEventStore

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

PARALLEL_THRESHOLD = 50_000  # events below which forking costs more than it saves
MAX_WORKERS = 4


def worker_count(events: int) -> int:
    """How many planning workers suit a fold of ``events`` events (0: plan in-process)."""
    cores = os.cpu_count() or 1
    if events < PARALLEL_THRESHOLD or cores < 2 or "fork" not in get_all_start_methods():
        return 0
    return min(cores, MAX_WORKERS)


def database_file(conn: sqlite3.Connection) -> str | None:
    """The file behind a connection's main database; None for an in-memory one."""
    for _, name, path in conn.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return path or None
    return None


def parallel_plans(
    log_path: str,
    keys_path: str,
    projector: Projector,
    *,
    until: int,
    batch: int,
    occurred_until: str | None,
    workers: int,
) -> Iterator[FoldPlan]:
    """The plans of positions ``1..until`` in log order, made by ``workers`` processes."""
    ranges = [(since, min(since + batch, until)) for since in range(0, until, batch)]
    context = get_context("fork")
    readers: list[Connection] = []
    processes = []
    try:
        for index in range(workers):
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(
                target=_plan_ranges,
                args=(writer, log_path, keys_path, projector, ranges[index::workers]),
                kwargs={"occurred_until": occurred_until},
                daemon=True,
            )
            process.start()
            writer.close()
            readers.append(reader)
            processes.append(process)
        for index in range(len(ranges)):
            kind, value = readers[index % workers].recv()
            if kind == "error":
                raise value
            if value is not None:
                yield value
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
        for reader in readers:
            reader.close()


def _plan_ranges(
    writer: Connection,
    log_path: str,
    keys_path: str,
    projector: Projector,
    ranges: list[tuple[int, int]],
    *,
    occurred_until: str | None,
) -> None:
    """In a worker: send the plan of each range (None for a range with nothing to fold)."""
    try:
        log = _read_only(log_path)
        keys = log if keys_path == log_path else _read_only(keys_path)
        keyring = Keyring(keys)
        keyring.preload()
        store = SQLiteEventStore(log)
        for since, until in ranges:
            scanned = store.scan(
                since, until=until, batch=until - since, occurred_until=occurred_until
            )
            rows = next(scanned, [])
            plan = plan_fold(rows, projector.schemas, projector.registry, keyring) if rows else None
            writer.send(("plan", plan))
    except BaseException as exc:  # the main process raises it
        try:
            writer.send(("error", exc))
        except Exception:
            writer.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        writer.close()


def _read_only(path: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
