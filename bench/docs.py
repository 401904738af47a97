"""Where benchmark figures are recorded: one `## Title` section of docs/benchmarks.md per benchmark."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def replace_section(title: str, section: str) -> Path:
    """Replace (or append) the `## {title}` section of docs/benchmarks.md, leaving other sections alone.

    `section` is the whole new section, its `## {title}` heading included.
    """
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    DOCS.write_text(text)
    print(f"written to {DOCS}")
    return DOCS
