"""``gwbench locust-worker``: a Locust worker for a ``gwbench run --locust-workers N`` master."""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile

from harness.cli.common import MAX_PORT, SubParsers, console, in_range
from harness.load import ensure_loopback
from harness.load.locust import worker_command


def cmd_locust_worker(args: argparse.Namespace) -> int:
    """Run one Locust worker until its master ends the run; the locustfile comes from the master.

    Locust writes the files it downloads (the locustfile and gwbench's plugin) to the
    temporary folder under their own names: the worker gets a private one (its TMPDIR and
    working folder), removed when it ends, so nothing is left in a shared /tmp.
    """
    in_range("--master-port", args.master_port, 1, MAX_PORT)
    ensure_loopback(args.master_host, allow_remote=args.allow_remote)
    command = worker_command(args.master_host, args.master_port)
    console.print(f"locust worker for {args.master_host}:{args.master_port}: {' '.join(command)}")
    with tempfile.TemporaryDirectory(prefix="gwbench-locust-worker-") as private:
        return subprocess.call(command, cwd=private, env={**os.environ, "TMPDIR": private})


def add_locust_worker_parser(sub: SubParsers) -> None:
    """The ``locust-worker`` subcommand and its options."""
    lw = sub.add_parser("locust-worker", help="run a Locust worker for a gwbench master (distributed load)")
    lw.add_argument("master_host", help="the master's address (of gwbench run --locust-workers N)")
    lw.add_argument("--master-port", type=int, default=5557, help="the master's port (its --locust-port)")
    lw.add_argument(
        "--allow-remote", action="store_true", help="allow a master that is not on a loopback address"
    )
    lw.set_defaults(func=cmd_locust_worker)
