"""``nox -s tests``: the suite on the newest versions pip resolves; ``nox -s floors``: on the
lowest version of each dependency pyproject.toml allows (``tests/constraints-floors.txt``)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "floors"]
FLOORS = "tests/constraints-floors.txt"


@nox.session
def tests(session: nox.Session) -> None:
    session.install("--upgrade", "--upgrade-strategy", "eager", "-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def floors(session: nox.Session) -> None:
    """Only the package's own dependencies are pinned: the test tools take their newest."""
    session.install("-e", ".[test]", "-c", FLOORS)
    session.run("python", "-m", "pip", "freeze", "-r", FLOORS, silent=False)
    session.run("python", "-m", "pytest", *session.posargs)
