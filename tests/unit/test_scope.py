"""engine/scope.py: a key's type-name patterns, in Python and as SQL LIKE patterns."""

from __future__ import annotations

import pytest

from taskmanager.engine.scope import TypeScope, like_pattern


@pytest.mark.parametrize(
    ("patterns", "name", "allowed"),
    [
        (["PrismQ.Script.*"], "PrismQ.Script.Generate", True),
        (["PrismQ.Script.*"], "PrismQ.Script.", True),
        (["PrismQ.Script.*"], "PrismQ.Script", False),
        (["PrismQ.Script.*"], "PrismQXScript.Generate", False),
        (["PrismQ.Script.*"], "Other.PrismQ.Script.Generate", False),
        (["a_b"], "a_b", True),
        (["a_b"], "axb", False),
        (["100%"], "100%", True),
        (["100%"], "1000", False),
        (["*"], "anything at all", True),
        (["a*b*c"], "a-x-b-y-c", True),
        (["a*b*c"], "a-x-c", False),
        (["one", "two.*"], "two.x", True),
        (["one", "two.*"], "three", False),
        (["(a|b)"], "a", False),
        (["(a|b)"], "(a|b)", True),
    ],
)
def test_star_is_any_run_and_everything_else_is_itself(patterns: list[str], name: str, allowed: bool) -> None:
    assert TypeScope(tuple(patterns)).allows(name) is allowed


def test_like_patterns_escape_the_sql_wildcards() -> None:
    assert like_pattern("PrismQ.Script.*") == "PrismQ.Script.%"
    assert like_pattern("a_b%c\\d*") == "a\\_b\\%c\\\\d%"
