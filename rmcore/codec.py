"""Events to canonical JSON and back, with upcasting of older payload schemas."""

from __future__ import annotations

import json
from typing import Any

import cattrs

from rmcore.events import Event, EventRegistry


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
        except json.JSONDecodeError as exc:
            raise DecodeError(f"payload is not JSON: {exc}") from exc
        return self.decode_payload(type_name, schema, payload)

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
