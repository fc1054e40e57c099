"""Start-up time: ``rmcore --help`` against ``python -c "import click"``, and what it imports.

    python benchmarks/startup.py              # 21 runs of each, median, ratio, verdict
    python benchmarks/startup.py --runs 51 --imports 25

``rmcore --help`` loads every installed plugin (entry points, hook validation,
``rmcore_register_commands``) before it prints anything, so it measures what an
operator waits for before any command starts. The target is at most twice the time of
starting Python and importing click, which every click program pays anyway.

Each command runs in a fresh process; the two are run alternately, after warm-up runs,
so a busy moment of the machine slows both. Both run with compiled bytecode cached, as
after a normal install: the cache goes to a temporary folder (``PYTHONPYCACHEPREFIX``),
and ``PYTHONDONTWRITEBYTECODE`` is ignored, since without a cache every start would
compile rmcore's modules from source again. The script then runs ``rmcore --help``
once under ``python -X importtime`` and prints the modules that took longest, grouped by
top-level package, and whether numerical libraries (numpy, scipy) were imported: those
belong to the commands that need them, never to start-up. It exits 1 when the ratio is
above the target.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

TARGET = 2.0
HEAVY = ("numpy", "scipy", "pandas", "matplotlib")
RUN_HELP = "import sys; sys.argv = ['rmcore', '--help']; from rmcore.cli import main; main()"


def rmcore_command(python: str) -> list[str]:
    """The ``rmcore`` console script beside ``python``, else ``python -m rmcore``."""
    script = Path(python).parent / "rmcore"
    if script.exists():
        return [str(script)]
    found = shutil.which("rmcore")
    return [found] if found else [python, "-m", "rmcore"]


def environment(cache: str) -> dict[str, str]:
    """This environment, with bytecode cached in ``cache`` and rmcore's own settings left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMCORE_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = cache
    return env


def timed(command: list[str], env: dict[str, str]) -> float:
    """Wall-clock seconds of one run; the command must succeed."""
    started = time.perf_counter()
    subprocess.run(
        command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    return time.perf_counter() - started


def measure(
    commands: dict[str, list[str]], runs: int, env: dict[str, str], warmup: int = 2
) -> dict[str, list[float]]:
    """``runs`` timings of each command, run alternately after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for command in commands.values():
            timed(command, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            times[name].append(timed(command, env))
    return times


def import_profile(python: str, env: dict[str, str]) -> tuple[list[tuple[str, int, int]], set[str]]:
    """``(module, self us, cumulative us)`` for every import of ``rmcore --help``."""
    result = subprocess.run(
        [python, "-X", "importtime", "-c", RUN_HELP],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:") :].split("|")
        rows.append((name.strip(), int(own), int(cumulative)))
    heavy = {name for name, _, _ in rows if name.split(".")[0] in HEAVY}
    return rows, heavy


def by_package(rows: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Self time summed per top-level package (rmcore and rmcore_plugins one level deeper)."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, own, _ in rows:
        parts = name.split(".")
        key = ".".join(parts[:2]) if parts[0] in ("rmcore", "rmcore_plugins") else parts[0]
        totals[key][0] += own
        totals[key][1] += 1
    return sorted(((k, v[0], v[1]) for k, v in totals.items()), key=lambda r: -r[1])


def main() -> int:
    """Measure, print the figures and the heaviest imports; exit 1 above the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="timed runs of each command")
    parser.add_argument("--imports", type=int, default=15, help="packages to list")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to measure")
    args = parser.parse_args()

    commands = {
        'python -c "import click"': [args.python, "-c", "import click"],
        "rmcore --help": [*rmcore_command(args.python), "--help"],
    }
    with tempfile.TemporaryDirectory(prefix="rmcore-pycache-") as cache:
        env = environment(cache)
        times = measure(commands, args.runs, env)
        rows, heavy = import_profile(args.python, env)
    baseline, rmcore = (statistics.median(times[name]) for name in commands)
    print(f"{args.runs} runs each, alternating, after 2 warm-up rounds ({args.python})")
    for name, values in times.items():
        print(
            f"  {name:28} median {statistics.median(values) * 1000:7.1f} ms"
            f"   min {min(values) * 1000:7.1f} ms   max {max(values) * 1000:7.1f} ms"
        )
    ratio = rmcore / baseline
    verdict = "within" if ratio <= TARGET else "ABOVE"
    print(f"  ratio (medians) {ratio:.2f}x: {verdict} the {TARGET:.0f}x target")

    total = sum(own for _, own, _ in rows)
    print(f"\nImports of `rmcore --help`: {len(rows)} modules, {total / 1000:.1f} ms in all")
    print("  numerical libraries imported: " + (", ".join(sorted(heavy)) or "none"))
    print(f"  heaviest packages (self time of their modules, top {args.imports}):")
    for name, own, count in by_package(rows)[: args.imports]:
        print(f"    {own / 1000:7.1f} ms  {count:4} module(s)  {name}")
    print(f"  heaviest single imports (cumulative, top {args.imports}):")
    for name, _, cumulative in sorted(rows, key=lambda r: -r[2])[: args.imports]:
        print(f"    {cumulative / 1000:7.1f} ms  {name}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
