"""Verify's quick payload check accepts only what the full decode accepts, and no verdict
changes: the same first bad position and reason with the quick path on or off."""

from __future__ import annotations

import datetime
import json
import shutil
import sqlite3
import tempfile
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal
from unittest import mock

import attrs
import pytest
from attrs import field, frozen
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmcore import chain
from rmcore.chain import Segment, check_chain, check_segment, merge
from rmcore.codec import Codec, DecodeError
from rmcore.engine import Engine
from rmcore.events import (
    CORE_EVENT_TYPES,
    Event,
    EventRegistry,
    FeedbackGiven,
    Joined,
    Paired,
    PersonEvent,
    SessionHeld,
    _strings,
)
from rmcore.fastcheck import acceptor
from rmcore.store import NewEvent, SQLiteEventStore, canonical_envelope, chain_hash

# ------------------------------------------------------------------ plugin-like event types


@frozen(kw_only=True)
class Badge(PersonEvent):
    """A plugin type the quick check models: optional scalars and free-form values."""

    type: ClassVar[str] = "acme_badge"
    label: str
    level: int | None = None
    weight: float = 1.0
    public: bool = True
    extra: Any = None
    tags: tuple[str, ...] = ()
    notes: dict[str, Any] = field(factory=dict)


@frozen(kw_only=True)
class Rated(PersonEvent):
    """A plugin type whose validator refuses values of the right JSON type."""

    type: ClassVar[str] = "acme_rated"
    stars: int = field(validator=attrs.validators.in_(range(1, 6)))


@frozen(kw_only=True)
class Checked(PersonEvent):
    """A plugin type that refuses some payloads after construction."""

    type: ClassVar[str] = "acme_checked"
    code: str

    def __attrs_post_init__(self) -> None:
        if not self.code.isupper():
            raise ValueError("code must be upper case")


@frozen
class Address:
    street: str


@frozen(kw_only=True)
class Moved(PersonEvent):
    """A plugin type with a nested attrs class."""

    type: ClassVar[str] = "acme_moved"
    to: Address


PLUGIN_TYPES: tuple[type[Event], ...] = (Badge, Rated, Checked, Moved)
ALL_TYPES = CORE_EVENT_TYPES + PLUGIN_TYPES


def full_registry() -> EventRegistry:
    registry = EventRegistry()
    for cls in PLUGIN_TYPES:
        registry.register(cls)
    return registry


CODEC = Codec(full_registry())

# ------------------------------------------------------------------------------- strategies

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([0, 1, -1, 2**63, 10**400, True, False])
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["", "12", "1.5", "true", "null", "\ufeff"])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
# One value of each JSON kind that a field of another kind might wrongly let through.
CONFUSERS = st.sampled_from(
    ["abc", "", "12", 0, 1, True, False, 1.5, 10**400, None, [], ["a"], [1], {}, {"a": 1}]
)
JSON_VALUES = CONFUSERS | JSON_VALUES
# Values only code (not JSON text) produces: the quick check must stay sound for them too.
PYTHON_VALUES = JSON_VALUES | st.sampled_from(
    [(), ("a",), ("a", 1), {1: "a"}, {"a": ()}, b"bytes", frozenset(), object(), 1j]
)


def value_for(annotation: Any) -> st.SearchStrategy:
    """A valid value of one field type, as the unstructured payload would hold it."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(value_for(arg) for arg in args))
    if annotation is type(None):
        return st.none()
    if annotation is Any:
        return JSON_VALUES
    if annotation in (str, int, bool):
        return st.from_type(annotation)
    if annotation is float:
        return st.floats(allow_nan=False)
    if origin is tuple:
        return st.lists(st.text(max_size=8), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3)
    if attrs.has(annotation):
        return st.fixed_dictionaries({"street": st.text(max_size=8)})
    raise AssertionError(f"no strategy for {annotation!r}")


def valid_payload(cls: type) -> st.SearchStrategy[dict[str, Any]]:
    """A payload of ``cls`` with every field of its declared type, some defaults left out."""
    hints = typing.get_type_hints(cls)
    required = {
        f.name: value_for(hints[f.name]) for f in attrs.fields(cls) if f.default is attrs.NOTHING
    }
    optional = {
        f.name: value_for(hints[f.name])
        for f in attrs.fields(cls)
        if f.default is not attrs.NOTHING
    }
    return st.fixed_dictionaries(required, optional=optional)


@st.composite
def mutated_payload(draw: st.DrawFn, cls: type, values: st.SearchStrategy = JSON_VALUES) -> Any:
    """A valid payload with keys dropped, keys added and values of other types put in."""
    payload = draw(valid_payload(cls))
    changes = st.sampled_from(["drop", "add", "retype", "retype", "nest"])
    for change in draw(st.lists(changes, max_size=4)):
        keys = sorted(payload)
        if change == "drop" and keys:
            del payload[draw(st.sampled_from(keys))]
        elif change == "add":
            payload[draw(st.text(max_size=8) | st.sampled_from(["type", "schema", "stream"]))] = (
                draw(values)
            )
        elif change == "retype" and keys:
            payload[draw(st.sampled_from(keys))] = draw(values)
        elif change == "nest" and keys:
            key = draw(st.sampled_from(keys))
            payload[key] = draw(st.sampled_from([[payload[key]], {"v": payload[key]}]))
    shape = draw(st.sampled_from(["dict"] * 8 + ["in a list", "other value"]))
    if shape == "dict":
        return payload
    return [payload] if shape == "in a list" else draw(values)


def outcome(fn: Any, *args: Any) -> tuple:
    """What a call did: returned, or raised which exception with which message."""
    try:
        fn(*args)
    except Exception as exc:  # every kind, so that any difference shows
        return ("raised", type(exc), str(exc))
    return ("returned",)


# ----------------------------------------------------------------- which types are modelled


@pytest.mark.parametrize("cls", CORE_EVENT_TYPES + (Badge,), ids=lambda cls: cls.type)
def test_every_core_type_and_a_plain_plugin_type_get_the_quick_check(cls: type) -> None:
    """Without an acceptor every payload of the type would take the slow path."""
    assert acceptor(cls) is not None


@frozen
class WithConverter:
    count: int = field(converter=int)


@frozen
class WithInitFalse:
    name: str
    seen: int = field(init=False, default=0)


@frozen
class WithPrivateField:
    _secret: str


@frozen
class WithPreInit:
    name: str

    def __attrs_pre_init__(self) -> None:
        pass


@attrs.define(init=False)
class WithOwnInit:
    name: str

    def __init__(self, name: str) -> None:
        if not name:
            raise ValueError("empty")
        self.name = name


@frozen
class WithListOfInts:
    numbers: list[int]


@frozen
class WithTupleOfInts:
    numbers: tuple[int, ...]


@frozen
class WithUnion:
    value: int | str


@frozen
class WithLiteral:
    mode: Literal["a", "b"]


@frozen
class WithDate:
    day: datetime.date


@frozen
class WithUnresolvable:
    thing: NoSuchType  # type: ignore[name-defined]  # noqa: F821


@frozen
class WithSelfFactory:
    name: str | None = None
    title: str = field(default=attrs.Factory(lambda self: self.name.title(), takes_self=True))


@frozen
class WithOwnFactory:
    name: str = field(factory=lambda: 1 / 0)


@attrs.define
class WithGuardedSetattr:
    count: int

    def __setattr__(self, name: str, value: object) -> None:
        if name == "count" and value < 0:
            raise ValueError("negative")
        object.__setattr__(self, name, value)


@frozen
class WithStringsOnAnInt:
    count: int = field(converter=_strings)


class Counting(type):
    def __call__(cls, *args: object, **kwargs: object) -> object:
        raise TypeError("built elsewhere")


@frozen
class WithOwnMetaclassCall(metaclass=Counting):
    name: str


class NotAttrs:
    pass


UNMODELLED = [
    Rated,
    Checked,
    Moved,
    WithConverter,
    WithInitFalse,
    WithPrivateField,
    WithPreInit,
    WithOwnInit,
    WithListOfInts,
    WithTupleOfInts,
    WithUnion,
    WithLiteral,
    WithDate,
    WithUnresolvable,
    WithSelfFactory,
    WithOwnFactory,
    WithGuardedSetattr,
    WithStringsOnAnInt,
    WithOwnMetaclassCall,
    NotAttrs,
]


@pytest.mark.parametrize("cls", UNMODELLED, ids=lambda cls: cls.__name__)
def test_types_the_quick_check_cannot_model_always_take_the_full_decode(cls: type) -> None:
    """Validators, hooks, converters, own constructors and unusual field types: no acceptor."""
    assert acceptor(cls) is None


def test_a_plugin_validator_still_refuses_a_payload_of_the_right_shape() -> None:
    """Six stars is an int like any other; the class's own validator says no."""
    data = json.dumps({"person_id": "ada", "stars": 6})
    with pytest.raises(DecodeError, match="acme_rated payload does not fit"):
        CODEC.check("acme_rated", 1, data)
    assert outcome(CODEC.check, "acme_rated", 1, data) == outcome(
        CODEC.decode, "acme_rated", 1, data
    )


def test_a_post_init_check_still_refuses_a_payload_of_the_right_shape() -> None:
    """A lower-case code fails in ``__attrs_post_init__``, after every type matched."""
    data = json.dumps({"person_id": "ada", "code": "abc"})
    with pytest.raises(DecodeError, match="acme_checked payload does not fit"):
        CODEC.check("acme_checked", 1, data)
    CODEC.check("acme_checked", 1, json.dumps({"person_id": "ada", "code": "ABC"}))


# ------------------------------------------------------------------------------ properties


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.type)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_payload_the_quick_check_accepts_is_one_cattrs_structures(
    cls: type, data: st.DataObject
) -> None:
    """Soundness, for JSON-shaped and code-made payloads alike."""
    accept = acceptor(cls)
    if accept is None:
        return
    payload = data.draw(mutated_payload(cls, PYTHON_VALUES))
    if accept(payload):
        CODEC.converter.structure(payload, cls)


@pytest.mark.parametrize("cls", CORE_EVENT_TYPES + (Badge,), ids=lambda cls: cls.type)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_valid_payloads_are_accepted_by_the_quick_check(cls: type, data: st.DataObject) -> None:
    """Every payload of the declared types passes without cattrs, defaults left out or not."""
    payload = json.loads(json.dumps(data.draw(valid_payload(cls))))
    floats = [name for name, hint in typing.get_type_hints(cls).items() if hint is float]
    if any(type(payload.get(name)) is int for name in floats):
        return  # 2.0 written by hand as 2: cattrs turns it into a float, the quick check asks it
    assert acceptor(cls)(payload)


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.type)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_check_raises_exactly_what_decode_raises(cls: type, data: st.DataObject) -> None:
    """Same outcome, exception type and message for any stored payload text."""
    payload = data.draw(mutated_payload(cls))
    text = json.dumps(payload, sort_keys=data.draw(st.booleans()))
    text = data.draw(
        st.sampled_from([text, f" {text}", f"{text} ", f"\ufeff{text}", text[:-1], text + "x"])
    )
    type_name = data.draw(st.sampled_from([cls.type, cls.type, "session_held", "no_such_type"]))
    schema = data.draw(st.sampled_from([cls.schema, cls.schema, cls.schema - 1, cls.schema + 1]))
    assert outcome(CODEC.check, type_name, schema, text) == outcome(
        CODEC.decode, type_name, schema, text
    )


def test_an_old_schema_is_upcast_before_the_quick_check() -> None:
    """A schema 1 session (hours) is accepted; one whose upcast fails says so as decode does."""
    CODEC.check("session_held", 1, json.dumps({"pair_id": "a-b", "hours": 1.5}))
    broken = json.dumps({"pair_id": "a-b"})
    assert outcome(CODEC.check, "session_held", 1, broken) == outcome(
        CODEC.decode, "session_held", 1, broken
    )
    with pytest.raises(DecodeError, match="cannot upcast session_held schema 1"):
        CODEC.check("session_held", 1, broken)


def test_data_that_is_not_text_behaves_as_in_decode() -> None:
    """Bytes parse as JSON in both; None fails the same way in both."""
    data = json.dumps({"person_id": "ada"}).encode()
    assert outcome(CODEC.check, "forgotten", 1, data) == ("returned",)
    assert outcome(CODEC.check, "forgotten", 1, None) == outcome(CODEC.decode, "forgotten", 1, None)


# -------------------------------------------------------------------- verdicts on real logs

COLUMNS = (
    "position, event_id, program, stream, version, type, schema, occurred_at, recorded_at,"
    " actor, idempotency_key, data, prev_hash, hash"
)


def reference_segment(
    store: SQLiteEventStore, since: int, until: int, decode: Any = None
) -> Segment:
    """The row-by-row check alone, never the batch shortcut: the oracle for the batched one
    (the row-by-row check itself is pinned by the tampering tests in test_verify.py)."""
    with mock.patch.object(chain, "_check_batch", lambda rows, state, decode: False):
        return check_segment(store, since, until, decode)


def log_payloads() -> Iterator[tuple[str, str, int, str]]:
    """``(stream, type, schema, data)``: valid events, odd ones cattrs still accepts, and a
    few it refuses, spread over the log."""
    for i in range(40):
        person = f"person:p{i % 7}"
        pair = f"pair:p{i % 5}-q"
        if i % 4 == 0:
            event = Joined(person_id=f"p{i % 7}", name="N", email="e", role="mentor")
            yield person, event.type, 1, CODEC.encode(event)
        elif i % 4 == 1:
            event = SessionHeld(pair_id=f"p{i % 5}-q", minutes=30 + i, topics=("AI",))
            yield pair, event.type, 2, CODEC.encode(event)
        elif i % 4 == 2:
            event = FeedbackGiven(pair_id=f"p{i % 5}-q", by="x", rating=4, comment="c")
            yield pair, event.type, 1, CODEC.encode(event)
        else:
            event = Paired(pair_id=f"p{i % 5}-q", mentor_id="a", mentee_id="b", score=2.5)
            yield pair, event.type, 1, CODEC.encode(event)
    odd = [
        ("pair:p1-q", "session_held", 1, '{"pair_id":"p1-q","hours":2}'),
        ("pair:p1-q", "paired", 1, '{"pair_id":"p1-q","mentor_id":"a","mentee_id":"b","score":3}'),
        ("person:p1", "joined", 1, '{"person_id":"p1","name":"n","email":1,"role":"r"}'),
        ("pair:p2-q", "feedback_given", 1, '{"pair_id":"p2-q","by":"x","rating":true}'),
    ]
    yield from odd


def stored_log(path: Path) -> None:
    with Engine.open(path, create=True) as engine:
        store = engine.store
        with store.transaction():
            store.append(
                "default",
                [
                    NewEvent(stream, type_name, schema, "2025-01-01T00:00:00Z", data)
                    for stream, type_name, schema, data in log_payloads()
                ],
                actor="test",
            )
    for suffix in ("-wal", "-shm"):
        assert not Path(f"{path}{suffix}").exists()


@pytest.fixture(scope="module")
def clean_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 44-event log whose payloads all decode, some only through cattrs' leniency."""
    path = tmp_path_factory.mktemp("fastcheck") / "log.db"
    stored_log(path)
    return path


def rehash_from(conn: sqlite3.Connection, position: int) -> None:
    """Recompute every link and hash from ``position`` on, as a thorough attacker would."""
    before = conn.execute(
        "SELECT hash FROM events WHERE position < ? ORDER BY position DESC LIMIT 1", (position,)
    ).fetchone()
    prev = before[0] if before else "0" * 64
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM events WHERE position >= ? ORDER BY position", (position,)
    ).fetchall()
    for row in rows:
        digest = chain_hash(prev, canonical_envelope(*row[:12]))
        conn.execute(
            "UPDATE events SET prev_hash = ?, hash = ? WHERE position = ?", (prev, digest, row[0])
        )
        prev = digest


BAD_PAYLOADS = [
    '{"pair_id":"p1-q","minutes":"thirty"}',
    '{"pair_id":"p1-q","minutes":30,"mood":"good"}',
    '{"pair_id":"p1-q"}',
    '{"pair_id":"p1-q","minutes":[30]}',
    '{"pair_id":"p1-q","minutes":30,"topics":"AI"}',
    '{"pair_id":"p1-q","minutes":30,"topics":[{"a":1}]}',
    '["pair_id"]',
    " {}",
    "{",
    "",
]

TAMPERS = st.tuples(
    st.sampled_from(["payload", "type", "schema", "version", "prev_hash", "delete", "data"]),
    st.integers(1, 44),
    st.sampled_from(BAD_PAYLOADS),
    st.booleans(),
)


def tampered_copy(clean: Path, folder: str, tampers: list) -> Path:
    """A copy of the clean log with the given edits made behind the store's back."""
    path = Path(folder) / "log.db"
    shutil.copyfile(clean, path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("DROP TRIGGER events_no_delete")
    for kind, position, bad, rehash in tampers:
        if kind == "payload":
            conn.execute(
                "UPDATE events SET type = 'session_held', schema = 2, data = ? WHERE position = ?",
                (bad, position),
            )
        elif kind == "type":
            conn.execute("UPDATE events SET type = 'no_such' WHERE position = ?", (position,))
        elif kind == "schema":
            conn.execute("UPDATE events SET schema = 9 WHERE position = ?", (position,))
        elif kind == "version":
            conn.execute(
                "UPDATE events SET version = version + 1000 WHERE position = ?", (position,)
            )
        elif kind == "prev_hash":
            conn.execute("UPDATE events SET prev_hash = 'x' WHERE position = ?", (position,))
        elif kind == "delete":
            conn.execute("DELETE FROM events WHERE position = ?", (position,))
        else:
            conn.execute("UPDATE events SET data = data || ' ' WHERE position = ?", (position,))
        if rehash:
            rehash_from(conn, position)
    conn.close()
    return path


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tampers=st.lists(TAMPERS, max_size=3),
    batch=st.integers(1, 12),
    segment=st.integers(1, 50),
    decode=st.booleans(),
)
def test_verdicts_are_the_same_with_the_quick_paths_on_or_off(
    clean_log: Path, tampers: list, batch: int, segment: int, decode: bool
) -> None:
    """Batched rows and the quick payload check against the row-by-row full decode: equal
    segments, and equal (checked, head hash, first problem) once merged."""
    with tempfile.TemporaryDirectory() as folder:
        path = tampered_copy(clean_log, folder, tampers)
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            store = SQLiteEventStore(conn)
            head = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
            quick = CODEC.check if decode else None
            full = CODEC.decode if decode else None
            ranges = [(s, min(s + segment, head)) for s in range(0, head, segment)]
            batched = [check_segment(store, s, u, quick, batch=batch) for s, u in ranges]
            reference = [reference_segment(store, s, u, full) for s, u in ranges]
            assert batched == reference
            assert merge(iter(batched)) == merge(iter(reference))
            on = check_chain(store, head, decode=quick)
            slow = (lambda *row: CODEC.decode(*row)) if decode else None
            off = check_chain(store, head, decode=slow)
            whole = merge(iter([reference_segment(store, 0, head, full)]))
            assert on == off == whole
        finally:
            conn.close()


def test_a_bad_payload_among_lenient_ones_is_named_first_in_parallel_too(
    clean_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forked workers check payloads with the codec they inherit; the verdict matches the
    sequential one, naming the first payload cattrs refuses."""
    path = tampered_copy(
        clean_log,
        str(tmp_path),
        [("payload", 30, BAD_PAYLOADS[0], True), ("payload", 37, "{", True)],
    )
    monkeypatch.setattr(chain, "PARALLEL_THRESHOLD", 1)
    monkeypatch.setattr(chain, "SEGMENT_SIZE", 4)
    conn = sqlite3.connect(path)
    try:
        store = SQLiteEventStore(conn)
        parallel = check_chain(store, 44, path=str(path), workers=2, decode=CODEC.check)
        sequential = check_chain(store, 44, workers=1, decode=CODEC.check)
    finally:
        conn.close()
    # How many events count as checked before a problem depends on the segment size.
    assert parallel[2] == sequential[2]
    problem = parallel[2]
    assert problem.position == 30
    assert "its payload does not decode: session_held payload does not fit" in problem.reason
