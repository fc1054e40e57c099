"""Quick acceptance of parsed payloads that cattrs is certain to structure.

Verifying a log only needs to know that every payload would decode, not the events
themselves. For an event class whose fields all have simple types, :func:`acceptor`
builds a predicate that says yes only to a payload of exactly the canonical shape: a
dict with every required field, no unknown key, and each value of the exact JSON type
its field declares. Such a payload always structures with a default
``cattrs.Converter(forbid_extra_keys=True)``. A no means "not sure", never "invalid":
the caller then runs the full decode, which decides and words the error.

Classes whose construction could still refuse a payload of that shape (validators,
converters other than the core ``_strings`` on a ``tuple[str, ...]`` field, default
factories other than the plain containers or taking ``self``, ``__attrs_pre_init__`` /
``__attrs_post_init__``, a hand-written ``__init__``, ``__new__`` or ``__setattr__``, a
metaclass with its own ``__call__``, renamed or ``init=False`` fields) or with a field
type outside the small set modelled here get no acceptor at all.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

import attrs

from rmcore.events import Event, _strings

Acceptor = Callable[[Any], bool]

# Default factories that build an empty container and cannot fail.
_PLAIN_FACTORIES = (dict, list, tuple, set, frozenset)
# What attrs puts on a frozen class: assignments in its __init__ cannot be refused.
_ATTRS_FROZEN_SETATTR = Event.__setattr__
_STRINGS = tuple[str, ...]
_SCALARS = {str: "str", int: "int", float: "float", bool: "bool"}


def _value_check(annotation: Any) -> list[str] | None:
    """Lines that ``return False`` unless ``v`` certainly structures as ``annotation``;
    None for a type not modelled here."""
    if annotation is Any:
        return []
    name = _SCALARS.get(annotation)
    if name is not None:
        return [f"if type(v) is not {name}: return False"]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        others = [arg for arg in args if arg is not type(None)]
        if len(args) != 2 or len(others) != 1 or others[0] not in _SCALARS:
            return None
        return [f"if v is not None and type(v) is not {_SCALARS[others[0]]}: return False"]
    if origin is tuple and args == (str, ...):
        return [
            "if type(v) is not list and type(v) is not tuple: return False",
            "for e in v:",
            "    if type(e) is not str: return False",
        ]
    if origin is dict and args == (str, Any):
        return [
            "if type(v) is not dict: return False",
            "for e in v:",
            "    if type(e) is not str: return False",
        ]
    return None


def _plain_construction(cls: type) -> bool:
    """Whether building ``cls`` from well-typed keyword arguments cannot fail."""
    code = getattr(cls.__init__, "__code__", None)
    return (
        code is not None
        and code.co_filename.startswith("<attrs generated")
        and cls.__new__ is object.__new__
        and not hasattr(cls, "__attrs_pre_init__")
        and not hasattr(cls, "__attrs_post_init__")
        and cls.__setattr__ in (object.__setattr__, _ATTRS_FROZEN_SETATTR)
        and type(cls).__call__ is type.__call__
    )


def _plain_field(field: attrs.Attribute, hint: Any) -> bool:
    """Whether a field's converter and default cannot refuse a value of its checked type,
    nor fail when the payload leaves it out."""
    if not field.init or field.alias != field.name or field.validator is not None:
        return False
    if field.converter is not None and not (field.converter is _strings and hint == _STRINGS):
        return False
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return not default.takes_self and default.factory in _PLAIN_FACTORIES
    if default is not attrs.NOTHING and field.converter is not None:
        try:
            field.converter(default)
        except Exception:
            return False
    return True


def _indented(lines: list[str], depth: int) -> list[str]:
    return ["    " * depth + line for line in lines]


def acceptor(cls: type) -> Acceptor | None:
    """A predicate true only for payloads certain to structure into ``cls``, or None."""
    if not attrs.has(cls) or not _plain_construction(cls):
        return None
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: leave it to cattrs
        return None
    names = []
    complete = []  # every field present, as canonical payloads are
    partial = []  # fields with a default may be missing
    for field in attrs.fields(cls):
        if field.name not in hints or not _plain_field(field, hints[field.name]):
            return None
        check = _value_check(hints[field.name])
        if check is None:
            return None
        names.append(field.name)
        if check:
            complete += [f"v = p[{field.name!r}]", *check]
        if field.default is attrs.NOTHING:
            partial += [f"v = p[{field.name!r}]", *check]
        elif check:
            partial += [
                f"v = p.get({field.name!r}, ABSENT)",
                "if v is not ABSENT:",
                *_indented(check, 1),
            ]
    source = "\n".join(
        [
            "def accept(p):",
            "    if type(p) is not dict or not p.keys() <= ALLOWED: return False",
            f"    if len(p) == {len(names)}:",
            *_indented(complete, 2),
            "        return True",
            "    try:",
            "        pass",
            *_indented(partial, 2),
            "    except KeyError:",  # a required field is missing
            "        return False",
            "    return True",
        ]
    )
    namespace: dict[str, Any] = {
        "ALLOWED": frozenset(names),
        "ABSENT": object(),
        # one dictionary lookup instead of two for the names the checks use most
        "type": type,
        "str": str,
        "int": int,
        "float": float,
        "bool": bool,
        "list": list,
        "tuple": tuple,
        "dict": dict,
    }
    exec(compile(source, f"<rmcore acceptor {cls.__qualname__}>", "exec"), namespace)
    return namespace["accept"]
