"""Writing a benchmark's table into its own section of docs/benchmarks.md.

The file is a head (the gas benchmark's document, ``write_head``) and then sections between
``<!-- key:begin -->`` and ``<!-- key:end -->`` markers, one per benchmark (``write_section``);
each writer replaces its own part and keeps the others'.
"""

from __future__ import annotations

import re
from pathlib import Path


def write_section(path: Path, key: str, lines: list[str]) -> None:
    """Replace (or append) the part of ``path`` between ``<!-- key:begin -->`` and its end."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    section = "\n".join([begin, *lines, end])
    text = path.read_text() if path.exists() else ""
    if begin in text:
        text = re.sub(
            re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S
        )
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def write_head(path: Path, text: str) -> None:
    """Replace the part of ``path`` before its first section with ``text``."""
    old = path.read_text() if path.exists() else ""
    match = re.search(r"^<!-- [\w-]+:begin -->$", old, flags=re.M)
    sections = old[match.start() :] if match else ""
    path.write_text(text.rstrip() + "\n\n" + sections if sections else text)
