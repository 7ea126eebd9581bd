"""The upstream service the I/O endpoints call: answers after a requested delay.

Run: ``python -m upstream_app --host 127.0.0.1 --port 8081 [--workers 1]``.
With more than one worker, each process listens on the same port (SO_REUSEPORT)
and the kernel spreads connections between them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import re
import resource

import uvloop
from aiohttp import web
from aiohttp.typedefs import Handler

MAX_MS = 10_000
BACKLOG = 4096
_INTEGER = re.compile(r"-?[0-9]+")


def parse_ms(values: list[str]) -> int | str:
    """Return the delay in ms, or the contract's error reason (targets/CONTRACT.md)."""
    if not values:
        return "ms is required"
    raw = values[0]
    if not _INTEGER.fullmatch(raw):
        return "ms must be an integer"
    digits = raw.lstrip("-").lstrip("0") or "0"
    if (raw.startswith("-") and digits != "0") or len(digits) > 5 or int(digits) > MAX_MS:
        return f"ms must be between 0 and {MAX_MS}"
    return int(digits)


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok", content_type="text/plain")


async def delay(request: web.Request) -> web.Response:
    ms = parse_ms(request.query.getall("ms", []))
    if isinstance(ms, str):
        return web.json_response({"error": ms}, status=400)
    await asyncio.sleep(ms / 1000)
    return web.json_response({"delayed_ms": ms})


@web.middleware
async def json_not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return web.json_response({"error": "not found"}, status=404)


def make_app() -> web.Application:
    app = web.Application(middlewares=[json_not_found])
    app.router.add_get("/health", health, allow_head=False)
    app.router.add_get("/delay", delay, allow_head=False)
    return app


def raise_open_file_limit() -> None:
    # Thousands of waiting requests need thousands of sockets; the soft limit is often 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1_048_576 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        # If refused, keep the soft limit: too few sockets shows up as connect errors.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def serve(host: str, port: int, reuse_port: bool) -> None:
    raise_open_file_limit()
    web.run_app(
        make_app(),
        host=host,
        port=port,
        backlog=BACKLOG,
        access_log=None,
        print=None,
        reuse_port=reuse_port,
        loop=uvloop.new_event_loop(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if args.workers <= 1:
        serve(args.host, args.port, reuse_port=False)
        return
    processes = [
        multiprocessing.Process(target=serve, args=(args.host, args.port, True)) for _ in range(args.workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()


if __name__ == "__main__":
    main()
