"""Flask app implementing targets/CONTRACT.md with sync views (WSGI), run on gunicorn threads."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import urllib3
from flask import Flask, Response, request
from psycopg_pool import ConnectionPool, PoolTimeout
from trades import validate_batch
from werkzeug.exceptions import BadRequest, NotFound

MAX_MS = 10_000
MAX_EVENTS = 1_000
MAX_FANOUT_CALLS = 10
MAX_CPU_ROUNDS = 1_000_000
# Threads of the fan-out pool of /io/fanout?mode=threads, per worker process.
FANOUT_THREADS = 10
_INTEGER = re.compile(r"-?[0-9]+")
UPSTREAM_URL = os.environ.get("GWBENCH_UPSTREAM_URL", "http://127.0.0.1:8081")
DATABASE_URL = os.environ.get("GWBENCH_DATABASE_URL")
DB_QUERY = "SELECT pg_sleep(%s), 1"

# Created when a gunicorn worker imports this module (no --preload), so every worker
# process has its own pool and no socket crosses a fork. retries=False: exactly one GET.
# The worker's threads share the pool: it keeps up to GWBENCH_UPSTREAM_POOL_SIZE
# connections (the thread count, set by gunicorn.conf.py's on_starting); past that urllib3 opens a
# connection and drops it after use.
# The fan-out pool's threads keep one connection each on top of that.
UPSTREAM_POOL_SIZE = int(os.environ.get("GWBENCH_UPSTREAM_POOL_SIZE", "1"))
upstream = urllib3.PoolManager(retries=False, maxsize=UPSTREAM_POOL_SIZE + FANOUT_THREADS)

# The fan-out pool of /io/fanout?mode=threads, likewise one per worker process, shared
# by the requests it serves at once; its threads start on first use and are kept.
fanout_pool = ThreadPoolExecutor(max_workers=FANOUT_THREADS, thread_name_prefix="fanout")

# The database pool, likewise one per worker process: one connection per thread
# up to 20 (GWBENCH_DB_POOL_SIZE, set by gunicorn.conf.py's on_starting), opened in the background
# at import: a database that is down does not stop the worker from starting (requests
# then answer 502). autocommit: the SELECT is the only statement sent (no BEGIN/COMMIT);
# timeout: the longest wait for a pooled connection; statement_timeout: the server
# cancels a query that hangs.
DB_POOL_SIZE = int(os.environ.get("GWBENCH_DB_POOL_SIZE", "1"))
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


def fetch_delayed_ms(ms: int) -> tuple[dict[str, Any], int]:
    """One call of /io/fanout: fetch_delay, and 502 for a body without ``delayed_ms``."""
    body, status = fetch_delay(ms)
    if status == 200 and "delayed_ms" not in body:
        return {"error": "upstream unavailable: invalid body"}, 502
    return body, status


def parse_fanout(getlist: Callable[[str], list[str]]) -> tuple[int, int, bool] | str:
    """``(ms, calls, threads)`` of /io/fanout, or the contract's error reason (ms, n, mode)."""
    ms = parse_ms(getlist("ms"))
    if isinstance(ms, str):
        return ms
    calls = parse_int("n", getlist("n"), 1, MAX_FANOUT_CALLS)
    if isinstance(calls, str):
        return calls
    mode = getlist("mode")
    if mode and mode[0] not in ("default", "threads"):
        return "mode must be default or threads"
    return ms, calls, mode[:1] == ["threads"]


def fanout(ms: int, calls: int, threads: bool) -> tuple[dict[str, Any], int]:
    """Make the calls one after the other (stopping at a failure), or all at once in the
    fan-out pool; answer with the delays in call order, or the first failure's 502."""
    if threads:
        futures = [fanout_pool.submit(fetch_delayed_ms, ms) for _ in range(calls)]
        replies = [future.result() for future in futures]
    else:
        replies = []
        for _ in range(calls):
            replies.append(fetch_delayed_ms(ms))
            if replies[-1][1] != 200:
                break
    for body, status in replies:
        if status != 200:
            return body, status
    delayed_ms = [body["delayed_ms"] for body, _ in replies]
    return {"calls": calls, "delayed_ms": delayed_ms, "mode": "threads" if threads else "sequential"}, 200


def sha256_chain(rounds: int) -> str:
    """The work of /cpu: from 64 zero bytes, ``rounds`` SHA-256, each digest (twice) the
    next block; the hex of the last digest."""
    block = bytes(64)
    digest = b""
    for _ in range(rounds):
        digest = hashlib.sha256(block).digest()
        block = digest + digest
    return digest.hex()


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


@app.get("/io/fanout")
def io_fanout() -> tuple[dict[str, Any], int]:
    parsed = parse_fanout(request.args.getlist)
    if isinstance(parsed, str):
        return {"error": parsed}, 400
    return fanout(*parsed)


@app.post("/validate")
def validate() -> tuple[dict[str, Any], int]:
    try:
        # force: parse whatever the Content-Type says; the contract's clients send JSON.
        body = request.get_json(force=True)
    except BadRequest:
        return {"error": "invalid JSON"}, 400
    return validate_batch(body)


@app.get("/cpu")
def cpu() -> tuple[dict[str, Any], int]:
    rounds = parse_int("n", request.args.getlist("n"), 1, MAX_CPU_ROUNDS)
    if isinstance(rounds, str):
        return {"error": rounds}, 400
    return {"n": rounds, "digest": sha256_chain(rounds)}, 200


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
