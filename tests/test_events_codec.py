"""The codec: canonical JSON round trips for every core event, strictness, upcasting."""

from __future__ import annotations

import json
import sqlite3
import types
import typing
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmcore.codec import Codec, DecodeError, canonical_json
from rmcore.engine import Engine
from rmcore.events import (
    CORE_EVENT_TYPES,
    Event,
    EventRegistry,
    Joined,
    Left,
    SessionHeld,
)
from rmcore.store import NewEvent

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)


def strategy_for(annotation: Any) -> st.SearchStrategy:
    """A hypothesis strategy for one attrs field type of an event class."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(strategy_for(arg) for arg in args))
    if annotation is type(None):
        return st.none()
    if annotation is Any:
        return JSON_VALUES
    if annotation is str:
        return st.text(max_size=40)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers()
    if annotation is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return st.lists(strategy_for(args[0]), max_size=5).map(tuple)
    if origin is dict:
        return st.dictionaries(strategy_for(args[0]), JSON_VALUES, max_size=4)
    raise AssertionError(f"no strategy for field type {annotation!r}: extend strategy_for")


def events_of(cls: type[Event]) -> st.SearchStrategy:
    """Events of ``cls`` with every field drawn from its declared type."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: strategy_for(hints[f.name]) for f in attrs.fields(cls)}
    return st.builds(cls, **fields)


@pytest.fixture(scope="module")
def codec() -> Codec:
    """A codec over the core event types."""
    return Codec(EventRegistry())


def test_the_round_trip_property_covers_every_registered_core_type() -> None:
    """The parametrised property below runs for exactly the types the registry knows."""
    assert sorted(cls.type for cls in CORE_EVENT_TYPES) == EventRegistry().names()


@pytest.mark.parametrize("cls", CORE_EVENT_TYPES, ids=lambda cls: cls.type)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_core_event_survives_encode_then_decode(
    codec: Codec, cls: type[Event], data: st.DataObject
) -> None:
    """encode -> decode gives an equal event of the same class."""
    event = data.draw(events_of(cls))
    decoded = codec.decode(cls.type, cls.schema, codec.encode(event))
    assert type(decoded) is cls
    assert decoded == event


@pytest.mark.parametrize("cls", CORE_EVENT_TYPES, ids=lambda cls: cls.type)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_encoding_is_canonical_sorted_compact_and_repeatable(
    codec: Codec, cls: type[Event], data: st.DataObject
) -> None:
    """Sorted keys, no whitespace between tokens, and the same bytes every time."""
    event = data.draw(events_of(cls))
    encoded = codec.encode(event)
    assert encoded == codec.encode(event)
    payload = json.loads(encoded)
    assert list(payload) == sorted(payload)
    assert encoded == json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert encoded == canonical_json(payload)
    assert set(payload) == {f.name for f in attrs.fields(cls)}


def test_canonical_json_has_no_whitespace_and_keeps_unicode() -> None:
    """Nested keys are sorted too; non-ASCII text is kept as itself."""
    text = canonical_json({"b": [1, {"z": 2, "a": "é"}], "a": None})
    assert text == '{"a":null,"b":[1,{"a":"é","z":2}]}'


def test_canonical_json_refuses_nan() -> None:
    """NaN is not JSON, so it can never reach a hashed payload."""
    with pytest.raises(ValueError):
        canonical_json({"score": float("nan")})


def test_a_payload_with_an_extra_key_is_refused_on_decode(codec: Codec) -> None:
    """Unknown fields mean the payload is not what this code thinks it is."""
    good = codec.encode(Left(person_id="ada", reason="retired"))
    codec.decode("left", 1, good)
    payload = json.loads(good)
    payload["surprise"] = 1
    with pytest.raises(DecodeError, match="surprise"):
        codec.decode("left", 1, canonical_json(payload))


def test_a_payload_missing_a_required_field_is_refused(codec: Codec) -> None:
    """A joined event without an email does not decode."""
    payload = json.loads(
        codec.encode(Joined(person_id="ada", name="Ada", email="a@example.org", role="mentor"))
    )
    del payload["email"]
    with pytest.raises(DecodeError, match="email"):
        codec.decode("joined", 1, canonical_json(payload))


def test_an_unknown_event_type_is_refused(codec: Codec) -> None:
    """A type name nobody registered cannot be decoded."""
    with pytest.raises(DecodeError, match="unknown event type"):
        codec.decode("teleported", 1, "{}")


def test_a_payload_that_is_not_json_is_refused(codec: Codec) -> None:
    """Broken JSON is a DecodeError, not a crash."""
    with pytest.raises(DecodeError, match="not JSON"):
        codec.decode("left", 1, "{person_id")


@pytest.mark.parametrize(
    "data",
    ['{"person_id":"ada","reason":' + "9" * 5000 + "}", "[" * 100_000 + "]" * 100_000],
    ids=["an-integer-of-5000-digits", "nested-100000-deep"],
)
@pytest.mark.parametrize("method", ["decode", "check"])
def test_json_python_cannot_hold_is_refused_as_not_json(codec: Codec, data: str, method: str):
    """Python refuses to read integers over 4,300 digits and very deep nesting; a tampered
    payload like that is named, not a traceback."""
    with pytest.raises(DecodeError, match="not JSON"):
        getattr(codec, method)("left", 1, data)


SCHEMA_1_SESSION = canonical_json({"hours": 1.5, "pair_id": "ada-grace", "topics": ["prompting"]})


def append_schema_1_session(engine: Engine) -> int:
    """Write a session_held payload of schema 1 into the log; return its position."""
    with engine.store.transaction():
        (stored,) = engine.store.append(
            "default",
            [
                NewEvent(
                    stream="pair:ada-grace",
                    type="session_held",
                    schema=1,
                    occurred_at="2025-03-03T15:00:00Z",
                    data=SCHEMA_1_SESSION,
                )
            ],
            actor="legacy-import",
        )
    return stored.position


def test_a_schema_1_session_in_the_log_decodes_as_90_minutes_virtual(populated_db: Path) -> None:
    """The v1 -> v2 upcaster turns ``hours: 1.5`` into 90 minutes with the default mode."""
    with Engine.open(populated_db) as engine:
        position = append_schema_1_session(engine)
    conn = sqlite3.connect(populated_db)
    type_name, schema, data = conn.execute(
        "SELECT type, schema, data FROM events WHERE position = ?", (position,)
    ).fetchone()
    conn.close()
    assert (type_name, schema, data) == ("session_held", 1, SCHEMA_1_SESSION)
    event = Codec(EventRegistry()).decode(type_name, schema, data)
    assert event == SessionHeld(
        pair_id="ada-grace", minutes=90, mode="virtual", topics=("prompting",)
    )


def test_replaying_a_log_with_a_schema_1_session_puts_90_minutes_in_sessions(
    populated_db: Path, run_cli
) -> None:
    """Projections upcast old payloads too: a full replay folds the v1 row as 90 minutes."""
    with Engine.open(populated_db) as engine:
        position = append_schema_1_session(engine)
    result = run_cli("replay")
    assert result.exit_code == 0, result.stderr
    conn = sqlite3.connect(populated_db)
    row = conn.execute(
        "SELECT pair_id, minutes, mode FROM sessions WHERE position = ?", (position,)
    ).fetchone()
    conn.close()
    assert row == ("ada-grace", 90, "virtual")
    assert run_cli("replay", "--check").exit_code == 0
    assert run_cli("verify").exit_code == 0


def test_a_payload_from_a_newer_schema_is_refused_with_a_clear_message(codec: Codec) -> None:
    """Code that does not know schema 3 of session_held says so instead of guessing."""
    payload = canonical_json({"minutes": 30, "mode": "virtual", "pair_id": "p", "topics": []})
    with pytest.raises(DecodeError, match=r"schema 3 is newer than this code knows \(2\)"):
        codec.decode("session_held", 3, payload)


def test_an_old_schema_without_an_upcaster_is_refused(codec: Codec) -> None:
    """A schema below 1 has no upgrade path and fails loudly."""
    with pytest.raises(DecodeError, match="no upcaster"):
        codec.decode("session_held", 0, SCHEMA_1_SESSION)
