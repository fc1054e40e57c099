"""The package, installed with pip, is found by rmcore through its entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def rmcore(*args: str) -> subprocess.CompletedProcess:
    """The real ``rmcore`` in a new process, as an operator runs it."""
    env = {**os.environ}
    env.pop("RMCORE_DISABLE_PLUGINS", None)
    return subprocess.run(
        [sys.executable, "-m", "rmcore", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_rmcore_plugins_lists_the_three_plugins_with_their_hooks_and_version():
    listed = rmcore("plugins", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["region"] == {
        "name": "region",
        "version": "0.1.0",
        "hooks": ["rmcore_match", "rmcore_register_commands"],
    }
    assert rows["region_kpis"]["hooks"] == ["rmcore_kpis"]
    assert rows["region_webhook"]["hooks"] == ["rmcore_on_event"]


def test_plugins_hook_shows_every_strategy_and_help_shows_the_new_command():
    strategies = rmcore("plugins", "--hook", "rmcore_match", "--format", "json")
    assert {row["name"] for row in json.loads(strategies.stdout)} >= {"matching_skills", "region"}
    shown = rmcore("--help")
    assert "regions" in shown.stdout
    assert "Count the active participants of each region" in shown.stdout


@pytest.mark.parametrize("plugin", ["region", "region_kpis", "region_webhook"])
def test_each_plugin_can_be_disabled_on_its_own(plugin):
    listed = rmcore("--disable-plugin", plugin, "plugins", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    names = {row["name"] for row in json.loads(listed.stdout)}
    assert plugin not in names
    assert {"region", "region_kpis", "region_webhook"} - {plugin} <= names


def test_a_disabled_strategy_cannot_be_asked_for(tmp_path):
    db = str(tmp_path / "rmcore.db")
    assert rmcore("--db", db, "init").returncode == 0
    refused = rmcore("--db", db, "--disable-plugin", "region", "match", "--strategy", "region")
    assert refused.returncode == 2
    assert "no installed matching strategy is called region" in refused.stderr
