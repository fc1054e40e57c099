"""Personal data sealed per subject, so that forgetting a person is deleting a key.

Every person stream (``person:ID``) and pair stream (``pair:ID``) has its own random
256-bit key in the ``subject_keys`` table, beside the log and never part of it. The
personal fields of an event (``PERSONAL_FIELDS``) are encrypted with AES-GCM under the
key of the event's stream before the payload is hashed into the chain, so the log holds
only ciphertext. Reading a field back needs the key; once ``rmcore forget`` has deleted
a person's key and the keys of their pairs, the ciphertext in the log can no longer be
read by anyone, the chain still verifies, and every reader shows :data:`ERASED`.

A sealed value is ``rmenc1:`` followed by the URL-safe base64 of a 12-byte nonce and the
ciphertext. The associated data binds it to its program, subject and field, so a sealed
value copied into another event or field does not open. Values written before sealing
existed (plain text) read back unchanged.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

PREFIX = "rmenc1:"
ERASED = "[erased]"
SEALED = "[sealed]"  # a sealed value whose key this database does not hold (not erased)
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_CACHE = 65536  # keys kept in memory (about 10 MB at most): a replay meets every subject
_URLSAFE = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")

PERSONAL_FIELDS: dict[str, tuple[str, ...]] = {
    "joined": ("name", "email"),
    "profile_updated": ("name", "email"),  # inside ``changes``
    "feedback_given": ("comment",),
    "left": ("reason",),
    "pair_ended": ("reason",),
}
"""Per event type, the payload fields that are personal data and get sealed."""

NESTED = {"profile_updated": "changes"}
"""Event types whose personal fields sit one level down, in this payload key."""


def _create_keys_table(db: Any) -> None:
    db.execute(
        "CREATE TABLE subject_keys (program TEXT NOT NULL, subject TEXT NOT NULL,"
        " key BLOB NOT NULL, PRIMARY KEY (program, subject)) WITHOUT ROWID"
    )


def _create_erased_table(db: Any) -> None:
    db.execute(
        "CREATE TABLE erased_subjects (program TEXT NOT NULL, subject TEXT NOT NULL,"
        " PRIMARY KEY (program, subject)) WITHOUT ROWID"
    )


KEY_MIGRATIONS = [
    ("create subject_keys", _create_keys_table),
    ("create erased_subjects", _create_erased_table),
]


class ErasedSubject(Exception):
    """Personal data would be sealed for a subject that was erased."""


class DamagedKey(Exception):
    """A row of ``subject_keys`` holds what no key is (the file was changed outside rmcore)."""


def _checked_key(program: str, subject: str, key: Any) -> bytes:
    """``key`` if it is a key rmcore wrote: ``KEY_BYTES`` random bytes."""
    if isinstance(key, bytes) and len(key) == KEY_BYTES:
        return key
    raise DamagedKey(
        f"the key of {subject} in {program} is damaged, so their name, email and comments"
        " cannot be read; restore the database from a backup"
    )


class Keyring:
    """Seals and opens personal fields with the per-subject keys of one database."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._keys: dict[tuple[str, str], bytes] = {}

    def _key(self, program: str, subject: str, *, create: bool) -> bytes | None:
        """A subject's key, from memory or the table; a new one when ``create`` and there
        is none."""
        key = self._keys.get((program, subject))
        return key if key is not None else self._load_key(program, subject, create=create)

    def _load_key(self, program: str, subject: str, *, create: bool) -> bytes | None:
        """A subject's key from the table (a new one when ``create``), kept in memory."""
        row = self.conn.execute(
            "SELECT key FROM subject_keys WHERE program = ? AND subject = ?", (program, subject)
        ).fetchone()
        if row is None:
            if not create:
                return None
            if self.erased(program, subject):
                raise ErasedSubject(f"{subject} was erased; nothing personal is recorded again")
            key = os.urandom(KEY_BYTES)
            self.conn.execute(
                "INSERT INTO subject_keys (program, subject, key) VALUES (?, ?, ?)",
                (program, subject, key),
            )
        else:
            key = _checked_key(program, subject, row[0])
        self._remember(program, subject, key)
        return key

    def preload(self) -> int:
        """Load keys into memory in one query (as many as the cache holds), before a replay."""
        rows = self.conn.execute(
            "SELECT program, subject, key FROM subject_keys LIMIT ?", (KEY_CACHE,)
        ).fetchall()
        self._keys = {
            (program, subject): _checked_key(program, subject, key)
            for program, subject, key in rows
        }
        return len(rows)

    def _remember(self, program: str, subject: str, key: bytes) -> None:
        if len(self._keys) >= KEY_CACHE:  # bounded, whatever the number of people
            self._keys.clear()
        self._keys[(program, subject)] = key

    def seal_value(self, program: str, subject: str, field: str, value: str) -> str:
        """``value`` encrypted under the subject's key (created if new); "" stays ""."""
        if not value:
            return value
        key = self._key(program, subject, create=True)
        nonce = os.urandom(NONCE_BYTES)
        sealed = _aesgcm()(key).encrypt(nonce, value.encode(), _aad(program, subject, field))
        return PREFIX + _urlsafe_base64(nonce + sealed)

    def open_value(self, program: str, subject: str, field: str, value: Any) -> Any:
        """The plain text of a sealed value: :data:`ERASED` once its subject was erased,
        :data:`SEALED` when this database lacks the key; other values as given."""
        if value.__class__ is not str or not value.startswith(PREFIX):
            return value
        key = self._key(program, subject, create=False)
        if key is None:
            return ERASED if self.erased(program, subject) else SEALED
        return _opened(key, program, subject, field, value)

    def open_if_loaded(self, program: str, subject: str, field: str, value: str) -> str | None:
        """:meth:`open_value` of a sealed value whose key is in memory; None when it is not.

        Never touches the database, so another thread may call it while the connection is
        busy (a rebuild opens values ahead of its inserts this way).
        """
        key = self._keys.get((program, subject))
        return None if key is None else _opened(key, program, subject, field, value)

    def seal(self, program: str, subject: str, type_name: str, payload: dict[str, Any]) -> None:
        """Seal, in place, the personal fields of an event payload before it is hashed."""
        target, fields = _personal(type_name, payload)
        for field in fields:
            value = target.get(field)
            if isinstance(value, str):
                target[field] = self.seal_value(program, subject, field, value)

    def open(self, program: str, subject: str, type_name: str, payload: dict[str, Any]) -> None:
        """Open, in place, the personal fields of a stored payload for a reader."""
        target, fields = _personal(type_name, payload)
        for field in fields:
            if field in target:
                target[field] = self.open_value(program, subject, field, target[field])

    def seal_new_subjects(
        self, program: str, fields: tuple[str, ...], rows: list[tuple[str, tuple[str, ...]]]
    ) -> list[tuple[str, ...]]:
        """New keys for subjects that have none yet (a bulk import's people), and each row's
        values sealed under its subject's key: ``rows`` are ``(subject, values)``, the
        value at index ``i`` being field ``fields[i]``; the sealed values come back in the
        same places, "" staying "".

        Seals exactly as :meth:`seal_value` does, with one cipher per subject and the
        random bytes of every key and nonce drawn at once. The keys are not kept in
        memory: a bulk import meets each subject once.
        """
        width = len(fields)
        material = os.urandom(KEY_BYTES * len(rows))
        nonces = os.urandom(NONCE_BYTES * width * len(rows))
        cipher = _aesgcm()
        head, tails = f"{program}\x1f", [f"\x1f{field}" for field in fields]
        keys, sealed = [], []
        at = 0
        for i, (subject, values) in enumerate(rows):
            key = material[i * KEY_BYTES : (i + 1) * KEY_BYTES]
            keys.append((program, subject, key))
            encrypt = cipher(key).encrypt
            out = []
            for tail, value in zip(tails, values):
                if value:
                    nonce = nonces[at : at + NONCE_BYTES]
                    body = encrypt(nonce, value.encode(), (head + subject + tail).encode())
                    value = PREFIX + _urlsafe_base64(nonce + body)
                at += NONCE_BYTES
                out.append(value)
            sealed.append(tuple(out))
        self.conn.executemany(
            "INSERT INTO subject_keys (program, subject, key) VALUES (?, ?, ?)", keys
        )
        return sealed

    def erased(self, program: str, subject: str) -> bool:
        """Whether the subject's personal data was erased in this database."""
        return (
            self.conn.execute(
                "SELECT 1 FROM erased_subjects WHERE program = ? AND subject = ?",
                (program, subject),
            ).fetchone()
            is not None
        )

    def erase(self, program: str, person_id: str) -> list[str]:
        """Delete the keys of a person and of every pair they were in, for good.

        The subjects are remembered as erased, so no key for them is created or imported
        again. Called inside the transaction that records (or imports) ``forgotten``.
        """
        pairs = self.conn.execute(
            "SELECT pair_id FROM pairs WHERE program = ?1 AND ?2 IN (mentor_id, mentee_id)"
            " ORDER BY pair_id",
            (program, person_id),
        ).fetchall()
        subjects = [f"person:{person_id}", *(f"pair:{pair_id}" for (pair_id,) in pairs)]
        for subject in subjects:
            self.conn.execute(
                "DELETE FROM subject_keys WHERE program = ? AND subject = ?", (program, subject)
            )
            self.conn.execute(
                "INSERT OR IGNORE INTO erased_subjects (program, subject) VALUES (?, ?)",
                (program, subject),
            )
        self.drop_cache()
        return subjects

    def drop_cache(self) -> None:
        """Forget the keys held in memory, after keys were deleted from the table."""
        self._keys.clear()


def _personal(type_name: str, payload: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The dict holding an event type's personal fields, and their names (none: ``()``)."""
    fields = PERSONAL_FIELDS.get(type_name, ())
    return (payload.get(NESTED[type_name], {}) if type_name in NESTED else payload), fields


@functools.cache
def _aesgcm() -> Any:
    """The AES-GCM class, imported on first use (commands that seal nothing start faster)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM


@functools.cache
def _invalid_tag() -> type[Exception]:
    from cryptography.exceptions import InvalidTag

    return InvalidTag


def _opened(key: bytes, program: str, subject: str, field: str, value: str) -> str:
    """A sealed value opened with its subject's key (:data:`ERASED` if it does not open)."""
    try:
        raw = binascii.a2b_base64(value[len(PREFIX) :].encode("ascii").translate(_URLSAFE))
        plain = _aesgcm()(key).decrypt(
            raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(program, subject, field)
        )
    except (ValueError, _invalid_tag()):
        return ERASED  # not sealed for this place: unreadable, like an erased value
    return plain.decode()


def _urlsafe_base64(raw: bytes) -> str:
    """``base64.urlsafe_b64encode(raw)`` as text, with less work per call."""
    return binascii.b2a_base64(raw, newline=False).translate(_TO_URLSAFE).decode("ascii")


def _aad(program: str, subject: str, field: str) -> bytes:
    return f"{program}\x1f{subject}\x1f{field}".encode()


class KeyFileError(ValueError):
    """A key file cannot be read; the message names the line."""


def export_keys(conn: sqlite3.Connection, out: str | os.PathLike, program: str | None) -> int:
    """Write the keys of a program (or of all) to a new file readable by its owner only."""
    sql = "SELECT program, subject, key FROM subject_keys"
    rows = conn.execute(sql + " WHERE program = ?", (program,)) if program else conn.execute(sql)
    count = 0
    fd = os.open(out, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for name, subject, key in rows:
            encoded = base64.b64encode(key).decode("ascii")
            handle.write(json.dumps({"program": name, "subject": subject, "key": encoded}) + "\n")
            count += 1
        handle.flush()
        os.fsync(handle.fileno())  # on disk before the file takes its final name
    return count


def import_keys(conn: sqlite3.Connection, path: str | os.PathLike) -> int:
    """Add the keys of a key file (those already here are kept); returns how many were new."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read {path}: {exc}") from None
    added = 0
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
            program, subject = row["program"], row["subject"]
            key = base64.b64decode(row["key"], validate=True)
            if not (isinstance(program, str) and isinstance(subject, str)):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise KeyFileError(f"{path}, line {number}: not a key line") from None
        if len(key) != KEY_BYTES:
            raise KeyFileError(f"{path}, line {number}: a key must be {KEY_BYTES} bytes")
        added += conn.execute(
            "INSERT OR IGNORE INTO subject_keys (program, subject, key) SELECT ?1, ?2, ?3"
            " WHERE NOT EXISTS (SELECT 1 FROM erased_subjects WHERE program = ?1"
            " AND subject = ?2)",  # a key file older than an erasure brings nobody back
            (program, subject, key),
        ).rowcount
    return added
