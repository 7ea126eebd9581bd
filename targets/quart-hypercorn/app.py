"""Quart app implementing targets/CONTRACT.md with async views (ASGI)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from quart import Quart, Response, request, websocket
from trades import validate_batch
from werkzeug.exceptions import BadRequest, NotFound

MAX_MS = 10_000
MAX_EVENTS = 1_000
MAX_FANOUT_CALLS = 10
MAX_CPU_ROUNDS = 1_000_000
_INTEGER = re.compile(r"-?[0-9]+")
UPSTREAM_URL = os.environ.get("GWBENCH_UPSTREAM_URL", "http://127.0.0.1:8081")
DATABASE_URL = os.environ.get("GWBENCH_DATABASE_URL")
DB_QUERY = "SELECT pg_sleep(%s), 1"
# Connections per worker process: the event loop runs many queries at once, and
# PostgreSQL serves a few hundred connections in all; requests beyond wait for one.
DB_POOL_SIZE = 20

app = Quart(__name__)
# One pooled session and one database pool per worker process, made inside its event
# loop in before_serving.
upstream: aiohttp.ClientSession | None = None
db_pool: AsyncConnectionPool | None = None


@app.before_serving
async def open_clients() -> None:
    global upstream, db_pool
    # limit=0: no client-side cap on connections; the offered load bounds them.
    upstream = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    if DATABASE_URL is not None:
        # Filled in the background: a database that is down does not stop the worker
        # from starting (requests then answer 502). autocommit: the SELECT is the only
        # statement sent (no BEGIN/COMMIT); timeout: the longest wait for a pooled
        # connection; statement_timeout: the server cancels a query that hangs.
        db_pool = AsyncConnectionPool(
            DATABASE_URL,
            min_size=DB_POOL_SIZE,
            max_size=DB_POOL_SIZE,
            timeout=2.0,
            kwargs={"autocommit": True, "connect_timeout": 2, "options": "-c statement_timeout=15000"},
            open=False,
        )
        await db_pool.open(wait=False)


@app.after_serving
async def close_clients() -> None:
    if upstream is not None:
        await upstream.close()
    if db_pool is not None:
        await db_pool.close()


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


def parse_fanout(getlist: Callable[[str], list[str]]) -> tuple[int, int] | str:
    """``(ms, calls)`` of /io/fanout, or the contract's error reason (ms, n, mode).

    ``mode=threads`` is accepted and changes nothing: the event loop overlaps the calls.
    """
    ms = parse_ms(getlist("ms"))
    if isinstance(ms, str):
        return ms
    calls = parse_int("n", getlist("n"), 1, MAX_FANOUT_CALLS)
    if isinstance(calls, str):
        return calls
    mode = getlist("mode")
    if mode and mode[0] not in ("default", "threads"):
        return "mode must be default or threads"
    return ms, calls


def sha256_chain(rounds: int) -> str:
    """The work of /cpu: from 64 zero bytes, ``rounds`` SHA-256, each digest (twice) the
    next block; the hex of the last digest."""
    block = bytes(64)
    digest = b""
    for _ in range(rounds):
        digest = hashlib.sha256(block).digest()
        block = digest + digest
    return digest.hex()


def upstream_failed(reason: str) -> tuple[dict[str, Any], int]:
    return {"error": f"upstream unavailable: {reason}"}, 502


async def fetch_delay(ms: int) -> dict[str, Any] | str:
    """GET the upstream's /delay: its JSON object, or the contract's failure reason."""
    assert upstream is not None, "before_serving has run"
    timeout = aiohttp.ClientTimeout(total=ms / 1000 + 5.0, connect=2.0)
    try:
        async with upstream.get(f"{UPSTREAM_URL}/delay?ms={ms}", timeout=timeout) as reply:
            if reply.status != 200:
                return f"status {reply.status}"
            try:
                body = await reply.json(content_type=None)
            except ValueError:
                body = None
    except TimeoutError:
        return "timeout"
    except aiohttp.ClientError:
        return "connection failed"
    if not isinstance(body, dict):
        return "invalid body"
    return body


@app.get("/health")
async def health() -> Response:
    return Response("ok", mimetype="text/plain")


@app.get("/json")
async def hello() -> dict[str, Any]:
    return {"message": "hello, world!"}


@app.get("/io/sleep")
async def io_sleep() -> tuple[dict[str, Any], int]:
    ms = parse_ms(request.args.getlist("ms"))
    if isinstance(ms, str):
        return {"error": ms}, 400
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}, 200


@app.get("/io/upstream")
async def io_upstream() -> tuple[dict[str, Any], int]:
    ms = parse_ms(request.args.getlist("ms"))
    if isinstance(ms, str):
        return {"error": ms}, 400
    body = await fetch_delay(ms)
    if isinstance(body, str):
        return upstream_failed(body)
    return body, 200


@app.get("/io/fanout")
async def io_fanout() -> tuple[dict[str, Any], int]:
    parsed = parse_fanout(request.args.getlist)
    if isinstance(parsed, str):
        return {"error": parsed}, 400
    ms, calls = parsed
    # Every call runs to its end (fetch_delay returns failures); the first in call order is answered.
    bodies = await asyncio.gather(*(fetch_delay(ms) for _ in range(calls)))
    delayed_ms = []
    for body in bodies:
        if isinstance(body, str):
            return upstream_failed(body)
        if "delayed_ms" not in body:
            return upstream_failed("invalid body")
        delayed_ms.append(body["delayed_ms"])
    return {"calls": calls, "delayed_ms": delayed_ms, "mode": "gather"}, 200


@app.post("/validate")
async def validate() -> tuple[dict[str, Any], int]:
    try:
        # force: parse whatever the Content-Type says; the contract's clients send JSON.
        body = await request.get_json(force=True)
    except (BadRequest, UnicodeDecodeError):
        # Quart decodes the body as UTF-8 before, and outside, its JSON error handling.
        return {"error": "invalid JSON"}, 400
    return validate_batch(body)


@app.get("/cpu")
async def cpu() -> tuple[dict[str, Any], int]:
    rounds = parse_int("n", request.args.getlist("n"), 1, MAX_CPU_ROUNDS)
    if isinstance(rounds, str):
        return {"error": rounds}, 400
    # On the event loop, as an async view does: the control where async should not win.
    return {"n": rounds, "digest": sha256_chain(rounds)}, 200


def database_failed(reason: str) -> tuple[dict[str, Any], int]:
    return {"error": f"database unavailable: {reason}"}, 502


@app.get("/db/query")
async def db_query() -> tuple[dict[str, Any], int]:
    ms = parse_ms(request.args.getlist("ms"))
    if isinstance(ms, str):
        return {"error": ms}, 400
    if db_pool is None:
        return {"error": "database not configured"}, 503
    try:
        async with db_pool.connection() as conn:
            cursor = await conn.execute(DB_QUERY, (ms / 1000.0,))
            row = await cursor.fetchone()
    except (PoolTimeout, psycopg.errors.QueryCanceled):
        return database_failed("timeout")
    except psycopg.OperationalError:
        return database_failed("connection failed")
    except psycopg.Error:
        return database_failed("query failed")
    if row is None:
        return database_failed("query failed")
    return {"db_ms": ms, "value": row[1]}, 200


async def sse_events(events: int, interval_ms: int) -> AsyncIterator[bytes]:
    """The contract's events, the first at once, then one every ``interval_ms``."""
    for i in range(events):
        if i:
            await asyncio.sleep(interval_ms / 1000)
        yield f'data: {{"i": {i}}}\n\n'.encode()


@app.get("/stream/sse")
async def stream_sse() -> Response | tuple[dict[str, Any], int]:
    events = parse_int("events", request.args.getlist("events"), 1, MAX_EVENTS)
    if isinstance(events, str):
        return {"error": events}, 400
    interval_ms = parse_int("interval_ms", request.args.getlist("interval_ms"), 0, MAX_MS)
    if isinstance(interval_ms, str):
        return {"error": interval_ms}, 400
    response = Response(
        sse_events(events, interval_ms), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
    # Quart cuts a response off after RESPONSE_TIMEOUT (60 s); a stream may last longer.
    response.timeout = None
    return response


@app.websocket("/ws/echo")
async def ws_echo() -> None:
    # Quart accepts on the first receive; the handler is cancelled when the client closes.
    while True:
        await websocket.send(await websocket.receive())


@app.errorhandler(NotFound)
async def not_found(error: NotFound) -> tuple[dict[str, Any], int]:
    return {"error": "not found"}, 404
