"""The README's table of ``[server]`` options, written from ``OPTIONS``: ``python -m engine.conf.option_doc README.md``.

tests/engine/test_option_doc.py fails when the README's table and the option table differ, so the two
cannot drift: a new or changed option means running this module, not editing the README by hand.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

from engine.conf.options import OPTIONS, Option

BEGIN = "<!-- options: generated from engine/conf/options.py by `python -m engine.conf.option_doc README.md` -->"
END = "<!-- end of the generated options -->"
LONG_LIST = 4  # a longer default list is counted, not spelled out


def default_text(option: Option) -> str:
    value = option.default
    if isinstance(value, tuple):
        if len(value) > LONG_LIST:
            return f"{len(value)} entries"
        return "`[" + ", ".join(json.dumps(item) for item in value) + "]`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{json.dumps(value)}`"


def limits_text(option: Option) -> str:
    """``(1–86400 s)``, ``(at least 1 entry)``, ``(one of `a`, `b`)``, or ""."""
    parts = []
    if option.minimum is not None and option.maximum is not None:
        parts.append(f"{option.minimum}–{option.maximum}{' ' + option.unit if option.unit else ''}")
    if option.max_items is not None:
        parts.append(f"{option.min_items}–{option.max_items} entries")
    elif option.min_items:
        parts.append(f"at least {option.min_items} entr{'y' if option.min_items == 1 else 'ies'}")
    if option.choices:
        parts.append("one of " + ", ".join(f"`{choice}`" for choice in option.choices))
    return f" ({'; '.join(parts)})" if parts else ""


def row(option: Option) -> str:
    description = (option.description + limits_text(option)).replace("|", "\\|")
    iis = option.iis_name or "—"
    return f"| `{option.name}` | {default_text(option)} | {iis} | {option.tab} | {description} |"


def markdown_table(options: Iterable[Option] = OPTIONS) -> str:
    lines = ["| key | default | IIS name | tab | description |", "|---|---|---|---|---|"]
    return "\n".join([*lines, *(row(option) for option in options)])


def section() -> str:
    return f"{BEGIN}\n{markdown_table()}\n{END}"


def rewrite(text: str) -> str:
    """``text`` with the generated section between its markers replaced by the current one."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + section() + text[end:]


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "README.md")
    path.write_text(rewrite(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
