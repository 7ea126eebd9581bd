"""A throw-away PostgreSQL server for one run: initdb into a temporary folder, a free port, torn down after.

The server is Debian's ``postgresql`` binaries (``initdb`` and ``postgres``, found
on PATH or under ``/usr/lib/postgresql/<version>/bin``). PostgreSQL refuses to
run as root, so under root the cluster belongs to the ``postgres`` system user
(created by the Debian package) or, failing that, ``nobody``. It listens on
127.0.0.1 only, trusts local connections (a benchmark database with no data
worth protecting), and loads ``pg_stat_statements`` so the harness can count the
queries the stacks really ran and check them against the requests it sent.

Settings that trade durability for speed (``fsync``, ``synchronous_commit``,
``full_page_writes`` off) are recorded in :attr:`Postgres.settings`; the
``/db/query`` endpoint only reads, so they do not change what is measured.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

import psycopg

from harness.launch import leftovers
from harness.launch.base import LaunchError, tail, wait_unless_hurried
from harness.net import LOOPBACK, free_port

DATABASE = "gwbench"
USER = "gwbench"
INSTALL_HINT = "install PostgreSQL's server: apt-get install postgresql"


def find_binaries() -> Path:
    """The folder holding ``initdb`` and ``postgres``; raises LaunchError with how to install them."""
    initdb = shutil.which("initdb")
    if initdb is not None:
        folder = Path(initdb).resolve().parent
        if (folder / "postgres").is_file():
            return folder
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        folder = Path(candidate)
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise LaunchError(f"PostgreSQL server binaries (initdb, postgres) not found; {INSTALL_HINT}")


def _run_as() -> pwd.struct_passwd | None:
    """The user the server runs as: None (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise LaunchError("running as root, and no 'postgres' or 'nobody' user exists to run PostgreSQL as")


class Postgres:
    """One PostgreSQL server on 127.0.0.1 for the length of a ``with`` block.

    ``log_path`` receives the server's log; ``cpus`` pins it (it stands in for a
    remote database, so it runs beside the generator, not on the target's CPU);
    ``max_connections`` must exceed the sum of every pool that connects. After
    :meth:`start`, :attr:`url` is ``postgresql://gwbench@127.0.0.1:<port>/gwbench``.
    """

    def __init__(
        self,
        *,
        log_path: Path,
        cpus: Iterable[int] = (),
        port: int | None = None,
        max_connections: int = 300,
        ready_timeout_s: float = 30.0,
    ) -> None:
        self.log_path = log_path
        self.cpus = frozenset(cpus)
        self.port = free_port() if port is None else port
        self.ready_timeout_s = ready_timeout_s
        self.settings: dict[str, str | int] = {
            "listen_addresses": LOOPBACK,
            "max_connections": max_connections,
            "shared_preload_libraries": "pg_stat_statements",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "128MB",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.version: str | None = None
        self._folder: Path | None = None
        self._record: Path | None = None

    @property
    def url(self) -> str:
        """The connection URL the stacks get in ``GWBENCH_DATABASE_URL``."""
        return f"postgresql://{USER}@{LOOPBACK}:{self.port}/{DATABASE}"

    @property
    def pid(self) -> int:
        """The postmaster's pid (the root of the server's process tree); 0 before start."""
        return 0 if self.process is None else self.process.pid

    def __enter__(self) -> Postgres:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _popen(self, argv: list[str], *, log: IO[bytes], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        user = _run_as()
        cpus = self.cpus

        def prepare() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=prepare,
            env=dict(env),
            user=None if user is None else user.pw_uid,
            group=None if user is None else user.pw_gid,
            extra_groups=[] if user is not None else None,
        )

    def start(self) -> None:
        """Create the cluster, start the server, create the database and the statistics extension.

        Raises LaunchError, quoting the server's log, if any step fails; nothing
        is left running then.
        """
        binaries = find_binaries()
        user = _run_as()
        leftovers.reap()
        self._folder = Path(tempfile.mkdtemp(prefix="gwbench-postgres-"))
        self._record = leftovers.record("postgres", folder=self._folder)
        data = self._folder / "data"
        if user is not None:
            os.chown(self._folder, user.pw_uid, user.pw_gid)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        try:
            with self.log_path.open("ab") as log:
                initdb = [
                    str(binaries / "initdb"),
                    f"--pgdata={data}",
                    f"--username={USER}",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
                log.write(f"$ {' '.join(initdb)}\n".encode())
                log.flush()
                code = self._popen(initdb, log=log, env=env).wait(timeout=120)
                if code != 0:
                    raise LaunchError(
                        f"postgres: initdb exited with code {code}; last lines of {self.log_path}:\n"
                        f"{tail(self.log_path)}"
                    )
                server = [
                    str(binaries / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self._folder),
                    *[arg for key, value in self.settings.items() for arg in ("-c", f"{key}={value}")],
                ]
                log.write(f"$ {' '.join(server)}\n".encode())
                log.flush()
                self.process = self._popen(server, log=log, env=env)
                leftovers.rerecord(self._record, "postgres", self.process.pid, self._folder)
            self._wait_ready()
            with psycopg.connect(self._admin_url("postgres"), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {DATABASE}")
                version = conn.execute("SHOW server_version").fetchone()
                self.version = None if version is None else str(version[0])
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION pg_stat_statements")
        except (LaunchError, OSError, subprocess.TimeoutExpired, psycopg.Error) as exc:
            self.stop()
            if isinstance(exc, LaunchError):
                raise
            raise LaunchError(
                f"postgres: could not start ({exc}); last lines of {self.log_path}:\n{tail(self.log_path)}"
            ) from exc

    def _admin_url(self, database: str) -> str:
        return f"postgresql://{USER}@{LOOPBACK}:{self.port}/{database}"

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                raise LaunchError(
                    f"postgres: exited with code {code} before it was ready; last lines of "
                    f"{self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                with psycopg.connect(self._admin_url("postgres"), connect_timeout=1):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise LaunchError(
                        f"postgres: not ready after {self.ready_timeout_s:.0f} s on port {self.port}; "
                        f"last lines of {self.log_path}:\n{tail(self.log_path)}"
                    ) from None
                time.sleep(0.1)

    def reset_statistics(self) -> None:
        """Forget the statements counted so far (call before a cell)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_statements_reset()")

    def calls(self, pattern: str = "%pg_sleep%") -> int:
        """How many times statements whose text matches ``pattern`` (SQL LIKE) ran since the last reset.

        Source: the ``pg_stat_statements`` view's ``calls`` column (PostgreSQL
        docs, F.32). Statements are normalised, so every ``pg_sleep($1)`` call is
        one row however its argument varies.
        """
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE %s", (pattern,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def is_alive(self) -> bool:
        """Whether the postmaster is still running."""
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, close sessions), then SIGKILL the group.

        Safe to call twice; removes the cluster's folder.
        """
        process, self.process = self.process, None
        if process is not None:
            try:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGINT)
                wait_unless_hurried(lambda: process.poll() is not None, grace_s)
            finally:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        leftovers.forget(self._record)
        self._record = None
