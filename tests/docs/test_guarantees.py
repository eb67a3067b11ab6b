"""The guarantees page (docs/guides/guarantees.md) names the test that proves each promise: every
one it names must exist, so the page cannot point at a test that was renamed or removed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guides" / "guarantees.md"
NAMED = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    }


def test_every_test_the_guarantees_page_names_exists() -> None:
    named = NAMED.findall(PAGE.read_text(encoding="utf-8"))
    assert len(named) >= 15, "the page should name the tests that prove it"
    missing = [
        f"{file}::{name}"
        for file, name in sorted(set(named))
        if not (ROOT / file).is_file() or name not in functions_in(ROOT / file)
    ]
    assert missing == [], f"docs/guides/guarantees.md names tests that do not exist: {missing}"


def test_the_page_is_linked_from_the_index_and_the_readme() -> None:
    assert "guides/guarantees.md" in (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert "docs/guides/guarantees.md" in (ROOT / "README.md").read_text(encoding="utf-8")
