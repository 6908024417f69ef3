"""The docs build's own code.

- An mkdocs hook: the Changes page shows CHANGES.md, so the changelog is written once.
- A griffe extension for the API reference (``extensions`` of mkdocstrings' python handler):
  the package's docstrings are written in one style, reStructuredText's (Sphinx roles such as
  :class:`Event`, ``#:`` comments above attributes, ``::`` before a code block). It turns them
  into the Markdown mkdocstrings renders, and checks every role of every docstring in the
  package, rendered or not: one naming something that does not exist (a function renamed or
  moved) is a warning, which ``mkdocs build --strict`` turns into a failed build.
"""

from __future__ import annotations

import builtins
import importlib.util
import logging
import re
import textwrap
from pathlib import Path
from typing import Any

import griffe

CHANGES = Path(__file__).parent / "CHANGES.md"
PACKAGE = "flask_stripe_hooks"

# A "mkdocs." logger: `mkdocs build --strict` counts its warnings.
log = logging.getLogger("mkdocs.plugins.flask_stripe_hooks")

#: :role:`target`, :role:`~a.b.target` (shows "target"), :role:`title <target>`.
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj):`(?P<body>[^`]+)`")


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri != "changes.md":
        return markdown
    return CHANGES.read_text(encoding="utf-8").replace("](docs/", "](")


class ReferenceDocstrings(griffe.Extension):
    """reStructuredText docstrings to mkdocstrings' Markdown, with every role checked."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != PACKAGE:
            return
        for obj in _walk(pkg):
            if obj.is_attribute and obj.docstring is None:
                _docstring_from_comment(obj)
            if obj.docstring is not None:
                obj.docstring.value = _markdown(obj, obj.docstring.value, loader)


def _walk(obj: griffe.Object) -> Any:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]


def _docstring_from_comment(attr: griffe.Object) -> None:
    """The ``#:`` lines right above an attribute are its docstring (as Sphinx reads them)."""
    if attr.lineno is None:
        return
    lines = attr.module.lines
    found: list[str] = []
    number = attr.lineno - 2  # the line above, 0-based
    while number >= 0 and lines[number].strip().startswith("#:"):
        found.insert(0, lines[number].strip()[2:].strip())
        number -= 1
    if found:
        attr.docstring = griffe.Docstring(
            "\n".join(found), lineno=number + 2, parent=attr, parser="sphinx"
        )


def _markdown(obj: griffe.Object, text: str, loader: griffe.GriffeLoader) -> str:
    text = ROLE.sub(lambda match: _link(obj, match["body"], loader), text)
    return _fence_literal_blocks(text)


def _link(obj: griffe.Object, body: str, loader: griffe.GriffeLoader) -> str:
    """A role as an autorefs link: to the target's entry where the reference renders it,
    plain code where it does not. A target in this package that does not exist is reported."""
    title, target = None, body.strip()
    if match := re.fullmatch(r"(.+?)\s*<(.+)>", target):
        title, target = match[1], match[2]
    if target.startswith("~"):
        target = target[1:]
        title = title or target.rsplit(".", 1)[-1]
    title = title or target.lstrip(".")
    path = _resolve(obj, target, loader)
    if path is None:
        return f"`{title}`"
    return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'


def _resolve(obj: griffe.Object, target: str, loader: griffe.GriffeLoader) -> str | None:
    """The canonical path of ``target`` as seen from ``obj``; None outside this package."""
    if target.startswith("."):  # .crypto.X: in obj's package, or the nearest one above it
        package = obj.module if obj.module.is_init_module else obj.module.parent
        while package is not None and not _exists(f"{package.path}{target}", loader):
            package = package.parent
        target = f"{package.path}{target}" if package is not None else target[1:]
    first, _, rest = target.partition(".")
    if first != PACKAGE:
        first = _in_scope(obj, first)
        if first is None:
            name = target.partition(".")[0]
            if hasattr(builtins, name) or importlib.util.find_spec(name):
                return None  # ValueError, sqlalchemy.MetaData: not ours to check
            _report(obj, target)
            return None
        if not first.startswith(PACKAGE + ".") and first != PACKAGE:
            return None  # stripe, blinker, ...: not ours to check
    path = f"{first}.{rest}" if rest else first
    try:
        return str(loader.modules_collection[path].canonical_path)
    except (KeyError, griffe.AliasResolutionError):
        _report(obj, target)
        return None


def _exists(path: str, loader: griffe.GriffeLoader) -> bool:
    try:
        loader.modules_collection[path]
    except (KeyError, griffe.AliasResolutionError):
        return False
    return True


def _in_scope(obj: griffe.Object, name: str) -> str | None:
    """The path ``name`` stands for in ``obj``'s scope (a class's inherited members too)."""
    scope: griffe.Object | None = obj
    while scope is not None:
        members = scope.all_members if scope.is_class else scope.members
        if name in members:
            member = members[name]
            return str(member.target_path if member.is_alias else member.path)
        scope = scope.parent
    return None


def _report(obj: griffe.Object, target: str) -> None:
    where = f"{obj.filepath}:{obj.docstring.lineno if obj.docstring else obj.lineno}"
    log.warning("%s: the docstring of %s names %r, which does not exist", where, obj.path, target)


def _fence_literal_blocks(text: str) -> str:
    """reST's ``::`` then an indented block → a fenced Python block."""
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.rstrip().endswith("::"):
            out.append(line)
            index += 1
            continue
        block_end = index + 1
        while block_end < len(lines) and (
            not lines[block_end].strip() or lines[block_end].startswith((" ", "\t"))
        ):
            block_end += 1
        block = "\n".join(lines[index + 1 : block_end]).strip("\n")
        if not block:
            out.append(line)
            index += 1
            continue
        intro = line.rstrip()[:-2].rstrip()
        if intro:
            out += [intro + ":", ""]
        out += ["```python", textwrap.dedent(block), "```", ""]
        index = block_end
    return "\n".join(out)
