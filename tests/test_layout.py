"""The package's layout keeps its promises (docs/architecture.md): the pipeline has one way in,
it knows none of its callers, production code loads no test code, and no module grows past
500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import flask_stripe_hooks

PACKAGE = Path(flask_stripe_hooks.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))
#: What calls the pipeline: the faces and the operations.
CALLERS = (
    "webhook.py",
    "celery.py",
    "cli/",
    "admin/",
    "recovery.py",
    "backfill.py",
    "retention.py",
    "health.py",
)


def name(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def imports(path: Path, *, top_level_only: bool = False) -> list[str]:
    """The absolute names of the package's own modules that ``path`` imports."""
    tree = ast.parse(path.read_text("utf-8"))
    package = ["flask_stripe_hooks", *path.parent.relative_to(PACKAGE).parts]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            if node.module is None or node.level and not node.module:
                found += [f"{module}.{alias.name}" for alias in node.names]
            else:
                found.append(module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [n for n in found if n.startswith("flask_stripe_hooks")]


def test_callers_enter_the_pipeline_through_its_package_root():
    wrong = {
        name(path): sorted(i for i in imports(path) if i.startswith("flask_stripe_hooks.pipeline."))
        for path in MODULES
        if name(path).startswith(CALLERS) or name(path) == "extension.py"
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_the_pipeline_never_imports_its_callers_or_test_code():
    callers = tuple(
        "flask_stripe_hooks." + c.removesuffix(".py").rstrip("/").replace("/", ".")
        for c in (*CALLERS, "testing/", "extension.py")
    )
    wrong = {
        name(path): sorted(i for i in imports(path) if i.startswith(callers))
        for path in MODULES
        if name(path).startswith("pipeline/")
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_no_production_module_loads_test_code_when_imported():
    wrong = {
        name(path): [i for i in imports(path, top_level_only=True) if ".testing" in i]
        for path in MODULES
        if not name(path).startswith("testing/")
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_every_module_says_what_it_holds():
    missing = [
        name(path)
        for path in MODULES
        if path.stat().st_size and ast.get_docstring(ast.parse(path.read_text("utf-8"))) is None
    ]
    assert missing == []


def test_no_module_is_over_500_lines():
    long = {name(p): n for p in MODULES if (n := len(p.read_text("utf-8").splitlines())) > 500}
    assert long == {}
