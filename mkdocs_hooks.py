"""mkdocs hook: the Changes page shows CHANGES.md, so the changelog is written once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHANGES = Path(__file__).parent / "CHANGES.md"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri != "changes.md":
        return markdown
    return CHANGES.read_text(encoding="utf-8").replace("](docs/", "](")
