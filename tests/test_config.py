"""``rmcore config``: program settings recorded as ``configured`` events."""

from __future__ import annotations

import csv
import io
import json

import pytest


def config_list(run_cli, *extra: str) -> list[dict]:
    """The program's settings as JSON rows."""
    result = run_cli(*extra, "config", "list", "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_set_get_list_unset_round_trip(run_cli, raw_log):
    """A value set is read back, listed, and gone after unset."""
    result = run_cli("config", "set", "matching_skills.min_score", "0.4", "--at", "2025-01-02")
    assert result.exit_code == 0, result.stderr
    assert "matching_skills.min_score = 0.4" in result.stdout
    get = run_cli("config", "get", "matching_skills.min_score")
    assert (get.exit_code, get.stdout) == (0, "0.4\n")
    assert config_list(run_cli) == [
        {"key": "matching_skills.min_score", "value": 0.4, "set_at": "2025-01-02T00:00:00Z"}
    ]
    unset = run_cli("config", "unset", "matching_skills.min_score")
    assert unset.exit_code == 0, unset.stderr
    assert "matching_skills.min_score removed" in unset.stdout
    assert config_list(run_cli) == []
    missing = run_cli("config", "get", "matching_skills.min_score")
    assert missing.exit_code == 1
    assert "matching_skills.min_score is not set in program default" in missing.stderr
    assert raw_log.count() == 2


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("2.5", 2.5),
        ("true", True),
        ('["a"]', ["a"]),
        ('{"w": 1}', {"w": 1}),
        ("12", 12),
        ("hr@example.org", "hr@example.org"),
        ("AI tools", "AI tools"),
        ('"2.5"', "2.5"),
    ],
    ids=["float", "bool", "list", "object", "int", "email-text", "plain-text", "quoted-number"],
)
def test_values_are_parsed_as_json_when_they_are_json_else_kept_as_text(
    run_cli, raw_log, raw, parsed
):
    """The stored payload, the get output and the listing agree on the parsed value."""
    assert run_cli("config", "set", "notify_email.setting", raw).exit_code == 0
    (data,) = raw_log.query("SELECT data FROM events WHERE type = 'configured'")[0]
    assert json.loads(data) == {"key": "notify_email.setting", "value": parsed}
    assert json.loads(run_cli("config", "get", "notify_email.setting").stdout) == parsed
    assert config_list(run_cli)[0]["value"] == parsed


def test_setting_the_same_value_again_appends_nothing(run_cli, raw_log):
    """An unchanged setting is not recorded twice."""
    assert run_cli("config", "set", "kpi_basic.target_sessions", "6").exit_code == 0
    before = raw_log.rows()
    again = run_cli("config", "set", "kpi_basic.target_sessions", "6")
    assert again.exit_code == 0, again.stderr
    assert "Nothing to record" in again.stdout
    assert raw_log.rows() == before
    changed = run_cli("config", "set", "kpi_basic.target_sessions", "8")
    assert changed.exit_code == 0
    assert raw_log.count() == len(before) + 1


@pytest.mark.parametrize(
    "key", ["smtp.password", "webhook.token", "notify_email.api_key", "vault.secret_name"]
)
def test_keys_that_look_like_secrets_are_refused(run_cli, raw_log, key):
    """Secrets come from the environment; they never enter the log."""
    result = run_cli("config", "set", key, "hunter2")
    assert result.exit_code == 1
    assert f"{key} looks like a secret" in result.stderr
    assert "hunter2" not in result.output
    assert raw_log.count() == 0


@pytest.mark.parametrize("key", ["Matching.Weight", "nodots", "a..b", "a.b c", ".a.b"])
def test_keys_that_are_not_dotted_lower_case_names_are_refused(run_cli, raw_log, key):
    """Keys look like plugin_name.setting."""
    result = run_cli("config", "set", key, "1")
    assert result.exit_code == 1
    assert "is not a dotted lower-case name" in result.stderr
    assert raw_log.count() == 0


def test_unsetting_a_key_that_is_not_set_is_refused(run_cli, raw_log):
    """There is nothing to remove."""
    result = run_cli("config", "unset", "matching_skills.min_score")
    assert result.exit_code == 1
    assert "matching_skills.min_score is not set" in result.stderr
    assert raw_log.count() == 0


def test_config_changes_are_configured_events_in_the_log(run_cli):
    """An audit sees each setting, its value and when it was in force."""
    run_cli("config", "set", "matching_skills.min_score", "0.3", "--at", "2025-01-02")
    run_cli("config", "set", "matching_skills.min_score", "0.5", "--at", "2025-02-02")
    run_cli("config", "unset", "matching_skills.min_score", "--at", "2025-03-02")
    result = run_cli("log", "--type", "configured")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["type"], e["stream"], e["version"]) for e in events] == [
        ("configured", "program", 1),
        ("configured", "program", 2),
        ("configured", "program", 3),
    ]
    assert [e["data"] for e in events] == [
        {"key": "matching_skills.min_score", "value": 0.3},
        {"key": "matching_skills.min_score", "value": 0.5},
        {"key": "matching_skills.min_score", "value": None},
    ]
    assert [e["occurred_at"][:10] for e in events] == ["2025-01-02", "2025-02-02", "2025-03-02"]


def test_settings_belong_to_one_program(run_cli):
    """A setting in one program is not visible in another."""
    assert run_cli("--program", "spring", "config", "set", "a.b", "1").exit_code == 0
    spring = config_list(run_cli, "--program", "spring")
    assert [(row["key"], row["value"]) for row in spring] == [("a.b", 1)]
    assert config_list(run_cli) == []


def test_config_list_in_csv_and_table_formats(run_cli):
    """CSV has a header row; the table lists key and value."""
    run_cli("config", "set", "matching_skills.weights", '{"ai": 2}', "--at", "2025-01-02")
    rows = list(csv.reader(io.StringIO(run_cli("config", "list", "--format", "csv").stdout)))
    assert rows == [
        ["key", "value", "set_at"],
        ["matching_skills.weights", '{"ai": 2}', "2025-01-02T00:00:00Z"],
    ]
    table = run_cli("config", "list", "--format", "table").stdout.splitlines()
    assert table[0].split() == ["key", "value", "set_at"]
    assert table[2].startswith("matching_skills.weights")


@pytest.mark.parametrize("key", ["matching.tokenizer", "matching_skills.secretary_weight"])
def test_keys_that_merely_contain_a_secret_word_are_accepted(run_cli, raw_log, key):
    """Only whole words such as token or secret mark a key as a secret."""
    result = run_cli("config", "set", key, "1")
    assert result.exit_code == 0, result.stderr


def test_setting_null_is_refused_in_favour_of_unset(run_cli, raw_log):
    """null would silently remove the key: say to use unset."""
    before = raw_log.count()
    result = run_cli("config", "set", "matching_skills.min_score", "null")
    assert result.exit_code == 1
    assert "config unset matching_skills.min_score" in result.stderr
    assert raw_log.count() == before


def test_changing_a_setting_from_false_to_zero_is_recorded(run_cli, raw_log):
    """false and 0 are different JSON values even though Python calls them equal."""
    assert run_cli("config", "set", "matching_skills.min_score", "false").exit_code == 0
    before = raw_log.count()
    assert run_cli("config", "set", "matching_skills.min_score", "0").exit_code == 0
    assert raw_log.count() == before + 1
    assert run_cli("config", "get", "matching_skills.min_score").stdout.strip() == "0"
