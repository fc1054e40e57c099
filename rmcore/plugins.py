"""The plugin manager: entry points in the ``rmcore`` group, blocking, listing, tracing."""

from __future__ import annotations

import importlib.metadata
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pluggy

from rmcore import hookspecs

ENTRY_POINT_GROUP = "rmcore"


def disabled_from_env() -> list[str]:
    """Plugin names listed in ``RMCORE_DISABLE_PLUGINS`` (comma-separated)."""
    raw = os.environ.get("RMCORE_DISABLE_PLUGINS", "")
    return [name.strip() for name in raw.split(",") if name.strip()]


class PluginLoadError(Exception):
    """An installed plugin cannot be used; the message names it and says why."""


def make_plugin_manager(
    disabled: Iterable[str] = (), *, load_entry_points: bool = True
) -> pluggy.PluginManager:
    """A fresh manager with the hookspecs, entry-point plugins loaded and ``disabled`` blocked.

    Raises :class:`PluginLoadError` naming the plugin when one cannot be imported, has a
    hook with arguments the spec does not offer, or implements a hook that does not exist.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    pm.rmcore_dists = {}  # plugin name -> distribution, whose version `rmcore plugins` shows
    for name in disabled:
        pm.set_blocked(name)
    if load_entry_points:
        _load_entry_points(pm)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or str(exc.plugin)
        raise PluginLoadError(
            f"plugin {name} implements a hook rmcore does not have ({exc}); "
            "check the hook's spelling against docs/hooks.md"
        ) from None
    if os.environ.get("RMCORE_TRACE_PLUGINS"):
        _trace(pm)
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        name = entry_point.name
        if pm.is_blocked(name) or pm.has_plugin(name):
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:
            raise PluginLoadError(
                f"plugin {name} ({entry_point.value}) cannot be imported: "
                f"{type(exc).__name__}: {exc} (--disable-plugin {name} skips it)"
            ) from exc
        try:
            pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(f"plugin {name} is not a valid rmcore plugin: {exc}") from None
        pm.rmcore_dists[name] = getattr(entry_point, "dist", None)


def call_each(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call every implementation of a hook one by one: ``[(plugin name, result), ...]``.

    An implementation that raises is reported as :class:`PluginLoadError` naming the plugin
    and the hook, rather than as a bare traceback.
    """
    return [(impl.plugin_name, call) for impl, call in each_call(pm, hook_name, kwargs)]


def each_call(
    pm: pluggy.PluginManager, hook_name: str, kwargs: dict[str, Any]
) -> Iterator[tuple[Any, Any]]:
    """``(hookimpl, result)`` for each implementation in call order, failures named.

    Plugins are called one at a time, so that a failure names its plugin; with
    ``RMCORE_TRACE_PLUGINS`` set each call is traced like the calls pluggy makes.
    """
    trace = bool(os.environ.get("RMCORE_TRACE_PLUGINS"))
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        if impl.hookwrapper or getattr(impl, "wrapper", False):
            continue
        wanted = {arg: kwargs[arg] for arg in impl.argnames}
        started = time.perf_counter()
        try:
            result = impl.function(**wanted)
        except Exception as exc:
            raise PluginLoadError(
                f"plugin {impl.plugin_name} failed in {hook_name}: {type(exc).__name__}: {exc}"
            ) from exc
        if trace:
            _print_trace(hook_name, impl.plugin_name, time.perf_counter() - started)
        yield impl, result


def known_plugin_names() -> set[str]:
    """Names of every installed plugin entry point, loaded or not."""
    return {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def list_plugins(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """Each registered plugin with its version and the hooks it implements."""
    dists = getattr(pm, "rmcore_dists", {})
    result = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
        dist = dists.get(name)
        # Reading the version parses the distribution's metadata: only here, not at start-up.
        version = dist.version if dist is not None else None
        result.append({"name": name, "version": version, "hooks": hooks})
    return sorted(result, key=lambda p: p["name"])


def hook_names() -> list[str]:
    """Every hook rmcore offers."""
    return sorted(name for name in dir(hookspecs) if name.startswith("rmcore_"))


def _trace(pm: pluggy.PluginManager) -> None:
    started: list[float] = []

    def before(hook_name, hook_impls, kwargs):
        started.append(time.perf_counter())

    def after(outcome, hook_name, hook_impls, kwargs):
        names = ", ".join(impl.plugin_name for impl in hook_impls)
        _print_trace(hook_name, names, time.perf_counter() - started.pop())

    pm.add_hookcall_monitoring(before, after)


def _print_trace(hook_name: str, plugins: str, seconds: float) -> None:
    print(f"[rmcore] {hook_name} ({plugins}) {seconds * 1000:.2f} ms", file=sys.stderr)
