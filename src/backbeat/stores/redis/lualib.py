"""The part of ``_lib.lua`` one script uses.

Every call of a script runs its whole text: each ``local function`` of the shared helpers is a
closure made again, its upvalues looked up, and its garbage collected after. For the add of one
task that was a quarter of the server's instructions (63,000 of 290,000 under callgrind, against
20,000 for ``return 1``), most of it for helpers the add never calls. So a script gets only the
top-level definitions of ``_lib.lua`` it names, and those they name in turn, in their order.

``_lib.lua`` holds definitions only at its top level: each starts with ``local`` in the first
column (the comment lines right above it go with it); indented lines and ``end`` continue it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMENT = re.compile(r"--.*")
_FUNCTION = re.compile(r"local function ([A-Za-z_][A-Za-z0-9_]*)")
_LOCALS = re.compile(r"local ([A-Za-z_][A-Za-z0-9_]*(?:\s*,\s*[A-Za-z_][A-Za-z0-9_]*)*)")


@dataclass(frozen=True)
class _Definition:
    text: str
    defines: frozenset[str]
    names: frozenset[str]
    """Every identifier its code holds (a string's words too: a helper kept needlessly does no harm)."""


def _names(code: str) -> frozenset[str]:
    return frozenset(_NAME.findall("\n".join(_COMMENT.sub("", line) for line in code.splitlines())))


def _definitions(lib: str) -> list[_Definition]:
    blocks: list[list[str]] = [[]]
    comments: list[str] = []
    for line in lib.splitlines():
        if line.startswith("--") or not line.strip():
            comments.append(line)
            continue
        if line.startswith("local "):
            blocks.append([])
        blocks[-1] += [*comments, line]
        comments = []
    blocks[-1] += comments
    definitions = []
    for lines in blocks:
        head = next((line for line in lines if line.startswith("local ")), "")
        function = _FUNCTION.match(head)
        if function is not None:
            defines = frozenset({function.group(1)})
        else:
            assigned = _LOCALS.match(head)
            defines = frozenset(re.split(r"\s*,\s*", assigned.group(1))) if assigned else frozenset()
        text = "\n".join(lines)
        definitions.append(_Definition(text, defines, _names(text) - defines))
    return definitions


def needed(lib: str, script: str) -> str:
    """The definitions of ``lib`` that ``script`` uses, directly or through one another, in
    ``lib``'s order (a block defining nothing, such as a leading comment, is kept)."""
    definitions = _definitions(lib)
    wanted = set(_names(script))
    for definition in reversed(definitions):  # a definition names only those above it
        if definition.defines & wanted:
            wanted |= definition.names
    return "\n".join(d.text for d in definitions if not d.defines or d.defines & wanted)
