"""Broken plugins are reported by name, never as a bare traceback, and can be switched off."""

from __future__ import annotations

import json

import pytest
from plugin_site import install, rmcore

TYPO_PLUGIN = """
from rmcore import hookimpl

@hookimpl
def rmcore_kpi(conn, program):  # the hook is rmcore_kpis
    return []
"""

IMPORT_FAILS = """
import a_module_that_does_not_exist
"""

COMMANDS_FAIL = """
from rmcore import hookimpl

@hookimpl
def rmcore_register_commands(cli):
    raise RuntimeError("cannot reach the licence server")
"""


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (TYPO_PLUGIN, "implements a hook rmcore does not have"),
        (IMPORT_FAILS, "cannot be imported: ModuleNotFoundError"),
        (COMMANDS_FAIL, "failed in rmcore_register_commands: RuntimeError"),
    ],
)
def test_a_broken_plugin_stops_every_command_with_its_name(tmp_path, source, expected):
    """Start-up fails loudly and clearly: exit 1, the plugin named, no traceback."""
    site = tmp_path / "site"
    site.mkdir()
    install(site, "acme_broken", source)
    result = rmcore(site, "--db", str(tmp_path / "rmcore.db"), "init")
    assert result.returncode == 1
    assert "acme_broken" in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "rmcore.db").exists()


def test_disabling_the_broken_plugin_lets_commands_run(tmp_path):
    """--disable-plugin NAME is the way around a plugin that cannot load."""
    site = tmp_path / "site"
    site.mkdir()
    install(site, "acme_broken", TYPO_PLUGIN)
    result = rmcore(
        site, "--db", str(tmp_path / "rmcore.db"), "--disable-plugin", "acme_broken", "init"
    )
    assert result.returncode == 0, result.stderr
    listed = rmcore(
        site, "--db", str(tmp_path / "rmcore.db"), "--disable-plugin", "acme_broken", "plugins"
    )
    assert listed.returncode == 0
    assert "acme_broken" not in listed.stdout
    assert "kpi_basic" in listed.stdout


def test_plugins_can_be_filtered_by_hook(run_cli):
    """--hook keeps only the plugins implementing it; an unknown hook is a usage error."""
    result = run_cli("plugins", "--hook", "rmcore_kpis", "--format", "json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert "kpi_basic" in [row["name"] for row in rows]
    assert all("rmcore_kpis" in row["hooks"] for row in rows)
    assert "matching_skills" not in [row["name"] for row in rows]
    assert run_cli("plugins", "--hook", "rmcore_nope").exit_code == 2


COMMAND_RAISES = """
import click
from rmcore import hookimpl

@click.command("tally")
def tally():
    \"\"\"Count something.\"\"\"
    raise ValueError("the tally setting must be a number")

@hookimpl
def rmcore_register_commands(cli):
    cli.add_command(tally)
"""


def test_a_plugin_command_that_fails_names_its_plugin_without_a_traceback(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install(site, "acme_tally", COMMAND_RAISES)
    assert rmcore(site, "--db", str(tmp_path / "rmcore.db"), "init").returncode == 0
    result = rmcore(site, "--db", str(tmp_path / "rmcore.db"), "tally")
    assert result.returncode == 1
    assert result.stderr == (
        "Error: `tally` of plugin acme_tally failed: "
        "ValueError: the tally setting must be a number\n"
    )
