"""Code blocks of the documentation (docs/**/*.md and README.md), as the docs tests read them.

A fenced block may be preceded, on the line just above its fence, by a marker comment that
mkdocs renders invisibly:

* ``<!-- test: redis -->`` / ``<!-- test: postgresql -->``: a Python block that needs that server;
  every ``?prefix=NAME`` in it is given a fresh suffix, whose keys or tables are removed after;
* ``<!-- test: skip: why -->``: a fragment that cannot run (the reason is required).

Unmarked Python blocks run on SQLite (the default store), in a fresh working directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[^\n`]*)$")
MARKER = re.compile(r"^\s*<!--\s*test:\s*(?P<kind>[a-z]+)(?::\s*(?P<reason>.*?))?\s*-->\s*$")
KINDS = {"redis", "postgresql", "skip"}


@dataclass(frozen=True)
class Block:
    """One fenced block: its file, the line of its first code line, language, marker and code."""

    path: Path
    line: int
    language: str
    marker: str | None
    reason: str | None
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def documentation_files() -> list[Path]:
    """Every Markdown page of the site, then the README."""
    return [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]


def blocks_of(path: Path) -> list[Block]:
    """The fenced blocks of ``path`` in order.

    Raises:
        ValueError: an unknown marker, a skip without a reason, or a fence never closed.
    """
    lines = path.read_text().splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        if end == len(lines):
            raise ValueError(f"{path}:{index + 1}: a code fence is never closed")
        marker, reason = _marker(path, lines, index)
        code = "\n".join(line[indent:] for line in lines[index + 1 : end])
        language = opening["info"].split()[0].lower() if opening["info"].strip() else ""
        found.append(Block(path, index + 2, language, marker, reason, code + "\n"))
        index = end + 1
    return found


def _marker(path: Path, lines: list[str], fence_index: int) -> tuple[str | None, str | None]:
    above = lines[fence_index - 1] if fence_index > 0 else ""
    match = MARKER.match(above)
    if match is None:
        if "<!-- test" in above:
            raise ValueError(f"{path}:{fence_index}: unreadable marker {above.strip()!r}")
        return None, None
    kind, reason = match["kind"], match["reason"]
    if kind not in KINDS:
        raise ValueError(f"{path}:{fence_index}: unknown marker {kind!r} (known: {', '.join(sorted(KINDS))})")
    if kind == "skip" and not reason:
        raise ValueError(f"{path}:{fence_index}: a skipped block says why (<!-- test: skip: why -->)")
    return kind, reason


def python_blocks(path: Path) -> list[Block]:
    return [block for block in blocks_of(path) if block.language in {"python", "py"}]
