"""``rmcore forget``: crypto-shredding of a person's name, email and comments.

The checks read the database file's own bytes: after forgetting, the plain text is in no
page of the file nor of its write-ahead log, while the chain still verifies, a replay
still equals the read models and the KPIs do not move.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import sqlite3
from pathlib import Path

import pytest
from conftest import PEOPLE
from hypothesis import given, settings
from hypothesis import strategies as st

from rmcore.engine import Engine
from rmcore.personal import ERASED, NONCE_BYTES, PREFIX

GRACE = next(p for p in PEOPLE if p["person_id"] == "grace")
TOM = next(p for p in PEOPLE if p["person_id"] == "tom")
ADA = next(p for p in PEOPLE if p["person_id"] == "ada")
GRACE_COMMENT = "Eye-opening."  # grace's feedback on ada-grace
TOM_REASON = "moved to another company"


def file_bytes(db: Path) -> bytes:
    """The database file and its -wal and -shm files, as they are on disk."""
    return b"".join(
        path.read_bytes() for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if path.exists()
    )


def ok(result) -> str:
    """The stdout of a command that must succeed."""
    assert result.exit_code == 0, result.output
    return result.stdout


def people(run_cli) -> dict[str, dict]:
    """Everyone, by id, as ``people --status all`` prints them."""
    rows = json.loads(ok(run_cli("people", "--status", "all", "--format", "json")))
    return {row["person_id"]: row for row in rows}


def kpis(run_cli, *options: str) -> list:
    """``rmcore kpi`` as JSON."""
    return json.loads(ok(run_cli("kpi", "--format", "json", *options)))


def test_the_log_never_holds_names_emails_or_comments_in_plain_text(populated_db: Path, raw_log):
    data = "\n".join(row[0] for row in raw_log.query("SELECT data FROM events"))
    for text in (GRACE["name"], GRACE["email"], ADA["name"], GRACE_COMMENT, TOM_REASON):
        assert text not in data
    assert "rmenc1:" in data


def test_forgetting_an_active_person_ends_their_pairs_and_erases_them_from_the_file(
    populated_db: Path, run_cli, raw_log
):
    assert GRACE["name"].encode() in file_bytes(populated_db)
    before = raw_log.count()
    result = run_cli("forget", "grace", "--at", "2025-06-01")
    assert "grace left the program and was forgotten" in ok(result)
    assert "1 active pair(s) ended" in result.stdout
    types = [row[0] for row in raw_log.query("SELECT type FROM events WHERE position > ?",
                                             (before,))]  # fmt: skip
    assert types == ["pair_ended", "left", "forgotten"]
    content = file_bytes(populated_db)
    for text in (GRACE["name"], GRACE["email"], GRACE_COMMENT):
        assert text.encode() not in content, text
    assert ADA["name"].encode() in content  # the others are untouched
    grace = people(run_cli)["grace"]
    assert (grace["name"], grace["email"], grace["status"]) == ("[erased]", "[erased]", "forgotten")
    assert people(run_cli)["ada"]["name"] == ADA["name"]
    assert "OK:" in ok(run_cli("verify", "--deep"))


def test_forgetting_someone_who_left_changes_no_kpi(populated_db: Path, run_cli):
    dates = ("--as-of", "2025-03-31"), ()
    before = [kpis(run_cli, *date) for date in dates]
    ok(run_cli("forget", "tom"))
    assert [kpis(run_cli, *date) for date in dates] == before
    assert TOM_REASON.encode() not in file_bytes(populated_db)


def test_history_shows_the_forgotten_fields_as_erased_and_keeps_everything_else(
    populated_db: Path, run_cli
):
    ok(run_cli("forget", "grace"))
    rows = json.loads(ok(run_cli("history", "grace", "--format", "json")))
    joined = rows[0]["data"]
    assert (joined["name"], joined["email"], joined["role"]) == ("[erased]", "[erased]", "mentee")
    comments = [r["data"]["comment"] for r in rows if r["type"] == "feedback_given"]
    assert comments == ["[erased]", ""]  # grace's comment; ada's feedback had none
    assert [r["type"] for r in rows][-1] == "forgotten"


def test_a_replay_after_forgetting_equals_the_read_models_and_still_reads_the_others(
    populated_db: Path, run_cli
):
    ok(run_cli("forget", "grace"))
    ok(run_cli("forget", "tom"))
    before = people(run_cli)
    ok(run_cli("replay"))
    assert people(run_cli) == before
    assert before["ada"]["email"] == ADA["email"]
    assert "Replay check passed" in ok(run_cli("replay", "--check"))


def test_forgetting_twice_records_nothing_more(populated_db: Path, run_cli, raw_log):
    ok(run_cli("forget", "tom"))
    count = raw_log.count()
    assert "tom was already forgotten" in ok(run_cli("forget", "tom"))
    assert raw_log.count() == count


def damage_table(path: Path, table: str) -> None:
    """Overwrite the first page of ``table`` (a small table has only that one) with bytes
    SQLite cannot read as a page."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (page,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
        ).fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
    with path.open("r+b") as handle:
        handle.seek((page - 1) * size)
        handle.write(b"\xff" * 64)


def test_forgetting_in_a_damaged_file_records_the_erasure_and_warns_it_is_not_compacted(
    populated_db: Path, run_cli, raw_log
):
    # tom has left: forgetting him reads nothing of the sessions, which compaction reads
    damage_table(populated_db, "sessions")
    result = run_cli("forget", "tom")
    assert result.exit_code == 0, result.output
    assert "tom was forgotten" in result.stdout
    assert result.stderr == (
        "Warning: the file could not be compacted, so it may still hold the erased text in "
        "unused pages: the file is damaged (database disk image is malformed); run it again "
        "once the file is repaired (`rmcore forget tom`).\n"
    )
    assert raw_log.query("SELECT type FROM events ORDER BY position DESC LIMIT 1") == [
        ("forgotten",)
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("forget", "nobody"), "nobody has not joined this program"),
        (("forget", "grace", "--at", "2024-01-01"), "before"),
        (("--program", "other", "forget", "grace"), "grace has not joined this program"),
    ],
)
def test_a_refused_forget_appends_nothing_and_erases_nothing(
    populated_db: Path, run_cli, raw_log, args, message
):
    before = raw_log.rows()
    result = run_cli(*args)
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output
    assert raw_log.rows() == before
    assert people(run_cli)["grace"]["name"] == GRACE["name"]


def test_a_retry_with_the_same_idempotency_key_records_nothing(populated_db, run_cli, raw_log):
    ok(run_cli("forget", "tom", "--idempotency-key", "erase-tom"))
    count = raw_log.count()
    again = ok(run_cli("forget", "tom", "--idempotency-key", "erase-tom"))
    assert "tom was already forgotten; nothing appended" in again
    assert raw_log.count() == count


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_email_outbox_loses_every_message_to_or_about_the_forgotten_person(
    populated_db: Path, run_cli, raw_log
):
    down = run_cli("notify", "--smtp", f"smtp://127.0.0.1:{closed_port()}")
    assert down.exit_code == 1  # the messages wait in the outbox
    queued = raw_log.query("SELECT count(*) FROM notify_email_outbox")[0][0]
    assert queued > 0
    assert GRACE["email"].encode() in file_bytes(populated_db)
    ok(run_cli("forget", "grace"))
    content = file_bytes(populated_db)
    for text in (GRACE["name"], GRACE["email"]):
        assert text.encode() not in content, text
    remaining = raw_log.query("SELECT recipient FROM notify_email_outbox")
    assert remaining and all("grace" not in recipient for (recipient,) in remaining)
    assert ADA["email"] in {recipient for (recipient,) in remaining}


def test_nothing_more_is_recorded_about_a_forgotten_persons_pairs(populated_db, run_cli, raw_log):
    ok(run_cli("forget", "grace", "--at", "2025-06-01"))
    before = raw_log.rows()
    for args in (
        ("feedback", "ada-grace", "--by", "ada", "--rating", "4", "--comment", "late note",
         "--at", "2025-05-01"),
        ("session", "ada-grace", "--minutes", "30", "--at", "2025-05-01"),
    ):  # fmt: skip
        refused = run_cli(*args)
        assert refused.exit_code == 1
        assert "grace was forgotten" in refused.stderr
    assert raw_log.rows() == before


def test_forget_is_refused_while_a_plugin_is_disabled(populated_db, run_cli, raw_log):
    before = raw_log.rows()
    result = run_cli("--disable-plugin", "notify_email", "forget", "grace")
    assert result.exit_code == 1
    assert "notify_email is disabled" in result.stderr
    assert raw_log.rows() == before
    assert people(run_cli)["grace"]["name"] == GRACE["name"]


def test_a_first_forget_of_someone_already_forgotten_can_be_retried_with_its_key(
    populated_db, run_cli, raw_log
):
    ok(run_cli("forget", "tom"))
    ok(run_cli("forget", "tom", "--idempotency-key", "k1"))
    count = raw_log.count()
    assert "already forgotten" in ok(run_cli("forget", "tom", "--idempotency-key", "k1"))
    assert raw_log.count() == count


def test_an_old_key_file_does_not_bring_a_forgotten_person_back(populated_db, run_cli, tmp_path):
    keys = tmp_path / "before.keys"
    ok(run_cli("export", "--out", str(tmp_path / "before.jsonl"), "--keys-out", str(keys)))
    ok(run_cli("forget", "grace"))
    ok(run_cli("import-log", str(tmp_path / "before.jsonl"), "--keys", str(keys)))
    rows = json.loads(ok(run_cli("history", "grace", "--format", "json")))
    assert rows[0]["data"]["name"] == "[erased]"
    assert GRACE["name"].encode() not in file_bytes(populated_db)
    assert "Replay check passed" in ok(run_cli("replay", "--check"))


def test_an_export_of_a_forgotten_person_imported_with_old_keys_is_erased_there_too(
    populated_db, run_cli, tmp_path
):
    keys = tmp_path / "before.keys"
    ok(run_cli("export", "--out", str(tmp_path / "before.jsonl"), "--keys-out", str(keys)))
    ok(run_cli("forget", "grace"))
    after = tmp_path / "after.jsonl"
    ok(run_cli("export", "--out", str(after)))
    target = tmp_path / "target.db"
    ok(run_cli("init", db=target))
    ok(run_cli("import-log", str(after), "--keys", str(keys), db=target))
    listed = json.loads(ok(run_cli("people", "--status", "all", "--format", "json", db=target)))
    by_id = {row["person_id"]: row for row in listed}
    assert by_id["grace"]["name"] == "[erased]" and by_id["ada"]["name"] == ADA["name"]
    assert GRACE_COMMENT.encode() not in file_bytes(target)
    assert "Replay check passed" in ok(run_cli("replay", "--check", db=target))


def test_keys_imported_after_their_events_make_the_names_readable(populated_db, run_cli, tmp_path):
    export_file, keys = tmp_path / "all.jsonl", tmp_path / "all.keys"
    ok(run_cli("export", "--out", str(export_file), "--keys-out", str(keys)))
    target = tmp_path / "target.db"
    ok(run_cli("init", db=target))
    ok(run_cli("import-log", str(export_file), db=target))
    listed = json.loads(ok(run_cli("people", "--format", "json", db=target)))
    assert {row["name"] for row in listed} == {"[sealed]"}
    ok(run_cli("import-log", str(export_file), "--keys", str(keys), db=target))
    listed = json.loads(ok(run_cli("people", "--format", "json", db=target)))
    assert ADA["name"] in {row["name"] for row in listed}
    assert "Replay check passed" in ok(run_cli("replay", "--check", db=target))


def test_no_message_is_built_about_someone_forgotten_since_the_event(
    populated_db, run_cli, raw_log
):
    ok(run_cli("forget", "grace"))
    run_cli("notify", "--smtp", f"smtp://127.0.0.1:{closed_port()}")
    built = raw_log.query("SELECT subject, message FROM notify_email_outbox")
    assert built  # the others' messages wait in the outbox
    assert not any(b"[erased]" in bytes(message) or "[erased]" in subject
                   for subject, message in built)  # fmt: skip


def test_the_outbox_keeps_the_nudges_of_a_pair_whose_id_extends_a_forgotten_pair(tmp_path):
    import sqlite3

    from rmcore_plugins.notify_email import outbox

    conn = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
    conn.execute("CREATE TABLE events (program TEXT, stream TEXT, position INTEGER)")
    outbox.ensure_table(conn)
    columns = "program, key, kind, person_id, sender, recipient, subject, message, status"
    values = "'p', ?, 'nudge', 'x', 's', 'r', 'subj', x'00', 'sent', '2025-03-01'"
    for key in ("nudge.sam-li.2025-03-01.sam", "nudge.sam-li.wei.2025-03-01.wei"):
        conn.execute(
            f"INSERT INTO {outbox.TABLE} ({columns}, created_at) VALUES ({values})", (key,)
        )
    outbox.forget(conn, "p", "li", ["sam-li"])
    left = conn.execute(f"SELECT key FROM {outbox.TABLE}").fetchall()
    assert left == [("nudge.sam-li.wei.2025-03-01.wei",)]


def test_a_point_in_time_copy_shows_someone_forgotten_since_as_erased(
    populated_db, run_cli, tmp_path
):
    """Grace was in the program on that date and forgotten later: the copy cannot read
    her any more, and says why ([erased], not [sealed] as for a key it never had)."""
    ok(run_cli("forget", "grace"))
    copy = tmp_path / "march.db"
    ok(run_cli("replay", "--as-of", "2025-03-31", "--out", str(copy)))
    listed = json.loads(ok(run_cli("people", "--status", "all", "--format", "json", db=copy)))
    by_id = {row["person_id"]: row for row in listed}
    assert (by_id["grace"]["name"], by_id["grace"]["email"]) == ("[erased]", "[erased]")
    assert by_id["ada"]["name"] == ADA["name"]


@settings(max_examples=50, deadline=None)
@given(rows=st.lists(st.tuples(st.text(max_size=40), st.text(max_size=40)), min_size=1, max_size=8))
def test_values_sealed_in_bulk_open_as_values_sealed_one_at_a_time(tmp_path_factory, rows):
    db = tmp_path_factory.mktemp("bulk") / "rmcore.db"
    with Engine.open(db, create=True) as engine, engine.store.transaction():
        keyring = engine.keyring
        subjects = [f"person:p{i}" for i in range(len(rows))]
        sealed = keyring.seal_new_subjects("default", ("name", "email"), list(zip(subjects, rows)))
        for subject, plain, closed in zip(subjects, rows, sealed):
            for field, value, sealed_value in zip(("name", "email"), plain, closed):
                if not value:
                    assert sealed_value == value
                    continue
                assert sealed_value.startswith(PREFIX)
                raw = base64.urlsafe_b64decode(sealed_value[len(PREFIX) :])
                assert len(raw) == NONCE_BYTES + len(value.encode()) + 16  # nonce, text, tag
                assert keyring.open_value("default", subject, field, sealed_value) == value
                # bound to its field, as a value sealed one at a time is
                other = "email" if field == "name" else "name"
                assert keyring.open_value("default", subject, other, sealed_value) == ERASED
        keys = engine.conn.execute("SELECT subject, key FROM subject_keys").fetchall()
        assert sorted(subject for subject, _ in keys) == sorted(subjects)
        assert len({key for _, key in keys}) == len(subjects)  # a key per subject
        nonces = [value[len(PREFIX) : len(PREFIX) + 16] for row in sealed for value in row if value]
        assert len(set(nonces)) == len(nonces)
