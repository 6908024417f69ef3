"""The project's checks, one session each (CONTRIBUTING.md says how to run them).

- ``lint``: ruff and ruff-format, through pre-commit (``.pre-commit-config.yaml``).
- ``typing``: mypy on the package.
- ``docs``: ``mkdocs build --strict``, the API reference included.
- ``tests-3.10`` ... ``tests-3.13``: the README's test command (``pip install -e ".[test]"``,
  then ``pytest``) in a fresh virtualenv of that Python, on the newest versions pip resolves.
- ``floors``: the tests on Python 3.10 with each dependency at the lowest version
  pyproject.toml allows (``tests/constraints-floors.txt``).
- ``wheel``: build the sdist and the wheel, ``twine check --strict`` both, install the wheel
  (not editable) and check that it serves the admin and runs the CLI.

Arguments after ``--`` go to pytest: ``nox -s tests-3.12 -- -x tests/test_receiving.py``.
Each Python must be on ``PATH`` as ``python3.X``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
FLOORS = "tests/constraints-floors.txt"
ROOT = Path(__file__).parent

nox.options.sessions = ["lint", "typing", "docs", "tests", "floors", "wheel"]
# uv when it is installed (``pip install "nox[uv]"``): the same installs in seconds, not a
# minute. ``nox --force-venv-backend venv`` installs with pip, as the README does.
nox.options.default_venv_backend = "uv|virtualenv"


def install_newest(session: nox.Session, *args: str) -> None:
    """Install ``args`` on the newest versions the installer resolves, also in a reused venv."""
    if session.venv_backend == "uv":
        session.install("--upgrade", *args)
    else:
        session.install("--upgrade", "--upgrade-strategy", "eager", *args)


def dev(*names: str) -> list[str]:
    """The requirements of the ``dev`` extra named ``names``, as pyproject.toml pins them."""
    project = nox.project.load_toml(ROOT / "pyproject.toml")["project"]
    requirements = project["optional-dependencies"]["dev"]
    picked = [r for r in requirements if re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0] in names]
    assert len(picked) == len(names), f"not all of {names} are in the dev extra"
    return picked


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and ruff-format, as the pre-commit hooks run them (mypy: ``typing``)."""
    session.install(*dev("pre-commit"))
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure", env={"SKIP": "mypy"})


@nox.session
def typing(session: nox.Session) -> None:
    """mypy on the package, with every optional dependency installed for its types."""
    session.install("-e", ".[celery,postgres,metrics,otel,crypto]", *dev("mypy"))
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """The site, strict: a broken link, anchor or docstring reference fails the build."""
    # The package too: a docstring's reference to a library (sqlalchemy.MetaData) is told
    # from a broken one of ours by finding that library. ruff formats the signatures.
    session.install("-e", ".", *dev("mkdocs", "mkdocs-material", "mkdocstrings", "ruff"))
    site = session.create_tmp()
    session.run("mkdocs", "build", "--strict", "--site-dir", site, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The README's test command on the newest versions pip resolves for this Python."""
    install_newest(session, "-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHONS[0])
def floors(session: nox.Session) -> None:
    """The lowest Python with the lowest versions: what a user gets at worst. Only the
    package's own dependencies are pinned; the test tools take their newest."""
    session.install("-e", ".[test]", "-c", FLOORS)
    session.run("python", str(ROOT / "tests" / "floors_check.py"), FLOORS, silent=False)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def wheel(session: nox.Session) -> None:
    """The sdist and the wheel as a user gets them: built, checked, installed, used."""
    session.install(*dev("build", "twine"))
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist))
    built = sorted(str(path) for path in dist.iterdir())
    session.run("twine", "check", "--strict", *built)
    (wheel_file,) = (path for path in built if path.endswith(".whl"))
    session.install(wheel_file)  # not -e: only what the wheel holds
    check = ROOT / "tests" / "wheel_check.py"
    session.chdir(session.create_tmp())  # away from the checkout, so it cannot be imported
    session.run("python", str(check), *built)
