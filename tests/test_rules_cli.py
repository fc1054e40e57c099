"""The domain rules through the CLI: every refusal exits 1, says why, and appends nothing."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.usefixtures("populated_db")

ZOE = ("join", "zoe", "--name", "Zoe Park", "--email", "zoe@example.org", "--role", "mentor")


def assert_refused(run_cli, raw_log, args: tuple[str, ...], *phrases: str) -> str:
    """Run a command that must be refused; return its stderr."""
    before = raw_log.rows()
    result = run_cli(*args)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("Error: ")
    for phrase in phrases:
        assert phrase in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert raw_log.rows() == before
    return result.stderr


def assert_accepted(run_cli, raw_log, args: tuple[str, ...], appended: int = 1) -> str:
    """Run a command that must succeed and append ``appended`` events; return stdout."""
    before = raw_log.count()
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    assert raw_log.count() == before + appended
    return result.stdout


# Joining


def test_joining_twice_is_refused(run_cli, raw_log):
    """A person joins a program once."""
    args = ("join", "ada", "--name", "Ada", "--email", "ada@example.org", "--role", "mentor")
    assert_refused(run_cli, raw_log, args, "ada already joined this program on 2025-01-06")


def test_joining_again_after_leaving_is_refused(run_cli, raw_log):
    """Someone who left cannot come back under the same id."""
    args = ("join", "tom", "--name", "Tom", "--email", "tom@example.org", "--role", "mentee")
    assert_refused(run_cli, raw_log, args, "tom joined on 2025-01-06 and left on 2025-03-15")


def test_joining_with_a_bad_email_is_refused(run_cli, raw_log):
    """The address must be a single well-formed address."""
    args = ("join", "zoe", "--name", "Zoe", "--email", "zoe at example", "--role", "mentor")
    assert_refused(run_cli, raw_log, args, "email 'zoe at example' is not a well-formed address")


def test_joining_with_a_bad_role_is_refused(run_cli, raw_log):
    """Roles are mentor, mentee or both."""
    args = ("join", "zoe", "--name", "Zoe", "--email", "zoe@example.org", "--role", "sponsor")
    assert_refused(run_cli, raw_log, args, "role 'sponsor' is not one of mentor, mentee, both")


def test_joining_with_capacity_21_is_refused(run_cli, raw_log):
    """A mentor takes at most 20 mentees."""
    assert_refused(run_cli, raw_log, (*ZOE, "--capacity", "21"), "capacity 21 is outside 0-20")


def test_joining_with_capacity_minus_1_is_refused(run_cli, raw_log):
    """Capacity cannot be negative."""
    assert_refused(run_cli, raw_log, (*ZOE, "--capacity=-1"), "capacity -1 is outside 0-20")


def test_joining_with_capacity_0_or_20_is_accepted(run_cli, raw_log):
    """The capacity bounds themselves are allowed."""
    assert_accepted(run_cli, raw_log, (*ZOE, "--capacity", "20"))
    args = ("join", "zed", "--name", "Zed", "--email", "zed@example.org", "--role", "mentee")
    assert_accepted(run_cli, raw_log, (*args, "--capacity", "0"))


def test_joining_with_a_person_id_containing_spaces_is_refused(run_cli, raw_log):
    """Ids are single tokens so they can be typed and linked."""
    args = ("join", "zoe park", "--name", "Zoe", "--email", "zoe@example.org", "--role", "mentor")
    assert_refused(run_cli, raw_log, args, "person id 'zoe park' is not valid")


# Pairing


def test_pairing_someone_with_themselves_is_refused(run_cli, raw_log):
    """A pair has two different people."""
    assert_refused(run_cli, raw_log, ("pair", "mei", "mei"), "mei cannot be paired with themselves")


def test_pairing_a_person_who_left_is_refused(run_cli, raw_log):
    """Only active participants are paired."""
    assert_refused(
        run_cli, raw_log, ("pair", "mei", "tom"), "mentee tom left the program on 2025-03-15"
    )


def test_pairing_a_mentee_who_never_joined_is_refused(run_cli, raw_log):
    """Both sides must have joined the program."""
    assert_refused(
        run_cli, raw_log, ("pair", "linus", "nobody"), "mentee nobody has not joined this program"
    )


def test_pairing_a_mentor_who_never_joined_is_refused(run_cli, raw_log):
    """The mentor side is checked as well."""
    assert_refused(
        run_cli, raw_log, ("pair", "nobody", "ken"), "mentor nobody has not joined this program"
    )


def test_pairing_a_mentee_only_person_as_mentor_is_refused(run_cli, raw_log):
    """Someone who joined as a mentee cannot mentor."""
    assert_refused(
        run_cli, raw_log, ("pair", "grace", "ken"), "grace joined as a mentee and cannot mentor"
    )


def test_pairing_a_mentor_only_person_as_mentee_is_refused(run_cli, raw_log):
    """Someone who joined as a mentor cannot be mentored."""
    assert_refused(
        run_cli,
        raw_log,
        ("pair", "mei", "linus"),
        "linus joined as a mentor and cannot be mentored",
    )


def test_pairing_a_mentor_with_their_own_manager_is_refused(run_cli, raw_log):
    """linus reports to ken, so linus cannot mentor ken."""
    assert_refused(
        run_cli,
        raw_log,
        ("pair", "linus", "ken"),
        "ken is linus's manager",
        "outside a reporting line",
    )


def test_pairing_a_manager_as_mentor_of_their_report_is_refused(run_cli, raw_log):
    """raj manages barbara, so raj cannot mentor barbara."""
    assert_refused(run_cli, raw_log, ("pair", "raj", "barbara"), "raj is barbara's manager")


def test_pairing_an_already_actively_paired_couple_is_refused(run_cli, raw_log):
    """The same two people cannot hold two active pairs."""
    assert_refused(
        run_cli, raw_log, ("pair", "ada", "grace"), "ada and grace are already paired (ada-grace)"
    )


def test_pairing_beyond_the_mentors_capacity_is_refused(run_cli, raw_log):
    """ada has a capacity of 2 and already mentors grace and raj."""
    assert_refused(
        run_cli, raw_log, ("pair", "ada", "ken"), "ada already mentors 2 of a capacity of 2"
    )


def test_pairing_a_mentor_with_a_capacity_of_0_says_they_cannot_mentor(run_cli, raw_log):
    """Not "already mentors 0 of a capacity of 0": the capacity itself is the reason."""
    assert_accepted(run_cli, raw_log, (*ZOE, "--capacity", "0"))
    stderr = assert_refused(
        run_cli, raw_log, ("pair", "zoe", "ken"), "zoe has a capacity of 0 and cannot mentor"
    )
    assert "already mentors" not in stderr


def test_pairing_a_mentee_who_already_has_an_active_mentor_is_refused(run_cli, raw_log):
    """grace is mentored by ada; a second mentor waits until that pair ends."""
    assert_refused(
        run_cli,
        raw_log,
        ("pair", "linus", "grace"),
        "grace already has an active mentor (ada-grace)",
    )


def test_pairing_dated_before_both_people_joined_is_refused(run_cli, raw_log):
    """A pair cannot predate its members."""
    assert_refused(
        run_cli, raw_log, ("pair", "mei", "ken", "--at", "2025-01-01"), "before mei joined (2025-01"
    )


def test_pairing_dated_earlier_on_the_day_someone_joined_names_both_times(run_cli, raw_log):
    """The same date on both sides would read as a contradiction: times are shown."""
    assert_refused(
        run_cli, raw_log, ("pair", "mei", "ken", "--at", "2025-01-06T08:00:00Z"),
        "dated 2025-01-06T08:00:00Z, before mei joined (2025-01-06T09:00:00Z)",
    )  # fmt: skip


def test_pairing_a_couple_whose_earlier_pair_ended_is_accepted_with_a_new_pair_id(run_cli, raw_log):
    """linus and barbara ended once; pairing them again gives linus-barbara-2."""
    out = assert_accepted(run_cli, raw_log, ("pair", "linus", "barbara", "--at", "2025-05-01"))
    assert "Pair linus-barbara-2: linus mentors barbara" in out


# Sessions


def test_a_session_for_an_unknown_pair_is_refused(run_cli, raw_log):
    """Sessions belong to an existing pair."""
    assert_refused(
        run_cli,
        raw_log,
        ("session", "ada-ken", "--minutes", "30"),
        "there is no pair 'ada-ken' in this program",
    )


def test_a_session_of_0_minutes_is_refused(run_cli, raw_log):
    """A session lasts at least a minute."""
    assert_refused(
        run_cli,
        raw_log,
        ("session", "ada-grace", "--minutes", "0"),
        "a session lasts 1 to 600 minutes, not 0",
    )


def test_a_session_of_601_minutes_is_refused(run_cli, raw_log):
    """A session lasts at most ten hours."""
    assert_refused(
        run_cli,
        raw_log,
        ("session", "ada-grace", "--minutes", "601"),
        "a session lasts 1 to 600 minutes, not 601",
    )


def test_sessions_of_1_and_600_minutes_are_accepted(run_cli, raw_log):
    """The bounds themselves are allowed."""
    assert_accepted(run_cli, raw_log, ("session", "ada-grace", "--minutes", "1"))
    assert_accepted(run_cli, raw_log, ("session", "ada-grace", "--minutes", "600"))


def test_a_session_dated_before_the_pairing_is_refused(run_cli, raw_log):
    """ada-grace formed on 2025-02-03."""
    assert_refused(
        run_cli,
        raw_log,
        ("session", "ada-grace", "--minutes", "30", "--at", "2025-01-20"),
        "the session is dated 2025-01-20, before pair ada-grace was formed on 2025-02-03",
    )


def test_a_session_dated_after_the_pair_ended_is_refused(run_cli, raw_log):
    """linus-barbara ended on 2025-04-01."""
    assert_refused(
        run_cli,
        raw_log,
        ("session", "linus-barbara", "--minutes", "30", "--at", "2025-04-15"),
        "the session is dated 2025-04-15, after pair linus-barbara ended on 2025-04-01",
    )


def test_a_late_session_dated_within_the_pairs_life_is_accepted(run_cli, raw_log):
    """Recorded after the pair ended, but held before: the log keeps both times."""
    assert_accepted(
        run_cli, raw_log, ("session", "linus-barbara", "--minutes", "40", "--at", "2025-03-20")
    )
    ended, late = raw_log.query(
        "SELECT type, occurred_at, recorded_at FROM events WHERE stream = 'pair:linus-barbara'"
        " AND type IN ('pair_ended', 'session_held') ORDER BY position DESC LIMIT 2"
    )[::-1]
    assert ended[0] == "pair_ended" and late[0] == "session_held"
    assert late[1] == "2025-03-20T00:00:00Z" < ended[1]
    assert late[2] > ended[2]
    listing = json.loads(run_cli("pairs", "--status", "ended", "--format", "json").stdout)
    row = next(p for p in listing if p["pair_id"] == "linus-barbara")
    assert (row["sessions"], row["minutes"]) == (2, 90)


def test_a_session_in_an_unknown_mode_is_refused(run_cli, raw_log):
    """Modes are virtual and in person."""
    assert_refused(
        run_cli,
        raw_log,
        ("session", "ada-grace", "--minutes", "30", "--mode", "telepathy"),
        "mode 'telepathy' is not one of virtual, in-person",
    )


# Feedback


def test_feedback_by_someone_outside_the_pair_is_refused(run_cli, raw_log):
    """Only the mentor or the mentee rates a pair."""
    assert_refused(
        run_cli,
        raw_log,
        ("feedback", "ada-grace", "--by", "ken", "--rating", "4"),
        "ken is not a member of pair ada-grace",
    )


def test_feedback_rated_0_is_refused(run_cli, raw_log):
    """Ratings start at 1."""
    assert_refused(
        run_cli,
        raw_log,
        ("feedback", "ada-grace", "--by", "grace", "--rating", "0"),
        "rating 0 is outside 1-5",
    )


def test_feedback_rated_6_is_refused(run_cli, raw_log):
    """Ratings stop at 5."""
    assert_refused(
        run_cli,
        raw_log,
        ("feedback", "ada-grace", "--by", "grace", "--rating", "6"),
        "rating 6 is outside 1-5",
    )


def test_late_feedback_on_an_ended_pair_within_its_life_is_accepted(run_cli, raw_log):
    """mei-tom ended when tom left; mei may still rate it for a date before that."""
    assert_accepted(
        run_cli,
        raw_log,
        ("feedback", "mei-tom", "--by", "mei", "--rating", "3", "--at", "2025-03-10"),
    )


# Endings


def test_ending_a_pair_that_already_ended_is_refused(run_cli, raw_log):
    """A pair ends once."""
    assert_refused(
        run_cli,
        raw_log,
        ("end-pair", "linus-barbara", "--reason", "again"),
        "pair linus-barbara already ended on 2025-04-01",
    )


def test_leaving_twice_is_refused(run_cli, raw_log):
    """tom already left."""
    assert_refused(
        run_cli,
        raw_log,
        ("leave", "tom", "--reason", "again"),
        "tom left the program on 2025-03-15",
    )


def test_leaving_ends_every_active_pair_of_that_person_in_the_same_command(run_cli, raw_log):
    """ada leaves: both her pairs end and she leaves, in one transaction."""
    before = raw_log.count()
    result = run_cli("leave", "ada", "--reason", "new job", "--at", "2025-05-02")
    assert result.exit_code == 0, result.stderr
    assert "ada left; 2 active pair(s) ended" in result.stdout
    rows = raw_log.query(
        "SELECT position, type, stream, occurred_at, recorded_at FROM events"
        " WHERE position > ? ORDER BY position",
        (before,),
    )
    assert [r[0] for r in rows] == [before + 1, before + 2, before + 3]
    assert [(r[1], r[2]) for r in rows] == [
        ("pair_ended", "pair:ada-grace"),
        ("pair_ended", "pair:ada-raj"),
        ("left", "person:ada"),
    ]
    assert {r[3] for r in rows} == {"2025-05-02T00:00:00Z"}
    assert len({r[4] for r in rows}) == 1
    pairs = json.loads(run_cli("pairs", "--status", "all", "--format", "json").stdout)
    ended = {p["pair_id"]: (p["status"], p["ended_at"]) for p in pairs}
    assert ended["ada-grace"] == ended["ada-raj"] == ("ended", "2025-05-02T00:00:00Z")


def test_leaving_before_one_of_the_pairs_began_appends_none_of_the_endings(run_cli, raw_log):
    """All or nothing: a refused leave ends no pair either."""
    assert_refused(
        run_cli,
        raw_log,
        ("leave", "ada", "--reason", "new job", "--at", "2025-02-05"),
        "before pair ada-raj was formed",
    )


# Dates


def test_a_date_that_is_not_iso_8601_is_refused(run_cli, raw_log):
    """03/04/2025 is ambiguous; only ISO 8601 is taken."""
    assert_refused(
        run_cli,
        raw_log,
        ("session", "ada-grace", "--minutes", "30", "--at", "03/04/2025"),
        "'03/04/2025' is not an ISO 8601 date",
    )


def test_a_date_in_the_future_is_refused(run_cli, raw_log):
    """Things are recorded once they have happened."""
    assert_refused(
        run_cli,
        raw_log,
        ("session", "ada-grace", "--minutes", "30", "--at", "2999-01-01"),
        "2999-01-01 is in the future",
    )


@pytest.mark.parametrize(
    ("command", "date"),
    [
        (("session", "ada-grace", "--minutes", "30"), "0999-06-01"),
        (("end-pair", "ada-grace", "--reason", "done"), "1899-12-31T23:59:59Z"),
        (("leave", "tom", "--reason", "moved"), "0001-01-01"),
    ],
)
def test_a_date_before_1900_is_refused_so_every_stored_date_sorts_as_text(
    run_cli, raw_log, command, date
):
    """Years below 1000 would be stored without their leading zeros, and 999 sorts after
    2026 as text: the rules comparing dates would let a session precede its pair."""
    assert_refused(run_cli, raw_log, (*command, "--at", date), f"'{date}' is before 1900")


@pytest.mark.parametrize("date", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"])
def test_a_date_whose_utc_time_leaves_the_calendar_is_refused(run_cli, raw_log, date):
    assert_refused(
        run_cli,
        raw_log,
        ("leave", "tom", "--reason", "moved", "--at", date),
        "outside the calendar rmcore can count in",
    )


def test_reports_and_listings_take_the_calendar_s_last_day(run_cli):
    for args in (("log", "--to", "9999-12-31"), ("kpi", "--as-of", "9999-12-31")):
        result = run_cli(*args)
        assert result.exit_code == 0, (args, result.output)


@pytest.mark.parametrize(
    "email",
    [
        "zoe\x01@example.org",
        "zoe\x7f@example.org",
        "zoe\u202e@example.org",
        "zoe\u00a0@example.org",
    ],
)
def test_an_email_with_control_or_invisible_characters_is_refused(run_cli, raw_log, email):
    args = ("join", "zoe", "--name", "Zoe", "--email", email, "--role", "mentor")
    assert_refused(run_cli, raw_log, args, "is not a well-formed address")


def test_a_very_long_email_is_refused_without_being_echoed(run_cli, raw_log):
    args = ("join", "zoe", "--name", "Zoe", "--email", "z" * 5000 + "@x.org", "--role", "mentor")
    stderr = assert_refused(run_cli, raw_log, args, "email is longer than 254 characters")
    assert len(stderr) < 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("forget", ""), "the person id is empty"),
        (("pair", "", ""), "the mentor id is empty"),
        (("leave", " ", "--reason", "x"), "the person id is empty"),
    ],
)
def test_an_empty_id_is_named_as_empty(run_cli, raw_log, args, message):
    assert_refused(run_cli, raw_log, args, message)


def test_a_date_time_with_an_offset_is_stored_in_utc(run_cli, raw_log):
    """14:30 at +02:00 is 12:30Z."""
    assert_accepted(
        run_cli,
        raw_log,
        ("session", "ada-grace", "--minutes", "30", "--at", "2025-03-03T14:30:00+02:00"),
    )
    assert raw_log.query("SELECT occurred_at FROM events ORDER BY position DESC LIMIT 1") == [
        ("2025-03-03T12:30:00Z",)
    ]


# Idempotency


def test_a_retried_command_with_the_same_idempotency_key_appends_nothing(run_cli, raw_log):
    """The retry exits 0 and points at what the first attempt recorded."""
    args = ("session", "ada-grace", "--minutes", "30", "--at", "2025-03-03")
    first = run_cli(*args, "--idempotency-key", "sess-0303")
    assert first.exit_code == 0, first.stderr
    recorded = raw_log.rows()
    retry = run_cli(*args, "--idempotency-key", "sess-0303")
    assert retry.exit_code == 0, retry.stderr
    assert f"Already recorded at position {recorded[-1][0]}" in retry.stdout
    assert raw_log.rows() == recorded


def test_a_retried_join_with_the_same_key_is_not_refused_as_a_second_join(run_cli, raw_log):
    """The key is checked before the rules, so a retry of a join succeeds quietly."""
    assert run_cli(*ZOE, "--idempotency-key", "join-zoe").exit_code == 0
    recorded = raw_log.rows()
    retry = run_cli(*ZOE, "--idempotency-key", "join-zoe")
    assert retry.exit_code == 0, retry.stderr
    assert raw_log.rows() == recorded


def test_the_same_command_with_a_different_idempotency_key_appends_again(run_cli, raw_log):
    """Two sessions on the same day are two events when their keys differ."""
    args = ("session", "ada-grace", "--minutes", "30", "--at", "2025-03-03")
    assert_accepted(run_cli, raw_log, (*args, "--idempotency-key", "sess-a"))
    assert_accepted(run_cli, raw_log, (*args, "--idempotency-key", "sess-b"))
    keys = raw_log.query("SELECT idempotency_key FROM events ORDER BY position DESC LIMIT 2")
    assert keys == [("sess-b",), ("sess-a",)]


# Business time: back-dated commands are judged by what was true on their date


def test_a_back_dated_pairing_overlapping_an_ended_pair_of_the_mentee_is_refused(run_cli, raw_log):
    """barbara had linus as mentor until 2025-04-01: a second mentor from March overlaps."""
    args = ("pair", "mei", "barbara", "--at", "2025-03-20")
    assert_refused(run_cli, raw_log, args, "barbara already has an active mentor", "2025-04-01")


def test_a_pairing_dated_after_the_mentees_previous_pair_ended_is_accepted(run_cli, raw_log):
    """The same mentee may get a new mentor once the earlier pair is over."""
    assert_accepted(run_cli, raw_log, ("pair", "mei", "barbara", "--at", "2025-04-02"))


def test_a_back_dated_pairing_that_would_exceed_capacity_on_its_date_is_refused(run_cli, raw_log):
    """linus (capacity 1) mentored barbara until 2025-04-01."""
    args = ("pair", "linus", "grace", "--at", "2025-03-01")
    assert_refused(run_cli, raw_log, args, "linus already mentors 1 of a capacity of 1")


def test_ending_a_pair_before_its_last_session_is_refused(run_cli, raw_log):
    """ada-grace met on 2025-02-24 and got feedback on 2025-03-01."""
    args = ("end-pair", "ada-grace", "--reason", "done", "--at", "2025-02-20")
    assert_refused(run_cli, raw_log, args, "before pair ada-grace's last recorded", "2025-03-01")


def test_leaving_before_the_last_session_of_an_active_pair_is_refused(run_cli, raw_log):
    """grace's pair has feedback on 2025-03-01: she cannot have left in February."""
    args = ("leave", "grace", "--reason", "moved", "--at", "2025-02-25")
    assert_refused(run_cli, raw_log, args, "leaving is dated 2025-02-25", "2025-03-01")


# Idempotency keys belong to one command


def test_reusing_an_idempotency_key_for_a_different_command_is_refused(run_cli, raw_log):
    """A script that reuses a key must not lose its second command silently."""
    first = ("session", "ada-grace", "--minutes", "30", "--idempotency-key", "s-1")
    assert_accepted(run_cli, raw_log, first)
    other = ("session", "ada-grace", "--minutes", "45", "--idempotency-key", "s-1")
    assert_refused(run_cli, raw_log, other, "'s-1' was already used for a different command")


def test_a_retry_without_at_is_the_same_command(run_cli, raw_log):
    """Without --at the date is 'now', which moves between tries; the retry still matches."""
    args = ("session", "ada-grace", "--minutes", "30", "--idempotency-key", "s-2")
    assert_accepted(run_cli, raw_log, args)
    retry = run_cli(*args)
    assert retry.exit_code == 0
    assert "Already recorded" in retry.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("join", "zoe\n", "--name", "Zoe", "--email", "zoe@example.org", "--role", "mentor"),
        ("join", "zoe", "--name", "Zoe", "--email", "zoe@exam\nple.org", "--role", "mentor"),
        ("config", "set", "notify.enabled\n", "true"),
    ],
)
def test_a_trailing_newline_does_not_slip_through_a_pattern(run_cli, raw_log, args):
    """Ids, addresses and setting keys are matched whole: a newline in them is refused."""
    assert_refused(run_cli, raw_log, args)


def test_a_profile_change_that_puts_a_pair_across_a_reporting_line_is_refused(engine):
    """grace cannot get ada, her active mentor, as manager while their pair runs."""
    from rmcore.commands import DomainError, UpdateProfile

    change = UpdateProfile(person_id="grace", changes={"manager_id": "ada"}, at="2025-05-01")
    with pytest.raises(DomainError, match="cannot cross a reporting line"):
        engine.execute("default", change, actor="hr")
