"""Real parts for the queue, recovery and scale tests: a Redis server, Celery worker and
gunicorn processes running :mod:`queue_app`, and a TCP proxy that can cut the database off.

Fixtures here are imported by the test modules that use them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import missing

TESTS = Path(__file__).parents[1]  # tests/: support.* imports from there


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# -- Redis -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free port for the whole run; yields ``redis://...``."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("a Redis server", "apt-get install redis-server")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: port_open(port), 20, "redis-server")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """Database 0 of the session's Redis server, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server + "/0")
    client.flushall()
    client.close()
    return redis_server + "/0"


# -- processes running queue_app ----------------------------------------------------------------


class Process:
    """A child process in its own session (so it and its children can be killed together),
    output to a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args,
            cwd=TESTS,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, as when a machine dies."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                self.kill()
        else:
            try:  # children may outlive their parent
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._out.close()


def app_env(database_url: str, marks: Path, **extra: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        MARKS=str(marks),
        PYTHONPATH=os.pathsep.join(
            [str(TESTS), str(TESTS.parent), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep),
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items() if v is not None})
    return env


def queue_app_in(env: dict[str, str]) -> Any:
    """:mod:`queue_app`'s app built in this process with ``env`` (as the worker has it),
    its tables created."""
    from . import queue_app

    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        app = queue_app.create_app()
    with app.app_context():
        queue_app.db.create_all()
    return app


def start_worker(
    env: dict[str, str],
    log: Path,
    *,
    pool: str = "prefork",
    concurrency: int = 2,
    app: str = "support.queue_worker:celery_app",
    extra: tuple[str, ...] = (),
) -> Process:
    """``celery -A support.queue_worker:celery_app worker``; returns once it says it is ready.
    ``extra``: more options (``-B`` runs the beat schedule in it)."""
    args = [sys.executable, "-m", "celery", "-A", app, "worker", *extra]
    args += ["--pool", pool, "--concurrency", str(concurrency), "--loglevel", "INFO"]
    args += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"w{log.stem}@%h"]
    worker = Process(args, env, log)
    try:
        wait_until(
            lambda: " ready." in worker.output() or not worker.alive(), 60, "the Celery worker"
        )
    except AssertionError:
        worker.stop()
        raise
    if not worker.alive():
        raise AssertionError("the Celery worker exited:\n" + worker.output()[-3000:])
    return worker


def start_gunicorn(
    env: dict[str, str], log: Path, *, workers: int = 4, port: int | None = None
) -> tuple[Process, str]:
    """gunicorn serving ``queue_app:create_app()``; returns ``(process, base URL)``."""
    port = port or free_port()
    args = [sys.executable, "-m", "gunicorn", "--workers", str(workers)]
    args += ["--bind", f"127.0.0.1:{port}", "--backlog", "2048", "--timeout", "120"]
    args += ["support.queue_app:create_app()"]
    server = Process(args, env, log)
    try:
        wait_until(lambda: port_open(port) or not server.alive(), 60, "gunicorn")
    except AssertionError:
        server.stop()
        raise
    if not server.alive():
        raise AssertionError("gunicorn exited:\n" + server.output()[-3000:])
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    """A folder for the handlers' markers and the on-commit log (``MARKS``)."""
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Append processes started by a test; they are stopped after it."""
    started: list[Process] = []
    yield started
    for proc in reversed(started):
        proc.kill()  # nothing to finish: the test has checked what it needed
        proc.stop()


# -- a proxy that cuts the database off -----------------------------------------------------


class CutProxy:
    """A TCP proxy in front of the database. ``cut()`` drops every open connection and
    refuses new ones (the database is unreachable); ``restore()`` brings it back."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
