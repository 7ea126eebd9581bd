"""The services the stacks call, shared by ``run``, ``verify`` and ``serve``: the upstream and PostgreSQL.

The upstream (``targets/upstream``, ``role = "upstream"``) stands in for a remote
service: it runs beside the load generator, not on the target's CPUs, and the
stacks find it in ``GWBENCH_UPSTREAM_URL``. The database is
:class:`~harness.launch.postgres.Postgres` (its own module: a throw-away cluster);
the stacks find it in ``GWBENCH_DATABASE_URL``. :func:`stack_env` is the one
place that names those variables.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.launch.base import Launcher, RunningTarget

if TYPE_CHECKING:
    from harness.launch.postgres import Postgres
    from harness.model import TargetConfig

UPSTREAM = "upstream"
"""The upstream service's name in failures and logs."""


def stack_env(upstream: RunningTarget, postgres: Postgres | None = None) -> dict[str, str]:
    """The environment a stack is started with: where its upstream (and its database, if any) listen."""
    return {
        "GWBENCH_UPSTREAM_URL": upstream.url,
        **({} if postgres is None else {"GWBENCH_DATABASE_URL": postgres.url}),
    }


class Upstream:
    """The upstream service on a launcher: started once, started again on its port after it died.

    ``config`` and ``directory`` are the upstream's ``target.toml`` and folder;
    ``log_path`` receives its output; ``cpus`` pins it (the generator's CPUs);
    ``ready_timeout_s`` bounds the wait for its ready path. :attr:`running` is
    the last upstream that started, or None before the first start succeeded.
    """

    def __init__(
        self,
        launcher: Launcher,
        config: TargetConfig,
        directory: Path,
        *,
        log_path: Path,
        cpus: Iterable[int] | None = None,
        ready_timeout_s: float = 30.0,
    ) -> None:
        self.launcher = launcher
        self.config = config
        self.directory = directory
        self.log_path = log_path
        self.cpus = None if cpus is None else tuple(cpus)
        self.ready_timeout_s = ready_timeout_s
        self.running: RunningTarget | None = None

    def start(self, port: int | None = None) -> RunningTarget:
        """Start the upstream with its default workers (on ``port``, else a free one); raises LaunchError.

        :attr:`running` changes only when it started.
        """
        self.running = self.launcher.start(
            self.config,
            self.directory,
            workers=self.config.default_workers,
            log_path=self.log_path,
            ready_timeout_s=self.ready_timeout_s,
            cpus=self.cpus,
            port=port,
        )
        return self.running

    def died(self) -> RunningTarget | None:
        """The started upstream if it is no longer alive (stopped, so its port is free again), else None."""
        running = self.running
        if running is None or self.launcher.is_alive(running):
            return None
        self.launcher.stop(running)
        return running
