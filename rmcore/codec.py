"""Events to canonical JSON and back, with upcasting of older payload schemas."""

from __future__ import annotations

import json
from typing import Any

import cattrs

from rmcore.events import Event, EventRegistry
from rmcore.fastcheck import Acceptor, acceptor

# The C scanner that json.loads runs after two whitespace matches and a few calls: for a
# str with no surrounding whitespace it returns the same value and the string's length.
_scan = json.JSONDecoder().scan_once


class DecodeError(ValueError):
    """A stored payload could not be turned back into an event."""


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the bytes that get hashed."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


class Codec:
    """Encodes events to canonical JSON payloads and decodes stored payloads.

    Built after plugins have registered their event types, because cattrs generates
    its (un)structuring functions per class on first use.
    """

    def __init__(self, registry: EventRegistry) -> None:
        self.registry = registry
        self.converter = cattrs.Converter(forbid_extra_keys=True)
        self._acceptors: dict[type[Event] | None, Acceptor | None] = {}

    def encode(self, event: Event) -> str:
        """The canonical JSON payload of an event."""
        return canonical_json(self.converter.unstructure(event))

    def unstructure(self, event: Event) -> dict[str, Any]:
        """An event as a payload dict, before any sealing and canonical encoding."""
        return self.converter.unstructure(event)

    def structure(self, type_name: str, payload: dict[str, Any]) -> Event:
        """Build an event of the current schema from a payload dict."""
        cls = self.registry.get(type_name)
        if cls is None:
            raise DecodeError(f"unknown event type {type_name!r}")
        try:
            return self.converter.structure(payload, cls)
        except Exception as exc:  # cattrs raises several exception kinds
            raise DecodeError(f"{type_name} payload does not fit: {_describe(exc)}") from exc

    def decode(self, type_name: str, schema: int, data: str) -> Event:
        """Decode a stored payload, upcasting it from its stored schema first."""
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError) as exc:  # an integer too long or nesting too deep
            raise DecodeError(f"payload is not JSON: {exc}") from exc
        return self.decode_payload(type_name, schema, payload)

    def check(self, type_name: str, schema: int, data: str) -> None:
        """Raise what :meth:`decode` would raise, if anything, without building the event.

        A payload of exactly its class's canonical shape (see :mod:`rmcore.fastcheck`) is
        accepted here; every other one goes through :meth:`decode` itself.
        """
        cls = self.registry.get(type_name)
        try:
            accept = self._acceptors[cls]
        except KeyError:
            accept = self._acceptors[cls] = None if cls is None else acceptor(cls)
        if accept is not None and type(data) is str:
            try:
                payload, end = _scan(data, 0)
                if end == len(data):
                    if schema != cls.schema:
                        payload = self.registry.upcast(type_name, schema, payload)
                    if accept(payload):
                        return
            except Exception:  # decode below raises it again, or its own error
                pass
        self.decode(type_name, schema, data)

    def decode_payload(self, type_name: str, schema: int, payload: Any) -> Event:
        """Decode an already parsed payload, upcasting it from its stored schema first."""
        if self.registry.get(type_name) is None:
            raise DecodeError(f"unknown event type {type_name!r}")
        try:
            payload = self.registry.upcast(type_name, schema, payload)
        except (ValueError, KeyError, TypeError) as exc:
            raise DecodeError(f"cannot upcast {type_name} schema {schema}: {exc}") from exc
        return self.structure(type_name, payload)


def _describe(exc: BaseException) -> str:
    """A one-line account of a cattrs error, including grouped sub-errors."""
    if isinstance(exc, cattrs.BaseValidationError):
        messages = cattrs.transform_error(exc)
        return "; ".join(messages)
    return str(exc)
