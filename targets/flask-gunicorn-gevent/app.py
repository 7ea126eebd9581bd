"""Flask app implementing targets/CONTRACT.md with sync views (WSGI), run on gevent greenlets."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.waiting
import urllib3
from flask import Flask, Response, request
from gevent import monkey
from psycopg_pool import ConnectionPool, PoolTimeout
from werkzeug.exceptions import NotFound

# Gunicorn's gevent worker runs gevent.monkey.patch_all() after the fork and before it
# imports this module (no --preload), so time.sleep and urllib3's sockets below yield to
# other greenlets. Without it every sleep and upstream call would block the whole worker:
# refuse to start rather than measure that.
if not (monkey.is_module_patched("socket") and monkey.is_module_patched("time")):
    raise RuntimeError("run this app with gunicorn's gevent worker (the stdlib is not patched)")

MAX_MS = 10_000
MAX_EVENTS = 1_000
_INTEGER = re.compile(r"-?[0-9]+")
UPSTREAM_URL = os.environ.get("GWBENCH_UPSTREAM_URL", "http://127.0.0.1:8081")
DATABASE_URL = os.environ.get("GWBENCH_DATABASE_URL")
DB_QUERY = "SELECT pg_sleep(%s), 1"

# Created when a gunicorn worker imports this module (no --preload), so every worker
# process has its own pool and no socket crosses a fork. retries=False: exactly one GET.
# The worker's greenlets share the pool: it keeps up to GWBENCH_UPSTREAM_POOL_SIZE
# connections (set from `worker_connections` in gunicorn.conf.py); past that urllib3
# opens a connection and drops it after use.
UPSTREAM_POOL_SIZE = int(os.environ.get("GWBENCH_UPSTREAM_POOL_SIZE", "1"))
upstream = urllib3.PoolManager(retries=False, maxsize=UPSTREAM_POOL_SIZE)

# The database pool, likewise one per worker process. The worker serves up to 1000
# greenlets, but PostgreSQL serves a few hundred connections in all, so the pool is
# bounded (GWBENCH_DB_POOL_SIZE, 20 in gunicorn.conf.py, as the event-loop stacks' pools)
# and greenlets beyond it wait for a free connection. That wait yields (psycopg_pool's
# threading primitives are patched), and so does every query: psycopg picks a wait
# function that polls through the patched `select` when it finds gevent's patches
# (checked below). Connections open in the background at import: a database that is
# down does not stop the worker from starting (requests then answer 502). autocommit:
# the SELECT is the only statement sent (no BEGIN/COMMIT); timeout: the longest wait
# for a pooled connection; statement_timeout: the server cancels a query that hangs.
DB_POOL_SIZE = int(os.environ.get("GWBENCH_DB_POOL_SIZE", "1"))
if psycopg.waiting.wait is psycopg.waiting.wait_c:
    raise RuntimeError("psycopg would block the gevent loop: import it after gevent's monkey-patching")
db_pool = (
    None
    if DATABASE_URL is None
    else ConnectionPool(
        DATABASE_URL,
        min_size=DB_POOL_SIZE,
        max_size=DB_POOL_SIZE,
        timeout=2.0,
        kwargs={"autocommit": True, "connect_timeout": 2, "options": "-c statement_timeout=15000"},
        open=True,
    )
)

app = Flask(__name__)


def parse_int(name: str, values: list[str], low: int, high: int) -> int | str:
    """Return the parameter's value, or the contract's error reason (targets/CONTRACT.md)."""
    if not values:
        return f"{name} is required"
    raw = values[0]
    if not _INTEGER.fullmatch(raw):
        return f"{name} must be an integer"
    digits = raw.lstrip("-").lstrip("0") or "0"
    # Length first: int() of a huge digit string is slow, and refused past 4300 digits.
    if len(digits) > len(str(high)):
        return f"{name} must be between {low} and {high}"
    value = -int(digits) if raw.startswith("-") else int(digits)
    if not low <= value <= high:
        return f"{name} must be between {low} and {high}"
    return value


def parse_ms(values: list[str]) -> int | str:
    """Return the delay in ms, or the contract's error reason (targets/CONTRACT.md)."""
    return parse_int("ms", values, 0, MAX_MS)


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


def query_database(ms: int) -> tuple[dict[str, Any], int]:
    """Run the one query on a pooled connection; 503 unconfigured, 502 with a reason on failure."""
    if db_pool is None:
        return {"error": "database not configured"}, 503
    try:
        with db_pool.connection() as conn:
            row = conn.execute(DB_QUERY, (ms / 1000.0,)).fetchone()
    except (PoolTimeout, psycopg.errors.QueryCanceled):
        return {"error": "database unavailable: timeout"}, 502
    except psycopg.OperationalError:
        return {"error": "database unavailable: connection failed"}, 502
    except psycopg.Error:
        return {"error": "database unavailable: query failed"}, 502
    if row is None:
        return {"error": "database unavailable: query failed"}, 502
    return {"db_ms": ms, "value": row[1]}, 200


def sse_events(events: int, interval_ms: int) -> Iterator[bytes]:
    """The contract's events, the first at once, then one every ``interval_ms``.

    The sleeps hold this worker for the whole stream: that is what a sync worker costs.
    """
    for i in range(events):
        if i:
            time.sleep(interval_ms / 1000)
        yield f'data: {{"i": {i}}}\n\n'.encode()


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


@app.get("/db/query")
def db_query() -> tuple[dict[str, Any], int]:
    ms = parse_ms(request.args.getlist("ms"))
    if isinstance(ms, str):
        return {"error": ms}, 400
    return query_database(ms)


@app.get("/stream/sse")
def stream_sse() -> Response | tuple[dict[str, Any], int]:
    events = parse_int("events", request.args.getlist("events"), 1, MAX_EVENTS)
    if isinstance(events, str):
        return {"error": events}, 400
    interval_ms = parse_int("interval_ms", request.args.getlist("interval_ms"), 0, MAX_MS)
    if isinstance(interval_ms, str):
        return {"error": interval_ms}, 400
    return Response(
        sse_events(events, interval_ms), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


# WSGI has no WebSocket: the contract's answer, with or without Upgrade headers. The
# second rule matches requests that ask for an upgrade (Werkzeug routes those apart and
# would answer 400 to them).
@app.get("/ws/echo")
@app.get("/ws/echo", websocket=True, endpoint="ws_echo_upgrade")
def ws_echo() -> tuple[dict[str, Any], int]:
    return {"error": "websocket not supported"}, 501


@app.errorhandler(NotFound)
def not_found(error: NotFound) -> tuple[dict[str, Any], int]:
    return {"error": "not found"}, 404
