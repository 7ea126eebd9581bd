"""A run's upstream and database (:mod:`harness.launch.services`): started before the first cell,
checked after each, started again on the same port when they died, their failures recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.launch import LaunchError
from harness.launch.base import Launcher, RunningTarget, tail
from harness.launch.postgres import Postgres
from harness.launch.services import UPSTREAM, Upstream, stack_env
from harness.model import Cell
from harness.run.record import Recorder
from harness.run.spec import RunSpec


class RunServices:
    """The upstream, and PostgreSQL when the scenario queries one (contract v2's ``/db/`` endpoints,
    or ``database = true`` for your own app's queries).

    Both run on ``cpus`` (the generator's) and log into ``logs``. A service that
    cannot start before the first cell fails every planned cell.
    """

    def __init__(
        self, spec: RunSpec, launcher: Launcher, recorder: Recorder, *, logs: Path, cpus: Sequence[int]
    ) -> None:
        self.recorder = recorder
        # The upstream stands in for a remote service: it runs beside the generator,
        # not on the target's CPU.
        self.upstream = Upstream(
            launcher,
            spec.upstream,
            spec.upstream_dir,
            log_path=logs / f"{spec.upstream.name}.log",
            cpus=cpus,
            ready_timeout_s=spec.ready_timeout_s,
        )
        self.postgres: Postgres | None = None
        if spec.scenario.database or any(r.path.startswith("/db/") for r in spec.scenario.requests()):
            self.postgres = Postgres(log_path=logs / "postgres.log", cpus=cpus)

    @property
    def running_upstream(self) -> RunningTarget | None:
        """The upstream that last started, or None before it did."""
        return self.upstream.running

    def env(self) -> dict[str, str]:
        """The environment of a stack: where the upstream (and the database) listen."""
        assert self.upstream.running is not None
        return stack_env(self.upstream.running, self.postgres)

    def start_database(self) -> bool:
        """Start the run's PostgreSQL if the scenario queries one; False (every cell failed) if it cannot."""
        if self.postgres is None:
            return True
        try:
            self.postgres.start()
        except LaunchError as exc:
            self.recorder.fail("postgres", None, str(exc))
            self.recorder.fail_all(f"the database did not start: {exc}")
            return False
        return True

    def start_upstream(self, port: int | None = None) -> bool:
        """Start the upstream (again, on ``port``, after it died); False if it failed to start.

        The first start's failure fails every planned cell.
        """
        try:
            self.upstream.start(port)
        except LaunchError as exc:
            self.recorder.fail(UPSTREAM, None, str(exc))
            if port is None:
                self.recorder.fail_all(f"upstream did not start: {exc}")
            return False
        return True

    def check(self, cell: Cell) -> None:
        """After a cell: a service that died is reported and started again on the same port."""
        self.check_upstream(cell)
        self.check_database(cell)

    def check_upstream(self, cell: Cell) -> None:
        """After a cell: if the upstream died, say so and start it again on the same port."""
        upstream = self.upstream.died()
        if upstream is None:
            return
        self.recorder.fail(
            UPSTREAM,
            cell,
            f"the upstream service died during this cell (the stack's /io/upstream answers were "
            f"errors); last lines of {upstream.log_path}:\n{tail(upstream.log_path, 5)}",
        )
        self.start_upstream(port=upstream.port)

    def check_database(self, cell: Cell) -> None:
        """After a cell: if PostgreSQL died, say so and start it again on the same port."""
        postgres = self.postgres
        if postgres is None or postgres.is_alive():
            return
        self.recorder.fail(
            "postgres",
            cell,
            f"PostgreSQL died during this cell; last lines of {postgres.log_path}:\n"
            f"{tail(postgres.log_path, 5)}",
        )
        postgres.stop()
        try:
            postgres.start()
        except LaunchError as exc:
            self.recorder.fail("postgres", cell, f"restart failed: {exc}")

    def stop(self) -> None:
        """Stop the database (the launcher stops the upstream with everything else it started)."""
        if self.postgres is not None:
            self.postgres.stop()
