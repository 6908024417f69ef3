"""``nox -s floors``: each pinned dependency is installed at its floor (``python
tests/floors_check.py tests/constraints-floors.txt``); prints them, and fails on a difference."""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def main(path: str) -> int:
    wrong = 0
    for line in Path(path).read_text().splitlines():
        pin = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)==(\S+)\s*", line)
        if pin is None:
            continue
        name, wanted = pin.groups()
        try:
            found = version(name)
        except PackageNotFoundError:
            found = "not installed"
        wrong += found != wanted
        print(f"{name}=={found}" + ("" if found == wanted else f"  (the floor is {wanted})"))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
