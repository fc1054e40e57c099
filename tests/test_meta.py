"""The docs and the tests keep up with the code: every hook and every command is covered.

- every hook in rmcore.hookspecs is documented in docs/hooks.md with its exact signature
  and has a contract test in tests/test_hooks_contract.py;
- every ``rmcore`` command and subcommand (plugins' commands included) has help text,
  every option too, and the command appears in some docs/*.md page as ``rmcore NAME``;
- the code in docs/plugins.md is the example project's code, character for character, so
  the tutorial is tested whenever the example is;
- every ``rmcore plugins`` listing in docs/ shows the hooks each installed plugin has.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import test_hooks_contract

from rmcore import hookspecs
from rmcore.cli import cli
from rmcore.plugins import hook_names

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HOOKS_DOC = DOCS / "hooks.md"
TUTORIAL = DOCS / "plugins.md"
EXAMPLE = ROOT / "examples" / "rmcore-region"
MARKER = re.compile(r"<!-- example: (?P<target>\S+) -->\n+```\w*\n(?P<code>.*?)```", re.S)


def signature(hook: str) -> str:
    """``name(arg, ...) -> annotation``, as the spec declares it."""
    spec = inspect.signature(getattr(hookspecs, hook))
    returns = spec.return_annotation
    if not isinstance(returns, str):
        returns = inspect.formatannotation(returns)
    return f"{hook}({', '.join(spec.parameters)}) -> {returns}"


def hook_section(hook: str) -> str:
    """The part of docs/hooks.md under the hook's own heading."""
    text = HOOKS_DOC.read_text(encoding="utf-8")
    match = re.search(rf"^## `{hook}`\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"docs/hooks.md has no section headed ## `{hook}`"
    return match.group(1)


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_documented_with_its_exact_signature(hook):
    section = hook_section(hook)
    assert signature(hook) in section, f"docs/hooks.md should show `{signature(hook)}`"
    spec = getattr(hookspecs, hook).rmcore_spec
    assert ("firstresult" in section) == spec["firstresult"], "say whether the first answer wins"
    for argument in inspect.signature(getattr(hookspecs, hook)).parameters:
        assert f"`{argument}`" in section, f"docs/hooks.md does not describe {hook}'s {argument}"
    assert "```python" in section, f"docs/hooks.md has no example for {hook}"


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_has_a_one_line_docstring(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert doc and "\n" not in doc.strip()


def test_every_hook_has_a_contract_test_and_no_test_names_a_hook_that_does_not_exist():
    covered = test_hooks_contract.COVERED
    assert set(covered) == set(hook_names())
    for hook, tests in covered.items():
        assert tests, hook
        for name in tests:
            assert callable(getattr(test_hooks_contract, name)), name


def test_the_hook_reference_documents_no_hook_that_does_not_exist():
    headed = re.findall(r"^## `(rmcore_\w+)`", HOOKS_DOC.read_text(encoding="utf-8"), re.M)
    assert sorted(headed) == hook_names()


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    """``("rmcore config set", command)`` for every command and subcommand, groups included."""
    for name, command in sorted(group.commands.items()):
        full = (*path, name)
        yield "rmcore " + " ".join(full), command
        if isinstance(command, click.Group):
            yield from commands(command, full)


COMMANDS = dict(commands(cli))


def all_docs() -> str:
    """Every page in docs/, one text."""
    return "\n".join(page.read_text(encoding="utf-8") for page in sorted(DOCS.glob("*.md")))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_for_itself_and_each_option(name):
    command = COMMANDS[name]
    assert (command.help or command.short_help or "").strip(), f"{name} has no help text"
    with click.Context(command) as ctx:
        params = command.get_params(ctx)
    silent = [
        param.name
        for param in params
        if isinstance(param, click.Option) and param.name != "help" and not (param.help or "")
    ]
    assert not silent, f"{name}: options without help: {silent}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_appears_in_the_docs(name):
    assert re.search(rf"{re.escape(name)}\b", all_docs()), f"no page in docs/ mentions `{name}`"


def test_the_global_options_have_help():
    assert all(param.help for param in cli.params if isinstance(param, click.Option))


def examples() -> list[tuple[str, str]]:
    """``(target, code)`` for every code block of docs/plugins.md marked as example code."""
    return [(m["target"], m["code"]) for m in MARKER.finditer(TUTORIAL.read_text("utf-8"))]


def source_of(target: str) -> str:
    """A file of the repository, or ``FILE::function``: that function's source."""
    path, _, function = target.partition("::")
    text = (ROOT / path).read_text(encoding="utf-8")
    if not function:
        return text
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == function:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            return "\n".join(text.splitlines()[first - 1 : node.end_lineno]) + "\n"
    raise AssertionError(f"{path} has no {function}")


@pytest.mark.parametrize("target", [t for t, _ in examples()])
def test_the_tutorial_shows_the_example_projects_code_as_it_is(target):
    [code] = [c for t, c in examples() if t == target]
    assert code == source_of(target), f"docs/plugins.md is out of date for {target}"


def test_the_tutorial_shows_every_file_of_the_example_plugin():
    shown = {target for target, _ in examples()}
    files = {
        str(path.relative_to(ROOT))
        for path in [EXAMPLE / "pyproject.toml", *(EXAMPLE / "rmcore_region").glob("*.py")]
    }
    assert files <= shown, f"not in docs/plugins.md: {sorted(files - shown)}"


@pytest.mark.parametrize("page", ["hooks.md", "plugins.md"])
def test_the_python_in_the_plugin_docs_is_valid(page):
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text("utf-8"), re.S)
    assert blocks
    for block in blocks:
        compile(block, page, "exec")


def installed_plugins() -> dict[str, str]:
    """``rmcore plugins`` as the docs show it: each plugin's hooks, joined by ``; ``."""
    from click.testing import CliRunner

    listed = CliRunner().invoke(cli, ["--db", ":memory:", "plugins", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    return {plugin["name"]: "; ".join(plugin["hooks"]) for plugin in json.loads(listed.stdout)}


def test_the_plugin_listings_in_the_docs_show_the_hooks_each_plugin_implements():
    plugins = installed_plugins()
    row = re.compile(r"^(?P<name>[a-z_]+)\s+\d+\.\d+\.\d+\s+(?P<hooks>rmcore_\S.*?)\s*$", re.M)
    shown = [
        (page.name, found["name"], found["hooks"])
        for page in sorted(DOCS.glob("*.md"))
        for found in row.finditer(page.read_text(encoding="utf-8"))
        if found["name"] in plugins
    ]
    assert shown, "no `rmcore plugins` listing found in docs/"
    wrong = [(page, name, hooks) for page, name, hooks in shown if hooks != plugins[name]]
    assert not wrong, f"listings that differ from `rmcore plugins`: {wrong}"
