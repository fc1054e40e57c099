"""Worker processes that read a large log in parallel (verify, log streaming)."""

from __future__ import annotations

import signal
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes that leave Ctrl-C to the parent.

    fork starts workers without re-importing anything; they open their own read-only
    connections and never touch the parent's. Ctrl-C reaches the whole process group:
    the parent stops and shuts the pool down, so the workers ignore it instead of each
    dying with a traceback of its own.
    """
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(
        workers, mp_context=get_context(method), initializer=_leave_interrupts_to_the_parent
    )


def _leave_interrupts_to_the_parent() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
