"""The ``rmcore`` command line: parse, call the engine, print. Exit 0 ok, 1 refused, 2 usage.

Start-up imports only click, pluggy and the plugins' entry points: every command imports
the engine and what else it needs when it runs, so ``rmcore --help`` stays quick.
"""

from __future__ import annotations

import getpass
import json
import re
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
import pluggy

from rmcore import demo_command, kpi_commands, notify_command
from rmcore.constants import DEFAULT_PROGRAM
from rmcore.import_command import import_command
from rmcore.match_command import match
from rmcore.names import name_problem
from rmcore.options import at_option, count_lines, idempotency_option, progress_bar
from rmcore.output import format_option, write_rows
from rmcore.plugins import (
    PluginLoadError,
    disabled_from_env,
    each_call,
    hook_names,
    known_plugin_names,
    list_plugins,
    make_plugin_manager,
)
from rmcore.when import WhenError, end_of_day, parse_occurred, recorded_cut

if TYPE_CHECKING:
    from rmcore.engine import Engine, Outcome


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that are a user's mistake or a refusal: a message and exit 1."""
    import sqlite3

    from rmcore.codec import DecodeError
    from rmcore.commands import DomainError
    from rmcore.db import DatabaseError
    from rmcore.personal import DamagedKey, ErasedSubject
    from rmcore.queries import DamagedReadModels
    from rmcore.store import StoreError

    return (DomainError, WhenError, DatabaseError, StoreError, DecodeError, PluginLoadError,
            ErasedSubject, DamagedKey, DamagedReadModels, sqlite3.DatabaseError)  # fmt: skip


class RmcoreGroup(click.Group):
    """A group that turns refusals into ``Error: ...`` on stderr and exit 1, no traceback."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Refuse arguments that are not text (bytes a terminal could not decode)."""
        for arg in args:
            try:
                arg.encode("utf-8")
            except UnicodeEncodeError as exc:
                shown = arg.encode("utf-8", "backslashreplace").decode("ascii", "replace")
                raise click.ClickException(
                    f"the argument '{shown}' is not valid UTF-8 text (character "
                    f"{exc.start + 1}); set the terminal or the calling script to UTF-8"
                ) from None
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand, translating user-facing errors."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if not isinstance(exc, user_errors()):
                owner = PLUGIN_COMMANDS.get(ctx.invoked_subcommand or "")
                if owner is None:
                    raise
                # A plugin's own command failed: name the plugin, as a failing hook does.
                raise click.ClickException(
                    f"`{ctx.invoked_subcommand}` of plugin {owner} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            import sqlite3

            if isinstance(exc, sqlite3.DatabaseError):
                if "readonly" in str(exc) and isinstance(ctx.obj, App):
                    raise click.ClickException(
                        f"cannot write {ctx.obj.db_path}: the database file (or its folder) "
                        f"is read-only for this user ({exc})"
                    ) from None
                raise click.ClickException(
                    f"database error: {_database_error(exc, ctx.invoked_subcommand)}"
                ) from None
            raise click.ClickException(str(exc)) from None


def _database_error(exc: Exception, command: str | None) -> str:
    """SQLite's error, without the bytes of a damaged text value (Python's sqlite3 quotes
    them whole, control characters and all), with the way out where there is one."""
    from rmcore.projections import TABLES as READ_MODEL_TABLES
    from rmcore.queries import REPLAY_HINT

    undecodable = re.match(r"Could not decode to UTF-8 column '([^']*)'", str(exc))
    if undecodable:
        column = undecodable.group(1)
        # an expression (the log's JSON lines are built in SQL) is no column to name
        what = f"column '{column}'" if column.isidentifier() else "a stored value"
        return f"{what} holds text that is not UTF-8: the file is damaged; restore it from a backup"
    clash = re.match(r"UNIQUE constraint failed: (\w+)\.", str(exc))
    if clash and clash.group(1) in READ_MODEL_TABLES and command != "import-log":
        # the fold met rows it had already written: its checkpoint is behind them (an
        # import-log meets this with events of its own file, which a replay cannot mend)
        return f"{exc}; {REPLAY_HINT}"
    return str(exc)


class App:
    """Per-invocation settings and the lazily opened engine."""

    def __init__(self, db_path: str, program: str, actor: str, disabled: tuple[str, ...]) -> None:
        self.db_path = db_path
        self.program = program
        self.actor = actor
        self.disabled = disabled
        self._engine: Engine | None = None

    def engine(self, *, create: bool = False) -> Engine:
        """The engine on ``--db``, opened once per invocation."""
        from rmcore.engine import Engine

        if self._engine is None:
            pm = PLUGIN_MANAGER
            if self.disabled:
                pm = make_plugin_manager([*disabled_from_env(), *self.disabled])
            self._engine = Engine.open(self.db_path, create=create, pm=pm)
        return self._engine

    def close(self) -> None:
        """Close the engine if it was opened."""
        if self._engine is not None:
            self._engine.close()

    def run(self, command, idempotency_key: str | None = None, **kwargs) -> Outcome:
        """Execute one command (or several) for the selected program."""
        return self.engine().execute(
            self.program, command, actor=self.actor, idempotency_key=idempotency_key, **kwargs
        )


def default_actor() -> str:
    """The OS user, which ``--actor`` / ``RMCORE_ACTOR`` override."""
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def split_list(value: str | None) -> tuple[str, ...]:
    """``"a, b;c"`` -> ``("a", "b", "c")``: commas or semicolons separate items."""
    if not value:
        return ()
    return tuple(item.strip() for item in value.replace(";", ",").split(",") if item.strip())


def report(outcome: Outcome, message: Callable[[Outcome], str]) -> None:
    """Print what a command recorded, or that a retry recorded nothing."""
    if outcome.duplicate:
        where = f" at position {outcome.events[0].position}" if outcome.events else ""
        click.echo(f"Already recorded{where} (same idempotency key); nothing appended.")
    elif not outcome.events:
        click.echo("Nothing to record: no change.")
    else:
        click.echo(message(outcome))


def positions(outcome: Outcome) -> str:
    """``position 7`` or ``positions 7-9``."""
    first, last = outcome.events[0].position, outcome.events[-1].position
    return f"position {first}" if first == last else f"positions {first}-{last}"


pass_app = click.make_pass_decorator(App)


@click.group(cls=RmcoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db_path",
    envvar="RMCORE_DB",
    default="rmcore.db",
    show_default=True,
    type=click.Path(dir_okay=False, readable=False),
    help="The SQLite database file (env RMCORE_DB).",
)
@click.option(
    "--program",
    envvar="RMCORE_PROGRAM",
    default=DEFAULT_PROGRAM,
    show_default=True,
    help="The program (cohort) to work on (env RMCORE_PROGRAM).",
)
@click.option(
    "--actor",
    envvar="RMCORE_ACTOR",
    default=None,
    help="Who is issuing commands (env RMCORE_ACTOR; default the OS user).",
)
@click.option(
    "--disable-plugin",
    multiple=True,
    metavar="NAME",
    help="Block a plugin by name; repeatable (env RMCORE_DISABLE_PLUGINS, comma-separated).",
)
@click.version_option(package_name="rmcore")
@click.pass_context
def cli(ctx: click.Context, db_path: str, program: str, actor: str | None, disable_plugin):
    """Run reverse-mentoring programs from an append-only, auditable event log."""
    if PLUGIN_ERROR and not disable_plugin:
        raise click.ClickException(PLUGIN_ERROR)
    known = known_plugin_names()
    for names, hint in ((disable_plugin, "--disable-plugin"), (disabled_from_env(), None)):
        unknown = set(names) - known
        if unknown:
            raise click.BadParameter(
                f"no installed plugin is called {', '.join(sorted(unknown))}",
                param_hint=hint or "RMCORE_DISABLE_PLUGINS",
            )
    for label, hint, value in (
        ("program", "--program / RMCORE_PROGRAM", program),
        ("actor", "--actor / RMCORE_ACTOR", actor),
    ):
        problem = value is not None and name_problem(f"{label} name", value)
        if problem:
            raise click.BadParameter(problem, param_hint=hint)
    owner = PLUGIN_COMMANDS.get(ctx.invoked_subcommand or "")
    if owner in disable_plugin:
        raise click.UsageError(
            f"`{ctx.invoked_subcommand}` comes from plugin {owner}, which --disable-plugin blocks"
        )
    app = App(db_path, program, actor or default_actor(), tuple(disable_plugin))
    ctx.obj = app
    ctx.call_on_close(app.close)


@cli.command()
@pass_app
def init(app: App) -> None:
    """Create the database (safe to run again)."""
    app.engine(create=True)
    click.echo(f"Database ready at {app.db_path}")


@cli.command("programs")
@format_option
@pass_app
def programs_command(app: App, fmt: str | None) -> None:
    """List the programs in this database."""
    from rmcore import queries

    rows = queries.programs(app.engine().conn)
    write_rows(rows, ("program", "events", "started_at", "active_people", "active_pairs"), fmt)


@cli.group()
def config() -> None:
    """Program settings, recorded as events so an audit shows what was in force when."""


def parse_value(raw: str) -> Any:
    """A JSON value if the text is one (2.5, true, ["a"]), else the text itself."""

    def not_finite(name: str) -> Any:
        raise click.BadParameter(f"{name} is not a number a setting can hold", param_hint="VALUE")

    try:
        value = json.loads(raw, parse_constant=not_finite)
    except RecursionError:
        raise click.BadParameter("the JSON is nested too deeply", param_hint="VALUE") from None
    except ValueError:
        return raw
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        not_finite(raw)
    return value


# A negative number is a value, not an unknown option (`config set kpi.offset -1`).
@config.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.argument("value")
@at_option
@idempotency_option
@pass_app
def config_set(app: App, key: str, value: str, at: str | None, idempotency_key: str | None):
    """Set KEY to VALUE (parsed as JSON when it is JSON, else kept as text)."""
    from rmcore.commands import SetConfig

    parsed = parse_value(value)
    if value.startswith("-") and not isinstance(parsed, int | float):
        # Only a negative number passes as a value in an option's place; anything else
        # there is more likely a mistyped option than a setting.
        raise click.UsageError(
            f"no such option: {value}; to set text that starts with '-', give it as JSON:"
            f" rmcore config set {key} '{json.dumps(value)}'"
        )
    if parsed is None:
        raise click.ClickException(f"null would remove {key}; use `rmcore config unset {key}`")
    outcome = app.run(SetConfig(key=key, value=parsed, at=parse_occurred(at)), idempotency_key)
    report(outcome, lambda o: f"{key} = {json.dumps(parsed)} ({positions(o)})")


@config.command("unset")
@click.argument("key")
@at_option
@idempotency_option
@pass_app
def config_unset(app: App, key: str, at: str | None, idempotency_key: str | None):
    """Remove KEY, so plugins fall back to their defaults (exit 1 if it is not set)."""
    from rmcore.commands import UnsetConfig

    # "Not set" is decided by the rules inside the append transaction, after the
    # idempotency key is looked up: a retry of a done unset exits 0 and appends nothing.
    outcome = app.run(UnsetConfig(key=key, at=parse_occurred(at)), idempotency_key)
    report(outcome, lambda o: f"{key} removed ({positions(o)})")


@config.command("get")
@click.argument("key")
@pass_app
def config_get(app: App, key: str) -> None:
    """Print the current value of KEY as JSON (exit 1 if it is not set)."""
    from rmcore import queries

    value = queries.SqlState(app.engine().conn, app.program).config(key)
    if value is None:
        raise click.ClickException(f"{key} is not set in program {app.program}")
    click.echo(json.dumps(value, ensure_ascii=False))


@config.command("list")
@format_option
@pass_app
def config_list(app: App, fmt: str | None) -> None:
    """List the program's current settings."""
    from rmcore import queries

    write_rows(queries.config_rows(app.engine().conn, app.program), ("key", "value", "set_at"), fmt)


@cli.command()
@click.argument("person")
@click.option("--name", required=True, help="Full name.")
@click.option("--email", required=True, help="Email address.")
@click.option("--role", required=True, help="mentor, mentee or both.")
@click.option("--generation", default="", help="Generation or career stage (e.g. early-career).")
@click.option("--department", default="", help="Department.")
@click.option("--manager", default=None, help="The person id of their manager.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--offers", default="", help="Skills they can teach, comma-separated.")
@click.option("--seeks", default="", help="Skills they want to learn, comma-separated.")
@click.option("--goal", "goals", multiple=True, help="A goal for the program; repeatable.")
@click.option("--capacity", type=int, default=None, help="Mentees they can take (0-20).")
@at_option
@idempotency_option
@pass_app
def join(app: App, person, name, email, role, generation, department, manager, timezone,
         offers, seeks, goals, capacity, at, idempotency_key) -> None:  # fmt: skip
    """PERSON joins the program."""
    from rmcore.commands import Join

    command = Join(
        person_id=person,
        name=name,
        email=email,
        role=role,
        generation=generation,
        department=department,
        manager_id=manager or None,
        timezone=timezone,
        skills_offered=split_list(offers),
        skills_sought=split_list(seeks),
        goals=goals,
        capacity=capacity,
        at=parse_occurred(at),
    )
    outcome = app.run(command, idempotency_key)
    report(outcome, lambda o: f"{person} joined {app.program} ({positions(o)})")


@cli.command()
@click.argument("mentor")
@click.argument("mentee")
@click.option("--goal", "goals", multiple=True, help="A goal for the pair; repeatable.")
@at_option
@idempotency_option
@pass_app
def pair(app: App, mentor, mentee, goals, at, idempotency_key) -> None:
    """Pair MENTOR with MENTEE by hand."""
    from rmcore.commands import MakePair

    command = MakePair(mentor_id=mentor, mentee_id=mentee, goals=goals, at=parse_occurred(at))
    outcome = app.run(command, idempotency_key)
    report(
        outcome,
        lambda o: (
            f"Pair {json.loads(o.events[0].data)['pair_id']}: {mentor} mentors {mentee} "
            f"({positions(o)})"
        ),
    )


@cli.command()
@click.argument("pair_id", metavar="PAIR")
@click.option("--minutes", type=int, required=True, help="How long it lasted (1-600).")
@click.option("--topic", "topics", multiple=True, help="A topic covered; repeatable.")
@click.option("--mode", default="virtual", show_default=True, help="virtual or in-person.")
@at_option
@idempotency_option
@pass_app
def session(app: App, pair_id, minutes, topics, mode, at, idempotency_key) -> None:
    """PAIR held a session."""
    from rmcore.commands import RecordSession

    command = RecordSession(
        pair_id=pair_id, minutes=minutes, topics=topics, mode=mode, at=parse_occurred(at)
    )
    outcome = app.run(command, idempotency_key)
    report(outcome, lambda o: f"Session of {minutes} min recorded for {pair_id} ({positions(o)})")


@cli.command()
@click.argument("pair_id", metavar="PAIR")
@click.option("--by", "by", required=True, help="The member of the pair giving feedback.")
@click.option("--rating", type=int, required=True, help="1 (poor) to 5 (excellent).")
@click.option("--fresh-perspective", is_flag=True, help="They gained a fresh perspective.")
@click.option("--gained", default="", help="Skills gained, comma-separated.")
@click.option("--comment", default="", help="Free-text comment.")
@at_option
@idempotency_option
@pass_app
def feedback(app: App, pair_id, by, rating, fresh_perspective, gained, comment, at,
             idempotency_key) -> None:  # fmt: skip
    """A member of PAIR gives feedback."""
    from rmcore.commands import GiveFeedback

    command = GiveFeedback(
        pair_id=pair_id,
        by=by,
        rating=rating,
        fresh_perspective=fresh_perspective,
        skills_gained=split_list(gained),
        comment=comment,
        at=parse_occurred(at),
    )
    outcome = app.run(command, idempotency_key)
    report(outcome, lambda o: f"Feedback from {by} on {pair_id} recorded ({positions(o)})")


@cli.command("end-pair")
@click.argument("pair_id", metavar="PAIR")
@click.option("--reason", required=True, help="Why the pair ended.")
@at_option
@idempotency_option
@pass_app
def end_pair(app: App, pair_id, reason, at, idempotency_key) -> None:
    """End PAIR."""
    from rmcore.commands import EndPair

    outcome = app.run(
        EndPair(pair_id=pair_id, reason=reason, at=parse_occurred(at)), idempotency_key
    )
    report(outcome, lambda o: f"Pair {pair_id} ended ({positions(o)})")


@cli.command()
@click.argument("person")
@click.option("--reason", required=True, help="Why they left (retention reporting uses it).")
@at_option
@idempotency_option
@pass_app
def leave(app: App, person, reason, at, idempotency_key) -> None:
    """PERSON leaves the program; their active pairs end with them."""
    from rmcore.commands import Leave

    outcome = app.run(
        Leave(person_id=person, reason=reason, at=parse_occurred(at)), idempotency_key
    )

    def message(o: Outcome) -> str:
        ended = sum(1 for e in o.events if e.type == "pair_ended")
        return f"{person} left; {ended} active pair(s) ended ({positions(o)})"

    report(outcome, message)


@cli.command("forget")
@click.argument("person")
@at_option
@idempotency_option
@pass_app
def forget_command(app: App, person: str, at: str | None, idempotency_key: str | None) -> None:
    """Erase PERSON's name, email and comments for good (an active person leaves first)."""
    from rmcore.forget import forget

    done = forget(app.engine(), app.program, person, actor=app.actor, at=parse_occurred(at),
                  idempotency_key=idempotency_key)  # fmt: skip
    outcome = done.outcome
    if outcome.duplicate or done.already_forgotten:
        click.echo(f"{person} was already forgotten; nothing appended, their copies were "
                   "erased again and the file compacted.")  # fmt: skip
    else:
        ended = sum(1 for e in outcome.events if e.type == "pair_ended")
        left = " left the program and" if any(e.type == "left" for e in outcome.events) else ""
        click.echo(
            f"{person}{left} was forgotten ({positions(outcome)}); {ended} active pair(s) "
            "ended. Their name, email and comments can no longer be read."
        )
    if done.not_compacted:
        click.echo("Warning: the file could not be compacted, so it may still hold the erased "
                   f"text in unused pages: {done.not_compacted} (`rmcore forget {person}`)."
                   , err=True)  # fmt: skip


@cli.command()
@click.option(
    "--status",
    type=click.Choice(["active", "left", "forgotten", "all"]),
    default="active",
    show_default=True,
    help="Which people to list.",
)
@format_option
@pass_app
def people(app: App, status: str, fmt: str | None) -> None:
    """List the program's participants."""
    from rmcore import queries

    found = queries.people(
        app.engine().conn, app.program, status=None if status == "all" else status
    )
    write_rows(
        (person_row(p) for p in found),
        queries.PERSON_COLUMNS,
        fmt,
        table_columns=(
            "person_id", "name", "role", "generation", "department", "manager_id",
            "skills_offered", "skills_sought", "capacity", "status",
        ),
    )  # fmt: skip


def person_row(person) -> dict[str, Any]:
    """A Person as a flat dict for output."""
    from rmcore.queries import PERSON_COLUMNS

    return {name: getattr(person, name) for name in PERSON_COLUMNS}


@cli.command()
@click.option(
    "--status",
    type=click.Choice(["active", "ended", "all"]),
    default="active",
    show_default=True,
    help="Which pairs to list.",
)
@format_option
@pass_app
def pairs(app: App, status: str, fmt: str | None) -> None:
    """List the program's pairs with their session counts."""
    from rmcore import queries

    rows = queries.pair_rows(
        app.engine().conn, app.program, status=None if status == "all" else status
    )
    columns = (
        "pair_id",
        "mentor_id",
        "mentee_id",
        "status",
        "paired_at",
        "ended_at",
        "sessions",
        "minutes",
        "last_session_at",
        "strategy",
        "score",
    )
    write_rows(rows, columns, fmt)


@cli.command()
@click.option("--since", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Only events after POS.")  # fmt: skip
@click.option("--type", "types", multiple=True, help="Only events of this type; repeatable.")
@click.option(
    "--stream", "streams", multiple=True, help="Only this stream (person:ID, pair:ID); repeatable."
)
@click.option("--from", "from_", metavar="DATE", help="Only events that occurred on or after.")
@click.option("--to", metavar="DATE", help="Only events that occurred on or before (whole day).")
@click.option("--actor", "actor_filter", metavar="NAME", help="Only events recorded by NAME.")
@click.option("--all-programs", is_flag=True, help="Every program, not only --program.")
@click.option("--follow", is_flag=True, help="Keep printing new events until interrupted.")
@pass_app
def log(app: App, since, types, streams, from_, to, actor_filter, all_programs, follow) -> None:
    """Print events as JSON lines: the full envelope, hash included, ready for jq."""
    import attrs

    from rmcore import queries
    from rmcore.log_stream import json_line_blocks
    from rmcore.store import EventFilter
    from rmcore.when import OCCURRED_FORMAT, to_utc

    engine = app.engine()
    check_event_types(engine, types)
    where = EventFilter(
        since=since,
        program=None if all_programs else app.program,
        types=types or None,
        streams=streams or None,
        occurred_from=to_utc(from_).strftime(OCCURRED_FORMAT) if from_ else None,
        occurred_to=end_of_day(to) if to else None,
        actor=actor_filter,
        walk_positions=not all_programs and queries.mostly_program(engine.conn, app.program),
    )
    path = None if engine.path is None else str(engine.path)
    out = sys.stdout.buffer  # blocks of UTF-8 lines, each written with one call
    try:
        while True:
            for last, block in json_line_blocks(engine.store, where, path=path):
                out.write(block)
                where = attrs.evolve(where, since=last)
            out.flush()
            if not follow:
                return
            time.sleep(FOLLOW_POLL_SECONDS)
    except KeyboardInterrupt:
        return
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (| head): not an error


FOLLOW_POLL_SECONDS = 0.5


def check_event_types(engine: Engine, types: tuple[str, ...]) -> None:
    """Refuse (usage error, exit 2) an event type that no installed code registers and the
    log does not hold, naming the known types: a typo must not look like "no events"."""
    from rmcore import queries

    known = set(engine.registry.names())
    unknown = [t for t in dict.fromkeys(types) if t not in known]
    if unknown:  # a type recorded by a plugin no longer installed is still a real one
        recorded = queries.recorded_types(engine.conn, unknown)
        unknown = [t for t in unknown if t not in recorded]
    if not unknown:
        return
    import difflib

    close = difflib.get_close_matches(unknown[0], sorted(known), n=1, cutoff=0.5)
    raise click.BadParameter(
        f"no event type is called {', '.join(map(repr, unknown))}"
        + (f" (did you mean {close[0]}?)" if close else "")
        + f"; the known types are {', '.join(sorted(known))}",
        param_hint="--type",
    )


@cli.command("export")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The .jsonl file.")
@click.option("--all-programs", is_flag=True, help="The whole log, not only --program.")
@click.option(
    "--keys-out",
    type=click.Path(dir_okay=False),
    help="Also write the keys that open names, emails and comments (owner-only file).",
)
@pass_app
def export_command(app: App, out: str, all_programs: bool, keys_out: str | None) -> None:
    """Write the program's log to a JSON-lines file that import-log verifies on the way in.

    The log holds names, emails and comments encrypted; without --keys-out the copy
    cannot read them."""
    from pathlib import Path

    from rmcore import audit
    from rmcore.transfer import export_files

    engine = app.engine()
    if keys_out and Path(keys_out).resolve() == Path(out).resolve():
        raise click.UsageError("--keys-out must be another file than --out")
    program = None if all_programs else app.program
    with progress_bar("Exporting", audit.event_count(engine)) as bar:
        count, keys = export_files(engine, out, keys_out, program=program, progress=bar.update)
    click.echo(f"Exported {count} events to {out}.")
    if keys_out:
        click.echo(f"Wrote {keys} keys to {keys_out}: keep it apart from the export, and "
                   "delete it once imported.")  # fmt: skip


@cli.command("import-log")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--keys",
    type=click.Path(dir_okay=False),
    help="The key file written by export --keys-out, so names and comments can be read.",
)
@pass_app
def import_log_command(app: App, file: str, keys: str | None) -> None:
    """Append the events of an export to this database, verifying them; all or nothing."""
    from rmcore.transfer import import_log

    engine = app.engine()
    with progress_bar("Importing", count_lines(file)) as bar:
        summary = import_log(engine, file, keys=keys, progress=bar.update)
    click.echo(
        f"Read {summary.events} events: {summary.appended} appended, "
        f"{summary.skipped} already here."
    )


@cli.command("backup")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The new file.")
@pass_app
def backup_command(app: App, out: str) -> None:
    """Copy the database to a new file while others keep working; the copy is verified."""
    from rmcore import audit
    from rmcore.backup import backup
    from rmcore.engine import Engine

    engine = app.engine()
    bar_state: dict[str, Any] = {}
    with progress_bar("Backing up", 100) as bar:

        def progress(done: int, total: int) -> None:
            percent = done * 100 // max(total, 1)
            bar.update(percent - bar_state.get("shown", 0))
            bar_state["shown"] = percent

        backup(engine, out, progress=progress)
    with Engine.open(out, pm=engine.pm) as copy:
        verdict = audit.verify(copy)
    if not verdict.ok:
        raise click.ClickException(
            f"the backup does not verify at position {verdict.bad_position}: {verdict.reason}"
        )
    click.echo(f"Backed up {verdict.checked} events to {out}; the copy verifies.")


@cli.command("history")
@click.argument("entity", metavar="PERSON-or-PAIR")
@format_option
@pass_app
def history_command(app: App, entity: str, fmt: str | None) -> None:
    """Everything that happened to one person or pair, in order, with who recorded it."""
    from rmcore.history import history, opened_payload

    rows = (
        {
            "position": e.position,
            "occurred_at": e.occurred_at,
            "recorded_at": e.recorded_at,
            "actor": e.actor,
            "type": e.type,
            "stream": e.stream,
            "data": opened_payload(app.engine(), e),
        }
        for e in history(app.engine(), app.program, entity)
    )
    columns = ("position", "occurred_at", "recorded_at", "actor", "type", "stream", "data")
    table = ("position", "occurred_at", "recorded_at", "actor", "type", "details")
    write_rows(
        ({**row, "details": summarise(row["data"])} for row in rows),
        columns,
        fmt,
        table_columns=table,
    )


def summarise(data: dict[str, Any], width: int = 70) -> str:
    """A payload as short ``key=value`` text for a terminal (ids of the entity left out)."""
    parts = []
    for key, value in data.items():
        if key in ("pair_id", "person_id") or value in (None, "", [], {}):
            continue
        if isinstance(value, list):
            value = ";".join(map(str, value))
        elif isinstance(value, dict):
            value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        parts.append(f"{key}={value}")
    text = " ".join(parts)
    return text if len(text) <= width else text[: width - 3] + "..."


@cli.command()
@click.option("--hook", metavar="NAME", help="Only plugins implementing this hook.")
@format_option
@pass_app
def plugins(app: App, hook: str | None, fmt: str | None) -> None:
    """List installed plugins, their versions and the hooks they implement."""
    pm = PLUGIN_MANAGER
    if app.disabled:
        pm = make_plugin_manager([*disabled_from_env(), *app.disabled])
    if hook is not None and hook not in hook_names():
        raise click.BadParameter(
            f"{hook} is not a hook; the hooks are {', '.join(hook_names())}", param_hint="--hook"
        )
    rows = [row for row in list_plugins(pm) if hook is None or hook in row["hooks"]]
    write_rows(rows, ("name", "version", "hooks"), fmt)


@cli.command()
@click.option("--check", is_flag=True, help="Rebuild into a scratch database and compare.")
@click.option("--as-of", metavar="DATE", help="The program as it was in the world on DATE.")
@click.option("--known-at", metavar="DATETIME", help="The program as recorded by DATETIME.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="New database file for --as-of / --known-at (the live one is never touched).",
)
@pass_app
def replay(app: App, check: bool, as_of: str | None, known_at: str | None, out: str | None):
    """Rebuild the read models from the log; --check compares with the live ones; --as-of or
    --known-at write a past moment to a separate, read-only database."""
    from rmcore import audit

    engine = app.engine()
    total = audit.event_count(engine)
    if as_of or known_at:
        if check or not out or (as_of and known_at):
            raise click.UsageError("use --as-of DATE or --known-at DATETIME, with --out FILE")
        with progress_bar("Replaying", total) as bar:
            info, folded = audit.snapshot(
                engine,
                out,
                as_of=end_of_day(as_of) if as_of else None,
                known_at=recorded_cut(known_at) if known_at else None,
                progress=bar.update,
            )
        click.echo(
            f"Wrote {out}: the program {info.kind} {info.moment} ({info.head} events copied, "
            f"{folded} in its read models). Read it with: rmcore --db {out} people"
        )
        return
    if out:
        raise click.UsageError("--out goes with --as-of or --known-at")
    with progress_bar("Replaying", total) as bar:
        if check:
            differences = audit.replay_check(engine, progress=bar.update)
        else:
            count = audit.replay(engine, progress=bar.update)
    if not check:
        click.echo(f"Replayed {count} events into the read models.")
        return
    if differences:
        for line in differences:
            click.echo(line, err=True)
        raise click.ClickException(
            f"the live read models differ from a fresh replay ({len(differences)} difference(s))"
        )
    click.echo(f"Replay check passed: {total} events, live read models equal a fresh replay.")


@cli.command()
@click.option("--anchor", "print_anchor", is_flag=True, help="Print POS:HASH of the head to keep.")
@click.option("--against", metavar="POS:HASH", help="Prove the log still extends this anchor.")
@click.option("--deep", is_flag=True, help="Also compare the read models with a fresh replay.")
@click.option("--chain-only", is_flag=True, help="Skip decoding every payload (faster).")
@pass_app
def verify(app: App, print_anchor: bool, against: str | None, deep: bool, chain_only: bool):
    """Check the hash chain, positions, stream versions and payloads; exit 1 at the first
    bad position."""
    from rmcore import audit

    anchor = None
    if against is not None:  # an empty anchor is a mistake, not "no anchor"
        try:
            anchor = audit.parse_anchor(against)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--against") from None
    engine = app.engine()
    with progress_bar("Verifying", audit.event_count(engine)) as bar:
        verdict = audit.verify(engine, progress=bar.update, decode=not chain_only, anchor=anchor)
    if not verdict.ok:
        raise click.ClickException(f"position {verdict.bad_position}: {verdict.reason}")
    if deep:
        with progress_bar("Replaying", verdict.checked) as bar:
            differences = audit.replay_check(engine, progress=bar.update)
        if differences:
            for line in differences:
                click.echo(line, err=True)
            raise click.ClickException(
                f"the read models differ from a fresh replay ({len(differences)} difference(s))"
            )
    if print_anchor:
        click.echo(f"{verdict.head_position}:{verdict.head_hash}")
        return
    checks = "chain intact" + (", payloads decode" if not chain_only else "")
    checks += ", read models equal a replay" if deep else ""
    checks += f", extends anchor {anchor[0]}" if anchor else ""
    click.echo(
        f"OK: {verdict.checked} events, {checks}; head {verdict.head_position} {verdict.head_hash}"
    )


cli.add_command(match)
cli.add_command(import_command)
cli.add_command(demo_command.demo)
cli.add_command(notify_command.notify)
cli.add_command(kpi_commands.kpi)
cli.add_command(kpi_commands.report)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="rmcore")


def _load_plugins() -> tuple[pluggy.PluginManager, str | None]:
    """The plugin manager and the commands plugins add; a broken plugin is kept as a message
    that every command then prints (exit 1), instead of a traceback at import."""
    try:
        pm = make_plugin_manager(disabled_from_env())
        before = set(cli.commands)
        for impl, _ in each_call(pm, "rmcore_register_commands", {"cli": cli}):
            for name in set(cli.commands) - before:
                PLUGIN_COMMANDS[name] = impl.plugin_name
            before = set(cli.commands)
    except PluginLoadError as exc:
        return make_plugin_manager(load_entry_points=False), str(exc)
    return pm, None


PLUGIN_COMMANDS: dict[str, str] = {}
"""Each command a plugin added, and the plugin's name."""
PLUGIN_MANAGER, PLUGIN_ERROR = _load_plugins()
