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


def test_a_retried_unset_with_its_key_exits_0_and_appends_nothing(run_cli, raw_log):
    """The first run removed the key; the retry finds its idempotency key and stops there."""
    assert run_cli("config", "set", "a.b", "1").exit_code == 0
    first = run_cli("config", "unset", "a.b", "--idempotency-key", "u1")
    assert first.exit_code == 0, first.stderr
    before = raw_log.rows()
    retry = run_cli("config", "unset", "a.b", "--idempotency-key", "u1")
    assert retry.exit_code == 0, retry.stderr
    assert "Already recorded at position 2 (same idempotency key)" in retry.stdout
    assert raw_log.rows() == before


def test_an_unset_keeps_the_fingerprint_it_had_as_a_set_to_nothing():
    """Keys of unsets recorded as SetConfig(value=None) still match their retries."""
    from rmcore.commands import SetConfig, UnsetConfig
    from rmcore.engine import command_fingerprint

    unset = command_fingerprint([UnsetConfig(key="a.b", at="2026-01-01T00:00:00Z")])
    assert unset == command_fingerprint([SetConfig(key="a.b", value=None, at="2026-02-01")])
    assert unset != command_fingerprint([UnsetConfig(key="a.c", at="2026-01-01T00:00:00Z")])
    assert unset != command_fingerprint([SetConfig(key="a.b", value=1, at="2026-02-01")])


def test_a_refused_unset_appends_nothing_and_leaves_its_key_unused(run_cli, raw_log):
    """Refused inside the rules: exit 1, the same message, and the key is not spent."""
    refused = run_cli("config", "unset", "a.b", "--idempotency-key", "u1")
    assert refused.exit_code == 1
    assert refused.stderr == "Error: a.b is not set in program default\n"
    assert raw_log.count() == 0
    assert run_cli("config", "set", "a.b", "1").exit_code == 0
    done = run_cli("config", "unset", "a.b", "--idempotency-key", "u1")
    assert done.exit_code == 0, done.stderr
    assert "a.b removed (position 2)" in done.stdout


def test_an_unset_without_a_key_after_the_key_was_removed_is_refused(run_cli, raw_log):
    """Only a retry carrying the same idempotency key is let through."""
    assert run_cli("config", "set", "a.b", "1").exit_code == 0
    assert run_cli("config", "unset", "a.b", "--idempotency-key", "u1").exit_code == 0
    other = run_cli("config", "unset", "a.b", "--idempotency-key", "u2")
    assert other.exit_code == 1
    assert "a.b is not set in program default" in other.stderr
    assert raw_log.count() == 2


@pytest.mark.parametrize(
    "key",
    [
        "x.private_key", "x.passphrase", "x.smtp_pass", "x.pwd", "x.bearer", "x.passcode",
        "webhook.auth", "webhook.authorization", "x.client_secret", "x.access_key",
        "x.signing_keys", "x.ssh_key", "notify_email.smtppassword", "x.api_keys",
        "x.refresh_token", "x.credentials", "token_store.path",
    ],
)  # fmt: skip
def test_more_keys_that_look_like_secrets_are_refused(run_cli, raw_log, key):
    """Every common name for a password, key or token, as a whole word of the key."""
    result = run_cli("config", "set", key, "hunter2")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {key} looks like a secret; secrets are read from the environment and never "
        "stored in the log\n"
    )
    assert raw_log.count() == 0


@pytest.mark.parametrize(
    "key",
    [
        "matching_skills.min_score", "notify_email.passes", "kpi_basic.pass_mark",
        "kpi_basic.pass_rate", "notify.auth_method", "matching.sort_key", "x.passage",
        "matching_skills.key_skills", "notify_email.bypass_hours", "x.author",
    ],
)  # fmt: skip
def test_harmless_keys_near_the_secret_words_are_accepted(run_cli, key):
    """pass and auth mark a secret only as the key's last word; key only after api_,
    private_, access_ and the like."""
    result = run_cli("config", "set", key, "1")
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(
    "value",
    [
        "smtp://user:hunter2@mail.example.org",
        "redis://:hunter2@cache.example.org:6379/0",
        "postgresql://rm:hunter2@db.internal/rmcore?sslmode=require",
        '["https://bot:hunter2@hooks.example.org/in"]',
        '{"relay": {"url": "SMTPS://mailer:hunter2@mail.example.org"}}',
    ],
    ids=["smtp", "empty-user", "dsn", "in-a-list", "nested-upper-case"],
)
def test_a_value_with_a_password_in_a_url_is_refused_without_echoing_it(run_cli, raw_log, value):
    """scheme://user:password@host puts a password in the log: refused, and not repeated."""
    result = run_cli("config", "set", "notify_email.relay", value)
    assert result.exit_code == 1
    assert "the value of notify_email.relay has a password in a URL" in result.stderr
    assert "secrets are read from the environment and never stored in the log" in result.stderr
    assert "hunter2" not in result.output
    assert raw_log.count() == 0


@pytest.mark.parametrize(
    "value",
    [
        "smtp://mail.example.org:587",
        "ssh://git@git.example.org/hr/templates.git",
        "https://hooks.example.org/in?user=ops",
        "mailto:hr@example.org",
        "hr@example.org",
        "10:30",
    ],
)
def test_urls_and_addresses_without_a_password_are_accepted(run_cli, value):
    result = run_cli("config", "set", "notify_email.relay", value)
    assert result.exit_code == 0, result.stderr


def test_an_object_value_with_a_field_that_looks_like_a_secret_is_refused(run_cli, raw_log):
    """A secret nested in a JSON value is still a secret in the log."""
    value = '{"smtp": {"user": "hr", "smtpPassword": "hunter2"}}'
    result = run_cli("config", "set", "notify_email.transport", value)
    assert result.exit_code == 1
    assert "notify_email.transport has a field 'smtpPassword' that looks like a secret" in (
        result.stderr
    )
    assert "hunter2" not in result.output
    assert raw_log.count() == 0


def test_a_negative_number_is_a_value_not_an_option(run_cli):
    assert run_cli("config", "set", "kpi.offset", "-1").exit_code == 0
    assert run_cli("config", "get", "kpi.offset").stdout == "-1\n"
    typo = run_cli("config", "set", "kpi.offset", "2", "--att", "2026-01-01")
    assert typo.exit_code == 2  # an option misspelt is still a usage error


def test_an_option_in_the_value_s_place_is_a_usage_error_not_a_setting(run_cli, raw_log):
    result = run_cli("config", "set", "matching.mode", "--force")
    assert result.exit_code == 2
    assert "no such option: --force" in result.stderr
    assert raw_log.count() == 0
    as_json = run_cli("config", "set", "matching.mode", '"--force"')
    assert as_json.exit_code == 0, as_json.output
    assert run_cli("config", "get", "matching.mode").stdout == '"--force"\n'
