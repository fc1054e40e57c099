"""Peak memory of one command, measured for that command alone (shared by the benchmarks)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

# Linux starts a child's ru_maxrss at its parent's high-water mark (carried over fork and
# exec), so a command measured straight from this process would report at least this
# process's own peak. The command is started from a small launcher instead, which reports
# its wall time and the command's own peak RSS (KiB) into a file.
LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(f"{time.perf_counter() - started} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def peak_run(argv: list[str], **popen) -> tuple[int, float, float]:
    """Run ``argv`` to completion: (exit code, wall-clock seconds, peak RSS in MB)."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "peak"
        code = subprocess.run([sys.executable, "-c", LAUNCHER, str(report), *argv], **popen)
        seconds, kib = report.read_text().split()
    return code.returncode, float(seconds), int(kib) / 1024
