"""Eight processes issuing random valid and invalid commands at once lose nothing.

The workload and the audit live in benchmarks/soak.py (run it for minutes there); this
test runs it briefly and checks the records itself as well: every command ended in a
success or a rule's refusal, and the log holds exactly what the accepted ones reported.
"""

from __future__ import annotations

import importlib.util
import os
import random
import sqlite3
from collections import Counter
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "soak_benchmark", Path(__file__).parents[1] / "benchmarks" / "soak.py"
)
soak = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(soak)

WORKERS = 8
SECONDS = float(os.environ.get("RMCORE_SOAK_SECONDS", "8"))
SEED = int(os.environ.get("RMCORE_SOAK_SEED", str(random.randrange(2**32))))


def test_eight_processes_issuing_random_commands_lose_nothing_and_double_nothing(
    tmp_path: Path, run_cli
):
    """verify and replay --check pass, refusals are rules' refusals, and every accepted
    command is in the log exactly once under its idempotency key."""
    db = tmp_path / "soak.db"
    records, problems, figures = soak.soak(db, workers=WORKERS, seconds=SECONDS, seed=SEED)
    assert problems == [], f"seed {SEED}: " + "\n".join(problems[:20])

    assert {r["worker"] for r in records} == set(range(WORKERS))
    assert all(r["code"] in (0, 1) for r in records), f"seed {SEED}"
    refusals = [r for r in records if r["code"] == 1]
    assert refusals and {r["cause"] for r in refusals} <= {"DomainError", "WhenError"}
    assert not [r for r in refusals if "locked" in r["message"] or "busy" in r["message"]]

    conn = sqlite3.connect(db)
    keyed = Counter(k for (k,) in conn.execute("SELECT idempotency_key FROM events"))
    conn.close()
    firsts = [r for r in records if r["code"] == 0 and not r["retry"] and r["kind"] != "listing"]
    for record in firsts:
        assert keyed[record["key"]] == len(soak.reported_positions(record["stdout"])), record
    for record in refusals:
        assert keyed[record["key"]] == 0, record
    assert sum(keyed.values()) == figures["log events"]

    kinds_accepted = {r["kind"] for r in firsts}
    kinds_refused = {r["kind"] for r in refusals}
    every_kind = set(soak.WEIGHTS) - {"listing"}
    assert kinds_accepted == every_kind, (
        f"seed {SEED}: never accepted {every_kind - kinds_accepted}"
    )
    assert kinds_refused == every_kind, f"seed {SEED}: never refused {every_kind - kinds_refused}"
    assert figures["retries"] > 0

    for check in (["verify"], ["replay", "--check"]):
        result = run_cli(*check, db=db)
        assert result.exit_code == 0, result.output
