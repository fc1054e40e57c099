"""Third-party plugins installed the way pip leaves them, and the real CLI run beside them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def install(site: Path, name: str, source: str) -> None:
    """A module plus a dist-info with an ``rmcore`` entry point: what pip would leave behind."""
    (site / f"{name}.py").write_text(textwrap.dedent(source))
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[rmcore]\n{name} = {name}\n")


def rmcore(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The real CLI in a new process, with the plugins of ``site`` installed."""
    environment = {**os.environ, "PYTHONPATH": str(site)}
    environment.pop("RMCORE_DISABLE_PLUGINS", None)
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "rmcore", *args], env=environment,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
