"""The run's own PostgreSQL: started on a free loopback port, counts queries, leaves nothing behind."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import psycopg
import pytest

from harness.launch import LaunchError
from harness.launch.postgres import Postgres


def test_a_server_starts_counts_the_queries_run_and_is_gone_after(tmp_path: Path) -> None:
    with Postgres(log_path=tmp_path / "postgres.log") as postgres:
        assert postgres.is_alive()
        assert postgres.url.startswith("postgresql://gwbench@127.0.0.1:")
        assert postgres.version is not None and postgres.version.split(".")[0].isdigit()
        pid = postgres.pid
        postgres.reset_statistics()
        with psycopg.connect(postgres.url) as conn:
            for ms in (0, 5, 10):
                started = time.monotonic()
                row = conn.execute("SELECT pg_sleep(%s), 1", (ms / 1000.0,)).fetchone()
                assert row is not None and row[1] == 1
                assert time.monotonic() - started >= ms / 1000.0
            conn.execute("SELECT 2")
        assert postgres.calls() == 3  # only the pg_sleep statements
        postgres.reset_statistics()
        assert postgres.calls() == 0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres.url, connect_timeout=1)
    assert "database system is shut down" in (tmp_path / "postgres.log").read_text()


def test_a_taken_port_is_a_clear_launch_error(tmp_path: Path) -> None:
    with Postgres(log_path=tmp_path / "first.log") as first:
        second = Postgres(log_path=tmp_path / "second.log", port=first.port, ready_timeout_s=5)
        with pytest.raises(LaunchError, match=r"postgres: .*last lines of"):
            second.start()
        assert not second.is_alive()
        assert first.is_alive()
