"""The API reference documents every public name, and the site's nav lists every page."""

from __future__ import annotations

import re

import backbeat
from tests.docs.blocks import ROOT


def test_every_public_name_has_a_reference_entry() -> None:
    text = "\n".join(page.read_text() for page in (ROOT / "docs" / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: backbeat\.(\w+)$", text, re.M))
    assert set(backbeat.__all__) - documented == set(), "public names missing from docs/reference"


def test_every_page_is_in_the_nav() -> None:
    nav = set(re.findall(r":\s*([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M))
    pages = {path.relative_to(ROOT / "docs").as_posix() for path in (ROOT / "docs").rglob("*.md")}
    assert pages - nav == set(), "pages missing from mkdocs.yml's nav"
