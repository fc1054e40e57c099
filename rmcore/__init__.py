"""rmcore: an event-sourced engine for reverse-mentoring programs."""

from rmcore.hookspecs import hookimpl

__all__ = ["hookimpl"]
