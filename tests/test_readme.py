"""README.md's table of APIs is the one the handler registry prints."""

from __future__ import annotations

from pathlib import Path

from kpy.apis import table


def test_readme_api_table_matches_the_registry() -> None:
    text = (Path(__file__).parents[1] / "README.md").read_text()
    start = text.index("<!-- api-table:start -->") + len("<!-- api-table:start -->")
    end = text.index("<!-- api-table:end -->")
    assert text[start:end].strip() == table()
