"""Every ``backbeat`` command and flag the docs and the README mention exists: the command path is
resolved in the typer application and each flag is looked up in that command's ``--help``.

Mentions are read from shell blocks (a line that starts with ``backbeat``, its comment included)
and from inline code spans that start with ``backbeat``. ``a ID | b ID`` lists sibling commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from backbeat.cli.app import app
from tests.docs.blocks import ROOT, blocks_of, documentation_files

SHELL = {"bash", "sh", "shell", "console", "text", ""}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
INLINE = re.compile(r"(?<!`)`(backbeat [^`\n]+)`")


@dataclass(frozen=True)
class Mention:
    where: str
    command: tuple[str, ...]
    flags: tuple[str, ...]


def resolve(words: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """The command path that leads ``words`` (after ``backbeat``) and the words after it.

    Raises:
        LookupError: a word where a subcommand is expected names none.
    """
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    while words and hasattr(command, "commands") and not words[0].startswith("-"):
        sub = command.commands.get(words[0])
        if sub is None:
            raise LookupError(f"backbeat {' '.join(path)} has no command {words[0]!r}")
        path.append(words.pop(0))
        command = sub
    return tuple(path), words


def mentions_in(text: str, where: str) -> list[Mention]:
    """The commands of one line: ``backbeat a b --x ... | c --y`` is ``a b`` with --x, ``a c`` with --y."""
    found: list[Mention] = []
    words = text.split()
    if words[:1] != ["backbeat"]:
        return found
    rest = words[1:]
    path, rest = resolve(rest)
    segments = " ".join(rest).split(" | ")
    found.append(Mention(where, path, tuple(FLAG.findall(segments[0]))))
    for segment in segments[1:]:
        first = segment.split()[0] if segment.split() else ""
        if path and re.fullmatch(r"[a-z][a-z-]*", first):
            sibling, _ = resolve([*path[:-1], first])
            found.append(Mention(where, sibling, tuple(FLAG.findall(segment))))
        else:
            found[-1] = Mention(where, found[-1].command, found[-1].flags + tuple(FLAG.findall(segment)))
    return found


def all_mentions() -> list[Mention]:
    found: list[Mention] = []
    for path in documentation_files():
        name = path.relative_to(ROOT).as_posix()
        for block in blocks_of(path):
            if block.language in SHELL:
                for offset, line in enumerate(block.code.splitlines()):
                    found += mentions_in(line.removeprefix("$ "), f"{name}:{block.line + offset}")
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for span in INLINE.finditer(line):
                found += mentions_in(span[1], f"{name}:{number}")
    return found


@cache
def help_of(command: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_the_docs_mention_backbeat_commands() -> None:
    mentions = all_mentions()
    assert len({m.command for m in mentions}) >= 8, "the CLI page should show most commands"
    assert sum(len(m.flags) for m in mentions) >= 10


@pytest.mark.parametrize("mention", all_mentions(), ids=lambda m: f"{m.where}:{' '.join(m.command)}")
def test_every_flag_is_in_the_commands_help(mention: Mention) -> None:
    text = help_of(mention.command)
    unknown = [flag for flag in mention.flags if not re.search(rf"(?<![\w-]){flag}(?![\w-])", text)]
    assert not unknown, f"{mention.where}: backbeat {' '.join(mention.command)} has no {', '.join(unknown)}"
