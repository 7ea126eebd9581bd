"""Flask app implementing targets/CONTRACT.md with sync views (WSGI), run on gevent greenlets."""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import urllib3
from flask import Flask, Response, request
from gevent import monkey
from werkzeug.exceptions import NotFound

# Gunicorn's gevent worker runs gevent.monkey.patch_all() after the fork and before it
# imports this module (no --preload), so time.sleep and urllib3's sockets below yield to
# other greenlets. Without it every sleep and upstream call would block the whole worker:
# refuse to start rather than measure that.
if not (monkey.is_module_patched("socket") and monkey.is_module_patched("time")):
    raise RuntimeError("run this app with gunicorn's gevent worker (the stdlib is not patched)")

MAX_MS = 10_000
_INTEGER = re.compile(r"-?[0-9]+")
UPSTREAM_URL = os.environ.get("GWBENCH_UPSTREAM_URL", "http://127.0.0.1:8081")

# Created when a gunicorn worker imports this module (no --preload), so every worker
# process has its own pool and no socket crosses a fork. retries=False: exactly one GET.
# The worker's greenlets share the pool: it keeps up to GWBENCH_UPSTREAM_POOL_SIZE
# connections (set from `worker_connections` in gunicorn.conf.py); past that urllib3
# opens a connection and drops it after use.
UPSTREAM_POOL_SIZE = int(os.environ.get("GWBENCH_UPSTREAM_POOL_SIZE", "1"))
upstream = urllib3.PoolManager(retries=False, maxsize=UPSTREAM_POOL_SIZE)

app = Flask(__name__)


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


def fetch_delay(ms: int) -> tuple[dict[str, Any], int]:
    """GET the upstream's /delay; return (body, status), 502 with a reason on failure."""
    timeout = urllib3.Timeout(connect=2.0, total=ms / 1000 + 5.0)
    try:
        reply = upstream.request("GET", f"{UPSTREAM_URL}/delay?ms={ms}", timeout=timeout)
    except urllib3.exceptions.NewConnectionError:
        # Checked first: urllib3 2 derives NewConnectionError from ConnectTimeoutError.
        return {"error": "upstream unavailable: connection failed"}, 502
    except urllib3.exceptions.TimeoutError:
        return {"error": "upstream unavailable: timeout"}, 502
    except urllib3.exceptions.HTTPError:
        return {"error": "upstream unavailable: connection failed"}, 502
    if reply.status != 200:
        return {"error": f"upstream unavailable: status {reply.status}"}, 502
    try:
        body = json.loads(reply.data)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return {"error": "upstream unavailable: invalid body"}, 502
    return body, 200


@app.get("/health")
def health() -> Response:
    return Response("ok", mimetype="text/plain")


@app.get("/json")
def hello() -> dict[str, Any]:
    return {"message": "hello, world!"}


@app.get("/io/sleep")
def io_sleep() -> tuple[dict[str, Any], int]:
    ms = parse_ms(request.args.getlist("ms"))
    if isinstance(ms, str):
        return {"error": ms}, 400
    time.sleep(ms / 1000)
    return {"slept_ms": ms}, 200


@app.get("/io/upstream")
def io_upstream() -> tuple[dict[str, Any], int]:
    ms = parse_ms(request.args.getlist("ms"))
    if isinstance(ms, str):
        return {"error": ms}, 400
    return fetch_delay(ms)


@app.errorhandler(NotFound)
def not_found(error: NotFound) -> tuple[dict[str, Any], int]:
    return {"error": "not found"}, 404
