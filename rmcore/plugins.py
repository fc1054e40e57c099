"""The plugin manager: entry points in the ``rmcore`` group, blocking, listing, tracing."""

from __future__ import annotations

import importlib.metadata
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

import pluggy

from rmcore import hookspecs

ENTRY_POINT_GROUP = "rmcore"


def disabled_from_env() -> list[str]:
    """Plugin names listed in ``RMCORE_DISABLE_PLUGINS`` (comma-separated)."""
    raw = os.environ.get("RMCORE_DISABLE_PLUGINS", "")
    return [name.strip() for name in raw.split(",") if name.strip()]


def make_plugin_manager(
    disabled: Iterable[str] = (), *, load_entry_points: bool = True
) -> pluggy.PluginManager:
    """A fresh manager with the hookspecs, entry-point plugins loaded and ``disabled`` blocked."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    for name in disabled:
        pm.set_blocked(name)
    if load_entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    pm.check_pending()
    if os.environ.get("RMCORE_TRACE_PLUGINS"):
        _trace(pm)
    return pm


def known_plugin_names() -> set[str]:
    """Names of every installed plugin entry point, loaded or not."""
    return {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def list_plugins(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """Each registered plugin with its version and the hooks it implements."""
    versions = {
        plugin: dist.version for plugin, dist in pm.list_plugin_distinfo() if dist is not None
    }
    result = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
        result.append({"name": name, "version": versions.get(plugin), "hooks": hooks})
    return sorted(result, key=lambda p: p["name"])


def _trace(pm: pluggy.PluginManager) -> None:
    started: list[float] = []

    def before(hook_name, hook_impls, kwargs):
        started.append(time.perf_counter())

    def after(outcome, hook_name, hook_impls, kwargs):
        elapsed = (time.perf_counter() - started.pop()) * 1000
        names = ", ".join(impl.plugin_name for impl in hook_impls)
        print(f"[rmcore] {hook_name} ({names}) {elapsed:.2f} ms", file=sys.stderr)

    pm.add_hookcall_monitoring(before, after)
