"""The SQLite event log: positions, versions, the hash chain, guards and reads."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timedelta, timezone

import pytest

from rmcore import store
from rmcore.engine import Engine
from rmcore.store import (
    GENESIS_HASH,
    ConcurrencyError,
    NewEvent,
    StoreError,
    canonical_envelope,
    chain_hash,
    utc_now,
)


def new(
    stream: str,
    type: str = "left",
    data: str = '{"person_id":"x","reason":""}',
    occurred_at: str = "2025-01-06T09:00:00Z",
    expected_version: int | None = None,
) -> NewEvent:
    """A small encoded event for the store."""
    return NewEvent(stream, type, 1, occurred_at, data, expected_version)


def append(engine: Engine, events: list[NewEvent], program: str = "default", **kwargs):
    """Append in one write transaction."""
    with engine.store.transaction():
        return engine.store.append(program, events, actor=kwargs.pop("actor", "hr"), **kwargs)


def test_append_assigns_gap_free_positions_and_per_stream_versions(engine: Engine, raw_log):
    """Positions count 1, 2, 3... across the log; versions count per stream."""
    append(engine, [new("person:ada"), new("person:grace")])
    append(engine, [new("person:ada"), new("pair:ada-grace"), new("person:ada")])
    append(engine, [new("person:ada")], program="spring")
    rows = raw_log.query("SELECT position, program, stream, version FROM events ORDER BY position")
    assert rows == [
        (1, "default", "person:ada", 1),
        (2, "default", "person:grace", 1),
        (3, "default", "person:ada", 2),
        (4, "default", "pair:ada-grace", 1),
        (5, "default", "person:ada", 3),
        (6, "spring", "person:ada", 1),
    ]


def test_the_first_prev_hash_is_64_zeros_and_each_row_links_to_the_one_before(
    engine: Engine, raw_log
):
    """prev_hash of row n is hash of row n-1, and each hash is sha256(prev + envelope)."""
    append(engine, [new("person:ada"), new("person:grace")], idempotency_key="batch-1")
    append(engine, [new("pair:ada-grace")])
    rows = raw_log.query(
        "SELECT position, event_id, program, stream, version, type, schema, occurred_at,"
        " recorded_at, actor, idempotency_key, data, prev_hash, hash FROM events"
        " ORDER BY position"
    )
    assert rows[0][12] == GENESIS_HASH == "0" * 64
    previous = GENESIS_HASH
    for row in rows:
        assert row[12] == previous
        assert row[13] == chain_hash(row[12], canonical_envelope(*row[:12]))
        previous = row[13]
    assert len({row[13] for row in rows}) == 3


def test_events_appended_together_share_recorded_at_and_idempotency_key(engine: Engine):
    """One append is one moment in system time and carries one key."""
    stored = append(engine, [new("person:ada"), new("person:grace")], idempotency_key="k-7")
    assert stored[0].recorded_at == stored[1].recorded_at
    assert [e.idempotency_key for e in stored] == ["k-7", "k-7"]
    assert engine.store.find_by_idempotency_key("default", "k-7") == stored
    assert engine.store.find_by_idempotency_key("default", "k-8") == []
    assert engine.store.find_by_idempotency_key("spring", "k-7") == []


def test_recorded_at_is_the_utc_time_of_the_append_to_the_microsecond(engine: Engine):
    """``recorded_at`` reads ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` and falls within the append."""
    before = datetime.now(timezone.utc)
    recorded = append(engine, [new("person:ada")])[0].recorded_at
    after = datetime.now(timezone.utc)
    moment = datetime.strptime(recorded, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert len(recorded) == 27
    assert before <= moment <= after


def _as_datetime_writes_it(nanoseconds: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=nanoseconds // 1000)
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"


@pytest.mark.parametrize(
    "nanoseconds", [0, -1_000, 1_700_000_000_123_456_789, 253_402_300_799_999_999_000, -31 * 10**18]
)
def test_recorded_at_keeps_its_fixed_width_form_whatever_the_clock_reads(
    monkeypatch: pytest.MonkeyPatch, nanoseconds: int
):
    """Before 1970, the last microsecond of 9999 and a year below 1000 all read as datetime
    writes them: four-digit year, six-digit fraction."""
    monkeypatch.setattr(store.time, "time_ns", lambda: nanoseconds)
    assert utc_now() == _as_datetime_writes_it(nanoseconds)


def test_a_leap_second_from_the_system_clock_is_not_written_as_second_60(
    monkeypatch: pytest.MonkeyPatch,
):
    """A clock that counts leap seconds (TZ=right/...) may report 23:59:60."""
    nanoseconds = 1_483_228_799_500_000_000  # 2016-12-31T23:59:59.5Z
    leap = time.struct_time((2016, 12, 31, 23, 59, 60, 5, 366, 0))
    monkeypatch.setattr(store.time, "time_ns", lambda: nanoseconds)
    monkeypatch.setattr(store.time, "gmtime", lambda seconds=None: leap)
    assert utc_now() == _as_datetime_writes_it(nanoseconds) == "2016-12-31T23:59:59.500000Z"


def test_update_on_the_event_log_is_refused_by_a_trigger(engine: Engine, raw_log):
    """The log is append-only, even for someone with plain sqlite3."""
    append(engine, [new("person:ada")])
    before = raw_log.rows()
    conn = sqlite3.connect(engine.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE events SET actor = 'mallory' WHERE position = 1")
    conn.close()
    assert raw_log.rows() == before


def test_delete_on_the_event_log_is_refused_by_a_trigger(engine: Engine, raw_log):
    """Rows cannot be removed from the log either."""
    append(engine, [new("person:ada"), new("person:grace")])
    before = raw_log.rows()
    conn = sqlite3.connect(engine.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM events WHERE position = 2")
    conn.close()
    assert raw_log.rows() == before


def test_append_outside_a_transaction_raises(engine: Engine, raw_log):
    """Appending needs BEGIN IMMEDIATE first, so read-then-write cannot race."""
    with pytest.raises(StoreError, match="transaction"):
        engine.store.append("default", [new("person:ada")], actor="hr")
    assert raw_log.count() == 0


def test_a_second_transaction_on_the_same_connection_is_refused(engine: Engine):
    """Nested write transactions would silently merge; they are refused."""
    with (
        engine.store.transaction(),
        pytest.raises(StoreError, match="already open"),
        engine.store.transaction(),
    ):
        pass


def test_an_expected_version_mismatch_raises_and_appends_nothing(engine: Engine, raw_log):
    """Optimistic concurrency: a stale expected_version rolls back the whole append."""
    append(engine, [new("person:ada")])
    before = raw_log.rows()
    with pytest.raises(ConcurrencyError, match="person:ada is at version 1, expected 0"):
        append(engine, [new("person:grace"), new("person:ada", expected_version=0)])
    assert raw_log.rows() == before
    append(engine, [new("person:ada", expected_version=1)])
    assert raw_log.query("SELECT max(version) FROM events WHERE stream = 'person:ada'") == [(2,)]


def test_a_failed_append_does_not_poison_the_version_cache(engine: Engine, raw_log):
    """After a rolled-back append, the next one gets the right versions again."""
    append(engine, [new("person:ada")])
    with pytest.raises(ConcurrencyError):
        append(engine, [new("person:ada"), new("person:ada", expected_version=5)])
    append(engine, [new("person:ada")])
    assert raw_log.query("SELECT position, version FROM events ORDER BY position") == [
        (1, 1),
        (2, 2),
    ]


def test_an_exception_inside_the_transaction_rolls_back_appended_events(engine: Engine, raw_log):
    """Events appended before an error in the same transaction are not kept."""
    with pytest.raises(RuntimeError), engine.store.transaction():
        engine.store.append("default", [new("person:ada")], actor="hr")
        raise RuntimeError("decided against it")
    assert raw_log.count() == 0
    assert engine.store.head() == (0, GENESIS_HASH)


def test_head_is_the_last_position_and_hash(engine: Engine):
    """An empty log has head (0, 64 zeros); afterwards the newest row."""
    assert engine.store.head() == (0, GENESIS_HASH)
    stored = append(engine, [new("person:ada"), new("person:grace")])
    assert engine.store.head() == (2, stored[-1].hash)


def test_read_filters_by_position_program_type_and_until(engine: Engine):
    """read() streams events after ``since`` with optional filters, in log order."""
    append(engine, [new("person:ada", type="joined"), new("person:grace", type="joined")])
    append(engine, [new("person:ada", type="left")])
    append(engine, [new("person:ada", type="joined")], program="spring")
    assert [e.position for e in engine.store.read()] == [1, 2, 3, 4]
    assert [e.position for e in engine.store.read(2)] == [3, 4]
    assert [e.position for e in engine.store.read(until=2)] == [1, 2]
    assert [e.position for e in engine.store.read(program="spring")] == [4]
    assert [e.position for e in engine.store.read(types=["left"])] == [3]
    assert [e.position for e in engine.store.read(program="default", types=["joined"])] == [1, 2]
    assert [e.position for e in engine.store.read(batch=1)] == [1, 2, 3, 4]


def test_read_returns_the_full_envelope(engine: Engine):
    """Each stored event carries every envelope field as stored."""
    (stored,) = append(engine, [new("person:ada")], actor="ops", idempotency_key="k")
    (read,) = engine.store.read()
    assert read == stored
    assert read.envelope()["actor"] == "ops"
    assert read.envelope()["data"] == '{"person_id":"x","reason":""}'


def test_scan_yields_batches_of_projection_columns(engine: Engine):
    """scan() feeds projections with plain tuples in batches."""
    append(engine, [new(f"person:p{i}") for i in range(5)])
    batches = list(engine.store.scan(1, batch=2))
    assert [len(b) for b in batches] == [2, 2]
    first = batches[0][0]
    assert first[0] == 2
    assert first[1:4] == ("default", "left", 1)


def test_read_stream_returns_one_streams_events_in_version_order(engine: Engine):
    """read_stream() is the history of one entity in one program."""
    append(engine, [new("person:ada"), new("person:grace"), new("person:ada")])
    append(engine, [new("person:ada")], program="spring")
    events = engine.store.read_stream("default", "person:ada")
    assert [(e.position, e.version) for e in events] == [(1, 1), (3, 2)]
    assert engine.store.read_stream("default", "person:nobody") == []


@pytest.mark.parametrize(
    ("field", "kwargs", "event"),
    [
        ("program", {"program": "spring\n2025"}, new("person:ada")),
        ("actor", {"actor": "hr\x00"}, new("person:ada")),
        ("idempotency key", {"idempotency_key": "k\x1f1"}, new("person:ada")),
        ("stream", {}, new("person:ada\x1fx")),
        ("occurred_at", {}, new("person:ada", occurred_at="2025-01-06\t09:00")),
        ("program", {"program": ""}, new("person:ada")),
    ],
    ids=["program", "actor", "idempotency-key", "stream", "occurred-at", "empty-program"],
)
def test_control_characters_in_envelope_fields_are_refused(
    engine: Engine, raw_log, field, kwargs, event
):
    """Envelope text is joined with 0x1f for hashing, so control characters are refused."""
    program = kwargs.pop("program", "default")
    with pytest.raises(StoreError, match=field):
        append(engine, [event], program=program, **kwargs)
    assert raw_log.count() == 0
