"""The README's option table is the one OPTIONS writes: every option, its default, limits and description."""

from __future__ import annotations

from pathlib import Path

from engine.conf.option_doc import BEGIN, END, markdown_table, rewrite, row
from engine.conf.options import OPTIONS, Option

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_generated_from_options() -> None:
    text = README.read_text(encoding="utf-8")
    assert rewrite(text) == text, "README.md's option table is stale: python -m engine.conf.option_doc README.md"
    generated = text[text.index(BEGIN):text.index(END)]
    for option in OPTIONS:
        assert f"| `{option.name}` |" in generated, option.name


def test_rows() -> None:
    number = Option("n", "int", 5, "", "A number.", "General", minimum=1, maximum=9, unit="s")
    assert row(number) == "| `n` | `5` | — | General | A number. (1–9 s) |"
    choice = Option("c", "choice", "a", "Iis", "Pick | one.", "Protocol", choices=("a", "b"))
    assert row(choice) == "| `c` | `\"a\"` | Iis | Protocol | Pick \\| one. (one of `a`, `b`) |"
    listed = Option("l", "str_list", ("x",) * 6, "", "Many.", "General", min_items=1)
    assert row(listed) == "| `l` | 6 entries | — | General | Many. (at least 1 entry) |"
    assert markdown_table([number]).splitlines()[2] == row(number)
