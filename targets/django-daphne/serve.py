"""Run ``--workers`` Daphne processes on one listening socket, then wait for them.

Daphne is one process and has no workers option. The Channels docs ("Deploying") scale it
the way supervisord's fcgi-program does: a parent binds and listens on the port, then
starts "roughly the number of CPUs" Daphne processes, each adopting the socket with
``--fd``. This script is that parent, so the target honours ``{workers}`` like the
others. With one worker it binds the socket and replaces itself with Daphne (no parent
process left); with more, it stays to forward SIGTERM and SIGINT, and when any Daphne
exits it stops the rest and exits with that code.

Usage: ``python serve.py --host H --port P --workers N -- <daphne options> APP``.
Binding here also sets the listen backlog (2048, as in the other targets); Daphne's own
``-b``/``-p`` binding would use Twisted's default of 50.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
from types import FrameType

BACKLOG = 2048


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("daphne_args", nargs=argparse.REMAINDER, help="after --: Daphne's options and app")
    args = parser.parse_args()
    daphne_args = args.daphne_args[1:] if args.daphne_args[:1] == ["--"] else args.daphne_args
    if args.workers < 1 or not daphne_args:
        parser.error("need --workers >= 1 and, after --, Daphne's options and the application")

    listener = socket.create_server((args.host, args.port), backlog=BACKLOG)
    fd = listener.fileno()
    argv = [sys.executable, "-m", "daphne", "--fd", str(fd), *daphne_args]
    # Daphne imports the app from its cwd (the Django project) and from this folder
    # (asgi_with_date).
    env = dict(os.environ)
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    if args.workers == 1:
        os.set_inheritable(fd, True)
        os.execve(sys.executable, argv, env)

    children = [subprocess.Popen(argv, pass_fds=(fd,), env=env) for _ in range(args.workers)]
    listener.close()

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    _pid, status = os.wait()
    forward(signal.SIGTERM, None)
    for child in children:
        child.wait()
    code = os.waitstatus_to_exitcode(status)
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
