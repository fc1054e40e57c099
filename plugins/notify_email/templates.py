"""Subject and body templates, built in and overridable by an organisation's own folder.

Each kind of message has three templates: ``KIND.subject.txt``, ``KIND.body.txt`` (the
plain-text body) and ``KIND.body.html`` (its HTML alternative). They use
``string.Template`` placeholders (``$name`` or ``${name}``), which run no code. A folder
set with ``notify_email.template_dir`` may hold any of these files; the ones it lacks
come from the built-in set. An unknown file name or placeholder is refused with the
list of valid ones, so a typo never sends a half-filled message. Values are escaped for
HTML in the HTML body; the subject is reduced to one line after it is filled in.
"""

from __future__ import annotations

import html
import string
from collections.abc import Mapping
from pathlib import Path

from attrs import frozen

from rmcore.delivery import DeliveryError

COMMON = ("name", "program", "signature", "sender_name")
PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "welcome": (*COMMON, "role", "skills_offered", "skills_sought", "goals"),
    "introduction": (
        *COMMON,
        "partner_name",
        "partner_email",
        "partner_department",
        "your_role",
        "partner_role",
        "you_share",
        "you_gain",
        "goals",
        "first_session",
    ),
    "feedback_request": (
        *COMMON,
        "partner_name",
        "pair_id",
        "session_date",
        "minutes",
        "topics",
        "mode",
    ),
    "nudge": (*COMMON, "partner_name", "pair_id", "days", "last", "last_date"),
    "closing": (*COMMON, "partner_name", "pair_id", "reason", "sessions", "hours"),
}
KINDS = tuple(PLACEHOLDERS)
PARTS = ("subject.txt", "body.txt", "body.html")
MAX_TEMPLATE_BYTES = 100_000

BUILT_IN: dict[str, str] = {
    "welcome.subject.txt": "Welcome to $program, $name",
    "welcome.body.txt": """\
Hello $name,

Welcome to $program, where colleagues early in their careers and colleagues with long
experience learn from each other: new tools and AI one way, leadership, communication
and judgement the other.

You joined as: $role
What you can share: $skills_offered
What you would like to learn: $skills_sought
Your goals: $goals

We will introduce you to your partner as soon as you are paired.

$signature
""",
    "welcome.body.html": """\
<p>Hello $name,</p>
<p>Welcome to <strong>$program</strong>, where colleagues early in their careers and
colleagues with long experience learn from each other: new tools and AI one way,
leadership, communication and judgement the other.</p>
<ul>
<li>You joined as: $role</li>
<li>What you can share: $skills_offered</li>
<li>What you would like to learn: $skills_sought</li>
<li>Your goals: $goals</li>
</ul>
<p>We will introduce you to your partner as soon as you are paired.</p>
<p>$signature</p>
""",
    "introduction.subject.txt": "$program: meet $partner_name, your new partner",
    "introduction.body.txt": """\
Hello $name,

Meet $partner_name ($partner_email, $partner_department), your partner in $program.
You are the $your_role of this pair and $partner_name is the $partner_role: each of you
has something to teach the other.

What you can share with $partner_name: $you_share
What $partner_name can share with you: $you_gain
Goals for the pair: $goals

$first_session

Write to $partner_name to agree on a first session; half an hour is enough to start.

$signature
""",
    "introduction.body.html": """\
<p>Hello $name,</p>
<p>Meet <strong>$partner_name</strong> (<a href="mailto:$partner_email">$partner_email</a>,
$partner_department), your partner in $program. You are the $your_role of this pair and
$partner_name is the $partner_role: each of you has something to teach the other.</p>
<ul>
<li>What you can share with $partner_name: $you_share</li>
<li>What $partner_name can share with you: $you_gain</li>
<li>Goals for the pair: $goals</li>
</ul>
<p>$first_session</p>
<p>Write to $partner_name to agree on a first session; half an hour is enough to start.</p>
<p>$signature</p>
""",
    "feedback_request.subject.txt": "How did your session with $partner_name go?",
    "feedback_request.body.txt": """\
Hello $name,

Thank you for your session with $partner_name on $session_date ($minutes minutes, $mode;
topics: $topics).

How did it go? Reply to this message with a rating from 1 to 5, what you learned, and
whether it gave you a fresh perspective; the programme team will record it.

$signature
""",
    "feedback_request.body.html": """\
<p>Hello $name,</p>
<p>Thank you for your session with $partner_name on $session_date ($minutes minutes,
$mode; topics: $topics).</p>
<p>How did it go? Reply to this message with a rating from 1 to 5, what you learned, and
whether it gave you a fresh perspective; the programme team will record it.</p>
<p>$signature</p>
""",
    "nudge.subject.txt": "Time to catch up with $partner_name",
    "nudge.body.txt": """\
Hello $name,

It has been $days days since $last with $partner_name ($last_date). A short check-in
keeps the learning going both ways: pick a date that suits you both.

$signature
""",
    "nudge.body.html": """\
<p>Hello $name,</p>
<p>It has been $days days since $last with $partner_name ($last_date). A short check-in
keeps the learning going both ways: pick a date that suits you both.</p>
<p>$signature</p>
""",
    "closing.subject.txt": "Your pairing with $partner_name has ended",
    "closing.body.txt": """\
Hello $name,

Your pairing with $partner_name in $program has ended ($reason). Together you held
$sessions, $hours hours in all.

Thank you for learning and teaching in both directions. Reply to this message to tell
us what you are taking away.

$signature
""",
    "closing.body.html": """\
<p>Hello $name,</p>
<p>Your pairing with $partner_name in $program has ended ($reason). Together you held
$sessions, $hours hours in all.</p>
<p>Thank you for learning and teaching in both directions. Reply to this message to tell
us what you are taking away.</p>
<p>$signature</p>
""",
}
NAMES = tuple(f"{kind}.{part}" for kind in KINDS for part in PARTS)


@frozen
class Rendered:
    """A filled-in message: subject, plain-text body and HTML body."""

    subject: str
    text: str
    html: str


def placeholders(text: str, source: str) -> set[str]:
    """The placeholder names a template uses; an invalid ``$`` is refused."""
    found = set()
    for match in string.Template.pattern.finditer(text):
        if match.group("invalid") is not None:
            line = text.count("\n", 0, match.start()) + 1
            raise DeliveryError(
                f"template {source}: a '$' on line {line} is not a placeholder (write $$ for $)"
            )
        name = match.group("named") or match.group("braced")
        if name:
            found.add(name)
    return found


class Templates:
    """The templates in force: the built-in set with an organisation's files over it."""

    def __init__(self, texts: Mapping[str, str], sources: Mapping[str, str]) -> None:
        self.texts = dict(texts)
        self.sources = dict(sources)

    @classmethod
    def load(cls, folder: str | None = None) -> Templates:
        """The built-in templates, overridden by the files in ``folder`` (checked)."""
        texts = dict(BUILT_IN)
        sources = {name: f"{name} (built in)" for name in NAMES}
        if folder:
            path = Path(folder)
            if not path.is_dir():
                raise DeliveryError(f"notify_email.template_dir {folder!r} is not a folder")
            for file in sorted(path.iterdir()):
                if file.name.startswith(".") or not file.is_file():
                    continue
                if file.name not in texts:
                    raise DeliveryError(
                        f"template folder {folder}: {file.name} is not a template name; "
                        f"use KIND.subject.txt, KIND.body.txt or KIND.body.html with KIND "
                        f"one of {', '.join(KINDS)}"
                    )
                if file.stat().st_size > MAX_TEMPLATE_BYTES:
                    raise DeliveryError(f"template {file} is larger than 100 kB")
                try:
                    texts[file.name] = file.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise DeliveryError(f"cannot read template {file}: {exc}") from None
                sources[file.name] = str(file)
        templates = cls(texts, sources)
        templates.check()
        return templates

    def check(self) -> None:
        """Refuse placeholders a kind of message does not provide."""
        for name, text in self.texts.items():
            kind = name.split(".", 1)[0]
            unknown = placeholders(text, self.sources[name]) - set(PLACEHOLDERS[kind])
            if unknown:
                raise DeliveryError(
                    f"template {self.sources[name]} uses "
                    f"{', '.join('$' + u for u in sorted(unknown))}, which {kind} messages do "
                    f"not provide; known: {', '.join('$' + p for p in PLACEHOLDERS[kind])}"
                )

    def render(self, kind: str, values: Mapping[str, str]) -> Rendered:
        """Fill in the three templates of ``kind``; HTML gets escaped values."""
        escaped = {key: html.escape(value).replace("\n", "<br>\n") for key, value in values.items()}
        return Rendered(
            subject=string.Template(self.texts[f"{kind}.subject.txt"]).substitute(values),
            text=string.Template(self.texts[f"{kind}.body.txt"]).substitute(values),
            html=string.Template(self.texts[f"{kind}.body.html"]).substitute(escaped),
        )


def write_built_in(folder: Path, *, overwrite: bool = False) -> list[Path]:
    """Copy the built-in templates into ``folder`` as a starting point for an organisation.

    All or nothing: each file is written under a temporary name first and the set is
    renamed into place only when every file was written; an ``OSError`` (a folder this
    user may not write, a full disk) leaves no file behind and removes the folders it made.
    """
    made = [parent for parent in (folder, *folder.parents) if not parent.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for name in NAMES:
            target = folder / name
            if target.exists() and not overwrite:
                continue
            temporary = folder / f".{name}.rmcore-new"
            staged.append((temporary, target))
            temporary.write_text(BUILT_IN[name], encoding="utf-8")
        for temporary, target in staged:
            temporary.replace(target)
    except OSError:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        for parent in made:  # the deepest first
            try:
                parent.rmdir()
            except OSError:
                break
        raise
    return [target for _, target in staged]
