"""The plugin manager and ``rmcore plugins``: discovery, blocking, listing, validation."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pluggy
import pytest

from rmcore import hookimpl
from rmcore.plugins import list_plugins, make_plugin_manager

BUILT_INS = {"matching_skills", "notify_email", "kpi_basic"}


def listed(result) -> dict[str, dict]:
    """The JSON listing of ``rmcore plugins`` keyed by plugin name."""
    assert result.exit_code == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_plugins_lists_the_built_ins_with_their_versions(run_cli):
    """The built-ins are found through the entry-point group like any other plugin."""
    plugins = listed(run_cli("plugins", "--format", "json"))
    assert set(plugins) >= BUILT_INS
    version = importlib.metadata.version("rmcore")
    for name in BUILT_INS:
        assert plugins[name]["version"] == version
        assert isinstance(plugins[name]["hooks"], list)
        assert all(hook.startswith("rmcore_") for hook in plugins[name]["hooks"])


def test_disable_plugin_removes_it_from_the_listing(run_cli):
    """--disable-plugin blocks one plugin and leaves the others."""
    plugins = listed(run_cli("--disable-plugin", "kpi_basic", "plugins", "--format", "json"))
    assert "kpi_basic" not in plugins
    assert {"matching_skills", "notify_email"} <= set(plugins)


def test_disable_plugin_can_be_repeated(run_cli):
    """Several plugins can be blocked at once."""
    result = run_cli(
        "--disable-plugin", "kpi_basic", "--disable-plugin", "notify_email", "plugins",
        "--format", "json",
    )  # fmt: skip
    plugins = listed(result)
    assert not {"kpi_basic", "notify_email"} & set(plugins)
    assert "matching_skills" in plugins


def test_listing_plugins_with_one_disabled_needs_no_database(run_cli, tmp_path: Path):
    """Which plugins are installed does not depend on a database file existing."""
    missing = tmp_path / "not-created.db"
    result = run_cli("--disable-plugin", "kpi_basic", "plugins", "--format", "json", db=missing)
    assert "kpi_basic" not in listed(result)
    assert not missing.exists()


def test_listing_plugins_needs_no_database(run_cli, tmp_path: Path):
    """Without blocking, the listing works before ``rmcore init``."""
    missing = tmp_path / "not-created.db"
    assert set(listed(run_cli("plugins", "--format", "json", db=missing))) >= BUILT_INS
    assert not missing.exists()


def test_an_unknown_name_to_disable_plugin_is_a_usage_error(run_cli, raw_log):
    """A typo in a plugin name exits 2 and names the unknown plugin."""
    result = run_cli("--disable-plugin", "kpi_basik", "people")
    assert result.exit_code == 2
    assert "no installed plugin is called kpi_basik" in result.stderr
    assert "Traceback" not in result.output
    assert raw_log.count() == 0


def run_rmcore(db: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m rmcore --db db ...`` in a real subprocess with extra environment."""
    environment = {**os.environ, **env}
    environment.pop("RMCORE_DB", None)
    return subprocess.run(
        [sys.executable, "-m", "rmcore", "--db", str(db), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )


def test_the_rmcore_disable_plugins_environment_variable_blocks_plugins(db_path: Path):
    """RMCORE_DISABLE_PLUGINS is a comma-separated list of names to block."""
    baseline = run_rmcore(db_path, "plugins", "--format", "json", RMCORE_DISABLE_PLUGINS="")
    assert baseline.returncode == 0, baseline.stderr
    assert {row["name"] for row in json.loads(baseline.stdout)} >= BUILT_INS
    blocked = run_rmcore(
        db_path, "plugins", "--format", "json", RMCORE_DISABLE_PLUGINS="kpi_basic, notify_email"
    )
    assert blocked.returncode == 0, blocked.stderr
    names = {row["name"] for row in json.loads(blocked.stdout)}
    assert "matching_skills" in names
    assert not {"kpi_basic", "notify_email"} & names


def test_make_plugin_manager_blocks_the_names_it_is_given():
    """A blocked entry point is never registered."""
    pm = make_plugin_manager(["kpi_basic"])
    assert pm.is_blocked("kpi_basic")
    assert pm.get_plugin("kpi_basic") is None
    assert pm.get_plugin("matching_skills") is not None


def test_a_manager_without_entry_points_holds_no_plugins():
    """Tests and embedders can start from an empty manager."""
    pm = make_plugin_manager(load_entry_points=False)
    assert pm.get_plugins() == set()
    assert list_plugins(pm) == []


class MisspelledHook:
    """A plugin whose author typed ``rmcore_kpi`` for ``rmcore_kpis``."""

    @hookimpl
    def rmcore_kpi(self, program):
        """Never called: there is no such hook."""
        return [("sessions", 1)]


class CorrectHook:
    """The same plugin with the hook spelled right."""

    @hookimpl
    def rmcore_kpis(self, program):
        """One constant KPI."""
        return [("sessions", 1)]


def test_a_plugin_with_a_misspelled_hook_fails_check_pending():
    """pluggy's check_pending catches implementations of hooks that do not exist."""
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(MisspelledHook(), name="typo")
    with pytest.raises(pluggy.PluginValidationError, match="rmcore_kpi"):
        pm.check_pending()


def test_a_plugin_with_correct_hooks_passes_check_pending_and_is_listed():
    """The well-spelled plugin validates, is called and shows its hook."""
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(CorrectHook(), name="house_kpis")
    pm.check_pending()
    arguments = {name: None for name in pm.hook.rmcore_kpis.spec.argnames}
    assert pm.hook.rmcore_kpis(**{**arguments, "program": "p"}) == [[("sessions", 1)]]
    assert list_plugins(pm) == [{"name": "house_kpis", "version": None, "hooks": ["rmcore_kpis"]}]


def test_a_command_added_by_a_disabled_plugin_is_refused_with_its_plugin_named(run_cli, tmp_path):
    """--disable-plugin blocks the commands the plugin added, not only its hooks."""
    folder = tmp_path / "templates"
    result = run_cli("--disable-plugin", "notify_email", "email-templates", str(folder))
    assert result.exit_code == 2
    assert "email-templates" in result.stderr and "notify_email" in result.stderr
    assert not folder.exists()
    other = run_cli("--disable-plugin", "kpi_basic", "email-templates", str(folder))
    assert other.exit_code == 0, other.stderr
    assert folder.is_dir()
